"""Coverage of the series proportions' 95 % intervals on label series with known truth.

Synthetic label series from a sticky Markov chain ``P = s I + (1 − s) 1 πᵀ`` (stay probability
``s``, otherwise a jump to a state drawn from ``π``; its stationary distribution is ``π``), started
at equilibrium, for lengths 5, 20, 100, 1000 frames and stay probabilities 0.5–0.99. For every
cell: the fraction of 95 % intervals (all four isomers of every replicate) that contain the true
proportion ``π``, for the default method (``jeffreys_neff``) and the block bootstrap it replaced.
Goal: 90–98 % in every cell. Further tables repeat the default method with 15 % of the frames
unknown (missing at random) and with two other truths (uniform; one dominant isomer) — the
method's one tuned constant, the weight of the prior on the label-change probability, was chosen
on the first table, so these check that it was not fitted to one ``π``. Also prints the interval of
a 5-frame constant series.

Run: ``.venv/bin/python benchmarks/series_intervals.py [--reps 400] [--boot-reps 150]``;
writes ``benchmarks/results/series_intervals.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from clusterspy.isomers import CLASSES
from clusterspy.series.stats import INTERVAL_METHODS, proportions_ci

PI = np.array([0.45, 0.30, 0.17, 0.08])  # true equilibrium proportions of the four isomers
LENGTHS = (5, 20, 100, 1000)
STAYS = (0.5, 0.8, 0.95, 0.99)
GOAL = (0.90, 0.98)


def sticky_chains(rng: np.random.Generator, stay: float, n: int, reps: int,
                  pi: np.ndarray = PI) -> np.ndarray:
    """``(reps, n)`` label series of the chain ``s I + (1 − s) 1 πᵀ``, started from ``π``."""
    k = len(pi)
    new = rng.choice(k, size=(reps, n), p=pi)
    jump = rng.random((reps, n)) > stay
    jump[:, 0] = True
    out = np.empty((reps, n), int)
    out[:, 0] = new[:, 0]
    for t in range(1, n):
        out[:, t] = np.where(jump[:, t], new[:, t], out[:, t - 1])
    return out


def coverage(method: str, reps: int, *, unknown: float = 0.0, seed: int = 0,
             n_boot: int = 500, pi: np.ndarray = PI) -> dict:
    """Coverage and mean width of ``method``'s 95 % intervals per (length, stay) cell."""
    cells = {}
    for n in LENGTHS:
        for stay in STAYS:
            rng = np.random.default_rng([seed, n, int(stay * 100)])
            chains = sticky_chains(rng, stay, n, reps, pi)
            if unknown:
                chains[rng.random(chains.shape) < unknown] = -1
            hit, width, used = 0, 0.0, 0
            for lab in chains:
                if not np.any(lab >= 0):
                    continue
                r = proportions_ci(lab, len(pi), method=method, n_boot=n_boot, rng=rng)
                ci = r["ci"]
                hit += int(np.sum((ci[:, 0] <= pi) & (pi <= ci[:, 1])))
                width += float(np.sum(ci[:, 1] - ci[:, 0]))
                used += 1
            cells[f"{n}|{stay}"] = {
                "length_frames": n, "stay": stay, "series": used,
                "coverage": hit / (len(pi) * used),
                "mean_width": width / (len(pi) * used),
            }
    return cells


def table(cells: dict, title: str) -> str:
    """The cells as a text table (rows: length, columns: stay probability)."""
    lines = [title, "frames  " + "".join(f"stay {s:<6}" for s in STAYS)]
    for n in LENGTHS:
        row = []
        for s in STAYS:
            c = cells[f"{n}|{s}"]["coverage"]
            flag = " " if GOAL[0] <= c <= GOAL[1] else ("+" if c > GOAL[1] else "-")
            row.append(f"{c:.3f}{flag}     ")
        lines.append(f"{n:<8}" + "".join(row))
    lines.append("(+ above, - below the 90–98 % goal)")
    return "\n".join(lines)


def outside(cells: dict) -> list[str]:
    """Cells whose coverage is outside the goal, as ``length×stay: coverage``."""
    return [f"{c['length_frames']} frames × stay {c['stay']}: {c['coverage']:.3f}"
            for c in cells.values() if not GOAL[0] <= c["coverage"] <= GOAL[1]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=400, help="series per cell")
    ap.add_argument("--boot-reps", type=int, default=150, help="series per cell, block bootstrap")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                         "series_intervals.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    const = proportions_ci(np.zeros(5, int), len(CLASSES))
    const_line = ", ".join(f"{c} {p:.2f} [{lo:.3f}, {hi:.3f}]" for c, p, (lo, hi) in
                           zip(CLASSES, const["proportion"], const["ci"], strict=True))
    print(f"5-frame constant series (all {CLASSES[0]}): n_eff = {const['n_eff']:.2f}; "
          f"{const_line}")
    old = proportions_ci(np.zeros(5, int), len(CLASSES), method="block_bootstrap", rng=0)
    print(f"  block bootstrap on the same series: {CLASSES[0]} "
          f"[{old['ci'][0, 0]:.3f}, {old['ci'][0, 1]:.3f}]")
    result: dict = {
        "benchmark": "series_intervals", "truth_proportions": dict(zip(CLASSES, PI.tolist(),
                                                                       strict=True)),
        "chain": "P = s I + (1 - s) 1 pi^T, started at equilibrium", "goal": list(GOAL),
        "level": 0.95, "reps": args.reps, "boot_reps": args.boot_reps,
        "interval_method": INTERVAL_METHODS["jeffreys_neff"],
        "constant_5_frames": {"n_eff": const["n_eff"], "proportion": const["proportion"].tolist(),
                              "ci95": const["ci"].tolist(),
                              "block_bootstrap_ci95": old["ci"].tolist()},
        "machine": platform.platform(), "python": platform.python_version(),
    }
    uniform, dominant = np.full(4, 0.25), np.array([0.70, 0.20, 0.07, 0.03])
    runs = {
        "jeffreys_neff": ("jeffreys_neff", args.reps, 0.0, PI),
        "jeffreys_neff_15pct_unknown": ("jeffreys_neff", args.reps, 0.15, PI),
        "jeffreys_neff_uniform_truth": ("jeffreys_neff", args.reps, 0.0, uniform),
        "jeffreys_neff_dominant_truth": ("jeffreys_neff", args.reps, 0.0, dominant),
        "block_bootstrap": ("block_bootstrap", args.boot_reps, 0.0, PI),
    }
    for name, (method, reps, unknown, pi) in runs.items():
        cells = coverage(method, reps, unknown=unknown, pi=pi)
        print(table(cells, f"\n{name} (truth {np.round(pi, 3).tolist()}): coverage of 95 % "
                           f"intervals ({reps} series per cell)"), flush=True)
        result[name] = {"truth_proportions": pi.tolist(), "unknown_fraction": unknown,
                        "cells": list(cells.values()), "outside_goal": outside(cells)}
    result["seconds"] = time.perf_counter() - t0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out} in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
