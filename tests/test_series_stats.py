"""Series statistics: block-bootstrap CIs, transition counts, CTMC rates, dwell times."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import expm

from clusterspy.series.stats import (
    ctmc_rates,
    dwell_times,
    optimal_block_length,
    proportions_ci,
    transition_counts,
)


def _markov(rng, p_matrix, n):
    k = p_matrix.shape[0]
    cum = np.cumsum(p_matrix, axis=1)
    u = rng.random(n)
    s = np.empty(n, int)
    s[0] = rng.integers(k)
    for t in range(1, n):
        s[t] = min(np.searchsorted(cum[s[t - 1]], u[t]), k - 1)
    return s


def test_block_length_grows_with_autocorrelation():
    rng = np.random.default_rng(0)
    iid = rng.integers(0, 2, 2000).astype(float)
    sticky = _markov(rng, np.array([[0.98, 0.02], [0.02, 0.98]]), 2000).astype(float)
    assert optimal_block_length(iid) < 3
    assert optimal_block_length(sticky) > 10


def test_block_bootstrap_ci_covers_truth_where_iid_does_not():
    # a sticky two-state chain with stationary p = 0.5; 1500 frames, ~30 switches
    p = np.array([[0.98, 0.02], [0.02, 0.98]])
    cover_block, cover_iid = 0, 0
    reps = 60
    for seed in range(reps):
        rng = np.random.default_rng(100 + seed)
        s = _markov(rng, p, 1500)
        blk = proportions_ci(s, 2, n_boot=400, rng=seed)
        iid = proportions_ci(s, 2, n_boot=400, rng=seed, block_length=1)
        cover_block += blk["ci"][0, 0] <= 0.5 <= blk["ci"][0, 1]
        cover_iid += iid["ci"][0, 0] <= 0.5 <= iid["ci"][0, 1]
    assert cover_block / reps >= 0.75
    assert cover_iid / reps <= 0.5


def test_proportions_exclude_unlabelled_frames():
    lab = np.array([0, 0, 1, -1, -1, 1, 1, 2])
    r = proportions_ci(lab, 4, n_boot=200, rng=0)
    np.testing.assert_allclose(r["proportion"], [2 / 6, 3 / 6, 1 / 6, 0])
    assert r["n_excluded"] == 2 and r["n_labelled"] == 6
    assert np.all(r["ci"][:, 0] <= r["proportion"] + 1e-12)
    assert np.all(r["ci"][:, 1] >= r["proportion"] - 1e-12)


def test_transition_counts_skip_missing_pairs():
    lab = np.array([0, 0, 1, -1, 1, 2, 2, 0])
    c = transition_counts(lab, 3)
    expected = np.zeros((3, 3), int)
    expected[0, 0] = 1
    expected[0, 1] = 1
    expected[1, 2] = 1
    expected[2, 2] = 1
    expected[2, 0] = 1
    np.testing.assert_array_equal(c, expected)


def test_dwell_times_censoring():
    lab = np.array([0, 0, 1, 1, 1, 0, -1, 0, 0, 2])
    d = dwell_times(lab, 3)
    assert d[1]["complete_frames"] == [3]
    assert d[0]["n_runs"] == 3 and d[0]["n_complete"] == 0 and d[0]["n_exits"] == 2
    assert d[0]["mle_mean_frames"] == pytest.approx(5 / 2)
    assert np.isnan(d[2]["mle_mean_frames"])


def test_ctmc_rates_recover_generator():
    q = np.array([[-2.0, 1.5, 0.5], [1.0, -1.0, 0.0], [0.3, 0.7, -1.0]])
    dt = 0.1
    rng = np.random.default_rng(5)
    s = _markov(rng, expm(q * dt), 40000)
    qh = ctmc_rates(transition_counts(s, 3), dt)
    off = ~np.eye(3, dtype=bool)
    # every rate within 15 % or 0.05 /s (the zero one)
    assert np.all(np.abs(qh[off] - q[off]) <= np.maximum(0.15 * q[off], 0.05))
    np.testing.assert_allclose(qh.sum(axis=1), 0, atol=1e-9)


def test_expm_small_and_ctmc_gradient():
    from scipy.optimize import check_grad

    from clusterspy.series.stats import _ctmc_nll_grad, expm_small

    q = np.array([[-2.0, 1.5, 0.5], [1.0, -1.0, 0.0], [0.3, 0.7, -1.0]])
    np.testing.assert_allclose(expm_small(q * 3.0), expm(q * 3.0), rtol=1e-10, atol=1e-13)
    off = ~np.eye(3, dtype=bool)
    ca = np.array([[50.0, 4, 1], [3, 40, 2], [1, 2, 30]])
    x = np.log(q[off] + 0.1)
    err = check_grad(lambda v: _ctmc_nll_grad(v, ca, 0.2, off)[0],
                     lambda v: _ctmc_nll_grad(v, ca, 0.2, off)[1], x)
    assert err < 1e-4
