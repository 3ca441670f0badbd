"""Reference cases shared by calibrate_fast.py and simulation_fidelity.py, and a PRISM cache.

Each case is a cluster (three motifs × zone axes + random orientations, 55–923 atoms, with and
without a carbon support) simulated by the prism backend once and cached under
``benchmarks/cache/`` (git-ignored), keyed by a hash of the atoms and the settings.
Structures are built directly with ASE (``ase.cluster``) so that the benchmark does not depend
on ``clusterspy.structures``; the support is ``clusterspy.structures.carbon_support`` (2 g/cm³).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clusterspy.simulation import Microscope, simulate

CACHE = Path(__file__).resolve().parent / "cache"
MICROSCOPE = Microscope(energy_keV=200, semiangle_mrad=25, detector_mrad=(70, 200))
PIXEL_SIZE_A = 0.4
PRISM_OPTIONS = {
    "interpolation": 4,
    "potential_sampling_A": 0.04,
    "slice_thickness_A": 1.0,
    "frozen_phonons": 1,
    "thermal_sigma_A": 0.08,
}


@dataclass
class Case:
    name: str
    motif: str
    size_label: str
    orientation: str
    support_A: float  # support thickness [Å], 0 = none
    seed: int


def _rotation_to_z(axis: np.ndarray) -> np.ndarray:
    """Rotation matrix that maps ``axis`` onto +z."""
    from scipy.spatial.transform import Rotation

    a = np.asarray(axis, float) / np.linalg.norm(axis)
    rot, _ = Rotation.align_vectors([[0, 0, 1]], [a])
    return rot.as_matrix()


def build(case: Case):
    """(cluster atoms, support atoms or None) of a case."""
    import ase
    from ase.cluster import Decahedron, Icosahedron, Octahedron
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(case.seed)
    if case.motif == "icosahedral":
        shells = {"55": 3, "147": 4, "309": 5, "561": 6, "923": 7}[case.size_label]
        atoms = Icosahedron("Au", shells)
        # ASE's icosahedron has a 2-fold axis along z; 5-fold axis through a vertex
        pos = atoms.get_positions() - atoms.get_positions().mean(0)
        r = np.linalg.norm(pos, axis=1)
        vertex = pos[np.argmax(r)]
        axes = {
            "5fold": vertex,
            "3fold": None,
            "2fold": np.array([0.0, 0.0, 1.0]),
        }
        if case.orientation == "3fold":
            far = pos[r > r.max() - 0.1]
            d = np.linalg.norm(far[:, None] - far[None], axis=-1)
            i, j = np.argwhere(np.isclose(d, d[d > 0.1].min(), atol=0.1))[0]
            k = next(
                k
                for k in range(len(far))
                if np.isclose(d[i, k], d[i, j], atol=0.1) and np.isclose(d[j, k], d[i, j], atol=0.1)
            )
            axes["3fold"] = far[i] + far[j] + far[k]
    elif case.motif == "decahedral":
        p = {"147": 4, "309": 5, "561": 6}.get(case.size_label, 4)
        atoms = Decahedron("Au", p, 1, 0) if case.size_label != "marks" else Decahedron("Au", 4, 2, 2)
        axes = {"5fold": np.array([0.0, 0.0, 1.0]), "across": np.array([1.0, 0.0, 0.0])}
    else:  # fcc
        length, cutoff = {"147": (7, 3), "309": (9, 4), "561": (11, 5), "923": (13, 6), "to": (9, 3)}[
            case.size_label
        ]
        atoms = Octahedron("Au", length, cutoff)
        axes = {
            "001": np.array([0.0, 0.0, 1.0]),
            "011": np.array([0.0, 1.0, 1.0]),
            "111": np.array([1.0, 1.0, 1.0]),
        }
    pos = atoms.get_positions()
    pos = pos - pos.mean(0)
    if case.orientation == "random":
        rot = Rotation.random(random_state=rng).as_matrix()
    else:
        rot = _rotation_to_z(axes[case.orientation])
        # a random in-plane rotation keeps the zone axis
        rot = Rotation.from_euler("z", rng.uniform(0, 360), degrees=True).as_matrix() @ rot
    atoms = ase.Atoms(numbers=atoms.get_atomic_numbers(), positions=pos @ rot.T)
    support = None
    if case.support_A > 0:
        from clusterspy.structures import carbon_support

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
        ("fcc", "923", ["011"]),
    ]
    for motif, size, orients in spec:
        for j, o in enumerate(orients):
            seed += 1
            support = 20.0 if (seed % 3 == 0) else 0.0
            cases.append(
                Case(f"{motif}-{size}-{o}{j}-{'C' if support else 'bare'}", motif, size, o, support, seed)
            )
    return cases


def _key(atoms, support, extent: float) -> str:
    h = hashlib.sha256()
    h.update(np.round(atoms.get_positions(), 4).tobytes())
    if support is not None:
        h.update(np.round(support.get_positions(), 4).tobytes())
    h.update(json.dumps([MICROSCOPE.to_dict(), PIXEL_SIZE_A, PRISM_OPTIONS, extent]).encode())
    return h.hexdigest()[:16]


def prism_reference(case: Case) -> tuple[np.ndarray, float]:
    """PRISM image of a case (cached) and the seconds it took (0 when cached)."""
    atoms, support = build(case)
    extent = extent_of(atoms)
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"prism_{case.name}_{_key(atoms, support, extent)}.npz"
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
        **PRISM_OPTIONS,
    ).data
    dt = time.perf_counter() - t
    np.savez_compressed(path, image=img, seconds=dt)
    return img, dt
