"""End-to-end speed and memory of ``classify_series``.

- frames per second for a 1,000-frame 1024² single-cluster series (goal ≥ 50 frames/s on 2 cores),
  classifying (``frames.csv``, the smoothing and ``summary.json``); the report drawn after it (figures,
  thumbnails with saliency: seconds once a series, not a frame's cost) is timed apart
  (``report_seconds``, ``frames_per_s_with_report``; until stop 43 it was inside ``frames_per_s``);
- peak resident memory for a 2,000-frame series (goal < 2 GB).

The series is generated on the fly into a temporary ``.npy`` (read back as a memory map, so the
reader is lazy like a real file): one Au-like cluster (a disc of Gaussian atomic columns, 0.3 Å/px,
~30 Å across) drifting slowly on a noisy background, changing isomer pattern every 200 frames.
Frames are uint16 counts. Each measurement runs in a fresh subprocess (``ru_maxrss`` = peak
RSS of that run alone: Linux ``VmHWM``; ``ru_maxrss``, which also counts the forked parent, is
recorded beside it). Pages of the memory-mapped series that ``classify_series`` has read are
handed back as it goes (see ``clusterspy.io.series.RELEASE_EVERY``).

With the network it also times ``clusterspy series`` (the CLI, a new process, ``--no-report``) on
the same frames, where a frame's time goes (cProfile over 150 frames, ms a frame per stage) and
what one cluster costs each model's network (its 8 test-time views).

Run: ``.venv/bin/python benchmarks/series_speed.py [--frames 1000] [--rss-frames 2000]
[--stand-in-model] [--radius-A 15] [--pattern K] [--astigmatism none] [--out FILE]``; writes
``benchmarks/results/series_speed.json``. ``--radius-A 11 --pattern 1``: a cluster isomernet-v2
labels and isomernet-v4 checks in every frame, the dearest frame to classify. Needs
``clusterspy.predict`` and the shipped weights; ``--stand-in-model`` replaces the network by a
constant-time stand-in to measure everything else (reading, detection, tracking, cropping,
streaming, HMM, report), and says so in the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import ClassVar

import numpy as np

PX = 0.3  # Å/px
SIZE = 1024


def make_series(path: Path, n: int, seed: int = 0, radius_A: float = 15.0,
                pattern: int | None = None) -> None:
    """Write an (n, 1024, 1024) uint16 series (detector counts) to ``path`` (.npy) frame by frame;
    the cluster's columns lie within ``radius_A`` [Å] of its centre (15 Å: measured ~3.5 nm, judged by
    isomernet-v3 under the size-routed default; 11 Å: ~2.5 nm, judged by isomernet-v2). Its look
    changes every 200 frames among four ``patterns``, or is pattern ``pattern`` (0–3) in every frame."""
    rng = np.random.default_rng(seed)
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=(n, SIZE, SIZE))
    yy, xx = np.mgrid[-64:64, -64:64].astype(np.float32)
    patterns = []
    for k, spacing in enumerate((2.35, 2.04, 2.88, None)):  # Å, a different look per "isomer"
        if spacing is None:
            cols = rng.uniform(-15, 15, (400, 2))
        else:
            g = np.arange(-16, 16.01, spacing)
            cols = np.array([(x, y) for x in g for y in g])
            th = 0.3 * k
            cols = cols @ np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
        cols = cols[np.hypot(cols[:, 0], cols[:, 1]) < radius_A] / PX
        img = np.zeros_like(xx)
        for cx, cy in cols:
            img += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 1.5**2))
        patterns.append(img / img.max())
    noise = rng.normal(0.05, 0.02, (4, SIZE, SIZE)).astype(np.float32)  # recycled noise fields
    for i in range(n):
        frame = np.roll(noise[i % 4], (i * 37) % SIZE, axis=1)
        x0 = int(400 + 0.05 * i) % (SIZE - 200) + 64
        y0 = int(500 + 0.03 * i) % (SIZE - 200) + 64
        frame[y0 - 64:y0 + 64, x0 - 64:x0 + 64] += patterns[(i // 200) % 4 if pattern is None else pattern]
        mm[i] = np.clip(frame * 1000.0, 0, 65535).astype(np.uint16)
    mm.flush()
    del mm


class StandIn:
    """Constant-time stand-in for the network (for --stand-in-model only)."""

    card: ClassVar[dict] = {"classes": ["icosahedral", "decahedral", "fcc", "amorphous"], "pixel_size_A": 0.4,
            "crop_px": 64, "unknown_threshold": 0.5, "id": "stand-in (no network)"}

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        m = crops.reshape(len(crops), -1).mean(axis=1)
        p = np.full((len(crops), 4), 0.1)
        p[np.arange(len(crops)), (m * 1000).astype(int) % 4] = 0.7
        return p


def _no_astigmatism() -> None:
    """``--astigmatism none``: the default without its probe-shape network (stop 40's)."""
    import clusterspy.predict as predict

    predict.ASTIGMATISM = None


def child(path: str, out: str, stand_in: bool, model_path: str | None = None) -> None:
    import resource

    from clusterspy import classify_series  # the core, then (report=True) the report: workflows

    model = StandIn() if stand_in else None
    if model is None:
        from clusterspy.predict import load_model

        model = load_model(model_path)
    from clusterspy.workflows import write_series_report

    data = np.load(path, mmap_mode="r")
    t0 = time.perf_counter()
    res = classify_series(data, PX, frame_time_s=0.02, model=model, out=out, resume=False,
                          n_boot=500, report=False)
    dt = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_series_report(res, model if hasattr(model, "crop_px") else None)  # once a series: timed apart
    report_s = time.perf_counter() - t0
    ru_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    rss = _vm_hwm() or ru_maxrss
    models, reasons = res.frames.get("model"), res.frames["reason"]
    print(json.dumps({"frames": len(data), "seconds": dt, "frames_per_s": len(data) / dt,
                      "report_seconds": report_s, "frames_per_s_with_report": len(data) / (dt + report_s),
                      "peak_rss_bytes": rss, "ru_maxrss_bytes": ru_maxrss, "rows": len(res),
                      "lost": int(sum(c["n_lost"] for c in res.summary["clusters"])),
                      "clusters": res.summary["n_clusters"], "model": res.summary["model"]["id"],
                      # which model judged the rows, and why any was not labelled (a reason decided
                      # before inference means the network never ran on that frame)
                      "judged_by": {str(k): int(np.sum(models == k)) for k in set(models)}
                      if models is not None else None,
                      "reasons": {str(k or "none"): int(np.sum(reasons == k)) for k in set(reasons)}}))


#: Stages of a series frame timed by ``--child-profile``: (file suffix, function name) whose
#: cumulative cProfile time is the stage's ("" matches a built-in by the end of its name).
STAGES = {
    # the network runs on worker threads, which cProfile does not see: what the frames' thread
    # spends on it is its wait for a batch's views (and the last batch, run on that thread)
    "waiting for the network (ONNX Runtime, 8 test-time views, on worker threads)":
        ("series/per_frame.py", "complete"),
    "domain checks of each cluster": ("clusterspy/domain.py", "cluster_reasons"),
    # the reader thread looks at every frame after the first (clusterspy.series.classify._read_ahead),
    # unseen by cProfile too: what is left here is the first frame's full check
    "contrast check on the frames' thread": ("series/per_frame.py", "looks_bright_field"),
    "detection": ("clusterspy/detection.py", "detect_clusters"),
}


def child_profile(path: str, n: int, model_path: str | None = None) -> None:
    """Where a frame's time goes: cProfile over the first ``n`` frames (ms a frame per stage)."""
    import cProfile
    import pstats

    from clusterspy import classify_series
    from clusterspy.predict import load_model

    model = load_model(model_path)
    data = np.load(path, mmap_mode="r")[:n]
    classify_series(data, PX, frame_time_s=0.02, model=model, n_boot=5)  # warm
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    classify_series(data, PX, frame_time_s=0.02, model=model, n_boot=5)
    prof.disable()
    wall = time.perf_counter() - t0
    stats = pstats.Stats(prof).stats  # {(file, line, name): (cc, nc, tt, ct, callers)}
    out = {"frames": n, "wall_ms_per_frame_profiled": 1000 * wall / n}
    for stage, (where, fn) in STAGES.items():
        ct = sum(v[3] for (file, _, name), v in stats.items()
                 if (name.endswith(fn) if not where else file.endswith(where) and name == fn))
        out[stage] = 1000 * ct / n
    print(json.dumps(out))


def network_ms_per_cluster(model_path: str | None) -> dict[str, float]:
    """Milliseconds one cluster's crop costs each model's network (its 8 test-time views), 64 at a
    time; the second opinion's too (all 8 views: it looks at 2, then 4, and at the others where those
    are close, :func:`clusterspy.predict.second_opinion_of`)."""
    from clusterspy.predict import load_model

    model = load_model(model_path)
    crops = np.random.default_rng(0).random((64, 96, 96)).astype(np.float32)
    out = {}
    second = getattr(model, "second_opinion", None)
    for m in (*getattr(model, "models", (model,)), *(() if second is None else (second,))):
        x = crops if m.crop_px == 96 else np.random.default_rng(0).random((64, m.crop_px, m.crop_px),
                                                                          dtype=np.float32)
        m.infer(x)
        t = time.perf_counter()
        for _ in range(3):
            m.infer(x)
        out[m.card.id] = 1000 * (time.perf_counter() - t) / (3 * len(x))
    return out


def run_cli(path: Path, out: Path, n: int) -> dict:
    """``clusterspy series`` on the series as a user runs it (a new process, no report)."""
    exe = Path(sys.executable).with_name("clusterspy")
    t = time.perf_counter()
    r = subprocess.run([str(exe), "series", str(path), "--pixel-size", str(PX), "--frame-time", "0.02",
                        "--out", str(out), "--no-report"], capture_output=True, text=True, check=False)
    dt = time.perf_counter() - t
    return {"frames": n, "seconds": dt, "frames_per_s": n / dt, "exit": r.returncode,
            "stderr": r.stderr.strip()[-300:]}


def _vm_hwm() -> int | None:
    """Peak resident memory [bytes] of this process's own address space (Linux ``VmHWM``).

    ``ru_maxrss`` is not used as the figure: on Linux, ``execve`` carries over the high-water
    mark of the forked copy of the parent, so a child started by a parent that had just
    written a 4 GB memory-mapped series reports ~4 GB whatever it does itself.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def run_child(path: Path, out: Path, stand_in: bool, model_path: str | None = None,
              no_astigmatism: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", str(path), str(out)]
    if no_astigmatism:
        cmd += ["--astigmatism", "none"]
    if stand_in:
        cmd.append("--stand-in-model")
    if model_path:
        cmd += ["--model", model_path]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--rss-frames", type=int, default=2000)
    ap.add_argument("--stand-in-model", action="store_true")
    ap.add_argument("--child", nargs=2)
    ap.add_argument("--child-profile", nargs=2, metavar=("PATH", "N"))
    ap.add_argument("--model", default=None, help="model folder or .onnx (default: shipped)")
    ap.add_argument("--radius-A", type=float, default=15.0,
                    help="the cluster's radius [Å]: 15 (~3.5 nm, v3 judges it), 11 (~2.5 nm, v2 does)")
    ap.add_argument("--pattern", type=int, default=None, choices=range(4),
                    help="the cluster's look in every frame (default: four looks, 200 frames each); at "
                    "--radius-A 11, look 1 is labelled by v2 and checked by v4 in every frame: the dearest")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "series_speed.json"))
    ap.add_argument("--astigmatism", choices=["none"], default=None,
                    help="none: the default without astigmatism-v1 (the API runs only; the CLI has no such "
                    "option, so its run, the profile and the network timings are left out)")
    args = ap.parse_args()
    no_astig = args.astigmatism == "none"
    if no_astig:
        _no_astigmatism()
    if args.child:
        child(*args.child, args.stand_in_model, args.model)
        return
    if args.child_profile:
        child_profile(args.child_profile[0], int(args.child_profile[1]), args.model)
        return
    if not args.stand_in_model:
        try:
            from clusterspy.predict import load_model

            load_model(args.model)
        except Exception as exc:
            sys.exit(f"the shipped model is not available ({exc}); "
                     "run with --stand-in-model to time everything but the network")
    result = {"benchmark": "series_speed", "frame_shape": [SIZE, SIZE], "pixel_size_A": PX,
              "stand_in_model": args.stand_in_model, "cpu_count": os.cpu_count(),
              "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
              else None, "machine": platform.platform(),
              "goals": {"frames_per_s": 50, "peak_rss_bytes": 2 * 1024**3}, "radius_A": args.radius_A,
              "pattern": args.pattern, "astigmatism": args.astigmatism or "default",
              "load_average_at_start": list(os.getloadavg()),
              "peak_rss_measure": "VmHWM of the child (ru_maxrss beside it includes the forked "
                                  "parent that wrote the memory-mapped series)"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_p = Path(tmp)
        n_max = max(args.frames, args.rss_frames)
        path = tmp_p / "series.npy"
        t0 = time.perf_counter()
        make_series(path, n_max, radius_A=args.radius_A, pattern=args.pattern)
        result["generate_seconds"] = time.perf_counter() - t0
        if args.frames < n_max:
            small = tmp_p / "small.npy"
            src = np.load(path, mmap_mode="r")
            mm = np.lib.format.open_memmap(small, mode="w+", dtype=np.uint16,
                                           shape=(args.frames, SIZE, SIZE))
            for i in range(0, args.frames, 100):
                mm[i:i + 100] = src[i:i + 100]
            mm.flush()
            del mm, src
        else:
            small = path
        # the series was just written: its GBs of dirty pages go to disk now, not during the timed
        # runs (the kernel's writeback had shared the two cores with the first of them)
        t0 = time.perf_counter()
        os.sync()
        result["sync_seconds"] = time.perf_counter() - t0
        result["speed"] = run_child(small, tmp_p / "out_speed", args.stand_in_model, args.model, no_astig)
        print("speed:", result["speed"], flush=True)
        result["memory"] = run_child(path, tmp_p / "out_rss", args.stand_in_model, args.model, no_astig)
        print("memory:", result["memory"], flush=True)
        if not args.stand_in_model and not no_astig:
            result["cli"] = run_cli(small, tmp_p / "out_cli", args.frames)
            print("cli:", result["cli"], flush=True)
            cmd = [sys.executable, __file__, "--child-profile", str(small), "150"]
            if args.model:
                cmd += ["--model", args.model]
            r = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if r.returncode == 0:
                result["profile_ms_per_frame"] = json.loads(r.stdout.strip().splitlines()[-1])
                print("profile:", result["profile_ms_per_frame"], flush=True)
            result["network_ms_per_cluster"] = network_ms_per_cluster(args.model)
            print("network:", result["network_ms_per_cluster"], flush=True)
    result["load_average_at_end"] = list(os.getloadavg())
    result["meets_speed_goal"] = result["speed"]["frames_per_s"] >= 50
    result["meets_memory_goal"] = result["memory"]["peak_rss_bytes"] < 2 * 1024**3
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
