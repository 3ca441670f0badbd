"""Synthetic labelled series from a known energy landscape (for tests, benchmarks and planning).

The landscape: isomer energies E_i [eV], degeneracies g_i, and barriers E_a(i → j) [eV] with
prefactors A_ij [1/s]. At temperature T the equilibrium proportions are
``p_i ∝ g_i exp(−E_i / k_B T)`` and the rates ``k_ij = A_ij exp(−E_a(i→j) / k_B T)``; a barrier
given one way fixes the other by detailed balance: ``E_a(j→i) = E_a(i→j) + E_i − E_j`` and
``A_ji = A_ij g_i / g_j``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from clusterspy.isomers import CLASSES, UNKNOWN

__all__ = ["K_B_EV", "Landscape", "frames_for_transitions", "synthetic_labels"]

#: Boltzmann constant [eV/K].
K_B_EV = 8.617333262e-5


@dataclass
class Landscape:
    """A known isomer energy landscape.

    Parameters
    ----------
    energies_eV : mapping
        ``{isomer: energy [eV]}``; isomers left out never occur.
    degeneracies : mapping, optional
        ``{isomer: g}`` (default 1): the entropy difference is ``ΔS/k_B = ln(g_i / g_ref)``.
    barriers_eV : mapping, optional
        ``{(from, to): E_a [eV]}``, one direction per pair (the other by detailed balance).
    prefactor_per_s : float or mapping
        Attempt frequency A [1/s] of the given directions (one value, or per pair).
    """

    energies_eV: Mapping[str, float]
    degeneracies: Mapping[str, float] = field(default_factory=dict)
    barriers_eV: Mapping[tuple[str, str], float] = field(default_factory=dict)
    prefactor_per_s: float | Mapping[tuple[str, str], float] = 1e12

    def _g(self, name: str) -> float:
        return float(self.degeneracies.get(name, 1.0))

    def proportions(self, temperature_K: float) -> np.ndarray:
        """Equilibrium proportions ``(4,)`` in the order of ``CLASSES`` at ``temperature_K`` [K]."""
        beta = 1.0 / (K_B_EV * temperature_K)
        e0 = min(self.energies_eV.values())
        w = np.array([
            self._g(c) * np.exp(-beta * (self.energies_eV[c] - e0)) if c in self.energies_eV
            else 0.0 for c in CLASSES])
        return w / w.sum()

    def barrier(self, a: str, b: str) -> tuple[float, float]:
        """``(E_a [eV], A [1/s])`` of the transition a → b (NaN, 0 if not connected)."""
        pre = self.prefactor_per_s
        if (a, b) in self.barriers_eV:
            p = pre[(a, b)] if isinstance(pre, Mapping) else pre
            return float(self.barriers_eV[(a, b)]), float(p)
        if (b, a) in self.barriers_eV:
            p = pre[(b, a)] if isinstance(pre, Mapping) else pre
            ea = self.barriers_eV[(b, a)] + self.energies_eV[b] - self.energies_eV[a]
            return float(ea), float(p) * self._g(b) / self._g(a)
        return float("nan"), 0.0

    def generator(self, temperature_K: float) -> np.ndarray:
        """Rate matrix ``Q`` ``(4, 4)`` [1/s] at ``temperature_K`` [K] (rows sum to 0)."""
        beta = 1.0 / (K_B_EV * temperature_K)
        k = len(CLASSES)
        q = np.zeros((k, k))
        for i, a in enumerate(CLASSES):
            for j, b in enumerate(CLASSES):
                if i != j and a in self.energies_eV and b in self.energies_eV:
                    ea, pre = self.barrier(a, b)
                    if pre > 0:
                        q[i, j] = pre * np.exp(-beta * ea)
        q[np.diag_indices(k)] = -q.sum(axis=1)
        return q


def frames_for_transitions(
    landscape: Landscape, temperature_K: float, frame_time_s: float, n_transitions: float
) -> int:
    """Number of frames expected to hold ``n_transitions`` transitions at equilibrium."""
    p = landscape.proportions(temperature_K)
    q = landscape.generator(temperature_K)
    rate = float(np.sum(p * -np.diag(q)))  # transitions per second
    return int(np.ceil(n_transitions / (rate * frame_time_s)))


def synthetic_labels(
    landscape: Landscape,
    temperatures_K: Sequence[float],
    n_frames: int | Sequence[int],
    *,
    frame_time_s: float | None = None,
    misclassification: float = 0.0,
    unknown_fraction: float = 0.0,
    n_series: int = 1,
    rng: np.random.Generator | int | None = None,
) -> dict[str, np.ndarray]:
    """A labelled table at several temperatures, drawn from a known landscape.

    Parameters
    ----------
    landscape : Landscape
        The truth.
    temperatures_K : sequence of float
        Temperatures [K].
    n_frames : int or sequence of int
        Frames per temperature (per series).
    frame_time_s : float, optional
        Frame interval [s]. If given, each series is a continuous-time Markov chain sampled every
        ``frame_time_s`` (started at equilibrium: kinetics and equilibrium); if omitted, frames are
        independent draws from the equilibrium proportions (equilibrium only).
    misclassification : float
        Probability that a frame's label is replaced by one of the other three isomers (uniformly).
    unknown_fraction : float
        Probability that a frame is labelled ``unknown`` instead.
    n_series : int
        Independent series per temperature.
    rng : numpy.random.Generator or int, optional
        Random generator or seed.

    Returns
    -------
    dict of str to numpy.ndarray
        Columns ``temperature_K``, ``label``, ``true_label``, ``series``, ``frame``, ``time_s``
        (the table :func:`clusterspy.thermo.thermo_from_table` reads).
    """
    from clusterspy.series.stats import expm_small

    rng = np.random.default_rng(rng)
    temps = list(temperatures_K)
    nf = [int(n_frames)] * len(temps) if np.isscalar(n_frames) else [int(x) for x in n_frames]
    k = len(CLASSES)
    cols: dict[str, list] = {c: [] for c in ("temperature_K", "label", "true_label", "series",
                                             "frame", "time_s")}
    names = np.array(CLASSES, dtype=object)
    for t_k, n in zip(temps, nf, strict=True):
        p = landscape.proportions(t_k)
        for s in range(n_series):
            if frame_time_s is None:
                states = rng.choice(k, size=n, p=p)
            else:
                pm = expm_small(landscape.generator(t_k) * frame_time_s)
                pm = np.clip(pm, 0, None)
                cum = np.cumsum(pm / pm.sum(axis=1, keepdims=True), axis=1)
                u = rng.random(n)
                states = np.empty(n, int)
                states[0] = rng.choice(k, p=p)
                for t in range(1, n):
                    states[t] = min(int(np.searchsorted(cum[states[t - 1]], u[t])), k - 1)
            obs = states.copy()
            flip = rng.random(n) < misclassification
            obs[flip] = (states[flip] + rng.integers(1, k, flip.sum())) % k
            lab = names[obs].copy()
            lab[rng.random(n) < unknown_fraction] = UNKNOWN
            cols["temperature_K"].extend([float(t_k)] * n)
            cols["label"].extend(lab.tolist())
            cols["true_label"].extend(names[states].tolist())
            cols["series"].extend([f"T{t_k:g}_s{s}"] * n)
            cols["frame"].extend(range(n))
            cols["time_s"].extend(
                (np.arange(n) * frame_time_s).tolist() if frame_time_s else [np.nan] * n)
    return {
        "temperature_K": np.array(cols["temperature_K"], float),
        "label": np.array(cols["label"], dtype=object),
        "true_label": np.array(cols["true_label"], dtype=object),
        "series": np.array(cols["series"], dtype=object),
        "frame": np.array(cols["frame"], dtype=np.int64),
        "time_s": np.array(cols["time_s"], float),
    }
