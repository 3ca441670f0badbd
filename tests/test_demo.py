"""The built-in example and ``clusterspy demo``: real model, real files, every output written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from clusterspy.isomers import CLASSES, UNKNOWN
from clusterspy.workflows import EXAMPLE_SERIES, run_demo


def test_example_series_is_shipped_and_calibrated() -> None:
    with np.load(EXAMPLE_SERIES) as example:
        frames = example["frames"]
        assert frames.ndim == 3 and frames.shape[0] >= 20
        assert 0.05 <= float(example["pixel_size_A"]) <= 0.5
        labels = [str(t) for t in example["true_labels"]]
        assert len(labels) == frames.shape[0]
        assert set(labels) <= set(CLASSES) and len(set(labels)) >= 3
        metadata = json.loads(str(example["metadata"]))
        assert "seed" in metadata
    assert EXAMPLE_SERIES.stat().st_size < 5e6


@pytest.mark.slow  # the whole pipeline on the example series: ~30–75 s on 2 busy cores
def test_demo_writes_results_and_report(tmp_path: Path) -> None:
    report = run_demo(tmp_path / "demo")
    assert report.is_file() and report.suffix == ".html"
    html = report.read_text(encoding="utf-8")
    assert "<img" in html and "data:image/png;base64," in html
    with open(tmp_path / "demo" / "results.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with np.load(EXAMPLE_SERIES) as example:
        n_frames = example["frames"].shape[0]
    assert len(rows) == n_frames
    assert {row["label"] for row in rows} <= {*CLASSES, UNKNOWN}
    assert all(row["true_label"] in CLASSES for row in rows)
    # the shipped model must get the (easy, simulated) example mostly right
    smoothed = [row["smoothed_label"] for row in rows]
    accuracy = np.mean([s == row["true_label"] for s, row in zip(smoothed, rows, strict=True)])
    assert accuracy >= 0.7, accuracy
