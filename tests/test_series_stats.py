"""Series statistics: block-bootstrap CIs, transition counts, CTMC rates, dwell times."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import expm

from clusterspy.series.stats import (
    branching_ratios,
    ctmc_rates,
    dwell_times,
    effective_sample_size,
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
        blk = proportions_ci(s, 2, method="block_bootstrap", n_boot=400, rng=seed)
        iid = proportions_ci(s, 2, method="block_bootstrap", n_boot=400, rng=seed,
                             block_length=1)
        cover_block += blk["ci"][0, 0] <= 0.5 <= blk["ci"][0, 1]
        cover_iid += iid["ci"][0, 0] <= 0.5 <= iid["ci"][0, 1]
    assert cover_block / reps >= 0.75
    assert cover_iid / reps <= 0.5


@pytest.mark.parametrize("method", ["jeffreys_neff", "block_bootstrap"])
def test_proportions_exclude_unlabelled_frames(method):
    lab = np.array([0, 0, 1, -1, -1, 1, 1, 2])
    r = proportions_ci(lab, 4, method=method, n_boot=200, rng=0)
    np.testing.assert_allclose(r["proportion"], [2 / 6, 3 / 6, 1 / 6, 0])
    assert r["n_excluded"] == 2 and r["n_labelled"] == 6
    assert r["interval_method"] == method
    assert np.all(r["ci"][:, 0] <= r["proportion"] + 1e-12)
    assert np.all(r["ci"][:, 1] >= r["proportion"] - 1e-12)


@pytest.mark.parametrize("n", [1, 5, 12])
def test_few_constant_frames_give_a_wide_interval(n):
    r = proportions_ci(np.zeros(n, int), 4)
    lo, hi = r["ci"][0]
    assert hi == 1.0 and lo < 0.35, r["ci"]  # "1.00 [1.00, 1.00]" was the old answer
    assert np.all(r["ci"][1:, 0] == 0.0) and np.all(r["ci"][1:, 1] > 0.6)
    assert r["n_eff"] < 2
    old = proportions_ci(np.zeros(n, int), 4, method="block_bootstrap", rng=0)
    assert old["ci"][0, 0] == old["ci"][0, 1] == 1.0  # why it was replaced


def test_effective_sample_size_follows_the_autocorrelation():
    rng = np.random.default_rng(3)
    iid = rng.integers(0, 4, 2000)
    sticky = _markov(rng, np.full((4, 4), 0.01 / 3) + np.eye(4) * (0.99 - 0.01 / 3), 2000)
    e_iid, e_sticky = effective_sample_size(iid, 4), effective_sample_size(sticky, 4)
    assert e_iid["n_eff"] == pytest.approx(2000, rel=0.15)
    assert e_sticky["n_eff"] < 30  # ~2000·0.01/2 = 10 independent frames
    gappy = iid.copy()
    gappy[::4] = -1
    assert effective_sample_size(gappy, 4)["n_labelled"] == 1500


def test_intervals_cover_a_sticky_chain_where_the_block_bootstrap_does_not():
    # 40 frames of a chain that stays with probability 0.95: ~2 label changes per series
    pi = np.array([0.5, 0.3, 0.2])
    p = 0.95 * np.eye(3) + 0.05 * pi[None, :]
    cover_new = cover_old = 0
    reps = 150
    for seed in range(reps):
        rng = np.random.default_rng(seed)
        s = _markov(rng, p, 40)
        new = proportions_ci(s, 3)["ci"]
        old = proportions_ci(s, 3, method="block_bootstrap", n_boot=200, rng=seed)["ci"]
        cover_new += np.sum((new[:, 0] <= pi) & (pi <= new[:, 1]))
        cover_old += np.sum((old[:, 0] <= pi) & (pi <= old[:, 1]))
    assert 0.88 <= cover_new / (3 * reps) <= 0.995
    assert cover_old / (3 * reps) < 0.7


def test_branching_ratios_recover_a_known_jump_matrix():
    jumps = np.array([[0.0, 0.7, 0.2, 0.1], [0.5, 0.0, 0.5, 0.0], [0.1, 0.1, 0.0, 0.8],
                      [1 / 3, 1 / 3, 1 / 3, 0.0]])
    stay = np.array([0.9, 0.8, 0.95, 0.7])
    p = (1 - stay)[:, None] * jumps + np.diag(stay)
    s = _markov(np.random.default_rng(11), p, 30000)
    br = branching_ratios(transition_counts(s, 4))
    off = ~np.eye(4, dtype=bool)
    assert np.all(np.isnan(br["ratio"][~off]))
    np.testing.assert_allclose(br["ratio"][off], jumps[off], atol=0.05)
    inside = (br["ci"][..., 0] <= jumps) & (jumps <= br["ci"][..., 1])
    assert inside[off].mean() >= 10 / 12
    np.testing.assert_allclose(np.nansum(br["ratio"], axis=1), 1.0)
    # a state never left has no ratio; one departure gives a wide interval
    one = branching_ratios(np.array([[5, 1, 0], [0, 3, 0], [0, 0, 0]]))
    assert np.all(np.isnan(one["ratio"][1:]))
    assert one["ratio"][0, 1] == 1.0 and one["ci"][0, 1, 1] == 1.0 and one["ci"][0, 1, 0] < 0.5
    assert one["ci"][0, 2, 0] == 0.0 and one["ci"][0, 2, 1] > 0.3


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


def test_branching_intervals_contain_the_ratio_for_expected_counts():
    # fractional counts, as a rate fit's expected transitions give them
    rng = np.random.default_rng(5)
    for _ in range(200):
        c = rng.gamma(0.3, 3.0, (4, 4))
        br = branching_ratios(c)
        off = ~np.eye(4, dtype=bool)
        assert np.all(br["ci"][..., 0][off] <= br["ratio"][off] + 1e-12)
        assert np.all(br["ratio"][off] <= br["ci"][..., 1][off] + 1e-12)
