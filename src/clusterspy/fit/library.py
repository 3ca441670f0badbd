"""The template library: motif forms × sizes × beam directions on a symmetry-reduced grid.

Every form is built once with :func:`clusterspy.structures.cluster` in its *model frame* (the
builders' native frame, centred on the centre of mass), so a fitted rotation compares directly
with ``atoms.info["rotation"]`` of a built cluster.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from clusterspy.fit.symmetry import point_group
from clusterspy.isomers import Isomer
from clusterspy.structures.builders import icosahedron_count, octahedron_count

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


#: Glassy templates have atom counts on a geometric grid of this ratio (so that their relaxed
#: structures, cached on disk, serve every cluster of about that size).
GLASSY_SIZE_RATIO = 1.05
#: Seed root of the glassy templates. The structures package seeds its pool with 20240611 (the
#: clusters of the benchmark images): the templates are other random structures built the same way.
GLASSY_SEED = 515151


@lru_cache(maxsize=512)
def build_model(form: str, size: int, element: str, variant: int = 0) -> Model:
    """The model of ``form`` whose atom count is nearest ``size``.

    Glassy templates (``variant``: which random structure) are built as the structures package
    builds glassy clusters — a random dense packing relaxed with EMT (:func:`glassy_template`) —
    with the atom count on the grid of :data:`GLASSY_SIZE_RATIO` nearest ``size``. Crystalline
    models are those :func:`clusterspy.structures.cluster` builds for ``size`` (same shape
    parameters, :func:`shape_for`), built once per shape (:func:`model_of`).
    """
    isomer = FORMS[form][0]
    if isomer is Isomer.AMORPHOUS:
        n = glassy_size(size)
        pos = glassy_template(n, element, int(variant))
        return Model("glassy", Isomer.AMORPHOUS, (("index", int(variant)),), pos, None, element)
    params, _ = shape_for(form, int(size))
    return model_of(form, params, element)


@lru_cache(maxsize=4096)
def shape_for(form: str, size: int, variant: int = 0) -> tuple[tuple, int]:
    """Shape parameters (``sorted(dict.items())``) and atom count of the model of ``form`` nearest
    ``size`` atoms, without building it (closed-form counts).

    The parameters :func:`clusterspy.structures.cluster` chooses for ``size`` (for decahedra:
    :func:`_decahedron_params`); glassy: ``(("index", variant),)`` and :func:`glassy_size`.
    """
    from clusterspy.structures.builders import _choose_params

    isomer, shape, _ = FORMS[form]
    if isomer is Isomer.AMORPHOUS:
        return (("index", int(variant)),), glassy_size(size)
    if isomer is Isomer.DECAHEDRAL:
        p, q, r = _decahedron_params(shape, int(size))
        return (("p", p), ("q", q), ("r", r)), decahedron_count(p, q, r)
    params = _choose_params(isomer, shape, int(size))
    if isomer is Isomer.ICOSAHEDRAL:
        return (("shells", int(params["shells"])),), icosahedron_count(int(params["shells"]))
    length, cutoff = int(params["length"]), int(params["cutoff"])
    twins = ((("twins", (0,)),) if shape == "twinned" else ())
    return (("cutoff", cutoff), ("length", length), *twins), octahedron_count(length, cutoff)


@lru_cache(maxsize=1024)
def model_of(form: str, params: tuple, element: str) -> Model:
    """The crystalline model of ``form`` with the builder's shape ``params`` (``sorted(dict.items())``)."""
    from clusterspy.structures import cluster

    isomer, _, group = FORMS[form]
    atoms = cluster(isomer, 13, element, 0, shape=dict(params), orientation=np.eye(3))
    pos = np.array(atoms.positions - atoms.positions.mean(axis=0))
    pos.setflags(write=False)
    return Model(form, isomer, params, pos, group, element)


def glassy_size(n_atoms: float) -> int:
    """The atom count on the glassy templates' grid (ratio :data:`GLASSY_SIZE_RATIO`) nearest ``n_atoms``."""
    k = round(np.log(max(float(n_atoms), 13.0) / 13.0) / np.log(GLASSY_SIZE_RATIO))
    return round(13.0 * GLASSY_SIZE_RATIO**k)


def cache_dir() -> Path:
    """Folder of ClusterSpy's disk cache: ``$CLUSTERSPY_CACHE``, else ``$XDG_CACHE_HOME/clusterspy``
    (default ``~/.cache/clusterspy``)."""
    root = os.environ.get("CLUSTERSPY_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "clusterspy"


def glassy_template(n_atoms: int, element: str, variant: int) -> np.ndarray:
    """Positions [Å] (centred, read-only) of glassy template ``variant`` with ``n_atoms`` atoms.

    A random dense packing relaxed with EMT (FIRE to 0.05 eV/Å, ≤ 400 steps), as
    :func:`clusterspy.structures.amorphous.glassy_positions` builds the package's glassy clusters,
    but from seeds of :data:`GLASSY_SEED` and with the vectorised EMT
    (:func:`clusterspy.structures.emt.relax_emt_fast`: about 1 s for 150 atoms, 10 s for 1,000).
    Kept in ``cache_dir()/fit_glassy`` once built (the cache is skipped when it cannot be written).
    """
    from ase.data import atomic_numbers

    from clusterspy.structures import lattice_constant
    from clusterspy.structures.amorphous import random_packing
    from clusterspy.structures.emt import relax_emt_fast

    path = cache_dir() / "fit_glassy" / f"{element}_{n_atoms}_{variant}.npy"
    pos = _load_positions(path, n_atoms)
    if pos is None:
        rng = np.random.default_rng([GLASSY_SEED, atomic_numbers[element], n_atoms, variant])
        pos = relax_emt_fast(random_packing(n_atoms, lattice_constant(element) / np.sqrt(2.0), rng), element)
        _save_positions(path, pos)
    pos.setflags(write=False)
    return pos


def _load_positions(path: Path, n_atoms: int) -> np.ndarray | None:
    try:
        pos = np.load(path)
    except (OSError, ValueError):
        return None
    return pos if pos.shape == (n_atoms, 3) and np.isfinite(pos).all() else None


def _save_positions(path: Path, pos: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, pos)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: the template is rebuilt next time


def decahedron_count(p: int, q: int, r: int) -> int:
    """Atoms in ASE's ``Decahedron(p, q, r)`` (r < p), in closed form.

    A cubic polynomial fitted exactly to ASE's counts (p ≤ 8) and checked against them up to
    p = 13 (``tests/test_fit.py``); building the decahedra with ASE to count them takes 20–50 ms each.
    """
    n6 = (5 * p**3 - 15 * p**2 + 16 * p - 6 + q * (6 - 15 * p + 15 * p**2)
          + r * (27 - 60 * p + 30 * p**2 - 30 * q + 60 * p * q) + r**2 * (-45 + 60 * p + 30 * q) + 30 * r**3)
    return n6 // 6


def _decahedron_params(shape: str, size: int) -> tuple[int, int, int]:
    """(p, q, r) of the Ino (r = 0) or Marks (r = 1, 2) decahedron, ``|p − q|`` ≤ 1, nearest ``size`` atoms.

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
                n = decahedron_count(p, q, r)
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
    seen: dict[int, tuple[tuple, int, int]] = {}
    variants = GLASSY_VARIANTS if isomer is Isomer.AMORPHOUS else (0,)
    for t in targets:
        for v in variants:
            params, n = shape_for(form, round(t), v)
            if lo / 1.15 <= n <= hi * 1.15:
                seen.setdefault(hash((n, params)), (params, n, round(t)))
    # counted without building (shape_for); only the models kept are built
    chosen = sorted(seen.values(), key=lambda c: abs(np.log(c[1] / n_atoms)))[: limit * len(variants)]
    return [build_model(form, size, element, dict(params).get("index", 0)) for params, _, size in chosen]


def family(model: Model, spread: float = 1.5) -> list[Model]:
    """Crystalline models of the motif and model frame of ``model`` with ``n / spread`` … ``n · spread`` atoms
    (``n``: its atom count).

    Finer than the forms of the coarse search: icosahedra of every shell count; decahedra of every
    (p, q, r) with ``|p − q|`` ≤ 2 and r ≤ 3 (as the structures package tabulates them); every
    truncation (length, cutoff) of the octahedron, twinned or not as ``model``. Sizes of a form
    are discrete (magic numbers): these are the shapes between them. Empty for a glassy model.
    """
    n, element = model.n_atoms, model.element
    lo, hi = n / spread, n * spread
    if model.group == "Ih":
        rows = [("mackay_icosahedron", (("shells", k),), icosahedron_count(k)) for k in range(2, 19)]
    elif model.group == "D5h":
        rows = [("ino_decahedron" if r == 0 else "marks_decahedron", (("p", p), ("q", q), ("r", r)), c)
                for p, q, r, c in _decahedra_up_to(hi)]
    elif model.group in ("Oh", "Cs"):
        twins = ((("twins", (0,)),) if model.group == "Cs" else ())
        rows = [(_octahedron_form(length, cut, model.group), (("cutoff", cut), ("length", length), *twins),
                 octahedron_count(length, cut))
                for length in range(2, 40) for cut in range(0, (length - 1) // 2 + 1)]
    else:
        return []
    return [model_of(f, params, element) for f, params, c in rows if lo <= c <= hi and c >= 13]


def _octahedron_form(length: int, cutoff: int, group: str) -> str:
    if group == "Cs":
        return "twinned_fcc"
    if cutoff == 0:
        return "octahedron"
    return "cuboctahedron" if 2 * cutoff + 1 == length else "truncated_octahedron"


def _decahedra_up_to(n_max: float) -> list[tuple[int, int, int, int]]:
    """(p, q, r, atoms) of the decahedra with ``|p − q|`` ≤ 2, r < min(p, 4) and at most ``n_max`` atoms."""
    rows = []
    for p in range(2, 17):
        counts = []
        for q in range(max(1, p - 2), p + 3):
            for r in range(0, min(p, 4)):
                c = decahedron_count(p, q, r)
                counts.append(c)
                if c <= n_max:
                    rows.append((p, q, r, c))
        if min(counts) > n_max:
            break
    return rows


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
