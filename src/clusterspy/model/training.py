"""Training: config → dataset (zarr) → CNN with checkpoints/resume → calibration → ONNX + card.

Exact command (the team's CLI wires ``clusterspy train --config CONFIG --out DIR`` to
:func:`train`)::

    python -m clusterspy.model.training --config configs/train_v2.yaml --out runs/v2

Every epoch writes ``checkpoint.pt`` (atomically); rerunning the same command after a crash or
``kill -9`` resumes from it. The learning rate follows a cosine schedule over
``progress = max(step / total_steps, train_seconds / wall_budget_s)`` so a run that is slower
than planned still anneals and ends within its wall budget.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.errors import ConfigError
from clusterspy.isomers import CLASSES

#: Default training configuration (a config file is merged over it).
DEFAULT_CONFIG: dict[str, Any] = {
    "name": "isomernet",
    "seed": 1234,
    "network": {"name": "isomernet", "widths": [24, 32, 64, 128], "dropout": 0.2},
    # clusterspy.datasets specification of the training set (fast backend): a mapping, or the
    # path of a specification file (relative paths are taken from the working directory)
    "dataset": {},
    "dataset_path": None,  # default OUT/train.zarr
    "validation": None,  # specification (mapping or file) of the PRISM validation set, or None
    "validation_path": None,  # default OUT/val_prism.zarr
    "calibration_every": 10,  # examples with (index // 4) % k == k - 1 are held out (calibration)
    "generate": True,  # generate (or finish) the datasets first; False: use what exists
    "grow": False,  # reload finished chunks each epoch (dataset generated alongside training)
    "epochs": 10,
    "batch_size": 64,
    "lr": 3e-3,
    "weight_decay": 1e-4,
    "label_smoothing": 0.0,
    "wall_budget_min": 30.0,
    "threads": None,  # torch CPU threads (default: torch's choice)
    "workers": None,  # Dask workers for dataset generation (default: all cores)
    "unknown_precision": 0.99,  # target precision of accepted (non-"unknown") predictions
    "test_time_augmentation": True,  # try averaging logits over the 8 flips/rotations
}


def load_config(config: dict[str, Any] | str | Path) -> dict[str, Any]:
    """Merge a training config (dict or YAML/JSON file) over :data:`DEFAULT_CONFIG`."""
    from clusterspy.datasets.spec import read_config

    user = copy.deepcopy(config) if isinstance(config, dict) else read_config(config)
    unknown = set(user) - set(DEFAULT_CONFIG)
    if unknown:
        raise ConfigError(f"unknown training config keys: {', '.join(sorted(unknown))}")
    cfg = copy.deepcopy(DEFAULT_CONFIG)
    for k, v in user.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k].update(v)
        else:
            cfg[k] = v
    return cfg


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` → ``"cuda"`` when a GPU is available, else ``"cpu"``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA GPU is available; use --device cpu")
    return device


def _dihedral(x, gen):
    """Random element of the dihedral group D4 (8 flips/rotations) per sample."""
    import torch

    n = x.shape[0]
    k = torch.randint(0, 4, (n,), generator=gen)
    flip = torch.randint(0, 2, (n,), generator=gen).bool()
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    out = x.clone()
    for r in (1, 2, 3):
        sel = k == r
        if sel.any():
            out[sel] = torch.rot90(x[sel], r, dims=(-2, -1))
    return out


def _atomic_save(obj: Any, path: Path) -> None:
    import torch

    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _logits(model, x: np.ndarray, device: str, batch: int = 256) -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(np.asarray(x[i : i + batch], np.float32))[:, None].to(device)
            out.append(model(xb).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)


def _reload_val(cfg: dict[str, Any], out: Path, val_x, val_y):
    """Finished examples of the PRISM validation set (it may be generated alongside)."""
    from clusterspy.datasets import load
    from clusterspy.weights import normalise_crops

    if not cfg["validation"]:
        return val_x, val_y
    vpath = Path(cfg["validation_path"] or out / "val_prism.zarr")
    if not (vpath / "zarr.json").exists():
        return val_x, val_y
    vimg, vy, _ = load(vpath, partial=True)
    if len(vy) == 0:
        return val_x, val_y
    return normalise_crops(vimg, None), vy


def train(
    config: dict[str, Any] | str | Path,
    out_dir: str | Path,
    *,
    resume: bool = True,
    device: str = "auto",
    progress: bool = True,
) -> Path:
    """Train, calibrate and export an isomer classifier.

    Parameters
    ----------
    config : dict or path
        Training configuration (YAML/JSON; see :data:`DEFAULT_CONFIG` and ``configs/``).
    out_dir : path
        Output folder: ``checkpoint.pt``, ``log.csv``, ``log.jsonl``, ``model.onnx``,
        ``model_card.json``, ``loss_curves.png``, ``confusion_prism_val.png``, datasets.
    resume : bool
        Continue from ``out_dir/checkpoint.pt`` when it exists (default).
    device : str
        ``"auto"`` (CUDA if present, else CPU), ``"cpu"`` or ``"cuda"``.
    progress : bool
        Show progress bars.

    Returns
    -------
    pathlib.Path
        Path of the exported ``model.onnx`` (its ``model_card.json`` is next to it).
    """
    import torch
    import torch.nn.functional as F

    from clusterspy.datasets import generate, load, load_spec
    from clusterspy.datasets.spec import user_spec
    from clusterspy.model.network import count_parameters, create_model
    from clusterspy.weights import normalise_crops

    t_start = time.time()
    cfg = load_config(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    if cfg["threads"]:
        torch.set_num_threads(int(cfg["threads"]))
    with open(out / "config.json", "w", encoding="utf-8") as fh:
        json.dump(cfg, fh, indent=2)
    spec = load_spec(cfg["dataset"])
    if spec["seed"] == 0 and "seed" not in user_spec(cfg["dataset"]):
        spec["seed"] = int(cfg["seed"])

    # ---- data ------------------------------------------------------------------------------
    train_path = Path(cfg["dataset_path"] or out / "train.zarr")
    t0 = time.time()
    if cfg["generate"]:
        generate(spec, train_path, num_workers=cfg["workers"], progress=progress)
    gen_s = time.time() - t0
    partial = not cfg["generate"]
    k_cal = int(cfg["calibration_every"])

    def load_train():
        images, labels, metas = load(train_path, partial=partial)
        index = np.asarray([m["index"] for m in metas], dtype=np.int64)
        x = normalise_crops(images, None).astype(np.float16)
        cal_mask = (index // 4) % k_cal == k_cal - 1
        return x, labels, np.nonzero(~cal_mask)[0], np.nonzero(cal_mask)[0]

    x_all, labels, tr_idx, cal_idx = load_train()
    if len(tr_idx) < int(cfg["batch_size"]) or len(cal_idx) < 4:
        raise ConfigError(f"dataset {train_path} has too few finished examples ({len(labels)})")
    val_x = val_y = None
    if cfg["validation"]:
        vspec = load_spec(cfg["validation"])
        vpath = Path(cfg["validation_path"] or out / "val_prism.zarr")
        if cfg["generate"]:
            generate(vspec, vpath, num_workers=cfg["workers"], progress=progress)
        if (vpath / "zarr.json").exists():
            vimg, val_y, _ = load(vpath, partial=partial)
            val_x = normalise_crops(vimg, None) if len(val_y) else None
            if val_x is None:
                val_y = None

    # ---- model / optimiser -----------------------------------------------------------------
    torch.manual_seed(int(cfg["seed"]))
    net_cfg = dict(cfg["network"])
    model = create_model(net_cfg.pop("name"), **net_cfg).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=float(cfg["lr"]),
                            weight_decay=float(cfg["weight_decay"]))
    bs = int(cfg["batch_size"])
    n_planned = int(spec["n_images"]) * (k_cal - 1) // k_cal
    total_steps = (n_planned // bs) * int(cfg["epochs"])
    budget_s = float(cfg["wall_budget_min"]) * 60.0
    state = {"epoch": 0, "step": 0, "train_seconds": 0.0, "history": [], "done": False}
    ckpt = out / "checkpoint.pt"
    if resume and ckpt.exists():
        saved = torch.load(ckpt, map_location=dev, weights_only=False)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        state = saved["state"]
        print(f"resumed from {ckpt} at epoch {state['epoch']} step {state['step']}", flush=True)

    def progress_frac() -> float:
        return max(state["step"] / max(total_steps, 1), state["train_seconds"] / budget_s)

    log_csv = out / "log.csv"
    fields = ["epoch", "step", "train_seconds", "lr", "train_loss", "train_acc", "cal_loss",
              "cal_acc", "val_prism_loss", "val_prism_acc"]
    if not log_csv.exists():
        with open(log_csv, "w", newline="") as fh:
            csv.writer(fh).writerow(fields)

    while state["epoch"] < int(cfg["epochs"]) and progress_frac() < 1.0:
        if cfg["grow"] and state["epoch"] > 0:
            x_all, labels, tr_idx, cal_idx = load_train()
            val_x, val_y = _reload_val(cfg, out, val_x, val_y)
        # every epoch reseeds augmentation and dropout: a resumed run repeats an uninterrupted one
        gen = torch.Generator().manual_seed(int(cfg["seed"]) + 1000 * state["epoch"])
        torch.manual_seed(int(cfg["seed"]) + 1000 * state["epoch"] + 1)
        x_t = torch.from_numpy(x_all)
        y_t = torch.from_numpy(labels.astype(np.int64))
        steps_per_epoch = len(tr_idx) // bs
        model.train()
        rng = np.random.default_rng([int(cfg["seed"]), state["epoch"]])
        perm = rng.permutation(tr_idx)
        tl, tc, tn = 0.0, 0, 0
        t_ep = time.time()
        for b in range(steps_per_epoch):
            frac = progress_frac()
            if frac >= 1.0:
                break
            lr = float(cfg["lr"]) * 0.5 * (1 + np.cos(np.pi * min(frac, 1.0)))
            for g in opt.param_groups:
                g["lr"] = lr
            idx = torch.from_numpy(perm[b * bs : (b + 1) * bs])
            xb = _dihedral(x_t[idx].float()[:, None], gen).to(dev)
            yb = y_t[idx].to(dev)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb, label_smoothing=float(cfg["label_smoothing"]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tl += loss.item() * len(idx)
            tc += int((logits.argmax(1) == yb).sum())
            tn += len(idx)
            state["step"] += 1
            now = time.time()
            state["train_seconds"] += now - t_ep
            t_ep = now
            if progress and b % 50 == 0:
                print(f"epoch {state['epoch']} step {b}/{steps_per_epoch} loss {tl / tn:.4f} "
                      f"acc {tc / tn:.3f} lr {lr:.2e} t {state['train_seconds']:.0f}s", flush=True)
        # ---- evaluation ----------------------------------------------------------------------
        cal_logits = _logits(model, x_all[cal_idx], dev)
        row = {
            "epoch": state["epoch"], "step": state["step"],
            "train_seconds": round(state["train_seconds"], 1), "lr": lr,
            "train_loss": tl / max(tn, 1), "train_acc": tc / max(tn, 1),
            "cal_loss": float(F.cross_entropy(torch.from_numpy(cal_logits),
                                              y_t[torch.from_numpy(cal_idx)]).item()),
            "cal_acc": float((cal_logits.argmax(1) == labels[cal_idx]).mean()),
            "val_prism_loss": None, "val_prism_acc": None,
        }
        if val_x is not None:
            vl = _logits(model, val_x, dev)
            row["val_prism_loss"] = float(F.cross_entropy(torch.from_numpy(vl),
                                                          torch.from_numpy(val_y)).item())
            row["val_prism_acc"] = float((vl.argmax(1) == val_y).mean())
        state["history"].append(row)
        with open(log_csv, "a", newline="") as fh:
            csv.writer(fh).writerow([row[f] for f in fields])
        with open(out / "log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
        state["epoch"] += 1
        _atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                      "state": state, "config": cfg}, ckpt)
    state["done"] = True
    _atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                  "state": state, "config": cfg}, ckpt)

    # ---- calibration -----------------------------------------------------------------------
    from clusterspy.model import calibration as cal
    from clusterspy.model.export import export_onnx, write_card

    if cfg["grow"]:
        x_all, labels, tr_idx, cal_idx = load_train()
        val_x, val_y = _reload_val(cfg, out, val_x, val_y)
    cal_logits = _logits(model, x_all[cal_idx], dev)
    cal_y = labels[cal_idx]
    fit_logits, fit_y = cal_logits, cal_y
    if val_x is not None:
        v_logits = _logits(model, val_x, dev)
        fit_logits = np.concatenate([cal_logits, v_logits])
        fit_y = np.concatenate([cal_y, val_y])
    # the two calibration sets weigh equally (the fast hold-out is much larger)
    fit_w = cal.balanced_weights([len(cal_y), len(fit_y) - len(cal_y)])
    temperature = cal.fit_temperature(fit_logits, fit_y, fit_w)
    fit_p = cal._softmax(fit_logits, temperature)
    threshold = cal.choose_threshold(fit_p, fit_y, float(cfg["unknown_precision"]))
    metrics: dict[str, Any] = {
        "calibration_set": {
            "what": "held-out fast-simulated examples ((index // 4) % k == k-1) of the dataset"
            + (" + PRISM validation set" if val_x is not None else ""),
            "n": len(fit_y),
            "accuracy": float((fit_p.argmax(1) == fit_y).mean()),
            "ece_before": cal.expected_calibration_error(cal._softmax(fit_logits, 1.0), fit_y),
            "ece_after": cal.expected_calibration_error(fit_p, fit_y),
            **cal.selective_metrics(fit_p, fit_y, threshold),
        },
        "fast_holdout": {
            "n": len(cal_y),
            "accuracy": float((cal_logits.argmax(1) == cal_y).mean()),
        },
    }
    if val_x is not None:
        vp = cal._softmax(v_logits, temperature)
        metrics["prism_validation"] = {
            "n": len(val_y),
            "accuracy": float((vp.argmax(1) == val_y).mean()),
            "ece": cal.expected_calibration_error(vp, val_y),
            "confusion": cal.confusion_matrix(vp.argmax(1), val_y).tolist(),
            **cal.selective_metrics(vp, val_y, threshold),
        }
    onnx_path = out / "model.onnx"
    export_onnx(model.cpu(), onnx_path, crop_px=int(spec["crop_px"]))
    training = {
        "config": cfg,
        "dataset_spec": spec,
        "validation_spec": load_spec(cfg["validation"]) if cfg["validation"] else None,
        "seed": int(cfg["seed"]),
        "command": "python -m clusterspy.model.training --config "
                   f"{config if not isinstance(config, dict) else '<dict>'} --out {out}",
        "device": dev,
        "n_train": len(tr_idx), "n_calibration": len(cal_idx),
        "epochs_run": state["epoch"], "steps": state["step"],
        "train_seconds": round(state["train_seconds"], 1),
        "dataset_generation_seconds": round(gen_s, 1),
        "wall_seconds_this_call": round(time.time() - t_start, 1),
        "parameters": count_parameters(model),
        "history": state["history"],
        "fast_calibration": _fast_calibration(spec),
    }
    write_card(onnx_path, spec=spec, temperature=temperature, threshold=threshold,
               metrics=metrics, training=training, network=cfg["network"],
               unknown_precision=float(cfg["unknown_precision"]))
    if cfg.get("test_time_augmentation", True):
        cal.recalibrate(out, tta=True)  # TTA (8 flips/rotations) kept if it helps held-out
    try:
        from clusterspy.model.figures import plot_training

        plot_training(out, state["history"],
                      metrics.get("prism_validation", {}).get("confusion"))
    except Exception as exc:
        print(f"warning: figures not written: {exc}", flush=True)
    return onnx_path


def _fast_calibration(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The fast simulator's calibration the training set was made with (pinned or shipped)."""
    if spec.get("backend") != "fast":
        return None
    from clusterspy.simulation import calibration_record

    return calibration_record(spec.get("backend_options", {}).get("calibration"))


def main(argv: list[str] | None = None) -> None:
    """``python -m clusterspy.model.training --config CONFIG --out DIR [--device D] [--no-resume]``."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-resume", action="store_true")
    a = ap.parse_args(argv)
    path = train(a.config, a.out, resume=not a.no_resume, device=a.device)
    print(f"model written to {path}")


if __name__ == "__main__":
    main()
