"""Compute (and cache) the PRISM references of every benchmark case.

Run: ``.venv/bin/python benchmarks/simulation_references.py`` (CPU heavy; results cached under
benchmarks/cache/, reused by fit_fast_parameters.py and simulation_fidelity.py).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from simulation_cases import all_cases, prism_reference

if __name__ == "__main__":
    t0 = time.perf_counter()
    for i, case in enumerate(all_cases()):
        _, dt = prism_reference(case)
        print(f"{i:2d} {case.name:40s} {dt:7.1f} s  (total {time.perf_counter() - t0:.0f} s)", flush=True)
