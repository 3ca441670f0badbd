"""Speed of the simulation backends.

Run: ``.venv/bin/python benchmarks/simulation_speed.py [--n 2048] [--skip-prism]``

1. fast: images per second for 128 × 128 px (0.25 Å/px), a randomly oriented Au309 icosahedron
   on a 32 × 32 × 20 Å ``clusterspy.structures.carbon_support`` slab (~2,050 C atoms, one of 8
   pre-built slabs per image: their rendering is cached), Poisson noise at 5·10⁴ e⁻/Å² and
   0.3 px scan-line jitter, through ``simulate_batch`` (structure building excluded, rendering
   + support + acquisition included). Also with the Gaussian noise approximation, and with a
   different support for every image (no cache hits; ``--n-distinct`` images). Wall clock and
   this process's CPU time are both recorded, with the load average: the 2 cores are shared.
   Target: >= 2,000 images/s on this 2-core machine.
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
from clusterspy.structures import carbon_support

RESULTS = Path(__file__).resolve().parent / "results" / "simulation_speed.json"


def _clusters(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from ase.cluster import Icosahedron
    from scipy.spatial.transform import Rotation

    base = Icosahedron("Au", 5)
    pos0 = base.get_positions() - base.get_positions().mean(0)
    num = base.get_atomic_numbers()
    return [(pos0 @ r.T, num) for r in Rotation.random(n, random_state=1).as_matrix()]


def _distinct_supports(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` different 32 × 32 × 20 Å windows cut from one large carbon_support slab."""
    slab = carbon_support(96.0, 20.0, rng=11).get_positions()
    rng = np.random.default_rng(12)
    out = []
    for _ in range(n):
        x0, y0 = rng.uniform(-48.0, 16.0, 2)
        sel = (slab[:, 0] >= x0) & (slab[:, 0] < x0 + 32) & (slab[:, 1] >= y0) & (slab[:, 1] < y0 + 32)
        out.append((slab[sel], np.full(int(sel.sum()), 6)))
    return out


def fast_speed(n: int, noise: str, distinct_supports: bool = False) -> dict:
    """Images per second of ``simulate_batch`` (wall clock and CPU time of this process)."""
    clusters = _clusters(n)
    if distinct_supports:
        supports = _distinct_supports(n)
    else:
        slabs = [carbon_support(32.0, 20.0, rng=i) for i in range(8)]
        supports = [slabs[i % 8] for i in range(n)]
    acq = Acquisition(dose_e_per_A2=5e4, jitter_px=0.3, noise=noise)
    kw = {"pixel_size": 0.25, "extent": 32.0, "acquisition": acq, "chunk": 32}
    simulate_batch(clusters[:32], Microscope(), support=supports[:32], rng=0, **kw)  # warm-up
    t, c = time.perf_counter(), time.process_time()
    images = simulate_batch(clusters, Microscope(), support=supports, rng=2, **kw)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    assert images[0].shape == (128, 128)
    return {
        "images": n,
        "seconds": dt,
        "images_per_s": n / dt,
        "cpu_seconds": dc,
        "cpu_ms_per_image": 1e3 * dc / n,
        # images per CPU-second of this process (all its threads): one free core's rate
        "cpu_images_per_s": n / dc,
        "noise": noise,
        "supports": f"{n} distinct" if distinct_supports else "8 carbon_support slabs, reused",
        "support_atoms_per_image": float(
            np.mean([len(s[1]) if isinstance(s, tuple) else len(s) for s in supports[:64]])
        ),
        "cluster_atoms": len(clusters[0][1]),
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
    parser.add_argument("--n-distinct", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-prism", action="store_true")
    args = parser.parse_args()
    result = {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()}
    print(f"load average at start: {result['load_avg_at_start']}", flush=True)
    result["fast_poisson"] = fast_speed(args.n, "poisson")
    print(json.dumps(result["fast_poisson"]), flush=True)
    result["fast_gaussian"] = fast_speed(args.n, "gaussian")
    print(json.dumps(result["fast_gaussian"]), flush=True)
    result["fast_poisson_distinct_supports"] = fast_speed(args.n_distinct, "poisson", True)
    print(json.dumps(result["fast_poisson_distinct_supports"]), flush=True)
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
