"""PRISM's interpolation window vs the specimen depth, and frozen-phonon sampling noise.

Run: ``.venv/bin/python benchmarks/prism_window.py`` (about 5–10 min on 2 cores).

1. Window artefact: a randomly oriented Au55 (seed 3) in a 16 Å cell, 0.4 Å/px, 200 keV, 25 mrad,
   70–200 mrad, static lattice, bare and on 20 Å of amorphous carbon (seed 4). PRISM with
   interpolation 4 is compared with interpolation 1 (no window), and the fast backend with both.
   ``clusterspy.simulation.prism.max_interpolation`` gives the largest safe factor of each specimen
   (the prism backend refuses larger ones).
2. Frozen-phonon noise: the same cluster, one abTEM frozen-phonon configuration (σ = 0.08 Å) with
   two seeds, against each other and against the static lattice — why the fidelity references
   image one shared thermal snapshot instead (see simulation_cases.py).

Writes benchmarks/results/prism_window.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from clusterspy.simulation import Microscope, ncc, simulate
from clusterspy.simulation.geometry import build_scene
from clusterspy.simulation.prism import max_interpolation, simulate_prism
from clusterspy.structures import carbon_support, cluster

RESULTS = Path(__file__).resolve().parent / "results" / "prism_window.json"
MIC = Microscope(energy_keV=200, semiangle_mrad=25, detector_mrad=(70, 200))
PX, EXTENT = 0.4, 16.0


def main() -> dict:
    atoms = cluster("icosahedral", 55, "Au", 3, orientation="random")
    support = carbon_support(EXTENT, 20.0, 2.0, np.random.default_rng(4))
    opts = {"potential_sampling_A": 0.04, "slice_thickness_A": 1.0, "frozen_phonons": 0}
    out: dict = {"case": "Au55 (seed 3), 16 Å cell, 0.4 Å/px, 200 keV, 25 mrad, 70-200 mrad", "window": {}}
    for name, sup in (("bare", None), ("on 20 Å carbon", support)):
        field, scene = build_scene(atoms, PX, EXTENT, sup)
        img = {}
        for f in (4, 1):
            t = time.perf_counter()
            # interpolation 4 on carbon is what the backend refuses by default
            img[f] = simulate_prism(field, scene, MIC, interpolation=f, check_window=False, **opts)
            print(f"{name}: interpolation {f}: {time.perf_counter() - t:.0f} s", flush=True)
        fast = simulate(atoms, MIC, pixel_size=PX, extent=EXTENT, support=sup).data
        out["window"][name] = {
            "max_safe_interpolation": max_interpolation(field, scene, MIC),
            "ncc_prism4_vs_prism1": ncc(img[4], img[1]),
            "ncc_fast_vs_prism1": ncc(fast, img[1]),
            "ncc_fast_vs_prism4": ncc(fast, img[4]),
        }
        print(name, json.dumps(out["window"][name]), flush=True)

    phonon = {}
    for seed in (1, 2):
        phonon[seed] = simulate(atoms, MIC, pixel_size=PX, extent=EXTENT, backend="prism", rng=seed,
                                interpolation=4, potential_sampling_A=0.04, slice_thickness_A=1.0,
                                frozen_phonons=1, thermal_sigma_A=0.08).data
    static = simulate(atoms, MIC, pixel_size=PX, extent=EXTENT, backend="prism", interpolation=4, **opts).data
    out["frozen_phonons"] = {
        "sigma_A": 0.08,
        "ncc_seed1_vs_seed2": ncc(phonon[1], phonon[2]),
        "ncc_seed1_vs_static": ncc(phonon[1], static),
        "ncc_mean_of_2_vs_static": ncc(0.5 * (phonon[1] + phonon[2]), static),
    }
    out["command"] = "python benchmarks/prism_window.py"
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
