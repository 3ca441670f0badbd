"""Accuracy of the shipped model on a PRISM-simulated test set made with settings not used in training.

The model was trained on the *fast* (incoherent) simulator only. This test set is simulated with
abTEM's PRISM multislice (frozen phonons) — a different simulator — and with microscope settings
the training set never used:

- outer detector angle 120 mrad (training: 150–250 mrad);
- image pixel sizes 0.22, 0.35 and 0.55 Å/px (0.55 is outside the training range 0.05–0.5);
- discrete energies 100 / 200 kV, convergence 18 / 28 mrad, inner angle 45 / 60 mrad;
- amorphous structures from pool members 3–15 (training used members 0–2 only);
- one frozen-phonon configuration with 0.08 Å r.m.s. displacements (PRISM's thermal disorder);
- its own seed; random orientations (uniform on SO(3)) for 75 % of the clusters, zone axes for the
  rest; sizes 147–923 atoms; Au, Pt, Pd; doses 2·10³, 2·10⁴, 2·10⁵ e⁻/Å² with Poisson noise.

Crops are cut with ``clusterspy.detection.crop_cluster`` around the true centre plus a 1.5 Å
centring error. Usage::

    python benchmarks/accuracy_prism.py [--n 200] [--workers 2] [--partial] [--model PATH]

The PRISM images are generated once (resumable, Dask) into ``benchmarks/cache/`` (git-ignored);
results go to ``benchmarks/results/accuracy_prism.json`` and ``accuracy_prism_*.png`` (confusion
matrix, reliability diagram, accuracy vs dose and size); ``--update-card CARD`` also writes them
into a model card.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache"
RESULTS = HERE / "results"

TEST_SPEC = {
    "seed": 424242,
    "chunk_size": 4,
    "crop_px": 96,
    "pixel_size_A": 0.4,
    "backend": "prism",
    "backend_options": {"frozen_phonons": 1, "interpolation": 4, "slice_thickness_A": 2.5,
                        "potential_sampling_A": 0.065},
    "compact_field": 5.0,
    "size_atoms": [147, 923],
    "elements": ["Au", "Pt", "Pd"],
    "amorphous_variants": [3, 16],
    "zone_axis_fraction": 0.25,
    "thermal_sigma_A": 0.0,  # thermal disorder comes from PRISM's frozen phonons
    "energy_keV": {"choices": [100.0, 200.0]},
    "semiangle_mrad": {"choices": [18.0, 28.0]},
    "detector_inner_mrad": {"choices": [45.0, 60.0]},
    "detector_outer_mrad": 120.0,
    "source_size_A": [0.4, 0.8],
    "defocus_A": 0.0,
    "image_pixel_size_A": {"choices": [0.22, 0.35, 0.55]},
    "dose_e_per_A2": {"choices": [2.0e3, 2.0e4, 2.0e5]},
    "jitter_px": [0.0, 0.3],
    "support_probability": 0.0,
    "neighbour_probability": 0.0,
    "cut_probability": 0.0,
    "background": [0.0, 0.1],
    "gamma": 1.0,
    "centre_error_A": 1.5,
}


def main(argv: list[str] | None = None) -> dict:
    """Generate (or reuse) the PRISM test set, evaluate the model, write and print the results."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="number of test images (multiple of 4)")
    ap.add_argument("--sets", type=int, default=1,
                    help="number of test sets of N images (set i uses seed TEST_SPEC seed + i)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--partial", action="store_true",
                    help="evaluate the images finished so far, do not generate")
    ap.add_argument("--model", default=None, help="model.onnx (default: shipped weights)")
    ap.add_argument("--results", default=str(RESULTS), metavar="DIR",
                    help="folder for accuracy_prism.json and the PNGs (default benchmarks/results; "
                         "use another one for a candidate model)")
    ap.add_argument("--update-card", default=None, metavar="CARD",
                    help="write the figures into this model_card.json (metrics.prism_test)")
    a = ap.parse_args(argv)

    os.environ.setdefault("CLUSTERSPY_CACHE", str(CACHE / "structures"))
    from clusterspy.datasets import generate, load
    from clusterspy.isomers import CLASSES
    from clusterspy.model.confidence_calibration import (
        confusion_matrix,
        expected_calibration_error,
        selective_metrics,
    )
    from clusterspy.predict import load_model

    t0 = time.time()
    parts = []
    specs = []
    for i in range(a.sets):
        spec = {**TEST_SPEC, "n_images": int(a.n), "seed": TEST_SPEC["seed"] + i}
        path = CACHE / (f"prism_test_n{a.n}.zarr" if i == 0 else f"prism_test_s{i}_n{a.n}.zarr")
        if not a.partial:
            generate(spec, path, num_workers=a.workers)
        if (path / "zarr.json").exists():
            parts.append(load(path, partial=a.partial))
        specs.append(spec)
    gen_s = time.time() - t0
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    metas = [m for p in parts for m in p[2]]
    if len(labels) == 0:
        raise SystemExit(f"no finished test images in {path}")
    model = load_model(a.model)
    t1 = time.time()
    probs = model.predict_crops(images)
    infer_s = time.time() - t1
    pred = probs.argmax(1)
    correct = pred == labels
    thr = model.unknown_threshold
    sel = selective_metrics(probs, labels, thr)

    def by(key, bins=None):
        vals = np.asarray([m[key] for m in metas], dtype=float)
        out = {}
        if bins is None:
            for v in np.unique(vals):
                s = vals == v
                out[f"{v:g}"] = {"n": int(s.sum()), "accuracy": float(correct[s].mean())}
        else:
            for lo, hi in itertools.pairwise(bins):
                s = (vals >= lo) & (vals < hi)
                if s.any():
                    out[f"{lo:g}-{hi:g}"] = {"n": int(s.sum()), "accuracy": float(correct[s].mean())}
        return out

    res = {
        "what": "shipped model on a PRISM-simulated test set with settings not used in training",
        "command": "python benchmarks/accuracy_prism.py "
                   + " ".join(sys.argv[1:] if argv is None else argv),
        "model_sha256": model.card.get("weights_sha256"),
        "model_training": _training_record(model.card),
        "n_images": len(labels),
        "n_requested": int(a.n) * a.sets,
        "per_class_n": np.bincount(labels, minlength=4).tolist(),
        "accuracy": float(correct.mean()),
        "per_class_accuracy": {c: float(correct[labels == k].mean()) if (labels == k).any()
                               else None for k, c in enumerate(CLASSES)},
        "confusion_matrix": {"rows_true_cols_pred": list(CLASSES),
                             "counts": confusion_matrix(pred, labels).tolist()},
        "ece": expected_calibration_error(probs, labels),
        "mean_confidence": float(probs.max(1).mean()),
        "bootstrap_95ci": _bootstrap(probs, labels, expected_calibration_error),
        "unknown_threshold": thr,
        "coverage": sel["coverage"],
        "precision_accepted": sel["precision_accepted"],
        "accuracy_vs_dose_e_per_A2": by("dose_e_per_A2"),
        "accuracy_vs_n_atoms": by("n_atoms", [0, 250, 450, 700, 2000]),
        "accuracy_vs_image_pixel_size_A": by("image_pixel_size_A"),
        "accuracy_vs_energy_keV": by("energy_keV"),
        "accuracy_zone_axis_vs_random": {
            "zone_axis": float(correct[[bool(m["zone_axis"]) for m in metas]].mean())
            if any(m["zone_axis"] for m in metas) else None,
            "random": float(correct[[not m["zone_axis"] for m in metas]].mean()),
        },
        "test_specs": specs,
        "generation_seconds_this_call": round(gen_s, 1),
        "inference_seconds": round(infer_s, 3),
    }
    results = Path(a.results)
    results.mkdir(parents=True, exist_ok=True)
    with open(results / "accuracy_prism.json", "w", encoding="utf-8") as fh:
        json.dump(res, fh, indent=1)
    _plots(res, probs, labels, results)
    if a.update_card:
        _update_card(Path(a.update_card), res)
    print(json.dumps({k: res[k] for k in (
        "model_training", "n_images", "accuracy", "per_class_accuracy", "ece", "mean_confidence",
        "bootstrap_95ci", "coverage", "precision_accepted",
        "accuracy_vs_dose_e_per_A2", "accuracy_vs_n_atoms")}, indent=1))
    print("confusion (rows true, cols predicted):", res["confusion_matrix"]["counts"])
    return res


def _plots(res: dict, probs: np.ndarray, labels: np.ndarray, results: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from clusterspy.model.figures import plot_confusion
    from clusterspy.plots import plot_reliability, save_figure

    plot_confusion(np.asarray(res["confusion_matrix"]["counts"]),
                   results / "accuracy_prism_confusion.png",
                   title=f"PRISM test (n={res['n_images']})")
    save_figure(plot_reliability(probs, labels, n_bins=15, title="PRISM test"),
                results / "accuracy_prism_reliability.png")
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    FigureCanvasAgg(fig)
    a1, a2 = fig.subplots(1, 2)
    d = res["accuracy_vs_dose_e_per_A2"]
    a1.semilogx([float(k) for k in d], [v["accuracy"] for v in d.values()], "o-", color="#0072B2")
    a1.set(xlabel="dose [e⁻/Å²]", ylabel="top-1 accuracy", ylim=(0, 1.02))
    s = res["accuracy_vs_n_atoms"]
    a2.bar(list(s), [v["accuracy"] for v in s.values()], color="#E69F00")
    a2.set(xlabel="cluster size [atoms]", ylabel="top-1 accuracy", ylim=(0, 1.02))
    save_figure(fig, results / "accuracy_prism_vs_dose_size.png", dpi=110)


def _training_record(card: dict) -> dict:
    """What it took to train the model under test, and its held-out figures, as its card records them."""
    t, m = card.get("training", {}), card.get("metrics", {})
    secs, steps = t.get("train_seconds"), t.get("steps")
    bs = t.get("config", {}).get("batch_size")
    return {"name": card.get("name"), "device": t.get("device"), "train_seconds": secs,
            "train_minutes": round(secs / 60, 1) if secs else None,
            "epochs": t.get("epochs_run"), "n_train": t.get("n_train"),
            "images_per_second": round(steps * bs / secs, 1) if secs and steps and bs else None,
            "wall_seconds_of_the_training_call": t.get("wall_seconds_this_call"),
            "fast_holdout_accuracy": m.get("fast_holdout", {}).get("accuracy"),
            "prism_validation_accuracy": m.get("prism_validation", {}).get("accuracy"),
            "command": t.get("command")}


def _bootstrap(probs: np.ndarray, labels: np.ndarray, ece_fn, n_boot: int = 2000) -> dict:
    """95 % percentile-bootstrap intervals of accuracy and ECE (images resampled; seed 0)."""
    rng = np.random.default_rng(0)
    acc, ece = [], []
    correct = probs.argmax(1) == labels
    for _ in range(n_boot):
        i = rng.integers(0, len(labels), len(labels))
        acc.append(correct[i].mean())
        ece.append(ece_fn(probs[i], labels[i]))
    return {"accuracy": np.percentile(acc, [2.5, 97.5]).tolist(),
            "ece": np.percentile(ece, [2.5, 97.5]).tolist(), "n_boot": n_boot}


def _update_card(path: Path, res: dict) -> None:
    """Write the test figures into a model card (``metrics["prism_test"]``)."""
    card = json.loads(path.read_text(encoding="utf-8"))
    card["metrics"]["prism_test"] = {
        "what": "benchmarks/accuracy_prism.py: PRISM (abTEM) images with settings not used in training",
        **{k: res[k] for k in ("command", "n_images", "accuracy", "per_class_accuracy", "ece",
                               "mean_confidence", "bootstrap_95ci", "coverage",
                               "precision_accepted")},
        "confusion_rows_true_cols_pred": res["confusion_matrix"]["counts"],
    }
    from clusterspy.io import write_json

    write_json(card, path, indent=1)


if __name__ == "__main__":
    main()
