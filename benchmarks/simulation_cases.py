"""Reference cases shared by fit_fast_parameters.py and simulation_fidelity.py, and a PRISM cache.

Each case is a cluster (three motifs × zone axes + random orientations, 147–923 atoms, with and
without a 10 Å carbon support) simulated by the prism backend once and cached under
``benchmarks/cache/`` (git-ignored), keyed by a hash of the atoms and the settings.

Structures come from :func:`clusterspy.structures.cluster` (Mackay icosahedra, Ino and Marks
decahedra, cuboctahedra, a truncated octahedron and a twinned fcc cluster; their motifs are
checked by CNA in the test suite) with one *thermal snapshot*: independent Gaussian
displacements of ``THERMAL_SIGMA_A`` per axis, drawn from the case's seed. Both backends image
the same snapshot, and PRISM runs on it as a static lattice (``frozen_phonons=0``). Comparing
against a single abTEM frozen-phonon configuration instead would measure thermal sampling noise,
not the imaging model: two PRISM images of the same cluster with different frozen-phonon seeds
(σ = 0.08 Å) agree only to NCC 0.88 at 0.4 Å/px (Au55, ``benchmarks/prism_window.py``).
The support is ``clusterspy.structures.carbon_support`` (2 g/cm³).

"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from clusterspy.simulation import Microscope, simulate

CACHE = Path(__file__).resolve().parent / "cache"
MICROSCOPE = Microscope(energy_keV=200, semiangle_mrad=25, detector_mrad=(70, 200))
PIXEL_SIZE_A = 0.4
#: r.m.s. thermal displacement per axis of the snapshot both backends image [Å] (Au, ~300 K).
THERMAL_SIGMA_A = 0.08
PRISM_OPTIONS = {
    "interpolation": 4,
    "potential_sampling_A": 0.04,
    "slice_thickness_A": 1.0,
    "frozen_phonons": 0,
}
#: Carbon support thickness [Å] of the supported cases (147 and 309 atoms). A support deepens the
#: specimen, so PRISM needs a smaller interpolation factor (a wider probe window, see
#: clusterspy.simulation.prism.max_interpolation): 3 with 10 Å of carbon; thicker supports or
#: larger clusters on them would need factor 1 or 2, hours per image on this machine.
SUPPORT_THICKNESS_A = 10.0


def prism_options(case: Case) -> dict:
    """PRISM settings of a case: interpolation 4, or the largest safe factor when smaller."""
    from clusterspy.simulation.geometry import build_scene
    from clusterspy.simulation.prism import max_interpolation

    atoms, support = build(case)
    field, scene = build_scene(atoms, PIXEL_SIZE_A, extent_of(atoms), support)
    f = min(PRISM_OPTIONS["interpolation"], max_interpolation(field, scene, MICROSCOPE))
    return {**PRISM_OPTIONS, "interpolation": f}


#: (motif, shape, atom count) of each size label.
SHAPES = {
    ("icosahedral", "147"): (None, 147),
    ("icosahedral", "309"): (None, 309),
    ("icosahedral", "561"): (None, 561),
    ("decahedral", "147"): ("ino", 147),
    ("decahedral", "309"): ("ino", 309),
    ("decahedral", "marks"): ("marks", 484),
    ("fcc", "147"): ("cuboctahedron", 147),
    ("fcc", "309"): ("cuboctahedron", 309),
    ("fcc", "to"): ("truncated_octahedron", 405),
    ("fcc", "twin"): ("twinned", 309),
    ("fcc", "923"): ("cuboctahedron", 923),
}
#: benchmark orientation label -> zone-axis name of clusterspy.structures.cluster
ZONE_AXES = {"5fold": "5-fold", "3fold": "3-fold", "2fold": "2-fold", "across": "across",
             "001": "[001]", "011": "[011]", "111": "[111]", "random": "random"}


@dataclass(frozen=True)
class Case:
    name: str
    motif: str
    size_label: str
    orientation: str
    support_A: float  # support thickness [Å], 0 = none
    seed: int


def build(case: Case):
    """(cluster atoms, support atoms or None) of a case: one thermal snapshot, centred (copies of
    one build per case: the options, the cache key and the reference all need it)."""
    atoms, support = _build(case)
    return atoms.copy(), (None if support is None else support.copy())


@cache
def _build(case: Case):
    from clusterspy.structures import carbon_support, cluster

    rng = np.random.default_rng(case.seed)
    shape, size = SHAPES[(case.motif, case.size_label)]
    atoms = cluster(case.motif, size, "Au", rng, shape=shape, orientation=ZONE_AXES[case.orientation],
                    disorder={"thermal_A": THERMAL_SIGMA_A})
    atoms.positions -= atoms.positions.mean(0)
    support = None
    if case.support_A > 0:
        support = carbon_support(extent_of(atoms), case.support_A, 2.0, rng)
    return atoms, support


def extent_of(atoms) -> float:
    """Square field width [Å]: the cluster's projected size + 8 Å, a multiple of 8 pixels."""
    pos = atoms.get_positions()
    span = float(np.ptp(pos[:, :2], axis=0).max()) + 8.0
    step = 8 * PIXEL_SIZE_A
    return float(np.ceil(span / step) * step)


def all_cases() -> list[Case]:
    """The ≥ 30 benchmark cases (in a fixed order)."""
    cases: list[Case] = []
    seed = 100
    spec = [
        ("icosahedral", "147", ["5fold", "3fold", "2fold", "random", "random"]),
        ("icosahedral", "309", ["5fold", "2fold", "random", "random"]),
        ("icosahedral", "561", ["5fold", "random"]),
        ("decahedral", "147", ["5fold", "across", "random", "random"]),
        ("decahedral", "309", ["5fold", "across", "random"]),
        ("decahedral", "marks", ["5fold", "random"]),
        ("fcc", "147", ["001", "011", "111", "random", "random"]),
        ("fcc", "309", ["001", "011", "random"]),
        ("fcc", "to", ["011", "random"]),
        ("fcc", "twin", ["011"]),
        ("fcc", "923", ["011"]),
    ]
    for motif, size, orients in spec:
        for j, o in enumerate(orients):
            seed += 1
            support = SUPPORT_THICKNESS_A if (seed % 3 == 0 and size in ("147", "309")) else 0.0
            cases.append(
                Case(f"{motif}-{size}-{o}{j}-{'C' if support else 'bare'}", motif, size, o, support, seed)
            )
    return cases


def _key(atoms, support, extent: float, options: dict) -> str:
    h = hashlib.sha256()
    h.update(np.round(atoms.get_positions(), 4).tobytes())
    if support is not None:
        h.update(np.round(support.get_positions(), 4).tobytes())
    h.update(json.dumps([MICROSCOPE.to_dict(), PIXEL_SIZE_A, options, extent]).encode())
    return h.hexdigest()[:16]


def reference_path(case: Case) -> Path:
    """Cache file of a case's PRISM reference (keyed by its atoms and settings)."""
    atoms, support = build(case)
    return CACHE / f"prism_{case.name}_{_key(atoms, support, extent_of(atoms), prism_options(case))}.npz"


def prism_reference(case: Case) -> tuple[np.ndarray, float]:
    """PRISM image of a case (cached) and the seconds it took (0 when cached)."""
    atoms, support = build(case)
    extent = extent_of(atoms)
    CACHE.mkdir(exist_ok=True)
    options = prism_options(case)
    path = reference_path(case)
    if path.exists():
        return np.load(path)["image"], 0.0
    t = time.perf_counter()
    img = simulate(
        atoms,
        MICROSCOPE,
        pixel_size=PIXEL_SIZE_A,
        extent=extent,
        backend="prism",
        rng=case.seed,
        support=support,
        **options,
    ).data
    dt = time.perf_counter() - t
    tmp = path.with_name(path.stem + f".tmp{os.getpid()}.npz")
    np.savez_compressed(tmp, image=img, seconds=dt, interpolation=options["interpolation"])
    os.replace(tmp, path)  # atomic: two processes may compute references side by side
    return img, dt
