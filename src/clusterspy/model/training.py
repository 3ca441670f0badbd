"""Training: config → dataset (zarr) → CNN with checkpoints/resume → calibration → ONNX + card.

The configuration lives here; :func:`train` composes the pieces (data, loop, export). Command::

    clusterspy train --config configs/train_v2.yaml --out runs/v2

Every epoch writes ``checkpoint.pt`` (atomically), then its log row; rerunning the same command
after a crash or ``kill -9`` resumes from it, and a config that changed what a step does is
refused (``epochs``, ``max_steps``, ``wall_budget_min``, ``threads`` and ``workers`` may change).
The learning rate follows a cosine schedule over ``progress = step / total_steps`` (a budget in
steps: ``max_steps`` caps the planned ones), so a resumed run repeats an uninterrupted one;
``wall_budget_min`` only stops a call between epochs (run the same command again to go on).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

from clusterspy.errors import ConfigError

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
    "max_steps": None,  # budget in optimiser steps the schedule anneals over (default: planned)
    "wall_budget_min": 30.0,  # one call stops between epochs after this [min]; rerun to go on
    "threads": None,  # torch CPU threads (default: torch's choice)
    "workers": None,  # Dask workers for dataset generation (default: all cores)
    "unknown_precision": 0.99,  # target precision of accepted (non-"unknown") predictions
    "test_time_augmentation": True,  # try averaging logits over the 8 flips/rotations
    # weights the network starts from (fine-tuning): a state_dict saved with torch.save, or a
    # checkpoint.pt; None: random initialisation from the seed. Recorded with its SHA-256.
    "init_from": None,
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


#: Config keys a resumed run may change: how long it goes on, not what a step does.
RESUMABLE_KEYS = frozenset({"epochs", "max_steps", "wall_budget_min", "threads", "workers", "generate"})


def check_resumable(cfg: dict[str, Any], out: Path) -> None:
    """Refuse to resume the run in ``out`` with a config that changes what a step does.

    Raises
    ------
    ConfigError
        One line naming the keys that differ from ``out/config.json`` and the way to start afresh.
    """
    saved_path = out / "config.json"
    if not saved_path.is_file():
        return
    saved = _upgraded(json.loads(saved_path.read_text(encoding="utf-8")))
    now = _upgraded(json.loads(json.dumps(cfg, default=str)))
    changed = sorted(k for k in set(saved) | set(now)
                     if k not in RESUMABLE_KEYS and saved.get(k) != now.get(k))
    if changed:
        what = "; ".join(f"{k} was {json.dumps(saved.get(k))[:40]}, now {json.dumps(now.get(k))[:40]}"
                         for k in changed[:3])
        raise ConfigError(
            f"{out} holds a training run made with another config ({what}); resume it with the "
            "same config, or start afresh with --no-resume or another --out"
        )


def _upgraded(cfg: dict[str, Any]) -> dict[str, Any]:
    """A training config with its dataset specifications' renamed options under their new names
    (:func:`clusterspy.datasets.spec.upgrade_spec`): renaming one does not change a step."""
    from clusterspy.datasets.spec import upgrade_spec

    return {k: upgrade_spec(v) if k in ("dataset", "validation") else v for k, v in cfg.items()}


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` → ``"cuda"`` when a GPU is available, else ``"cpu"``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA GPU is available; use --device cpu")
    return device


def train(
    config: dict[str, Any] | str | Path,
    out_dir: str | Path,
    *,
    resume: bool = True,
    device: str = "auto",
    progress: bool = True,
) -> Path:
    """Train, calibrate and export an isomer classifier.

    Composes the pieces: :mod:`~clusterspy.model.data` (generate and load the datasets),
    :mod:`~clusterspy.model.loop` (epochs, log, checkpoints) and
    :func:`~clusterspy.model.export.export_trained` (confidence calibration, ONNX, card).

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

    from clusterspy.datasets import load_spec
    from clusterspy.model.data import dataset_spec, prepare_data, reload_data, train_path, training_set_sha256
    from clusterspy.model.export import export_trained
    from clusterspy.model.loop import Schedule, load_checkpoint, load_initial_weights, new_state, run_epochs
    from clusterspy.model.network import count_parameters, create_model

    t_start = time.time()
    cfg = load_config(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    if resume and (out / "checkpoint.pt").exists():
        check_resumable(cfg, out)
    if cfg["threads"]:
        torch.set_num_threads(int(cfg["threads"]))
    with open(out / "config.json", "w", encoding="utf-8") as fh:
        json.dump(cfg, fh, indent=2)
    spec = dataset_spec(cfg)
    data, gen_s = prepare_data(cfg, spec, out, progress=progress)

    torch.manual_seed(int(cfg["seed"]))
    net_cfg = dict(cfg["network"])
    model = create_model(net_cfg.pop("name"), **net_cfg).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=float(cfg["lr"]),
                            weight_decay=float(cfg["weight_decay"]))
    ckpt = out / "checkpoint.pt"
    if resume and ckpt.exists():
        state = load_checkpoint(model, opt, ckpt, dev)
    else:
        state = new_state()
        if cfg["init_from"]:
            state["init_sha256"] = load_initial_weights(model, cfg["init_from"], dev)
    if not cfg["grow"]:  # a set generated again (on another machine) must be the one trained on so far
        _check_same_training_set(state, training_set_sha256(data), train_path(cfg, out))
    reload = (lambda: reload_data(data, cfg, out)) if cfg["grow"] else None
    state = run_epochs(model, opt, data, state, cfg, Schedule.from_config(cfg, spec), out, dev,
                       progress=progress, reload=reload)
    if reload is not None:
        reload()
    where = config if not isinstance(config, dict) else "<dict>"
    training = {
        "config": cfg,
        "dataset_spec": spec,
        "validation_spec": load_spec(cfg["validation"]) if cfg["validation"] else None,
        "seed": int(cfg["seed"]),
        "command": f"clusterspy train --config {where} --out {out}",
        "device": dev,
        "n_train": len(data.train_idx), "n_calibration": len(data.cal_idx),
        "epochs_run": state["epoch"], "steps": state["step"], "finished": bool(state["done"]),
        "train_seconds": round(state["train_seconds"], 1),
        "dataset_generation_seconds": round(gen_s, 1),
        "training_set_sha256": state.get("data_sha256"),
        "init_from": ({"path": str(cfg["init_from"]), "sha256": state.get("init_sha256")}
                      if cfg["init_from"] else None),
        "wall_seconds_this_call": round(time.time() - t_start, 1),
        "parameters": count_parameters(model),
        "history": state["history"],
        "fast_calibration": _simulator_parameters(spec),
    }
    return export_trained(model, data, cfg, spec, out, dev, training)


def _check_same_training_set(state: dict[str, Any], sha256: str, path: Path) -> None:
    """Record the training set's SHA-256 in the loop state, or refuse to resume a run that was
    trained so far on another set (e.g. one generated again with other library versions).

    Raises
    ------
    ConfigError
        One line naming the set and both hashes' first digits.
    """
    saved = state.get("data_sha256")
    if saved is not None and saved != sha256:
        raise ConfigError(
            f"the training set {path} (sha256 {sha256[:12]}) is not the one this run was trained on "
            f"so far ({saved[:12]}): generate it with the same specification and library versions, or "
            "start afresh with --no-resume")
    state["data_sha256"] = sha256


def _simulator_parameters(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The fast simulator's fitted parameters the training set was made with (pinned or shipped).

    Recorded in the card as ``training["fast_calibration"]`` (the key is part of the card format,
    kept from before the parameters' rename in issue #17).
    """
    if spec.get("backend") != "fast":
        return None
    from clusterspy.datasets.spec import upgrade_spec
    from clusterspy.simulation import parameters_record

    return parameters_record(upgrade_spec(spec).get("backend_options", {}).get("parameters"))
