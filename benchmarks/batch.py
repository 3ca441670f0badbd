"""``clusterspy classify`` batches: files/s per engine, peak RSS of big frames, SIGKILLs, the lock.

Parts (``--parts``, comma-separated; each is a function ``<part>(args) -> dict``, the same
signature as ``benchmarks/reliability.py``'s parts):

- ``classify_speed``: files/s of ``clusterspy classify FOLDER --out OUT`` (results and one overlay
  PNG per file) on ``--files`` frames of the shipped example series (160² px, 0.3 Å/px, each its
  own .npz), wall time of the CLI process (start-up included), with ``--workers 1`` (this
  process), ``--workers N`` (local processes, N = cores) and ``--scheduler tcp://…`` (a Dask
  ``LocalCluster`` of 2 worker processes over TCP, started beforehand, not timed). The three
  outputs (tables and PNGs) are compared byte for byte.
- ``classify_memory``: peak RSS (``/usr/bin/time -v``) of ``clusterspy classify --out`` and
  without ``--out`` on float32 .npy frames of 8192² and 16384² px (memory-mapped; noise at the
  example's background level with 16 example clusters pasted in), written to ``--tmp``.
- ``classify_kill``: ``clusterspy classify FOLDER --out OUT --workers 1`` on 20 good files and
  3 failing ones, killed with SIGKILL ``--kills`` times at random moments (uniform over the
  length of an uninterrupted run), started again after each kill, then run to the end; tables
  and PNGs compared byte for byte with an uninterrupted run.
- ``classify_lock``: two ``clusterspy classify`` started together on one ``--out``: one must be
  refused (exit 2, one line), the other's outputs identical to a run alone.

Results are printed and merged into ``benchmarks/results/batch.json`` (one key per part, with
the command that made it and the machine's 1-minute load average before and after: the machine
is shared, and a load above its core count slows every figure here).

Run: ``python benchmarks/batch.py --parts classify_speed,classify_memory,classify_kill,classify_lock``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "batch.json"
EXAMPLE = ROOT / "src" / "clusterspy" / "data" / "example_series.npz"
COMPARED = ("results.csv", "results.json", "files.csv")


def make_batch(folder: Path, n_good: int, bad: bool = True) -> Path:
    """``n_good`` example frames as calibrated .npz files, and (``bad``) 3 files that fail."""
    folder.mkdir(parents=True, exist_ok=True)
    with np.load(EXAMPLE) as ex:
        frames, px = ex["frames"], float(ex["pixel_size_A"])
    for i in range(n_good):
        np.savez(folder / f"img{i:03d}.npz", image=frames[i % len(frames)].astype(np.float32),
                 pixel_size_A=px)
    if bad:
        rng = np.random.default_rng(1)
        np.savez(folder / "zz_noise.npz", image=rng.poisson(20.0, (256, 256)).astype(np.float32),
                 pixel_size_A=px)
        (folder / "zz_corrupt.tif").write_bytes(b"II*\x00garbage")
        np.savez(folder / "zz_coarse.npz", image=rng.random((512, 512)).astype(np.float32), pixel_size_A=2.0)
    return folder


def make_big_frame(path: Path, n: int, seed: int = 0) -> int:
    """A float32 (n, n) .npy: Poisson noise at the example's background with example clusters pasted."""
    with np.load(EXAMPLE) as ex:
        frames = ex["frames"].astype(np.float32)
    bg = float(np.median(frames[0][:20, :20]))
    rng = np.random.default_rng(seed)
    img = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, n))
    for i in range(0, n, 1024):
        img[i:i + 1024] = rng.poisson(bg, (min(1024, n - i), n)).astype(np.float32)
    k = 0
    for y in range(400, n - 400, n // 4):
        for x in range(400, n - 400, n // 4):
            img[y:y + 160, x:x + 160] = frames[(5 * k) % len(frames)]
            k += 1
    img.flush()
    del img
    return k


def _classify_cmd(inputs: Path, out: Path | None, *extra: str) -> list[str]:
    return [sys.executable, "-m", "clusterspy", "classify", str(inputs),
            *(["--out", str(out)] if out is not None else []), *extra]


def _outputs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())
            if p.is_file() and (p.name in COMPARED or p.suffix == ".png")}


def _run(cmd: list[str]) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return proc.returncode, proc.stderr, time.perf_counter() - t0


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def classify_speed(args: argparse.Namespace) -> dict:
    """Files/s in this process, on local processes and on a 2-worker Dask cluster over TCP."""
    from distributed import LocalCluster

    work = Path(args.tmp) / "classify_speed"
    shutil.rmtree(work, ignore_errors=True)
    n_files = getattr(args, "files", 40)  # reliability.py has no --files
    inputs = make_batch(work / "in", n_files, bad=False)
    rows, outs = [], {}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, protocol="tcp",
                      dashboard_address=None) as cluster:
        engines = {"in-process (--workers 1)": ("--workers", "1"),
                   f"local processes (--workers {_cores()})": ("--workers", str(_cores())),
                   "Dask LocalCluster 2 workers, tcp://": ("--scheduler", cluster.scheduler_address)}
        for name, extra in engines.items():
            out = work / f"out{len(outs)}"
            rc, err, wall = _run(_classify_cmd(inputs, out, *extra))
            outs[name] = _outputs(out) if rc == 0 else {}
            rows.append({"engine": name, "exit": rc, "files": n_files, "wall_s": round(wall, 2),
                         "files_per_s": round(n_files / wall, 2)})
            print(f"classify_speed: {name:<40} {n_files} files in {wall:6.1f} s = "
                  f"{n_files / wall:5.2f} files/s (exit {rc})" + ("" if rc == 0 else f"\n{err[-1500:]}"))
    first = next(iter(outs.values()))
    identical = all(o == first and o for o in outs.values())
    print(f"classify_speed: outputs identical across engines: {identical}")
    return {"what": f"wall time of the CLI (start-up included) on {n_files} example frames (160² px) "
                    f"with --out (tables + one overlay PNG each), {_cores()} cores here",
            "runs": rows, "outputs_identical": identical, "cores": _cores()}


def _peak_rss(cmd: list[str]) -> tuple[int, int, float, str]:
    """Exit status, peak RSS [bytes], wall time [s] and stderr of ``cmd`` under /usr/bin/time -v."""
    rc, err, wall = _run(["/usr/bin/time", "-v", *cmd])
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    return rc, int(m.group(1)) * 1024 if m else -1, wall, err


def classify_memory(args: argparse.Namespace) -> dict:
    """Peak RSS of ``clusterspy classify`` with and without ``--out`` on big frames."""
    work = Path(args.tmp) / "classify_memory"
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in getattr(args, "sizes", (8192, 16384)):  # reliability.py has no --sizes
        frame = work / f"frame{n}.npy"
        clusters = make_big_frame(frame, n)
        for with_out in (False, True):
            out = work / f"out{n}" if with_out else None
            if out is not None:
                shutil.rmtree(out, ignore_errors=True)
            cmd = _classify_cmd(frame, out, "--pixel-size", "0.3", "--format", "csv")
            rc, rss, wall, err = _peak_rss(cmd)
            rows.append({"px": n, "out": with_out, "exit": rc, "peak_rss_GB": round(rss / 1e9, 3),
                         "wall_s": round(wall, 1), "clusters_pasted": clusters})
            print(f"classify_memory: {n}² float32 {'--out   ' if with_out else 'no --out'}: exit {rc}, "
                  f"peak RSS {rss / 1e9:.3f} GB, {wall:.0f} s" + ("" if rc == 0 else f"\n{err[-1500:]}"))
        if not args.keep:
            frame.unlink()
    worst = max(r["peak_rss_GB"] for r in rows if r["out"])
    return {"what": "peak RSS (/usr/bin/time -v) of clusterspy classify FRAME.npy --pixel-size 0.3 "
                    "[--out OUT] on memory-mapped float32 frames", "runs": rows,
            "max_peak_rss_with_out_GB": worst, "under_2_5GB": worst < 2.5}


def classify_kill(args: argparse.Namespace) -> dict:
    """Random SIGKILLs of a classify batch, each followed by a rerun; outputs compared."""
    work = Path(args.tmp) / "classify_kill"
    shutil.rmtree(work, ignore_errors=True)
    inputs = make_batch(work / "in", 20)
    ref = work / "ref"
    rc, err, length = _run(_classify_cmd(inputs, ref, "--workers", "1"))
    assert rc == 3, err
    rng = np.random.default_rng(args.seed)
    kills, cycles, t_start, leftovers = 0, [], time.perf_counter(), []
    while kills < args.kills:  # a cycle: a fresh --out, killed and restarted until a run ends
        out = work / f"killed{len(cycles)}"
        cycle_kills = 0
        while True:
            proc = subprocess.Popen(_classify_cmd(inputs, out, "--workers", "1"),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                rc = proc.wait(timeout=float(rng.uniform(0.0, length)))
                break
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                cycle_kills += 1
        kills += cycle_kills
        same = _outputs(out) == _outputs(ref)
        leftovers += [str(p) for p in out.rglob("*.tmp")]
        cycles.append({"kills": cycle_kills, "final_exit": rc, "identical": same})
        print(f"classify_kill: cycle {len(cycles)}: {cycle_kills} SIGKILLs, final exit {rc}, outputs "
              f"identical to the uninterrupted run: {same}")
    ok = all(c["identical"] and c["final_exit"] == 3 for c in cycles)
    print(f"classify_kill: {kills} SIGKILLs in {len(cycles)} cycles (uninterrupted run {length:.1f} s): "
          f"all identical: {ok}; .tmp left: {len(leftovers)}")
    return {"what": "SIGKILLs at uniform random moments (0 to the uninterrupted run's length) of "
                    "clusterspy classify --workers 1 on 23 files (3 failing), restarted until a run "
                    "ends; per cycle a fresh --out", "kills": kills, "cycles": cycles,
            "uninterrupted_s": round(length, 1), "all_identical": ok, "tmp_left": leftovers,
            "total_s": round(time.perf_counter() - t_start, 1)}


def classify_lock(args: argparse.Namespace) -> dict:
    """Two classify runs started together on one ``--out``: one refused, the other correct."""
    work = Path(args.tmp) / "classify_lock"
    shutil.rmtree(work, ignore_errors=True)
    inputs = make_batch(work / "in", 8, bad=False)
    alone = work / "alone"
    _run(_classify_cmd(inputs, alone, "--workers", "1"))
    out = work / "shared"
    procs = [subprocess.Popen(_classify_cmd(inputs, out, "--workers", "1"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    codes, errs = [], []
    for p in procs:
        _, e = p.communicate()
        codes.append(p.returncode)
        errs.append(e)
    refused = [e.strip() for c, e in zip(codes, errs, strict=True) if c == 2]
    same = _outputs(out) == _outputs(alone)
    print(f"classify_lock: exits {codes}; refused: {refused}; outputs identical to a run alone: {same}")
    return {"exits": codes, "refused_message": refused, "one_refused": sorted(codes) == [0, 2],
            "identical": same}


PARTS: dict[str, Callable[[argparse.Namespace], dict]] = {
    "classify_speed": classify_speed,
    "classify_memory": classify_memory,
    "classify_kill": classify_kill,
    "classify_lock": classify_lock,
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated: {', '.join(PARTS)}")
    ap.add_argument("--files", type=int, default=40, help="files of classify_speed")
    ap.add_argument("--sizes", type=int, nargs="+", default=[8192, 16384],
                    help="frame sides of classify_memory [px]")
    ap.add_argument("--kills", type=int, default=20, help="SIGKILLs of classify_kill")
    ap.add_argument("--tmp", default="/tmp/clusterspy_batch", help="scratch folder (not the repo)")
    ap.add_argument("--keep", action="store_true", help="keep the classify_memory frames")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    parts = [p.strip() for p in a.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        ap.error(f"unknown part(s) {unknown}; choose from {list(PARTS)}")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    command = "python benchmarks/batch.py " + " ".join(argv if argv is not None else sys.argv[1:])
    for part in parts:
        load_start = os.getloadavg()[0]
        results[part] = {"command": command.strip(), **PARTS[part](a),
                         "load_avg_1min": [round(load_start, 1), round(os.getloadavg()[0], 1)]}
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
