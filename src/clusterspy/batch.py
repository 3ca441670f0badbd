"""The ``classify`` batch engine: every file on its own, written as soon as it is done, resumable.

A batch is a list of image files (a folder argument stands for the image files in it). Each file
is one task: it is read, every frame classified (:func:`clusterspy.workflows.classify_file`) and
its *part* — result rows, status, message, pixel size and the file's identity (size, mtime) —
written atomically to ``OUT/parts/`` before its overlay figures are drawn, so that nothing
computed is lost to a kill or an out-of-memory error in a figure. The aggregates
(``results.csv``, ``results.json``, ``files.csv``, in input order) are rebuilt atomically from the
parts as the batch goes and at its end.

A rerun with the same ``--out`` skips every file whose part is complete, ``ok`` and whose size
and mtime are unchanged, and tries every other file again (a failed or partial one too: its cause
may have been fixed since, and its new part replaces the old one, message included); a
different model, pixel size or option is refused with one line naming ``--restart``. Tasks run
in this process (``workers=1``), in local processes (default: one per core) or on a Dask
distributed cluster (``scheduler="tcp://host:port"``); the outputs are the same whatever the
engine, because they are built from the parts in input order.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clusterspy.errors import ClusterSpyError, ConfigError, InputFileError, MissingDependencyError

#: Columns of ``files.csv`` (one row per input file).
FILE_COLUMNS: tuple[str, ...] = ("file", "status", "frames", "clusters", "labelled", "pixel_size_A",
                                 "pixel_size_source", "message")
#: Exit status of ``clusterspy classify`` when some files failed (all results still written).
EXIT_SOME_FAILED = 3
#: Settings whose change makes an output folder's parts invalid, and the option that sets each.
_OPTION_NAMES = {"model": "--model", "pixel_size_A_override": "--pixel-size", "contrast": "--contrast",
                 "min_size_nm": "--min-size", "max_size_nm": "--max-size", "border": "--border",
                 "explain": "--explain", "signal": "--signal", "clusterspy_version": "the ClusterSpy version",
                 "verify": "--verify", "element": "--element", "energy_keV": "--energy",
                 "semiangle_mrad": "--semiangle", "calibrate": "--calibrate"}


@dataclass(frozen=True)
class BatchConfig:
    """What every task of a batch needs (picklable: it travels to worker processes).

    Attributes
    ----------
    pixel_size_A : float or None
        Pixel size override [Å/px].
    model_path : str or None
        The model (default: shipped).
    options : dict
        Keywords of :func:`clusterspy.classify`.
    out : str or None
        Output folder; None: nothing is written.
    explain : bool
        Also draw saliency figures.
    max_overlays_per_file : int
        Overlays of at most this many frames per file.
    run : int
        Number of this run on ``out`` (1 for the first).
    signal : int or str or None
        The signal read from multi-signal files (index or title); None: the HAADF one.
    verify : bool
        Check every label that stands with a structure fit
        (:func:`clusterspy.workflows.verify_clusters`) and draw each fit.
    element : str
        With ``verify`` or ``calibrate``: the metal of the clusters.
    microscope : clusterspy.simulation.Microscope or None
        With ``verify`` or ``calibrate``: beam energy [keV] and convergence semi-angle [mrad] of
        the data; None: the fit's default (200 keV, 25 mrad).
    calibrate : bool
        Check each frame's pixel size against its clusters' lattice and classify it at the
        corrected one (:func:`clusterspy.workflows.calibrate_pixel_size`).
    """

    pixel_size_A: float | None = None
    model_path: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    out: str | None = None
    explain: bool = False
    max_overlays_per_file: int = 50
    run: int = 1
    signal: int | str | None = None
    verify: bool = False
    element: str = "Au"
    microscope: Any = None
    calibrate: bool = False


def expand_inputs(paths: Sequence[str | os.PathLike]) -> list[str]:
    """The image files of a batch: files as given, a folder as its supported image files (by name).

    Duplicates (the same file named twice) are dropped. A missing path is kept (its task
    reports it).

    Raises
    ------
    InputFileError
        A folder holds no supported image file.
    """
    from clusterspy.io import SUPPORTED_EXTENSIONS

    files: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(f for f in path.iterdir()
                           if f.is_file() and f.suffix.lower() in SUPPORTED_EXTENSIONS)
            if not found:
                raise InputFileError(
                    f"folder {path} holds no image files ({', '.join(SUPPORTED_EXTENSIONS)})")
            files += [str(f) for f in found]
        else:
            files.append(str(p))
    seen: set[str] = set()
    unique = []
    for f in files:
        if file_key(f) not in seen:
            seen.add(file_key(f))
            unique.append(f)
    return unique


def file_key(path: str | os.PathLike) -> str:
    """The identity of an input in an output folder: its absolute, resolved path."""
    return str(Path(path).expanduser().resolve())


def file_identity(path: str | os.PathLike) -> dict[str, int] | None:
    """Size [bytes] and modification time [ns] of a file, or None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _part_name(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:24] + ".json"


def _write_part(out: str, part: dict[str, Any]) -> None:
    from clusterspy.io import write_text_atomic

    write_text_atomic(Path(out) / "parts" / _part_name(part["key"]), json.dumps(part) + "\n")


def classify_task(path: str, cfg: BatchConfig, stem: str | None = None, display: str | None = None
                  ) -> dict[str, Any]:
    """Classify one file of a batch and return its part (written to ``cfg.out/parts`` first).

    This is the unit of work sent to a worker process or a Dask worker. A user-caused error
    (unreadable file, no pixel size, outside the model's domain, no cluster) is recorded in the
    part; any other error too, with status ``"error"`` (the file is tried again on a rerun).

    Parameters
    ----------
    path : str
        The image file (absolute, so that a Dask worker with another working folder finds it).
    cfg : BatchConfig
        The batch's settings.
    stem : str, optional
        Start of the overlay PNG names (unique within the batch).
    display : str, optional
        The file as the user named it, recorded in the results (default: ``path``).

    Returns
    -------
    dict
        The part: ``key``, ``file``, ``identity``, ``status`` (``ok``, ``partial``, ``failed``,
        ``error``), ``message``, ``frames``, ``info``, ``failures``, ``results`` (the JSON objects of
        :meth:`ClusterResult.to_dict`), ``figures``, ``figures_done``, ``run``.
    """
    from clusterspy.predict import load_model
    from clusterspy.workflows import classify_file

    display = str(path) if display is None else display
    part: dict[str, Any] = {"key": file_key(path), "file": display, "identity": file_identity(path),
                            "run": cfg.run, "figures": [], "figures_done": cfg.out is None}
    fits: dict[tuple[int, int], Any] = {}
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:  # the part's (a worker's would be lost)
            warnings.simplefilter("always")
            model = load_model(cfg.model_path)
            found, failures, info = classify_file(path, model, cfg.pixel_size_A, signal=cfg.signal,
                                                  verify=cfg.verify, element=cfg.element,
                                                  microscope=cfg.microscope, fits=fits,
                                                  calibrate=cfg.calibrate, **cfg.options)
    except Exception as exc:  # a batch never stops for one file: a bug is recorded, retried
        kind = "file" if isinstance(exc, (ClusterSpyError, OSError)) else "internal"
        found, info = [], {}
        prefix = "internal error: " if kind == "internal" else ""
        failures = [{"file": display, "frame": None, "error": type(exc).__name__,
                     "message": prefix + " ".join(str(exc).split())}]
        part["retry"] = kind == "internal"
    for r in found:
        r.file = display
    for f in failures:
        f["file"] = display
    part.update(results=[r.to_dict() for r in found], failures=failures, info=info,
                frames=info.get("frames", 0),
                warnings=list(dict.fromkeys(" ".join(str(w.message).split()) for w in caught)))
    part["status"] = ("error" if part.get("retry") else "ok" if not failures
                      else "partial" if found else "failed")
    part["message"] = "; ".join(f"frame {f['frame']}: {f['message']}" if f["frame"] is not None
                                else f["message"] for f in failures)
    if cfg.out is None:
        return part
    _write_part(cfg.out, part)  # results first: a kill while drawing loses nothing
    if found:
        from clusterspy.workflows import write_file_figures

        try:
            with warnings.catch_warnings(record=True) as again:  # the file read again: said once
                warnings.simplefilter("always")
                part["figures"] = write_file_figures(path, found, cfg.out, model, cfg.pixel_size_A,
                                                     max_overlays_per_file=cfg.max_overlays_per_file,
                                                     explain=cfg.explain, stem=stem, signal=cfg.signal,
                                                     fits=fits)
            part["warnings"] = list(dict.fromkeys([*part["warnings"],
                                                   *(" ".join(str(w.message).split()) for w in again)]))
        except OSError:  # a full disk stops the batch (one line from the CLI); figures made on the rerun
            raise
        except Exception as exc:  # the results are written: a figure may fail alone
            part["figure_error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        n_with = len({r.frame for r in found})
        if n_with > cfg.max_overlays_per_file:
            part["figure_note"] = (f"overlays drawn for the first {cfg.max_overlays_per_file} of the "
                                   f"{n_with} frames with clusters")
    part["figures_done"] = True
    _write_part(cfg.out, part)
    return part


@dataclass
class BatchResult:
    """The outcome of :func:`run_batch`: one part per input file, in input order."""

    parts: list[dict[str, Any]]
    computed: int
    skipped: int
    engine: str
    out: Path | None = None

    def results(self) -> list[Any]:
        """Every :class:`~clusterspy.predict.ClusterResult`, in file, frame and cluster order."""
        from clusterspy.predict import ClusterResult

        return [ClusterResult.from_dict(d) for p in self.parts for d in p["results"]]

    def failures(self) -> list[dict[str, Any]]:
        """Every failure ``{"file", "frame", "error", "message"}``, in file order."""
        return [f for p in self.parts for f in p["failures"]]

    @property
    def failed_files(self) -> list[str]:
        """The files with a failure (``failed``, ``partial`` or ``error``)."""
        return [p["file"] for p in self.parts if p["status"] != "ok"]

    @property
    def exit_code(self) -> int:
        """0 when every file was read and classified, :data:`EXIT_SOME_FAILED` otherwise."""
        return EXIT_SOME_FAILED if self.failed_files else 0


def file_rows(parts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of ``files.csv`` (:data:`FILE_COLUMNS`), one per part."""
    return [{"file": p["file"], "status": p["status"], "frames": p["frames"],
             "clusters": len(p["results"]), "labelled": sum(r["label"] != "unknown" for r in p["results"]),
             "pixel_size_A": p["info"].get("pixel_size_A"),
             "pixel_size_source": p["info"].get("pixel_size_source"),
             "message": "; ".join(m for m in (p["message"], *(f"warning: {w}" for w in p.get("warnings", ())),
                                              figure_message(p),
                                              *(c["message"] for c in p["info"].get("calibration", ())))
                                  if m)}
            for p in parts]


def figure_message(part: dict[str, Any]) -> str:
    """What went wrong with, or was left out of, a file's figures ('' when nothing)."""
    if part.get("figure_error"):
        return f"overlay not drawn ({part['figure_error']})"
    return part.get("figure_note", "")


def write_aggregates(out: Path, parts: Sequence[dict[str, Any]]) -> None:
    """Write ``results.json``, ``results.csv`` and ``files.csv`` of the parts done so far, atomically."""
    import csv
    import io as _stdio

    from clusterspy.io import write_text_atomic
    from clusterspy.predict import ClusterResult
    from clusterspy.workflows import format_results

    results = [ClusterResult.from_dict(d) for p in parts for d in p["results"]]
    buf = _stdio.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FILE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(file_rows(parts))
    write_text_atomic(out / "results.json", format_results(results, "json") + "\n")
    write_text_atomic(out / "results.csv", format_results(results, "csv") + "\n")
    write_text_atomic(out / "files.csv", buf.getvalue())


def _fingerprint(cfg: BatchConfig, card_summary: dict[str, Any]) -> dict[str, Any]:
    from clusterspy import __version__

    return {"clusterspy_version": __version__,
            "model": {k: card_summary.get(k) for k in ("id", "weights_sha256", "card_sha256")},
            "pixel_size_A_override": cfg.pixel_size_A, **dict(sorted(cfg.options.items())),
            "explain": cfg.explain, "signal": cfg.signal, **_verify_settings(cfg)}


def _verify_settings(cfg: BatchConfig) -> dict[str, Any]:
    """``{"verify": True, "element", "energy_keV", "semiangle_mrad"}`` for a verified batch
    (:func:`clusterspy.workflows.fit_beam`), with ``"calibrate": True`` for a calibrated one;
    nothing otherwise (a batch without fits has the settings it had before fits existed)."""
    from clusterspy.workflows import fit_beam

    if not (cfg.verify or cfg.calibrate):
        return {}
    return {**({"verify": True} if cfg.verify else {}), **({"calibrate": True} if cfg.calibrate else {}),
            "element": cfg.element, **fit_beam(cfg.microscope)}


def _with_default_beam(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """A verified batch's fingerprint written before the microscope was recorded, with the fit's
    default one it was verified with (:func:`clusterspy.workflows.fit_beam`)."""
    if not fingerprint.get("verify"):
        return fingerprint
    from clusterspy.workflows import fit_beam

    return {**fit_beam(None), **fingerprint}


def _check_same_settings(out: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    changed = [k for k in {**old, **new} if old.get(k) != new.get(k)]
    if changed:
        what = ", ".join(f"{_OPTION_NAMES.get(k, k)} {_short(old.get(k))} → {_short(new.get(k))}"
                         for k in changed)
        raise ConfigError(f"--out {out} holds a batch made with other settings ({what}); rerun with "
                          "--restart to start afresh, or choose another --out")


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("id") or value)
    return "default" if value is None else str(value)


def _kept_any(out: Path) -> bool:
    """Whether ``out`` holds a file's results (a part with status ``ok`` or ``partial``)."""
    return any(p.get("status") in ("ok", "partial") for p in _load_parts(out).values())


def _clear(out: Path) -> None:
    """Remove what an earlier batch wrote into ``out`` (``--restart``), nothing else."""
    parts_dir = out / "parts"
    if parts_dir.is_dir():
        for f in parts_dir.glob("*.json"):
            try:
                names = json.loads(f.read_text(encoding="utf-8")).get("figures", [])
            except (OSError, ValueError):
                names = []
            for name in names:
                (out / name).unlink(missing_ok=True)
        shutil.rmtree(parts_dir)
    for name in ("results.json", "results.csv", "files.csv", "settings.json"):
        (out / name).unlink(missing_ok=True)


def _load_parts(out: Path) -> dict[str, dict[str, Any]]:
    parts = {}
    for f in sorted((out / "parts").glob("*.json")):
        try:
            part = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # cannot happen with atomic writes; such a part is simply redone
        parts[part["key"]] = part
    return parts


def _remove_tmp(out: Path) -> None:
    """Delete the temporary files of atomic writes (``.<name>.<random>.tmp``) a kill left in ``out``."""
    for folder in (out, out / "parts"):
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


def _is_done(part: dict[str, Any] | None, identity: dict[str, int] | None) -> bool:
    """Whether a file's part is complete and OK for its unchanged file (any other status is retried:
    the user may have fixed the cause, e.g. installed a missing reader package)."""
    return (part is not None and part.get("status") == "ok" and part.get("figures_done", False)
            and not part.get("retry") and identity is not None and part.get("identity") == identity)


def _unique_stems(files: Sequence[str]) -> dict[str, str]:
    """A PNG name stem per file, unique within the batch (first come keeps the plain stem)."""
    used: set[str] = set()
    stems = {}
    for f in files:
        p = Path(f)
        stem = p.stem
        if stem in used:
            stem = f"{p.stem}_{p.suffix.lstrip('.')}"
        n = 2
        base = stem
        while stem in used:
            stem, n = f"{base}_{n}", n + 1
        used.add(stem)
        stems[file_key(f)] = stem
    return stems


def _local_workers(workers: int | None) -> int:
    if workers is not None:
        if workers < 1:
            raise ConfigError(f"--workers {workers}: give at least 1 (1 = in this process)")
        return workers
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


Task = tuple[str, BatchConfig, str, str]  # absolute path, settings, PNG stem, the path as given


def _engine_in_process(tasks: Sequence[Task]) -> Iterator[dict[str, Any]]:
    for task in tasks:
        yield classify_task(*task)


def _died(task: Task, exc: BaseException) -> dict[str, Any]:
    """The part of a task whose worker died (killed, out of memory): tried again on a rerun."""
    path, cfg, _, display = task
    msg = f"worker failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    return {"key": file_key(path), "file": display, "identity": file_identity(path), "run": cfg.run,
            "status": "error", "retry": True, "message": msg, "frames": 0, "info": {}, "results": [],
            "failures": [{"file": display, "frame": None, "error": type(exc).__name__, "message": msg}],
            "figures": [], "figures_done": False}


def _engine_processes(tasks: Sequence[Task], n: int) -> Iterator[dict[str, Any]]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding ONNX Runtime threads
    with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
        futures = {pool.submit(classify_task, *t): t for t in tasks}
        for fut in as_completed(futures):
            try:
                yield fut.result()
            except (ClusterSpyError, OSError):  # --out cannot be written (full disk): no use going on
                raise
            except Exception as exc:  # a dead worker (BrokenProcessPool): record, go on
                yield _died(futures[fut], exc)


def _engine_dask(tasks: Sequence[Task], scheduler: str) -> Iterator[dict[str, Any]]:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise MissingDependencyError("distributed", "batch", "--scheduler (a Dask cluster)") from None
    try:
        client = Client(scheduler, timeout="20s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: "
                          f"{' '.join(str(exc).split())[:200]}") from None
    try:
        futures = {client.submit(classify_task, *t, pure=False): t for t in tasks}
        for fut in as_completed(futures, loop=client.loop):
            try:
                yield fut.result()
            except (ClusterSpyError, OSError):  # --out cannot be written (full disk): no use going on
                raise
            except Exception as exc:  # a worker lost (KilledWorker) or a task that raised
                yield _died(futures[fut], exc)
    finally:
        client.close()


def run_batch(
    paths: Sequence[str | os.PathLike],
    *,
    out: str | os.PathLike | None = None,
    pixel_size_A: float | None = None,
    model_path: str | os.PathLike | None = None,
    options: dict[str, Any] | None = None,
    explain: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    restart: bool = False,
    progress: bool | None = None,
    on_part: Callable[[dict[str, Any]], None] | None = None,
    signal: int | str | None = None,
    verify: bool = False,
    element: str = "Au",
    microscope: Any = None,
    calibrate: bool = False,
) -> BatchResult:
    """Classify a batch of image files, writing each file's results as soon as it is done.

    Parameters
    ----------
    paths : sequence of path-like
        Image files and folders (a folder: its image files, sorted by name).
    out : path-like, optional
        Output folder (locked while the batch runs): ``parts/``, ``results.csv``,
        ``results.json``, ``files.csv``, ``settings.json`` and overlay PNGs. A rerun skips the
        files already done. None: nothing is written, nothing resumed.
    pixel_size_A : float, optional
        Pixel size [Å/px]; overrides the files' calibration.
    model_path : path-like, optional
        The model (default: shipped).
    options : dict, optional
        Keywords of :func:`clusterspy.classify` (``contrast``, ``min_size_nm``, ``max_size_nm``,
        ``border``).
    explain : bool
        With ``out``: also draw each overlay's saliency figure.
    workers : int, optional
        Local processes (default: one per core; 1 = this process).
    scheduler : str, optional
        Address of a Dask distributed scheduler (``tcp://host:port``); the files must be
        readable, and ``out`` writable, at the same paths on its workers.
    restart : bool
        Forget what an earlier batch wrote into ``out`` and start afresh.
    progress : bool, optional
        Progress bar on stderr (default: when stderr is a terminal and there are several files).
    on_part : callable, optional
        Called with each part as it completes (e.g. to print a failure at once).
    signal : int or str, optional
        The signal read from each multi-signal file (index or title; recorded in
        ``settings.json``: a rerun with another is refused). None: the HAADF one, or the only one.
    verify : bool
        Check every label that stands with a structure fit
        (:func:`clusterspy.workflows.verify_clusters`): ``fit_*`` columns in the results, a
        conclusive fit of another isomer makes the label ``"unknown"`` (``fit_disagrees``), and
        with ``out`` each fit's figure. Recorded in ``settings.json`` (``"verify": true``).
    element : str
        With ``verify``: the metal of the clusters (Au, Pt, Pd, Ag, Cu, ...).
    microscope : clusterspy.simulation.Microscope, optional
        With ``verify`` or ``calibrate``: beam energy [keV] and convergence semi-angle [mrad] of
        the data (default 200 keV, 25 mrad); recorded in ``settings.json`` (``energy_keV``,
        ``semiangle_mrad``).
    calibrate : bool
        Check each frame's pixel size against the lattice of its crystalline clusters (``element``
        the ruler) and classify it at the corrected one
        (:func:`clusterspy.workflows.calibrate_pixel_size`); each file's ``info`` gets its
        ``calibration``. Recorded in ``settings.json`` (``"calibrate": true``).

    Returns
    -------
    BatchResult

    Raises
    ------
    ConfigError
        ``out`` is a file, is in use by another run, or holds a batch made with other settings.
    """
    import sys

    from clusterspy.predict import load_model, model_summary

    files = expand_inputs(paths)
    if out is not None:  # never read our own outputs as inputs (--out inside a folder given)
        own = Path(out).expanduser().resolve()
        files = [f for f in files if own not in Path(file_key(f)).parents]
    model = load_model(model_path)  # a missing or tampered model: one line, before any work
    if verify or calibrate:
        _check_element(element)
    if model_path is not None and Path(model_path).exists():  # absolute: Dask workers run elsewhere
        model_path = Path(model_path).resolve()
    cfg = BatchConfig(pixel_size_A=pixel_size_A, model_path=None if model_path is None else str(model_path),
                      options=dict(options or {}), explain=explain, signal=signal, verify=verify,
                      element=element, microscope=microscope, calibrate=calibrate,
                      out=None if out is None else str(Path(out).expanduser().resolve()))
    stems = _unique_stems(files)
    lock = None
    done: dict[str, dict[str, Any]] = {}
    out_dir = None if out is None else Path(out)
    if out_dir is not None:
        from clusterspy import outdir

        if out_dir.exists() and not out_dir.is_dir():
            raise ConfigError(f"--out {out_dir} is a file; give a folder (it is created if missing)")
        lock = outdir.acquire(out_dir, "clusterspy classify")
    try:
        if out_dir is not None:
            files, cfg, done = _prepare_out(out_dir, files, cfg, model_summary(model), restart)
            stems = _unique_stems(files)
        todo = [f for f in files if not _is_done(done.get(file_key(f)), file_identity(f))]
        engine = ("dask" if scheduler else "in-process" if _local_workers(workers) == 1 or len(todo) <= 1
                  else "processes")
        tasks = [(file_key(f), cfg, stems[file_key(f)], f) for f in todo]
        if engine == "dask":
            stream = _engine_dask(tasks, str(scheduler))
        elif engine == "processes":
            stream = _engine_processes(tasks, min(_local_workers(workers), len(todo)))
        else:
            stream = _engine_in_process(tasks)
        show = (len(todo) > 1 and sys.stderr.isatty()) if progress is None else progress
        _collect(stream, done, files, out_dir, show, len(todo), on_part)
        parts = [done[file_key(f)] for f in files if file_key(f) in done]
        if out_dir is not None:
            write_aggregates(out_dir, parts)
            _record_run(out_dir, computed=len(todo), skipped=len(files) - len(todo), engine=engine)
        return BatchResult(parts, computed=len(todo), skipped=len(files) - len(todo), engine=engine,
                           out=out_dir)
    finally:
        if lock is not None:
            from clusterspy import outdir

            outdir.release(lock)


def _check_element(element: str) -> None:
    """Refuse, before any work, a metal the structure fit cannot build (one line)."""
    try:
        from clusterspy.structures import lattice_constant

        lattice_constant(element)
    except ImportError as exc:  # ase (the 'train' extra)
        raise MissingDependencyError(exc.name or "ase", "train",
                                      "--verify and --calibrate (the structure fit)") from exc


def _collect(stream: Iterator[dict[str, Any]], done: dict[str, dict[str, Any]], files: Sequence[str],
             out_dir: Path | None, show: bool, total: int,
             on_part: Callable[[dict[str, Any]], None] | None) -> None:
    """Gather parts as they complete; rebuild the aggregates now and then (adaptive interval, s)."""
    from clusterspy.workflows import _progress

    last, cost = time.monotonic(), 0.0
    with _progress(show) as bar:
        task = bar.add_task("classifying files", total=total) if bar is not None else None
        for part in stream:
            done[part["key"]] = part
            if on_part is not None:
                on_part(part)
            if bar is not None:
                bar.advance(task)
            if out_dir is not None and time.monotonic() - last >= max(1.0, 5 * cost):
                t0 = time.monotonic()
                write_aggregates(out_dir, [done[file_key(f)] for f in files if file_key(f) in done])
                last = time.monotonic()
                cost = last - t0


def _prepare_out(out: Path, files: list[str], cfg: BatchConfig, card_summary: dict[str, Any],
                 restart: bool) -> tuple[list[str], BatchConfig, dict[str, dict[str, Any]]]:
    """Check (or start) ``settings.json``; return the batch's files (earlier ones first), config, parts."""
    from dataclasses import replace

    from clusterspy.io import write_text_atomic

    if restart:
        _clear(out)
    _remove_tmp(out)  # this run holds the lock: no other writer is at work
    settings_path = out / "settings.json"
    fingerprint = _fingerprint(cfg, card_summary)
    old = None
    if settings_path.is_file():
        try:
            old = json.loads(settings_path.read_text(encoding="utf-8"))
        except ValueError:
            raise ConfigError(f"{settings_path} is damaged; rerun with --restart to start afresh") from None
        if old.get("fingerprint") != fingerprint and not _kept_any(out):
            _clear(out)  # an earlier batch that classified nothing (a refused input): nothing to lose
            old = None
        else:
            _check_same_settings(out, _with_default_beam(old.get("fingerprint", {})), fingerprint)
    elif any((out / "parts").glob("*.json")):
        raise ConfigError(f"--out {out} holds parts of a batch without its settings.json; rerun with "
                          "--restart to start afresh")
    done = _load_parts(out) if old else {}
    earlier = [i["file"] for i in (old or {}).get("inputs", [])]
    keys = {file_key(f) for f in earlier}
    files = earlier + [f for f in files if file_key(f) not in keys]
    for f in files:  # a file already classified has changed: its results would be mixed with others'
        part = done.get(file_key(f))
        ident = file_identity(f)
        if part is not None and part["status"] in ("ok", "partial") and ident is not None \
                and part.get("identity") != ident:
            raise ConfigError(f"{f} changed since it was classified into --out {out} (size or mtime "
                              "differ); rerun with --restart to start afresh, or choose another --out")
    run = len((old or {}).get("runs", [])) + 1
    cfg = replace(cfg, run=run)
    settings = {"clusterspy_version": fingerprint["clusterspy_version"],
                "seed": None,  # classification draws no random numbers: the same input gives the same output
                "model": card_summary, "pixel_size_A_override": cfg.pixel_size_A, "options": cfg.options,
                "explain": cfg.explain, "signal": cfg.signal, **_verify_settings(cfg),
                "inputs": [{"file": f, "key": file_key(f)} for f in files],
                "fingerprint": fingerprint, "runs": (old or {}).get("runs", [])}
    (out / "parts").mkdir(parents=True, exist_ok=True)
    write_text_atomic(settings_path, json.dumps(settings, indent=2, default=str) + "\n")
    return files, cfg, done


def _record_run(out: Path, *, computed: int, skipped: int, engine: str) -> None:
    """Append this run's counts (files computed, files skipped as done) to ``settings.json``."""
    from clusterspy.io import write_text_atomic

    settings_path = out / "settings.json"
    settings = json.loads(settings_path.read_text(encoding="utf-8"))
    settings["runs"].append({"finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             "computed": computed, "skipped": skipped, "engine": engine})
    write_text_atomic(settings_path, json.dumps(settings, indent=2, default=str) + "\n")


__all__ = ["EXIT_SOME_FAILED", "FILE_COLUMNS", "BatchConfig", "BatchResult", "classify_task",
           "expand_inputs", "figure_message", "file_identity", "file_key", "file_rows", "run_batch",
           "write_aggregates"]
