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


def field_shape(pixel_size: float, extent: float | tuple[float, float]) -> tuple[int, int]:
    """``(rows, cols)`` for a field ``extent`` [Å] (``width`` or ``(width, height)``)."""
    ps = check_pixel_size(pixel_size)
    try:
        ex, ey = (float(extent), float(extent)) if np.ndim(extent) == 0 else map(float, extent)
    except (TypeError, ValueError):
        raise ConfigError(f"extent={extent!r} must be a field width in Å or (width, height) in Å") from None
    if not (ex > 0 and ey > 0 and np.isfinite(ex) and np.isfinite(ey)):
        raise ConfigError(f"extent={extent!r} must be positive lengths in Å")
    cols, rows = round(ex / ps), round(ey / ps)
    if rows < 2 or cols < 2:
        raise ConfigError(
            f"extent {extent} Å at {ps} Å/px gives fewer than 2 pixels; enlarge the extent "
            "or reduce the pixel size"
        )
    if rows * cols > 4096 * 4096:
        raise ConfigError(f"a {rows}×{cols} px image is too large; increase pixel_size or reduce extent")
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
    sel = positions[heavy] if heavy.any() else positions
    return float(sel[:, 0].mean()), float(sel[:, 1].mean())


def build_scene(
    atoms: Atoms | tuple[np.ndarray, np.ndarray],
    pixel_size: float,
    extent: float | tuple[float, float],
    support: Atoms | tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[Field, Scene]:
    """The field of view and the atoms in field coordinates (see the module docstring)."""
    ps = check_pixel_size(pixel_size)
    rows, cols = field_shape(ps, extent)
    pos, num = _as_arrays(atoms)
    cx, cy = metal_centre(pos, num)
    x0 = cx - (cols // 2) * ps
    y0 = cy - (rows // 2) * ps
    field = Field((rows, cols), ps, (x0, y0))
    metal = pos - np.array([x0, y0, pos[:, 2].min()])
    spos, snum = _as_arrays(support)
    if len(spos):
        width, height = field.extent_A
        shift = np.array(
            [
                width / 2 - 0.5 * (spos[:, 0].min() + spos[:, 0].max()) - ps / 2,
                height / 2 - 0.5 * (spos[:, 1].min() + spos[:, 1].max()) - ps / 2,
                metal[:, 2].max() + SUPPORT_GAP_A - spos[:, 2].min(),
            ]
        )
        spos = spos + shift
        spos[:, 0] = np.mod(spos[:, 0] + ps / 2, width) - ps / 2
        spos[:, 1] = np.mod(spos[:, 1] + ps / 2, height) - ps / 2
    return field, Scene(metal, num, spos, snum)
