"""Property-based tests (Hypothesis): invariants that must hold for any input, not for one example.

- detection follows a translated cluster (centroid shifts with it, within a pixel; same size);
- the HMM's ``forward_backward`` and ``viterbi`` agree with brute force over every state path;
- io round trips: what ``write_*`` writes reads back unchanged, an ``.npz`` image keeps data and
  pixel size [Å/px];
- ``units_to_angstrom`` gives the same Å/px for the same length in any unit.
"""

from __future__ import annotations

import csv
import itertools
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from clusterspy.detection import detect_clusters
from clusterspy.image import Image, units_to_angstrom
from clusterspy.io import read_image, write_bytes_atomic, write_csv, write_json, write_text_atomic
from clusterspy.series.hmm import forward_backward, viterbi

FAST = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
#: file round trips: each example writes (and fsyncs) a file
FILES = settings(FAST, max_examples=12)

# --------------------------------------------------------------------------- detection


def _field(cx: float, cy: float, n: int = 160, sigma_px: float = 8.0) -> np.ndarray:
    """A noisy ``(n, n)`` field with one Gaussian cluster centred at column ``cx``, row ``cy`` [px]."""
    yy, xx = np.mgrid[:n, :n]
    img = 100.0 + 900.0 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma_px ** 2))
    return img + np.random.default_rng(0).normal(0, 10.0, img.shape)


@FAST
@given(dx=st.floats(-30, 30), dy=st.floats(-30, 30))
def test_detection_follows_a_translated_cluster(dx: float, dy: float) -> None:
    pixel_A = 0.5
    ref = detect_clusters(Image(_field(80.0, 80.0), pixel_A))
    moved = detect_clusters(Image(_field(80.0 + dx, 80.0 + dy), pixel_A))
    assert len(ref) == len(moved) == 1
    a, b = ref[0], moved[0]
    assert abs((b.x_px - a.x_px) - dx) < 1.0 and abs((b.y_px - a.y_px) - dy) < 1.0
    assert b.diameter_A == pytest.approx(a.diameter_A, rel=0.1)


# --------------------------------------------------------------------------- HMM


@st.composite
def _chains(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Short random chains: log emissions ``(T, K)``, a row-stochastic ``(K, K)``, an initial ``(K,)``."""
    t_len = draw(st.integers(1, 5))
    k = draw(st.integers(2, 3))
    unit = st.floats(0.01, 1.0)
    le = np.log(draw(hnp.arrays(float, (t_len, k), elements=unit)))
    a = draw(hnp.arrays(float, (k, k), elements=unit))
    pi = draw(hnp.arrays(float, (k,), elements=unit))
    return le, a / a.sum(axis=1, keepdims=True), pi / pi.sum()


def _path_log_probs(le: np.ndarray, a: np.ndarray, pi: np.ndarray) -> dict[tuple[int, ...], float]:
    t_len, k = le.shape
    out = {}
    for path in itertools.product(range(k), repeat=t_len):
        lp = np.log(pi[path[0]]) + le[0, path[0]]
        for t in range(1, t_len):
            lp += np.log(a[path[t - 1], path[t]]) + le[t, path[t]]
        out[path] = float(lp)
    return out


@settings(max_examples=60, deadline=None)
@given(_chains())
def test_forward_backward_and_viterbi_match_brute_force(chain) -> None:
    le, a, pi = chain
    t_len, k = le.shape
    paths = _path_log_probs(le, a, pi)
    logps = np.array(list(paths.values()))
    loglik = float(np.log(np.exp(logps).sum()))
    weights = np.exp(logps - loglik)
    posterior = np.zeros((t_len, k))
    xi = np.zeros((k, k))
    for w, path in zip(weights, paths, strict=True):
        posterior[np.arange(t_len), path] += w
        for t in range(t_len - 1):
            xi[path[t], path[t + 1]] += w
    post, ll, expected = forward_backward(le, a, pi)
    assert ll == pytest.approx(loglik, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(post, posterior, atol=1e-9)
    np.testing.assert_allclose(expected, xi, atol=1e-9)
    best = viterbi(le, a, pi)
    assert paths[tuple(int(s) for s in best)] == pytest.approx(logps.max(), abs=1e-9)


# --------------------------------------------------------------------------- io round trips

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@FILES
@given(data=st.binary(max_size=4096))
def test_write_bytes_atomic_round_trip(tmp_path, data: bytes) -> None:
    path = write_bytes_atomic(tmp_path / "blob.bin", data)
    assert path.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@FILES
@given(text=st.text(max_size=500))
def test_write_text_atomic_round_trip(tmp_path, text: str) -> None:
    path = write_text_atomic(tmp_path / "t.txt", text)
    assert path.read_bytes().decode("utf-8") == text


@FILES
@given(obj=st.dictionaries(st.text(max_size=8), _json_values, max_size=6))
def test_write_json_round_trip(tmp_path, obj: dict) -> None:
    path = write_json(obj, tmp_path / "o.json")
    assert json.loads(path.read_text(encoding="utf-8")) == obj


@FILES
@given(rows=st.lists(st.fixed_dictionaries({
    "file": st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12),
    "n": st.integers(-1000, 1000),
    "p": st.fixed_dictionaries({"fcc": st.floats(0, 1), "ico": st.floats(0, 1)}),
}), min_size=1, max_size=5))
def test_write_csv_round_trip_flattens_nested_columns(tmp_path, rows: list) -> None:
    path = write_csv(rows, tmp_path / "r.csv")
    with open(path, newline="", encoding="utf-8") as fh:
        back = list(csv.DictReader(fh))
    assert [sorted(r) for r in back] == [["file", "n", "p_fcc", "p_ico"]] * len(rows)
    for row, got in zip(rows, back, strict=True):
        assert got["file"] == row["file"] and int(got["n"]) == row["n"]
        assert float(got["p_fcc"]) == row["p"]["fcc"] and float(got["p_ico"]) == row["p"]["ico"]


@FILES
@given(data=hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, min_side=8, max_side=40),
                       elements=st.floats(-1e4, 1e4, width=32)),
       pixel_A=st.floats(0.01, 100.0))
def test_npz_image_round_trip(tmp_path, data: np.ndarray, pixel_A: float) -> None:
    if data.max() == data.min():
        data = data.copy()
        data.flat[0] += 1.0  # a constant image is refused on purpose
    path = tmp_path / "im.npz"
    np.savez(path, image=data, pixel_size_A=pixel_A)
    im = read_image(path)
    assert im.data.dtype == np.float32 and np.array_equal(im.data, data)
    assert im.pixel_size_A == pixel_A and im.metadata["pixel_size_source"] == "file"


# --------------------------------------------------------------------------- units

#: how many of each unit make one nanometre
_PER_NM = {"m": 1e-9, "mm": 1e-6, "µm": 1e-3, "um": 1e-3, "nm": 1.0, "Å": 10.0, "angstrom": 10.0,
           "pm": 1000.0}


@settings(max_examples=200, deadline=None)
@given(nm=st.floats(1e-6, 1e6), unit=st.sampled_from(sorted(_PER_NM)))
def test_units_to_angstrom_same_length_in_any_unit(nm: float, unit: str) -> None:
    expected = nm * 10.0
    assert units_to_angstrom(nm * _PER_NM[unit], unit) == pytest.approx(expected, rel=1e-12)
    assert units_to_angstrom(nm * _PER_NM[unit], f" {unit.upper()} ") == pytest.approx(expected, rel=1e-12)
