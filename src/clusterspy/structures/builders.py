"""Atomic models of every motif: icosahedral, decahedral, fcc (single-crystal and twinned) and amorphous.

Crystalline forms are built once per (form, shape parameters, element) with ASE's cluster builders and cached;
:func:`cluster` then copies, perturbs and rotates the cached coordinates (about 1 ms for 309 atoms).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

import numpy as np

from clusterspy.errors import ConfigError
from clusterspy.isomers import Isomer, parse_isomer
from clusterspy.structures import amorphous as _amorphous
from clusterspy.structures.orientation import (
    check_rotation,
    random_rotation,
    rotation_about_z,
    rotation_to_z,
)

#: Sub-forms (``shape`` names) of every motif; the first one is the default.
SHAPES: dict[Isomer, tuple[str, ...]] = {
    Isomer.ICOSAHEDRAL: ("mackay",),
    Isomer.DECAHEDRAL: ("ino", "marks"),
    Isomer.FCC: (
        "truncated",
        "cuboctahedron",
        "truncated_octahedron",
        "octahedron",
        "wulff",
        "twinned",
        "lamellar",
    ),
    Isomer.AMORPHOUS: ("glassy",),
}

#: Named zone axes of every motif (beam along the named direction).
ZONE_AXES: dict[Isomer, tuple[str, ...]] = {
    Isomer.ICOSAHEDRAL: ("2-fold", "3-fold", "5-fold"),
    Isomer.DECAHEDRAL: ("5-fold", "across"),
    Isomer.FCC: ("[001]", "[011]", "[111]"),
    Isomer.AMORPHOUS: (),
}

_AXIS_ALIASES = {
    "5": "5-fold", "5fold": "5-fold", "five-fold": "5-fold", "fivefold": "5-fold", "along": "5-fold",
    "3": "3-fold", "3fold": "3-fold", "three-fold": "3-fold", "threefold": "3-fold",
    "2": "2-fold", "2fold": "2-fold", "two-fold": "2-fold", "twofold": "2-fold",
    "[100]": "[001]", "[010]": "[001]", "100": "[001]", "001": "[001]",
    "[110]": "[011]", "[101]": "[011]", "110": "[011]", "011": "[011]", "111": "[111]",
}

#: Largest decahedron / Wulff polyhedron tabulated [atoms] (an 8 nm Au particle has ~16,000).
MAX_TABLE_ATOMS = 20000
_MAX_LAYERS = 18  # largest shape parameter searched when matching a size (≈ 20,000 atoms)


@dataclass(frozen=True)
class Form:
    """A built sub-form in its native frame: positions [Å] and named zone axes (unit vectors)."""

    positions: np.ndarray
    shape: str
    params: dict[str, Any]
    axes: dict[str, np.ndarray] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- elements
def lattice_constant(element: str) -> float:
    """fcc lattice constant of ``element`` from ``ase.data.reference_states`` [Å].

    Raises
    ------
    ConfigError
        If ASE does not know ``element`` as an fcc metal.
    """
    from ase.data import atomic_numbers, reference_states

    z = atomic_numbers.get(element)
    state = reference_states[z] if z is not None else None
    if state is None or state.get("symmetry") != "fcc":
        symbol = str(element).strip().capitalize()
        known = atomic_numbers.get(symbol)
        fcc = known is not None and (reference_states[known] or {}).get("symmetry") == "fcc"
        hint = f"did you mean {symbol}? (symbols are case-sensitive) " if symbol != element and fcc else ""
        raise ConfigError(
            f"element {element!r} is not an fcc metal known to ASE; {hint}use one of "
            "Au, Ag, Cu, Pt, Pd, Ni, Al, Ir, Rh, Pb, ..."
        )
    return float(state["a"])


# --------------------------------------------------------------------------------------------- counts
def icosahedron_count(shells: int) -> int:
    """Atoms in a Mackay icosahedron (or cuboctahedron) of ``shells`` shells: 13, 55, 147, 309, 561, 923."""
    n = shells
    return (10 * n**3 - 15 * n**2 + 11 * n - 3) // 3


def octahedron_count(length: int, cutoff: int) -> int:
    """Atoms in ASE's ``Octahedron(length, cutoff)``: corners truncated ``cutoff`` layers deep."""
    return length * (2 * length**2 + 1) // 3 - cutoff * (cutoff + 1) * (2 * cutoff + 1)


@cache
def _decahedron_table() -> tuple[tuple[int, int, int, int], ...]:
    """(p, q, r, count) of reasonable decahedra (|p − q| ≤ 2, r < p), counted once with ASE."""
    from ase.cluster import Decahedron

    rows = []
    for p in range(2, 17):
        for q in range(max(1, p - 2), p + 3):
            for r in range(0, min(p, 4)):
                n = len(Decahedron("Cu", p, q, r))
                if n <= MAX_TABLE_ATOMS:
                    rows.append((p, q, r, n))
    return tuple(rows)


def _wulff_layers(scale: int) -> tuple[int, int, int]:
    """(100), (110), (111) layer counts of a Wulff-like fcc polyhedron (γ100/γ111 ≈ 1.1, γ110/γ111 ≈ 1.2)."""
    return (round(scale * 1.1 * 2 / np.sqrt(3)) , round(scale * 1.2 * 2 * np.sqrt(2) / np.sqrt(3) / 1.6),
            scale)


@cache
def _wulff_table() -> tuple[tuple[int, int, int, int], ...]:
    from ase.cluster import FaceCenteredCubic

    rows = []
    for s in range(2, 30):
        layers = _wulff_layers(s)
        n = len(FaceCenteredCubic("Cu", [(1, 0, 0), (1, 1, 0), (1, 1, 1)], list(layers)))
        rows.append((*layers, n))
        if n > MAX_TABLE_ATOMS:
            break
    return tuple(rows)


def _nearest(candidates: list[tuple[tuple, int, float]], size: int) -> tuple:
    """Parameters whose count is nearest ``size``; ties go to the smallest penalty."""
    best = min(candidates, key=lambda c: (abs(c[1] - size), c[2]))
    return best[0]


def _choose_params(motif: Isomer, form: str, size: int) -> dict[str, Any]:
    if motif is Isomer.ICOSAHEDRAL:
        cands = [((n,), icosahedron_count(n), 0.0) for n in range(2, _MAX_LAYERS + 1)]
        (n,) = _nearest(cands, size)
        return {"shells": n}
    if motif is Isomer.DECAHEDRAL:
        rows = _decahedron_table()
        if form == "ino":
            cands = [((p, q, r), n, abs(p - q)) for p, q, r, n in rows if r == 0]
        else:
            cands = [((p, q, r), n, abs(p - q) + abs(r - 1 - p // 4)) for p, q, r, n in rows if r > 0]
        p, q, r = _nearest(cands, size)
        return {"p": p, "q": q, "r": r}
    if form == "wulff":
        (l100, l110, l111) = _nearest([((a, b, c), n, 0.0) for a, b, c, n in _wulff_table()], size)
        return {"layers": (l100, l110, l111)}
    cands = []
    for length in range(2, 3 * _MAX_LAYERS):
        cmax = (length - 1) // 2
        if form == "cuboctahedron":
            cuts = [cmax] if length % 2 == 1 else []
        elif form == "octahedron":
            cuts = [0]
        elif form == "truncated_octahedron":
            cuts = [c for c in range(1, cmax + (length % 2 == 0)) if 4 * c >= length - 1]
        else:  # "truncated" (default), "twinned", "lamellar": any truncation, the most isotropic wins ties
            cuts = list(range(max(1, (length - 1) // 4), cmax + 1))
        for c in cuts:
            cands.append(((length, c), octahedron_count(length, c), abs(length - 3 * c - 1)))
    length, cutoff = _nearest(cands, size)
    return {"length": length, "cutoff": cutoff}


# --------------------------------------------------------------------------------------------- builders
@cache
def _ico_axes() -> dict[str, np.ndarray]:
    from ase.cluster import Icosahedron

    p = Icosahedron("Cu", 2).positions
    p = p - p.mean(axis=0)
    v = p[np.linalg.norm(p, axis=1) > 1.0]
    v = v / np.linalg.norm(v, axis=1)[:, None]
    adjacent = np.abs((v @ v.T) - 0.4472) < 0.05  # neighbouring vertices: cos 63.4° = 1/√5
    j = int(np.flatnonzero(adjacent[0])[0])  # a neighbour of vertex 0
    k = int(np.flatnonzero(adjacent[0] & adjacent[j])[0])  # a vertex next to both 0 and j
    five = v[0]
    two = v[0] + v[j]
    three = v[0] + v[j] + v[k]
    return {
        "5-fold": five,
        "2-fold": two / np.linalg.norm(two),
        "3-fold": three / np.linalg.norm(three),
    }


@cache
def _dec_axes() -> dict[str, np.ndarray]:
    from ase.cluster import Decahedron

    p = Decahedron("Cu", 3, 1, 0).positions
    p = p - p.mean(axis=0)
    r = np.linalg.norm(p[:, :2], axis=1)
    mid = np.abs(p[:, 2]) < 0.1
    vertex = p[mid][np.argmax(r[mid])]
    across = np.array([vertex[0], vertex[1], 0.0])
    return {"5-fold": np.array([0.0, 0.0, 1.0]), "across": across / np.linalg.norm(across)}


def _cubic_axes(frame: np.ndarray | None = None) -> dict[str, np.ndarray]:
    axes = {"[001]": np.array([0.0, 0.0, 1.0]), "[011]": np.array([0.0, 1.0, 1.0]) / np.sqrt(2),
            "[111]": np.ones(3) / np.sqrt(3)}
    if frame is not None:
        # twinned: the <011> axis that lies in the twin plane, so the twin boundary is seen edge-on
        axes["[011]"] = np.array([1.0, -1.0, 0.0]) / np.sqrt(2)
        axes = {k: frame @ v for k, v in axes.items()}
    return axes


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a - a.mean(axis=0), dtype=float)
    a.setflags(write=False)
    return a


@lru_cache(maxsize=256)
def _build_crystal(motif: Isomer, form: str, params_key: tuple, element: str) -> Form:
    from ase.cluster import Decahedron, FaceCenteredCubic, Icosahedron, Octahedron

    params = dict(params_key)
    a = lattice_constant(element)
    if motif is Isomer.ICOSAHEDRAL:
        pos = Icosahedron(element, noshells=params["shells"], latticeconstant=a).positions
        return Form(_frozen(pos), form, params, _ico_axes())
    if motif is Isomer.DECAHEDRAL:
        pos = Decahedron(element, params["p"], params["q"], params["r"], latticeconstant=a).positions
        return Form(_frozen(pos), form, params, _dec_axes())
    if "layers" in params:
        pos = FaceCenteredCubic(element, [(1, 0, 0), (1, 1, 0), (1, 1, 1)], list(params["layers"]),
                                latticeconstant=a).positions
        return Form(_frozen(pos), form, params, _cubic_axes())
    pos = Octahedron(element, params["length"], params["cutoff"], latticeconstant=a).positions
    return Form(_frozen(pos), form, params, _cubic_axes())


def _twin(base: Form, element: str, twin_layers: tuple[int, ...] | None,
          rng: np.random.Generator) -> Form:
    """Insert twin planes into a single-crystal fcc form.

    The crystal is turned so that [111] is along z; every close-packed (111) layer is then shifted in
    its plane by a Shockley partial (a/6⟨112⟩) so that the stacking sequence reverses at each layer of
    ``twin_layers`` (offsets from the central layer; ``None``: two planes drawn from ``rng`` in the
    central half, at least two layers apart). The atom count is unchanged.
    """
    a = lattice_constant(element)
    frame = rotation_to_z(np.ones(3))
    pos = base.positions @ frame.T
    d111 = a / np.sqrt(3.0)
    z0 = pos[:, 2].min()
    layer = np.rint((pos[:, 2] - z0) / d111).astype(int)
    n_layers = int(layer.max()) + 1
    centre = n_layers // 2
    # stacking vector between consecutive layers, from a nearest-neighbour pair of layers centre, centre+1
    lo = pos[layer == centre]
    hi = pos[layer == centre + 1]
    dxy = hi[:, None, :2] - lo[None, :, :2]
    i, j = np.unravel_index(np.argmin(np.einsum("ijk,ijk->ij", dxy, dxy)), dxy.shape[:2])
    v = np.array([*dxy[i, j], 0.0])
    if twin_layers is None:
        quarter = max(1, n_layers // 4)
        first = int(rng.integers(centre - quarter, centre + 1))
        gap = int(rng.integers(2, max(3, quarter + 1)))
        twin_layers = (first - centre, min(first + gap, n_layers - 2) - centre)
    planes = sorted({centre + t for t in twin_layers})
    if not all(0 < t < n_layers - 1 for t in planes):
        raise ConfigError(
            f"twin planes {list(twin_layers)} (layers from the centre) lie outside the {n_layers}-layer "
            f"crystal; choose offsets between {-centre + 1} and {n_layers - 2 - centre}"
        )
    stack = np.zeros(n_layers, dtype=int)  # desired stacking class of each layer
    direction = 1
    for k in range(1, n_layers):
        if k - 1 in planes:
            direction = -direction
        stack[k] = stack[k - 1] + direction
    shift_class = (stack - np.arange(n_layers)) % 3  # 0: none, 1: +v, 2: −v
    shift = np.where(shift_class == 1, 1.0, np.where(shift_class == 2, -1.0, 0.0))
    pos = pos + shift[layer][:, None] * v
    params = {**base.params, "twins": tuple(t - centre for t in planes)}
    shape = "twinned" if len(planes) == 1 else "lamellar"
    return Form(_frozen(pos), shape, params, _cubic_axes(frame))


# --------------------------------------------------------------------------------------------- parsing
def _parse_motif(motif: str | Isomer) -> Isomer:
    if isinstance(motif, Isomer):
        return motif
    try:
        return parse_isomer(str(motif))
    except ValueError as exc:
        raise ConfigError(f"{exc}; pass e.g. motif='icosahedral' (--motif icosahedral)") from None


def _shape_from_params(motif: Isomer, shape: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    keys = set(shape)
    if motif is Isomer.ICOSAHEDRAL and keys <= {"shells", "noshells"} and keys:
        return "mackay", {"shells": int(shape.get("shells", shape.get("noshells")))}
    if motif is Isomer.DECAHEDRAL and {"p", "q"} <= keys <= {"p", "q", "r"}:
        p, q, r = int(shape["p"]), int(shape["q"]), int(shape.get("r", 0))
        if p < 1 or q < 1 or r < 0:
            raise ConfigError(f"decahedron needs p ≥ 1, q ≥ 1, r ≥ 0; got p={p}, q={q}, r={r}")
        return ("marks" if r else "ino"), {"p": p, "q": q, "r": r}
    if motif is Isomer.FCC and {"length", "cutoff"} <= keys <= {"length", "cutoff", "twins"}:
        length, cutoff = int(shape["length"]), int(shape["cutoff"])
        if length < 2 or not 0 <= cutoff <= (length - 1) // 2 + (length % 2 == 0):
            raise ConfigError(
                f"truncated octahedron needs length ≥ 2 and 0 ≤ cutoff ≤ (length−1)/2; got {length}, {cutoff}"
            )
        params: dict[str, Any] = {"length": length, "cutoff": cutoff}
        if "twins" in shape:
            params["twins"] = tuple(int(t) for t in np.atleast_1d(shape["twins"]))
            return ("twinned" if len(params["twins"]) == 1 else "lamellar"), params
        name = "cuboctahedron" if 2 * cutoff + 1 == length else (
            "octahedron" if cutoff == 0 else "truncated_octahedron")
        return name, params
    if motif is Isomer.FCC and keys == {"layers"}:
        layers = tuple(int(x) for x in shape["layers"])
        if len(layers) != 3 or min(layers) < 1:
            raise ConfigError("fcc 'layers' must be three positive counts for the (100), (110), (111) facets")
        return "wulff", {"layers": layers}
    if motif is Isomer.AMORPHOUS and keys == {"index"}:
        return "glassy", {"index": int(shape["index"])}
    raise ConfigError(
        f"shape parameters {sorted(keys)} do not describe a {motif.value} cluster; use e.g. "
        "{'shells': 5} (icosahedral), {'p': 5, 'q': 5, 'r': 1} (decahedral), "
        "{'length': 9, 'cutoff': 4, 'twins': [0]} or {'layers': (6, 8, 5)} (fcc), {'index': 3} (amorphous)"
    )


def _parse_shape(motif: Isomer, shape: Any, size: int, rng: np.random.Generator
                 ) -> tuple[str, dict[str, Any]]:
    if isinstance(shape, Mapping):
        return _shape_from_params(motif, shape)
    forms = SHAPES[motif]
    if shape is None:
        form = forms[0]
    elif isinstance(shape, str) and shape.strip().lower() == "random":
        form = forms[int(rng.integers(len(forms)))]
    elif isinstance(shape, str) and shape.strip().lower().replace("-", "_").replace(" ", "_") in forms:
        form = shape.strip().lower().replace("-", "_").replace(" ", "_")
    else:
        raise ConfigError(
            f"unknown shape {shape!r} for a {motif.value} cluster; use one of {', '.join(forms)}, "
            "'random', or a dict of shape parameters"
        )
    if motif is Isomer.AMORPHOUS:
        return form, {"index": int(rng.integers(_amorphous.POOL_SIZE))}
    params = _choose_params(motif, form, size)
    if form == "twinned":
        params["twins"] = (0,)
    elif form == "lamellar":
        params["twins"] = None  # two planes drawn from rng once the crystal is built
    return form, params


def _parse_orientation(
    orientation: Any, form: Form, motif: Isomer, rng: np.random.Generator, in_plane_deg: float | None
) -> tuple[str, np.ndarray]:
    if isinstance(orientation, str):
        key = orientation.strip().lower().replace(" ", "")
        if key == "random":
            return "random", random_rotation(rng)
        key = _AXIS_ALIASES.get(key, key)
        if motif is Isomer.DECAHEDRAL and key == "2-fold":
            key = "across"
        if key not in form.axes:
            raise ConfigError(
                f"unknown zone axis {orientation!r} for a {motif.value} cluster; use 'random', one of "
                f"{', '.join(ZONE_AXES[motif]) or '(none: amorphous has no zone axes)'}, or a 3×3 rotation"
            )
        angle = rng.uniform(0, 2 * np.pi) if in_plane_deg is None else np.deg2rad(in_plane_deg)
        return key, rotation_about_z(angle) @ rotation_to_z(form.axes[key])
    return "matrix", check_rotation(orientation)


# --------------------------------------------------------------------------------------------- public
def cluster(
    motif: str | Isomer,
    size: int,
    element: str = "Au",
    rng: np.random.Generator | int | None = None,
    *,
    shape: str | Mapping[str, Any] | None = None,
    orientation: str | np.ndarray = "random",
    in_plane_deg: float | None = None,
    disorder: Mapping[str, float] | None = None,
):
    """Build an atomic model of a metal nanocluster.

    Parameters
    ----------
    motif : str or Isomer
        ``"icosahedral"``, ``"decahedral"``, ``"fcc"`` or ``"amorphous"`` (aliases of
        :func:`clusterspy.isomers.parse_isomer` accepted).
    size : int
        Number of atoms. Exact for the magic numbers (55, 147, 309, 561, 923, ...) of the Mackay icosahedron,
        the cuboctahedron and the Ino decahedron; otherwise the nearest count the chosen form can reach.
        Ignored when ``shape`` gives explicit parameters. Amorphous clusters have exactly ``size`` atoms.
    element : str
        An fcc metal known to ASE (lattice constant from ``ase.data.reference_states``).
    rng : numpy.random.Generator, int or None
        Source of all randomness (orientation, random shapes, amorphous structure, disorder).
        ``None`` draws a fresh ``default_rng()``.
    shape : str, mapping or None
        Sub-form: icosahedral ``"mackay"``; decahedral ``"ino"`` (default) or ``"marks"``; fcc ``"truncated"``
        (default: any corner truncation of the octahedron, most isotropic on ties), ``"cuboctahedron"``,
        ``"truncated_octahedron"``, ``"octahedron"``, ``"wulff"`` ({100}, {110}, {111} facets),
        ``"twinned"`` (one twin plane through the centre), ``"lamellar"`` (two parallel twin planes at
        positions drawn from ``rng``); amorphous ``"glassy"``. ``"random"`` draws a form with ``rng``.
        Or explicit parameters: ``{"shells": n}``, ``{"p": 5, "q": 5, "r": 1}``,
        ``{"length": L, "cutoff": c}`` (ASE ``Octahedron``) with optional ``"twins": [layer offsets from the
        centre]``, ``{"layers": (n100, n110, n111)}`` (ASE ``FaceCenteredCubic``), ``{"index": k}`` (amorphous
        pool member, 0 ≤ k < ``POOL_SIZE``).
    orientation : str or ndarray
        ``"random"`` (uniform on SO(3)), a zone axis brought onto the beam (``+z``): icosahedral
        ``"2-fold"``, ``"3-fold"``, ``"5-fold"``; decahedral ``"5-fold"`` (along the axis) or ``"across"``
        (alias ``"2-fold"``: perpendicular to the 5-fold axis through a pentagon vertex, twins edge-on);
        fcc ``"[001]"``, ``"[011]"``, ``"[111]"`` (for twinned forms ``"[011]"`` lies in the twin plane, the
        twin boundaries seen edge-on); or a 3×3 rotation matrix applied to the native frame.
    in_plane_deg : float or None
        Rotation about the beam applied after a zone-axis orientation [degrees]; ``None`` draws it uniformly
        from ``rng``.
    disorder : mapping or None
        Keyword arguments of :func:`clusterspy.structures.disorder.perturb` (``thermal_A``, ``vacancies``,
        ``adatoms``, ``strain``), applied in the native frame before rotating.

    Returns
    -------
    ase.Atoms
        Positions [Å] with the centre of mass at the origin; ``info["motif"]`` (str), ``info["shape"]`` (str),
        ``info["shape_params"]`` (dict), ``info["orientation"]`` (zone-axis name, ``"random"`` or
        ``"matrix"``) and ``info["rotation"]`` (3×3 list, native frame → returned frame).

    Raises
    ------
    ConfigError
        For an unknown motif, shape, zone axis or element, or a size below 13 atoms.
    """
    from ase import Atoms
    from ase.data import atomic_numbers

    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    iso = _parse_motif(motif)
    lattice_constant(element)
    try:
        size = int(size)
    except (TypeError, ValueError):
        raise ConfigError(f"cluster size (size / --size) must be an atom count (int), got {size!r}") from None
    if size < 13:
        raise ConfigError(f"cluster size (size / --size) must be at least 13 atoms, got {size}")
    form_name, params = _parse_shape(iso, shape, size, rng)
    if iso is Isomer.AMORPHOUS and not (isinstance(orientation, str) and orientation == "random"):
        if isinstance(orientation, str):
            raise ConfigError(f"amorphous clusters have no zone axes ({orientation!r}); use 'random' or a "
                              "3×3 rotation matrix")
    if iso is Isomer.AMORPHOUS:
        idx = params["index"]
        if not 0 <= idx < _amorphous.POOL_SIZE:
            raise ConfigError(f"amorphous 'index' must be in [0, {_amorphous.POOL_SIZE}), got {idx}")
        form = Form(_amorphous.glassy_positions(element, size, idx), form_name, params, {})
    else:
        twinned = "twins" in params
        twins = params.pop("twins", None)
        form = _build_crystal(iso, form_name, tuple(sorted(params.items())), element)
        if twinned:
            form = _twin(form, element, twins, rng)
        elif form.shape != form_name:
            form = Form(form.positions, form_name, form.params, form.axes)
    pos = np.array(form.positions)
    if disorder:
        from clusterspy.structures.disorder import perturb_positions

        pos = perturb_positions(pos, rng, element=element, **dict(disorder))
    name, rot = _parse_orientation(orientation, form, iso, rng, in_plane_deg)
    pos = pos @ rot.T
    pos -= pos.mean(axis=0)
    atoms = Atoms(numbers=np.full(len(pos), atomic_numbers[element]), positions=pos)
    atoms.info.update(
        motif=iso.value,
        shape=form.shape,
        shape_params={k: (list(v) if isinstance(v, tuple) else v) for k, v in form.params.items()},
        orientation=name,
        rotation=rot.tolist(),
        element=element,
    )
    return atoms
