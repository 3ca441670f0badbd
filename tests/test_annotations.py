"""Annotations drawn on an exported image — a burned-in scale bar, its text — are no data: not a
cluster, not a neighbour, not in a crop, and an edge for a particle they touch (issue #12; newcomers'
Velox-style exports: the bar was a "cluster" in every frame of a series, cost a real particle its
label as ``neighbour_in_view``, and flipped a decahedron to fcc from inside its crop)."""

from __future__ import annotations

import numpy as np
import pytest

from clusterspy.detection import annotation_mask, crop_cluster, detect_clusters
from clusterspy.image import Image
from helpers import SHARED

PX_A = 0.2


@pytest.fixture(scope="module")
def decahedron() -> np.ndarray:
    """A fast-simulated Au309 decahedron in a 48 Å field (240² px), Poisson counts."""
    from clusterspy.simulation import Acquisition, Microscope, simulate
    from clusterspy.structures import cluster

    rng = np.random.default_rng(4)
    atoms = cluster("decahedral", 309, "Au", rng=rng)
    img = simulate(atoms, Microscope(), pixel_size=PX_A, extent=48.0, rng=rng,
                   acquisition=Acquisition(dose_e_per_A2=1e4, background=0.002))
    return np.asarray(img.data, np.float32)


def _with_bar(data: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    out = data.copy()
    out[rows, cols] = data.max()  # drawn in white: the image's maximum
    return out


def test_a_drawn_bar_is_an_annotation_and_saturated_columns_are_not(decahedron):
    barred = _with_bar(decahedron, slice(220, 226), slice(20, 100))
    drawn = annotation_mask(barred)
    assert drawn is not None and drawn[220:226, 20:100].all() and drawn.sum() == 6 * 80
    assert annotation_mask(decahedron) is None
    lo, hi = np.percentile(decahedron, [1, 90])  # an 8-bit export clipped at the 90th percentile
    clipped = (np.clip((decahedron - lo) / (hi - lo), 0, 1) * 255).round()
    assert (clipped == 255).sum() > 1000 and annotation_mask(clipped) is None


def test_a_bar_away_from_the_particle_is_no_cluster_and_changes_no_label(decahedron):
    from clusterspy.predict import classify

    barred = _with_bar(decahedron, slice(220, 226), slice(20, 100))
    assert len(detect_clusters(Image(barred, PX_A), exclude_border=False)) == 1
    (plain,) = classify(Image(decahedron, PX_A))
    (r,) = classify(Image(barred, PX_A))
    assert plain.reason is None and (r.label, r.reason) == (plain.label, None)
    assert r.diameter_nm == pytest.approx(plain.diameter_nm, rel=0.01)


def test_a_bar_in_the_crop_is_not_shown_to_the_network(decahedron):
    (d,) = detect_clusters(Image(decahedron, PX_A), exclude_border=False)
    barred = _with_bar(decahedron, slice(200, 206), slice(60, 180))  # inside the 38 Å field
    plain = crop_cluster(Image(decahedron, PX_A), d, 0.4, 96)
    crop = crop_cluster(Image(barred, PX_A), d, 0.4, 96)
    assert crop.max() <= plain.max() + 1e-3  # the bar's white is gone
    assert np.abs(crop - plain).mean() < 0.02 * float(plain.max())


def test_a_bar_touching_the_particle_cuts_it(decahedron):
    from clusterspy.domain import cut_by_edge

    (d,) = detect_clusters(Image(decahedron, PX_A), exclude_border=False)
    below = d.bbox[2] + 1  # right under the detected region: over the particle's faint rim
    barred = _with_bar(decahedron, slice(below, below + 6), slice(80, 160))
    (b,) = detect_clusters(Image(barred, PX_A), exclude_border=False)
    assert cut_by_edge(b.bbox, b.diameter_A / PX_A, barred.shape, b.fill_gap_px)


@pytest.mark.shared
@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data")
def test_statstem_pb_with_a_scale_bar_in_its_corner_stays_fcc():
    from PIL import Image as PILImage
    from PIL import ImageDraw

    from clusterspy.predict import classify

    z = np.load(SHARED / "real_atomic" / "Pb_fcc_statstem.npz")
    data = z["image"].astype(np.float32)
    pic = PILImage.fromarray((255 * (data - data.min()) / (data.max() - data.min())).astype(np.uint8))
    draw = ImageDraw.Draw(pic)
    draw.rectangle((250, 270, 295, 275), fill=255)  # a 1 nm bar (45 px at 0.22 Å/px) and its label
    draw.text((262, 255), "1 nm", fill=255)
    (r,) = classify(Image(np.asarray(pic, np.float32), float(z["pixel_size_A"])))
    assert (r.label, r.reason) == ("fcc", None)
