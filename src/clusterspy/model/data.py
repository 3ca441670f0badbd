"""Training data: the (fast-simulated) training set with its held-out calibration split, and the
optional (PRISM) validation set, generated when asked and loaded as normalised crops."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.errors import ConfigError


@dataclass
class TrainingData:
    """Normalised crops and labels of one training run.

    Attributes
    ----------
    x : numpy.ndarray
        ``(N, crop_px, crop_px)`` float16 normalised crops of the training set.
    labels : numpy.ndarray
        ``(N,)`` class indices.
    train_idx, cal_idx : numpy.ndarray
        Indices trained on, and held out for confidence calibration (examples with
        ``(index // 4) % k == k - 1``, ``k = calibration_every``).
    val_x, val_y : numpy.ndarray or None
        The validation set's normalised crops and labels, when there is one.
    """

    x: np.ndarray
    labels: np.ndarray
    train_idx: np.ndarray
    cal_idx: np.ndarray
    val_x: np.ndarray | None = None
    val_y: np.ndarray | None = None


def dataset_spec(cfg: dict[str, Any]) -> dict[str, Any]:
    """The training set's full specification (its seed is the config's unless it names one)."""
    from clusterspy.datasets import load_spec
    from clusterspy.datasets.spec import user_spec

    spec = load_spec(cfg["dataset"])
    if spec["seed"] == 0 and "seed" not in user_spec(cfg["dataset"]):
        spec["seed"] = int(cfg["seed"])
    return spec


def train_path(cfg: dict[str, Any], out: Path) -> Path:
    """Where the training set lives (default ``OUT/train.zarr``)."""
    return Path(cfg["dataset_path"] or out / "train.zarr")


def validation_path(cfg: dict[str, Any], out: Path) -> Path:
    """Where the validation set lives (default ``OUT/val_prism.zarr``)."""
    return Path(cfg["validation_path"] or out / "val_prism.zarr")


def load_training_set(
    path: Path, *, partial: bool, calibration_every: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x, labels, train_idx, cal_idx)`` of the training set at ``path`` (see :class:`TrainingData`)."""
    from clusterspy.datasets import load
    from clusterspy.weights import normalise_crops

    images, labels, metas = load(path, partial=partial)
    index = np.asarray([m["index"] for m in metas], dtype=np.int64)
    x = normalise_crops(images, None).astype(np.float16)
    k = int(calibration_every)
    cal_mask = (index // 4) % k == k - 1
    return x, labels, np.nonzero(~cal_mask)[0], np.nonzero(cal_mask)[0]


def prepare_data(
    cfg: dict[str, Any], spec: dict[str, Any], out: Path, *, progress: bool
) -> tuple[TrainingData, float]:
    """Generate (when ``cfg["generate"]``) and load the training and validation sets.

    Returns
    -------
    TrainingData, float
        The data, and the time spent generating the training set [s].

    Raises
    ------
    ConfigError
        If the training set has fewer finished examples than one batch (or < 4 held out).
    """
    from clusterspy.datasets import generate, load, load_spec
    from clusterspy.weights import normalise_crops

    path = train_path(cfg, out)
    t0 = time.time()
    if cfg["generate"]:
        generate(spec, path, num_workers=cfg["workers"], progress=progress)
    gen_s = time.time() - t0
    partial = not cfg["generate"]
    x, labels, tr_idx, cal_idx = load_training_set(
        path, partial=partial, calibration_every=cfg["calibration_every"])
    if len(tr_idx) < int(cfg["batch_size"]) or len(cal_idx) < 4:
        raise ConfigError(f"dataset {path} has too few finished examples ({len(labels)})")
    data = TrainingData(x, labels, tr_idx, cal_idx)
    if cfg["validation"]:
        vspec = load_spec(cfg["validation"])
        vpath = validation_path(cfg, out)
        if cfg["generate"]:
            generate(vspec, vpath, num_workers=cfg["workers"], progress=progress)
        if (vpath / "zarr.json").exists():
            vimg, val_y, _ = load(vpath, partial=partial)
            if len(val_y):
                data.val_x, data.val_y = normalise_crops(vimg, None), val_y
    return data, gen_s


def training_set_sha256(data: TrainingData) -> str:
    """SHA-256 of a training run's normalised crops, labels and train/calibration split.

    Recorded in every checkpoint (``state["data_sha256"]``): a run resumed on a machine that
    generated its training set again (``runs/`` does not outlive one) must find the same set.
    """
    import hashlib

    h = hashlib.sha256()
    for a in (data.x, data.labels, data.train_idx, data.cal_idx):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def reload_data(data: TrainingData, cfg: dict[str, Any], out: Path) -> None:
    """Reload the finished examples of datasets generated alongside training (``grow``), in place."""
    from clusterspy.datasets import load
    from clusterspy.weights import normalise_crops

    data.x, data.labels, data.train_idx, data.cal_idx = load_training_set(
        train_path(cfg, out), partial=not cfg["generate"],
        calibration_every=cfg["calibration_every"])
    if not cfg["validation"]:
        return
    vpath = validation_path(cfg, out)
    if not (vpath / "zarr.json").exists():
        return
    vimg, vy, _ = load(vpath, partial=True)
    if len(vy):
        data.val_x, data.val_y = normalise_crops(vimg, None), vy
