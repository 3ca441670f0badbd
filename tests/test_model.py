"""Model: network shapes, a tiny training run (loss decreases, resume), ONNX export, calibration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from clusterspy.isomers import CLASSES  # noqa: E402
from clusterspy.model import confidence_calibration as cal  # noqa: E402
from clusterspy.model.network import count_parameters, create_model  # noqa: E402


def test_network_shapes_and_size():
    net = create_model("isomernet").eval()
    with torch.no_grad():
        out = net(torch.zeros(3, 1, 96, 96))
    assert out.shape == (3, len(CLASSES))
    assert 0.2e6 <= count_parameters(net) <= 1e6
    small = create_model("isomernet", widths=[8, 8, 16, 16]).eval()
    with torch.no_grad():
        assert small(torch.zeros(1, 1, 40, 40)).shape == (1, 4)
    with pytest.raises(ValueError, match="unknown network"):
        create_model("resnet9000")


def test_calibration_helpers():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 2000)
    logits = rng.normal(0, 1, (2000, 4))
    logits[np.arange(2000), labels] += 2.0
    over = logits * 4  # over-confident
    t = cal.fit_temperature(over, labels)
    assert 1.3 < t < 6
    assert cal.nll(over, labels, t) < cal.nll(over, labels, 1.0)
    p = cal._softmax(over, t)
    assert cal.expected_calibration_error(p, labels) < cal.expected_calibration_error(
        cal._softmax(over, 1.0), labels)
    thr = cal.choose_threshold(p, labels, 0.99)
    sel = cal.selective_metrics(p, labels, thr)
    assert sel["precision_accepted"] >= 0.99 and 0 < sel["coverage"] < 1
    assert cal.confusion_matrix(p.argmax(1), labels).sum() == 2000


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from clusterspy.datasets import generate
    from clusterspy.model import train
    from helpers import toy_sample

    root = tmp_path_factory.mktemp("train")
    spec = {"seed": 5, "n_images": 320, "chunk_size": 32, "crop_px": 24, "pixel_size_A": 0.4}
    data = generate(spec, root / "toy.zarr", scheduler="synchronous", progress=False,
                    sample_fn=toy_sample)
    cfg = {"seed": 1, "dataset": spec, "dataset_path": str(data), "generate": False,
           "network": {"name": "isomernet", "widths": [8, 8, 16, 16], "dropout": 0.0},
           "epochs": 1, "batch_size": 16, "lr": 3e-3, "threads": 1, "wall_budget_min": 5}
    out = root / "run"
    train(cfg, out, progress=False)
    first = json.loads((out / "model_card.json").read_text())
    path = train({**cfg, "epochs": 3}, out, progress=False)  # resumes at epoch 1
    return out, path, first


def test_tiny_training_learns_and_resumes(tiny_run):
    out, _path, first = tiny_run
    card = json.loads((out / "model_card.json").read_text())
    hist = card["training"]["history"]
    assert [h["epoch"] for h in hist] == [0, 1, 2]  # epoch 0 not repeated after resume
    assert first["training"]["epochs_run"] == 1 and card["training"]["epochs_run"] == 3
    assert card["training"]["steps"] == 3 * first["training"]["steps"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert hist[-1]["cal_acc"] > 0.5  # 4 classes: chance is 0.25
    # the card keeps its key "fast_calibration" (card format); the file is fast_parameters.json
    assert card["training"]["fast_calibration"]["source"] == "shipped fast_parameters.json"
    lines = (out / "log.csv").read_text().strip().splitlines()
    assert len(lines) == 4  # header + 3 epochs
    for key in ("classes", "pixel_size_A", "crop_px", "normalisation", "temperature",
                "unknown_threshold", "weights_sha256", "metrics", "training"):
        assert key in card
    assert card["classes"] == list(CLASSES) and card["crop_px"] == 24
    assert (out / "loss_curves.png").exists()


def test_resume_on_another_training_set_is_refused(tiny_run, tmp_path):
    """A run resumed where its training set was generated again (runs/ does not outlive a machine)
    must find the set it was trained on: its checkpoint holds the set's SHA-256, and a set that
    differs (here: another seed at the same path) is refused in one line before any step."""
    import shutil

    from clusterspy.datasets import generate
    from clusterspy.errors import ConfigError
    from clusterspy.model import train
    from clusterspy.model.data import TrainingData, load_training_set, training_set_sha256
    from helpers import toy_sample

    out, _path, _ = tiny_run
    cfg = json.loads((out / "config.json").read_text())
    saved = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    data = TrainingData(*load_training_set(Path(cfg["dataset_path"]), partial=True,
                                           calibration_every=cfg["calibration_every"]))
    assert saved["state"]["data_sha256"] == training_set_sha256(data)
    assert json.loads((out / "model_card.json").read_text())["training"]["training_set_sha256"] == \
        training_set_sha256(data)
    run = tmp_path / "run"
    shutil.copytree(out, run)
    other = generate({**cfg["dataset"], "seed": 6}, tmp_path / "toy.zarr", scheduler="synchronous",
                     progress=False, sample_fn=toy_sample)
    cfg["dataset_path"] = str(other)  # as if the run's own path now held this set
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="is not the one this run was trained on"):
        train({**cfg, "epochs": 4}, run, progress=False)
    after = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert after["state"]["step"] == saved["state"]["step"]


def test_init_from_starts_from_the_weights_given_and_records_them(tiny_run, tmp_path):
    """Fine-tuning (``init_from``): step 0 is the given network, not the seed's random one, its
    SHA-256 lands in the card, and weights of another architecture are refused in one line."""
    import hashlib

    from clusterspy.errors import ConfigError
    from clusterspy.model import train
    from clusterspy.model.network import create_model as cm

    out, _path, _ = tiny_run
    cfg = json.loads((out / "config.json").read_text())
    saved = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    weights = tmp_path / "weights.pt"
    torch.save(saved["model"], weights)
    # lr 0: the weights cannot move, so the exported network is the one given to the bit
    run = tmp_path / "tuned"
    train({**cfg, "epochs": 1, "lr": 0.0, "init_from": str(weights)}, run, progress=False)
    after = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]
    for k, v in saved["model"].items():
        if k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue  # batch-norm statistics follow the data in training mode
        assert torch.equal(v, after[k]), k
    card = json.loads((run / "model_card.json").read_text())
    assert card["training"]["init_from"] == {"path": str(weights),
                                             "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    # the seed's own network differs from the one given
    fresh = cm("isomernet", widths=[8, 8, 16, 16], dropout=0.0).state_dict()
    assert not all(torch.equal(fresh[k], saved["model"][k]) for k in fresh)
    wrong = tmp_path / "wrong.pt"
    torch.save(cm("isomernet", widths=[8, 8, 16, 32], dropout=0.0).state_dict(), wrong)
    with pytest.raises(ConfigError, match="do not fit the network"):
        train({**cfg, "epochs": 1, "init_from": str(wrong)}, tmp_path / "bad", progress=False)
    with pytest.raises(ConfigError, match="no weights file"):
        train({**cfg, "epochs": 1, "init_from": str(tmp_path / "none.pt")}, tmp_path / "bad2",
              progress=False)


def test_onnx_matches_pytorch(tiny_run):
    from clusterspy.model.network import create_model as cm
    from clusterspy.predict import load_model, normalise_crops, softmax

    out, path, _ = tiny_run
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    net = cm("isomernet", widths=[8, 8, 16, 16], dropout=0.0)
    net.load_state_dict(ckpt["model"])
    net.eval()
    model = load_model(path)
    crops = np.random.default_rng(2).normal(size=(5, 24, 24)).astype(np.float32)
    from clusterspy.predict import dihedral_views

    x = normalise_crops(crops)[:, None]
    views = dihedral_views(x) if model.tta else [x]
    with torch.no_grad():
        ref = np.mean([net(torch.from_numpy(np.ascontiguousarray(v))).numpy() for v in views],
                      axis=0)
    np.testing.assert_allclose(model.predict_logits(crops), ref, atol=1e-4)
    np.testing.assert_allclose(model.predict_crops(crops), softmax(ref, model.temperature),
                               atol=1e-5)


_TRAIN_CHILD = """
import json, sys
from clusterspy.model import train
train(json.loads(sys.argv[1]), sys.argv[2], progress=False)
"""


@pytest.mark.slow  # ~20–25 s: two training runs of 4 epochs and a killed child process
def test_resume_after_kill_9_repeats_the_uninterrupted_run(tmp_path):
    """Kill -9 a training run at any point; resuming gives bit-identical weights."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import torch

    from clusterspy.datasets import generate
    from clusterspy.model import train
    from helpers import toy_sample

    spec = {"seed": 6, "n_images": 320, "chunk_size": 32, "crop_px": 24, "pixel_size_A": 0.4}
    data = generate(spec, tmp_path / "toy.zarr", scheduler="synchronous", progress=False,
                    sample_fn=toy_sample)
    cfg = {"seed": 2, "dataset": spec, "dataset_path": str(data), "generate": False,
           "network": {"name": "isomernet", "widths": [8, 8, 16, 16], "dropout": 0.2},
           "epochs": 4, "batch_size": 16, "lr": 3e-3, "threads": 1, "wall_budget_min": 60,
           "test_time_augmentation": False}
    train(cfg, tmp_path / "straight", progress=False)

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", _TRAIN_CHILD, json.dumps(cfg), str(killed)],
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    deadline = time.time() + 120
    while not (killed / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (killed / "checkpoint.pt").exists()
    train(cfg, killed, progress=False)  # resumes

    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    b = torch.load(killed / "checkpoint.pt", weights_only=False)
    assert a["state"]["step"] == b["state"]["step"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


def test_recalibrate_with_a_prism_set_weighs_both_sets_equally(tiny_run, tmp_path):
    from clusterspy.datasets import generate
    from clusterspy.model import confidence_calibration as cal
    from helpers import toy_sample

    w = cal.balanced_weights([2, 6])
    assert np.isclose(w[:2].sum(), w[2:].sum()) and w[0] == 3 * w[2]
    # a weighted temperature fit follows the weighted set
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 400)
    logits = rng.normal(size=(400, 4))
    logits[np.arange(400), labels] += 2.0
    sharp = logits * 3.0  # the same evidence, over-confident
    both, y2 = np.concatenate([logits, sharp]), np.concatenate([labels, labels])
    t_first = cal.fit_temperature(both, y2, np.r_[np.ones(400), np.full(400, 1e-6)])
    t_second = cal.fit_temperature(both, y2, np.r_[np.full(400, 1e-6), np.ones(400)])
    assert t_second > 2.0 * t_first

    out, _path, _first = tiny_run
    spec = {"seed": 77, "n_images": 64, "chunk_size": 32, "crop_px": 24, "pixel_size_A": 0.4}
    extra = generate(spec, tmp_path / "prism_like.zarr", scheduler="synchronous", progress=False,
                     sample_fn=toy_sample)
    metrics = cal.recalibrate(out, tta=False, prism=[extra])
    card = json.loads((out / "model_card.json").read_text())
    assert metrics["n_prism"] == 64 and metrics["prism_sets"] == [str(extra)]
    assert metrics["n"] == metrics["n_fast_holdout"] + 64
    assert card["temperature"] == metrics["temperature"] > 0
    assert "prism_part" in metrics and 0.0 <= metrics["prism_part"]["ece"] <= 1.0


def test_validation_set_is_scored_every_epoch_and_used_in_calibration(tmp_path):
    """A (PRISM) validation set: scored after each epoch, logged, and half of the calibration fit."""
    from clusterspy.datasets import generate
    from clusterspy.model import train
    from helpers import toy_sample

    spec = {"seed": 8, "n_images": 320, "chunk_size": 32, "crop_px": 24, "pixel_size_A": 0.4}
    vspec = {**spec, "seed": 9, "n_images": 32}
    data = generate(spec, tmp_path / "toy.zarr", scheduler="synchronous", progress=False,
                    sample_fn=toy_sample)
    val = generate(vspec, tmp_path / "val.zarr", scheduler="synchronous", progress=False,
                   sample_fn=toy_sample)
    cfg = {"seed": 3, "dataset": spec, "dataset_path": str(data), "generate": False,
           "validation": vspec, "validation_path": str(val),
           "network": {"name": "isomernet", "widths": [8, 8, 16, 16], "dropout": 0.0},
           "epochs": 2, "batch_size": 16, "threads": 1, "test_time_augmentation": False}
    train(cfg, tmp_path / "run", progress=False)
    card = json.loads((tmp_path / "run" / "model_card.json").read_text())
    hist = card["training"]["history"]
    assert len(hist) == 2 and all(0.0 <= h["val_prism_acc"] <= 1.0 for h in hist)
    assert card["metrics"]["prism_validation"]["n"] == 32
    assert card["metrics"]["calibration_set"]["n"] == card["training"]["n_calibration"] + 32
    header = (tmp_path / "run" / "log.csv").read_text().splitlines()[0]
    assert "val_prism_acc" in header


def test_ood_finalise_adds_features_seals_the_card_and_flags_unlike_inputs(tiny_run, tmp_path):
    import shutil

    from clusterspy.model.ood import finalise
    from clusterspy.predict import Model, load_model
    from clusterspy.weights import ModelCard

    out, _path, _ = tiny_run
    folder = tmp_path / "m"
    folder.mkdir()
    for name in ("model.onnx", "model_card.json"):
        shutil.copy(out / name, folder / name)
    before = load_model(folder / "model.onnx")
    crops = np.random.default_rng(4).normal(size=(6, 24, 24)).astype(np.float32)
    logits_before = before.predict_logits(crops)
    spec = {"seed": 5, "n_images": 320, "chunk_size": 32, "crop_px": 24, "pixel_size_A": 0.4}
    ood = finalise(folder, out.parent / "toy.zarr", spec, quantile=0.9)
    card = ModelCard.read(folder)
    assert card.ood["threshold"] == ood["threshold"] > 0
    assert set(card.data["files_sha256"]) == {"ood_stats.npz"} and card.data["card_sha256"]
    assert card.domain["contrast"] == "HAADF"
    model = Model(folder / "model.onnx", card)
    assert model.has_ood
    np.testing.assert_allclose(model.predict_logits(crops), logits_before, atol=1e-6)  # weights untouched
    from clusterspy.datasets import load

    x, _, _ = load(out.parent / "toy.zarr")
    _, d_in = model.infer(x[:64])
    _, d_out = model.infer(np.random.default_rng(5).normal(size=(64, 24, 24)).astype(np.float32) * 50)
    assert np.median(d_out) > np.median(d_in)
    (folder / "ood_stats.npz").write_bytes(b"tampered")
    with pytest.raises(Exception, match="SHA-256 mismatch"):
        Model(folder / "model.onnx", ModelCard.read(folder))


def test_cli_model_recalibrate_and_ood(tiny_run, tmp_path, capsys):
    """``clusterspy model recalibrate`` / ``model ood`` on a copy of a trained model; a folder
    without a card is refused in one line (exit 2)."""
    import shutil

    from clusterspy.cli import main
    from clusterspy.weights import ModelCard

    out, _path, _ = tiny_run
    folder = tmp_path / "m"
    shutil.copytree(out, folder, ignore=shutil.ignore_patterns("*.pt", "*.png"))
    capsys.readouterr()
    assert main(["model", "recalibrate", str(folder), "--no-tta"]) == 0
    printed = json.loads(capsys.readouterr().out)
    card = ModelCard.read(folder)
    assert card.temperature == printed["temperature"] > 0
    assert card.data["test_time_augmentation"] is None and printed["n"] > 0
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"seed": 5, "n_images": 320, "chunk_size": 32, "crop_px": 24,
                                "pixel_size_A": 0.4}))
    args = ["model", "ood", str(folder), "--data", str(out.parent / "toy.zarr"), "--spec", str(spec),
            "--quantile", "0.9"]
    assert main(args) == 0
    ood = json.loads(capsys.readouterr().out)
    assert ModelCard.read(folder).ood["threshold"] == ood["threshold"] > 0
    assert main(["model", "recalibrate", str(tmp_path)]) == 2
    assert "no model_card.json" in capsys.readouterr().err
