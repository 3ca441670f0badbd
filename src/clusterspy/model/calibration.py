"""Calibration: temperature scaling, the "unknown" threshold, and calibration metrics (NumPy)."""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import minimize_scalar


def _softmax(logits: np.ndarray, t: float) -> np.ndarray:
    z = np.asarray(logits, np.float64) / t
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, t: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / t)``."""
    p = _softmax(logits, t)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, None))))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature ``T`` minimising the NLL of ``softmax(logits / T)`` on held-out data."""
    res = minimize_scalar(lambda lt: nll(logits, labels, float(np.exp(lt))),
                          bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


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
