"""Recover a known isomer energy landscape from synthetic labels.

1. Equilibrium: ΔE = 0.040 eV (decahedron above fcc), 5 temperatures 20–500 °C, 500 frames per
   temperature, 5 % misclassification → van 't Hoff ΔE within ±0.01 eV? (CI width reported;
   repeated over many seeds for the error distribution and the CI coverage).
2. Kinetics: barrier fcc → dec 0.50 eV (dec → fcc 0.47 eV), prefactor 1e5 /s, frames every 0.05 s,
   ≥ 50 transitions per direction per temperature at 5 temperatures, 5 % misclassification →
   Arrhenius barriers within 10 %?
3. Foster, Ferrando & Palmer (Nat. Commun. 9, 1323, 2018): proportions consistent with
   ΔE = 0.040 eV over 20–500 °C (300 clusters per temperature) → fit returns 0.040 eV inside its CI.

Run: ``.venv/bin/python benchmarks/thermo_recovery.py [--reps-eq 100] [--reps-kin 5]``;
writes ``benchmarks/results/thermo_recovery.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from clusterspy.isomers import CLASSES
from clusterspy.thermo import (
    K_B_EV,
    Landscape,
    frames_for_transitions,
    synthetic_labels,
    thermo_from_table,
)

FOSTER_T = [293.15, 398.15, 523.15, 648.15, 773.15]  # 20, 125, 250, 375, 500 °C
DE = 0.040


def equilibrium(reps: int) -> dict:
    land = Landscape({"decahedral": DE, "fcc": 0.0})
    out: dict = {"truth_delta_E_eV": DE, "temperatures_K": FOSTER_T, "frames_per_T": 500,
                 "misclassification": 0.05, "reps": reps}
    for mode, eps in (("as_labelled", None), ("corrected_eps_0.05", 0.05)):
        err, width, cover, est = [], [], 0, []
        for seed in range(reps):
            tab = synthetic_labels(land, FOSTER_T, 500, misclassification=0.05, rng=seed)
            v = thermo_from_table(tab, reference="fcc", isomers=["decahedral"],
                                  misclassification=eps, n_boot=1000, seed=seed)["van_t_hoff"][0]
            est.append(v["delta_E_eV"])
            err.append(v["delta_E_eV"] - DE)
            width.append(v["ci95_eV"][1] - v["ci95_eV"][0])
            cover += v["ci95_eV"][0] <= DE <= v["ci95_eV"][1]
            if seed == 0:
                out[f"{mode}_seed0"] = {"delta_E_eV": v["delta_E_eV"], "ci95_eV": v["ci95_eV"],
                                        "delta_S_kB": v["delta_S_kB"]}
        e = np.array(err)
        out[mode] = {
            "mean_error_eV": float(e.mean()), "rms_error_eV": float(np.sqrt(np.mean(e**2))),
            "max_abs_error_eV": float(np.abs(e).max()),
            "fraction_within_0.01_eV": float(np.mean(np.abs(e) <= 0.01)),
            "median_ci95_width_eV": float(np.median(width)),
            "ci95_coverage": cover / reps,
        }
    return out


def kinetics(reps: int) -> dict:
    land = Landscape({"decahedral": 0.03, "fcc": 0.0},
                     barriers_eV={("fcc", "decahedral"): 0.50}, prefactor_per_s=1e5)
    inv = np.linspace(1 / 400.0, 1 / 560.0, 5)
    temps = [float(round(1 / x, 1)) for x in inv]
    dt = 0.05
    # frames so that each direction holds ~60 transitions (≥ 50 expected at the slowest T)
    nf = [frames_for_transitions(land, t, dt, 120) for t in temps]
    truth = {("fcc", "decahedral"): 0.50, ("decahedral", "fcc"): 0.47}
    out: dict = {"truth_barriers_eV": {f"{a}->{b}": v for (a, b), v in truth.items()},
                 "prefactor_per_s": 1e5, "temperatures_K": temps, "frame_time_s": dt,
                 "frames_per_T": nf, "misclassification": 0.05, "reps": reps, "runs": []}
    rel = {k: [] for k in truth}
    for seed in range(reps):
        t0 = time.perf_counter()
        tab = synthetic_labels(land, temps, nf, frame_time_s=dt, misclassification=0.05,
                               rng=1000 + seed)
        res = thermo_from_table(tab, reference="fcc", isomers=["decahedral"], n_boot=1000,
                                seed=seed, min_transitions=50)
        true_changes = []
        for t in temps:
            m = tab["temperature_K"] == t
            tl = tab["true_label"][m]
            true_changes.append(int(np.sum(tl[1:] != tl[:-1])))
        run = {"seed": 1000 + seed, "seconds": time.perf_counter() - t0,
               "true_transitions_per_T": true_changes, "fits": {}}
        for a in res["arrhenius"]:
            key = (a["from"], a["to"])
            if key in truth:
                r = (a["barrier_eV"] - truth[key]) / truth[key]
                rel[key].append(r)
                run["fits"][f"{key[0]}->{key[1]}"] = {
                    "barrier_eV": a["barrier_eV"], "ci95_eV": a["ci95_eV"],
                    "relative_error": r, "prefactor_per_s": a["prefactor_per_s"],
                    "expected_transitions_per_T": a["n_transitions"]}
        run["misclassification_estimated"] = [r["misclassification"] for r in res["rates"]
                                              if r["from"] == "fcc"]
        out["runs"].append(run)
        print(f"kinetics seed {seed}: {json.dumps(run['fits'])[:300]}", flush=True)
    out["summary"] = {
        f"{a}->{b}": {"mean_relative_error": float(np.mean(v)),
                      "max_abs_relative_error": float(np.max(np.abs(v))),
                      "fraction_within_10pct": float(np.mean(np.abs(v) <= 0.10))}
        for (a, b), v in rel.items() if v}
    return out


def foster(reps: int) -> dict:
    land = Landscape({"decahedral": DE, "fcc": 0.0})
    n = 300
    rows: dict[str, list] = {"temperature_K": [], "label": []}
    for t in FOSTER_T:
        p = land.proportions(t)[CLASSES.index("decahedral")]
        n_dec = round(n * p)
        rows["temperature_K"] += [t] * n
        rows["label"] += ["decahedral"] * n_dec + ["fcc"] * (n - n_dec)
    v = thermo_from_table({k: np.array(x) for k, x in rows.items()}, reference="fcc",
                          n_boot=2000)["van_t_hoff"][0]
    exact = {"delta_E_eV": v["delta_E_eV"], "ci95_eV": v["ci95_eV"],
             "inside_ci": v["ci95_eV"][0] <= DE <= v["ci95_eV"][1],
             "proportions_dec": [round(n * land.proportions(t)[1]) / n for t in FOSTER_T]}
    cover, est = 0, []
    for seed in range(reps):
        tab = synthetic_labels(land, FOSTER_T, n, rng=5000 + seed)
        w = thermo_from_table(tab, reference="fcc", isomers=["decahedral"], n_boot=1000,
                              seed=seed)["van_t_hoff"][0]
        cover += w["ci95_eV"][0] <= DE <= w["ci95_eV"][1]
        est.append(w["delta_E_eV"])
    return {"clusters_per_T": n, "temperatures_K": FOSTER_T, "truth_delta_E_eV": DE,
            "expected_proportions_fit": exact,
            "random_draws": {"reps": reps, "ci95_coverage": cover / reps,
                             "mean_delta_E_eV": float(np.mean(est)),
                             "sd_delta_E_eV": float(np.std(est))}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps-eq", type=int, default=100)
    ap.add_argument("--reps-kin", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "thermo_recovery.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    result = {"benchmark": "thermo_recovery", "k_B_eV_per_K": K_B_EV,
              "machine": platform.platform(), "python": platform.python_version()}
    result["equilibrium"] = equilibrium(args.reps_eq)
    print(json.dumps(result["equilibrium"], indent=1), flush=True)
    result["foster_check"] = foster(args.reps_eq)
    print(json.dumps(result["foster_check"], indent=1), flush=True)
    result["kinetics"] = kinetics(args.reps_kin)
    print(json.dumps(result["kinetics"]["summary"], indent=1), flush=True)
    result["seconds"] = time.perf_counter() - t0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out} in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
