"""``classify_series``: a label per frame for every cluster of a video, streamed and resumable."""

from __future__ import annotations

import csv
import heapq
import io
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.errors import ConfigError, NoClusterFoundError
from clusterspy.image import Image, check_pixel_size
from clusterspy.io import write_text_atomic
from clusterspy.isomers import CLASSES, UNKNOWN

__all__ = [
    "BLURRED",
    "FRAME_COLUMNS",
    "LOST",
    "SeriesResult",
    "classify_series",
    "read_frames_csv",
    "summarize_labels",
]

log = logging.getLogger(__name__)

#: Label of a frame where a tracked cluster was not found.
LOST = "lost"
#: Label of a frame too blurred to classify.
BLURRED = "blurred"
#: Frames of a track's running sharpness median (blur test).
BLUR_WINDOW = 7
#: Columns of ``frames.csv``, in order.
FRAME_COLUMNS: tuple[str, ...] = (
    "frame", "time_s", "cluster", "x_px", "y_px", "label", "smoothed_label", "confidence",
    *(f"p_{c}" for c in CLASSES), "diameter_nm", "reason",
)
#: Reasons decided before inference (:mod:`clusterspy.domain`): such a frame carries no evidence,
#: and its smoothed label stays "unknown" — the HMM never labels what the model could not see.
_NO_EVIDENCE = ("too_small", "too_large", "cut_by_edge", "neighbour_in_view", "not_resolved",
                "out_of_distribution")
_STATE_FILE = ".series_state.json"


@dataclass
class SeriesResult:
    """Result of :func:`classify_series`.

    Attributes
    ----------
    frames : dict of str to numpy.ndarray
        The per-frame table, one array per column of :data:`FRAME_COLUMNS` (one row per frame and
        cluster; floats NaN where empty).
    summary : dict
        The content of ``summary.json``.
    out : pathlib.Path or None
        Output folder, if one was written.
    thumbnails : dict
        ``{isomer: [crop arrays]}`` — the most confident crops per isomer (this run only).
    """

    frames: dict[str, np.ndarray]
    summary: dict
    out: Path | None = None
    thumbnails: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames["frame"])

    def rows(self) -> Iterator[dict[str, Any]]:
        """Iterate over the per-frame table as dicts."""
        for i in range(len(self)):
            yield {k: v[i] for k, v in self.frames.items()}

    @property
    def report_path(self) -> Path | None:
        """``out/report.html`` if it was written."""
        if self.out is None:
            return None
        p = self.out / "report.html"
        return p if p.exists() else None

    def describe(self) -> str:
        """A short plain-text summary (what ``clusterspy series`` prints)."""
        s = self.summary
        lines = [f"{s['source']}: {s['n_frames']} frames, {s['n_clusters']} cluster(s), "
                 f"frame time {s['frame_time_s'] or 'unknown'} s, model {s['model']['id']}"]
        for cl in s["clusters"]:
            pr = cl["smoothed"]["proportions"]
            parts = []
            for c in CLASSES:
                v, (lo, hi) = pr[c]["value"], pr[c]["ci95"]
                if v is not None:
                    lo_s = "?" if lo is None else f"{lo:.2f}"
                    hi_s = "?" if hi is None else f"{hi:.2f}"
                    parts.append(f"{c} {v:.2f} [{lo_s}, {hi_s}]")
            lines.append(
                f"cluster {cl['cluster']}: frames {cl['first_frame']}–{cl['last_frame']}, "
                f"{cl['n_lost']} lost, {cl['n_blurred']} blurred, {cl['n_unknown']} unknown, "
                f"{cl['n_transitions_smoothed']} transitions (smoothed)")
            lines.append("  proportions (smoothed, 95% CI): " + "; ".join(parts))
        lines += [f"warning: {w}" for w in s["warnings"]]
        return "\n".join(lines)

    def cluster(self, cluster_id: int = 0) -> dict[str, np.ndarray]:
        """The per-frame table of one cluster."""
        m = self.frames["cluster"] == cluster_id
        return {k: v[m] for k, v in self.frames.items()}


# --------------------------------------------------------------------------------------- frames


def _open_frames(source: Any, pixel_size_A: float | None) -> tuple[Any, float | None, str]:
    """Return (sequence-or-iterable of Image, frame time or None, description)."""
    if isinstance(source, str | os.PathLike):
        from clusterspy.io import read_series

        series = read_series(source, pixel_size_A=pixel_size_A)
        return series, getattr(series, "frame_time_s", None), str(source)
    if isinstance(source, np.ndarray):
        if source.ndim != 3:
            raise ConfigError(f"an array series must be (frames, rows, cols), got {source.shape}")
        px = check_pixel_size(pixel_size_A)
        return _ArrayFrames(source, px), None, f"array{source.shape}"
    return source, getattr(source, "frame_time_s", None), type(source).__name__


class _ArrayFrames:
    """Lazy view of a (possibly memory-mapped) 3-D array as calibrated frames."""

    def __init__(self, data: np.ndarray, pixel_size_A: float) -> None:
        self.data = data
        self.pixel_size_A = pixel_size_A

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __getitem__(self, i: int) -> Image:
        return Image(np.asarray(self.data[i]), self.pixel_size_A, {"frame": int(i)})


def _read_only_map(a: Any) -> Any:
    """The ``mmap.mmap`` under a read-only ``numpy.memmap`` (or a view of one), else None."""
    for _ in range(8):
        if isinstance(a, np.memmap) and getattr(a, "mode", None) in ("r", "readonly"):
            return getattr(a, "_mmap", None)
        a = getattr(a, "base", None)
        if a is None:
            return None
    return None


#: Frames read from a memory-mapped file between two releases of its pages.
_RELEASE_EVERY = 16


def _iter_from(frames: Any, start: int, pixel_size_A: float | None) -> Iterator[tuple[int, Image]]:
    """Yield ``(index, Image)`` from ``start`` on.

    Frames of a read-only memory-mapped file (``.npy`` series) stay mapped once read, and the
    kernel counts them in the process's resident memory: every ``_RELEASE_EVERY`` frames the
    pages are handed back (``madvise(MADV_DONTNEED)``; they are clean file pages, re-read
    from the page cache if needed), so resident memory does not grow with the series length.
    """
    import mmap

    def as_image(f: Any, i: int) -> Image:
        if isinstance(f, Image):
            return f
        return Image(np.asarray(f), check_pixel_size(pixel_size_A), {"frame": i})

    def release(img: Image, i: int) -> None:
        if (i + 1) % _RELEASE_EVERY or not hasattr(mmap, "MADV_DONTNEED"):
            return
        mm = _read_only_map(img.data)
        if mm is not None:
            try:
                mm.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError):  # closed map or platform without madvise
                pass

    if hasattr(frames, "__getitem__") and hasattr(frames, "__len__"):
        for i in range(start, len(frames)):
            img = as_image(frames[i], i)
            yield i, img
            release(img, i)
    else:
        for i, f in enumerate(frames):
            if i >= start:
                img = as_image(f, i)
                yield i, img
                release(img, i)


# ------------------------------------------------------------------------------------- csv io


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float | np.floating):
        return "" if not np.isfinite(v) else f"{float(v):.6g}"
    return str(v)


def read_frames_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``frames.csv`` written by :func:`classify_series` into column arrays.

    Incomplete trailing lines (an interrupted write) are dropped.

    Returns
    -------
    dict of str to numpy.ndarray
        ``frame`` and ``cluster`` as int, ``label`` and ``smoothed_label`` as str, the rest float
        (NaN where empty).
    """
    cols: dict[str, list] = {c: [] for c in FRAME_COLUMNS}
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return _to_arrays(cols)
        if tuple(header) != FRAME_COLUMNS:
            raise ConfigError(f"{path} is not a ClusterSpy frames.csv (columns {header})")
        for row in reader:
            if len(row) != len(FRAME_COLUMNS) or row[5] == "":
                continue
            for c, v in zip(FRAME_COLUMNS, row, strict=True):
                cols[c].append(v)
    return _to_arrays(cols)


def _to_arrays(cols: dict[str, list]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for c, v in cols.items():
        if c in ("frame", "cluster"):
            out[c] = np.array([int(x) for x in v], dtype=np.int64)
        elif c in ("label", "smoothed_label", "reason"):
            out[c] = np.array(v, dtype=object)
        else:
            out[c] = np.array([float(x) if x not in ("", None) else np.nan for x in v], float)
    return out


def _write_csv_atomic(path: Path, frames: dict[str, np.ndarray]) -> None:
    """Write the per-frame table as ``frames.csv`` atomically."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(FRAME_COLUMNS)
    for i in range(len(frames["frame"])):
        w.writerow([_fmt(frames[c][i]) for c in FRAME_COLUMNS])
    write_text_atomic(path, buf.getvalue())


# ------------------------------------------------------------------------------- statistics


def _codes(labels: np.ndarray) -> np.ndarray:
    index = {c: i for i, c in enumerate(CLASSES)}
    return np.array([index.get(str(x), -1) for x in labels], dtype=int)


def summarize_labels(
    frames: np.ndarray,
    labels: np.ndarray,
    *,
    frame_time_s: float | None = None,
    n_boot: int = 2000,
    rng: np.random.Generator | int | None = None,
) -> dict:
    """Proportions with block-bootstrap CIs, transitions, rates and dwell times of one label series.

    Parameters
    ----------
    frames : numpy.ndarray
        ``(T,)`` frame indices (increasing; gaps are treated as unlabelled frames).
    labels : numpy.ndarray
        ``(T,)`` labels: isomer names; anything else (unknown, lost, blurred) is unlabelled.
    frame_time_s : float, optional
        Time between frames [s]; rates and dwell times in seconds need it.
    n_boot : int
        Bootstrap replicates.
    rng : numpy.random.Generator or int, optional
        Random generator or seed.

    Returns
    -------
    dict
        ``proportions`` ({isomer: {value, ci95, count}}), ``n_labelled``, ``n_excluded``,
        ``block_length_frames``, ``transition_counts`` (K×K, rows = from, order of ``classes``),
        ``transition_rates_per_s`` (K×K CTMC maximum-likelihood generator, or None),
        ``dwell_times`` ({isomer: {...}}).
    """
    from clusterspy.series.stats import (
        ctmc_rates,
        dwell_times,
        proportions_ci,
        transition_counts,
    )

    frames = np.asarray(frames, dtype=int)
    k = len(CLASSES)
    if len(frames):
        full = np.full(int(frames.max() - frames.min() + 1), -1)
        full[frames - frames.min()] = _codes(labels)
    else:
        full = np.zeros(0, int)
    pr = proportions_ci(full, k, n_boot=n_boot, rng=rng)
    tc = transition_counts(full, k)
    rates = None
    if frame_time_s and tc.sum() > 0:
        rates = ctmc_rates(tc, frame_time_s).tolist()
    dw = dwell_times(full, k)
    dwell = {}
    for c, d in zip(CLASSES, dw, strict=True):
        e = {
            "n_runs": d["n_runs"], "n_complete": d["n_complete"], "n_exits": d["n_exits"],
            "mean_complete_frames": _nan_none(d["mean_complete_frames"]),
            "mle_mean_frames": _nan_none(d["mle_mean_frames"]),
            "complete_frames": d["complete_frames"],
        }
        if frame_time_s:
            e["mean_complete_s"] = _nan_none(d["mean_complete_frames"] * frame_time_s)
            e["mle_mean_s"] = _nan_none(d["mle_mean_frames"] * frame_time_s)
        dwell[c] = e
    return {
        "proportions": {
            c: {"value": _nan_none(pr["proportion"][i]),
                "ci95": [_nan_none(pr["ci"][i, 0]), _nan_none(pr["ci"][i, 1])],
                "count": int(pr["counts"][i])}
            for i, c in enumerate(CLASSES)
        },
        "n_labelled": pr["n_labelled"],
        "n_excluded": pr["n_excluded"],
        "block_length_frames": _nan_none(pr["block_length_frames"]),
        "transition_counts": tc.tolist(),
        "transition_rates_per_s": rates,
        "dwell_times": dwell,
    }


def _nan_none(x: Any) -> Any:
    try:
        xf = float(x)
    except (TypeError, ValueError):
        return x
    return None if not np.isfinite(xf) else xf


# -------------------------------------------------------------------------------- the pipeline


def classify_series(
    source: Any,
    pixel_size_A: float | None = None,
    *,
    frame_time_s: float | None = None,
    model: Any = None,
    batch_size: int = 64,
    out: str | os.PathLike | None = None,
    resume: bool = True,
    stay: float = 0.95,
    transition: np.ndarray | None = None,
    learn_transitions: bool = False,
    max_jump_A: float | None = None,
    blur_threshold: float = 0.25,
    max_clusters: int | None = None,
    detect_kwargs: dict | None = None,
    detect: Callable | None = None,
    crop: Callable | None = None,
    temperature_K: float | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    n_thumbnails: int = 6,
    report: bool = True,
    explain: bool = True,
    full_detection_every: int = 10,
    progress: Callable[[int, int | None], None] | None = None,
    contrast: str = "auto",
    reporter: Callable[[SeriesResult, Any], Any] | None = None,
) -> SeriesResult:
    """Classify every frame of a series, track the clusters, smooth the labels and summarise.

    Behind ``clusterspy series PATH [--pixel-size Å] [--frame-time s] [--out DIR]``. Frames are read
    lazily and classified in batches of ``batch_size`` crops, so memory does not grow with the
    length of the series (only the per-frame table, a few numbers per frame, is held for the HMM).

    Parameters
    ----------
    source : str, os.PathLike, numpy.ndarray, or sequence/iterable of Image
        A multi-frame file or folder (read with :func:`clusterspy.io.read_series`), a 3-D array
        ``(frames, rows, cols)`` (may be a ``numpy.memmap``; needs ``pixel_size_A``), or any
        sequence or iterable of :class:`~clusterspy.image.Image` / 2-D arrays.
    pixel_size_A : float, optional
        Pixel size [Å/px] when the file has none (or for arrays).
    frame_time_s : float, optional
        Time between frames [s]; default from the file's metadata. Needed for ``time_s``, rates
        per second and dwell times in seconds.
    model : object, optional
        Anything with ``card`` (dict with ``classes``, ``pixel_size_A``, ``crop_px``, optional
        ``unknown_threshold`` and ``id``) and ``predict_crops(crops (N, c, c)) -> (N, 4)``
        calibrated probabilities; default :func:`clusterspy.predict.load_model()`.
    batch_size : int
        Crops per call to ``predict_crops``.
    out : str or os.PathLike, optional
        Output folder. Writes ``frames.csv`` (appended and flushed batch by batch while running,
        rewritten atomically with the smoothed labels at the end), ``summary.json``, ``strip.png``
        (``strip_cluster<i>.png`` for further clusters) and ``report.html``.
    resume : bool
        With ``out``: if ``frames.csv`` is there from an interrupted run of the same source and
        model, keep its frames and continue after them. ``False`` starts afresh.
    stay : float
        Per-frame probability of staying in the same isomer in the HMM's sticky prior.
    transition : numpy.ndarray, optional
        ``(4, 4)`` HMM transition matrix (overrides ``stay``).
    learn_transitions : bool
        Learn the transition matrix of each cluster's series with Baum–Welch (EM).
    max_jump_A : float, optional
        Largest move [Å] of a cluster between frames for the tracker to link it; default the
        median diameter of the first frame's detections (or 50 px).
    blur_threshold : float
        A frame whose crop sharpness (:func:`clusterspy.series.tracking.sharpness`) is below this
        fraction of the running median of its track's last :data:`BLUR_WINDOW` frames is marked
        ``blurred`` and not classified (0 switches the test off).
        ``0`` disables the test.
    max_clusters : int, optional
        Keep at most this many tracks (the first found).
    detect_kwargs : dict, optional
        Keyword arguments for :func:`clusterspy.detection.detect_clusters`.
    detect, crop : callable, optional
        Replacements for :func:`clusterspy.detection.detect_clusters` and
        :func:`clusterspy.detection.crop_cluster` (same signatures).
    temperature_K : float, optional
        Specimen temperature [K], recorded in ``summary.json`` for :mod:`clusterspy.thermo`.
    n_boot : int
        Bootstrap replicates for the proportions' CIs.
    seed : int
        Seed of the bootstrap (recorded in ``summary.json``).
    n_thumbnails : int
        Most confident crops kept per isomer for the report.
    report : bool
        Write ``strip.png`` and ``report.html`` (with ``out``).
    full_detection_every : int
        With the default detector, frames in which every tracked cluster was found in the
        previous frame are searched only in a window around each cluster (3 diameters wide);
        the whole frame is searched every ``full_detection_every`` frames, and whenever a window
        search misses a cluster — so new and lost clusters are still caught. ``1`` searches the
        whole frame every time.
    explain : bool
        Overlay an occlusion-saliency map (:func:`clusterspy.explain.occlusion_saliency`) on
        the report's thumbnails: where the network looked to choose the isomer.
    progress : callable, optional
        Called as ``progress(frames_done, n_frames_or_None)`` after each batch.
    contrast : {"auto", "haadf"}
        ``"auto"`` refuses a series whose first frame looks like bright field (see
        :func:`clusterspy.domain.check_image`); ``"haadf"`` trusts that it is HAADF.
    reporter : callable, optional
        ``reporter(result, explain_model_or_None)`` writes the figures and ``report.html`` into
        ``result.out`` (with ``report`` and ``out``); default the ``"series"`` reporter of
        :mod:`clusterspy.series.reporting`, :func:`clusterspy.workflows.write_series_report`.

    Notes
    -----
    In the HMM, lost and blurred frames carry no emission (uninformative); ``unknown`` frames keep
    their calibrated probabilities as soft evidence (near-flat for a truly ambiguous frame), so the
    smoothed label of an unknown frame is decided by its neighbours. Thumbnails (report) come from
    the frames classified in this run only (not from frames kept from an interrupted run).
    Without ``out`` the per-frame rows are held in memory; give ``out`` for very long series.

    Returns
    -------
    SeriesResult
        Per-frame table (``label`` raw: an isomer, ``unknown`` below the model's confidence
        threshold, ``lost`` or ``blurred``; ``smoothed_label`` from the HMM's Viterbi path, with
        lost/blurred frames kept as such) and summary.

    Raises
    ------
    ConfigError
        Bad arguments, or ``out`` holds a run of another source/model and ``resume`` is true.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    if model is None:
        from clusterspy.predict import load_model

        model = load_model()
    card = dict(getattr(model, "card", {}) or {})
    classes = tuple(card.get("classes", CLASSES))
    if tuple(classes) != CLASSES:
        raise ConfigError(f"the model's classes {classes} differ from ClusterSpy's {CLASSES}")
    model_px = float(card.get("pixel_size_A", 0) or 0)
    crop_px = int(card.get("crop_px", 64))
    model_card = getattr(model, "card", None)
    domain = model_card.domain if hasattr(model_card, "domain") else None

    from clusterspy.domain import judge_probabilities, particle_diameter_A

    def crop_pixel_A(d: Any, image: Any) -> float:
        if hasattr(model, "crop_pixel_size_A"):
            return float(model.crop_pixel_size_A(particle_diameter_A(getattr(d, "diameter_A", 0.0) or 0.0)))
        return model_px or image.pixel_size_A
    threshold = float(card.get("unknown_threshold", 0.0) or 0.0)
    sha = card.get("weights_sha256") or card.get("sha256")
    model_id = card.get("id") or (
        f"{card.get('name', 'model')}@{sha[:12]}" if sha else card.get("name", "unknown-model"))

    windowed = detect is None and full_detection_every > 1
    if detect is None or crop is None:
        from clusterspy import detection as _det

        detect = detect or _det.detect_clusters
        crop = crop or _det.crop_cluster
    detect_kwargs = dict(detect_kwargs or {})

    frames_src, meta_dt, description = _open_frames(source, pixel_size_A)
    if frame_time_s is None:
        frame_time_s = meta_dt
    n_total = len(frames_src) if hasattr(frames_src, "__len__") else None

    out_dir = Path(out) if out is not None else None
    rows: list[list[Any]] = []  # only when out is None
    start = 0
    tracker_restore: list[tuple[int, float, float, int]] = []
    fh = None
    writer = None
    state = {"source": description, "model_id": model_id}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        csv_path = out_dir / "frames.csv"
        state_path = out_dir / _STATE_FILE
        if resume and csv_path.exists() and state_path.exists():
            old = json.loads(state_path.read_text())
            if old != state:
                raise ConfigError(
                    f"{out_dir} holds results of another run ({old}); "
                    "choose another output folder or start afresh (resume=False / --no-resume)"
                )
            prev = read_frames_csv(csv_path)
            if len(prev["frame"]):
                start = int(prev["frame"].max())  # redo the last frame: it may be incomplete
                keep = prev["frame"] < start
                prev = {k: v[keep] for k, v in prev.items()}
                _write_csv_atomic(csv_path, prev)
                for cid in np.unique(prev["cluster"]):
                    m = (prev["cluster"] == cid) & np.isfinite(prev["x_px"])
                    if m.any():
                        j = np.where(m)[0][-1]
                        tracker_restore.append(
                            (int(cid), prev["x_px"][j], prev["y_px"][j], int(prev["frame"][j])))
                log.info("resuming %s at frame %d", out_dir, start)
        else:
            with open(csv_path, "w", newline="") as f0:
                csv.writer(f0).writerow(FRAME_COLUMNS)
        write_text_atomic(state_path, json.dumps(state))
        fh = open(csv_path, "a", newline="")
        writer = csv.writer(fh)

    from clusterspy.series.tracking import Tracker, sharpness

    tracker: Tracker | None = None
    diameter_px: dict[int, float] = {}  # last detected diameter of each track [px]
    pending_rows: list[list[Any]] = []
    pending_crops: list[np.ndarray] = []
    pending_index: list[int] = []
    thumbs: dict[str, list[tuple[float, int, np.ndarray]]] = {c: [] for c in CLASSES}
    counter = 0
    frames_done = start

    def flush_batch() -> None:
        nonlocal counter
        if pending_crops:
            dist = None
            if hasattr(model, "infer"):
                probs, dist = model.infer(np.stack(pending_crops))
                probs = np.asarray(probs, dtype=float)
            else:
                probs = np.asarray(model.predict_crops(np.stack(pending_crops)), dtype=float)
            if probs.shape != (len(pending_crops), len(CLASSES)):
                raise ConfigError(
                    f"model.predict_crops returned shape {probs.shape}, "
                    f"expected {(len(pending_crops), len(CLASSES))}")
            ood_thr = getattr(model, "ood_threshold", None)
            amorph_nm = (domain or {}).get("amorphous_max_diameter_nm")
            for k, (r, p, cimg) in enumerate(zip(pending_index, probs, pending_crops, strict=True)):
                row = pending_rows[r]
                conf = float(np.max(p))
                label, row[13] = judge_probabilities(
                    p, unknown_threshold=threshold, ood_distance=None if dist is None else float(dist[k]),
                    ood_threshold=ood_thr, diameter_A=None if row[12] is None else 10.0 * row[12],
                    amorphous_max_A=None if amorph_nm is None else 10.0 * float(amorph_nm))
                row[5] = label
                row[7] = conf
                row[8:12] = [float(x) for x in p]
                if label != UNKNOWN and n_thumbnails > 0:
                    heap = thumbs[label]
                    counter += 1
                    item = (conf, counter, cimg)
                    if len(heap) < n_thumbnails:
                        heapq.heappush(heap, item)
                    elif conf > heap[0][0]:
                        heapq.heapreplace(heap, item)
        if writer is not None:
            writer.writerows([[_fmt(v) for v in row] for row in pending_rows])
            fh.flush()
        else:
            rows.extend(pending_rows)
        pending_rows.clear()
        pending_crops.clear()
        pending_index.clear()

    try:
        checked = False
        for i, image in _iter_from(frames_src, start, pixel_size_A):
            if domain is not None and not checked:  # pixel size, field, contrast: once per series
                from clusterspy.domain import check_image

                check_image(image, domain, contrast=contrast)
                checked = True
            dets = None
            if (windowed and tracker is not None and tracker.tracks and i % full_detection_every
                    and all(t.last_frame == i - 1 and t.id in diameter_px for t in tracker.tracks)):
                dets = _detect_in_windows(detect, image, tracker.tracks, diameter_px, detect_kwargs)
            if dets is None:
                try:
                    dets = list(detect(image, **detect_kwargs))
                except NoClusterFoundError:
                    dets = []
            if tracker is None:
                if max_jump_A is not None:
                    jump_px = max_jump_A / image.pixel_size_A
                else:
                    diam = [getattr(d, "diameter_A", None) for d in dets]
                    diam = [d for d in diam if d]
                    jump_px = float(np.median(diam)) / image.pixel_size_A if diam else 50.0
                tracker = Tracker(max_jump_px=jump_px)
                for cid, x, y, fr in tracker_restore:
                    tracker.add_track(x, y, fr, cid)
            pos = np.array([[d.x_px, d.y_px] for d in dets], float).reshape(-1, 2)
            frame_reasons = None
            if domain is not None and dets and all(hasattr(d, "bbox") for d in dets):
                from clusterspy.domain import cluster_reasons

                frame_reasons = cluster_reasons(
                    image, dets, domain,
                    field_A=[crop_px * crop_pixel_A(d, image) for d in dets])
            n_known = len(tracker.tracks)
            if max_clusters is not None and n_known >= max_clusters:
                # do not start new tracks: keep only detections near existing ones
                saved = tracker._next_id
                assign, lost = tracker.update(i, pos)
                extra = [t for t in tracker.tracks if t.id >= saved]
                for t in extra:
                    tracker.tracks.remove(t)
                    assign.pop(t.id, None)
                tracker._next_id = saved
            else:
                assign, lost = tracker.update(i, pos)
                if max_clusters is not None and len(tracker.tracks) > max_clusters:
                    extra = tracker.tracks[max_clusters:]
                    for t in extra:
                        tracker.tracks.remove(t)
                        assign.pop(t.id, None)
            t_s = i * frame_time_s if frame_time_s else None
            by_id = {t.id: t for t in tracker.tracks}
            for tid in sorted([*assign, *(t.id for t in lost)]):
                row: list[Any] = [i, t_s, tid, None, None, LOST, "", None, None, None, None, None,
                                  None, None]
                if tid in assign:
                    d = dets[assign[tid]]
                    row[3], row[4] = float(d.x_px), float(d.y_px)
                    if getattr(d, "diameter_A", None):
                        diameter_px[tid] = float(d.diameter_A) / image.pixel_size_A
                        row[12] = particle_diameter_A(d.diameter_A) / 10.0
                    if frame_reasons is not None and frame_reasons[assign[tid]] is not None:
                        row[5], row[13] = UNKNOWN, frame_reasons[assign[tid]]
                        pending_rows.append(row)
                        continue
                    c = np.asarray(crop(image, d, crop_pixel_A(d, image), crop_px),
                                   dtype=np.float32)
                    tr = by_id[tid]
                    s = sharpness(c)
                    hist = tr.sharpness_history
                    blurred = blur_threshold > 0 and len(hist) >= 3 and s < blur_threshold * float(
                        np.median(hist))
                    # every frame enters the (short) history, so a lasting change of the crop's
                    # texture — an isomer or orientation without lattice fringes — becomes the new
                    # baseline within a few frames instead of being flagged as blur for ever
                    hist.append(s)
                    del hist[:-BLUR_WINDOW]
                    if blurred:
                        row[5] = BLURRED
                    else:
                        row[5] = ""  # filled by the batch
                        pending_index.append(len(pending_rows))
                        pending_crops.append(c)
                pending_rows.append(row)
            frames_done = i + 1
            if len(pending_crops) >= batch_size:
                flush_batch()
                if progress is not None:
                    progress(frames_done, n_total)
        flush_batch()
        if progress is not None:
            progress(frames_done, n_total)
    finally:
        if fh is not None:
            fh.close()

    if out_dir is not None:
        table = read_frames_csv(out_dir / "frames.csv")
    else:
        cols: dict[str, list] = {c: [] for c in FRAME_COLUMNS}
        for row in rows:
            for c, v in zip(FRAME_COLUMNS, row, strict=True):
                cols[c].append("" if v is None else v)
        table = _to_arrays(cols)

    settings = {
        "batch_size": batch_size, "stay": stay, "learn_transitions": learn_transitions,
        "transition": None if transition is None else np.asarray(transition).tolist(),
        "max_jump_px": tracker.max_jump_px if tracker is not None else None,
        "blur_threshold": blur_threshold, "max_clusters": max_clusters,
        "detect_kwargs": detect_kwargs, "n_boot": n_boot, "seed": seed,
        "temperature_K": temperature_K, "frame_time_s": frame_time_s,
        "unknown_threshold": threshold,
    }
    summary = _smooth_and_summarise(table, settings, frame_time_s, n_boot, seed, stay, transition,
                                    learn_transitions)
    summary.update({
        "schema": "clusterspy.series/1",
        "source": description,
        "n_frames": int(frames_done),
        "frame_time_s": frame_time_s,
        "temperature_K": temperature_K,
        "classes": list(CLASSES),
        "model": {"id": model_id,
                  **{k: card[k] for k in ("pixel_size_A", "crop_px", "temperature",
                                          "unknown_threshold") if k in card}},
        "seed": seed,
        "settings": settings,
    })
    result = SeriesResult(
        table, summary, out_dir,
        {c: [x[2] for x in sorted(h, reverse=True)] for c, h in thumbs.items()},
    )
    if out_dir is not None:
        _write_csv_atomic(out_dir / "frames.csv", table)
        write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=2))
        if report:
            if reporter is None:
                from clusterspy.series.reporting import get_reporter

                reporter = get_reporter("series")
            reporter(result, model if explain and hasattr(model, "crop_px") else None)
    return result


def _detect_in_windows(
    detect: Callable, image: Image, tracks: list, diameter_px: dict[int, float], detect_kwargs: dict,
) -> list | None:
    """Detect clusters only in a window (3 diameters wide) around each track's last position.

    Returns the detections in the frame's pixel coordinates, or ``None`` when a window holds no
    cluster (the caller then searches the whole frame).
    """
    from dataclasses import replace

    rows, cols = image.data.shape
    found = []
    for t in tracks:
        half = 1.5 * diameter_px[t.id] + 4
        r0, r1 = max(0, int(t.y_px - half)), min(rows, int(t.y_px + half) + 1)
        c0, c1 = max(0, int(t.x_px - half)), min(cols, int(t.x_px + half) + 1)
        window = Image(image.data[r0:r1, c0:c1], image.pixel_size_A, image.metadata)
        try:
            dets = list(detect(window, **detect_kwargs))
        except NoClusterFoundError:
            dets = []
        if not dets:
            return None
        for d in dets:
            b = d.bbox
            moved = replace(d, x_px=d.x_px + c0, y_px=d.y_px + r0,
                            bbox=(b[0] + r0, b[1] + c0, b[2] + r0, b[3] + c0))
            if all(np.hypot(moved.x_px - f.x_px, moved.y_px - f.y_px) > 2 for f in found):
                found.append(moved)
    return found


def _smooth_and_summarise(
    table: dict[str, np.ndarray], settings: dict, frame_time_s: float | None, n_boot: int,
    seed: int, stay: float, transition: np.ndarray | None, learn: bool,
) -> dict:
    from clusterspy.series.hmm import smooth

    rng = np.random.default_rng(seed)
    smoothed = np.array(table["label"], dtype=object)
    clusters = []
    warnings: list[str] = []
    pcols = [f"p_{c}" for c in CLASSES]
    for cid in np.unique(table["cluster"]):
        idx = np.where(table["cluster"] == cid)[0]
        idx = idx[np.argsort(table["frame"][idx], kind="stable")]
        fr = table["frame"][idx]
        f0 = int(fr.min())
        t_len = int(fr.max()) - f0 + 1
        probs = np.full((t_len, len(CLASSES)), np.nan)
        p_rows = np.column_stack([table[c][idx] for c in pcols])
        probs[fr - f0] = p_rows
        res = smooth(probs, transition=transition, stay=stay, learn=learn)
        lab = table["label"][idx]
        gap = np.isin(lab, [LOST, BLURRED]) | np.isin(table["reason"][idx], _NO_EVIDENCE)
        sm = np.array([CLASSES[s] for s in res.path[fr - f0]], dtype=object)
        sm[gap] = lab[gap]
        smoothed[idx] = sm
        raw_stats = summarize_labels(fr, lab, frame_time_s=frame_time_s, n_boot=n_boot, rng=rng)
        sm_stats = summarize_labels(fr, sm, frame_time_s=frame_time_s, n_boot=n_boot, rng=rng)
        n_tr = int(np.sum(np.array(sm_stats["transition_counts"])) - np.trace(
            np.array(sm_stats["transition_counts"])))
        if frame_time_s and n_tr < 10:
            msg = (f"cluster {int(cid)}: only {n_tr} transitions in the smoothed labels; "
                   "rates per second are not meaningful")
            warnings.append(msg)
            log.warning(msg)
        clusters.append({
            "cluster": int(cid),
            "first_frame": f0,
            "last_frame": int(fr.max()),
            "n_rows": len(idx),
            "n_lost": int(np.sum(lab == LOST)),
            "n_blurred": int(np.sum(lab == BLURRED)),
            "n_unknown": int(np.sum(lab == UNKNOWN)),
            "raw": raw_stats,
            "smoothed": sm_stats,
            "n_transitions_smoothed": n_tr,
            "hmm": {"transition": res.transition.tolist(), "log_likelihood": res.log_likelihood,
                    "em_iterations": res.n_iter, "learned": bool(learn)},
        })
    table["smoothed_label"] = smoothed
    return {"clusters": clusters, "n_clusters": len(clusters), "warnings": warnings}
