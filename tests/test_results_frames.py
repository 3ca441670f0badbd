"""Results as tables: classify → ClusterResults (still a list) → pandas DataFrame → back, values equal;
classify_series → a DataFrame indexed by frame."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

import clusterspy
from clusterspy.errors import MissingDependencyError
from clusterspy.isomers import CLASSES
from clusterspy.predict import RESULT_COLUMNS, ClusterResult, ClusterResults

pd = pytest.importorskip("pandas")

DATA = Path(__file__).resolve().parents[1] / "src" / "clusterspy" / "data"

def field(seed: int = 0, pixel_A: float = 0.25, n: int = 256) -> np.ndarray:
    """Four separate simulated clusters (2 nm discs of 3.3 Å fringes) with Poisson noise, HAADF."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n] * pixel_A
    img = np.full((n, n), 50.0)
    fringes = 0.6 + 0.4 * np.clip(np.cos(2 * np.pi * xx / 3.3) * np.cos(2 * np.pi * yy / 3.3), 0, None) ** 2
    for cx, cy in [(16, 16), (48, 16), (16, 48), (46, 46)]:
        r = np.hypot(xx - cx, yy - cy)
        img += 600.0 * fringes / (1.0 + np.exp((r - 10.0) / 0.8))
    return rng.poisson(img).astype(np.float32)


def results_from_dataframe(df) -> list[ClusterResult]:
    """Rebuild the results from the DataFrame's rows alone (NaN → None), for the round trip."""
    def num(v):
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    def text(v):
        return None if pd.isna(v) else str(v)

    out = []
    for row in df.itertuples(index=False):
        d = row._asdict()
        probs = {c: num(d[f"p_{c}"]) for c in CLASSES}
        out.append(ClusterResult(
            file=text(d["file"]), frame=int(d["frame"]), cluster=int(d["cluster"]), x_px=float(d["x_px"]),
            y_px=float(d["y_px"]), label=text(d["label"]), confidence=num(d["confidence"]),
            probabilities=None if None in probs.values() else probs, diameter_nm=num(d["diameter_nm"]),
            reason=text(d["reason"]), ood_distance=num(d["ood_distance"]), model=text(d["model"])))
    return out


@pytest.fixture(scope="module")
def results() -> ClusterResults:
    return clusterspy.classify(field(), pixel_size_A=0.25, file="field")


def test_classify_returns_a_list_with_a_table(results):
    assert isinstance(results, list) and isinstance(results, ClusterResults)
    assert len(results) == 4 and results == list(results)
    table = results.table()
    assert tuple(table) == RESULT_COLUMNS
    assert table["label"] == [r.label for r in results]
    assert table["diameter_nm"] == [r.diameter_nm for r in results]


def test_dataframe_round_trip(results):
    df = results.to_dataframe()
    assert list(df.columns) == list(RESULT_COLUMNS) and len(df) == len(results)
    assert df["diameter_nm"].dtype == float and df["p_fcc"].dtype == float
    assert results_from_dataframe(df) == list(results)


def test_dataframe_of_clusters_never_shown_to_the_network():
    # the left clusters cut by the field's edge -> unknown, no probabilities (NaN in the frame)
    res = clusterspy.classify(field()[:, 20:], pixel_size_A=0.25)
    df = res.to_dataframe()
    unseen = df[df["reason"] == "cut_by_edge"]
    assert len(unseen) == 2 and (df["reason"].isna()).sum() == 2
    assert unseen[["confidence", *(f"p_{c}" for c in CLASSES)]].isna().all().all()
    assert (unseen["label"] == "unknown").all()
    assert results_from_dataframe(df) == list(res)


def test_missing_pandas_is_one_line(results, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"clusterspy\[tables\]"):
        results.to_dataframe()


def test_series_dataframe_indexed_by_frame():
    series = sorted(DATA.glob("*series*.npz"))
    if not series:
        pytest.skip("no example series shipped")
    res = clusterspy.classify_series(series[0], report=False, n_boot=50)
    df = res.to_dataframe()
    assert df.index.name == "frame" and len(df) == len(res)
    np.testing.assert_array_equal(df.index.to_numpy(), res.frames["frame"])
    for col in ("cluster", "label", "smoothed_label", "confidence", "diameter_nm", "time_s"):
        got, want = df[col].to_numpy(), np.asarray(res.frames[col])
        if want.dtype.kind == "f":
            np.testing.assert_array_equal(got.astype(float), want)
        else:
            assert list(got) == list(want)
    f0 = int(res.frames["frame"][0])  # one cluster in the example: a frame is one row
    assert df.loc[f0, "label"] == res.frames["label"][0] and df.loc[f0, "x_px"] == res.frames["x_px"][0]


def test_results_csv_has_the_columns_of_the_table():
    """``results.csv`` (workflows) and :meth:`ClusterResults.table` (predict) name the same columns:
    two definitions, one list (the ``model`` column was added to both)."""
    from clusterspy import workflows

    assert workflows.RESULT_COLUMNS == RESULT_COLUMNS
    assert RESULT_COLUMNS[-2:] == ("model", "pixel_size_factor")
