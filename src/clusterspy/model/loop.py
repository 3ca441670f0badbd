"""The training loop: epochs of augmented mini-batches under a cosine schedule, evaluation after
each epoch, the log (``log.csv``, ``log.jsonl``) and atomic checkpoints that make a resumed run
repeat an uninterrupted one bit for bit.

``model`` is a ``torch.nn.Module`` and ``opt`` a ``torch.optim.Optimizer`` throughout (PyTorch is
imported inside the functions, so importing this module stays light).
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.errors import ConfigError
from clusterspy.isomers import CLASSES
from clusterspy.model.data import TrainingData

#: Columns of ``log.csv`` (one row per epoch; ``log.jsonl`` holds the same rows).
LOG_FIELDS = ["epoch", "step", "train_seconds", "lr", "train_loss", "train_acc", "cal_loss",
              "cal_acc", "val_prism_loss", "val_prism_acc"]


@dataclass(frozen=True)
class Schedule:
    """Cosine learning rate over ``progress = step / total_steps``: a budget in steps.

    The learning rate of a step depends on the step alone, never on the clock, so a resumed
    run repeats an uninterrupted one whatever the machine's speed. The wall budget only stops
    the loop between epochs (checkpointed; the same command again goes on).

    Attributes
    ----------
    lr : float
        Peak learning rate.
    total_steps : int
        Optimiser steps of the schedule: the planned ones, or the config's ``max_steps`` if fewer.
    budget_s : float
        Wall budget of the training loop [s].
    """

    lr: float
    total_steps: int
    budget_s: float

    @classmethod
    def from_config(cls, config: dict[str, Any], spec: dict[str, Any]) -> Schedule:
        """The schedule of a training config and its dataset specification."""
        k_cal = int(config["calibration_every"])
        n_planned = int(spec["n_images"]) * (k_cal - 1) // k_cal
        total = (n_planned // int(config["batch_size"])) * int(config["epochs"])
        if config.get("max_steps"):
            total = min(total, int(config["max_steps"]))
        return cls(float(config["lr"]), total, float(config["wall_budget_min"]) * 60.0)

    def progress(self, state: dict[str, Any]) -> float:
        """How far training is, 0 … ≥ 1, in optimiser steps."""
        return state["step"] / max(self.total_steps, 1)

    def out_of_time(self, seconds: float) -> bool:
        """Whether ``seconds`` of training in this call [s] have spent the wall budget."""
        return seconds >= self.budget_s

    def learning_rate(self, frac: float) -> float:
        """The learning rate at progress ``frac``."""
        return self.lr * 0.5 * (1 + np.cos(np.pi * min(frac, 1.0)))


def new_state() -> dict[str, Any]:
    """The loop state of a fresh run (saved in every checkpoint)."""
    return {"epoch": 0, "step": 0, "train_seconds": 0.0, "history": [], "done": False}


def dihedral(x: Any, gen: Any) -> Any:
    """Random element of the dihedral group D4 (8 flips/rotations) per sample.

    ``x`` is a ``(N, 1, rows, cols)`` tensor; ``gen`` the ``torch.Generator`` of the epoch.
    """
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


def logits_of(model: Any, x: np.ndarray, device: str, batch: int = 256) -> np.ndarray:
    """The network's logits ``(N, classes)`` for normalised crops ``x`` ``(N, rows, cols)``."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(np.asarray(x[i : i + batch], np.float32))[:, None].to(device)
            out.append(model(xb).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)


def save_checkpoint(model: Any, opt: Any, state: dict[str, Any], cfg: dict[str, Any], path: Path) -> None:
    """Write ``{"model", "optimizer", "state", "config"}`` to ``path`` atomically (temp + rename)."""
    import torch

    obj = {"model": model.state_dict(), "optimizer": opt.state_dict(), "state": state, "config": cfg}
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(model: Any, opt: Any, path: Path, device: str) -> dict[str, Any]:
    """Load weights and optimiser from the checkpoint at ``path``; return its loop state."""
    import torch

    saved = torch.load(path, map_location=device, weights_only=False)
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["optimizer"])
    state = saved["state"]
    print(f"resumed from {path} at epoch {state['epoch']} step {state['step']}", flush=True)
    return state


def load_initial_weights(model: Any, path: str | Path, device: str) -> str:
    """Start ``model`` from the weights in ``path`` (fine-tuning) and return the file's SHA-256.

    ``path`` holds a ``state_dict`` saved with ``torch.save``, or a :func:`save_checkpoint` file
    (its ``"model"``). The architecture must match the config's network.

    Raises
    ------
    ConfigError
        One line when the file is missing or its weights do not fit the network.
    """
    import hashlib

    import torch

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"init_from: no weights file {p}")
    saved = torch.load(p, map_location=device, weights_only=False)
    weights = saved.get("model", saved) if isinstance(saved, dict) else saved
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"init_from: the weights in {p} do not fit the network ({first})") from None
    sha = hashlib.sha256(p.read_bytes()).hexdigest()
    print(f"started from the weights in {p} (sha256 {sha[:12]})", flush=True)
    return sha


def train_epoch(model: Any, opt: Any, data: TrainingData, state: dict[str, Any], cfg: dict[str, Any],
                schedule: Schedule, device: str, *, progress: bool) -> dict[str, float]:
    """One epoch of augmented mini-batches (stops early when the schedule is spent).

    Every epoch reseeds augmentation, dropout and the batch order from the seed and the epoch
    number, so a resumed run repeats an uninterrupted one. Returns ``lr``, ``train_loss``,
    ``train_acc`` of the epoch.
    """
    import torch
    import torch.nn.functional as F

    seed = int(cfg["seed"])
    gen = torch.Generator().manual_seed(seed + 1000 * state["epoch"])
    torch.manual_seed(seed + 1000 * state["epoch"] + 1)
    x_t = torch.from_numpy(data.x)
    y_t = torch.from_numpy(data.labels.astype(np.int64))
    bs = int(cfg["batch_size"])
    steps_per_epoch = len(data.train_idx) // bs
    model.train()
    perm = np.random.default_rng([seed, state["epoch"]]).permutation(data.train_idx)
    tl, tc, tn = 0.0, 0, 0
    lr = schedule.learning_rate(schedule.progress(state))
    t_ep = time.time()
    for b in range(steps_per_epoch):
        frac = schedule.progress(state)
        if frac >= 1.0:
            break
        lr = schedule.learning_rate(frac)
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.from_numpy(perm[b * bs : (b + 1) * bs])
        xb = dihedral(x_t[idx].float()[:, None], gen).to(device)
        yb = y_t[idx].to(device)
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
    return {"lr": lr, "train_loss": tl / max(tn, 1), "train_acc": tc / max(tn, 1)}


def evaluate_epoch(model: Any, data: TrainingData, state: dict[str, Any], epoch: dict[str, float],
                   device: str) -> dict[str, Any]:
    """The log row of an epoch: its training figures, the held-out and validation loss/accuracy."""
    import torch
    import torch.nn.functional as F

    cal_logits = logits_of(model, data.x[data.cal_idx], device)
    cal_y = torch.from_numpy(data.labels.astype(np.int64))[torch.from_numpy(data.cal_idx)]
    row = {
        "epoch": state["epoch"], "step": state["step"],
        "train_seconds": round(state["train_seconds"], 1), "lr": epoch["lr"],
        "train_loss": epoch["train_loss"], "train_acc": epoch["train_acc"],
        "cal_loss": float(F.cross_entropy(torch.from_numpy(cal_logits), cal_y).item()),
        "cal_acc": float((cal_logits.argmax(1) == data.labels[data.cal_idx]).mean()),
        "val_prism_loss": None, "val_prism_acc": None,
    }
    if data.val_x is not None:
        vl = logits_of(model, data.val_x, device)
        row["val_prism_loss"] = float(F.cross_entropy(torch.from_numpy(vl),
                                                      torch.from_numpy(data.val_y)).item())
        row["val_prism_acc"] = float((vl.argmax(1) == data.val_y).mean())
    return row


def write_log(out: Path, history: list[dict[str, Any]]) -> None:
    """Write ``log.csv`` and ``log.jsonl`` afresh (atomically) from a checkpoint's ``history``.

    A resumed run starts from its checkpoint's rows: a row logged after the last checkpoint
    (a kill between the two) is dropped, a checkpointed one missing from the log is restored.
    """
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(LOG_FIELDS)
    writer.writerows([row[f] for f in LOG_FIELDS] for row in history)
    for name, body in (("log.csv", text.getvalue()),
                       ("log.jsonl", "".join(json.dumps(row) + "\n" for row in history))):
        tmp = out / f".{name}.tmp{os.getpid()}"
        tmp.write_text(body, encoding="utf-8", newline="")
        os.replace(tmp, out / name)


def append_log(out: Path, row: dict[str, Any]) -> None:
    """Append an epoch's row to ``log.csv`` and ``log.jsonl``, and print it."""
    with open(out / "log.csv", "a", newline="") as fh:
        csv.writer(fh).writerow([row[f] for f in LOG_FIELDS])
    with open(out / "log.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def run_epochs(model: Any, opt: Any, data: TrainingData, state: dict[str, Any], cfg: dict[str, Any],
               schedule: Schedule, out: Path, device: str, *, progress: bool,
               reload: Callable[[], None] | None = None) -> dict[str, Any]:
    """Train until ``cfg["epochs"]`` or the schedule is spent, checkpointing every epoch.

    ``reload`` (datasets generated alongside training) is called before every epoch but the
    first. An epoch's log row is written after its checkpoint. When the wall budget is spent
    the loop stops between epochs with ``done`` false (the same command again goes on for
    another budget, exactly as if never stopped). Returns the final state (also in the last
    checkpoint).
    """
    ckpt = out / "checkpoint.pt"
    write_log(out, state["history"])
    state["done"] = False
    started_s = state["train_seconds"]
    while state["epoch"] < int(cfg["epochs"]) and schedule.progress(state) < 1.0:
        if schedule.out_of_time(state["train_seconds"] - started_s):
            print(f"wall budget of {schedule.budget_s / 60:g} min spent at epoch {state['epoch']}, "
                  f"step {state['step']}: run the same command again to go on", flush=True)
            break
        if reload is not None and state["epoch"] > 0:
            reload()
        epoch = train_epoch(model, opt, data, state, cfg, schedule, device, progress=progress)
        row = evaluate_epoch(model, data, state, epoch, device)
        state["history"].append(row)
        state["epoch"] += 1
        save_checkpoint(model, opt, state, cfg, ckpt)
        append_log(out, row)
    else:
        state["done"] = True
    save_checkpoint(model, opt, state, cfg, ckpt)
    return state
