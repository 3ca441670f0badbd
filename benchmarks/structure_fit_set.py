"""PRISM test images for ``benchmarks/structure_fit.py``: clusters whose true atoms and rotation are kept.

Settings never used to fit the fast simulator's parameters (``benchmarks/simulation_cases.py``: 200 keV,
25 mrad, 70–200 mrad, defocus 0, static lattice, 0.4 Å/px): 100 keV (a fifth of the PRISM cost of
200 keV: fewer plane waves, coarser potential sampling), a 55–120 mrad detector, defocus drawn in
−20…+20 Å, a 0.4–0.8 Å source, one frozen-phonon configuration (σ = 0.08 Å), 3 Å slices, abTEM's
default potential sampling for the detector, image pixels 0.30–0.40 Å/px, Poisson noise at
5·10³–10⁵ e⁻/Å². Clusters: Au, 55–923 atoms (923 only as an icosahedron, to fit the CPU budget),
the four isomers in turn
(Mackay icosahedra; Ino and Marks decahedra; cuboctahedra, truncated octahedra, octahedra and
twinned fcc; glassy), half on a named zone axis (random in-plane angle, tilted by up to 2°), half in
a uniformly random orientation.

One ``.npz`` per image in ``benchmarks/cache/structure_fit/`` (git-ignored); existing files are
skipped, so the run is resumable. Each case runs in its own process, killed and recorded as
``case_NNNN.skipped.json`` when its resident memory passes ``--max-memory-gb`` (case 10, a 146-atom
octahedron, made abTEM's PRISM allocate > 15 GB; most cases peak at 6–8 GB, so run one process at
a time on a 24 GB machine; ``structure_fit.py`` reports the skipped cases)::

    nice -n 10 nohup .venv/bin/python benchmarks/structure_fit_set.py --n 120 --max-memory-gb 14 \
        > /tmp/sfset.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache" / "structure_fit"
SEED = 717171
ELEMENT = "Au"
#: (motif, form, sizes [atoms]) drawn in turn, one isomer after the other.
PLAN = {
    "icosahedral": [("mackay", (55, 147, 309, 561, 923))],
    "decahedral": [("ino", (75, 146, 318, 500)), ("marks", (100, 250, 500))],
    "fcc": [("cuboctahedron", (55, 147, 309, 561)), ("truncated_octahedron", (140, 405)),
            ("octahedron", (85, 146, 344)), ("twinned", (201, 405))],
    "amorphous": [("glassy", (60, 150, 300, 550))],
}
OUTER_MRAD = 120.0
ENERGY_KEV = 100.0
INNER_MRAD = 55.0


def case(i: int) -> dict:
    """The settings of image ``i`` (reproducible from ``SEED`` and ``i``)."""
    rng = np.random.default_rng([SEED, i])
    motif = list(PLAN)[i % 4]
    form, sizes = PLAN[motif][int(rng.integers(len(PLAN[motif])))]
    size = int(sizes[int(rng.integers(len(sizes)))])
    axis = None
    if motif != "amorphous" and rng.random() < 0.5:
        from clusterspy.isomers import parse_isomer
        from clusterspy.structures import ZONE_AXES

        axes = ZONE_AXES[parse_isomer(motif)]
        axis = str(axes[int(rng.integers(len(axes)))])
    return {
        "index": i, "motif": motif, "form": form, "size": size, "zone_axis": axis,
        "tilt_deg": float(rng.uniform(0, 2.0)) if axis else None,
        "defocus_A": float(rng.uniform(-20, 20)), "source_size_A": float(rng.uniform(0.4, 0.8)),
        "pixel_size_A": float(rng.uniform(0.30, 0.40)),
        "dose_e_per_A2": float(10 ** rng.uniform(np.log10(5e3), 5.0)),
        "seed": int(rng.integers(2**31)),
    }


def build(c: dict):
    """The true cluster of a case (``ase.Atoms``; ``info["rotation"]``: native frame → image frame)."""
    from clusterspy.structures import cluster

    rng = np.random.default_rng(c["seed"])
    orientation = c["zone_axis"] or "random"
    atoms = cluster(c["motif"], c["size"], ELEMENT, rng, shape=c["form"], orientation=orientation)
    if c["zone_axis"]:
        tilt = _tilt(rng, c["tilt_deg"])
        atoms.positions = atoms.positions @ tilt.T
        atoms.info["rotation"] = (tilt @ np.asarray(atoms.info["rotation"])).tolist()
    return atoms


def _tilt(rng: np.random.Generator, deg: float) -> np.ndarray:
    axis = np.array([*rng.normal(size=2), 0.0])
    axis /= np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = np.deg2rad(deg)
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * (k @ k)


def microscope(c: dict):
    from clusterspy.simulation import Microscope

    return Microscope(energy_keV=ENERGY_KEV, semiangle_mrad=25.0, detector_mrad=(INNER_MRAD, OUTER_MRAD),
                      defocus_A=c["defocus_A"], source_size_A=c["source_size_A"])


def make(c: dict) -> dict:
    """Simulate one case with PRISM; the clean image, a noisy one and the truth."""
    from clusterspy.simulation import Acquisition, simulate

    atoms = build(c)
    span = np.ptp(atoms.positions[:, :2], axis=0).max()
    extent = float(np.ceil((span + 16.0) / 4.0) * 4.0)
    rng = np.random.default_rng(c["seed"] + 1)
    clean = simulate(atoms, microscope(c), pixel_size=c["pixel_size_A"], extent=extent, backend="prism",
                     rng=rng, frozen_phonons=1, thermal_sigma_A=0.08, slice_thickness_A=3.0,
                     interpolation="auto")
    noisy = Acquisition(dose_e_per_A2=c["dose_e_per_A2"]).apply(clean.data, clean.pixel_size_A, rng)
    origin = np.asarray(clean.metadata["simulation"]["origin_A"])
    return {
        "clean": clean.data.astype(np.float32), "noisy": np.asarray(noisy, dtype=np.float32),
        "pixel_size_A": clean.pixel_size_A,
        # true atoms in the image frame: x = col · px, y = row · px (origin at pixel (0, 0))
        "positions_A": atoms.positions - np.array([origin[0], origin[1], atoms.positions[:, 2].min()]),
        "rotation": np.asarray(atoms.info["rotation"]), "n_atoms": len(atoms),
        "form": atoms.info["shape"], "case": json.dumps(c),
    }


def _resident_gb(pid: int) -> float:
    """Resident memory [GB] of process ``pid`` (Linux /proc; 0 once it has gone)."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def _simulate_and_save(i: int) -> None:
    """Simulate case ``i`` and write its ``.npz`` atomically (runs in a child process)."""
    out = CACHE / f"case_{i:04d}.npz"
    c = case(i)
    t0 = time.time()
    try:
        rec = make(c)
    except MemoryError as exc:  # numpy refused one allocation larger than the machine
        (CACHE / f"case_{i:04d}.skipped.json").write_text(json.dumps(
            {"case": c, "reason": f"PRISM asked for more memory than the machine has ({exc})"}))
        print(f"{i} skipped: {exc}", flush=True)
        return
    tmp = out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **rec)
    tmp.rename(out)
    print(f"{i} {c['motif']} {rec['form']} {rec['n_atoms']} {c['zone_axis']} "
          f"{rec['clean'].shape} {time.time() - t0:.1f} s, peak "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.1f} GB", flush=True)


def _run_case(i: int, limit_gb: float) -> None:
    """Run case ``i`` in a fresh process; kill it and record it as skipped past ``limit_gb``.

    A fresh process per case, because one long-lived process grew from case to case; the memory
    is watched from outside, because a watcher thread inside does not get the GIL while abTEM works.
    """
    marker = CACHE / f"case_{i:04d}.skipped.json"
    child = multiprocessing.get_context("fork").Process(target=_simulate_and_save, args=(i,))
    child.start()
    while child.is_alive():
        if _resident_gb(child.pid) > limit_gb:
            child.kill()
            child.join()
            (CACHE / f"case_{i:04d}.tmp.npz").unlink(missing_ok=True)
            marker.write_text(json.dumps({"case": case(i), "reason": f"PRISM needed more than "
                                                                      f"{limit_gb:g} GB resident"}))
            print(f"{i} skipped: PRISM needed more than {limit_gb:g} GB", flush=True)
            return
        time.sleep(0.5)
    child.join()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--max-memory-gb", type=float, default=12.0,
                    help="resident-memory limit of one case's process; a case that needs more is "
                         "recorded as skipped (case_NNNN.skipped.json) instead of taking the machine "
                         "down (default 12)")
    a = ap.parse_args(argv)
    CACHE.mkdir(parents=True, exist_ok=True)
    for i in range(a.start, a.n):
        out = CACHE / f"case_{i:04d}.npz"
        if out.exists() or out.with_suffix(".skipped.json").exists():
            continue
        _run_case(i, a.max_memory_gb)


if __name__ == "__main__":
    main()
