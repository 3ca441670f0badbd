"""What the default's pixel-size search costs and gives, through the CLI users run.

The built-in example series (40 frames of 160², 0.3 Å/px, true isomer of every frame) is told a
pixel size ×0.55 … ×1.3 and run through ``clusterspy series --no-report`` (a new process, as a user
runs it); for each, the raw labels right and wrong, how many were found by the pixel-size search
(``pixel_size_factor`` ≠ 1 in ``frames.csv``) and how many of those are wrong, the reasons of the
rest, and the time. The series is repeated ×10 (400 frames) for the time, so that start-up is a
small part of it. ``clusterspy classify`` on one frame at the true pixel size and 15 % too large
gives the time of a single frame with and without the search (a new process each; start-up
included, and printed apart).

Usage::

    python benchmarks/search_cost.py [--out benchmarks/results/search_cost.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "src" / "clusterspy" / "data" / "example_series.npz"
TRUE_PX_A = 0.3
#: Factors on the true pixel size the example is told (×0.85 / ×1.15: the ±15 % the domain promises).
TOLD = (0.55, 0.6, 0.7, 0.85, 1.0, 1.15, 1.3)
REPEAT = 10


def _cli() -> Path:
    return Path(sys.executable).with_name("clusterspy")


def _run(args: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    r = subprocess.run([str(_cli()), *args], capture_output=True, text=True, check=False)
    return time.perf_counter() - t, r


def series_part(tmp: Path, frames: np.ndarray, truth: list[str]) -> dict:
    """``clusterspy series`` on the example told each pixel size of :data:`TOLD`."""
    path = tmp / "example.npy"
    np.save(path, np.concatenate([frames] * REPEAT))
    out: dict[str, dict] = {}
    for s in TOLD:
        px = round(TRUE_PX_A * s, 4)
        dt, r = _run(["series", str(path), "--pixel-size", str(px), "--out", str(tmp / f"s{s}"),
                      "--no-report"])
        if r.returncode != 0:
            out[f"x{s:.2f}"] = {"exit": r.returncode, "stderr": r.stderr.strip()[-300:]}
            continue
        with open(tmp / f"s{s}" / "frames.csv", newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))[: len(truth)]  # one pass of the example: its 40 frames
        lab = [row["label"] for row in rows]
        searched = [row["pixel_size_factor"] not in ("", "1") for row in rows]
        out[f"x{s:.2f}"] = {
            "told_pixel_size_A": px,
            "right": sum(a == t for a, t in zip(lab, truth, strict=True)),
            "wrong": sum(a not in ("unknown", t) for a, t in zip(lab, truth, strict=True)),
            "found_by_search": int(sum(searched)),
            "found_by_search_wrong": sum(f and a != t for f, a, t in zip(searched, lab, truth, strict=True)),
            "reasons": dict(Counter(row["reason"] for row in rows if row["reason"])),
            "series_seconds": round(dt, 2),
            "series_frames": len(truth) * REPEAT,
            "frames_per_s": round(len(truth) * REPEAT / dt, 1),
        }
        print(f"x{s:.2f}", out[f"x{s:.2f}"], flush=True)
    return out


def frame_part(tmp: Path, frames: np.ndarray) -> dict:
    """``clusterspy classify`` of 10 frames (one process) at the true pixel size and 15 % too large."""
    folder = tmp / "frames"
    folder.mkdir()
    for k in range(10):
        np.save(folder / f"f{k:02d}.npy", frames[1 + k])  # frames 1–10: mostly searched at ×1.15
    t0, _ = _run(["--help"])  # start-up alone
    out: dict[str, dict] = {"cli_help_seconds": round(t0, 2)}
    for s in (1.0, 1.15):
        dt, r = _run(["classify", str(folder), "--pixel-size", str(round(TRUE_PX_A * s, 4)),
                      "--format", "csv"])
        rows = list(csv.DictReader(r.stdout.splitlines()))
        out[f"x{s:.2f}"] = {
            "exit": r.returncode, "seconds_10_frames": round(dt, 2),
            "found_by_search": sum(row["pixel_size_factor"] not in ("1.0", "1") for row in rows),
            "labelled": sum(row["label"] != "unknown" for row in rows)}
        print(f"classify x{s:.2f}", out[f"x{s:.2f}"], flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE / "results" / "search_cost.json"))
    a = ap.parse_args(argv)
    with np.load(EXAMPLE) as ex:
        frames = ex["frames"].astype(np.float32)
        truth = [str(t) for t in ex["true_labels"]]
    with tempfile.TemporaryDirectory() as tmp:
        result = {"benchmark": "search_cost", "what": __doc__.splitlines()[0],
                  "command": "python benchmarks/search_cost.py " + " ".join(argv or sys.argv[1:]),
                  "true_pixel_size_A": TRUE_PX_A,
                  "series": series_part(Path(tmp), frames, truth),
                  "classify": frame_part(Path(tmp), frames)}
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    print("wrote", a.out)
    return result


if __name__ == "__main__":
    main()
