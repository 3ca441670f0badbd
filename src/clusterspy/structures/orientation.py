"""Orientations of a cluster relative to the beam.

The simulation projects along ``z``: a *zone axis* orientation is a rotation that brings a crystal direction
of the cluster onto ``+z`` (the beam direction). Rotations are 3×3 proper orthogonal matrices acting on column
vectors (``positions @ R.T``).
"""

from __future__ import annotations

import numpy as np

from clusterspy.errors import ConfigError


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Return a rotation matrix drawn uniformly from SO(3) (Haar measure).

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    ndarray, shape (3, 3)
        Proper rotation matrix.
    """
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    return quaternion_to_matrix(q)


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of the unit quaternion ``q = (w, x, y, z)``."""
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotation_about_z(angle_rad: float) -> np.ndarray:
    """Rotation by ``angle_rad`` (radians) about the ``z`` axis (the beam)."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotation_to_z(direction: np.ndarray) -> np.ndarray:
    """Smallest rotation that maps the unit vector along ``direction`` onto ``+z``.

    Parameters
    ----------
    direction : array_like, shape (3,)
        Any non-zero vector (normalised here).

    Returns
    -------
    ndarray, shape (3, 3)
        Rotation ``R`` with ``R @ d̂ = (0, 0, 1)``.
    """
    d = np.asarray(direction, dtype=float)
    d = d / np.linalg.norm(d)
    z = np.array([0.0, 0.0, 1.0])
    v = np.cross(d, z)
    c = float(d @ z)
    s = float(np.linalg.norm(v))
    if s < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    k = v / s
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + s * kx + (1 - c) * (kx @ kx)


def check_rotation(matrix: object) -> np.ndarray:
    """Validate a user-given 3×3 rotation matrix and return it as a float array.

    Raises
    ------
    ConfigError
        If the matrix is not 3×3, not orthogonal or not proper (det ≠ +1).
    """
    r = np.asarray(matrix, dtype=float)
    if r.shape != (3, 3):
        raise ConfigError(
            f"orientation matrix must be 3×3, got shape {r.shape}; pass a rotation matrix, "
            "'random' or a zone-axis name"
        )
    if not np.allclose(r @ r.T, np.eye(3), atol=1e-6) or np.linalg.det(r) < 0:
        raise ConfigError(
            "orientation matrix is not a proper rotation (R·Rᵀ ≠ I or det ≠ +1); "
            "orthonormalise it, e.g. with scipy.spatial.transform.Rotation.from_matrix(...).as_matrix()"
        )
    return r


def small_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    """A rotation by an angle drawn uniformly in [0, ``max_deg``] [deg] about a uniformly random axis.

    Used to let a cluster turn slowly from frame to frame in simulated series (Rodrigues' formula).
    """
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(0.0, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)
