"""Equilibrium thermodynamics from isomer proportions: ΔG(T) and the van 't Hoff fit.

``ln(p_i / p_ref) = −ΔE / (k_B T) + ΔS / k_B`` — a straight line in ``x = 1/(k_B T)`` [1/eV] with
slope −ΔE [eV] and intercept ΔS/k_B. The fit's uncertainties come from bootstrapping the frames at
every temperature (a circular block bootstrap within each time-ordered series, so autocorrelated
video frames are not counted as independent; a multinomial bootstrap for unordered tables) and
refitting. ΔG at one temperature takes, like the proportions, a Jeffreys interval on the effective
number of independent frames (:func:`delta_g` with ``n_eff``), which stays wide for a few frames
where a block bootstrap collapses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from clusterspy.isomers import CLASSES
from clusterspy.thermo.synthetic import K_B_EV

__all__ = [
    "bootstrap_counts",
    "correct_misclassification",
    "delta_g",
    "van_t_hoff_fit",
]

_HALF = 0.5  # Haldane pseudo-count for ratios of counts


def bootstrap_counts(
    series_labels: Sequence[np.ndarray],
    *,
    ordered: bool,
    n_boot: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Counts per class and their bootstrap replicates, pooling several series at one temperature.

    Parameters
    ----------
    series_labels : sequence of numpy.ndarray
        State indices per series (``-1`` = unlabelled), in time order if ``ordered``.
    ordered : bool
        Series are time-ordered frames: circular block bootstrap per series (block length from
        the data); else a multinomial bootstrap of the pooled counts.
    n_boot : int
        Replicates.
    rng : numpy.random.Generator
        Random generator.

    Returns
    -------
    counts : numpy.ndarray
        ``(K,)`` observed counts.
    boot : numpy.ndarray
        ``(n_boot, K)`` replicate counts.
    """
    from clusterspy.series.stats import block_bootstrap_counts

    k = len(CLASSES)
    counts = np.zeros(k)
    for lab in series_labels:
        lab = np.asarray(lab, int)
        counts += np.bincount(lab[lab >= 0], minlength=k)
    if not ordered:
        n = int(counts.sum())
        boot = rng.multinomial(n, counts / n, size=n_boot).astype(float) if n else np.zeros(
            (n_boot, k))
        return counts, boot
    boot = np.zeros((n_boot, k))
    for lab in series_labels:
        if len(lab):
            b, _ = block_bootstrap_counts(np.asarray(lab, int), k, n_boot=n_boot, rng=rng)
            boot += b
    return counts, boot


def correct_misclassification(counts: np.ndarray, rate: float) -> np.ndarray:
    """Undo a symmetric misclassification of the labels in expectation.

    With a wrong label drawn uniformly among the other K−1 classes at rate ε, the observed counts
    are ``n_obs = Cᵀ n_true`` with ``C = (1−ε) I + ε/(K−1) (J − I)``; this returns
    ``(Cᵀ)⁻¹ n_obs`` clipped at 0.

    Parameters
    ----------
    counts : numpy.ndarray
        ``(..., K)`` observed counts.
    rate : float
        Misclassification rate ε (0 ≤ ε < (K−1)/K).

    Returns
    -------
    numpy.ndarray
        Corrected counts, same shape.
    """
    c = np.asarray(counts, float)
    k = c.shape[-1]
    if not rate:
        return c
    m = np.full((k, k), rate / (k - 1))
    np.fill_diagonal(m, 1.0 - rate)
    out = np.linalg.solve(m.T, c.reshape(-1, k).T).T.reshape(c.shape)
    return np.clip(out, 0.0, None)


def _ln_ratio(counts: np.ndarray, i: int, ref: int) -> np.ndarray:
    return np.log((counts[..., i] + _HALF) / (counts[..., ref] + _HALF))


def delta_g(
    temperature_K: float, counts: np.ndarray, boot: np.ndarray, i: int, ref: int,
    level: float = 0.95, n_eff: float | None = None,
) -> tuple[float, tuple[float, float]]:
    """ΔG_i(T) = −k_B T ln(p_i / p_ref) [eV] and its CI at one temperature.

    Parameters
    ----------
    temperature_K : float
        Temperature [K].
    counts, boot : numpy.ndarray
        ``(K,)`` counts and ``(B, K)`` bootstrap replicates.
    i, ref : int
        Class indices of the isomer and the reference.
    level : float
        Confidence level.
    n_eff : float, optional
        Effective number of independent labelled frames behind ``counts``
        (:func:`clusterspy.series.stats.effective_sample_size`). When given, the CI is the Jeffreys
        interval of the share ``q = p_i / (p_i + p_ref)`` on the pair's part of ``n_eff``, mapped
        through ``−k_B T ln(q / (1 − q))`` — the same intervals as the proportions', so a few
        autocorrelated frames give a wide (or one-sided infinite) ΔG interval; else the bootstrap
        quantiles of ``boot``.

    Returns
    -------
    (float, (float, float))
        ΔG [eV] (Haldane ½ added to both counts) and its CI [eV] (±inf where the share's interval
        reaches 0 or 1; with ``n_eff``, widened if need be to contain the Haldane estimate).
    """
    kt = K_B_EV * temperature_K
    g = -kt * float(_ln_ratio(counts, i, ref))
    if n_eff is None:
        gb = -kt * _ln_ratio(boot, i, ref)
        a = (1 - level) / 2
        lo, hi = np.quantile(gb, [a, 1 - a])
        return g, (float(lo), float(hi))
    from clusterspy.series.stats import jeffreys_interval

    pair = float(counts[i] + counts[ref])
    total = float(np.sum(counts))
    if pair <= 0 or total <= 0 or n_eff <= 0:
        return g, (-np.inf, np.inf)
    q = np.array([counts[i] / pair])
    q_lo, q_hi = jeffreys_interval(q, n_eff * pair / total, level)[0]
    with np.errstate(divide="ignore"):
        lo = -kt * float(np.log(q_hi) - np.log1p(-q_hi))
        hi = -kt * float(np.log(q_lo) - np.log1p(-q_lo))
    return g, (min(lo, g), max(hi, g))


def _wls(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares of y = b + m x along the last axis of y; returns (m, b)."""
    sw = w.sum()
    xm = np.sum(w * x) / sw
    ym = np.sum(w * y, axis=-1) / sw
    sxx = np.sum(w * (x - xm) ** 2)
    m = np.sum(w * (x - xm) * (y - ym[..., None]), axis=-1) / sxx
    return m, ym - m * xm


def van_t_hoff_fit(
    temperatures_K: Sequence[float],
    counts: np.ndarray,
    boot: np.ndarray,
    i: int,
    ref: int,
    level: float = 0.95,
) -> dict:
    """Weighted van 't Hoff fit of isomer ``i`` against ``ref`` with bootstrap CIs.

    Parameters
    ----------
    temperatures_K : sequence of float
        ``(n_T,)`` temperatures [K].
    counts : numpy.ndarray
        ``(n_T, K)`` counts per temperature.
    boot : numpy.ndarray
        ``(n_T, B, K)`` bootstrap replicates of the counts.
    i, ref : int
        Class indices of the isomer and the reference.
    level : float
        Confidence level.

    Returns
    -------
    dict
        ``delta_E_eV``, ``ci95_eV``, ``delta_S_kB``, ``ci95_S_kB``, per-temperature ``ln_ratio`` and
        ``ln_ratio_ci95``, ``temperatures_K``. Weights are 1/variance of ln(p_i/p_ref) over the
        bootstrap (so autocorrelation widens them), or the delta-method variance if larger.
    """
    t = np.asarray(temperatures_K, float)
    x = 1.0 / (K_B_EV * t)
    y = _ln_ratio(counts, i, ref)
    yb = _ln_ratio(boot, i, ref)  # (n_T, B)
    var_delta = 1.0 / (counts[:, i] + _HALF) + 1.0 / (counts[:, ref] + _HALF)
    var = np.maximum(np.var(yb, axis=1), var_delta)
    w = 1.0 / var
    m, b = _wls(x, y, w)
    mb, bb = _wls(x, yb.T, w)
    a = (1 - level) / 2
    de_lo, de_hi = np.quantile(-mb, [a, 1 - a])
    ds_lo, ds_hi = np.quantile(bb, [a, 1 - a])
    return {
        "delta_E_eV": float(-m),
        "ci95_eV": [float(de_lo), float(de_hi)],
        "delta_S_kB": float(b),
        "ci95_S_kB": [float(ds_lo), float(ds_hi)],
        "temperatures_K": t.tolist(),
        "ln_ratio": y.tolist(),
        "ln_ratio_ci95": np.quantile(yb, [a, 1 - a], axis=1).T.tolist(),
    }
