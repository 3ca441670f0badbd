"""The exact tabulated Poisson sampler (``clusterspy.simulation.poisson``)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from clusterspy.simulation.poisson import CHUNK_PIXELS, COARSE_STEP, LAMBDA_MAX, _tables, poisson_counts


def test_alias_tables_reproduce_the_poisson_law():
    # the probabilities the alias tables draw with equal the Poisson pmf to double precision
    for table in _tables():
        lam = table.step * np.arange(table.rows)
        k = np.arange(table.width)
        expected = stats.poisson.pmf(k[None, :], lam[:, None])
        expected[0, 0] = 1.0
        assert np.abs(table.probabilities() - expected).max() < 1e-13


@pytest.mark.parametrize(
    "lam", [0.0, 0.004, 0.03, 0.3, 1.0, 2.71, COARSE_STEP - 0.01, COARSE_STEP, 41.7, 255.9, 300.0, 5e4]
)
def test_mean_and_variance_at_low_and_high_counts(lam):
    n = 400_000
    x = poisson_counts(np.full(n, lam, dtype=np.float32), np.random.default_rng(1))
    lam32 = float(np.float32(lam))
    assert x.dtype == np.float32 and x.shape == (n,)
    assert np.array_equal(x, np.round(x)) and x.min() >= 0
    if lam32 == 0:
        assert not x.any()
        return
    # 5-sigma bounds: the mean's standard error is sqrt(λ/n), the variance's sqrt((2λ² + λ)/n)
    assert abs(x.mean() - lam32) < 5 * np.sqrt(lam32 / n)
    assert abs(x.var(dtype=np.float64) - lam32) < 5 * np.sqrt((2 * lam32**2 + lam32) / n)


@pytest.mark.parametrize("lam", [0.07, 0.9, 3.3, 17.03, 120.5])
def test_histogram_matches_poisson_pmf(lam):
    # chi-square goodness of fit of 200 000 draws (bins with expected count >= 20)
    n = 200_000
    x = poisson_counts(np.full(n, lam), np.random.default_rng(7)).astype(np.int64)
    k = np.arange(x.max() + 1)
    observed = np.bincount(x, minlength=k.size)
    expected = n * stats.poisson.pmf(k, lam)
    keep = expected >= 20
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(expected[keep], n - expected[keep].sum())
    chi2 = ((obs - exp) ** 2 / exp).sum()
    assert stats.chi2.sf(chi2, obs.size - 1) > 1e-4


def test_mixed_image_counts_are_unbiased_pixel_by_pixel():
    # an image mixing all regimes: many independent draws of the same image
    rng = np.random.default_rng(3)
    lam = np.concatenate([rng.uniform(0, 1, 40), rng.uniform(1, 20, 40), rng.uniform(20, 400, 40)])
    lam[::7] = 0.0
    draws = poisson_counts(np.broadcast_to(lam, (20_000, lam.size)), rng)
    mean, var = draws.mean(0), draws.var(0, dtype=np.float64)
    se = np.sqrt(np.maximum(lam, 1e-9) / 20_000)
    assert np.all(np.abs(mean - lam) < 5 * se + 1e-12)
    nz = lam > 0.5
    assert np.all(np.abs(var[nz] / lam[nz] - 1) < 0.1)
    assert not draws[:, lam == 0].any()
    assert lam.max() >= LAMBDA_MAX  # the numpy fallback is exercised too


def test_reproducible_with_a_seed_and_shape_kept():
    lam = np.random.default_rng(0).uniform(0, 50, (3, 16, 16)).astype(np.float32)
    a = poisson_counts(lam, np.random.default_rng(5))
    b = poisson_counts(lam, np.random.default_rng(5))
    c = poisson_counts(lam, np.random.default_rng(6))
    assert a.shape == lam.shape and np.array_equal(a, b) and not np.array_equal(a, c)


def test_rejects_negative_or_nan_means():
    rng = np.random.default_rng(0)
    for bad in (np.array([1.0, -0.5]), np.array([np.nan, 1.0])):
        with pytest.raises(ValueError, match=">= 0"):
            poisson_counts(bad, rng)
    assert poisson_counts(np.zeros((0, 4)), rng).shape == (0, 4)


def test_arrays_longer_than_one_pass_are_drawn_chunk_by_chunk():
    # every pass of CHUNK_PIXELS pixels gets its own means: no mix-up across chunk boundaries
    n = 3 * CHUNK_PIXELS + 17
    lam = np.repeat([0.2, 30.0, 3.0, 500.0], [CHUNK_PIXELS - 5, CHUNK_PIXELS + 9, CHUNK_PIXELS - 4, 17])
    assert lam.size == n
    x = poisson_counts(lam.reshape(-1, 1), np.random.default_rng(11)).ravel()
    for value in (0.2, 30.0, 3.0):
        part = x[lam == value]
        assert abs(part.mean() - value) < 5 * np.sqrt(value / part.size)
        assert part.var() == pytest.approx(value, rel=0.05)
    assert abs(x[lam == 500.0].mean() - 500.0) < 5 * np.sqrt(500.0 / 17)
    assert np.array_equal(x, poisson_counts(lam, np.random.default_rng(11)))
