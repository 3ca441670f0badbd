"""Fidelity of the fast backend: NCC against PRISM over the benchmark cases.

Run: ``.venv/bin/python benchmarks/simulation_fidelity.py [--cached-only]``
(PRISM references come from benchmarks/cache, computed if missing — see
simulation_references.py). Prints one line per case and the median / minimum NCC, overall and
on the cases held out of the parameter fit (fit_fast_parameters.py), and of the unfitted model
(``FastParameters()``); writes benchmarks/results/simulation_fidelity.json.
Targets: median >= 0.99, minimum >= 0.975 over >= 30 cases.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from clusterspy.simulation import FastParameters, default_parameters, ncc, simulate
from simulation_cases import (
    MICROSCOPE,
    PIXEL_SIZE_A,
    PRISM_OPTIONS,
    all_cases,
    build,
    extent_of,
    prism_reference,
    reference_path,
)

RESULTS = Path(__file__).resolve().parent / "results" / "simulation_fidelity.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cached-only", action="store_true")
    args = parser.parse_args()
    params = default_parameters()
    params_path = Path(__file__).resolve().parents[1] / "src/clusterspy/simulation/fast_parameters.json"
    shipped = json.loads(params_path.read_text()) if params_path.exists() else {}
    held_out = set(shipped.get("held_out", []))
    rows = []
    for case in all_cases():
        if args.cached_only and not reference_path(case).exists():
            continue
        atoms, support = build(case)
        extent = extent_of(atoms)
        ref, _ = prism_reference(case)
        fast = simulate(atoms, MICROSCOPE, pixel_size=PIXEL_SIZE_A, extent=extent, support=support).data
        plain = simulate(
            atoms,
            MICROSCOPE,
            pixel_size=PIXEL_SIZE_A,
            extent=extent,
            support=support,
            parameters=FastParameters(),
        ).data
        row = {
            "case": case.name,
            "atoms": len(atoms),
            "support_A": case.support_A,
            "ncc": ncc(fast, ref),
            "ncc_unfitted": ncc(plain, ref),
            "held_out": case.name in held_out,
        }
        rows.append(row)
        print(
            f"{case.name:40s} {len(atoms):4d} atoms  NCC {row['ncc']:.4f} "
            f"(unfitted {row['ncc_unfitted']:.4f})",
            flush=True,
        )
    v = np.array([r["ncc"] for r in rows])
    h = np.array([r["ncc"] for r in rows if r["held_out"]])
    u = np.array([r["ncc_unfitted"] for r in rows])
    summary = {
        "n_cases": len(rows),
        "median_ncc": float(np.median(v)),
        "min_ncc": float(v.min()),
        "held_out_n": len(h),
        "held_out_median_ncc": float(np.median(h)) if len(h) else None,
        "held_out_min_ncc": float(h.min()) if len(h) else None,
        "unfitted_median_ncc": float(np.median(u)),
        "unfitted_min_ncc": float(u.min()),
        "targets": {"median": 0.99, "min": 0.975, "n_cases": 30},
        "parameters": params.to_dict(),
        "reference": {"microscope": MICROSCOPE.to_dict(), "pixel_size_A": PIXEL_SIZE_A, **PRISM_OPTIONS},
        "command": "python benchmarks/simulation_fidelity.py" + " --cached-only" * args.cached_only,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"summary": summary, "cases": rows}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
