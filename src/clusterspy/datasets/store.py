"""Labelled datasets on disk (zarr): generation in parallel with Dask, resumable after ``kill -9``.

Layout of a dataset folder ``DIR.zarr``::

    images   (N, crop_px, crop_px) float32   raw crops at the model pixel size (not normalised)
    labels   (N,) int8                       index into clusterspy.isomers.CLASSES
    attrs    {"spec": ..., "classes": ..., "n_images": N, "chunk_size": C, "pixel_size_A": ...}
    _done/   one JSON file per finished chunk (its per-image metadata), written atomically

Work is split into chunks of ``C`` images aligned with the zarr chunks, so parallel writers
never touch the same storage object. A chunk counts as done only once its marker exists; the
marker is written (tmp file + ``os.replace``) *after* its images and labels. After a crash or
``kill -9`` the unfinished chunks are regenerated — every image ``i`` comes from its own
generator ``numpy.random.default_rng([seed, i])``, so the rerun produces the same bytes: nothing
is lost or duplicated, and the finished dataset is bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.errors import ConfigError
from clusterspy.isomers import CLASSES

DONE_DIR = "_done"


def _open_or_create(path: Path, spec: dict[str, Any]):
    import zarr

    n = int(spec["n_images"])
    crop = int(spec["crop_px"])
    chunk = int(spec.get("chunk_size", 32))
    if (path / "zarr.json").exists():
        root = zarr.open_group(str(path), mode="r+")
        from clusterspy.datasets.spec import load_spec, upgrade_spec

        # options renamed since (backend_options "calibration" → "parameters") take their new name
        old = upgrade_spec(root.attrs.get("spec"))
        try:  # keys added to DEFAULT_SPEC since the dataset was started take their defaults
            old = load_spec(old)
        except ConfigError:
            pass
        if old != json.loads(json.dumps(spec)):
            raise ConfigError(
                f"{path} was generated from a different specification; delete it or choose "
                "another output folder"
            )
        return root
    root = zarr.open_group(str(path), mode="w")
    root.create_array("images", shape=(n, crop, crop), chunks=(chunk, crop, crop), dtype="float32",
                      fill_value=0.0)
    root.create_array("labels", shape=(n,), chunks=(chunk,), dtype="int8", fill_value=-1)
    root.attrs.update({
        "spec": json.loads(json.dumps(spec)),
        "classes": list(CLASSES),
        "n_images": n,
        "chunk_size": chunk,
        "crop_px": crop,
        "pixel_size_A": float(spec["pixel_size_A"]),
        "format": "clusterspy-dataset-1",
    })
    (path / DONE_DIR).mkdir(exist_ok=True)
    return root


def _chunk_done(path: Path, k: int) -> bool:
    return (path / DONE_DIR / f"{k:06d}.json").exists()


def _write_chunk(path: str, spec: dict[str, Any], k: int, sample_fn: Callable) -> int:
    """Generate chunk ``k`` of the dataset and write it (worker task)."""
    import zarr

    p = Path(path)
    if _chunk_done(p, k):
        return k
    n = int(spec["n_images"])
    chunk = int(spec.get("chunk_size", 32))
    lo, hi = k * chunk, min(n, (k + 1) * chunk)
    crops, labels, metas = [], [], []
    for i in range(lo, hi):
        crop, label, meta = sample_fn(spec, i)
        crops.append(crop)
        labels.append(label)
        metas.append({"index": i, **meta})
    root = zarr.open_group(path, mode="r+")
    root["images"][lo:hi] = np.stack(crops).astype(np.float32)
    root["labels"][lo:hi] = np.asarray(labels, dtype=np.int8)
    marker = p / DONE_DIR / f"{k:06d}.json"
    tmp = marker.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(metas, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, marker)
    return k


def generate(
    spec: dict[str, Any] | str | Path,
    out: str | Path,
    *,
    scheduler: str | None = None,
    num_workers: int | None = None,
    progress: bool = True,
    sample_fn: Callable | None = None,
) -> Path:
    """Generate (or finish generating) a labelled dataset from a specification.

    Parameters
    ----------
    spec : dict or path
        Dataset specification (see :func:`clusterspy.datasets.load_spec`; keys ``seed``,
        ``n_images``, ``crop_px``, ``pixel_size_A`` [Å/px], ``chunk_size``, motif / size /
        element / microscope / acquisition ranges).
    out : path
        Dataset folder (``.zarr``). If it exists and holds the same specification, only the
        chunks not yet finished are generated (resume after a crash or ``kill -9``).
    scheduler : str, optional
        ``None``/``"processes"`` (local processes, default), ``"threads"``, ``"synchronous"``, or
        the address of a Dask distributed scheduler (``"tcp://host:8786"``).
    num_workers : int, optional
        Local workers (default: all cores).
    progress : bool
        Show a progress bar.
    sample_fn : callable, optional
        ``sample_fn(spec, index) -> (crop, label, metadata)``; default
        :func:`clusterspy.datasets.make_sample`.

    Returns
    -------
    pathlib.Path
        The dataset folder.
    """
    from clusterspy.datasets.spec import load_spec

    spec = load_spec(spec)
    if sample_fn is None:
        from clusterspy.datasets.sampling import make_sample

        sample_fn = make_sample
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    _open_or_create(path, spec)
    n = int(spec["n_images"])
    chunk = int(spec.get("chunk_size", 32))
    todo = [k for k in range((n + chunk - 1) // chunk) if not _chunk_done(path, k)]
    if todo:
        _run(str(path), spec, todo, sample_fn, scheduler, num_workers, progress)
    return path


def _run(path, spec, todo, sample_fn, scheduler, num_workers, progress) -> None:
    if scheduler is not None and "://" in scheduler:
        from dask.distributed import Client, as_completed

        with Client(scheduler) as client:
            futures = [client.submit(_write_chunk, path, spec, k, sample_fn, pure=False)
                       for k in todo]
            bar = _bar(len(todo), progress)
            for fut in as_completed(futures):
                fut.result()
                bar.update(1)
            bar.close()
        return
    import dask

    tasks = [dask.delayed(_write_chunk)(path, spec, k, sample_fn) for k in todo]
    sched = scheduler or "processes"
    if sched == "synchronous" or len(tasks) == 1:
        bar = _bar(len(tasks), progress)
        for k in todo:
            _write_chunk(path, spec, k, sample_fn)
            bar.update(1)
        bar.close()
        return
    kwargs: dict[str, Any] = {"scheduler": sched}
    if num_workers:
        kwargs["num_workers"] = int(num_workers)
    pool = None
    if sched == "processes":  # our own pool, so that an interrupted run stops its workers too
        pool = _process_pool(int(num_workers) if num_workers else None)
        kwargs["pool"] = pool
    bar = _bar(len(tasks), progress)
    try:
        with _chunk_callback(bar):
            dask.compute(*tasks, **kwargs)
    except BaseException:
        if pool is not None:
            stop_workers(pool)
        raise
    finally:
        bar.close()
    if pool is not None:
        pool.shutdown()


def _process_pool(num_workers: int | None):
    """The worker processes of the ``"processes"`` scheduler: dask's own default (spawned, one per
    core unless ``num_workers``), made here so that :func:`stop_workers` can end them."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import dask

    context = multiprocessing.get_context(dask.config.get("multiprocessing.context", "spawn"))
    return ProcessPoolExecutor(max_workers=num_workers or os.cpu_count() or 1, mp_context=context)


def stop_workers(pool, timeout_s: float = 5.0) -> None:
    """End a process pool's workers now, mid-chunk (Ctrl-C, or SIGTERM, which the CLI turns into
    Ctrl-C): a ``kill`` of ``clusterspy dataset`` used to leave its workers computing, orphaned,
    until their chunks were done. An unfinished chunk has no marker and is made again, bit for bit,
    by the next run."""
    processes = list(getattr(pool, "_processes", {}).values())
    for p in processes:
        p.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        p.join(timeout_s)


def _chunk_callback(bar):
    """A dask local-scheduler callback that advances ``bar`` once per finished chunk.

    (dask's own ``ProgressBar`` redraws every 0.1 s, which fills a log file with megabytes of
    carriage returns when a long generation runs under ``nohup``; tqdm redraws only on progress.)
    """
    from dask.callbacks import Callback

    def posttask(key, result, dsk, state, worker_id) -> None:
        name = key[0] if isinstance(key, tuple) else key
        if str(name).startswith("_write_chunk"):
            bar.update(1)

    return Callback(posttask=posttask)


def _bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="chunk", disable=not enabled, desc="dataset")


def is_complete(path: str | Path) -> bool:
    """True when every chunk of the dataset at ``path`` is finished."""
    import zarr

    p = Path(path)
    if not (p / "zarr.json").exists():
        return False
    root = zarr.open_group(str(p), mode="r")
    n, chunk = int(root.attrs["n_images"]), int(root.attrs["chunk_size"])
    return all(_chunk_done(p, k) for k in range((n + chunk - 1) // chunk))


def load(path: str | Path, *, partial: bool = False
         ) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Read a dataset: ``images (N, H, W) float32``, ``labels (N,) int``, metadata list.

    Parameters
    ----------
    path : path
        Dataset folder.
    partial : bool
        Return only the finished chunks of a dataset still being generated (their metadata
        ``index`` says which examples they are); default: require a finished dataset.

    Raises
    ------
    ConfigError
        If the dataset is missing or (without ``partial``) unfinished (run :func:`generate`
        again to finish it).
    """
    import zarr

    p = Path(path)
    if not (p / "zarr.json").exists() or (not partial and not is_complete(p)):
        raise ConfigError(f"dataset {p} is missing or unfinished; run generate() on it to finish")
    root = zarr.open_group(str(p), mode="r")
    chunk = int(root.attrs["chunk_size"])
    markers = sorted((p / DONE_DIR).glob("*.json"))
    metas: list[dict[str, Any]] = []
    images, labels = [], []
    for marker in markers:
        k = int(marker.stem)
        with open(marker, encoding="utf-8") as fh:
            m = json.load(fh)
        lo = k * chunk
        images.append(np.asarray(root["images"][lo : lo + len(m)]))
        labels.append(np.asarray(root["labels"][lo : lo + len(m)]))
        metas.extend(m)
    crop = int(root.attrs["crop_px"])
    if not images:
        return np.zeros((0, crop, crop), np.float32), np.zeros(0, np.int64), []
    return np.concatenate(images), np.concatenate(labels).astype(np.int64), metas
