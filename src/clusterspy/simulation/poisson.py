"""Exact Poisson sampling for whole images, fast: tabulated alias method + Poisson splitting.

``numpy.random.Generator.poisson`` costs 30–60 ns per pixel (a loop of uniforms for λ < 10);
:func:`poisson_counts` draws the same distribution in a few vectorised passes (~10–15 ns per pixel).

Method
------
The sum of independent Poisson variables is Poisson with the sum of the means, so every mean is
split as

    λ = C·j + s·i + δ,    j = ⌊λ / C⌋,  i = ⌊(λ − C·j) / s⌋,  0 ≤ δ < s,

and the count as ``X = X_C(C·j) + X_s(s·i) + X_δ(δ)``, three independent Poisson draws:

- ``X_s`` and ``X_C`` come from Walker alias tables (one row per tabulated mean: ``s·i`` for
  ``i < C / s``, and ``C·j`` for ``j < LAMBDA_MAX / C``): one float64 uniform and two table
  look-ups each. The tables hold the Poisson probabilities to double precision, truncated where
  the remaining tail is below ``TAIL`` (1e-16); the pixels with ``λ < C`` (most of a HAADF
  image's background) skip the ``X_C`` draw (``X_C(0) = 0``).
- ``X_δ`` by thinning: a Poisson process of constant mean ``s`` per pixel (a Poisson total,
  ~1/32 event per pixel, spread uniformly over the pixels), each event in pixel ``p`` kept with
  probability ``δ_p / s``.
- Means ``≥ LAMBDA_MAX`` go to ``Generator.poisson`` (exact too).

So the counts follow the Poisson law exactly (to the tables' double precision), at every mean,
small or large; ``tests/test_poisson.py`` checks the tables against ``scipy.stats.poisson`` and the
samples' mean, variance and histogram.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from clusterspy.simulation._memory import keep_freed_memory

#: Step of the fine table of means ``s`` (the remainder ``δ < s`` costs ~s thinning events per pixel).
FINE_STEP = 1.0 / 32.0
#: Step of the coarse table of means ``C`` (= the range the fine table covers).
COARSE_STEP = 16.0
#: Means from here on are drawn with ``Generator.poisson``.
LAMBDA_MAX = 256.0
#: Pixels drawn per vectorised pass (16 images of 128² px): the pass's temporaries (~15 MB) stay
#: in the allocator's heap, which ``_memory.keep_freed_memory`` keeps (without it, passes over
#: 2¹⁶ pixels got fresh pages from the OS each time: page faults cost more than the draws).
CHUNK_PIXELS = 1 << 18
#: Poisson tail mass left out of the tables.
TAIL = 1e-16


class _AliasTable:
    """Walker alias tables of the Poisson law for the means ``step · row``, ``row < rows``.

    Sampling cell ``c = ⌊u · width⌋`` of row ``r`` returns ``c`` when the fractional part of
    ``u · width`` is below ``threshold[r, c]``, else ``alias[r, c]``. Stored flat:
    ``threshold[r · width + c]`` and ``outcome[2 (r · width + c) + reject]``.
    """

    def __init__(self, step: float, rows: int) -> None:
        lam = step * np.arange(rows)
        k = np.arange(int(lam[-1] + 12.0 * np.sqrt(lam[-1]) + 40.0))
        pmf = _pmf(k, lam)
        tail = np.cumsum(pmf[-1, ::-1])[::-1]  # P(X >= k) at the largest mean
        self.width = int(np.argmax(tail < TAIL))
        k = k[: self.width]
        pmf = pmf[:, : self.width]
        pmf /= pmf.sum(axis=1, keepdims=True)
        threshold, alias = _walker(pmf)
        self.step = step
        self.rows = rows
        self.pmf = pmf
        self.threshold = threshold.ravel()
        outcome = np.empty((rows, self.width, 2), dtype=np.float32)
        outcome[..., 0] = k[None, :]
        outcome[..., 1] = alias
        self.outcome = outcome.ravel()

    def probabilities(self) -> np.ndarray:
        """``(rows, width)`` probabilities the tables draw with (for tests): Σ over the cells."""
        n, w = self.rows, self.width
        thr = self.threshold.reshape(n, w)
        alias = self.outcome.reshape(n, w, 2)[..., 1].astype(np.int64)
        p = thr / w
        np.add.at(p, (np.repeat(np.arange(n), w), alias.ravel()), ((1.0 - thr) / w).ravel())
        return p

    def sample(self, row: np.ndarray, u: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Counts (float32, into ``out`` if given) for table rows ``row`` (whole numbers, float)
        and uniforms ``u``.

        ``u`` (float64 in [0, 1)) is overwritten. With ``y = (row + u) · width``, the cell is
        ``⌊y⌋`` and the fractional part of ``y`` (uniform in [0, 1), independent of the cell,
        ~40 bits) decides between the cell and its alias.
        """
        y = np.add(row, u, out=u)
        y *= self.width
        cell_f = np.floor(y)
        y -= cell_f
        cell = cell_f.astype(np.intp)
        reject = y >= self.threshold.take(cell)
        cell *= 2
        cell += reject
        return self.outcome.take(cell, out=out)


def _pmf(k: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Poisson probabilities ``(len(lam), len(k))`` (``λ = 0`` gives all mass at 0)."""
    from scipy.special import gammaln, xlogy

    return np.exp(xlogy(k[None, :], lam[:, None]) - lam[:, None] - gammaln(k[None, :] + 1.0))


def _walker(pmf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias construction, vectorised over the rows of ``pmf`` ``(rows, width)``.

    Returns ``threshold`` (float64) and ``alias`` (int) of the same shape: at every step each
    row's smallest unfinished cell is topped up to ``1 / width`` from its largest.
    """
    rows, width = pmf.shape
    q = pmf * width
    threshold = np.ones_like(q)
    alias = np.tile(np.arange(width), (rows, 1))
    done = np.zeros(q.shape, dtype=bool)
    r = np.arange(rows)
    for _ in range(width - 1):
        small = np.where(done, np.inf, q).argmin(axis=1)
        large = np.where(done, -np.inf, q).argmax(axis=1)
        qs = q[r, small]
        short = qs < 1.0
        threshold[r, small] = np.minimum(qs, 1.0)
        alias[r[short], small[short]] = large[short]
        q[r[short], large[short]] -= 1.0 - qs[short]
        done[r, small] = True
    return threshold, alias


@cache
def _tables() -> tuple[_AliasTable, _AliasTable]:
    """The fine (``s · i``, ``i < C / s``) and coarse (``C · j``, ``j < LAMBDA_MAX / C``) tables."""
    fine = _AliasTable(FINE_STEP, round(COARSE_STEP / FINE_STEP))
    coarse = _AliasTable(COARSE_STEP, round(LAMBDA_MAX / COARSE_STEP))
    return fine, coarse


def poisson_counts(lam: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson counts with means ``lam``, exactly Poisson-distributed (see the module docstring).

    Parameters
    ----------
    lam : numpy.ndarray
        Expected counts (any shape, float32 or float64); must be >= 0 and not NaN.
    rng : numpy.random.Generator
        Source of randomness; the same generator state gives the same counts.

    Returns
    -------
    numpy.ndarray
        float32 counts of ``lam``'s shape (whole numbers, exact up to 2²⁴).
    """
    lam = np.asarray(lam)
    shape = lam.shape
    flat = lam.ravel()
    if flat.dtype != np.float32 and flat.dtype != np.float64:
        flat = flat.astype(np.float64)
    if flat.size == 0:
        return np.zeros(shape, dtype=np.float32)
    if not flat.min() >= 0.0:  # also catches NaN
        raise ValueError("Poisson means must be >= 0 (and not NaN)")
    keep_freed_memory()
    out = np.empty(flat.size, dtype=np.float32)
    for start in range(0, flat.size, CHUNK_PIXELS):
        _sample_into(out[start : start + CHUNK_PIXELS], flat[start : start + CHUNK_PIXELS], rng)
    return out.reshape(shape)


def _sample_into(counts: np.ndarray, flat: np.ndarray, rng: np.random.Generator) -> None:
    """Poisson counts of the means ``flat`` (1-D, >= 0) into ``counts`` (float32, same size)."""
    fine, coarse = _tables()
    huge = np.flatnonzero(flat >= LAMBDA_MAX) if flat.max() >= LAMBDA_MAX else None
    # λ / s = q + f, q whole, f = δ / s in [0, 1): exact in the input's precision (s = 2⁻⁵)
    scaled = flat * flat.dtype.type(1.0 / FINE_STEP)
    if huge is not None:
        scaled[huge] = 0.0
    q = np.floor(scaled)
    frac = np.subtract(scaled, q, out=scaled)
    # q = (C / s) j + i: the fine row i, and the coarse row j where λ >= C
    per = fine.rows
    big = np.flatnonzero(q >= per)
    if big.size:
        qb = q.take(big)
        j = np.floor(qb * (1.0 / per))
        q[big] = qb - j * per
    fine.sample(q, rng.random(flat.size), out=counts)
    if big.size:
        counts[big] += coarse.sample(j, rng.random(big.size))
    _add_remainders(counts, frac, rng)
    if huge is not None:
        counts[huge] = rng.poisson(flat.take(huge).astype(np.float64))


def _add_remainders(counts: np.ndarray, frac: np.ndarray, rng: np.random.Generator) -> None:
    """Add independent Poisson(``FINE_STEP · frac``) counts to ``counts`` (flat, in place).

    Thinning: a Poisson process of constant mean ``s`` per pixel (a Poisson total spread
    uniformly over the pixels) whose events in pixel ``p`` are kept with probability
    ``frac_p`` leaves independent Poisson counts of means ``s · frac_p``.
    """
    n = int(rng.poisson(frac.size * FINE_STEP))
    if n == 0:
        return
    pixel = rng.integers(0, frac.size, n)
    kept = pixel[rng.random(n) < frac.take(pixel)]
    np.add.at(counts, kept, np.float32(1.0))
