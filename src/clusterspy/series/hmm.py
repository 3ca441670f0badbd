"""Hidden Markov model over isomers: smoothing per-frame classifier outputs in time.

States are the isomer classes (:data:`clusterspy.isomers.CLASSES`, K = 4). The emission of
frame ``t`` is the network's calibrated probability vector ``p_t(s)``; with a uniform class prior
in training, ``p_t(s)`` is proportional to the likelihood ``P(image_t | s)``, so it is used directly
as a scaled likelihood. A frame with no usable observation (cluster lost, frame blurred) has a row
of NaN: its emission is uninformative (all ones) and the chain simply runs through it.

All recursions are done in log space with a max-shift (``log(exp(a - m) @ A) + m``), so series of
any length neither underflow nor overflow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "HMMResult",
    "baum_welch",
    "emission_log_likelihoods",
    "forward_backward",
    "inferred_mask",
    "smooth",
    "sticky_transition_matrix",
    "viterbi",
]


def sticky_transition_matrix(n_states: int = 4, stay: float = 0.95) -> np.ndarray:
    """Return a "sticky" transition matrix: ``stay`` on the diagonal, the rest shared evenly.

    Parameters
    ----------
    n_states : int
        Number of states K.
    stay : float
        Probability of staying in the same isomer from one frame to the next (0 < stay < 1).
        The expected dwell time is ``1 / (1 - stay)`` frames.

    Returns
    -------
    numpy.ndarray
        ``(K, K)`` row-stochastic matrix, ``A[i, j] = P(s_{t+1} = j | s_t = i)``.
    """
    if not 0.0 < stay < 1.0:
        raise ValueError(f"stay must be in (0, 1), got {stay}")
    if n_states < 2:
        return np.ones((1, 1))
    a = np.full((n_states, n_states), (1.0 - stay) / (n_states - 1))
    np.fill_diagonal(a, stay)
    return a


def emission_log_likelihoods(probabilities: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """Turn per-frame calibrated probabilities into log emission likelihoods.

    Parameters
    ----------
    probabilities : numpy.ndarray
        ``(T, K)`` calibrated class probabilities; a row with any NaN marks a missing frame.
    floor : float
        Mixing weight of a uniform distribution, ``(1 - floor) p + floor / K``, so that no state is
        ever ruled out by a single over-confident frame.

    Returns
    -------
    numpy.ndarray
        ``(T, K)`` log-likelihoods; missing rows are 0 (uninformative).
    """
    p = np.asarray(probabilities, dtype=float)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be (T, K), got shape {p.shape}")
    k = p.shape[1]
    missing = ~np.all(np.isfinite(p), axis=1)
    q = np.where(missing[:, None], 1.0, p)
    q = np.clip(q, 0.0, None)
    s = q.sum(axis=1, keepdims=True)
    s[s == 0] = 1.0
    q = (1.0 - floor) * q / s + floor / k
    out = np.log(q)
    out[missing] = 0.0
    return out


def _logmatexp(log_vec: np.ndarray, mat: np.ndarray) -> np.ndarray:
    m = np.max(log_vec)
    if not np.isfinite(m):
        return np.full(mat.shape[1], -np.inf)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(log_vec - m) @ mat) + m


@dataclass
class HMMResult:
    """Output of :func:`smooth`.

    Attributes
    ----------
    path : numpy.ndarray
        ``(T,)`` Viterbi state indices (most probable joint sequence).
    posterior : numpy.ndarray
        ``(T, K)`` posterior state probabilities per frame (forward–backward).
    log_likelihood : float
        ``log P(observations)`` under the model.
    transition : numpy.ndarray
        ``(K, K)`` transition matrix used (learned if EM was run).
    initial : numpy.ndarray
        ``(K,)`` initial state distribution used.
    n_iter : int
        EM iterations run (0 if the transition matrix was fixed).
    """

    path: np.ndarray
    posterior: np.ndarray
    log_likelihood: float
    transition: np.ndarray
    initial: np.ndarray
    n_iter: int = 0


def forward_backward(
    log_emissions: np.ndarray, transition: np.ndarray, initial: np.ndarray | None = None
) -> tuple[np.ndarray, float, np.ndarray]:
    """Posterior state probabilities by the forward–backward algorithm (log space).

    Parameters
    ----------
    log_emissions : numpy.ndarray
        ``(T, K)`` log emission likelihoods (0 for a missing frame).
    transition : numpy.ndarray
        ``(K, K)`` row-stochastic transition matrix.
    initial : numpy.ndarray, optional
        ``(K,)`` initial distribution; uniform if omitted.

    Returns
    -------
    posterior : numpy.ndarray
        ``(T, K)`` ``P(s_t | all observations)``.
    log_likelihood : float
        ``log P(all observations)``.
    expected_transitions : numpy.ndarray
        ``(K, K)`` ``sum_t P(s_t = i, s_{t+1} = j | all observations)``.
    """
    le = np.asarray(log_emissions, dtype=float)
    a = np.asarray(transition, dtype=float)
    t_len, k = le.shape
    pi = np.full(k, 1.0 / k) if initial is None else np.asarray(initial, dtype=float)
    with np.errstate(divide="ignore"):
        log_pi = np.log(pi)
    la = np.empty((t_len, k))
    lb = np.zeros((t_len, k))
    la[0] = log_pi + le[0]
    for t in range(1, t_len):
        la[t] = _logmatexp(la[t - 1], a) + le[t]
    at = a.T
    for t in range(t_len - 2, -1, -1):
        lb[t] = _logmatexp(lb[t + 1] + le[t + 1], at)
    m = np.max(la[-1])
    loglik = float(m + np.log(np.sum(np.exp(la[-1] - m))))
    lg = la + lb - loglik
    post = np.exp(lg)
    post /= post.sum(axis=1, keepdims=True)
    # expected transitions: xi_t(i, j) ∝ alpha_t(i) A(i, j) e_{t+1}(j) beta_{t+1}(j)
    if t_len > 1:
        x = la[:-1]
        y = le[1:] + lb[1:]
        mx = np.max(x, axis=1, keepdims=True)
        my = np.max(y, axis=1, keepdims=True)
        ex = np.exp(x - mx)
        ey = np.exp(y - my)
        scale = np.exp(mx[:, 0] + my[:, 0] - loglik)
        xi = (ex * scale[:, None]).T @ ey
        xi *= a
    else:
        xi = np.zeros((k, k))
    return post, loglik, xi


def viterbi(
    log_emissions: np.ndarray, transition: np.ndarray, initial: np.ndarray | None = None
) -> np.ndarray:
    """Most probable state sequence (Viterbi, log space).

    Parameters
    ----------
    log_emissions, transition, initial
        As in :func:`forward_backward`.

    Returns
    -------
    numpy.ndarray
        ``(T,)`` state indices.
    """
    le = np.asarray(log_emissions, dtype=float)
    t_len, k = le.shape
    pi = np.full(k, 1.0 / k) if initial is None else np.asarray(initial, dtype=float)
    with np.errstate(divide="ignore"):
        log_a = np.log(np.asarray(transition, dtype=float))
        delta = np.log(pi) + le[0]
    back = np.empty((t_len, k), dtype=np.intp)
    for t in range(1, t_len):
        cand = delta[:, None] + log_a
        back[t] = np.argmax(cand, axis=0)
        delta = cand[back[t], np.arange(k)] + le[t]
    path = np.empty(t_len, dtype=np.intp)
    path[-1] = int(np.argmax(delta))
    for t in range(t_len - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def baum_welch(
    log_emissions: np.ndarray,
    transition: np.ndarray,
    initial: np.ndarray | None = None,
    *,
    max_iter: int = 100,
    tol: float = 1e-6,
    pseudo_count: float = 1.0,
    learn_initial: bool = False,
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Learn the transition matrix by expectation–maximisation (Baum–Welch).

    Emissions stay fixed (they are the network's calibrated probabilities); only the transition
    matrix (and optionally the initial distribution) is re-estimated.

    Parameters
    ----------
    log_emissions : numpy.ndarray
        ``(T, K)`` log emission likelihoods.
    transition : numpy.ndarray
        ``(K, K)`` starting transition matrix; also the Dirichlet prior's mean.
    initial : numpy.ndarray, optional
        ``(K,)`` initial distribution (uniform if omitted).
    max_iter : int
        Maximum EM iterations.
    tol : float
        Stop when the log-likelihood gains less than this.
    pseudo_count : float
        Dirichlet prior strength per row (pseudo-transitions shared like the starting matrix):
        keeps rows of never-visited states defined and regularises short series.
    learn_initial : bool
        Re-estimate the initial distribution too.

    Returns
    -------
    transition : numpy.ndarray
        Learned ``(K, K)`` matrix.
    initial : numpy.ndarray
        ``(K,)`` initial distribution.
    log_likelihood : float
        Final log-likelihood.
    n_iter : int
        Iterations run.
    """
    a0 = np.asarray(transition, dtype=float)
    k = a0.shape[0]
    a = a0.copy()
    pi = np.full(k, 1.0 / k) if initial is None else np.asarray(initial, dtype=float)
    prior = pseudo_count * a0
    last = -np.inf
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007
        post, loglik, xi = forward_backward(log_emissions, a, pi)
        counts = xi + prior
        a = counts / counts.sum(axis=1, keepdims=True)
        if learn_initial:
            pi = (post[0] + 1e-6) / (1.0 + k * 1e-6)
        if loglik - last < tol:
            break
        last = loglik
    _, loglik, _ = forward_backward(log_emissions, a, pi)
    return a, pi, loglik, it


def smooth(
    probabilities: np.ndarray,
    *,
    transition: np.ndarray | None = None,
    stay: float = 0.95,
    learn: bool = False,
    floor: float = 1e-3,
    max_iter: int = 100,
) -> HMMResult:
    """Smooth a series of per-frame class probabilities with an isomer HMM.

    Parameters
    ----------
    probabilities : numpy.ndarray
        ``(T, K)`` calibrated probabilities; NaN rows are missing frames (lost, blurred).
    transition : numpy.ndarray, optional
        ``(K, K)`` transition prior; default :func:`sticky_transition_matrix` with ``stay``.
    stay : float
        Diagonal of the default sticky matrix (per frame).
    learn : bool
        Learn the transition matrix from the series with Baum–Welch (``transition`` as a start and
        weak prior).
    floor : float
        Uniform mixing of the emissions (see :func:`emission_log_likelihoods`).
    max_iter : int
        EM iterations at most when ``learn``.

    Returns
    -------
    HMMResult
    """
    p = np.asarray(probabilities, dtype=float)
    k = p.shape[1]
    a = sticky_transition_matrix(k, stay) if transition is None else np.asarray(transition, float)
    le = emission_log_likelihoods(p, floor)
    pi = np.full(k, 1.0 / k)
    n_iter = 0
    if learn and len(p) > 1:
        a, pi, _, n_iter = baum_welch(le, a, pi, max_iter=max_iter)
    post, loglik, _ = forward_backward(le, a, pi)
    path = viterbi(le, a, pi)
    return HMMResult(path, post, loglik, a, pi, n_iter)


def inferred_mask(
    raw_labels: np.ndarray, smoothed_labels: np.ndarray, classes: tuple[str, ...] | list[str]
) -> np.ndarray:
    """Smoothed labels the network did not give: the HMM inferred them.

    A smoothed label is *inferred* where it is an isomer (one of ``classes``) and the raw label of
    the same frame is not that isomer — the network said "unknown" (low confidence, out of
    distribution) or another isomer. Frames whose smoothed label is not an isomer (lost, blurred,
    a domain reason before inference) are never inferred.

    Parameters
    ----------
    raw_labels, smoothed_labels : numpy.ndarray
        ``(T,)`` labels per frame (str).
    classes : sequence of str
        The isomer names.

    Returns
    -------
    numpy.ndarray
        ``(T,)`` bool.
    """
    raw = np.asarray(raw_labels, dtype=object).astype(str)
    sm = np.asarray(smoothed_labels, dtype=object).astype(str)
    return np.isin(sm, list(classes)) & (sm != raw)
