"""``classify_series``: a label per frame for every cluster of a video, streamed and resumable.

The loop only composes the pieces: :mod:`~clusterspy.series.source` (frames through
:class:`clusterspy.io.Series`), :mod:`~clusterspy.series.per_frame` (detection, tracking, blur,
batched inference), :mod:`~clusterspy.series.frames` (``frames.csv``),
:mod:`~clusterspy.series.checkpoint` and :mod:`~clusterspy.series.manifest` (exact resume),
:mod:`~clusterspy.series.summary` (HMM smoothing and statistics) and
:mod:`~clusterspy.series.result` (:class:`SeriesResult`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.errors import ClusterSpyError, ConfigError
from clusterspy.image import Image, overridden_calibration_A
from clusterspy.io import write_text_atomic
from clusterspy.isomers import CLASSES
from clusterspy.series.checkpoint import Checkpoint
from clusterspy.series.frames import BLURRED, BRIGHT_FIELD, FRAME_COLUMNS, LOST, FramesTable, read_frames_csv
from clusterspy.series.manifest import check_or_write_manifest, clean_temporary_files, record_progress
from clusterspy.series.model_view import ModelView
from clusterspy.series.per_frame import CONTRAST_SENTINEL_GRIDS_PX, Batch, FrameClassifier, FrameSettings
from clusterspy.series.result import SeriesResult
from clusterspy.series.source import FrameSource, open_frames
from clusterspy.series.summary import smooth_and_summarise, summarize_labels

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
    full_detection_every: int = 10,
    progress: Callable[[int, int | None], None] | None = None,
    contrast: str = "auto",
    signal: int | str | None = None,
    announce: Callable[[str], None] | None = None,
) -> SeriesResult:
    """Classify every frame of a series, track the clusters, smooth the labels and summarise.

    Behind ``clusterspy series PATH [--pixel-size Å] [--frame-time s] [--out DIR]`` (whose face,
    :func:`clusterspy.workflows.classify_series`, also locks ``--out`` and draws the report).
    Frames are read lazily and classified in batches of ``batch_size`` crops, so memory does not
    grow with the length of the series (only the per-frame table, a few numbers per frame, is
    held for the HMM). A frame that cannot be read or used (NaN, constant, truncated) becomes a
    row with ``status`` "bad_frame" and its ``message``; the run goes on.

    Parameters
    ----------
    source : str, os.PathLike, numpy.ndarray, or sequence/iterable of Image
        A multi-frame file or folder (read with :func:`clusterspy.io.read_series`), a 3-D array
        ``(frames, rows, cols)`` (may be a ``numpy.memmap``; needs ``pixel_size_A``), or any
        sequence or iterable of :class:`~clusterspy.image.Image` / 2-D arrays.
    pixel_size_A : float, optional
        Pixel size [Å/px] when the file has none (or for arrays).
    frame_time_s : float, optional
        Time between frames [s] (> 0); default from the file's metadata. Needed for ``time_s``, rates
        per second and dwell times in seconds.
    model : object, optional
        Anything with ``card`` (dict with ``classes``, ``pixel_size_A``, ``crop_px``, optional
        ``unknown_threshold`` and ``id``) and ``predict_crops(crops (N, c, c)) -> (N, 4)``
        calibrated probabilities; default :func:`clusterspy.predict.load_model()`.
    batch_size : int
        Crops per call to ``predict_crops``.
    out : str or os.PathLike, optional
        Output folder. Writes ``run.json`` (the input's identity and the settings), ``frames.csv``
        (appended and flushed batch by batch while running, rewritten atomically with the smoothed
        labels at the end), ``summary.json`` and a checkpoint after every batch; ``.tmp`` files
        left by a killed run are deleted. One run at a time per folder (the face locks it).
    resume : bool
        With ``out``: if the folder holds an interrupted run of the same input and settings
        (``run.json``), continue from its last checkpoint — the result is the same as that of a
        run never interrupted. Another input or other settings are refused. ``False`` starts
        afresh.
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
        fraction of the running median of its track's last
        :data:`~clusterspy.series.per_frame.BLUR_WINDOW` frames is marked
        ``blurred`` and not classified (``0`` switches the test off).
    max_clusters : int, optional
        Keep at most this many tracks (the first found).
    detect_kwargs : dict, optional
        Keyword arguments for :func:`clusterspy.detection.detect_clusters`, over the defaults of
        :func:`series_detect_kwargs` (those of :func:`clusterspy.classify`).
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
    full_detection_every : int
        With the default detector, frames in which every tracked cluster was found in the
        previous frame are searched only in a window around each cluster (3 diameters wide);
        the whole frame is searched every ``full_detection_every`` frames, and whenever a window
        search misses a cluster — so new and lost clusters are still caught. ``1`` searches the
        whole frame every time.
    progress : callable, optional
        Called as ``progress(frames_done, n_frames_or_None)`` after each batch.
    contrast : {"auto", "haadf"}
        ``"auto"`` refuses a series whose first frame looks like bright field (see
        :func:`clusterspy.domain.check_image`), and checks every later frame too
        (:meth:`~clusterspy.series.per_frame.FrameClassifier.looks_bright_field`): the clusters
        of a frame that looks like bright field are not classified (label "unknown", reason
        "bright_field"; the run goes on; ``summary["contrast_check"]`` counts them).
        ``"haadf"`` trusts that every frame is HAADF.
    signal : int or str, optional
        Which signal of a multi-signal file (index or title; see :func:`clusterspy.io.read_image`);
        the signal read is part of ``run.json``, so a resume with another is refused.
    announce : callable, optional
        Called with one line (:func:`resume_line`) when ``out`` holds an earlier run of the same
        input and settings that this one continues, or finished and reads again.
    Notes
    -----
    In the HMM, lost and blurred frames carry no emission (uninformative); ``unknown`` frames keep
    their calibrated probabilities as soft evidence (near-flat for a truly ambiguous frame), so the
    smoothed label of an unknown frame is decided by its neighbours. Without ``out`` the per-frame
    rows are held in memory; give ``out`` for very long series.

    Returns
    -------
    SeriesResult
        Per-frame table (``label`` raw: an isomer, ``unknown`` below the model's confidence
        threshold, ``lost`` or ``blurred``; ``smoothed_label`` from the HMM's Viterbi path, with
        lost/blurred frames kept as such), summary and thumbnails.

    Raises
    ------
    ConfigError
        Bad arguments, or ``out`` holds a run of another input or other settings and ``resume``.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    check_frame_time(frame_time_s)
    if model is None:
        from clusterspy.predict import load_model

        model = load_model()
    view = ModelView(model)
    windowed = detect is None and full_detection_every > 1
    source = open_frames(source, pixel_size_A, signal)
    own_pixel_A = (overridden_calibration_A(getattr(source.frames, "metadata", {}), source.pixel_size_A)
                   if pixel_size_A is not None and source.pixel_size_A else None)
    override_msg = None if own_pixel_A is None else (
        f"the pixel size given, {source.pixel_size_A:g} Å/px, replaces the file's own calibration "
        f"({own_pixel_A:g} Å/px, {source.pixel_size_A / own_pixel_A - 1:+.0%}): labels, diameters and domain "
        "checks use the value given")
    if override_msg:
        log.warning(override_msg)
    if detect is None:
        detect_kwargs = series_detect_kwargs(view, detect_kwargs, source.pixel_size_A)
    if detect is None or crop is None:
        from clusterspy import detection as _det

        detect = detect or _det.detect_clusters
        crop = crop or _det.crop_cluster
    if frame_time_s is None:
        frame_time_s = source.frame_time_s
    fs = FrameSettings(detect, crop, dict(detect_kwargs or {}), windowed, full_detection_every,
                       frame_time_s, max_jump_A, blur_threshold, max_clusters, n_thumbnails, contrast)
    hmm = {"stay": stay, "transition": None if transition is None else np.asarray(transition).tolist(),
           "learn_transitions": learn_transitions, "n_boot": n_boot, "seed": seed}
    out_dir = Path(out) if out is not None else None
    state, table = _start(out_dir, source, view, fs, {**hmm, "batch_size": batch_size}, temperature_K, resume,
                          announce)
    worker = FrameClassifier(view, fs, state)
    frames_done = state.next_frame
    if out_dir is not None:  # unfinished until its summary is written (a killed run stays so)
        record_progress(out_dir, state.next_frame, source.length, finished=False)
    # the network runs on worker threads (a test-time view a task), one batch behind the frames
    # being read and checked, and the second opinion one batch behind that
    pool = ThreadPoolExecutor(max_workers=inference_workers(), thread_name_prefix="clusterspy-inference")
    # the next frame is read and its contrast looked at on one more thread, while this one is detected
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clusterspy-reader")
    try:
        if not state.complete:
            in_flight = checking = None
            if progress is not None:
                progress(frames_done, source.length)
            for i, frame, bright_field in _read_ahead(source, state.next_frame, worker, reader):
                worker.add_frame(i, frame, bright_field)
                frames_done = i + 1
                if worker.n_pending_crops >= batch_size:
                    # three batches at three stages: the oldest completes (its second opinion done),
                    # the next is judged and its second opinion started, a new one is submitted
                    if checking is not None:
                        _flush(worker, checking, table, out_dir, source.length)
                    checking = None if in_flight is None else worker.check(in_flight, pool)
                    in_flight = worker.submit(frames_done, pool)
                    if progress is not None:
                        progress(frames_done, source.length)
            # the last batches on the worker threads too: run on this thread, they had kept one
            # core idle for the last ~2 s of every series (the network is most of a frame's work)
            if in_flight is not None:
                worker.check(in_flight, pool)
            if checking is not None:
                _flush(worker, checking, table, out_dir, source.length)
            state.complete = True
            last = worker.submit(frames_done, pool)
            if in_flight is not None:
                _flush(worker, in_flight, table, out_dir, source.length)
            _flush(worker, worker.check(last, pool), table, out_dir, source.length)
            if progress is not None:
                progress(frames_done, source.length)
        rows = table.table()
    finally:
        reader.shutdown(wait=True, cancel_futures=True)
        pool.shutdown(wait=True, cancel_futures=True)
        table.close()
    settings = {
        "batch_size": batch_size, "stay": stay, "learn_transitions": learn_transitions,
        "transition": hmm["transition"],
        "max_jump_px": worker.tracker.max_jump_px if worker.tracker is not None else None,
        "blur_threshold": blur_threshold, "max_clusters": max_clusters,
        "detect_kwargs": fs.detect_kwargs, "n_boot": n_boot, "seed": seed,
        "temperature_K": temperature_K, "frame_time_s": frame_time_s,
        "unknown_threshold": view.threshold,
    }
    summary = smooth_and_summarise(rows, frame_time_s, n_boot, seed, stay, transition, learn_transitions)
    summary.update({
        "schema": "clusterspy.series/1", "source": source.description, "n_frames": int(frames_done),
        "frame_time_s": frame_time_s, "temperature_K": temperature_K, "classes": list(CLASSES),
        "model": _model_record(view),
        "seed": seed, "settings": settings, "frames_lost_in_file": source.frames_lost,
    })
    summary["contrast_check"] = contrast_check_summary(rows, contrast, view.domain is not None)
    if summary["contrast_check"]["frames_bright_field"]:
        msg = (f"{summary['contrast_check']['frames_bright_field']} frame(s) look like bright field "
               f"(reason '{BRIGHT_FIELD}' in frames.csv): their clusters were not classified")
        summary["warnings"].append(msg)
        log.warning(msg)
    if override_msg:
        summary["warnings"].append(override_msg)
    left_out = getattr(source.frames, "metadata", {}).get("pages_left_out")
    if left_out:
        msg = (f"page(s) {', '.join(map(str, left_out))} of {source.description} differ from its frames "
               "(shape, type or colour) and were left out: frames are numbered without them")
        summary["warnings"].append(msg)
    if source.frames_lost:
        msg = (f"{source.frames_lost} frame(s) at the end of {source.description} could not be read "
               f"(a truncated file): {source.length} classified")
        summary["warnings"].append(msg)
        log.warning(msg)
    if out_dir is not None:
        table.write_final(rows)
        write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=2))
        record_progress(out_dir, frames_done, source.length, finished=True)
    return SeriesResult(rows, summary, out_dir, worker.thumbnails(), worker.thumbnail_frames())


def _model_record(view: ModelView) -> dict[str, Any]:
    """``summary.json``'s ``model``: its id and, for each model (the default: one per size range,
    ``by_size``), the geometry, calibration and SHA-256 its rows were judged with; and the second
    opinion that checked the first model's labels (``second_opinion``) and the pixel-size search
    (``pixel_size_search``), if any."""
    def one(v: ModelView) -> dict[str, Any]:
        return {"id": v.id, "weights_sha256": v.sha256, **{k: v.card[k] for k in (
            "pixel_size_A", "crop_px", "temperature", "unknown_threshold") if k in v.card}}

    if len(view.routes) == 1:
        return one(view)
    from clusterspy.domain import ROUTE_RULE

    record = {"id": view.id, "rule": ROUTE_RULE,
              "by_size": [{**one(v), "diameter_nm": (v.domain or {}).get("diameter_nm")}
                          for v in view.routes]}
    if view.second is not None:
        from clusterspy.predict import SECOND_OPINION_RULE

        checks = "+".join(str(view.routes[j].card.get("name")) for j in sorted(view.checked_routes))
        record["second_opinion"] = {**one(view.second), "checks": checks, "rule": SECOND_OPINION_RULE}
    if view.search:
        from clusterspy.predict import PIXEL_SIZE_SEARCH_RULE

        record["pixel_size_search"] = {"factors": [round(f, 6) for f in view.search],
                                       "rule": PIXEL_SIZE_SEARCH_RULE}
    astigmatism = getattr(view.model, "astigmatism", None)
    if astigmatism is not None and view.second is not None:
        from clusterspy.predict import ASTIGMATISM_RULE

        record["astigmatism"] = {**astigmatism.summary(), "rule": ASTIGMATISM_RULE}
    return record


def contrast_check_summary(rows: dict[str, np.ndarray], contrast: str, has_domain: bool
                           ) -> dict[str, Any]:
    """What ``summary.json`` says of the per-frame contrast check
    (:meth:`~clusterspy.series.per_frame.FrameClassifier.looks_bright_field`).

    Parameters
    ----------
    rows : dict of str to numpy.ndarray
        The per-frame table (:func:`read_frames_csv`).
    contrast : {"auto", "haadf"}
        As given to :func:`classify_series`.
    has_domain : bool
        The model card has a domain (a model without one is never checked).

    Returns
    -------
    dict
        ``{"checked", "rule", "frames_bright_field"}``: whether frames were checked, the rule in
        words, and how many frames were found to look like bright field (every row of such a
        frame has the reason "bright_field").
    """
    checked = has_domain and contrast == "auto"
    if checked:
        grids = " then ".join(f"{g}²" for g in CONTRAST_SENTINEL_GRIDS_PX)
        rule = (f"every frame: the first in full (a bright-field first frame refuses the series), the others "
                f"binned to {grids} px, and in full when neither binning shows both of HAADF's signs")
    else:
        rule = "none (contrast='haadf' / --contrast haadf)" if has_domain else "none (model without domain)"
    refused = np.unique(rows["frame"][rows["reason"] == BRIGHT_FIELD]) if len(rows["frame"]) else []
    return {"checked": checked, "rule": rule, "frames_bright_field": len(refused)}


def check_frame_time(frame_time_s: float | None) -> None:
    """Refuse a frame time given by the user that is not a positive number of seconds.

    Parameters
    ----------
    frame_time_s : float or None
        Time between frames [s]; None: unknown (taken from the file, if it records one).

    Raises
    ------
    ConfigError
        ``frame_time_s`` is zero, negative, NaN or infinite (one line naming ``--frame-time``).
    """
    if frame_time_s is not None and not (np.isfinite(float(frame_time_s)) and float(frame_time_s) > 0):
        raise ConfigError(f"frame time {frame_time_s} s (frame_time_s / --frame-time) must be a positive "
                          "number of seconds between frames; leave it out when unknown")


def series_detect_kwargs(view: ModelView, user: dict | None = None, pixel_size_A: float | None = None
                         ) -> dict:
    """The default detector's keywords in a series: those :func:`clusterspy.classify` uses — bright
    clusters (the contrast check has refused a bright-field first frame and flags later ones
    before detection) and the models' diameter range (:func:`clusterspy.predict.detection_range_A`):
    the smallest that of the model that leads detection at the series' ``pixel_size_A`` [Å/px]
    (:func:`clusterspy.predict.detection_lead` of the models whose pixel sizes hold it; at 0.5–0.6
    Å/px ``isomernet-v3``, not ``isomernet-v2``, as in ``classify``), the largest every model's — under
    the user's own ``detect_kwargs``. Clusters touching the frame's edge are kept
    (``exclude_border=False``, as in ``classify``): the domain names them ``cut_by_edge``. A model
    without a domain keeps the detector's defaults.

    With the detector's automatic polarity instead, a newcomer's HAADF frame (a particle pasted on
    a noisy background, a few zero pixels) was read as dark: no cluster in any frame of the series,
    where ``classify`` found and labelled it. With the detector's ``exclude_border=True``, another's
    zoomed frames, whose one cluster touched the edge, gave "no cluster found in any of the 10
    frames" where ``classify`` reported it ``cut_by_edge`` in each.
    """
    kw: dict[str, Any] = {}
    if view.domain is not None:
        from clusterspy.domain import pixel_size_range_A
        from clusterspy.predict import detection_lead, detection_range_A

        models = [v.model for v in view.routes]
        if pixel_size_A is not None:  # the models whose pixel sizes hold the series' (usable_models)
            ranges_px = [pixel_size_range_A(m.card.domain) if m.card.domain else (0.0, 0.0) for m in models]
            models = [m for m, (lo, hi) in zip(models, ranges_px, strict=True)
                      if lo <= float(pixel_size_A) <= hi] or models
        ranges = [detection_range_A(v.model.card) for v in view.routes]
        kw = {"min_diameter_A": detection_range_A(detection_lead(models).card)[0],
              "max_diameter_A": max(r[1] for r in ranges), "polarity": "bright", "exclude_border": False}
    return {**kw, **(user or {})}


def inference_workers() -> int:
    """Worker threads of a series' network: one per core, up to the 8 test-time views.

    The views of each batch are tasks for these threads (:meth:`clusterspy.predict.Model.submit_infer`),
    run while the frames' thread detects and checks the next frames (and one more thread reads the
    frame after: :func:`_read_ahead`); ``benchmarks/series_speed.py`` measures the frames/s.
    """
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, n))


def _read_ahead(source: FrameSource, start: int, worker: FrameClassifier, reader: ThreadPoolExecutor
                ) -> Iterator[tuple[int, Image | ClusterSpyError, bool | None]]:
    """``(index, frame, looks bright field)`` from ``start`` on, each next frame read and looked at
    (:meth:`FrameClassifier.looks_bright_field`) on the ``reader`` thread while the caller works on
    the one before: two frames are held at most. ``None`` for a frame that could not be read."""
    frames = source.iter_from(start)

    def read_next() -> tuple[int, Image | ClusterSpyError, bool | None] | None:
        item = next(frames, None)
        if item is None:
            return None
        i, frame = item
        return i, frame, None if isinstance(frame, ClusterSpyError) else worker.looks_bright_field(frame)

    ahead = reader.submit(read_next)
    while (item := ahead.result()) is not None:
        ahead = reader.submit(read_next)
        yield item
        item = None  # the frame's last reference is the caller's


def _flush(worker: FrameClassifier, batch: Batch, table: FramesTable, out_dir: Path | None,
           n_frames: int | None = None) -> None:
    """Complete ``batch`` (its rows written to ``frames.csv``), then save its checkpoint and say in
    ``run.json`` how many frames ``frames.csv`` holds (with ``out``; ``n_frames`` of the input)."""
    checkpoint = worker.complete(batch, table)
    if out_dir is not None:
        checkpoint.save(out_dir)
        record_progress(out_dir, checkpoint.next_frame, n_frames, finished=False)


def resume_line(out_dir: Path, state: Checkpoint) -> str:
    """What a run that continues ``out_dir``'s earlier run of the same input and settings says first
    (a rerun used to print exactly what a fresh run prints: continued, finished or fresh looked alike)."""
    if state.complete and (out_dir / "summary.json").is_file():
        return (f"{out_dir} holds this run finished: its frames are read again, not classified "
                "(--no-resume / resume=False classifies them afresh)")
    if state.complete:
        return (f"continuing the run in {out_dir}: every frame is classified, the smoothing and summary "
                "are left (--no-resume / resume=False starts afresh)")
    return (f"continuing the run in {out_dir} at frame {state.next_frame} (--no-resume / resume=False "
            "starts afresh)")


def _start(
    out_dir: Path | None, source: FrameSource, view: ModelView, fs: FrameSettings, settings: dict,
    temperature_K: float | None, resume: bool, announce: Callable[[str], None] | None = None,
) -> tuple[Checkpoint, FramesTable]:
    """The checkpoint to start from and the ``frames.csv`` to append to (fresh or resumed).

    ``settings`` (HMM, bootstrap and batch size: the batches of a resumed run must be those of
    an uninterrupted one, for inference results identical to the last bit) join the manifest.
    """
    if out_dir is None:
        return Checkpoint(), FramesTable()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"output folder {out_dir} is a file; give a folder") from None
    clean_temporary_files(out_dir)
    manifest = {
        "input": source.identity,
        "settings": {
            "source": source.description, "pixel_size_A": source.pixel_size_A,
            "frame_time_s": fs.frame_time_s, "contrast": fs.contrast, "temperature_K": temperature_K,
            "model_id": view.id, "model_sha256": "+".join(str(v.sha256) for v in view.routes),
            "detect": getattr(fs.detect, "__qualname__", type(fs.detect).__name__),
            "crop": getattr(fs.crop, "__qualname__", type(fs.crop).__name__),
            "detect_kwargs": json.loads(json.dumps(fs.detect_kwargs, default=str)),
            "full_detection_every": fs.full_detection_every if fs.windowed else 1,
            "max_jump_A": fs.max_jump_A, "blur_threshold": fs.blur_threshold,
            "max_clusters": fs.max_clusters, "n_thumbnails": fs.n_thumbnails, **settings,
        },
    }
    csv_path = out_dir / "frames.csv"
    state = Checkpoint.load(out_dir) if check_or_write_manifest(out_dir, manifest, resume, announce) else None
    if state is None or (state.frames_bytes is None and not state.complete):
        Checkpoint.remove(out_dir)
        return Checkpoint(), FramesTable(csv_path)
    log.info("resuming %s at frame %d", out_dir, state.next_frame)
    if announce is not None:
        announce(resume_line(out_dir, state))
    keep = csv_path.stat().st_size if state.complete else state.frames_bytes
    return state, FramesTable(csv_path, keep)
