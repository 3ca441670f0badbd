"""Amorphous carbon support film."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from clusterspy.errors import ConfigError

_AMU_G = 1.66053906660e-24  # g
_CARBON_AMU = 12.011


def carbon_support(
    extent_A: float | tuple[float, float],
    thickness_A: float,
    density_g_cm3: float = 2.0,
    rng: np.random.Generator | int | None = None,
    *,
    min_distance_A: float = 1.3,
):
    """Amorphous carbon slab: random positions at the given density with a minimum C–C distance.

    Parameters
    ----------
    extent_A : float or (float, float)
        Lateral size in x and y [Å]; the slab spans ``[-x/2, x/2] × [-y/2, y/2]``.
    thickness_A : float
        Thickness along the beam (z) [Å]; the slab spans ``z ∈ [-thickness_A, 0]`` (its top face at z = 0,
        so a cluster placed with :func:`place_on_support` sits on it; the beam goes along +z).
    density_g_cm3 : float
        Mass density [g/cm³] (amorphous carbon films: 1.8–2.2).
    rng : numpy.random.Generator, int or None
        Source of randomness.
    min_distance_A : float
        No two carbon atoms closer than this [Å].

    Returns
    -------
    ase.Atoms
        Carbon atoms; ``info["support"]`` records the parameters.

    Raises
    ------
    ConfigError
        For non-positive sizes or a density that cannot be packed with the minimum distance.
    """
    from ase import Atoms

    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    ex, ey = (float(extent_A), float(extent_A)) if np.isscalar(extent_A) else map(float, extent_A)
    if min(ex, ey, thickness_A) <= 0:
        raise ConfigError(f"support extent and thickness must be > 0 Å, got {extent_A}, {thickness_A}")
    n_density = density_g_cm3 / (_CARBON_AMU * _AMU_G) * 1e-24  # atoms / Å³
    fraction = n_density * np.pi / 6 * min_distance_A**3
    if not 0 < fraction < 0.3:
        raise ConfigError(
            f"cannot pack carbon at {density_g_cm3} g/cm³ with a minimum distance of {min_distance_A} Å; "
            "use a density between 0.1 and 3.5 g/cm³"
        )
    n_atoms = round(n_density * ex * ey * thickness_A)
    lo = np.array([-ex / 2, -ey / 2, -thickness_A])
    hi = np.array([ex / 2, ey / 2, 0.0])
    accepted = np.empty((0, 3))
    for _ in range(200):
        need = n_atoms - len(accepted)
        if need <= 0:
            break
        cand = rng.uniform(lo, hi, size=(int(need * 1.3) + 8, 3))
        if len(accepted):
            dist, _ = cKDTree(accepted).query(cand, k=1, distance_upper_bound=min_distance_A)
            cand = cand[~np.isfinite(dist)]
        pairs = cKDTree(cand).query_pairs(min_distance_A, output_type="ndarray")
        keep = np.ones(len(cand), dtype=bool)
        keep[pairs.max(axis=1)] = False
        accepted = np.vstack([accepted, cand[keep][:need]])
    atoms = Atoms(numbers=np.full(len(accepted), 6), positions=accepted)
    atoms.info["support"] = {"extent_A": [ex, ey], "thickness_A": float(thickness_A),
                             "density_g_cm3": float(density_g_cm3), "min_distance_A": min_distance_A}
    return atoms


def place_on_support(cluster, support, gap_A: float = 2.0):
    """Return cluster + support, the cluster centred in x, y and resting ``gap_A`` [Å] above the top face.

    The support's top face is taken at its largest z; the cluster's lowest atom is put ``gap_A`` above it.
    """
    c = cluster.copy()
    pos = c.positions
    pos[:, :2] -= pos[:, :2].mean(axis=0)
    pos[:, 2] += support.positions[:, 2].max() + gap_A - pos[:, 2].min()
    c.positions = pos
    return c + support
