"""Two overlapping particles measured as one cluster are ``elongated``, not labelled (issue #12; a
newcomer's pairs of 2.8 nm particles of different isomers, centres 10–18 Å apart, got one isomer with
confidence ≥ 0.96 in 15 of 25)."""

from __future__ import annotations

import numpy as np
import pytest

from clusterspy.detection import Detection, detect_clusters, elongation
from clusterspy.domain import ELONGATION_MAX, cluster_reasons
from clusterspy.image import Image


def _disc(n: int, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    return (yy / ry) ** 2 + (xx / rx) ** 2 <= 1


@pytest.mark.parametrize(("ry", "rx", "expected"), [(20, 20, 1.0), (10, 20, 2.0), (30, 15, 2.0)])
def test_elongation_is_the_axis_ratio_of_a_region(ry, rx, expected):
    rows, cols = np.nonzero(_disc(81, ry, rx))
    assert elongation(rows, cols) == pytest.approx(expected, rel=0.03)


def test_a_tilted_ellipse_has_the_same_elongation():
    yy, xx = np.mgrid[:101, :101] - 50.0
    c, s = np.cos(np.radians(35)), np.sin(np.radians(35))
    u, v = c * xx + s * yy, -s * xx + c * yy
    rows, cols = np.nonzero((u / 30) ** 2 + (v / 15) ** 2 <= 1)
    assert elongation(rows, cols) == pytest.approx(2.0, rel=0.03)


def test_a_line_and_a_pixel_stay_finite():
    assert np.isfinite(elongation(np.zeros(10), np.arange(10.0)))
    assert elongation(np.zeros(1), np.zeros(1)) == 1.0


def _blobs(centres_A: list[tuple[float, float]], px_A: float = 0.3, n: int = 240, seed: int = 0
           ) -> Image:
    """Round particles of 28 Å (projected thickness of a sphere), Poisson counts."""
    yy, xx = (np.mgrid[:n, :n] + 0.5) * px_A
    thick = np.zeros((n, n))
    for cx, cy in centres_A:
        thick += np.sqrt(np.clip(14.0 ** 2 - (xx - cx) ** 2 - (yy - cy) ** 2, 0, None))
    counts = np.random.default_rng(seed).poisson(5.0 + 4.0 * thick).astype(np.float32)
    return Image(counts, px_A)


def test_the_detector_measures_an_overlapping_pair_as_elongated_and_a_particle_as_round():
    one = detect_clusters(_blobs([(36.0, 36.0)]))
    pair = detect_clusters(_blobs([(28.0, 36.0), (44.0, 36.0)]))  # centres 16 Å apart: one region
    assert len(one) == 1 and one[0].elongation < 1.15
    assert len(pair) == 1 and pair[0].elongation > ELONGATION_MAX


def test_an_elongated_cluster_gets_its_reason_before_inference():
    image = _blobs([(36.0, 36.0)])
    base = dict(x_px=120.0, y_px=120.0, bbox=(73, 73, 167, 167), diameter_A=24.0, area_px=7000)
    domain = {"diameter_nm": [1.0, 8.0]}
    (long,) = cluster_reasons(image, [Detection(**base, elongation=ELONGATION_MAX + 0.1)], domain,
                              check_resolution=False)
    (round_,) = cluster_reasons(image, [Detection(**base, elongation=1.1)], domain, check_resolution=False)
    assert (long, round_) == ("elongated", None)


@pytest.fixture(scope="module")
def pair_image() -> np.ndarray:
    """A decahedron and an icosahedron of 561 Au atoms, the second stacked above the first and shifted
    16 Å across the beam: one region to the detector (fast simulator, 0.2 Å/px, 10⁴ e⁻/Å²)."""
    from ase import Atoms

    from clusterspy.simulation import Acquisition, simulate
    from clusterspy.structures import cluster

    a = cluster("decahedral", 561, "Au", rng=3, orientation="5-fold")
    b = cluster("icosahedral", 561, "Au", rng=4, orientation="2-fold")
    pa, pb = a.get_positions() - a.get_positions().mean(0), b.get_positions() - b.get_positions().mean(0)
    pb[:, 2] += pa[:, 2].max() - pb[:, 2].min() + 3.0
    pb[:, 0] += 16.0
    atoms = Atoms(numbers=np.r_[a.numbers, b.numbers], positions=np.r_[pa, pb])
    return simulate(atoms, pixel_size=0.2, extent=80.0, rng=1,
                    acquisition=Acquisition(dose_e_per_A2=1e4)).data


def test_two_overlapping_particles_get_no_isomer(pair_image):
    from clusterspy.predict import classify

    (r,) = classify(pair_image, pixel_size_A=0.2)
    assert (r.label, r.reason) == ("unknown", "elongated")


def test_the_cli_says_why(tmp_path, pair_image):
    from typer.testing import CliRunner

    from clusterspy.cli import app

    np.save(tmp_path / "pair.npy", pair_image)
    res = CliRunner().invoke(app, ["classify", str(tmp_path / "pair.npy"), "--pixel-size", "0.2",
                                   "--format", "json"])
    assert res.exit_code == 0, res.output
    assert '"reason": "elongated"' in res.stdout
    assert "two overlapping or coalescing particles" in res.stderr
