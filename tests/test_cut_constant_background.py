"""A particle cut by a crop and rotated with a constant fill, on a background of the same constant:
the fill and the background merge into one region that is no fill (it encloses the particle), and the
cut had gone unseen (StatSTEM PtIr cut 25 % and rotated by 37° with a zero fill: "fcc 1.00").

The cut is told from a whole particle's rim by the data along the region's edge: a straight edge
with the particle's thick inside right against it (:func:`clusterspy.detection._cut_by_constant`).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from clusterspy.detection import detect_clusters, fill_mask
from clusterspy.domain import DETECTED_TO_PROJECTED, cut_by_edge
from clusterspy.image import Image
from helpers import SHARED

PX_A = 0.2
RANGE_A = {"min_diameter_A": 6.0 / DETECTED_TO_PROJECTED, "max_diameter_A": 200.0 / DETECTED_TO_PROJECTED}


def _rotate(data: np.ndarray, angle: float, reshape: bool, cval: float = 0.0) -> np.ndarray:
    return ndi.rotate(data, angle, reshape=reshape, order=1, mode="constant", cval=cval)


def _crop_through(data: np.ndarray, share: float) -> np.ndarray:
    """``data`` cropped from the right through its particle, ``share`` of the particle's width cut off."""
    smooth = ndi.gaussian_filter(data.astype(float), 8)
    cols = np.flatnonzero((smooth > 0.15 * smooth.max()).any(axis=0))
    return data[:, : int(cols[-1] - share * (cols[-1] - cols[0]))]


def _cut(data: np.ndarray, px: float) -> list[bool]:
    dets = detect_clusters(Image(data, px), exclude_border=False, polarity="bright", **RANGE_A)
    return [cut_by_edge(d.bbox, d.diameter_A / px, data.shape, d.fill_gap_px) for d in dets]


@pytest.fixture(scope="module")
def vacuum_icosahedron() -> np.ndarray:
    """A fast-simulated Au309 icosahedron in vacuum, Poisson counts (1e4 e⁻/Å²): ~86 % exact zeros."""
    from clusterspy.simulation import Acquisition, Microscope, simulate
    from clusterspy.structures import cluster

    atoms = cluster("icosahedral", 309, "Au", rng=0)
    img = simulate(atoms, Microscope(), pixel_size=PX_A, extent=48.0, rng=0,
                   acquisition=Acquisition(dose_e_per_A2=1e4))
    data = np.asarray(img.data, np.float32)
    assert (data == 0).mean() > 0.8
    return data


@pytest.mark.parametrize(("share", "angle", "reshape"), [
    (0.10, 37.0, True), (0.25, 60.0, True), (0.40, 135.0, True),
    (0.10, 60.0, False), (0.25, 90.0, False), (0.40, 90.0, False)])
def test_a_cluster_cut_and_rotated_on_a_zero_vacuum_is_cut(vacuum_icosahedron, share, angle, reshape):
    # The zero vacuum and the zero fill are one region that encloses the cluster: no fill, and the
    # cut cluster had been labelled "icosahedral" (reshape=True; some angles with reshape=False).
    # The whole cluster, rotated the same way, stays whole.
    assert _cut(_rotate(_crop_through(vacuum_icosahedron, share), angle, reshape), PX_A) == [True]
    assert _cut(_rotate(vacuum_icosahedron, angle, reshape), PX_A) == [False]
    assert _cut(vacuum_icosahedron, PX_A) == [False]


def test_classify_calls_the_cut_cluster_cut_by_edge(vacuum_icosahedron):
    from clusterspy.predict import classify

    (whole,) = classify(_rotate(vacuum_icosahedron, 37.0, True), pixel_size_A=PX_A)
    (cut,) = classify(_rotate(_crop_through(vacuum_icosahedron, 0.25), 37.0, True), pixel_size_A=PX_A)
    assert whole.reason is None and whole.label == "icosahedral"
    assert (cut.label, cut.reason) == ("unknown", "cut_by_edge")


def test_a_disc_cut_on_a_constant_background_but_not_the_whole_disc():
    # Noise-free: a flat-topped disc on an exact-zero background, cut by a crop and rotated. The
    # whole disc's rim falls smoothly to zero (a thin rim); the cut leaves its full height at the edge.
    yy, xx = np.mgrid[:200, :200]
    r = np.hypot(yy - 100, xx - 100)
    disc = np.clip(np.sqrt(np.clip(45.0**2 - r**2, 0, None)) / 45.0, 0, None).astype(np.float32)
    disc[r > 45] = 0.0
    rng = np.random.default_rng(0)
    disc = np.where(disc > 0, disc * (1 + 0.05 * rng.standard_normal(disc.shape)), 0).astype(np.float32)
    for angle in (10.0, 37.0, 90.0):
        assert _cut(_rotate(disc, angle, True), 0.3) == [False]
        assert _cut(_rotate(disc[:, :130], angle, True), 0.3) == [True]


def test_fill_at_a_detector_binning_of_11():
    # In float32, 121 × (1/121) < 1: blocks of 11 × 11 px were never "wholly constant", and no fill
    # was found at, e.g., 0.12 Å/px (the detector's binning for StatSTEM's PtIr).
    noisy = np.random.default_rng(0).poisson(20.0, (256, 256)).astype(np.float32)
    for factor in (5, 11, 22):
        m = fill_mask(np.pad(noisy, 44), factor)
        assert m is not None and m[0].all() and not m[m.shape[0] // 2, m.shape[1] // 2]


def _ptir() -> tuple[np.ndarray, float]:
    path = SHARED / "real_atomic" / "PtIr_fcc_statstem.npz"
    if not path.exists():
        pytest.skip("../shared/data is absent")
    z = np.load(path)
    return z["image"].astype(np.float32), float(z["pixel_size_A"])


@pytest.mark.shared
@pytest.mark.parametrize(("share", "angle", "reshape"), [
    (0.10, 37.0, True), (0.10, 37.0, False), (0.25, 37.0, True), (0.25, 37.0, False),
    (0.25, 60.0, True), (0.40, 135.0, True)])
def test_statstem_ptir_cut_and_rotated_with_a_zero_fill(share, angle, reshape):
    # Its background is ~74 % exact zeros (a masked image); cut and rotated with a zero fill it had
    # been "fcc 1.00".
    from clusterspy.predict import classify

    im, px = _ptir()
    (r,) = classify(_rotate(_crop_through(im, share), angle, reshape), pixel_size_A=px)
    assert (r.label, r.reason) == ("unknown", "cut_by_edge")


@pytest.mark.shared
@pytest.mark.parametrize("fill", ["zero", "mean"])
@pytest.mark.parametrize("reshape", [True, False])
def test_statstem_ptir_whole_and_rotated_stays_fcc(fill, reshape):
    # A guard (it passed before): the whole particle on its zero background is no cut.
    from clusterspy.predict import classify

    im, px = _ptir()
    cval = 0.0 if fill == "zero" else float(im.mean())
    for data in (im, _rotate(im, 37.0, reshape, cval)):
        (r,) = classify(data, pixel_size_A=px)
        assert (r.label, r.reason) == ("fcc", None)


@pytest.mark.shared
@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data")
def test_a_whole_faceted_particle_on_exact_zeros_is_not_cut():
    """StatSTEM's simulated HMM series: one particle of Gaussian columns centred on exact zeros
    (90 % of the frame); a straight bright facet (0.43 of its diameter in frame 3) is no cut."""
    z = np.load(SHARED / "series_sim" / "statstem_HMM_series_sim.npz")
    for frame in z["frames"]:
        img = Image(frame.astype(np.float32), float(z["pixel_size_A"]))
        (d,) = detect_clusters(img, exclude_border=False)
        assert d.fill_gap_px is None
        assert not cut_by_edge(d.bbox, d.diameter_A / img.pixel_size_A, img.shape, d.fill_gap_px)


@pytest.mark.parametrize("seed", range(6))
def test_a_whole_55_atom_cluster_in_a_low_count_vacuum_is_not_cut(seed):
    """The few columns of an Au55 are all about as bright, and the exact zeros of a low-count
    vacuum follow its facets for 4–9 Å (PRISM Au55: 0.74 of its diameter): no cut."""
    from clusterspy.simulation import Acquisition, Microscope, simulate
    from clusterspy.structures import cluster

    rng = np.random.default_rng(seed)
    atoms = cluster("icosahedral", 55, "Au", rng=rng)
    img = simulate(atoms, Microscope(), pixel_size=0.31, extent=28.0, rng=rng,
                   acquisition=Acquisition(dose_e_per_A2=float(rng.uniform(5e3, 2e4))))
    data = np.asarray(img.data, np.float32)
    assert (data == 0).mean() > 0.6
    assert _cut(data, 0.31) == [False]


@pytest.mark.parametrize(("dose", "seed"), [(2000.0, 3), (500.0, 2)])
def test_a_faceted_icosahedron_in_a_low_count_vacuum_is_not_cut(tmp_path, dose, seed):
    """A newcomer's ``clusterspy simulate --motif icosahedral --size 561 --extent 50 --dose 2000``
    (seed 3; --dose 500, seed 2): 87–95 % of the vacuum exactly zero, and the zeros next to a long
    straight facet made a centred particle ``cut_by_edge``. A fill beyond a cut is wholly constant;
    this vacuum is strewn with counts (:data:`clusterspy.detection.CUT_FILL_PURITY`)."""
    from clusterspy.cli import main as cli
    from clusterspy.io import read_image

    path = tmp_path / "ico.npz"
    cli(["simulate", "--motif", "icosahedral", "--size", "561", "--extent", "50", "--dose", str(dose),
         "--seed", str(seed), "--out", str(path)])
    img = read_image(path)
    data = np.asarray(img.data, np.float32)
    assert 0.8 < (data == 0).mean() < 0.99
    assert _cut(data, img.pixel_size_A) == [False]


def test_a_smoothed_low_count_vacuum_is_no_fill(tmp_path):
    """A newcomer's ``clusterspy simulate --motif icosahedral --size 309 --dose 1e4 --seed 4``, smoothed
    by a Gaussian of 1 px: patches of exact zeros between the spread vacuum counts, 23 % of the band
    beyond one of them zero; taken for a fill, its centred particle was ``cut_by_edge``."""
    from clusterspy.cli import main as cli
    from clusterspy.io import read_image

    path = tmp_path / "ico.npz"
    cli(["simulate", "--motif", "icosahedral", "--size", "309", "--dose", "1e4", "--seed", "4",
         "--out", str(path)])
    img = read_image(path)
    data = ndi.gaussian_filter(np.asarray(img.data, np.float32), 1.0)
    assert 0.3 < (data == 0).mean() < 0.5
    for factor in (1, 2, 3, 4, 6):
        assert fill_mask(data, factor) is None
    assert _cut(data, img.pixel_size_A) == [False]
