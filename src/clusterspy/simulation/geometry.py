"""Where the atoms land on the image: the field of view shared by both backends.

The field of view is centred on the metal atoms' x, y centre (the mean of the positions of the
atoms heavier than neon; all atoms when there are none). With ``rows × cols`` pixels of
``pixel_size_A`` [Å/px], pixel ``(row, col)`` samples the specimen at

    x = cx + (col - cols // 2) · pixel_size_A,   y = cy + (row - rows // 2) · pixel_size_A,

so the cluster centre falls on pixel ``(rows // 2, cols // 2)``; ``row`` follows +y, ``col``
follows +x, as in :mod:`clusterspy.image`. The beam travels along +z and enters the cluster at
its smallest z. A carbon support is translated so that it is centred on the field in x, y and
lies ``SUPPORT_GAP_A`` beyond the cluster along the beam (the cluster sits on the support's
entrance surface); its atoms are wrapped periodically into the field.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from clusterspy.errors import ConfigError
from clusterspy.image import check_pixel_size

if TYPE_CHECKING:
    from ase import Atoms

#: Distance between the cluster's exit surface and the support's entrance surface [Å].
SUPPORT_GAP_A = 2.0
#: Atoms heavier than this atomic number count as "metal" for centring.
_METAL_MIN_Z = 11


@dataclass(frozen=True)
class Field:
    """The scanned field of view.

    Attributes
    ----------
    shape : tuple of int
        ``(rows, cols)`` [px].
    pixel_size_A : float
        Pixel size [Å/px].
    origin_A : tuple of float
        ``(x, y)`` [Å] of the centre of pixel ``(0, 0)`` in the atoms' coordinates.
    """

    shape: tuple[int, int]
    pixel_size_A: float
    origin_A: tuple[float, float]

    @property
    def extent_A(self) -> tuple[float, float]:
        """``(width, height)`` [Å]."""
        return self.shape[1] * self.pixel_size_A, self.shape[0] * self.pixel_size_A


@dataclass
class Scene:
    """Atoms in field coordinates: x, y [Å] from the centre of pixel (0, 0), z [Å] depth below
    the cluster's entrance surface."""

    metal_positions: np.ndarray  # (N, 3)
    metal_numbers: np.ndarray  # (N,)
    support_positions: np.ndarray  # (M, 3)
    support_numbers: np.ndarray  # (M,)
    #: Content key of the support's x, y and atomic numbers (see :class:`PlacedSupport`); lets the
    #: fast backend reuse the support's rendering. ``None``: computed when needed.
    support_key: str | None = None


@dataclass(frozen=True)
class PlacedSupport:
    """A support already placed in a field: what of it does not depend on the cluster.

    Built by :func:`place_support`; pass it as ``support`` to :func:`build_scene` (or to
    ``simulate_batch``) to place a support that is reused for many clusters only once.

    Attributes
    ----------
    xy : numpy.ndarray
        ``(M, 2)`` x, y [Å] in field coordinates, centred on the field and wrapped into it.
    depth : numpy.ndarray
        ``(M,)`` depth [Å] below the support's entrance surface (>= 0).
    numbers : numpy.ndarray
        ``(M,)`` atomic numbers.
    shape : tuple of int
        ``(rows, cols)`` [px] of the field it was placed in.
    pixel_size_A : float
        Pixel size [Å/px] of that field.
    key : str
        Hash of ``xy`` and ``numbers`` (identical supports in identical fields share it).
    """

    xy: np.ndarray
    depth: np.ndarray
    numbers: np.ndarray
    shape: tuple[int, int]
    pixel_size_A: float
    key: str


def support_key(xy: np.ndarray, numbers: np.ndarray) -> str:
    """Content hash of a placed support's x, y [Å] (field coordinates) and atomic numbers."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(xy, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(numbers, dtype=np.int64).tobytes())
    return h.hexdigest()


def place_support(
    support: Atoms | tuple[np.ndarray, np.ndarray],
    pixel_size: float,
    extent: float | tuple[float, float],
) -> PlacedSupport:
    """Centre a support on a field in x, y and wrap it into the field (see the module docstring).

    Parameters
    ----------
    support : ase.Atoms or (positions [Å], atomic numbers)
        The support slab (e.g. ``clusterspy.structures.carbon_support``: top face at z = 0,
        x, y within ±extent/2; any placement works, only its x, y centre and z extent matter).
    pixel_size : float
        Pixel size [Å/px].
    extent : float or tuple of float
        Field of view [Å].

    Returns
    -------
    PlacedSupport
    """
    ps = check_pixel_size(pixel_size)
    rows, cols = field_shape(ps, extent)
    spos, snum = _as_arrays(support)
    width, height = cols * ps, rows * ps
    xy = np.empty((len(spos), 2))
    if len(spos):
        xy[:, 0] = spos[:, 0] + (width / 2 - 0.5 * (spos[:, 0].min() + spos[:, 0].max()) - ps / 2)
        xy[:, 1] = spos[:, 1] + (height / 2 - 0.5 * (spos[:, 1].min() + spos[:, 1].max()) - ps / 2)
        xy[:, 0] = np.mod(xy[:, 0] + ps / 2, width) - ps / 2
        xy[:, 1] = np.mod(xy[:, 1] + ps / 2, height) - ps / 2
        depth = spos[:, 2] - spos[:, 2].min()
    else:
        depth = np.zeros(0)
    return PlacedSupport(xy, depth, snum, (rows, cols), ps, support_key(xy, snum))


def field_shape(pixel_size: float, extent: float | tuple[float, float]) -> tuple[int, int]:
    """``(rows, cols)`` for a field ``extent`` [Å] (``width`` or ``(width, height)``)."""
    ps = check_pixel_size(pixel_size)
    try:
        ex, ey = (float(extent), float(extent)) if np.ndim(extent) == 0 else map(float, extent)
    except (TypeError, ValueError):
        raise ConfigError(f"field of view {extent!r} (extent / --extent) must be a width in Å or "
                          "(width, height) in Å") from None
    if not (ex > 0 and ey > 0 and np.isfinite(ex) and np.isfinite(ey)):
        raise ConfigError(f"field of view {extent!r} (extent / --extent) must be positive: a width in Å, "
                          "or (width, height) in Å")
    cols, rows = round(ex / ps), round(ey / ps)
    if rows < 2 or cols < 2:
        raise ConfigError(
            f"extent {extent} Å at {ps} Å/px gives fewer than 2 pixels; enlarge the extent "
            "or reduce the pixel size"
        )
    if rows * cols > 4096 * 4096:
        raise ConfigError(f"a {rows}×{cols} px image is too large; increase the pixel size (pixel_size / "
                          "--pixel-size) or reduce the field of view (extent / --extent)")
    return rows, cols


def _as_arrays(atoms: Any) -> tuple[np.ndarray, np.ndarray]:
    """Positions (N, 3) [Å] and atomic numbers (N,) of an ``ase.Atoms`` (or such a pair)."""
    if atoms is None:
        return np.zeros((0, 3)), np.zeros(0, dtype=int)
    if isinstance(atoms, tuple) and len(atoms) == 2:
        pos, num = atoms
    else:
        try:
            pos, num = atoms.get_positions(), atoms.get_atomic_numbers()
        except AttributeError:
            raise ConfigError(
                f"expected ase.Atoms (or a (positions, numbers) pair), got {type(atoms).__name__}"
            ) from None
    pos = np.asarray(pos, dtype=float).reshape(-1, 3)
    num = np.asarray(num, dtype=int).reshape(-1)
    if len(pos) != len(num):
        raise ConfigError("positions and atomic numbers have different lengths")
    return pos, num


def metal_centre(positions: np.ndarray, numbers: np.ndarray) -> tuple[float, float]:
    """x, y [Å] centre of the metal atoms (all atoms when none is heavier than neon)."""
    if len(positions) == 0:
        raise ConfigError("the structure has no atoms; give at least one atom to simulate")
    heavy = numbers >= _METAL_MIN_Z
    n_heavy = int(np.count_nonzero(heavy))
    sel = positions if n_heavy in (0, len(heavy)) else positions[heavy]
    # np.mean's sums without its per-call overhead (the same numbers)
    return float(np.add.reduce(sel[:, 0]) / len(sel)), float(np.add.reduce(sel[:, 1]) / len(sel))


def build_scene(
    atoms: Atoms | tuple[np.ndarray, np.ndarray],
    pixel_size: float,
    extent: float | tuple[float, float],
    support: Atoms | tuple[np.ndarray, np.ndarray] | PlacedSupport | None = None,
) -> tuple[Field, Scene]:
    """The field of view and the atoms in field coordinates (see the module docstring).

    ``support`` may be a :class:`PlacedSupport` from :func:`place_support` for this field.
    """
    ps = check_pixel_size(pixel_size)
    rows, cols = field_shape(ps, extent)
    pos, num = _as_arrays(atoms)
    cx, cy = metal_centre(pos, num)
    x0 = cx - (cols // 2) * ps
    y0 = cy - (rows // 2) * ps
    field = Field((rows, cols), ps, (x0, y0))
    metal = pos - np.array([x0, y0, pos[:, 2].min()])
    if support is None:
        return field, Scene(metal, num, np.zeros((0, 3)), np.zeros(0, dtype=int))
    placed = support if isinstance(support, PlacedSupport) else place_support(support, ps, extent)
    if placed.shape != field.shape or placed.pixel_size_A != ps:
        raise ConfigError(
            f"the support was placed in a {placed.shape} px field at {placed.pixel_size_A} Å/px, "
            f"not this {field.shape} px field at {ps} Å/px"
        )
    spos = np.empty((len(placed.numbers), 3))
    spos[:, :2] = placed.xy
    spos[:, 2] = placed.depth + (metal[:, 2].max() + SUPPORT_GAP_A)
    return field, Scene(metal, num, spos, placed.numbers, placed.key)
