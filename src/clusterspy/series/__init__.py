"""Series of frames of the same cluster(s): labels per frame, HMM smoothing and statistics.

- :func:`classify_series` — read a multi-frame file lazily, track each cluster, classify every frame
  in batches, smooth the labels with an isomer HMM and write ``frames.csv`` and ``summary.json``
  (resumable exactly; the figures and ``report.html`` are drawn one layer up, by
  :func:`clusterspy.workflows.write_series_report`).
- :mod:`clusterspy.series.hmm` — the hidden Markov model (forward–backward, Viterbi, Baum–Welch).
- :mod:`clusterspy.series.stats` — proportions with block-bootstrap CIs, transition counts, CTMC
  rates, dwell times.
- :mod:`clusterspy.series.tracking` — nearest-neighbour linking of detections, sharpness (blur).

The pieces :func:`classify_series` composes, one job each: :mod:`~clusterspy.series.source` (frames
through :class:`clusterspy.io.Series`, the input's identity), :mod:`~clusterspy.series.per_frame`
(detection, tracking, blur test, batched inference), :mod:`~clusterspy.series.windows` (detection
around tracked clusters), :mod:`~clusterspy.series.model_view` (what the run needs of the model),
:mod:`~clusterspy.series.frames` (``frames.csv``), :mod:`~clusterspy.series.checkpoint` and
:mod:`~clusterspy.series.manifest` (``run.json``: exact resume), :mod:`~clusterspy.series.summary`
(HMM smoothing and label statistics) and :mod:`~clusterspy.series.result` (:class:`SeriesResult`).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "classify_series": "clusterspy.series.classify",
    "SeriesResult": "clusterspy.series.result",
    "summarize_labels": "clusterspy.series.summary",
    "read_frames_csv": "clusterspy.series.frames",
    "smooth": "clusterspy.series.hmm",
    "sticky_transition_matrix": "clusterspy.series.hmm",
    "proportions_ci": "clusterspy.series.stats",
    "transition_counts": "clusterspy.series.stats",
    "ctmc_rates": "clusterspy.series.stats",
    "dwell_times": "clusterspy.series.stats",
    "Tracker": "clusterspy.series.tracking",
    "sharpness": "clusterspy.series.tracking",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'clusterspy.series' has no attribute {name!r}")
