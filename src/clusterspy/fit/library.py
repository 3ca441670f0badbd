"""The template library: motif forms × sizes × beam directions on a symmetry-reduced grid.

Every form is built once with :func:`clusterspy.structures.cluster` in its *model frame* (the
builders' native frame, centred on the centre of mass), so a fitted rotation compares directly
with ``atoms.info["rotation"]`` of a built cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from clusterspy.fit.symmetry import point_group
from clusterspy.isomers import Isomer

#: Public form name → (motif, builder shape, point group or None).
FORMS: dict[str, tuple[Isomer, str, str | None]] = {
    "mackay_icosahedron": (Isomer.ICOSAHEDRAL, "mackay", "Ih"),
    "ino_decahedron": (Isomer.DECAHEDRAL, "ino", "D5h"),
    "marks_decahedron": (Isomer.DECAHEDRAL, "marks", "D5h"),
    "cuboctahedron": (Isomer.FCC, "cuboctahedron", "Oh"),
    "truncated_octahedron": (Isomer.FCC, "truncated_octahedron", "Oh"),
    "octahedron": (Isomer.FCC, "octahedron", "Oh"),
    "twinned_fcc": (Isomer.FCC, "twinned", "Cs"),
    "glassy": (Isomer.AMORPHOUS, "glassy", None),
}
#: Builder shape → public form name.
FORM_OF_SHAPE = {shape: name for name, (_, shape, _) in FORMS.items()}
#: Glassy pool members tried (different random structures of the same size).
GLASSY_VARIANTS = (0, 1)
#: Angular spacing [deg] of the coarse beam-direction grid, per point group (None: no symmetry).
DIRECTION_STEP_DEG = {"Ih": 7.0, "D5h": 10.0, "Oh": 9.0, "Cs": 20.0, None: 40.0}


@dataclass(frozen=True)
class Model:
    """One atomic model in its model frame.

    Attributes
    ----------
    form : str
        Public form name (a key of :data:`FORMS`).
    isomer : Isomer
        Its motif.
    params : tuple
        The builder's shape parameters, ``sorted(dict.items())``.
    positions : ndarray, shape (n, 3)
        Atom positions [Å], centre of mass at the origin (read-only).
    group : str or None
        Point group (:mod:`clusterspy.fit.symmetry`).
    element : str
        Chemical symbol.
    """

    form: str
    isomer: Isomer
    params: tuple
    positions: np.ndarray
    group: str | None
    element: str

    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return len(self.positions)


#: Number density of a glassy template relative to the crystal (random packing compressed to it).
GLASSY_DENSITY = 1.0


@lru_cache(maxsize=512)
def build_model(form: str, size: int, element: str, variant: int = 0) -> Model:
    """The model of ``form`` whose atom count is nearest ``size`` (glassy: exactly ``size``).

    Glassy templates are random dense packings (:func:`clusterspy.structures.amorphous.random_packing`)
    brought to the crystal's number density, not EMT-relaxed: relaxing costs 5–25 s per structure,
    and the projection of a glassy cluster is a structureless blob either way.
    """
    from clusterspy.structures import cluster

    isomer, shape, group = FORMS[form]
    if isomer is Isomer.AMORPHOUS:
        return _glassy(int(size), element, int(variant))
    spec: str | dict = shape
    if isomer is Isomer.DECAHEDRAL:
        spec = dict(zip("pqr", _decahedron_params(shape, int(size)), strict=True))
    atoms = cluster(isomer, int(size), element, 0, shape=spec, orientation=np.eye(3))
    pos = np.array(atoms.positions - atoms.positions.mean(axis=0))
    pos.setflags(write=False)
    params = tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                          for k, v in atoms.info["shape_params"].items()))
    return Model(form, isomer, params, pos, group, element)


def _glassy(size: int, element: str, variant: int) -> Model:
    from clusterspy.structures import lattice_constant
    from clusterspy.structures.amorphous import _PACKING_FRACTION, random_packing

    nn = lattice_constant(element) / np.sqrt(2.0)
    rng = np.random.default_rng([515151, size, variant])
    pos = random_packing(size, nn, rng) * (_PACKING_FRACTION / GLASSY_DENSITY) ** (1.0 / 3.0)
    pos.setflags(write=False)
    return Model("glassy", Isomer.AMORPHOUS, (("index", variant),), pos, None, element)


@lru_cache(maxsize=256)
def _decahedron_count(p: int, q: int, r: int) -> int:
    from ase.cluster import Decahedron

    return len(Decahedron("Cu", p, q, r))


def _decahedron_params(shape: str, size: int) -> tuple[int, int, int]:
    """(p, q, r) of the Ino (r = 0) or Marks (r = 1, 2) decahedron, |p − q| ≤ 1, nearest ``size`` atoms.

    Counted with ASE for the few candidates near ``size`` (the structures package's full table of
    decahedra takes a minute to build)."""
    best, best_d = (2, 2, 0), np.inf
    rs = (0,) if shape == "ino" else (1, 2)
    for p in range(2, 16):
        counts = []
        for q in (p - 1, p, p + 1):
            for r in rs:
                if q < 1 or r >= p:
                    continue
                n = _decahedron_count(p, q, r)
                counts.append(n)
                d = abs(np.log(n / size))
                if d < best_d:
                    best, best_d = (p, q, r), d
        if counts and min(counts) > 2 * size:
            break
    return best


def atoms_for_diameter(diameter_A: float, element: str) -> float:
    """Atoms of a compact particle whose projected diameter is ``diameter_A`` [Å] (sphere of fcc density)."""
    from clusterspy.structures import lattice_constant

    a = lattice_constant(element)
    return float(np.pi / 6.0 * diameter_A**3 / (a**3 / 4.0))


def models_near(form: str, n_atoms: float, element: str, spread: float = 2.0, limit: int = 4,
                max_atoms: int = 6000) -> list[Model]:
    """The distinct models of ``form`` with ``n_atoms / spread`` … ``n_atoms · spread`` atoms (≥ 13).

    At most ``limit``, the nearest (in log of the count) first.
    """
    isomer = FORMS[form][0]
    lo, hi = max(13.0, n_atoms / spread), min(float(max_atoms), n_atoms * spread)
    if lo > hi:
        return []
    targets = np.geomspace(lo, hi, 14 if isomer is not Isomer.AMORPHOUS else 5)
    seen: dict[int, Model] = {}
    variants = GLASSY_VARIANTS if isomer is Isomer.AMORPHOUS else (0,)
    for t in targets:
        for v in variants:
            m = build_model(form, round(t), element, v)
            if lo / 1.15 <= m.n_atoms <= hi * 1.15:
                seen.setdefault(hash((m.n_atoms, m.params)), m)
    models = sorted(seen.values(), key=lambda m: abs(np.log(m.n_atoms / n_atoms)))
    return models[: limit * len(variants)]


@lru_cache(maxsize=16)
def beam_directions(group: str | None, step_deg: float | None = None) -> np.ndarray:
    """Beam directions (model frame, unit vectors) covering the sphere up to the group's rotations.

    The motif's named zone axes first (particles are imaged on zone axes far more often than a
    uniform grid would place a direction on one), then a Fibonacci sphere of spacing ``step_deg``
    [deg], keeping the points whose orbit under the proper point group is nearest them at a
    generic reference direction (one point per orbit, the Dirichlet cell of the reference).
    """
    step = DIRECTION_STEP_DEG[group] if step_deg is None else float(step_deg)
    n = max(8, round(4.0 * np.pi / np.radians(step) ** 2))
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = np.pi * (1.0 + 5.0**0.5) * i
    r = np.sqrt(1.0 - z * z)
    dirs = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
    if group is None:
        return dirs
    ref = np.array([0.2113, 0.3511, 0.9122])
    ref /= np.linalg.norm(ref)
    g = point_group(group, proper=True)
    orbit = np.einsum("gij,nj->ngi", g, dirs)  # (n, |G|, 3)
    keep = (orbit @ ref).max(axis=1) <= dirs @ ref + 1e-9
    return np.concatenate([_zone_directions(group), dirs[keep]])


def _zone_directions(group: str) -> np.ndarray:
    """One direction per orbit of every named zone axis (for the twinned group: every cubic one)."""
    from clusterspy.fit.symmetry import _twin_frame, zone_axes

    axes = np.array([a for _, a in zone_axes(group)])
    if group != "Cs":
        return axes
    frame = _twin_frame()
    cubic = np.einsum("gij,nj->ngi", point_group("Oh"), axes @ frame).reshape(-1, 3) @ frame.T
    keys = {tuple(np.round(v, 6) + 0.0): v for v in cubic}
    return np.array(list(keys.values()))
