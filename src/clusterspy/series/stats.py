"""Statistics of a label series: proportions with autocorrelation-aware CIs, transitions, dwell times.

Labels are integer state indices ``0..K-1`` (order of :data:`clusterspy.isomers.CLASSES`) and ``-1``
for a frame without a usable label (unknown, lost, blurred).

Frames of a video are autocorrelated (an isomer lives for many frames), so the binomial CI of a
proportion is far too narrow. :func:`proportions_ci` uses the circular block bootstrap (Politis &
Romano 1992) with the block length chosen from the data by the Politis & White (2004) rule (with the
Patton, Politis & White 2009 correction).
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = [
    "block_bootstrap_counts",
    "ctmc_rates",
    "dwell_times",
    "expm_small",
    "optimal_block_length",
    "proportions_ci",
    "transition_counts",
]

log = logging.getLogger(__name__)


def _acov(x: np.ndarray, max_lag: int) -> np.ndarray:
    x = x - x.mean()
    n = len(x)
    f = np.fft.rfft(x, 2 * n)
    ac = np.fft.irfft(f * np.conj(f))[: max_lag + 1] / n
    return ac


def optimal_block_length(x: np.ndarray) -> float:
    """Block length for the circular block bootstrap by the Politis–White (2004) rule.

    Parameters
    ----------
    x : numpy.ndarray
        1-D series (e.g. the 0/1 indicator of one isomer over the frames).

    Returns
    -------
    float
        Block length [frames], at least 1 and at most ``len(x) / 3``.
    """
    x = np.asarray(x, dtype=float)
    n = len(x)
    if n < 8 or np.var(x) == 0:
        return 1.0
    k_n = max(5, int(np.ceil(np.log10(n))))
    m_max = int(np.ceil(np.sqrt(n))) + k_n
    m_max = min(m_max, n - 1)
    ac = _acov(x, m_max)
    rho = ac / ac[0]
    c = 2.0 * np.sqrt(np.log10(n) / n)
    # smallest m such that |rho(m+1..m+k_n)| are all below c
    m_hat = None
    for m in range(0, m_max - k_n + 1):
        if np.all(np.abs(rho[m + 1 : m + 1 + k_n]) < c):
            m_hat = m
            break
    if m_hat is None:
        m_hat = m_max
    big_m = min(2 * max(m_hat, 1), m_max)
    lags = np.arange(-big_m, big_m + 1)
    u = np.abs(lags) / big_m
    lam = np.where(u <= 0.5, 1.0, np.where(u <= 1.0, 2.0 * (1.0 - u), 0.0))
    acs = ac[np.abs(lags)]
    g = np.sum(lam * np.abs(lags) * acs)
    sigma2 = np.sum(lam * acs)
    d_cb = (4.0 / 3.0) * sigma2**2
    if d_cb <= 0 or g == 0:
        return 1.0
    b = (2.0 * g**2 / d_cb) ** (1.0 / 3.0) * n ** (1.0 / 3.0)
    return float(np.clip(b, 1.0, max(1.0, n / 3.0)))


def block_bootstrap_counts(
    labels: np.ndarray,
    n_states: int,
    *,
    block_length: float | None = None,
    n_boot: int = 2000,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, float]:
    """Class counts of circular-block-bootstrap replicates of a label series.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(T,)`` state indices, ``-1`` for frames without a label (kept in place, so gaps keep their
        place in time).
    n_states : int
        Number of classes K.
    block_length : float, optional
        Block length [frames]; by default the largest :func:`optimal_block_length` over the class
        indicators.
    n_boot : int
        Number of replicates.
    rng : numpy.random.Generator or int, optional
        Random generator or seed.

    Returns
    -------
    counts : numpy.ndarray
        ``(n_boot, K)`` counts of each class per replicate.
    block_length : float
        Block length used [frames].
    """
    rng = np.random.default_rng(rng)
    lab = np.asarray(labels, dtype=int)
    n = len(lab)
    valid = lab >= 0
    if block_length is None:
        lv = lab[valid]
        bls = [optimal_block_length((lv == s).astype(float)) for s in range(n_states)]
        block_length = max([1.0, *bls])
    b = int(max(1, round(block_length)))
    b = min(b, max(n, 1))
    onehot = np.zeros((2 * n + 1, n_states))
    idx = np.arange(2 * n)
    lab2 = np.concatenate([lab, lab])
    ok = lab2 >= 0
    onehot[1:][idx[ok], lab2[ok]] = 1.0
    cum = np.cumsum(onehot, axis=0)
    n_blocks = int(np.ceil(n / b))
    starts = rng.integers(0, n, size=(n_boot, n_blocks))
    lengths = np.full(n_blocks, b)
    lengths[-1] = n - b * (n_blocks - 1)
    ends = starts + lengths[None, :]
    counts = (cum[ends] - cum[starts]).sum(axis=1)
    return counts, float(block_length)


def proportions_ci(
    labels: np.ndarray,
    n_states: int,
    *,
    n_boot: int = 2000,
    block_length: float | None = None,
    rng: np.random.Generator | int | None = None,
    level: float = 0.95,
) -> dict:
    """Proportion of each class with a block-bootstrap confidence interval.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(T,)`` state indices in time order, ``-1`` for frames without a label (excluded).
    n_states : int
        Number of classes K.
    n_boot : int
        Bootstrap replicates.
    block_length : float, optional
        Block length [frames]; chosen from the data if omitted (``1`` = i.i.d. bootstrap).
    rng : numpy.random.Generator or int, optional
        Random generator or seed.
    level : float
        Confidence level.

    Returns
    -------
    dict
        ``proportion`` (K,), ``ci`` (K, 2), ``counts`` (K,), ``n_labelled``, ``n_excluded``,
        ``block_length_frames``.
    """
    lab = np.asarray(labels, dtype=int)
    valid = lab >= 0
    counts = np.bincount(lab[valid], minlength=n_states).astype(float)
    n_lab = int(valid.sum())
    if n_lab == 0:
        nan = np.full(n_states, np.nan)
        return {
            "proportion": nan, "ci": np.full((n_states, 2), np.nan), "counts": counts,
            "n_labelled": 0, "n_excluded": len(lab), "block_length_frames": float("nan"),
        }
    boot, bl = block_bootstrap_counts(lab, n_states, block_length=block_length, n_boot=n_boot,
                                      rng=rng)
    tot = boot.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        props = boot / tot
    props = props[np.isfinite(props).all(axis=1)]
    alpha = (1.0 - level) / 2.0
    ci = np.quantile(props, [alpha, 1.0 - alpha], axis=0).T
    return {
        "proportion": counts / n_lab,
        "ci": ci,
        "counts": counts,
        "n_labelled": n_lab,
        "n_excluded": int(len(lab) - n_lab),
        "block_length_frames": bl,
    }


def transition_counts(labels: np.ndarray, n_states: int) -> np.ndarray:
    """Count transitions between consecutive frames that both carry a label.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(T,)`` state indices, ``-1`` for missing; pairs with a missing frame are not counted.
    n_states : int
        Number of classes K.

    Returns
    -------
    numpy.ndarray
        ``(K, K)`` integer matrix, ``C[i, j]`` = number of frame pairs ``(t, t+1)`` going i → j
        (the diagonal counts stays).
    """
    lab = np.asarray(labels, dtype=int)
    c = np.zeros((n_states, n_states), dtype=np.int64)
    if len(lab) < 2:
        return c
    a, b = lab[:-1], lab[1:]
    ok = (a >= 0) & (b >= 0)
    np.add.at(c, (a[ok], b[ok]), 1)
    return c


def expm_small(a: np.ndarray) -> np.ndarray:
    """Matrix exponential of a small matrix (scaling and squaring with an 18-term Taylor series).

    Much faster than :func:`scipy.linalg.expm` for the 4×4 and 8×8 matrices of the CTMC fits,
    accurate to ~1e-15 relative for generator matrices.
    """
    a = np.asarray(a, dtype=float)
    norm = float(np.max(np.sum(np.abs(a), axis=1))) if a.size else 0.0
    s = max(0, int(np.ceil(np.log2(norm / 0.25))) if norm > 0.25 else 0)
    b = a / (2.0**s)
    out = np.eye(len(a))
    term = np.eye(len(a))
    for n in range(1, 19):
        term = term @ b / n
        out = out + term
    for _ in range(s):
        out = out @ out
    return out


def _ctmc_nll_grad(
    x: np.ndarray, ca: np.ndarray, dt: float, off: np.ndarray
) -> tuple[float, np.ndarray]:
    """Negative log-likelihood of counts ``ca`` under ``P = expm(QΔt)`` and its gradient in x.

    ``x`` are the log off-diagonal rates. The gradient uses the adjoint of the Fréchet derivative
    of expm, read from the top-right block of ``expm([[QᵀΔt, GΔt], [0, QᵀΔt]])``.
    """
    m = ca.shape[0]
    q = np.zeros((m, m))
    q[off] = np.exp(x)
    q[np.diag_indices(m)] = -q.sum(axis=1)
    p = np.clip(expm_small(q * dt), 1e-300, None)
    f = -float(np.sum(ca * np.log(p)))
    g = -ca / p
    big = np.zeros((2 * m, 2 * m))
    big[:m, :m] = q.T * dt
    big[m:, m:] = q.T * dt
    big[:m, m:] = g * dt
    dq = expm_small(big)[:m, m:]  # d f / d Q (unconstrained)
    dq_off = dq - np.diag(dq)[:, None]  # q_ii = -sum_j q_ij
    grad = dq_off[off] * q[off]
    return f, grad


def ctmc_rates(
    counts: np.ndarray, frame_time_s: float, *, min_count: float = 0.0
) -> np.ndarray:
    """Maximum-likelihood generator of a continuous-time Markov chain observed every frame.

    Maximises ``sum_ij C_ij log P_ij`` with ``P = expm(Q Δt)`` over the off-diagonal rates of ``Q``
    (log-parametrised, so rates stay positive; exact gradient). Only states observed at least once
    take part. Unlike ``C_ij / (n_i Δt)``, this accounts for several jumps within one frame.

    Parameters
    ----------
    counts : numpy.ndarray
        ``(K, K)`` (expected) transition counts between frames ``Δt`` apart.
    frame_time_s : float
        ``Δt`` [s].
    min_count : float
        States with fewer than this many departures are left out (their rates are 0).

    Returns
    -------
    numpy.ndarray
        ``(K, K)`` generator ``Q`` [1/s]: ``Q[i, j]`` is the rate i → j, rows sum to 0.
    """
    from scipy.optimize import minimize

    c = np.asarray(counts, dtype=float)
    k = c.shape[0]
    dt = float(frame_time_s)
    if dt <= 0:
        raise ValueError(f"frame_time_s must be positive, got {dt}")
    active = np.where(c.sum(axis=1) + c.sum(axis=0) > max(min_count, 0.0))[0]
    q_full = np.zeros((k, k))
    m = len(active)
    if m < 2:
        return q_full
    ca = c[np.ix_(active, active)]
    off = ~np.eye(m, dtype=bool)
    rows = ca.sum(axis=1)
    # start: the discrete-time estimate P ≈ I + Q Δt
    with np.errstate(divide="ignore", invalid="ignore"):
        p0 = ca / np.where(rows[:, None] > 0, rows[:, None], 1.0)
    lo, hi = np.log(1e-7 / dt), np.log(20.0 / dt)
    x0 = np.clip(np.log(np.maximum(p0[off], 0.05 / max(rows.max(), 1.0)) / dt), lo, hi)
    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        # box by clipping (flat outside): BFGS here is ~30x faster than L-BFGS-B on 12 parameters
        xc = np.clip(x, lo, hi)
        f, g = _ctmc_nll_grad(xc, ca, dt, off)
        return f, np.where((x < lo) | (x > hi), 0.0, g)

    res = minimize(fun, x0, jac=True, method="BFGS", options={"gtol": 1e-6 * max(1.0, ca.sum())})
    xs = np.clip(res.x, lo, hi)
    q = np.zeros((m, m))
    # rates pinned at the lower bound are zero within resolution
    q[off] = np.where(xs <= lo + 1e-3, 0.0, np.exp(xs))
    q[np.diag_indices(m)] = -q.sum(axis=1)
    q_full[np.ix_(active, active)] = q
    return q_full


def dwell_times(labels: np.ndarray, n_states: int) -> list[dict]:
    """Dwell times (run lengths) in each state.

    A run that touches the start or end of the series or a missing frame is *censored* (its true
    length is longer than seen). The mean dwell time is estimated with censoring taken into account
    as (frames spent in the state) / (number of observed exits to another labelled state) — the
    maximum-likelihood estimate for an exponential (memoryless) dwell.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(T,)`` state indices, ``-1`` for missing.
    n_states : int
        Number of classes K.

    Returns
    -------
    list of dict
        Per state: ``n_runs``, ``n_complete``, ``n_exits``, ``complete_frames`` (list of complete
        run lengths), ``total_frames``, ``mean_complete_frames`` and ``mle_mean_frames`` (NaN when no complete
        run).
    """
    lab = np.asarray(labels, dtype=int)
    out = [
        {"n_runs": 0, "n_complete": 0, "n_exits": 0, "complete_frames": [], "total_frames": 0}
        for _ in range(n_states)
    ]
    n = len(lab)
    i = 0
    while i < n:
        s = lab[i]
        j = i
        while j + 1 < n and lab[j + 1] == s:
            j += 1
        if s >= 0:
            length = j - i + 1
            exits = j < n - 1 and lab[j + 1] >= 0
            complete = exits and i > 0 and lab[i - 1] >= 0
            d = out[s]
            d["n_runs"] += 1
            d["n_exits"] += int(exits)
            d["total_frames"] += length
            if complete:
                d["n_complete"] += 1
                d["complete_frames"].append(int(length))
        i = j + 1
    for d in out:
        cf = d["complete_frames"]
        d["mean_complete_frames"] = float(np.mean(cf)) if cf else float("nan")
        d["mle_mean_frames"] = (
            d["total_frames"] / d["n_exits"] if d["n_exits"] else float("nan")
        )
    return out
