"""Fit the fast backend's parameters to PRISM references; write fast_parameters.json.

Run: ``.venv/bin/python benchmarks/fit_fast_parameters.py [--cached-only]``

Fits, on the even-numbered benchmark cases (their index in ``simulation_cases.all_cases()``;
the odd ones are held out for simulation_fidelity.py, also with ``--cached-only``): the Z
exponent, the channelling correction ``g(m) = (1 + b (m-1))^a exp(-c (m-1))``, the column
radius, the extra blur and the spread of the probe along columns (``spread_atoms``,
``spread_blur_A``; see the docstring of clusterspy.simulation.fast) by maximising the mean NCC
against PRISM: bounded Powell from a fixed start, then once more from its result (fresh search
directions), deterministic; then the scale ``c`` [Å²] by least squares of the image
intensities. The result ships as src/clusterspy/simulation/fast_parameters.json.
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

from clusterspy.simulation import FastParameters, FastSimulator, build_scene, ncc
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

OUT = Path(__file__).resolve().parents[1] / "src" / "clusterspy" / "simulation" / "fast_parameters.json"
NAMES = (
    "z_exponent", "channelling_a", "channelling_b", "channelling_c", "column_radius_A", "extra_blur_A",
    "spread_atoms", "spread_blur_A",
)
#: Start of the fit: the unfitted model (FastParameters()) for ``ncc_before``; the search
#: starts from FIT_START (Rutherford-like Z exponent, columns of atoms within ~2 σ of the thermal
#: spread, a mild channelling brightening and spread).
START = FastParameters()
FIT_START = FastParameters(
    z_exponent=1.8, channelling_a=0.25, channelling_b=1.0, channelling_c=0.0, column_radius_A=0.2,
    extra_blur_A=0.2, spread_atoms=3.0, spread_blur_A=0.5,
)
#: Physically sensible ranges: Z exponent of a 70–200 mrad detector; column radius from ~1 σ of
#: the thermal spread of a column in projection (0.11 Å) to under half the closest column spacing
#: of Au zone axes (1.44 Å); the extra blur below the probe's FWHM (~0.5 Å at 200 keV, 25 mrad),
#: the spread probe's broadening up to a few probe widths.
BOUNDS = {
    "z_exponent": (1.4, 2.2),
    "channelling_a": (-0.5, 1.0),
    "channelling_b": (0.05, 5.0),
    "channelling_c": (0.0, 0.3),
    "column_radius_A": (0.12, 0.6),
    "extra_blur_A": (0.0, 0.8),
    "spread_atoms": (0.2, 50.0),
    "spread_blur_A": (0.0, 2.0),
}


def load(cached_only: bool) -> list[tuple[int, str, object, object, float, np.ndarray]]:
    """(index, name, field, scene, extent, PRISM image) of every case with a reference."""
    out = []
    for i, case in enumerate(all_cases()):
        atoms, support = build(case)
        extent = extent_of(atoms)
        if cached_only and not reference_path(case).exists():
            continue
        ref, _ = prism_reference(case)
        field, scene = build_scene(atoms, PIXEL_SIZE_A, extent, support)
        out.append((i, case.name, field, scene, extent, ref))
    return out


def render(params: FastParameters, field, scene) -> np.ndarray:
    return FastSimulator(MICROSCOPE, PIXEL_SIZE_A, field.shape, params).render([scene])[0]


def clamp(params: FastParameters) -> FastParameters:
    return replace(params, **{k: float(np.clip(getattr(params, k), *BOUNDS[k])) for k in NAMES})


def mean_ncc(params: FastParameters, data) -> float:
    return float(np.mean([ncc(render(params, f, s), ref) for _, _, f, s, _, ref in data]))


def fit(train) -> FastParameters:
    from scipy.optimize import minimize

    x = np.array([getattr(FIT_START, k) for k in NAMES])

    def loss(x: np.ndarray) -> float:
        params = clamp(replace(FIT_START, **dict(zip(NAMES, map(float, x), strict=True))))
        return 1.0 - mean_ncc(params, train)

    for _ in range(2):  # Powell, then a restart from its result with fresh directions
        res = minimize(
            loss, x, method="Powell", bounds=[BOUNDS[k] for k in NAMES],
            options={"maxfev": 600, "xtol": 1e-3, "ftol": 1e-6},
        )
        x = res.x
        print(f"Powell: mean train NCC {1.0 - res.fun:.5f} after {res.nfev} evaluations", flush=True)
    params = clamp(replace(FIT_START, **dict(zip(NAMES, map(float, x), strict=True))))
    # scale [Å²]: least squares of intensities with the fitted shape
    num = den = 0.0
    for _, _, f, s, _, ref in train:
        img = render(replace(params, scale=1.0), f, s).astype(float)
        num += float((img * ref).sum())
        den += float((img * img).sum())
    return replace(params, scale=num / den)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--cached-only", action="store_true", help="use only PRISM references already in benchmarks/cache"
    )
    args = parser.parse_args()
    t0 = time.perf_counter()
    data = load(args.cached_only)
    train = [d for d in data if d[0] % 2 == 0]
    held = [d for d in data if d[0] % 2 == 1]
    before = {n: ncc(render(START, f, s), r) for _, n, f, s, _, r in data}
    params = fit(train)
    after = {n: ncc(render(params, f, s), r) for _, n, f, s, _, r in data}
    report = {
        "parameters": params.to_dict(),
        "fitted_on": [d[1] for d in train],
        "held_out": [d[1] for d in held],
        "ncc_before": before,
        "ncc_after": after,
        "reference": {
            "backend": "prism (abTEM 1.0.11)",
            "microscope": MICROSCOPE.to_dict(),
            "pixel_size_A": PIXEL_SIZE_A,
            **PRISM_OPTIONS,
        },
        "command": "python benchmarks/fit_fast_parameters.py" + (" --cached-only" * args.cached_only),
    }
    OUT.write_text(json.dumps(report, indent=1) + "\n")
    for n in before:
        print(f"{n:40s} {before[n]:.4f} -> {after[n]:.4f}")
    print("parameters:", json.dumps(params.to_dict()))
    print(
        f"train median NCC {np.median([after[d[1]] for d in train]):.4f}, held-out median "
        f"{np.median([after[d[1]] for d in held]) if held else float('nan'):.4f}, min "
        f"{min([after[d[1]] for d in held], default=float('nan')):.4f}; "
        f"{time.perf_counter() - t0:.0f} s"
    )


if __name__ == "__main__":
    main()
