"""Rotated (or padded) images: the constant fill in their corners is no data and its boundary is an
edge (issue #12, finding 3)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from clusterspy.detection import Detection, detect_clusters, fill_mask
from clusterspy.domain import DETECTED_TO_PROJECTED, cut_by_edge, looks_bright_field
from clusterspy.image import Image
from helpers import SHARED, temul_au

PX_A = 0.3
RANGE_A = {"min_diameter_A": 6.0 / DETECTED_TO_PROJECTED, "max_diameter_A": 200.0 / DETECTED_TO_PROJECTED}


@pytest.fixture(scope="module")
def decahedron() -> np.ndarray:
    """A fast-simulated Au309 decahedron on carbon (0.3 Å/px, 200² px), its rim at columns ~65–135."""
    from clusterspy.simulation import Acquisition, Microscope, simulate
    from clusterspy.structures import carbon_support, cluster

    rng = np.random.default_rng(7)
    atoms = cluster("decahedral", 309, "Au", rng=rng, orientation="5-fold")
    mic = Microscope(energy_keV=200, semiangle_mrad=25, detector_mrad=(70, 200), source_size_A=0.6)
    img = simulate(atoms, mic, pixel_size=PX_A, extent=60.0, rng=rng,
                   acquisition=Acquisition(dose_e_per_A2=3e4, jitter_px=0.3, background=0.002),
                   support=carbon_support(64.0, 30.0, rng=rng))
    return np.asarray(img.data, np.float32)


def _rotate(data: np.ndarray, fill: str, reshape: bool = True) -> np.ndarray:
    """``data`` rotated by 37° (cubic spline), the corners filled with 0 or the mean."""
    cval = 0.0 if fill == "zero" else float(data.mean())
    return ndi.rotate(data, 37.0, cval=cval, reshape=reshape)


@pytest.mark.parametrize("reshape", [True, False])
@pytest.mark.parametrize("fill", ["zero", "mean"])
def test_a_whole_cluster_keeps_its_label_after_a_rotation(decahedron, fill, reshape):
    # The mean-filled corners of an unreshaped rotation made the frame edge brighter than the
    # image's third quartile: the whole image was refused as bright field.
    from clusterspy.predict import classify

    (plain,) = classify(Image(decahedron, PX_A))
    rotated = _rotate(decahedron, fill, reshape)
    (r,) = classify(Image(rotated, PX_A))
    assert (r.label, r.reason) == (plain.label, plain.reason) and plain.reason is None
    c = (np.array(rotated.shape) - 1) / 2
    assert np.hypot(r.x_px - c[1], r.y_px - c[0]) < 3
    assert r.diameter_nm == pytest.approx(plain.diameter_nm, rel=0.05)


@pytest.mark.parametrize("fill", ["zero", "mean"])
def test_no_phantom_and_no_lost_cluster_in_a_rotated_field(decahedron, fill):
    # 512² field on a background of 30 counts: with the zero fill, Otsu's threshold split fill
    # from data, the whole data region was one region too large to be a cluster, and the
    # cluster was lost; nothing may be found in the fill.
    frame = np.random.default_rng(2).poisson(30.0, (512, 512)).astype(np.float32)
    frame[156:356, 156:356] = decahedron - np.median(decahedron) + 30.0
    rotated = _rotate(frame, fill)
    dets = detect_clusters(Image(rotated, PX_A), exclude_border=False, polarity="bright", **RANGE_A)
    c = (np.array(rotated.shape) - 1) / 2
    assert len(dets) == 1 and np.hypot(dets[0].x_px - c[1], dets[0].y_px - c[0]) < 3, dets
    assert dets[0].fill_gap_px is None  # no fill near it


@pytest.mark.parametrize("fill", ["zero", "mean"])
@pytest.mark.parametrize("cut", [130, 120, 110])
def test_a_cluster_cut_by_the_fill_boundary_is_cut_by_edge(decahedron, fill, cut):
    # Cut 5–25 px inside its rim, then rotated: the cut lies on the fill's boundary, not on the
    # frame edge (the detector's rule had labelled it "decahedral", p = 0.95–1.00).
    from clusterspy.predict import classify

    (r,) = classify(Image(_rotate(decahedron[:, :cut], fill), PX_A))
    assert (r.label, r.reason) == ("unknown", "cut_by_edge")


def test_cut_by_edge_counts_the_fill_like_the_frame_edge():
    det = Detection(x_px=100.0, y_px=100.0, bbox=(70, 70, 130, 130), diameter_A=18.0, area_px=2800)
    assert not cut_by_edge(det.bbox, 60.0, (200, 200))
    assert not cut_by_edge(det.bbox, 60.0, (200, 200), fill_gap_px=40.0)
    assert cut_by_edge(det.bbox, 60.0, (200, 200), fill_gap_px=3.0)  # the rim the detector misses


def test_the_structure_fit_uses_the_same_rule():
    pytest.importorskip("ase")
    from clusterspy.fit.api import _reason_not_to_fit

    img = Image(np.zeros((200, 200), np.float32), PX_A)
    det = Detection(x_px=100.0, y_px=100.0, bbox=(70, 70, 130, 130), diameter_A=18.0, area_px=2800,
                    fill_gap_px=2.0)
    assert _reason_not_to_fit(img, det, 300, check_resolution=False) == "cut_by_edge"


def test_what_is_not_a_fill():
    rng = np.random.default_rng(0)
    noisy = rng.poisson(20.0, (256, 256)).astype(np.float32)
    assert fill_mask(noisy) is None  # no run of one value along the edge
    sparse = rng.poisson(0.3, (256, 256)).astype(np.float32)  # most pixels 0, but not solid
    assert fill_mask(sparse) is None
    clean = np.zeros((256, 256), np.float32)  # a noise-free simulation: the background is constant
    clean[100:140, 100:140] = 50.0
    assert fill_mask(clean) is None
    padded = np.pad(noisy, 40)  # padding is a fill, like a rotation's corners
    m = fill_mask(padded)
    assert m is not None and m[:40].all() and not m[60:-60, 60:-60].any()
    assert not looks_bright_field(np.pad(noisy + 200.0 * (np.hypot(*np.mgrid[-128:128, -128:128]) < 20),
                                         40, constant_values=float(noisy.mean()) + 50.0))


@pytest.mark.shared
def test_temul_au_rotated_with_zero_fill():
    # Half resolution (0.15 Å/px), rotated by 37°: the 3 nm particle keeps its size and stays
    # whole; the large out-of-focus particles, cut by the frame edge before, are cut by the fill.
    im = temul_au()
    data = np.asarray(im.data, np.float32)[::2, ::2]
    px = 2 * im.pixel_size_A

    def found(x):
        dets = detect_clusters(Image(x, px), exclude_border=False, polarity="bright", **RANGE_A)
        return [(d, cut_by_edge(d.bbox, d.diameter_A / px, x.shape, d.fill_gap_px)) for d in dets]

    plain = found(data)
    rotated = ndi.rotate(data, 37.0, cval=0.0)
    turned = found(rotated)
    (p_whole,) = [d for d, cut in plain if not cut]
    (r_whole,) = [d for d, cut in turned if not cut]
    assert r_whole.diameter_A == pytest.approx(p_whole.diameter_A, rel=0.03)
    fill = fill_mask(rotated)
    assert fill is not None
    assert not any(fill[round(d.y_px), round(d.x_px)] for d, _ in turned)  # nothing in the fill


def test_an_exactly_zero_background_is_not_a_fill():
    # `clusterspy simulate` without support: Poisson counts leave ~80 % of the pixels exactly 0.
    # On the detector's coarse grid the wholly-zero blocks cover less than FILL_MAX_SHARE, so the
    # background had been taken for a fill and the whole cluster called cut_by_edge.
    from clusterspy.simulation import Acquisition, Microscope, simulate
    from clusterspy.structures import cluster

    rng = np.random.default_rng(3)
    atoms = cluster("decahedral", 309, "Au", rng=rng, orientation="random")
    img = simulate(atoms, Microscope(), pixel_size=0.2, extent=40.0, rng=rng,
                   acquisition=Acquisition(dose_e_per_A2=1e4))
    data = np.asarray(img.data, np.float32)
    assert (data == 0).mean() > 0.6
    for factor in (1, 5):
        assert fill_mask(data, factor) is None
    (d,) = detect_clusters(Image(data, 0.2), exclude_border=False, polarity="bright", **RANGE_A)
    assert d.fill_gap_px is None
    assert not cut_by_edge(d.bbox, d.diameter_A / 0.2, data.shape, d.fill_gap_px)


def test_a_vacuum_of_exact_zeros_around_a_large_cluster_is_not_a_fill():
    # A low-count (or simulated) HAADF image: the vacuum is exactly 0 and, around a cluster that
    # fills half the frame, covers less than FILL_MAX_SHARE: it encloses the cluster, a rounded
    # patch away from the frame's sides, unlike a rotation's or a pad's fill (PRISM benchmark
    # images of 484–923 atoms had been called cut_by_edge)
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:128, :128]
    data = np.where(np.hypot(yy - 64, xx - 64) < 50, rng.poisson(20.0, (128, 128)), 0).astype(np.float32)
    assert 0.4 < (data == 0).mean() < 0.6
    for factor in (1, 2, 3):
        assert fill_mask(data, factor) is None
    (d,) = detect_clusters(Image(data, 0.3), exclude_border=False, polarity="bright", **RANGE_A)
    assert d.fill_gap_px is None and not cut_by_edge(d.bbox, d.diameter_A / 0.3, data.shape, None)


def _clipped(data: np.ndarray, percentile: float) -> np.ndarray:
    """``data`` with its ``percentile`` subtracted and clipped at 0: a "background-subtracted" export."""
    return np.clip(data - np.percentile(data, percentile), 0, None).astype(np.float32)


@pytest.mark.parametrize(("slope", "percentile"), [(30.0, 30.0), (60.0, 40.0)])
def test_a_clipped_background_is_not_a_fill(slope, percentile):
    # A background subtracted and clipped at 0 leaves ragged patches of zeros along the frame edge,
    # thinning out into the noise; a pad's or a rotation's fill ends at a sharp edge. On the grid
    # binned by 4 the patches had been taken for a fill (11 % / 33 % of the frame).
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:256, :256]
    ramp = 20.0 + slope * xx / 255  # a background brighter on the right, as a thick support makes it
    disc = 60.0 * (np.hypot(yy - 128, xx - 128) < 60)
    data = rng.poisson(ramp + disc).astype(np.float32)
    clipped = _clipped(data, percentile)
    assert 0.25 < (clipped == 0).mean() < 0.5
    for factor in (1, 2, 4):
        assert fill_mask(clipped, factor) is None
    padded = np.pad(data, ((0, 0), (60, 0)))  # the same image padded is a fill
    for factor in (1, 4):
        m = fill_mask(padded, factor)
        assert m is not None and m[:, : 50 // factor].all() and not m[:, 80 // factor:].any()


@pytest.mark.shared
@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data")
def test_statstem_pb_with_its_background_clipped_stays_fcc():
    # StatSTEM's Pb, its median subtracted and clipped at 0 (half the frame zero): "cut_by_edge".
    from clusterspy.predict import classify

    z = np.load(SHARED / "real_atomic" / "Pb_fcc_statstem.npz")
    data = _clipped(z["image"].astype(np.float32), 50)
    assert (data == 0).mean() > 0.45
    (r,) = classify(data, pixel_size_A=float(z["pixel_size_A"]))
    assert (r.label, r.reason) == ("fcc", None)
