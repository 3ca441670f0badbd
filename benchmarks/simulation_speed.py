"""Speed of the simulation backends.

Run: ``.venv/bin/python benchmarks/simulation_speed.py [--n 2048] [--skip-prism]``

1. fast: images per second for 128 × 128 px (0.25 Å/px), a randomly oriented Au309 icosahedron
   on a 20 Å carbon slab (~1,700 C atoms, one of 8 pre-built slabs per image), Poisson noise at
   5·10⁴ e⁻/Å² and 0.3 px scan-line jitter, through ``simulate_batch`` (structure building
   excluded, rendering + support + acquisition included). Also with the Gaussian noise
   approximation. Target (issue 3): >= 2,000 images/s on this 2-core machine.
2. prism: the prism backend vs a raw abTEM script with identical settings (Au147, 25.6 Å cell,
   0.4 Å scan pixels, interpolation 4, 0.04 Å potential sampling, 1 frozen phonon), measured in
   the same run, alternating; the time ratio (goal <= 1.05).
Writes benchmarks/results/simulation_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from clusterspy.simulation import Acquisition, Microscope, simulate, simulate_batch

RESULTS = Path(__file__).resolve().parent / "results" / "simulation_speed.json"


def fast_speed(n: int, noise: str) -> dict:
    from ase.cluster import Icosahedron
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(0)
    base = Icosahedron("Au", 5)
    pos0 = base.get_positions() - base.get_positions().mean(0)
    num = base.get_atomic_numbers()
    rots = Rotation.random(n, random_state=1).as_matrix()
    clusters = [(pos0 @ r.T, num) for r in rots]
    slabs = []
    for _ in range(8):
        m = int(2.0 * 32 * 32 * 20 * 0.0502)
        slabs.append((rng.uniform([0, 0, 0], [32, 32, 20], (m, 3)), np.full(m, 6)))
    supports = [slabs[i % 8] for i in range(n)]
    acq = Acquisition(dose_e_per_A2=5e4, jitter_px=0.3, noise=noise)
    kw = {"pixel_size": 0.25, "extent": 32.0, "acquisition": acq, "chunk": 32}
    simulate_batch(clusters[:32], Microscope(), support=supports[:32], rng=0, **kw)  # warm-up
    t = time.perf_counter()
    images = simulate_batch(clusters, Microscope(), support=supports, rng=2, **kw)
    dt = time.perf_counter() - t
    assert images[0].shape == (128, 128)
    return {
        "images": n,
        "seconds": dt,
        "images_per_s": n / dt,
        "noise": noise,
        "support_atoms_per_image": len(slabs[0][1]),
        "cluster_atoms": len(num),
    }


def prism_ratio(repeats: int) -> dict:
    import abtem
    import ase
    from ase.cluster import Icosahedron

    m = Microscope()
    atoms = Icosahedron("Au", 4)
    atoms.positions -= atoms.positions.mean(0)
    ps, extent = 0.4, 25.6
    opts = {
        "interpolation": 4,
        "potential_sampling_A": 0.04,
        "frozen_phonons": 1,
        "thermal_sigma_A": 0.08,
        "slice_thickness_A": 1.0,
    }

    def ours() -> np.ndarray:
        return simulate(atoms, m, pixel_size=ps, extent=extent, backend="prism", rng=0, **opts).data

    def raw() -> np.ndarray:
        # the same physics written directly against abTEM, no clusterspy involved
        a = ase.Atoms(numbers=atoms.numbers, positions=atoms.positions.copy())
        a.positions += [extent / 2, extent / 2, 2.0 - a.positions[:, 2].min()]
        a.cell = [extent, extent, a.positions[:, 2].max() + 2.0]
        a.pbc = True
        fp = abtem.FrozenPhonons(a, num_configs=1, sigmas=0.08, seed=1)
        pot = abtem.Potential(fp, gpts=(640, 640), slice_thickness=1.0, projection="infinite")
        s = abtem.SMatrix(potential=pot, energy=200e3, semiangle_cutoff=25, interpolation=4)
        scan = abtem.GridScan(
            start=(ps / 2, ps / 2), end=(extent + ps / 2, extent + ps / 2), gpts=(64, 64), endpoint=False
        )
        det = abtem.AnnularDetector(inner=70, outer=200)
        ctf = abtem.CTF(energy=200e3, semiangle_cutoff=25, defocus=2.0, Cs=0.0)
        with abtem.config.set({"diagnostics.progress_bar": False}):
            return np.asarray(s.scan(scan=scan, detectors=det, ctf=ctf, lazy=True).compute().array).T

    times = {"raw": [], "ours": []}
    for _ in range(repeats):
        for name, fn in (("raw", raw), ("ours", ours)):
            t = time.perf_counter()
            img = fn()
            times[name].append(time.perf_counter() - t)
            assert img.shape == (64, 64)
    raw_t, ours_t = min(times["raw"]), min(times["ours"])
    return {
        "raw_abtem_s": times["raw"],
        "prism_backend_s": times["ours"],
        "ratio_min_times": ours_t / raw_t,
        "ratio_median_times": float(np.median(times["ours"]) / np.median(times["raw"])),
        "case": "Au147 icosahedron, 25.6 Å cell (640² potential, 0.04 Å), 64² scan at "
        "0.4 Å, interpolation 4, 1 frozen phonon, 200 keV, 25 mrad, 70–200 mrad",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-prism", action="store_true")
    args = parser.parse_args()
    result = {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()}
    result["fast_poisson"] = fast_speed(args.n, "poisson")
    print(json.dumps(result["fast_poisson"]), flush=True)
    result["fast_gaussian"] = fast_speed(args.n, "gaussian")
    print(json.dumps(result["fast_gaussian"]), flush=True)
    if not args.skip_prism:
        result["prism"] = prism_ratio(args.repeats)
        print(json.dumps(result["prism"]), flush=True)
    result["load_avg_at_end"] = os.getloadavg()
    result["command"] = (
        "python benchmarks/simulation_speed.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "skip_prism")
        + (" --skip-prism" if args.skip_prism else "")
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
