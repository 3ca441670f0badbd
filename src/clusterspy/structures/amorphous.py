"""Glassy (amorphous) metal clusters: random dense packing relaxed with ASE's EMT potential.

Cost (ASE's pure-Python EMT, FIRE to 0.05 eV/Å, ≤ 400 steps, one busy core): about 5 s for 147 atoms,
25 s for 309, roughly linear-to-quadratic beyond; a pool member once built costs < 5 ms.
:func:`clusterspy.structures.cluster` therefore draws from a *pool* of ``POOL_SIZE`` relaxed structures per
(element, atom count); structure ``k`` of a pool is built from a seed derived only from (element, count, k),
so the result depends only on the caller's ``rng`` and is reproducible across processes and machines. Relaxed
structures are memoised in memory and, when the ``CLUSTERSPY_CACHE`` environment variable names a folder,
on disk as ``.npy`` files.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

#: Metals covered by ASE's EMT potential; other fcc metals are relaxed as Cu and rescaled.
EMT_METALS = frozenset({"Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt"})

#: Number of distinct relaxed structures per (element, atom count) that ``cluster`` draws from.
POOL_SIZE = 16

#: Number density of the initial random packing, as a fraction of the crystal's number density.
_PACKING_FRACTION = 0.80
#: Smallest distance between two atoms of the initial packing, in nearest-neighbour distances.
_MIN_DISTANCE = 0.82


def random_packing(
    n_atoms: int, nn_distance_A: float, rng: np.random.Generator
) -> np.ndarray:
    """Random sequential packing of ``n_atoms`` points in a sphere with a minimum distance.

    Parameters
    ----------
    n_atoms : int
        Number of atoms.
    nn_distance_A : float
        Nearest-neighbour distance of the crystal [Å]; the sphere holds the atoms at
        ``_PACKING_FRACTION`` times the fcc number density and no two are closer than
        ``_MIN_DISTANCE · nn_distance_A``.
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    ndarray, shape (n_atoms, 3)
        Positions [Å], centred at the origin.
    """
    a = nn_distance_A * np.sqrt(2.0)
    density = _PACKING_FRACTION * 4.0 / a**3
    radius = (3.0 * n_atoms / (4.0 * np.pi * density)) ** (1.0 / 3.0)
    dmin = _MIN_DISTANCE * nn_distance_A
    accepted = np.empty((0, 3))
    while len(accepted) < n_atoms:
        batch = 4 * (n_atoms - len(accepted)) + 16
        cand = rng.uniform(-radius, radius, size=(batch, 3))
        cand = cand[np.einsum("ij,ij->i", cand, cand) <= radius**2]
        if len(accepted):
            dist, _ = cKDTree(accepted).query(cand, k=1, distance_upper_bound=dmin)
            cand = cand[~np.isfinite(dist)]
        # among the candidates, drop any that clashes with an earlier candidate
        pairs = cKDTree(cand).query_pairs(dmin, output_type="ndarray")
        keep = np.ones(len(cand), dtype=bool)
        keep[pairs.max(axis=1)] = False
        cand = cand[keep]
        if len(accepted) == 0 and len(cand) < 1:
            radius *= 1.05
            continue
        accepted = np.vstack([accepted, cand[: n_atoms - len(accepted)]])
        if len(cand) == 0:  # the sphere is jammed: grow it slightly
            radius *= 1.02
    return accepted - accepted.mean(axis=0)


def relax_emt(positions: np.ndarray, element: str, fmax_eV_A: float = 0.05,
              steps: int = 400) -> np.ndarray:
    """Relax positions with ASE's EMT potential (FIRE) and return the relaxed positions [Å].

    Elements outside :data:`EMT_METALS` are relaxed as Cu and rescaled by the ratio of lattice constants.
    """
    from ase import Atoms
    from ase.calculators.emt import EMT
    from ase.data import atomic_numbers, reference_states
    from ase.optimize import FIRE

    scale = 1.0
    symbol = element
    if element not in EMT_METALS:
        symbol = "Cu"
        scale = (reference_states[atomic_numbers[element]]["a"]
                 / reference_states[atomic_numbers["Cu"]]["a"])
    atoms = Atoms(symbol + str(len(positions)), positions=positions / scale)
    atoms.calc = EMT()
    opt = FIRE(atoms, logfile=None)
    opt.run(fmax=fmax_eV_A, steps=steps)
    out = atoms.positions * scale
    return out - out.mean(axis=0)


def _cache_file(element: str, n_atoms: int, index: int) -> Path | None:
    root = os.environ.get("CLUSTERSPY_CACHE")
    if not root:
        return None
    return Path(root) / "amorphous" / f"{element}_{n_atoms}_{index}.npy"


@lru_cache(maxsize=512)
def glassy_positions(element: str, n_atoms: int, index: int) -> np.ndarray:
    """Relaxed glassy structure number ``index`` of the pool for (element, n_atoms).

    The structure depends only on its arguments (seeded from them), never on global state.

    Returns
    -------
    ndarray, shape (n_atoms, 3)
        Positions [Å] centred on the origin (read-only, shared: copy before changing).
    """
    from ase.data import atomic_numbers, reference_states

    path = _cache_file(element, n_atoms, index)
    if path is not None and path.exists():
        pos = np.load(path)
        if pos.shape == (n_atoms, 3):
            pos.setflags(write=False)
            return pos
    z = atomic_numbers[element]
    nn = reference_states[z]["a"] / np.sqrt(2.0)
    rng = np.random.default_rng([20240611, z, n_atoms, index])
    pos = relax_emt(random_packing(n_atoms, nn, rng), element)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, pos)
        os.replace(tmp, path)
    pos.setflags(write=False)
    return pos
