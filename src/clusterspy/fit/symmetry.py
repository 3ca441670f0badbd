"""Point groups of the cluster motifs and orientations compared up to symmetry.

A rotation ``R`` (3×3, proper) maps a motif's *model frame* (the native frame of
:mod:`clusterspy.structures.builders`) to the image frame (x = columns, y = rows, z = the beam).
When ``g`` is a symmetry of the motif, ``R`` and ``R g`` put the same atoms in the same places,
so orientations are compared up to the motif's proper point group:

- icosahedral (Mackay): ``I_h``, 120 elements (60 proper, the group ``I``);
- decahedral (Ino, Marks): ``D_5h``, 20 elements (10 proper, ``D_5``);
- fcc (cuboctahedron, truncated octahedron, octahedron): ``O_h``, 48 elements (24 proper, ``O``);
- twinned fcc (one twin plane): ``C_s``, 2 elements (the identity and one mirror): shifting the
  close-packed layers beyond the twin plane keeps only the mirror whose normal is the cubic
  ``[0-11]`` of the parent crystal (checked atom by atom in ``tests/test_fit.py``).

A projection along the beam cannot tell ``z`` from ``-z``: the image of ``R`` equals that of
``M_z R`` (``M_z = diag(1, 1, -1)``); for a motif with an improper symmetry ``h``, ``M_z R h`` is a
proper rotation with the same projection. :func:`misorientation_deg` therefore also takes the
minimum over this *beam flip* unless ``projection=False``.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from clusterspy.errors import ConfigError

#: Zone axes [model frame, unit vectors] and their names, per point group (see :func:`zone_axes`).
GROUPS = ("Ih", "D5h", "Oh", "Cs")


def axis_rotation(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """Rotation by ``angle_rad`` [rad] about ``axis`` (Rodrigues' formula)."""
    k = np.asarray(axis, dtype=float)
    k = k / np.linalg.norm(k)
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(angle_rad) * kx + (1.0 - np.cos(angle_rad)) * (kx @ kx)


def closure(generators: list[np.ndarray], limit: int = 200) -> np.ndarray:
    """All products of ``generators`` (a finite matrix group), as an ``(n, 3, 3)`` array."""
    elems = [np.eye(3)]
    keys = {_key(np.eye(3))}
    frontier = [np.eye(3)]
    while frontier:
        new = []
        for a in frontier:
            for g in generators:
                b = g @ a
                k = _key(b)
                if k not in keys:
                    keys.add(k)
                    elems.append(b)
                    new.append(b)
        if len(elems) > limit:
            raise ConfigError("the generators do not close to a finite point group")
        frontier = new
    return np.array(elems)


def _key(m: np.ndarray) -> tuple:
    return tuple(np.round(m, 6).ravel() + 0.0)


@cache
def _ico_frame_axes() -> dict[str, np.ndarray]:
    from clusterspy.structures.builders import _ico_axes

    return {k: np.asarray(v, dtype=float) for k, v in _ico_axes().items()}


@cache
def _dec_frame_axes() -> dict[str, np.ndarray]:
    from clusterspy.structures.builders import _dec_axes

    return {k: np.asarray(v, dtype=float) for k, v in _dec_axes().items()}


@cache
def _twin_frame() -> np.ndarray:
    from clusterspy.structures.orientation import rotation_to_z

    return rotation_to_z(np.ones(3))


@cache
def point_group(name: str, proper: bool = False) -> np.ndarray:
    """The elements of a motif's point group in its model frame.

    Parameters
    ----------
    name : {"Ih", "D5h", "Oh", "Cs"}
        The group (see the module docstring).
    proper : bool
        Only the proper rotations (det = +1): 60, 10, 24 or 1 elements.

    Returns
    -------
    ndarray, shape (n, 3, 3)
        120, 20, 48 or 2 orthogonal matrices (the identity first).
    """
    inversion = -np.eye(3)
    if name == "Ih":
        ax = _ico_frame_axes()
        gens = [axis_rotation(ax["5-fold"], 2 * np.pi / 5), axis_rotation(ax["3-fold"], 2 * np.pi / 3),
                inversion]
    elif name == "D5h":
        ax = _dec_frame_axes()
        gens = [axis_rotation(ax["5-fold"], 2 * np.pi / 5), axis_rotation(ax["across"], np.pi),
                np.diag([1.0, 1.0, -1.0])]
    elif name == "Oh":
        gens = [axis_rotation([0, 0, 1], np.pi / 2), axis_rotation([1, 1, 1], 2 * np.pi / 3), inversion]
    elif name == "Cs":
        n = _twin_frame() @ np.array([0.0, -1.0, 1.0]) / np.sqrt(2.0)
        gens = [np.eye(3) - 2.0 * np.outer(n, n)]
    else:
        raise ConfigError(f"unknown point group {name!r}; use one of {', '.join(GROUPS)}")
    g = closure(gens)
    if proper:
        g = g[np.linalg.det(g) > 0]
    g.setflags(write=False)
    return g


def rotation_angle_deg(r: np.ndarray) -> np.ndarray:
    """Rotation angle(s) [deg] of proper rotation matrices ``(..., 3, 3)``."""
    tr = np.trace(r, axis1=-2, axis2=-1)
    return np.degrees(np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0)))


def equivalent_rotations(rotation: np.ndarray, group: str | None, projection: bool = True) -> np.ndarray:
    """Every proper rotation that gives the same model (and, with ``projection``, the same projection).

    ``R g`` for the proper ``g`` of the group, and ``M_z R h`` for its improper ``h`` (the beam
    flip). ``group=None`` (no symmetry, e.g. a glassy cluster): ``R`` and, with ``projection``,
    nothing else (``M_z R`` is improper).
    """
    r = np.asarray(rotation, dtype=float)
    if group is None:
        return r[None]
    full = point_group(group)
    det = np.linalg.det(full)
    out = [r @ full[det > 0]]
    if projection:
        out.append(np.diag([1.0, 1.0, -1.0]) @ r @ full[det < 0])
    return np.concatenate(out)


def misorientation_deg(a: np.ndarray, b: np.ndarray, group: str | None, projection: bool = True) -> float:
    """Smallest rotation angle [deg] between orientations ``a`` and ``b`` of a motif, up to symmetry.

    Parameters
    ----------
    a, b : ndarray, shape (3, 3)
        Proper rotations, model frame → image frame.
    group : {"Ih", "D5h", "Oh", "Cs"} or None
        The motif's point group (``None``: no symmetry).
    projection : bool
        Also treat the beam flip as equivalent (see the module docstring).
    """
    eq = equivalent_rotations(b, group, projection)
    rel = np.einsum("ji,njk->nik", np.asarray(a, dtype=float), eq)  # aᵀ · b'
    return float(rotation_angle_deg(rel).min())


def reduce_rotation(rotation: np.ndarray, group: str | None) -> np.ndarray:
    """The symmetry-equivalent rotation closest to the identity (a canonical representative)."""
    eq = equivalent_rotations(rotation, group, projection=False)
    return eq[int(np.argmin(rotation_angle_deg(eq)))]


@cache
def zone_axes(group: str) -> tuple[tuple[str, np.ndarray], ...]:
    """Named zone axes (model frame, unit vectors) of a point group, one representative each."""
    if group == "Ih":
        ax = _ico_frame_axes()
        return tuple((k, ax[k]) for k in ("5-fold", "3-fold", "2-fold"))
    if group == "D5h":
        ax = _dec_frame_axes()
        return (("5-fold", ax["5-fold"]), ("2-fold", ax["across"]))
    cubic = (("[100]", np.array([0.0, 0.0, 1.0])), ("[110]", np.array([1.0, 1.0, 0.0]) / np.sqrt(2)),
             ("[111]", np.ones(3) / np.sqrt(3)))
    if group == "Oh":
        return cubic
    if group == "Cs":
        frame = _twin_frame()
        return tuple((k, frame @ v) for k, v in cubic)
    raise ConfigError(f"unknown point group {group!r}; use one of {', '.join(GROUPS)}")


def zone_axis(rotation: np.ndarray, group: str | None, tolerance_deg: float = 5.0
              ) -> tuple[str | None, float]:
    """The named zone axis along the beam, or ``None`` when every one is more than ``tolerance_deg`` off.

    For the twinned group the cubic axes of the parent crystal are named (the beam along an
    fcc ``<110>`` in the twin plane shows the twin boundary edge-on). Returns the name and the
    angle [deg] between the beam and the nearest named axis (``nan`` without a group).
    """
    if group is None:
        return None, float("nan")
    beam = np.asarray(rotation, dtype=float).T @ np.array([0.0, 0.0, 1.0])  # the beam in the model frame
    full = point_group(group)
    best, best_angle = None, 180.0
    for name, axis in zone_axes(group):
        if group == "Cs":
            orbit = np.einsum("nij,j->ni", point_group("Oh"), _twin_frame().T @ axis) @ _twin_frame().T
        else:
            orbit = np.einsum("nij,j->ni", full, axis)
        ang = float(np.degrees(np.arccos(np.clip(np.abs(orbit @ beam).max(), -1.0, 1.0))))
        if ang < best_angle:
            best, best_angle = name, ang
    return (best if best_angle <= tolerance_deg else None), best_angle
