"""Per-frame accuracy of ``classify_series`` on a PRISM-simulated series with known isomer switches.

Issue 6 "must show": a video of one cluster whose isomer changes at known frames, every frame
simulated with abTEM's PRISM multislice (a different simulator from the *fast* one the shipped
model was trained on), with slow rotation, drift and Poisson noise; the series is classified with
:func:`clusterspy.classify_series` and its raw and HMM-smoothed labels are compared with the truth.

The series (all settings in :data:`SETTINGS`, every random choice from ``--seed``):

- one Au cluster of 309 atoms; isomer segments ico 10 → dec 8 → fcc 8 → ico 6 frames (3 true
  transitions); each segment is a new atomic model with a random start orientation (uniform on
  SO(3)) that then turns by a random angle ≤ 4° about a random axis every frame;
- 200 keV, 25 mrad, HAADF 70–120 mrad (outer angle below the training range 150–250 mrad),
  source size 0.6 Å; image pixel 0.35 Å/px, 160 × 160 px field (56 Å);
- PRISM made cheap as in ``benchmarks/accuracy_prism.py`` (compact field): each noiseless frame is
  simulated on a field just larger than the cluster (its 3-D radius + 4 Å margin), potential
  sampling 0.065 Å (the coarsest whose antialiasing limit, 128 mrad at 200 keV, still covers the
  120 mrad detector), interpolation 4, 2.5 Å slices, one frozen-phonon configuration; the
  noiseless image is padded with vacuum to the full field at the cluster's drifted position
  (a Gaussian random walk, σ = 1.5 Å per frame, kept within ±10 Å of the centre; sub-pixel
  Fourier shift), then acquired: 5·10⁴ e⁻/Å² Poisson noise, 0.3 px scan-line jitter and a flat
  background of 0.002 (a thin support, as a fraction of the beam).

Noiseless frames are cached in ``benchmarks/cache/series_accuracy/`` (git-ignored; keyed by the
settings, frame and orientation), so reruns (or other doses) cost seconds. Usage::

    python benchmarks/series_accuracy.py [--seed 6] [--workers 1] [--out /tmp/series_accuracy]

Results: ``benchmarks/results/series_accuracy.json`` (and the series outputs frames.csv,
summary.json, strip.png, report.html in ``--out``). Raw labels count ``unknown`` / ``lost`` /
``blurred`` frames as wrong; "on accepted" scores only frames given an isomer (coverage = their
fraction). The series is also classified a second time with the blur test off
(``blur_threshold=0``, key ``blur_test_off``), with each frame's crop sharpness, because a lasting
drop in sharpness from an isomer/orientation change (not blur) can trip that test.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache" / "series_accuracy"
RESULTS = HERE / "results"

#: (isomer, number of frames), in the order they appear.
SEGMENTS: tuple[tuple[str, int], ...] = (
    ("icosahedral", 10),
    ("decahedral", 8),
    ("fcc", 8),
    ("icosahedral", 6),
)

SETTINGS = {
    "element": "Au",
    "size_atoms": 309,
    "max_rotation_deg_per_frame": 4.0,
    "energy_keV": 200.0,
    "semiangle_mrad": 25.0,
    "detector_mrad": [70.0, 120.0],
    "source_size_A": 0.6,
    "pixel_size_A": 0.35,
    "field_px": 160,
    "compact_margin_A": 4.0,
    "backend": "prism",
    "backend_options": {"frozen_phonons": 1, "thermal_sigma_A": 0.08, "interpolation": 4,
                        "slice_thickness_A": 2.5, "potential_sampling_A": 0.065},
    "drift_sigma_A_per_frame": 1.5,
    "drift_max_A": 10.0,
    "dose_e_per_A2": 5.0e4,
    "jitter_px": 0.3,
    "background": 0.002,
    "frame_time_s": 0.5,
}


def plan(seed: int) -> list[dict]:
    """The trajectory: per frame the isomer, the model's seed, the rotation, drift and sim seed."""
    from clusterspy.structures import random_rotation, small_rotation

    rng = np.random.default_rng(seed)
    frames = []
    offset = np.zeros(2)
    lim = SETTINGS["drift_max_A"]
    for seg, (motif, n) in enumerate(SEGMENTS):
        model_seed = int(rng.integers(2**31))
        rot = random_rotation(rng)
        for _ in range(n):
            rot = small_rotation(rng, SETTINGS["max_rotation_deg_per_frame"]) @ rot
            offset = np.clip(offset + rng.normal(0, SETTINGS["drift_sigma_A_per_frame"], 2),
                             -lim, lim)
            frames.append({"motif": motif, "segment": seg, "model_seed": model_seed,
                           "rotation": rot.copy(), "offset_A": offset.copy(),
                           "sim_seed": int(rng.integers(2**31))})
    return frames


def _key(f: dict) -> str:
    blob = json.dumps({k: SETTINGS[k] for k in (
        "element", "size_atoms", "energy_keV", "semiangle_mrad", "detector_mrad", "source_size_A",
        "pixel_size_A", "compact_margin_A", "backend", "backend_options")}, sort_keys=True)
    blob += f["motif"] + str(f["model_seed"]) + str(f["sim_seed"])
    blob += np.round(f["rotation"], 10).tobytes().hex()
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def ideal_frame(f: dict) -> np.ndarray:
    """Noiseless PRISM image of one frame on the compact field (cached)."""
    import warnings

    path = CACHE / f"{f['motif']}_{_key(f)}.npy"
    if path.exists():
        return np.load(path)
    os.environ.setdefault("CLUSTERSPY_CACHE", str(HERE / "cache" / "structures"))
    warnings.filterwarnings("ignore", message="The interpolation factor")
    from clusterspy.simulation import Microscope, simulate
    from clusterspy.structures import cluster

    s = SETTINGS
    atoms = cluster(f["motif"], s["size_atoms"], s["element"], rng=f["model_seed"],
                    orientation="random")
    pos = atoms.get_positions()
    pos = pos - pos.mean(0)
    radius = float(np.linalg.norm(pos, axis=1).max())
    atoms.set_positions(pos @ f["rotation"].T)
    mic = Microscope(energy_keV=s["energy_keV"], semiangle_mrad=s["semiangle_mrad"],
                     detector_mrad=tuple(s["detector_mrad"]), source_size_A=s["source_size_A"])
    # same extent for every frame of a model (3-D radius), whatever its orientation
    extent = 2 * (radius + s["compact_margin_A"])
    img = simulate(atoms, mic, pixel_size=s["pixel_size_A"], extent=extent, backend=s["backend"],
                   rng=np.random.default_rng(f["sim_seed"]), **s["backend_options"])
    data = np.asarray(img.data, np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, data)
    os.replace(tmp, path)
    return data


def _timed(f: dict) -> tuple[np.ndarray, float]:
    t = time.time()
    return ideal_frame(f), time.time() - t


def acquire(ideal: np.ndarray, f: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pad the compact image into the field at the drifted position, then add the acquisition.

    Returns the frame and the true cluster centre ``(x_px, y_px)``.
    """
    from scipy.ndimage import fourier_shift

    from clusterspy.simulation import Acquisition

    s = SETTINGS
    n = s["field_px"]
    px = s["pixel_size_A"]
    canvas = np.zeros((n, n), np.float64)
    rs, cs = ideal.shape
    r0, c0 = n // 2 - rs // 2, n // 2 - cs // 2
    canvas[r0:r0 + rs, c0:c0 + cs] = ideal
    dx, dy = f["offset_A"] / px  # sub-pixel drift (the zero padding makes the wrap harmless)
    canvas = np.fft.ifft2(fourier_shift(np.fft.fft2(canvas), (dy, dx))).real
    canvas = np.clip(canvas, 0, None)
    # the cluster centre lands on pixel (rs // 2, cs // 2) of the compact image
    centre = np.array([c0 + cs // 2 + dx, r0 + rs // 2 + dy])
    acq = Acquisition(dose_e_per_A2=s["dose_e_per_A2"], jitter_px=s["jitter_px"],
                      background=s["background"])
    return np.asarray(acq.apply(canvas.astype(np.float32), px, rng), np.float32), centre


def _runs(labels: list[str]) -> list[tuple[str, int, int]]:
    """Runs ``(label, first, last)`` of a label sequence."""
    out: list[tuple[str, int, int]] = []
    for i, lab in enumerate(labels):
        if out and out[-1][0] == lab:
            out[-1] = (lab, out[-1][1], i)
        else:
            out.append((lab, i, i))
    return out


def _transitions(labels: list[str], classes: tuple[str, ...]) -> list[tuple[int, str, str]]:
    """Changes between isomers (frames with another label — unknown, lost — are skipped)."""
    seq = [(i, lab) for i, lab in enumerate(labels) if lab in classes]
    return [(i, a, b) for (_, a), (i, b) in itertools.pairwise(seq) if a != b]


def _confusion(truth: list[str], pred: list[str], rows, cols) -> list[list[int]]:
    m = np.zeros((len(rows), len(cols)), int)
    for t, p in zip(truth, pred, strict=True):
        m[rows.index(t), cols.index(p)] += 1
    return m.tolist()


#: Headline figures (printed, and kept for the variant with the blur test off).
KEYS = (
    "n_frames", "n_tracks", "accuracy_raw", "coverage_raw", "accuracy_raw_on_accepted",
    "accuracy_raw_top1_ignoring_threshold", "accuracy_smoothed", "raw_label_counts",
    "transitions_true", "transitions_smoothed", "transitions_raw_between_accepted_frames",
    "transition_frames_true", "transition_frames_smoothed", "runs_smoothed",
    "confusion_raw", "confusion_smoothed", "median_centre_error_px",
)


def evaluate(tab: dict, truth: list[str], centres: np.ndarray) -> dict:
    """Compare the per-frame table of ``classify_series`` with the true labels."""
    from clusterspy.isomers import CLASSES

    n = len(truth)
    # the main track: the cluster id with most rows (spurious detections get their own ids)
    cids, counts = np.unique(tab["cluster"], return_counts=True)
    main_id = cids[np.argmax(counts)]
    raw, smoothed, top1 = ["lost"] * n, ["lost"] * n, ["lost"] * n
    pos_err = np.full(n, np.nan)
    pcols = [f"p_{c}" for c in CLASSES]
    for i in np.flatnonzero(tab["cluster"] == main_id):
        fr = int(tab["frame"][i])
        raw[fr] = str(tab["label"][i])
        smoothed[fr] = str(tab["smoothed_label"][i])
        p = np.array([tab[c][i] for c in pcols], float)
        if np.all(np.isfinite(p)):
            top1[fr] = CLASSES[int(np.argmax(p))]
        pos_err[fr] = np.hypot(tab["x_px"][i] - centres[fr, 0], tab["y_px"][i] - centres[fr, 1])
    t, r, sm = np.array(truth), np.array(raw), np.array(smoothed)
    accepted = np.isin(r, CLASSES)
    true_tr = _transitions(truth, CLASSES)
    sm_tr = _transitions(smoothed, CLASSES)
    raw_tr = _transitions(raw, CLASSES)
    pred_cols = [*CLASSES, "unknown", "lost", "blurred"]
    return {
        "n_frames": n,
        "n_tracks": len(cids),
        "accuracy_raw": float(np.mean(r == t)),
        "accuracy_raw_top1_ignoring_threshold": float(np.mean(np.array(top1) == t)),
        "coverage_raw": float(accepted.mean()),
        "accuracy_raw_on_accepted": float(np.mean(r[accepted] == t[accepted]))
        if accepted.any() else None,
        "accuracy_smoothed": float(np.mean(sm == t)),
        "raw_label_counts": {k: int(np.sum(r == k)) for k in pred_cols if np.any(r == k)},
        "transitions_true": len(true_tr),
        "transitions_smoothed": len(sm_tr),
        "transitions_raw_between_accepted_frames": len(raw_tr),
        "transition_frames_true": [[i, x, y] for i, x, y in true_tr],
        "transition_frames_smoothed": [[i, x, y] for i, x, y in sm_tr],
        "runs_smoothed": [list(x) for x in _runs(smoothed)],
        "confusion_raw": {"rows_true": list(CLASSES), "cols_pred": pred_cols,
                          "counts": _confusion(truth, raw, list(CLASSES), pred_cols)},
        "confusion_smoothed": {"rows_true": list(CLASSES), "cols_pred": pred_cols,
                               "counts": _confusion(truth, smoothed, list(CLASSES), pred_cols)},
        "per_frame": [{"frame": i, "true": truth[i], "raw": raw[i], "smoothed": smoothed[i],
                       "top1": top1[i], "centre_error_px": None if np.isnan(pos_err[i])
                       else round(float(pos_err[i]), 2)} for i in range(n)],
        "median_centre_error_px": float(np.nanmedian(pos_err)) if np.isfinite(pos_err).any()
        else None,
    }


def crop_sharpness(stack: np.ndarray, tab: dict, card: dict) -> list[float]:
    """Sharpness (the blur test's measure) of each frame's crop at the detected centre."""
    from clusterspy.detection import Detection, crop_cluster
    from clusterspy.image import Image
    from clusterspy.series.tracking import sharpness

    out = []
    for i, frame in enumerate(stack):
        rows = np.flatnonzero((tab["frame"] == i) & np.isfinite(tab["x_px"].astype(float)))
        if not len(rows):
            out.append(float("nan"))
            continue
        j = rows[0]
        det = Detection(x_px=float(tab["x_px"][j]), y_px=float(tab["y_px"][j]),
                        bbox=(0, 0, *frame.shape), diameter_A=20.0, area_px=1)
        crop = crop_cluster(Image(frame, SETTINGS["pixel_size_A"]), det,
                            float(card["pixel_size_A"]), int(card["crop_px"]))
        out.append(sharpness(crop))
    return out


#: Pixel-size errors (told / true) at which the series is classified again, without and with
#: ``calibrate=True`` (``clusterspy series --calibrate``: the first frames' lattice against Au's).
PIXEL_SIZE_ERRORS = (0.85, 1.15)


def pixel_size_errors(stack: np.ndarray, truth: list[str], centres: np.ndarray, model, stay: float,
                      seed: int) -> dict:
    """The series told a pixel size :data:`PIXEL_SIZE_ERRORS` off, classified as it is and with
    ``calibrate=True``: the headline figures of each, and the calibration's line."""
    from clusterspy.workflows import classify_series as classify_series_face

    out = {}
    for error in PIXEL_SIZE_ERRORS:
        told = SETTINGS["pixel_size_A"] * error
        for calibrate in (False, True):
            t0 = time.time()
            res = classify_series_face(stack, told, frame_time_s=SETTINGS["frame_time_s"], model=model,
                                       stay=stay, seed=seed, report=False, calibrate=calibrate,
                                       element=SETTINGS["element"])
            ev = evaluate(res.frames, truth, centres)
            cal = res.summary.get("calibration") or {}
            out[f"x{error:g}{' calibrated' if calibrate else ''}"] = {
                "told_pixel_size_A": round(told, 5), "calibrate": calibrate,
                **{k: ev[k] for k in KEYS if k in ev},
                "calibration_message": cal.get("message"), "calibrated_pixel_size_A": cal.get("pixel_size_A"),
                "seconds": round(time.time() - t0, 2)}
    return out


def main(argv: list[str] | None = None) -> dict:
    """Simulate (or reuse) the series, classify it, compare with the truth, write the results."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--workers", type=int, default=1, help="processes simulating frames")
    ap.add_argument("--out", default="/tmp/series_accuracy", help="classify_series output folder")
    ap.add_argument("--frames", type=int, default=None,
                    help="use only the first N frames (quick checks)")
    ap.add_argument("--stay", type=float, default=0.95, help="HMM probability of staying")
    a = ap.parse_args(argv)

    from clusterspy import classify_series  # the core, then the report (workflows)
    from clusterspy.predict import load_model

    frames = plan(a.seed)
    if a.frames:
        frames = frames[: a.frames]
    truth = [f["motif"] for f in frames]
    todo = [f for f in frames if not (CACHE / f"{f['motif']}_{_key(f)}.npy").exists()]
    print(f"{len(frames)} frames, {len(todo)} to simulate with PRISM "
          f"({a.workers} worker(s)); cache {CACHE}", flush=True)
    t0 = time.time()
    sim_times: list[float] = []
    if todo:
        with ProcessPoolExecutor(a.workers) as pool:
            for i, (_, dt) in enumerate(pool.map(_timed, todo)):
                sim_times.append(dt)
                print(f"  frame {i + 1}/{len(todo)} simulated in {dt:.1f} s "
                      f"(elapsed {time.time() - t0:.0f} s)", flush=True)
    sim_s = time.time() - t0
    # wall time of each frame's PRISM simulation, kept beside the cache (cached reruns report it)
    times_path = CACHE / "sim_seconds.json"
    known = json.loads(times_path.read_text()) if times_path.exists() else {}
    known.update({_key(f): round(dt, 1) for f, dt in zip(todo, sim_times, strict=True)})
    if sim_times:
        times_path.write_text(json.dumps(known, indent=1))
    frame_secs = [known.get(_key(f)) for f in frames]
    noise_rng = np.random.default_rng([a.seed, 1])
    stack, centres = [], []
    for f in frames:
        img, c = acquire(ideal_frame(f), f, noise_rng)
        stack.append(img)
        centres.append(c)
    stack = np.stack(stack)
    centres = np.asarray(centres)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(CACHE / f"series_{SETTINGS['backend']}_seed{a.seed}.npz", frames=stack,
                        pixel_size_A=SETTINGS["pixel_size_A"],
                        frame_time_s=SETTINGS["frame_time_s"], true_labels=np.array(truth),
                        true_centre_px=centres)

    model = load_model()
    t1 = time.time()
    res = classify_series(stack, SETTINGS["pixel_size_A"], frame_time_s=SETTINGS["frame_time_s"],
                          model=model, out=a.out, resume=False, stay=a.stay, seed=a.seed)
    classify_s = time.time() - t1
    out = {
        "what": "classify_series on a PRISM-simulated series of one Au309 cluster with known "
                "isomer switches (rotation, drift, Poisson noise): per-frame raw vs HMM-smoothed",
        "command": ("python benchmarks/series_accuracy.py " + " ".join(
            argv if argv is not None else sys.argv[1:])).strip(),
        "seed": a.seed,
        "settings": SETTINGS,
        "segments": SEGMENTS,
        "hmm_stay": a.stay,
        "classify_series_kwargs": {"stay": a.stay, "seed": a.seed, "blur_threshold": "default",
                                   "resume": False},
        "model_sha256": model.card.get("weights_sha256"),
        "unknown_threshold": model.unknown_threshold,
        **evaluate(res.frames, truth, centres),
        # classify_series's own count: consecutive-frame changes only, so a change across a
        # lost/blurred gap is not counted (transitions_smoothed above skips such frames)
        "summary_n_transitions_smoothed": [c["n_transitions_smoothed"]
                                           for c in res.summary["clusters"]],
        "prism_seconds_this_call": round(sim_s, 1),
        "prism_seconds_per_frame_this_call": round(float(np.mean(sim_times)), 1)
        if sim_times else None,
        "prism_seconds_per_frame_when_simulated": frame_secs,
        "prism_workers_note": "wall time per frame with the run's --workers processes on 2 "
                              "shared CPU cores (another benchmark ran beside it)",
        "classify_seconds": round(classify_s, 2),
        "series_output": str(a.out),
    }
    # the same series with the blur test off (before the running baseline became adaptive, a
    # lasting drop in crop sharpness — an off-zone fcc segment — was flagged "blurred")
    res0 = classify_series(stack, SETTINGS["pixel_size_A"],
                           frame_time_s=SETTINGS["frame_time_s"], model=model, stay=a.stay,
                           seed=a.seed, blur_threshold=0.0, report=False)
    ev0 = evaluate(res0.frames, truth, centres)
    out["blur_test_off"] = {k: ev0[k] for k in KEYS if k in ev0}
    out["blur_test_off"]["summary_n_transitions_smoothed"] = [
        c["n_transitions_smoothed"] for c in res0.summary["clusters"]]
    out["blur_test_off"]["per_frame"] = ev0["per_frame"]
    out["crop_sharpness_per_frame"] = [round(v, 4) for v in crop_sharpness(stack, res.frames, model.card)]
    out["pixel_size_error"] = pixel_size_errors(stack, truth, centres, model, a.stay, a.seed)
    pred_cols = out["confusion_raw"]["cols_pred"]
    if a.frames is None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        with open(RESULTS / "series_accuracy.json", "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=1)
    short = ("n_frames", "n_tracks", "accuracy_raw", "coverage_raw", "accuracy_raw_on_accepted",
             "accuracy_raw_top1_ignoring_threshold", "accuracy_smoothed", "raw_label_counts",
             "transitions_true", "transitions_smoothed",
             "transitions_raw_between_accepted_frames")
    print(json.dumps({k: out[k] for k in (*short, "summary_n_transitions_smoothed",
                                          "median_centre_error_px",
                                          "prism_seconds_this_call", "classify_seconds")}))
    print("blur test off:", json.dumps({k: out["blur_test_off"][k] for k in (
        *short, "summary_n_transitions_smoothed")}))
    print("per frame (true / raw / smoothed / raw with blur test off / crop sharpness):")
    for row, r0, sh in zip(out["per_frame"], out["blur_test_off"]["per_frame"],
                           out["crop_sharpness_per_frame"], strict=True):
        print(f"  {row['frame']:3d} {row['true']:12s} {row['raw']:12s} {row['smoothed']:12s} "
              f"{r0['raw']:12s} {sh:.4f}")
    for told, ev in out["pixel_size_error"].items():
        shown = ("calibrate", "accuracy_raw", "coverage_raw", "accuracy_raw_on_accepted", "accuracy_smoothed",
                 "raw_label_counts", "calibration_message")
        print(f"told {told}:", json.dumps({k: ev[k] for k in shown}))
    print("confusion raw (rows true; cols", pred_cols, "):", out["confusion_raw"]["counts"])
    print("confusion smoothed:", out["confusion_smoothed"]["counts"])
    return out


if __name__ == "__main__":
    main()
