"""Kinetics from time-stamped label series: CTMC rates per temperature and the Arrhenius fit.

The isomer follows a continuous-time Markov chain with generator ``Q`` [1/s]; it is seen every
``Δt`` through a classifier that errs at rate ε (a wrong label is one of the other classes). That
is a hidden Markov model with transition matrix ``expm(Q Δt)`` and emission matrix
``C = (1−ε) I + ε/(K−1)(J−I)``. :func:`fit_rates` maximises its likelihood by EM: the E-step is
the forward–backward pass of :mod:`clusterspy.series.hmm`; the M-step maximises
``Σ ξ_ij log expm(QΔt)_ij`` over ``Q`` (:func:`clusterspy.series.stats.ctmc_rates`) and sets ε to
the expected fraction of mislabelled frames. Spurious "transitions" from single misclassified
frames are thus not counted as isomer changes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from clusterspy.isomers import CLASSES
from clusterspy.thermo.synthetic import K_B_EV

__all__ = ["arrhenius_fit", "branching_by_temperature", "fit_rates"]

log = logging.getLogger(__name__)


#: Fewer departures than this (expected transitions can be fractional) give no branching ratio.
MIN_DEPARTURES = 0.5
_LN_FLOAT_MAX = float(np.log(np.finfo(float).max))


def _exp_or_none(ln_value: float) -> float | None:
    """``exp(ln_value)``, or None when it is beyond the float range (a prefactor of a degenerate fit)."""
    return float(np.exp(ln_value)) if np.isfinite(ln_value) and ln_value < _LN_FLOAT_MAX else None


def branching_by_temperature(
    temperatures_K: Sequence[float], counts: np.ndarray, source: Sequence[str], *,
    level: float = 0.95,
) -> list[dict]:
    """Branching ratios per temperature: where an isomer goes when it leaves, with intervals.

    The ratio ``i → j`` is the share of departures from ``i`` that land on ``j``; a rate is the
    total departure rate of ``i`` times its branching ratio, so the barriers of the Arrhenius fit
    rest on these numbers (:func:`clusterspy.series.stats.branching_ratios`: Dirichlet posterior
    with ½ pseudo-departure per destination).

    Parameters
    ----------
    temperatures_K : sequence of float
        Temperatures [K].
    counts : numpy.ndarray
        ``(n_T, K, K)`` transition counts per temperature (observed label changes, or the expected
        transitions of :func:`fit_rates`, which discount misclassified frames).
    source : sequence of str
        Per temperature, what the counts are (``"observed label changes"`` or
        ``"expected transitions (rate fit)"``), recorded with every entry.
    level : float
        Confidence level.

    Returns
    -------
    list of dict
        One entry per temperature and pair with departures from ``from``: ``temperature_K``,
        ``from``, ``to``, ``ratio``, ``ci95``, ``n_departures``, ``source``; ``ratio`` and ``ci95``
        are None below :data:`MIN_DEPARTURES` departures (the prior alone would give 1/(K−1)).
    """
    from clusterspy.series.stats import branching_ratios

    out = []
    for t, c, src in zip(temperatures_K, np.asarray(counts, float), source, strict=True):
        br = branching_ratios(c, level=level)
        for i, a in enumerate(CLASSES):
            if br["n_departures"][i] <= 0:
                continue
            few = br["n_departures"][i] < MIN_DEPARTURES  # the prior alone: no ratio
            for j, b in enumerate(CLASSES):
                if i != j:
                    out.append({"temperature_K": float(t), "from": a, "to": b,
                                "ratio": None if few else float(br["ratio"][i, j]),
                                "ci95": [None, None] if few else [float(br["ci"][i, j, 0]),
                                                                  float(br["ci"][i, j, 1])],
                                "n_departures": float(br["n_departures"][i]), "source": src})
    return out


def _confusion(eps: float, k: int) -> np.ndarray:
    c = np.full((k, k), eps / (k - 1))
    np.fill_diagonal(c, 1.0 - eps)
    return c


def fit_rates(
    series: Sequence[np.ndarray],
    frame_time_s: float,
    *,
    misclassification: float | str = "estimate",
    states: Sequence[str] | None = None,
    max_iter: int = 200,
    tol: float = 1e-6,
) -> dict:
    """Maximum-likelihood CTMC generator from label series observed every ``frame_time_s``.

    Parameters
    ----------
    series : sequence of numpy.ndarray
        State indices per series (order of ``CLASSES``; ``-1`` = unlabelled: unknown, lost,
        blurred), all at the same temperature and frame interval.
    frame_time_s : float
        Frame interval Δt [s].
    misclassification : float or "estimate"
        Label error rate ε, or ``"estimate"`` to learn it with the rates. ``0`` fits the labels
        as they are (every label change is a transition).
    max_iter : int
        EM iterations at most.
    states : sequence of str, optional
        Isomers that really occur. By default an isomer counts as present when its share of the
        labels exceeds twice what misclassification alone would put there (2ε/(K−1)); otherwise
        single mislabelled frames would be explained as sub-frame visits to an absent isomer.
    tol : float
        Stop when the log-likelihood gains less than ``tol`` × number of frames.

    Returns
    -------
    dict
        ``Q`` ((K, K) [1/s]), ``misclassification`` (ε), ``expected_transitions`` ((K, K),
        off-diagonal: expected number of jumps i → j), ``time_in_state_s`` ((K,)),
        ``log_likelihood``, ``n_iter``, ``n_frames``, ``n_label_changes`` (raw changes between
        consecutive labelled frames).
    """
    from clusterspy.series.stats import transition_counts

    k = len(CLASSES)
    dt = float(frame_time_s)
    seqs = [np.asarray(s, int) for s in series if len(s)]
    raw = sum((transition_counts(s, k) for s in seqs), np.zeros((k, k)))
    n_changes = int(raw.sum() - np.trace(raw))
    n_frames = int(sum(int(np.sum(s >= 0)) for s in seqs))
    estimate = misclassification == "estimate"
    eps = 0.05 if estimate else float(misclassification)
    occupancy = sum((np.bincount(s[s >= 0], minlength=k) for s in seqs), np.zeros(k))
    frac = occupancy / max(occupancy.sum(), 1.0)

    def present_for(e: float) -> np.ndarray:
        if states is not None:
            return np.array([c in set(states) for c in CLASSES])
        pres = frac > 2.0 * e / (k - 1)
        if pres.sum() < 1:
            pres = frac == frac.max()
        return pres

    present = present_for(eps)
    for _ in range(3):
        fit = _em(seqs, raw, dt, eps, estimate, present, occupancy, max_iter, tol, n_frames)
        eps_new = fit[1]
        new_present = present_for(eps_new)
        if np.array_equal(new_present, present) or not estimate:
            break
        present, eps = new_present, eps_new
    q, eps, _, post_time, loglik, it = fit
    off = ~np.eye(k, dtype=bool)
    expected = np.where(off, q * post_time[:, None] * dt, 0.0)
    return {
        "Q": q,
        "misclassification": eps,
        "expected_transitions": expected,
        "time_in_state_s": post_time * dt,
        "log_likelihood": float(loglik),
        "n_iter": it,
        "n_frames": n_frames,
        "n_label_changes": n_changes,
        "states": [c for c, p in zip(CLASSES, present, strict=True) if p],
    }


def _em(
    seqs: list[np.ndarray], raw: np.ndarray, dt: float, eps: float, estimate: bool,
    present: np.ndarray, occupancy: np.ndarray, max_iter: int, tol: float, n_frames: int,
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, float, int]:
    from clusterspy.series.hmm import forward_backward
    from clusterspy.series.stats import ctmc_rates, expm_small

    k = len(CLASSES)
    idx = np.where(present)[0]
    m = len(idx)
    mask = np.outer(present, present)
    q = ctmc_rates(np.where(mask, raw, 0.0), dt)
    if m > 1 and eps > 0:
        # start EM from the counts of Viterbi-smoothed labels: raw label changes are dominated
        # by single misclassified frames, and EM creeps slowly down from such inflated rates
        from clusterspy.series.hmm import viterbi
        from clusterspy.series.stats import transition_counts

        logc0 = np.log(np.clip(_confusion(eps, k), 1e-300, None))[idx]
        p0 = np.clip(expm_small(q[np.ix_(idx, idx)] * dt * 0.1), 1e-300, None)
        p0 /= p0.sum(axis=1, keepdims=True)
        sm = np.zeros((k, k))
        for s in seqs:
            le = np.where((s >= 0)[:, None], logc0[:, np.clip(s, 0, None)].T, 0.0)
            sm += transition_counts(idx[viterbi(le, p0)], k)
        q = ctmc_rates(sm, dt)
    last = -np.inf
    it = 0
    xi_tot = np.where(mask, raw, 0.0).astype(float)
    post_time = np.where(present, occupancy, 0.0).astype(float)
    loglik = -np.inf
    if (eps <= 0 and not estimate) or m < 1:
        max_iter = 0  # no hidden layer: the direct MLE is the answer
    for it in range(1, max_iter + 1):  # noqa: B007
        qs = q[np.ix_(idx, idx)]
        p = np.clip(expm_small(qs * dt), 1e-300, None)
        p /= p.sum(axis=1, keepdims=True)
        logc = np.log(np.clip(_confusion(eps, k), 1e-300, None))[idx]  # (m, K)
        pi = occupancy[idx] + 1.0
        pi /= pi.sum()
        xi_tot = np.zeros((k, k))
        post_time = np.zeros(k)
        hit = 0.0
        loglik = 0.0
        for s in seqs:
            le = np.where((s >= 0)[:, None], logc[:, np.clip(s, 0, None)].T, 0.0)
            post, ll, xi = forward_backward(le, p, pi)
            loglik += ll
            xi_tot[np.ix_(idx, idx)] += xi
            post_time[idx] += post.sum(axis=0)
            ok = np.where(s >= 0)[0]
            lab = s[ok]
            # P(true state == observed label)
            pos = np.searchsorted(idx, lab)
            valid = (pos < m) & (idx[np.clip(pos, 0, m - 1)] == lab)
            hit += float(post[ok[valid], pos[valid]].sum())
        q = ctmc_rates(xi_tot, dt)
        if estimate and n_frames:
            eps = float(np.clip(1.0 - hit / n_frames, 1e-4, 0.5))
        if loglik - last < tol * max(n_frames, 1):
            break
        last = loglik
    return q, eps, xi_tot, post_time, float(loglik), it


def arrhenius_fit(
    temperatures_K: Sequence[float],
    rates_per_s: Sequence[float],
    n_transitions: Sequence[float],
    *,
    n_boot: int = 2000,
    rng: np.random.Generator | int | None = None,
    level: float = 0.95,
) -> dict:
    """Arrhenius fit ``k = A exp(−E_a / k_B T)`` with a parametric-bootstrap CI.

    ``ln k`` of a rate estimated from N transitions has a standard error of about ``1/√N``
    (Poisson); the fit is weighted by N and the bootstrap draws ``ln k ~ Normal(ln k̂, 1/N)`` at
    every temperature and refits.

    Parameters
    ----------
    temperatures_K : sequence of float
        Temperatures [K] (at least 2 with a positive rate).
    rates_per_s : sequence of float
        Rate at each temperature [1/s].
    n_transitions : sequence of float
        (Expected) number of transitions behind each rate.
    n_boot : int
        Bootstrap replicates.
    rng : numpy.random.Generator or int, optional
        Random generator or seed.
    level : float
        Confidence level.

    Returns
    -------
    dict
        ``barrier_eV``, ``ci95_eV``, ``prefactor_per_s``, ``ci95_prefactor_per_s``,
        ``temperatures_K``, ``rate_per_s``, ``rate_ci95_per_s`` (per temperature, ±1.96/√N),
        ``n_transitions``; ``barrier_eV`` is None with fewer than 2 usable temperatures.
    """
    rng = np.random.default_rng(rng)
    t = np.asarray(temperatures_K, float)
    k = np.asarray(rates_per_s, float)
    n = np.asarray(n_transitions, float)
    ok = (k > 0) & (n > 0) & np.isfinite(k)
    z = 1.959963984540054
    se = 1.0 / np.sqrt(np.where(n > 0, n, 1.0))
    out = {
        "temperatures_K": t.tolist(),
        "rate_per_s": k.tolist(),
        "rate_ci95_per_s": np.column_stack([k * np.exp(-z * se), k * np.exp(z * se)]).tolist(),
        "n_transitions": n.tolist(),
        "barrier_eV": None, "ci95_eV": [None, None], "prefactor_per_s": None,
        "ci95_prefactor_per_s": [None, None],
    }
    if ok.sum() < 2 or np.ptp(t[ok]) == 0:
        return out
    x = 1.0 / (K_B_EV * t[ok])
    y = np.log(k[ok])
    w = n[ok]
    sw = w.sum()
    xm = np.sum(w * x) / sw
    sxx = np.sum(w * (x - xm) ** 2)

    def fit(yy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ym = np.sum(w * yy, axis=-1) / sw
        m = np.sum(w * (x - xm) * (yy - ym[..., None]), axis=-1) / sxx
        return m, ym - m * xm

    m, b = fit(y)
    yb = y + rng.standard_normal((n_boot, len(y))) * se[ok]
    mb, bb = fit(yb)
    a = (1 - level) / 2
    lo, hi = np.quantile(-mb, [a, 1 - a])
    ln_alo, ln_ahi = np.quantile(bb, [a, 1 - a])  # quantiles of ln A: exp is monotonic
    out.update({
        "barrier_eV": float(-m), "ci95_eV": [float(lo), float(hi)],
        "prefactor_per_s": _exp_or_none(b),
        "ci95_prefactor_per_s": [_exp_or_none(ln_alo), _exp_or_none(ln_ahi)],
    })
    return out
