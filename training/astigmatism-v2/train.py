"""Train astigmatism-v2: astigmatism-v1 with a second output, the probe's three-fold astigmatism as the
phase it puts at the aperture's edge [rad] (``2π/λ · C23 α³ / 3``, ``Microscope.three_fold_A``), both
regressed from the crops isomernet-v7 is shown.

The data are v1's (the training sets of isomernet-v6 and -v7: round and elliptical probes, no three-fold
astigmatism) and ``configs/dataset_train_a2.yaml`` (8,000 images, 60 % with C23 of 0.05–1 µm). Held out,
never trained on: the last 2,000 images of the v6 set (v1's held-out images, so that the first output's
figures compare with v1's) and the last 1,000 of the a2 set.

Usage (2 CPU cores, ~25 min)::

    export CLUSTERSPY_CACHE=runs/cache
    clusterspy dataset configs/dataset_train_a2.yaml runs/data/train_a2.zarr --workers 2
    python training/astigmatism-v2/train.py --out runs/astigmatism-v2
    python training/astigmatism-v2/train.py --out runs/astigmatism-v2 --card 1.5 4.0 \
        --ship src/clusterspy/weights/probe/astigmatism-v2

``--card E P`` (after training) writes and seals the card with the thresholds the default withholds
labels from: ``E`` [Å] of extra FWHM, ``P`` [rad] of three-fold phase; ``--ship`` copies ``model.onnx``
and the card there.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
#: The outputs, in order.
OUTPUTS = ("elongation_A", "three_fold_rad")


def three_fold_phase_rad(meta: dict) -> float:
    """The phase [rad] a sample's three-fold astigmatism puts at the aperture's edge
    (:attr:`clusterspy.simulation.Microscope.three_fold_phase_rad`), 0 without one."""
    from clusterspy.simulation import Microscope

    c23 = float(meta.get("three_fold_A") or 0.0)
    if c23 <= 0:
        return 0.0
    return Microscope(energy_keV=float(meta["energy_keV"]), semiangle_mrad=float(meta["semiangle_mrad"]),
                      three_fold_A=c23).three_fold_phase_rad


def targets(metas: list[dict]) -> np.ndarray:
    """``(N, 2)``: each image's extra source FWHM [Å] along its long axis and three-fold phase [rad]."""
    return np.array([[float(m.get("source_elongation_A") or 0.0), three_fold_phase_rad(m)] for m in metas],
                    dtype=np.float32)


def write_card(out: Path, threshold_A: float, threshold_rad: float, ship: Path | None = None) -> Path:
    """Write and seal ``model_card.json`` beside ``out/model.onnx`` (the geometry and normalisation of
    isomernet-v7's card, whose crops it sees), and copy both to ``ship``."""
    import shutil
    from datetime import UTC, datetime

    from clusterspy.isomers import CLASSES
    from clusterspy.weights.card import ModelCard

    v7 = json.loads((ROOT / "src/clusterspy/weights/isomernet-v7/model_card.json").read_text())
    held = json.loads((out / "holdout.json").read_text())
    card = ModelCard({
        "name": "astigmatism-v2", "format": "clusterspy-model-card-1",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "classes": list(CLASSES),
        **{k: v7[k] for k in ("pixel_size_A", "crop_px", "field_factor", "normalisation",
                               "test_time_augmentation")},
        "input": {"name": "crops", "shape": ["N", 1, 96, 96], "dtype": "float32",
                  "note": "isomernet-v7's crops of the clusters, normalised "
                          "(clusterspy.weights.normalise_crops)"},
        "output": {"name": "probe", "shape": ["N", 2],
                   "note": "the source's extra FWHM [Å] along its long axis "
                           "(Microscope.source_elongation_A), and the phase [rad] a three-fold "
                           "astigmatism puts at the aperture's edge (2π/λ · C23 α³ / 3, "
                           "Microscope.three_fold_A)"},
        "astigmatism": {"threshold_A": float(threshold_A), "three_fold_threshold_rad": float(threshold_rad),
                        "views": [0, 1, 2, 3],
                        "rule": "a label of the default stands only where the estimates on the second "
                                "opinion's crop (mean of 4 views) are below threshold_A and "
                                "three_fold_threshold_rad",
                        "holdout": held},
        "training": {"script": "training/astigmatism-v2/train.py",
                     "init_from": "training/astigmatism-v1/weights.pt",
                     "data": ["configs/dataset_train_v7.yaml", "configs/dataset_train_v6.yaml",
                              "configs/dataset_train_a2.yaml"]},
        "weights_file": "model.onnx",
    }, out)
    card.seal()
    path = card.write(out / "model_card.json")
    if ship is not None:
        ship.mkdir(parents=True, exist_ok=True)
        for name in ("model.onnx", "model_card.json"):
            shutil.copy2(out / name, ship / name)
    return path


def main(argv: list[str] | None = None) -> None:
    import torch
    from torch import nn

    from clusterspy.datasets import load
    from clusterspy.model.export import export_onnx
    from clusterspy.model.network import create_model
    from clusterspy.weights.card import normalise_crops

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=["runs/data/train_v7.zarr", "runs/data/train_v6.zarr",
                                                   "runs/data/train_a2.zarr"])
    ap.add_argument("--holdout", nargs="+", type=int, default=[0, 2000, 1000],
                    help="last images of each set, never trained on")
    ap.add_argument("--init", default=str(ROOT / "training/astigmatism-v1/weights.pt"))
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default="runs/astigmatism-v2")
    ap.add_argument("--card", type=float, nargs=2, metavar=("THRESHOLD_A", "THRESHOLD_RAD"),
                    help="only write the card (after training)")
    ap.add_argument("--report", action="store_true", help="only measure the held-out images (after training)")
    ap.add_argument("--ship", type=Path, help="with --card: copy the network and its card to this folder")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.card is not None:
        print(write_card(out, args.card[0], args.card[1], args.ship))
        return

    def held_out() -> tuple[np.ndarray, np.ndarray, list[str]]:
        xs, ts, names = [], [], []
        for p, n in zip(args.data, args.holdout, strict=True):
            if n:
                x, _, metas = load(p)
                xs.append(x[-n:])
                ts.append(targets(metas)[-n:])
                names += [Path(p).stem] * n
        return np.concatenate(xs), np.concatenate(ts), names

    if args.report:  # the held-out figures of a network trained already
        kept = ("args", "data_sha256_first256", "n_train", "seconds")
        rep = {**{k: v for k, v in json.loads((out / "holdout.json").read_text()).items() if k in kept},
               **holdout_report(out, *held_out())}
        (out / "holdout.json").write_text(json.dumps(rep, indent=1) + "\n")
        print(json.dumps(rep, indent=1))
        return
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    rng = np.random.default_rng(args.seed)

    xs, ts, shas = [], [], {}
    for p, n in zip(args.data, args.holdout, strict=True):
        x, _, metas = load(p)
        keep = len(x) - int(n)
        xs.append(normalise_crops(x[:keep]).astype(np.float32))
        ts.append(targets(metas)[:keep])
        shas[p] = hashlib.sha256(np.ascontiguousarray(x[:256]).tobytes()).hexdigest()[:16]
    x_tr, t_tr = np.concatenate(xs), np.concatenate(ts)
    del xs

    net = create_model("isomernet", widths=[24, 32, 64, 128], dropout=0.2)
    net.head[2] = nn.Linear(net.head[2].in_features, 1)
    net.load_state_dict(torch.load(args.init, map_location="cpu"))
    old = net.head[2]
    net.head[2] = nn.Linear(old.in_features, len(OUTPUTS))
    with torch.no_grad():  # the first output starts as v1's, the second at zero
        net.head[2].weight.zero_()
        net.head[2].bias.zero_()
        net.head[2].weight[0] = old.weight[0]
        net.head[2].bias[0] = old.bias[0]
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps)
    t0 = time.time()
    log = [("step", "loss", "seconds")]
    running = 0.0
    for step in range(1, args.steps + 1):
        net.train()
        idx = rng.integers(0, len(x_tr), args.batch)
        # both are lengths or phases of the probe's shape: any of the 8 views
        xb = np.rot90(x_tr[idx], int(rng.integers(4)), axes=(1, 2))
        if rng.random() < 0.5:
            xb = xb[:, :, ::-1]
        pred = net(torch.from_numpy(np.ascontiguousarray(xb))[:, None])
        target = torch.from_numpy(t_tr[idx])
        loss = (nn.functional.smooth_l1_loss(pred[:, 0], target[:, 0], beta=0.3)
                + nn.functional.smooth_l1_loss(pred[:, 1] / 4.0, target[:, 1] / 4.0, beta=0.3))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running += float(loss.detach())
        if step % 250 == 0:
            log.append((step, round(running / 250, 4), round(time.time() - t0)))
            print(*log[-1], flush=True)
            running = 0.0
    net.eval()
    torch.save(net.state_dict(), out / "weights.pt")
    export_onnx(net, out / "model.onnx", x_tr.shape[-1], output_name="probe")
    with open(out / "log.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(log)
    rep = {"args": {k: str(v) for k, v in vars(args).items()}, "data_sha256_first256": shas,
           "n_train": len(x_tr), "seconds": round(time.time() - t0), **holdout_report(out, *held_out())}
    (out / "holdout.json").write_text(json.dumps(rep, indent=1) + "\n")
    print(json.dumps(rep, indent=1))


def holdout_report(out: Path, x_te: np.ndarray, t_te: np.ndarray, sets: list[str]) -> dict:
    """The exported network's estimates on the held-out crops ``x_te`` (as stored; ONNX Runtime, the 4
    views the default averages): per output, its RMSE, its quantiles where the probe has none of that
    aberration, and the share flagged at each threshold by its true value."""
    from clusterspy.weights.card import ModelCard
    from clusterspy.weights.network import OnnxNetwork, mean_of_views

    v7 = json.loads((ROOT / "src/clusterspy/weights/isomernet-v7/model_card.json").read_text())
    card = ModelCard({"crop_px": 96, "pixel_size_A": 0.4, "normalisation": v7["normalisation"],
                      "test_time_augmentation": "dihedral8"}, out)
    net = OnnxNetwork(out / "model.onnx", card, verify=False)
    est = np.asarray(mean_of_views(net.run_views(x_te, [0, 1, 2, 3]))[0], dtype=np.float64)
    rep: dict = {"n_holdout": len(t_te), "sets": {s: sets.count(s) for s in sorted(set(sets))}}
    v6 = np.array([s == "train_v6" for s in sets])
    bins = {"elongation_A": ((0.3, 0.8), (0.8, 1.2), (1.2, 1.6), (1.6, 2.0), (2.0, 2.5)),
            "three_fold_rad": ((0.1, 1.0), (1.0, 2.0), (2.0, 4.0), (4.0, 8.0), (8.0, 30.0))}
    thresholds = {"elongation_A": (1.0, 1.2, 1.3, 1.4, 1.5, 1.6), "three_fold_rad": (2.0, 3.0, 4.0, 5.0, 6.0)}
    for j, name in enumerate(OUTPUTS):
        e, t = est[:, j], t_te[:, j]
        none = t == 0
        figures = {}
        for thr in thresholds[name]:
            row = {"none_flagged": round(float(np.mean(e[none] >= thr)), 4)}
            for lo, hi in bins[name]:
                sel = (t >= lo) & (t <= hi)
                row[f"flagged_{lo:g}-{hi:g}"] = round(float(np.mean(e[sel] >= thr)), 4) if sel.any() else None
            figures[f"{thr:g}"] = row
        rep[name] = {"rmse": round(float(np.sqrt(np.mean((e - t) ** 2))), 3), "n_none": int(none.sum()),
                     "none_quantiles": {str(q): round(float(np.percentile(e[none], q)), 3)
                                        for q in (50, 95, 99, 99.5, 100)},
                     "flagged_share_by_threshold": figures}
    # v1's own held-out figures on the first output (the v6 set's last 2,000), to compare like with like
    e, t = est[v6, 0], t_te[v6, 0]
    rep["elongation_A_on_v1_holdout"] = {
        "rmse": round(float(np.sqrt(np.mean((e - t) ** 2))), 3),
        "round_flagged_at_1.5": round(float(np.mean(e[t == 0] >= 1.5)), 4),
        **{f"flagged_{lo:g}-{hi:g}_at_1.5": round(float(np.mean(e[(t >= lo) & (t <= hi)] >= 1.5)), 4)
           for lo, hi in bins["elongation_A"]}}
    return rep


if __name__ == "__main__":
    main()
