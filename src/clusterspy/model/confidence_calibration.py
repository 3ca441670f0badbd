"""Confidence calibration of the classifier: temperature scaling, the "unknown" threshold, and
calibration metrics (NumPy).

"Calibration" means three things in ClusterSpy; this module is the classifier's confidence.
The pixel size [Å/px] is decided in :mod:`clusterspy.image`; the fast simulator's fitted
parameters live in :mod:`clusterspy.simulation.fast` (``FastParameters``, ``fast_parameters.json``).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

__all__ = [
    "balanced_weights",
    "calibrate_confidence",
    "choose_threshold",
    "confusion_matrix",
    "expected_calibration_error",
    "fit_temperature",
    "nll",
    "recalibrate",
    "selective_metrics",
]


def _softmax(logits: np.ndarray, t: float) -> np.ndarray:
    z = np.asarray(logits, np.float64) / t
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, t: float = 1.0,
        weights: np.ndarray | None = None) -> float:
    """Mean (optionally weighted) negative log-likelihood of ``labels`` under ``softmax(logits / t)``."""
    p = _softmax(logits, t)
    logp = np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, None))
    return float(-np.average(logp, weights=weights))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Temperature ``T`` minimising the (weighted) NLL of ``softmax(logits / T)`` on held-out data."""
    res = minimize_scalar(lambda lt: nll(logits, labels, float(np.exp(lt)), weights),
                          bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


def balanced_weights(sizes: list[int]) -> np.ndarray:
    """Per-example weights giving each of several concatenated sets the same total weight."""
    parts = [np.full(n, 1.0 / n) for n in sizes if n > 0]
    return np.concatenate(parts) if parts else np.zeros(0)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE: the confidence–accuracy gap averaged over equal-width confidence bins."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, n_bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def choose_threshold(probs: np.ndarray, labels: np.ndarray, precision: float = 0.99) -> float:
    """Smallest confidence threshold whose accepted predictions reach ``precision``.

    Accepted = confidence ≥ threshold. Returns the lowest threshold ``t`` such that the precision
    of every accepted set with threshold ≥ ``t`` … at ``t`` is at least ``precision``; if no
    threshold reaches it, the highest confidence seen (accept almost nothing).
    """
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    order = np.argsort(-conf)
    cum_prec = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    ok = np.nonzero(cum_prec >= precision)[0]
    if len(ok) == 0:
        return float(conf.max())
    k = ok.max()
    return float(conf[order][k])


def selective_metrics(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Coverage and precision of the predictions with confidence ≥ ``threshold``."""
    conf = probs.max(axis=1)
    acc = conf >= threshold
    correct = probs.argmax(axis=1) == labels
    return {
        "coverage": float(acc.mean()) if len(acc) else 0.0,
        "precision_accepted": float(correct[acc].mean()) if acc.any() else float("nan"),
        "n_accepted": int(acc.sum()),
    }


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, n: int = 4) -> np.ndarray:
    """``cm[true, predicted]`` counts."""
    cm = np.zeros((n, n), dtype=int)
    np.add.at(cm, (labels, pred), 1)
    return cm


def calibrate_confidence(
    cal_logits: np.ndarray, cal_y: np.ndarray, val_logits: np.ndarray | None,
    val_y: np.ndarray | None, precision: float,
) -> tuple[float, float, dict[str, Any]]:
    """Fit temperature and "unknown" threshold on held-out logits; the card's ``metrics``.

    The fast hold-out (``cal_*``) and, when given, the validation set (``val_*``) weigh
    equally in the temperature fit (the fast hold-out is much larger).

    Returns
    -------
    float, float, dict
        The temperature, the confidence threshold below which a prediction is "unknown", and
        the metrics (``calibration_set``, ``fast_holdout``, ``prism_validation``).
    """
    fit_logits, fit_y = cal_logits, cal_y
    if val_logits is not None:
        fit_logits = np.concatenate([cal_logits, val_logits])
        fit_y = np.concatenate([cal_y, val_y])
    fit_w = balanced_weights([len(cal_y), len(fit_y) - len(cal_y)])
    temperature = fit_temperature(fit_logits, fit_y, fit_w)
    fit_p = _softmax(fit_logits, temperature)
    threshold = choose_threshold(fit_p, fit_y, precision)
    metrics: dict[str, Any] = {
        "calibration_set": {
            "what": "held-out fast-simulated examples ((index // 4) % k == k-1) of the dataset"
            + (" + PRISM validation set" if val_logits is not None else ""),
            "n": len(fit_y),
            "accuracy": float((fit_p.argmax(1) == fit_y).mean()),
            "ece_before": expected_calibration_error(_softmax(fit_logits, 1.0), fit_y),
            "ece_after": expected_calibration_error(fit_p, fit_y),
            **selective_metrics(fit_p, fit_y, threshold),
        },
        "fast_holdout": {
            "n": len(cal_y),
            "accuracy": float((cal_logits.argmax(1) == cal_y).mean()),
        },
    }
    if val_logits is not None:
        vp = _softmax(val_logits, temperature)
        metrics["prism_validation"] = {
            "n": len(val_y),
            "accuracy": float((vp.argmax(1) == val_y).mean()),
            "ece": expected_calibration_error(vp, val_y),
            "confusion": confusion_matrix(vp.argmax(1), val_y).tolist(),
            **selective_metrics(vp, val_y, threshold),
        }
    return temperature, threshold, metrics


def recalibrate(out_dir, *, tta: bool = True, precision: float | None = None,
                prism: list | None = None) -> dict:
    """Re-fit temperature and "unknown" threshold of an exported model on its held-out examples.

    Uses the ONNX model through :class:`clusterspy.weights.OnnxNetwork` (so exactly the inference
    code path), optionally with test-time augmentation (logits averaged over the 8 flips/rotations),
    on the held-out examples ``(index // 4) % k == k - 1`` of the training dataset and, when the
    training config names a PRISM validation set that exists, on its finished examples too (the two
    sets weighted equally in the temperature fit: the fast hold-out is much larger), and rewrites
    ``model_card.json`` (``temperature``, ``unknown_threshold``, ``test_time_augmentation``,
    ``metrics["calibration_set"]``). The weights (and their SHA-256) are unchanged.

    Parameters
    ----------
    out_dir : path
        Folder with ``model_card.json`` and the ONNX weights.
    tta : bool
        Also try test-time augmentation; kept if it is more accurate on the calibration data.
    precision : float, optional
        Target precision of accepted predictions (default: the training config's).
    prism : list of paths, optional
        PRISM-simulated calibration datasets (zarr) to use instead of the training config's
        validation set (e.g. ``configs/dataset_cal_prism_v1.yaml``, generated).

    Returns
    -------
    dict
        The new calibration metrics.
    """
    from pathlib import Path

    from clusterspy.datasets import load
    from clusterspy.weights import ModelCard, OnnxNetwork

    out = Path(out_dir)
    model_card = ModelCard.read(out)
    card = model_card.data
    cfg = card["training"]["config"]
    data = Path(cfg["dataset_path"] or out / "train.zarr")
    images, labels, metas = load(data, partial=True)
    k = int(cfg["calibration_every"])
    index = np.asarray([m["index"] for m in metas])
    sel = (index // 4) % k == k - 1
    x, y = images[sel], labels[sel]
    n_fast, n_prism = len(y), 0
    if prism is None:
        vpath = Path(cfg["validation_path"] or out / "val_prism.zarr") if cfg.get("validation") else None
        prism = [vpath] if vpath is not None and (vpath / "zarr.json").exists() else []
    prism_paths = [str(Path(p)) for p in prism]
    for path in prism_paths:
        vimg, vy, _ = load(path, partial=True)
        n_prism += len(vy)
        if len(vy):
            x, y = np.concatenate([x, vimg]), np.concatenate([y, vy])
    weights = balanced_weights([n_fast, n_prism])
    target = float(precision if precision is not None else cfg["unknown_precision"])
    results = {}
    for use in ([False, True] if tta else [False]):
        trial = {**card, "temperature": 1.0,
                 "test_time_augmentation": "dihedral8" if use else None}
        logits = OnnxNetwork(out / card["weights_file"], trial, verify=False).run(x)[0]
        t = fit_temperature(logits, y, weights)
        p = _softmax(logits, t)
        thr = choose_threshold(p, y, target)
        results[use] = {
            "temperature": t, "unknown_threshold": thr, "n": len(y),
            "n_fast_holdout": n_fast, "n_prism": n_prism, "prism_sets": prism_paths,
            "accuracy": float((p.argmax(1) == y).mean()),
            "nll": nll(logits, y, t, weights),
            "ece_before": expected_calibration_error(_softmax(logits, 1.0), y),
            "ece_after": expected_calibration_error(p, y),
            **selective_metrics(p, y, thr),
        }
        if n_prism:
            pv = p[n_fast:]
            results[use]["prism_part"] = {
                "accuracy": float((pv.argmax(1) == y[n_fast:]).mean()),
                "ece": expected_calibration_error(pv, y[n_fast:]),
                **selective_metrics(pv, y[n_fast:], thr),
            }
    best = max(results, key=lambda u: (results[u]["accuracy"], -results[u]["nll"]))
    chosen = results[best]
    card["temperature"] = chosen["temperature"]
    card["unknown_threshold"] = chosen["unknown_threshold"]
    card["test_time_augmentation"] = "dihedral8" if best else None
    card["metrics"]["calibration_set"] = {
        "what": "held-out fast-simulated examples ((index // 4) % k == k-1), never trained on"
                + (", and PRISM-simulated examples of " + ", ".join(prism_paths)
                   + " (fast and PRISM each weighted 1/2 in the temperature fit)" if n_prism else "")
                + "; temperature and threshold fitted here with the ONNX inference path",
        "test_time_augmentation": card["test_time_augmentation"], **chosen,
    }
    card["metrics"]["calibration_alternatives"] = {
        ("dihedral8" if u else "none"): r for u, r in results.items()}
    if card.get("card_sha256"):  # a sealed card stays sealed
        model_card.seal()
    model_card.write()
    return card["metrics"]["calibration_set"]
