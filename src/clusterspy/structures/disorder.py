"""Disorder of a cluster: thermal displacements, surface vacancies and adatoms, small homogeneous strain.

Each function returns new arrays / atoms and draws its randomness from an explicit ``numpy.random.Generator``.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from clusterspy.errors import ConfigError


def _nn_distance(positions: np.ndarray) -> float:
    d, _ = cKDTree(positions).query(positions, k=2)
    return float(np.median(d[:, 1]))


def coordination(positions: np.ndarray, cutoff_A: float) -> np.ndarray:
    """Number of neighbours of each atom within ``cutoff_A`` [Å]."""
    tree = cKDTree(positions)
    return tree.query_ball_point(positions, cutoff_A, return_length=True) - 1


def thermal_displacement(positions: np.ndarray, sigma_A: float, rng: np.random.Generator) -> np.ndarray:
    """Add independent isotropic Gaussian displacements of standard deviation ``sigma_A`` [Å] per axis.

    ``sigma_A = sqrt(<u²>/3)``; for Au at 300 K it is about 0.09 Å.
    """
    if sigma_A < 0:
        raise ConfigError(f"thermal displacement sigma must be ≥ 0 Å, got {sigma_A}")
    return positions + rng.normal(scale=sigma_A, size=positions.shape)


def surface_vacancies(positions: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Remove ``n`` atoms chosen at random among the surface atoms (coordination < 12)."""
    if n < 0:
        raise ConfigError(f"number of vacancies must be ≥ 0, got {n}")
    if n == 0:
        return positions
    cn = coordination(positions, 1.2 * _nn_distance(positions))
    surface = np.flatnonzero(cn < 12)
    if n > len(surface) // 2:
        raise ConfigError(
            f"{n} vacancies requested but the cluster has only {len(surface)} surface atoms; "
            f"ask for at most {len(surface) // 2}"
        )
    drop = rng.choice(surface, size=n, replace=False)
    return np.delete(positions, drop, axis=0)


def add_adatoms(positions: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Add ``n`` adatoms in three-fold hollow sites on the surface.

    A hollow site sits above the centre of a triangle of mutually bonded surface atoms, at a nearest-neighbour
    distance from each of them, on the outer side; sites too close to an existing atom are skipped.
    """
    if n < 0:
        raise ConfigError(f"number of adatoms must be ≥ 0, got {n}")
    if n == 0:
        return positions
    d = _nn_distance(positions)
    centre = positions.mean(axis=0)
    pos = positions
    for _ in range(n):
        tree = cKDTree(pos)
        cn = tree.query_ball_point(pos, 1.2 * d, return_length=True) - 1
        surface = np.flatnonzero(cn[: len(positions)] < 12)  # adatoms never stack on adatoms
        for _attempt in range(300):
            i = int(rng.choice(surface))
            nb = [j for j in tree.query_ball_point(pos[i], 1.2 * d)
                  if j != i and j < len(positions) and cn[j] < 12]
            if len(nb) < 2:
                continue
            j, k = rng.choice(nb, size=2, replace=False)
            if np.linalg.norm(pos[j] - pos[k]) > 1.2 * d:
                continue
            tri = pos[[i, j, k]]
            c = tri.mean(axis=0)
            normal = np.cross(tri[1] - tri[0], tri[2] - tri[0])
            normal /= np.linalg.norm(normal)
            if normal @ (c - centre) < 0:
                normal = -normal
            h = np.sqrt(max(d**2 - np.mean(np.sum((tri - c) ** 2, axis=1)), 0.1 * d**2))
            site = c + h * normal
            if tree.query(site)[0] > 0.85 * d and len(tree.query_ball_point(site, 1.15 * d)) >= 3:
                pos = np.vstack([pos, site])
                break
        else:
            raise ConfigError(f"could not place adatom {len(pos) - len(positions) + 1}; ask for fewer")
    return pos


def strain(positions: np.ndarray, magnitude: float, rng: np.random.Generator) -> np.ndarray:
    """Apply a random homogeneous strain: a symmetric tensor with entries of standard deviation ``magnitude``.

    ``magnitude`` is dimensionless (0.01 = 1 %). Strain is applied about the centroid.
    """
    if not 0 <= magnitude < 0.2:
        raise ConfigError(f"strain magnitude must be in [0, 0.2) (dimensionless), got {magnitude}")
    e = rng.normal(scale=magnitude, size=(3, 3))
    e = 0.5 * (e + e.T)
    c = positions.mean(axis=0)
    return c + (positions - c) @ (np.eye(3) + e).T


def perturb_positions(
    positions: np.ndarray,
    rng: np.random.Generator,
    *,
    thermal_A: float = 0.0,
    vacancies: int = 0,
    adatoms: int = 0,
    strain_magnitude: float = 0.0,
    element: str | None = None,
    **unknown: float,
) -> np.ndarray:
    """Apply, in this order, strain, surface vacancies, adatoms and thermal displacement [Å] to positions."""
    if "strain" in unknown:
        strain_magnitude = float(unknown.pop("strain"))
    if unknown:
        raise ConfigError(
            f"unknown disorder keys {sorted(unknown)}; use thermal_A, vacancies, adatoms, strain"
        )
    pos = np.asarray(positions, dtype=float)
    if strain_magnitude:
        pos = strain(pos, strain_magnitude, rng)
    pos = surface_vacancies(pos, int(vacancies), rng)
    pos = add_adatoms(pos, int(adatoms), rng)
    if thermal_A:
        pos = thermal_displacement(pos, thermal_A, rng)
    return pos


def perturb(atoms, rng: np.random.Generator | int | None = None, *, thermal_A: float = 0.0,
            vacancies: int = 0, adatoms: int = 0, strain: float = 0.0):
    """Return a disordered copy of ``atoms`` (see :func:`perturb_positions`).

    Parameters
    ----------
    atoms : ase.Atoms
        A single-element cluster.
    rng : numpy.random.Generator, int or None
        Source of randomness.
    thermal_A : float
        Standard deviation of the Gaussian displacement per axis [Å].
    vacancies, adatoms : int
        Number of surface atoms removed / adatoms added in hollow sites.
    strain : float
        Standard deviation of the random symmetric strain tensor (dimensionless).

    Returns
    -------
    ase.Atoms
        New atoms, same ``info`` plus ``info["disorder"]``; the centre of mass stays at the origin.
    """
    from ase import Atoms

    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    pos = perturb_positions(atoms.positions, rng, thermal_A=thermal_A, vacancies=vacancies,
                            adatoms=adatoms, strain_magnitude=strain)
    pos -= pos.mean(axis=0)
    out = Atoms(numbers=np.full(len(pos), atoms.numbers[0]), positions=pos)
    out.info.update(atoms.info)
    out.info["disorder"] = {"thermal_A": thermal_A, "vacancies": vacancies, "adatoms": adatoms,
                            "strain": strain}
    return out
