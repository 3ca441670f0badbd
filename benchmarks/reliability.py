"""Reliability of the pipelines through the CLI: kills, concurrent runs, long inputs.

Parts (``--parts``, comma-separated; each is a function ``<part>(args) -> dict``):

- ``series_kill``: ``clusterspy series --no-report`` on the example series made 8× longer
  (320 frames, 160² px) killed with SIGKILL at ``--kills`` random moments (uniform over the
  length of an uninterrupted run), started again after each kill, then run to the end;
  ``frames.csv``, ``summary.json`` and ``run.json`` compared byte for byte with an
  uninterrupted run (no wall-clock field in them).
- ``series_lock``: two ``clusterspy series`` started together on one ``--out``: one must be
  refused (exit 2, one line), the other's outputs identical to a run alone.
- ``series_memory``: peak RSS (``/usr/bin/time -v``, maximum resident set size of the CLI
  process) of ``clusterspy series --no-report`` on 1024² uint16 series of 200 and 2,000 frames,
  as ``.npy`` (memory-mapped) and as a multi-page TIFF (page by page), written to ``--tmp``.
- ``classify_kill``, ``classify_lock``, ``classify_memory``, ``classify_speed``: the same for
  ``clusterspy classify`` batches and big frames (defined and described in ``benchmarks/batch.py``,
  which also runs them alone and writes ``benchmarks/results/batch.json``).

Results are printed and merged into ``benchmarks/results/reliability.json`` (one key per part,
with the command that made it).

Run: ``python benchmarks/reliability.py --parts series_kill,series_lock,series_memory``
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from batch import (
    _peak_rss,
    _run,
    classify_kill,
    classify_lock,
    classify_memory,
    classify_speed,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "reliability.json"
EXAMPLE = ROOT / "src" / "clusterspy" / "data" / "example_series.npz"
COMPARED = ("frames.csv", "summary.json", "run.json")


def _example() -> tuple[np.ndarray, float, float]:
    with np.load(EXAMPLE) as ex:
        return ex["frames"], float(ex["pixel_size_A"]), float(ex["frame_time_s"])


def _series_cmd(path: Path, out: Path, px: float, dt: float, *extra: str) -> list[str]:
    return [sys.executable, "-m", "clusterspy", "series", str(path), "--pixel-size", repr(px),
            "--frame-time", repr(dt), "--out", str(out), "--no-report", *extra]


def _identical(a: Path, b: Path) -> dict[str, bool]:
    return {name: (a / name).read_bytes() == (b / name).read_bytes() for name in COMPARED}


# ------------------------------------------------------------------------------------ series_kill
def series_kill(args: argparse.Namespace) -> dict:
    """SIGKILL ``clusterspy series`` ``args.kills`` times at random moments; compare with a clean run."""
    work = Path(args.tmp) / "series_kill"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    frames, px, dt = _example()
    npy = work / "long.npy"
    np.save(npy, np.concatenate([frames] * 8))
    rc, err, ref_s = _run(_series_cmd(npy, work / "ref", px, dt))
    if rc != 0:
        raise SystemExit(f"uninterrupted run failed: {err}")
    rng = np.random.default_rng(args.seed)
    out = work / "killed"
    kills, killed_at, starts = 0, [], 0
    while kills < args.kills:
        delay = float(rng.uniform(0.3, ref_s))
        proc = subprocess.Popen(_series_cmd(npy, out, px, dt), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        starts += 1
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            ckpt = out / ".series_checkpoint.json"
            nxt = json.loads(ckpt.read_text())["next_frame"] if ckpt.exists() else 0
            killed_at.append({"after_s": round(delay, 2), "checkpoint_next_frame": nxt})
        else:  # it finished before the kill: start afresh so that every kill interrupts a run
            shutil.rmtree(out)
    rc, err, _ = _run(_series_cmd(npy, out, px, dt))
    same = _identical(work / "ref", out)
    tmp_left = sorted(p.name for p in out.glob(".*.tmp"))
    result = {
        "what": "clusterspy series --no-report on the example series ×8 (320 frames of 160² px, "
                "shipped model), SIGKILLed at random moments uniform in [0.3 s, one uninterrupted "
                "run], restarted after each kill, then run to the end",
        "frames": int(len(frames) * 8), "kills": kills, "starts": starts,
        "uninterrupted_s": round(ref_s, 1), "kills_detail": killed_at,
        "final_exit": rc, "identical": same, "all_identical": all(same.values()),
        "tmp_files_left": tmp_left, "seed": args.seed,
    }
    print(f"series_kill: {kills} SIGKILLs, final exit {rc}; outputs "
          f"{'IDENTICAL' if result['all_identical'] else 'DIFFERENT'} to an uninterrupted run "
          f"({same}); .tmp left: {tmp_left or 'none'}")
    return result


# ------------------------------------------------------------------------------------ series_lock
def series_lock(args: argparse.Namespace) -> dict:
    """Two ``clusterspy series`` on one ``--out`` at once: one refused, the other correct."""
    work = Path(args.tmp) / "series_lock"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    _, px, dt = _example()
    rc, err, _ = _run(_series_cmd(EXAMPLE, work / "alone", px, dt))
    if rc != 0:
        raise SystemExit(f"run alone failed: {err}")
    cmd = _series_cmd(EXAMPLE, work / "shared", px, dt)
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    ends = [(p.wait(), p.stderr.read().strip()) for p in procs]
    for p in procs:
        p.stderr.close()
    codes = sorted(c for c, _ in ends)
    refused = [e for c, e in ends if c == 2]
    same = _identical(work / "alone", work / "shared")
    result = {
        "what": "two clusterspy series --no-report started together on one --out (example series)",
        "exit_codes": codes, "refusal": refused[0] if refused else None,
        "refusal_lines": len(refused[0].splitlines()) if refused else None,
        "identical_to_a_run_alone": same, "lock_left": (work / "shared" / ".clusterspy.lock").exists(),
        "ok": codes == [0, 2] and all(same.values()),
    }
    print(f"series_lock: exit codes {codes}; refusal: {result['refusal']!r}; outputs of the run "
          f"that went on {'IDENTICAL' if all(same.values()) else 'DIFFERENT'} to a run alone")
    return result


# ---------------------------------------------------------------------------------- series_memory
def _frames_1024(k: int, base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 1024² uint16 frame: an example frame (160² px) at the centre of a background with the
    mean and standard deviation of the example frame's 10-px border."""
    edge = np.concatenate([base[0][:10].ravel(), base[0][-10:].ravel(),
                           base[0][:, :10].ravel(), base[0][:, -10:].ravel()]).astype(float)
    f = rng.normal(edge.mean(), edge.std(), (1024, 1024)).clip(0, 65535).astype(np.uint16)
    f[432:592, 432:592] = base[k % len(base)]
    return f


def _write_series(work: Path, n: int) -> tuple[Path, Path]:
    import tifffile

    base, _, _ = _example()
    rng = np.random.default_rng(0)
    pool = [_frames_1024(k, base, rng) for k in range(len(base))]
    npy = work / f"series_{n}.npy"
    mm = np.lib.format.open_memmap(npy, mode="w+", dtype=np.uint16, shape=(n, 1024, 1024))
    for k in range(n):
        mm[k] = pool[k % len(pool)]
    mm.flush()
    del mm
    tif = work / f"series_{n}.tif"
    tifffile.imwrite(tif, (pool[k % len(pool)] for k in range(n)), shape=(n, 1024, 1024),
                     dtype=np.uint16, bigtiff=True)
    return npy, tif


def series_memory(args: argparse.Namespace) -> dict:
    """Peak RSS of ``clusterspy series`` on 1024² uint16 series of several lengths, .npy and TIFF."""
    work = Path(args.tmp) / "series_memory"
    work.mkdir(parents=True, exist_ok=True)
    _, px, dt = _example()
    rows = []
    for n in args.memory_frames:
        npy, tif = _write_series(work, n)
        for path in (npy, tif):
            out = work / f"out_{path.suffix[1:]}_{n}"
            shutil.rmtree(out, ignore_errors=True)
            rc, rss, wall, err = _peak_rss(_series_cmd(path, out, px, dt))
            rows_written = sum(1 for _ in open(out / "frames.csv")) - 1 if rc == 0 else None
            rows.append({"format": path.suffix[1:], "frames": n, "exit": rc,
                         "peak_rss_GB": round(rss / 1e9, 3), "wall_s": round(wall, 1),
                         "frames_csv_rows": rows_written, "file_GB": round(path.stat().st_size / 1e9, 2)})
            print(f"series_memory: {path.suffix[1:]:>4} {n:5d} frames 1024² uint16 "
                  f"({rows[-1]['file_GB']} GB): exit {rc}, peak RSS {rss / 1e9:.3f} GB, {wall:.0f} s, "
                  f"{rows_written} rows" + ("" if rc == 0 else f"\n{err[-2000:]}"))
        if not args.keep:
            npy.unlink()
            tif.unlink()
    peak = max(r["peak_rss_GB"] for r in rows)
    return {"what": "peak RSS (/usr/bin/time -v) of clusterspy series --no-report on 1024² uint16 "
                    "series (an example frame at the centre of a noisy field), .npy and multi-page "
                    "BigTIFF", "runs": rows, "max_peak_rss_GB": peak, "under_1GB": peak < 1.0}


PARTS: dict[str, Callable[[argparse.Namespace], dict]] = {
    "series_kill": series_kill,
    "series_lock": series_lock,
    "series_memory": series_memory,
}
PARTS.update(classify_kill=classify_kill, classify_lock=classify_lock, classify_memory=classify_memory,
             classify_speed=classify_speed)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated: {', '.join(PARTS)}")
    ap.add_argument("--kills", type=int, default=20, help="SIGKILLs of series_kill")
    ap.add_argument("--memory-frames", type=int, nargs="+", default=[200, 2000],
                    help="series lengths of series_memory")
    ap.add_argument("--tmp", default="/tmp/clusterspy_reliability", help="scratch folder (not the repo)")
    ap.add_argument("--keep", action="store_true", help="keep the series_memory input files")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    parts = [p.strip() for p in a.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        ap.error(f"unknown part(s) {unknown}; choose from {list(PARTS)}")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    command = "python benchmarks/reliability.py " + " ".join(argv if argv is not None else sys.argv[1:])
    for part in parts:
        results[part] = {"command": command.strip(), **PARTS[part](a)}
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
