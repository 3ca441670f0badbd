"""Train astigmatism-v1: isomernet-v7's network with one output, the probe's extra FWHM [Å] along its
long axis (``Microscope.source_elongation_A``), regressed from the crops isomernet-v7 is shown.

The data are the training sets of isomernet-v6 and -v7 (``configs/dataset_train_v6.yaml``,
``configs/dataset_train_v7.yaml``: 30 % and 50 % of their images taken with the source drawn out by
0.3–2.5 Å; every image records ``source_elongation_A``). The last ``--holdout`` images of the v6 set are
never trained on; the figures in ``card.json`` are measured on them.

Usage (2 CPU cores, ~16 min)::

    export CLUSTERSPY_CACHE=runs/cache
    clusterspy dataset configs/dataset_train_v6.yaml runs/data/train_v6.zarr --workers 2
    clusterspy dataset configs/dataset_train_v7.yaml runs/data/train_v7.zarr --workers 2
    python training/astigmatism-v1/train.py --out runs/astigmatism-v1
    python training/astigmatism-v1/train.py --out runs/astigmatism-v1 --card 1.4 \
        --ship src/clusterspy/weights/probe/astigmatism-v1

``--card T`` (after training) writes and seals the card with the threshold ``T`` [Å] the default
withholds labels from; ``--ship`` copies ``model.onnx`` and the card there.
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


def elongations(metas: list[dict]) -> np.ndarray:
    """Each image's extra source FWHM [Å] along its long axis (0 for a round probe)."""
    return np.array([float(m.get("source_elongation_A") or 0.0) for m in metas], dtype=np.float32)


def write_card(out: Path, threshold_A: float, ship: Path | None = None) -> Path:
    """Write and seal ``model_card.json`` beside ``out/model.onnx`` (threshold ``threshold_A`` [Å]; the
    geometry and normalisation of isomernet-v7's card, whose crops it sees), and copy both to ``ship``."""
    import shutil
    from datetime import UTC, datetime

    from clusterspy.isomers import CLASSES
    from clusterspy.weights.card import ModelCard

    v7 = json.loads((ROOT / "src/clusterspy/weights/isomernet-v7/model_card.json").read_text())
    held = json.loads((out / "holdout.json").read_text())
    card = ModelCard({
        "name": "astigmatism-v1", "format": "clusterspy-model-card-1",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "classes": list(CLASSES),
        **{k: v7[k] for k in ("pixel_size_A", "crop_px", "field_factor", "normalisation",
                               "test_time_augmentation")},
        "input": {"name": "crops", "shape": ["N", 1, 96, 96], "dtype": "float32",
                  "note": "isomernet-v7's crops of the clusters, normalised "
                          "(clusterspy.weights.normalise_crops)"},
        "output": {"name": "elongation_A", "shape": ["N", 1],
                   "note": "the source's extra FWHM [Å] along its long axis "
                           "(Microscope.source_elongation_A)"},
        "astigmatism": {"threshold_A": float(threshold_A), "views": [0, 1, 2, 3],
                        "rule": "a label of the default stands only where the estimate on the second "
                                "opinion's crop (mean of 4 views) is below threshold_A",
                        "holdout": held},
        "training": {"script": "training/astigmatism-v1/train.py",
                     "init_from": "training/isomernet-v7/weights.pt",
                     "data": ["configs/dataset_train_v7.yaml", "configs/dataset_train_v6.yaml"]},
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
    ap.add_argument("--data", nargs="+", default=["runs/data/train_v7.zarr", "runs/data/train_v6.zarr"])
    ap.add_argument("--holdout", type=int, default=2000, help="last images of the last set, never trained on")
    ap.add_argument("--init", default=str(ROOT / "training/isomernet-v7/weights.pt"))
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=41)
    ap.add_argument("--out", default="runs/astigmatism-v1")
    ap.add_argument("--card", type=float, metavar="THRESHOLD_A", help="only write the card (after training)")
    ap.add_argument("--report", action="store_true", help="only measure the held-out images (after training)")
    ap.add_argument("--ship", type=Path, help="with --card: copy the network and its card to this folder")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.card is not None:
        print(write_card(out, args.card, args.ship))
        return
    if args.report:  # the held-out figures of a network trained already
        x, _, metas = load(args.data[-1])
        kept = ("args", "data_sha256_first256", "n_train", "seconds")
        rep = {**{k: v for k, v in json.loads((out / "holdout.json").read_text()).items() if k in kept},
               **holdout_report(out, x[-args.holdout:], elongations(metas)[-args.holdout:])}
        (out / "holdout.json").write_text(json.dumps(rep, indent=1) + "\n")
        print(json.dumps(rep, indent=1))
        return
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    rng = np.random.default_rng(args.seed)

    xs, es, shas = [], [], {}
    for p in args.data:
        x, _, metas = load(p)
        xs.append(normalise_crops(x).astype(np.float32))
        es.append(elongations(metas))
        shas[p] = hashlib.sha256(np.ascontiguousarray(x[:256]).tobytes()).hexdigest()[:16]
        raw_holdout = x[-int(args.holdout):]  # the last set's: as the default is given them
    x_all, e_all = np.concatenate(xs), np.concatenate(es)
    n_test = int(args.holdout)
    x_tr, e_tr, x_te, e_te = x_all[:-n_test], e_all[:-n_test], x_all[-n_test:], e_all[-n_test:]

    net = create_model("isomernet", widths=[24, 32, 64, 128], dropout=0.2)
    net.load_state_dict(torch.load(args.init, map_location="cpu"))
    net.head[2] = nn.Linear(net.head[2].in_features, 1)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps)
    t0 = time.time()
    log = [("step", "loss", "seconds")]
    running = 0.0
    for step in range(1, args.steps + 1):
        net.train()
        idx = rng.integers(0, len(x_tr), args.batch)
        xb = np.rot90(x_tr[idx], int(rng.integers(4)), axes=(1, 2))  # the elongation is a length: any view
        if rng.random() < 0.5:
            xb = xb[:, :, ::-1]
        pred = net(torch.from_numpy(np.ascontiguousarray(xb))[:, None])[:, 0]
        loss = nn.functional.smooth_l1_loss(pred, torch.from_numpy(e_tr[idx]), beta=0.3)
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
    export_onnx(net, out / "model.onnx", x_te.shape[-1], output_name="elongation_A")
    with open(out / "log.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(log)
    rep = {"args": {k: str(v) for k, v in vars(args).items()}, "data_sha256_first256": shas,
           "n_train": len(x_tr), "seconds": round(time.time() - t0), **holdout_report(out, raw_holdout, e_te)}
    (out / "holdout.json").write_text(json.dumps(rep, indent=1) + "\n")
    print(json.dumps(rep, indent=1))


def holdout_report(out: Path, x_te: np.ndarray, e_te: np.ndarray) -> dict:
    """The exported network's estimates on the held-out crops ``x_te`` (as stored, not normalised; ONNX
    Runtime, the 4 views the default averages): RMSE, the round probes' quantiles, and the share flagged
    at each threshold by elongation."""
    from clusterspy.weights.card import ModelCard
    from clusterspy.weights.network import OnnxNetwork, mean_of_views

    v7 = json.loads((ROOT / "src/clusterspy/weights/isomernet-v7/model_card.json").read_text())
    card = ModelCard({"crop_px": 96, "pixel_size_A": 0.4, "normalisation": v7["normalisation"],
                      "test_time_augmentation": "dihedral8"}, out)
    net = OnnxNetwork(out / "model.onnx", card, verify=False)
    est = np.asarray(mean_of_views(net.run_views(x_te, [0, 1, 2, 3]))[0], dtype=np.float64).reshape(-1)
    round_ = est[e_te == 0]
    figures = {}
    for thr in (1.0, 1.2, 1.3, 1.4, 1.5, 1.6):
        row = {"round_flagged": round(float(np.mean(round_ >= thr)), 4)}
        for lo, hi in ((0.3, 0.8), (0.8, 1.2), (1.2, 1.6), (1.6, 2.0), (2.0, 2.5)):
            sel = (e_te >= lo) & (e_te <= hi)
            row[f"flagged_{lo:.1f}-{hi:.1f}A"] = round(float(np.mean(est[sel] >= thr)), 4)
        figures[f"{thr:.1f}"] = row
    return {"n_holdout": len(e_te), "holdout_round": int(np.sum(e_te == 0)),
            "holdout_rmse_A": round(float(np.sqrt(np.mean((est - e_te) ** 2))), 3),
            "holdout_round_quantiles_A": {str(q): round(float(np.percentile(round_, q)), 3)
                                          for q in (50, 95, 99, 99.5, 100)},
            "flagged_share_by_threshold": figures}


if __name__ == "__main__":
    main()
