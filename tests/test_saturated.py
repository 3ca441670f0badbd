"""Saturated clusters: a plateau of the image's maximum over a cluster's brightest columns (a saturated
detector, or an export that stretched the contrast and clipped the highlights) withdraws its label
(issue #12; a newcomer's 8-bit exports of 3.8–4.1 nm decahedra got fcc 0.94–1.00)."""

from __future__ import annotations

import numpy as np
import pytest

from clusterspy.domain import SATURATED_MIN_SHARE, saturated_plateau, saturated_share
from clusterspy.image import Image
from helpers import SHARED


def _stretched(data: np.ndarray, high_percentile: float) -> np.ndarray:
    """``data`` mapped to 8 bits between its 1st and ``high_percentile``-th percentiles (clipped)."""
    lo, hi = np.percentile(data, [1, high_percentile])
    return (np.clip((data - lo) / (hi - lo), 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def decahedron() -> np.ndarray:
    """A fast-simulated Au309 decahedron in vacuum, 0.2 Å/px, Poisson counts."""
    from clusterspy.simulation import Acquisition, Microscope, simulate
    from clusterspy.structures import cluster

    rng = np.random.default_rng(4)
    atoms = cluster("decahedral", 309, "Au", rng=rng)
    img = simulate(atoms, Microscope(), pixel_size=0.2, extent=40.0, rng=rng,
                   acquisition=Acquisition(dose_e_per_A2=1e4))
    return np.asarray(img.data, np.float32)


def test_a_plateau_is_the_maximum_reached_by_neighbours_not_by_a_lone_pixel():
    data = np.zeros((8, 8), np.float32)
    data[1, 1] = 9.0  # a lone maximum: noise
    assert not saturated_plateau(data).any()
    data[5, 5:7] = 9.0  # two neighbours at the maximum: a plateau
    plateau = saturated_plateau(data)
    assert plateau.sum() == 2 and not plateau[1, 1]
    assert saturated_share(data, (4, 4, 8, 8)) == pytest.approx(2 / 16)
    assert saturated_share(data, (0, 0, 3, 3)) == 0.0


def test_raw_counts_have_no_plateau(decahedron):
    assert saturated_plateau(decahedron).sum() <= 2


@pytest.mark.parametrize("high", [85.0, 90.0, 95.0])
def test_a_cluster_clipped_by_a_contrast_stretch_is_saturated(decahedron, high):
    from clusterspy.predict import classify

    (r,) = classify(Image(_stretched(decahedron, high).astype(np.float32), 0.2))
    assert (r.label, r.reason) == ("unknown", "saturated")


def test_a_light_stretch_keeps_the_label(decahedron):
    # ImageJ's auto contrast saturates 0.35 % of the pixels; a 99.7th-percentile stretch keeps the label.
    from clusterspy.detection import detect_clusters
    from clusterspy.predict import classify

    (raw,) = classify(Image(decahedron, 0.2))
    data = _stretched(decahedron, 99.7)
    (d,) = detect_clusters(Image(data.astype(np.float32), 0.2), exclude_border=False)
    assert 0 < saturated_share(data, d.bbox) < SATURATED_MIN_SHARE
    (r,) = classify(Image(data.astype(np.float32), 0.2))
    assert raw.reason is None and (r.label, r.reason) == (raw.label, None)


def test_the_cli_says_why(decahedron, tmp_path, capsys):
    from clusterspy.cli import main as cli

    path = tmp_path / "stretched.npz"
    np.savez(path, image=_stretched(decahedron, 90.0), pixel_size_A=0.2)
    cli(["classify", str(path)])
    captured = capsys.readouterr()
    assert "saturated" in captured.out
    assert "1 cluster saturated: a plateau of the image's maximum" in captured.err


@pytest.mark.shared
@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data")
@pytest.mark.parametrize("name", ["PtIr_fcc_statstem", "Pb_fcc_statstem"])
def test_real_particles_stretched_lightly_stay_fcc_and_clipped_hard_are_saturated(name):
    from clusterspy.predict import classify

    z = np.load(SHARED / "real_atomic" / f"{name}.npz")
    data, px = z["image"].astype(np.float32), float(z["pixel_size_A"])
    (light,) = classify(Image(_stretched(data, 99.5).astype(np.float32), px))
    assert (light.label, light.reason) == ("fcc", None)
    (hard,) = classify(Image(_stretched(data, 90.0).astype(np.float32), px))
    assert (hard.label, hard.reason) == ("unknown", "saturated")
