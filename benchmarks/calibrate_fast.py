"""Fit the fast backend's parameters to PRISM references; write fast_calibration.json.

Run: ``.venv/bin/python benchmarks/calibrate_fast.py [--cached-only]``

Fits, on the even-numbered benchmark cases (the odd ones are held out for
simulation_fidelity.py): the Z exponent, the channelling correction
``g(m) = (1 + b (m-1))^a``, the column radius and an extra blur by maximising the mean NCC
against PRISM
(Nelder–Mead from a fixed start, deterministic); then the scale ``c`` [Å²] by least squares of
the image intensities. The result ships as src/clusterspy/simulation/fast_calibration.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from clusterspy.simulation import FastCalibration, FastSimulator, build_scene, ncc
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

OUT = Path(__file__).resolve().parents[1] / "src" / "clusterspy" / "simulation" / "fast_calibration.json"
NAMES = ("z_exponent", "channelling_a", "channelling_b", "channelling_c", "column_radius_A", "extra_blur_A")
START = FastCalibration(
    z_exponent=1.7, channelling_a=0.0, channelling_b=1.0, channelling_c=0.0, column_radius_A=0.6,
    extra_blur_A=0.0,
)
BOUNDS = {
    "z_exponent": (1.2, 2.2),
    "channelling_a": (-1.0, 0.5),
    "channelling_b": (0.05, 5.0),
    "channelling_c": (0.0, 0.3),
    "column_radius_A": (0.1, 1.2),
    "extra_blur_A": (0.0, 1.0),
}


def load(cached_only: bool) -> list[tuple[str, object, object, float, np.ndarray]]:
    """(name, field, scene, extent, PRISM image) of every case with a reference."""
    out = []
    for case in all_cases():
        atoms, support = build(case)
        extent = extent_of(atoms)
        if cached_only and not reference_path(case).exists():
            continue
        ref, _ = prism_reference(case)
        field, scene = build_scene(atoms, PIXEL_SIZE_A, extent, support)
        out.append((case.name, field, scene, extent, ref))
    return out


def render(cal: FastCalibration, field, scene) -> np.ndarray:
    return FastSimulator(MICROSCOPE, PIXEL_SIZE_A, field.shape, cal).render([scene])[0]


def clamp(cal: FastCalibration) -> FastCalibration:
    return replace(cal, **{k: float(np.clip(getattr(cal, k), *BOUNDS[k])) for k in NAMES})


def mean_ncc(cal: FastCalibration, data) -> float:
    return float(np.mean([ncc(render(cal, f, s), ref) for _, f, s, _, ref in data]))


def fit(train) -> FastCalibration:
    from scipy.optimize import minimize

    x0 = np.array([getattr(START, k) for k in NAMES])

    def loss(x: np.ndarray) -> float:
        cal = clamp(replace(START, **dict(zip(NAMES, map(float, x), strict=True))))
        return 1.0 - mean_ncc(cal, train)

    res = minimize(
        loss,
        x0,
        method="Nelder-Mead",
        options={
            "maxfev": 300,
            "xatol": 1e-3,
            "fatol": 1e-5,
            "initial_simplex": x0 + np.vstack([np.zeros(6), np.diag([0.2, 0.3, 0.5, 0.05, -0.3, 0.2])]),
        },
    )
    cal = clamp(replace(START, **dict(zip(NAMES, map(float, res.x), strict=True))))
    # scale [Å²]: least squares of intensities with the fitted shape
    num = den = 0.0
    for _, f, s, _, ref in train:
        img = render(replace(cal, scale=1.0), f, s).astype(float)
        num += float((img * ref).sum())
        den += float((img * img).sum())
    return replace(cal, scale=num / den)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--cached-only", action="store_true", help="use only PRISM references already in benchmarks/cache"
    )
    args = parser.parse_args()
    t0 = time.perf_counter()
    data = load(args.cached_only)
    train = data[0::2]
    held = data[1::2]
    before = {n: ncc(render(START, f, s), r) for n, f, s, _, r in data}
    cal = fit(train)
    after = {n: ncc(render(cal, f, s), r) for n, f, s, _, r in data}
    report = {
        "parameters": cal.to_dict(),
        "fitted_on": [d[0] for d in train],
        "held_out": [d[0] for d in held],
        "ncc_before": before,
        "ncc_after": after,
        "reference": {
            "backend": "prism (abTEM 1.0.11)",
            "microscope": MICROSCOPE.to_dict(),
            "pixel_size_A": PIXEL_SIZE_A,
            **PRISM_OPTIONS,
        },
        "command": "python benchmarks/calibrate_fast.py" + (" --cached-only" * args.cached_only),
    }
    OUT.write_text(json.dumps(report, indent=1) + "\n")
    for n in before:
        print(f"{n:40s} {before[n]:.4f} -> {after[n]:.4f}")
    print("parameters:", json.dumps(cal.to_dict()))
    print(
        f"train median NCC {np.median([after[d[0]] for d in train]):.4f}, held-out median "
        f"{np.median([after[d[0]] for d in held]) if held else float('nan'):.4f}; "
        f"{time.perf_counter() - t0:.0f} s"
    )


if __name__ == "__main__":
    main()
