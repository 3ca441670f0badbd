"""User mistakes and hostile conditions through the CLI: one line on stderr, exit 2, no traceback.

The cases of the reliability audit that no other test module covers: a pixel size a hundred
times too fine, ``--out`` that is a file or lies under one, a full disk (a file size limit set
with ``RLIMIT_FSIZE`` in the child), LaTeX in a file name, a model that ONNX Runtime cannot load,
a model card edited or not sealed, ONNX external data outside the hash, bright-field contrast,
NaN kept out of every JSON, stray ``.tmp`` files, overlays left out of a long file, training
(log rows after the checkpoint, a changed config refused on resume, a budget in steps), a
multi-signal file without a detector title (its signals listed; ``--signal`` recorded and checked
on resume).
Covered elsewhere: thermo temperatures (``test_cli``, ``test_thermo``); non-square TIFF pixels and
truncated stacks (``test_io_tiff``); series locks, exact resume, other settings refused, bad
frames, ``.tmp`` after a kill (``test_series_resume``); batch failures, locks, kills
(``test_batch``); an edited card or weights (``test_domain``, ``test_predict``).
"""

from __future__ import annotations

import csv
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clusterspy.cli import main
from clusterspy.errors import InputFileError
from clusterspy.weights import ModelCard

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "clusterspy"
WEIGHTS = PACKAGE / "weights"
PIXEL_A = 0.3  #: pixel size of the packaged example series [Å/px]


def _frames(n: int = 1) -> np.ndarray:
    """The first ``n`` frames of the packaged example series (HAADF, one Au cluster, 0.3 Å/px)."""
    with np.load(PACKAGE / "data" / "example_series.npz") as data:
        return data["frames"][:n].astype(np.float32)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """A calibrated .npz of one HAADF frame that classifies (icosahedral)."""
    path = tmp_path / "frame.npz"
    np.savez(path, image=_frames()[0], pixel_size_A=PIXEL_A)
    return path


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    """A 4-frame .npy series (no calibration in the file: give --pixel-size)."""
    path = tmp_path / "stack.npy"
    np.save(path, _frames(4))
    return path


def _cli(capsys, *args: str) -> tuple[int, str]:
    """Run ``clusterspy ARGS`` in this process; return the exit code and stderr."""
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err


def _one_line(rc: int, err: str, *needles: str) -> None:
    """Exit 2 and one line on stderr naming the problem."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]


def _subprocess(*args: str, file_size_limit: int | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m clusterspy ARGS`` in a child, optionally with a file size limit [bytes]."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run([sys.executable, "-m", "clusterspy", *map(str, args)], capture_output=True,
                          text=True, timeout=300, check=False,
                          preexec_fn=limit if file_size_limit is not None else None)


def _series(stack: Path, out: Path, *more: str) -> list[str]:
    return ["series", stack, "--pixel-size", PIXEL_A, "--frame-time", "1", "--out", out,
            "--no-report", *more]


# ------------------------------------------------------------------------------ pixel size, --out
@pytest.mark.parametrize("pixel", ["0.01", "0.015"])
def test_pixel_size_a_hundred_times_too_fine_is_one_line(capsys, image: Path, stack: Path,
                                                          tmp_path: Path, pixel: str) -> None:
    _one_line(*_cli(capsys, "classify", image, "--pixel-size", pixel), "Å/px")
    _one_line(*_cli(capsys, "series", stack, "--pixel-size", pixel, "--frame-time", "1",
                    "--out", tmp_path / "s", "--no-report"), "Å/px")


def test_a_refused_input_does_not_block_the_corrected_rerun(capsys, image: Path, stack: Path,
                                                            tmp_path: Path) -> None:
    # 30 Å/px (pm typed as Å ×100) is refused; the rerun with the right pixel size into the same
    # --out had been refused as "other settings" though the first run wrote no result
    for out in (tmp_path / "c", tmp_path / "s"):
        if out.name == "c":
            first = ("classify", image, "--pixel-size", "30", "--out", out)
        else:
            first = ("series", stack, "--pixel-size", "30", "--frame-time", "1", "--out", out,
                     "--no-report")
        rc, err = _cli(capsys, *first)
        assert "cannot resolve atomic columns" in err
        again = (("classify", image, "--pixel-size", PIXEL_A, "--out", out) if out.name == "c"
                 else _series(stack, out))
        rc, err = _cli(capsys, *again)
        assert rc == 0, err
    with open(tmp_path / "s" / "frames.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and float(json.loads((tmp_path / "c" / "settings.json").read_text())
                                    ["pixel_size_A_override"]) == PIXEL_A
    # a run that did write results is still protected
    _one_line(*_cli(capsys, "series", stack, "--pixel-size", "0.31", "--frame-time", "1", "--out",
                    tmp_path / "s", "--no-report"), "--no-resume")


@pytest.mark.parametrize(("args", "needle"), [
    (("--temperature-K", "abc"), "--temperature-K"),
    (("--frame-time", "fast"), "--frame-time"),
    (("--bogus",), "--bogus"),
])
def test_option_mistakes_are_one_line(capsys, stack: Path, tmp_path: Path, args: tuple[str, ...],
                                      needle: str) -> None:
    _one_line(*_cli(capsys, "series", stack, "--pixel-size", PIXEL_A, "--out", tmp_path / "s", *args),
              needle, "--help")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_out_that_is_a_file_or_under_one_is_one_line(capsys, image: Path, stack: Path,
                                                     tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "results.txt"
    blocker.write_text("not a folder")
    out = blocker if where == "a file" else blocker / "out"
    _one_line(*_cli(capsys, "classify", image, "--out", out), "results.txt")
    _one_line(*_cli(capsys, *_series(stack, out)), "results.txt")
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders: cannot be provoked")
def test_read_only_out_is_one_line(capsys, image: Path, stack: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        _one_line(*_cli(capsys, "classify", image, "--out", locked / "out"))
        _one_line(*_cli(capsys, *_series(stack, locked / "out")))
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("command", ["classify", "series"])
def test_full_disk_is_one_line_and_a_rerun_finishes(image: Path, stack: Path, tmp_path: Path,
                                                   command: str) -> None:
    out = tmp_path / "out"
    args = ["classify", image, "--out", out] if command == "classify" else _series(stack, out)
    full = _subprocess(*args, file_size_limit=300)  # bytes: settings.json / the checkpoint fail
    lines = [ln for ln in full.stderr.splitlines() if ln.strip()]
    assert full.returncode == 2 and len(lines) == 1, full.stderr
    assert "Traceback" not in full.stderr and "file size limit" in lines[0], full.stderr
    assert not list(out.glob("*.lock")) and not list(out.glob(".*lock*")), list(out.iterdir())
    again = _subprocess(*args)  # space freed: the same command on the same --out finishes
    assert again.returncode == 0, again.stderr


def test_latex_in_a_file_name_under_classify_out(capsys, tmp_path: Path) -> None:
    name = r"Au_$\frac{1}{2}$_%s_{x}"
    path = tmp_path / f"{name}.npz"
    np.savez(path, image=_frames()[0], pixel_size_A=PIXEL_A)
    out = tmp_path / "out"
    rc, err = _cli(capsys, "classify", path, "--out", out, "--format", "json")
    assert rc == 0, err
    assert (out / f"{name}_overlay.png").read_bytes()[:4] == b"\x89PNG"
    rows = json.loads((out / "results.json").read_text())
    rows = rows if isinstance(rows, list) else rows["clusters"]
    assert {Path(r["file"]).name for r in rows} == {path.name}


# ------------------------------------------------------------------------------------- the model
def _model_copy(folder: Path) -> Path:
    folder.mkdir()
    for name in ("model.onnx", "model_card.json", "ood_stats.npz"):
        shutil.copy(WEIGHTS / name, folder / name)
    return folder


def _reseal(folder: Path) -> None:
    card = ModelCard.read(folder)
    card.seal()
    card.write()


def test_a_model_onnx_runtime_cannot_load_is_one_line(capsys, image: Path, stack: Path,
                                                      tmp_path: Path) -> None:
    model = _model_copy(tmp_path / "model")
    (model / "model.onnx").write_bytes((WEIGHTS / "model.onnx").read_bytes()[:5000])
    _reseal(model)  # the hashes match: only ONNX Runtime can find the file broken
    _one_line(*_cli(capsys, "classify", image, "--model", model), "onnx")
    _one_line(*_cli(capsys, *_series(stack, tmp_path / "s", "--model", model)), "onnx")


@pytest.mark.parametrize("edit", ["edited", "edited and unsealed"])
def test_an_edited_model_card_is_refused_through_the_cli(capsys, image: Path, tmp_path: Path,
                                                        edit: str) -> None:
    model = _model_copy(tmp_path / "model")
    assert _cli(capsys, "classify", image, "--model", model)[0] == 0  # an intact copy is used
    card = json.loads((model / "model_card.json").read_text())
    card["temperature"] = 5.0
    if edit == "edited and unsealed":
        del card["card_sha256"]
    (model / "model_card.json").write_text(json.dumps(card))
    _one_line(*_cli(capsys, "classify", image, "--model", model), "model card")


def test_onnx_external_data_is_under_the_hash(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from clusterspy.weights.card import _canonical_sha256, onnx_external_data

    weight = numpy_helper.from_array(np.arange(4096, dtype=np.float32).reshape(64, 64), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [weight])
    onnx.save_model(helper.make_model(graph), tmp_path / "model.onnx", save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    assert onnx_external_data(tmp_path / "model.onnx") == ["weights.bin"]
    assert onnx_external_data(WEIGHTS / "model.onnx") == []  # the shipped model is one file

    card = ModelCard({"name": "ext", "weights_file": "model.onnx"}, tmp_path)
    card.seal()
    assert set(card.data["files_sha256"]) == {"weights.bin"}
    card.verify()
    blind = ModelCard(dict(card.data, files_sha256={}), tmp_path)  # a card sealed without the data
    blind.data["card_sha256"] = _canonical_sha256(blind.data)
    with pytest.raises(InputFileError, match=r"external data 'weights\.bin'"):
        blind.verify()
    data = bytearray((tmp_path / "weights.bin").read_bytes())
    data[100] ^= 0xFF
    (tmp_path / "weights.bin").write_bytes(bytes(data))
    with pytest.raises(InputFileError, match="SHA-256 mismatch"):
        card.verify()


# ------------------------------------------------------------------------------- images, outputs
def test_bright_field_contrast_is_refused_naming_contrast(capsys, tmp_path: Path) -> None:
    frame = _frames()[0]
    path = tmp_path / "bf.npz"
    np.savez(path, image=frame.max() - frame + 10, pixel_size_A=PIXEL_A)
    _one_line(*_cli(capsys, "classify", path), "bright field", "--contrast")
    assert _cli(capsys, "classify", path, "--contrast", "haadf")[0] == 0  # the user's word taken


def test_series_json_outputs_hold_no_nan(capsys, stack: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc, err = _cli(capsys, *_series(stack, out, "--format", "json"))
    assert rc == 0, err
    printed = capsys.readouterr().out
    assert "NaN" not in printed and "Infinity" not in printed
    for path in out.glob("*.json"):
        text = path.read_text()
        assert "NaN" not in text and "Infinity" not in text, path.name
        json.loads(text)


def test_classify_cleans_tmp_files_a_kill_left_in_out(capsys, image: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _cli(capsys, "classify", image, "--out", out)[0] == 0
    (out / ".results.json.k1ll3d.tmp").write_text("half")
    (out / "parts" / ".part.k1ll3d.tmp").write_text("half")
    assert _cli(capsys, "classify", image, "--out", out)[0] == 0
    assert not list(out.rglob(".*.tmp")), list(out.rglob(".*.tmp"))


# -------------------------------------------------------------------------------------- training
class _Kill(Exception):
    """A SIGKILL stand-in raised at a chosen point of the training loop."""


def _fake_epochs(monkeypatch, *, seconds_per_epoch: float = 100.0, kill_at: tuple[str, int] | None = None):
    """The loop's torch parts replaced by bookkeeping: each epoch is 10 steps of ``seconds_per_epoch``."""
    from clusterspy.model import loop

    def train_epoch(model, opt, data, state, cfg, schedule, device, *, progress):
        lrs = []
        for _ in range(10):
            if schedule.progress(state) >= 1.0:
                break
            lrs.append(schedule.learning_rate(schedule.progress(state)))
            state["step"] += 1
            state["train_seconds"] += seconds_per_epoch / 10
        return {"lr": lrs[-1], "train_loss": float(sum(lrs)), "train_acc": 0.5}

    def evaluate_epoch(model, data, state, epoch, device):
        return {f: None for f in loop.LOG_FIELDS} | {"epoch": state["epoch"], "step": state["step"],
                                                     **epoch}

    calls = {"save_checkpoint": 0, "append_log": 0}

    def counted(name, real):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            if kill_at == (name, calls[name]):
                raise _Kill(name)
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(loop, "train_epoch", train_epoch)
    monkeypatch.setattr(loop, "evaluate_epoch", evaluate_epoch)
    monkeypatch.setattr(loop, "save_checkpoint", counted("save_checkpoint", lambda *a: None))
    monkeypatch.setattr(loop, "append_log", counted("append_log", loop.append_log))


def _run(tmp: Path, state: dict, *, epochs: int = 4, budget_min: float = 100.0, max_steps=None):
    from clusterspy.model import loop

    cfg = {"epochs": epochs, "lr": 1e-3, "calibration_every": 10, "batch_size": 1,
           "wall_budget_min": budget_min, "max_steps": max_steps}
    schedule = loop.Schedule.from_config(cfg, {"n_images": 10 * 10 // 9 + 1})
    return loop.run_epochs(None, None, None, state, cfg, schedule, tmp, "cpu", progress=False)


def _log_epochs(folder: Path) -> list[int]:
    rows = (folder / "log.csv").read_text().splitlines()[1:]
    jsonl = [json.loads(line)["epoch"] for line in (folder / "log.jsonl").read_text().splitlines()]
    csv_epochs = [int(r.split(",")[0]) for r in rows]
    assert csv_epochs == jsonl
    return csv_epochs


@pytest.mark.parametrize("kill_at", [("save_checkpoint", 3), ("append_log", 2)])
def test_training_log_rows_follow_the_checkpoint(monkeypatch, tmp_path: Path, kill_at) -> None:
    import copy

    from clusterspy.model import loop

    saved: list[dict] = []
    _fake_epochs(monkeypatch, kill_at=kill_at)
    killable_save = loop.save_checkpoint

    def save(model, opt, state, cfg, path):
        killable_save(model, opt, state, cfg, path)
        saved.append(copy.deepcopy(state))

    monkeypatch.setattr(loop, "save_checkpoint", save)
    with pytest.raises(_Kill):
        _run(tmp_path, loop.new_state())
    checkpointed = [r["epoch"] for r in saved[-1]["history"]]
    logged = _log_epochs(tmp_path)
    assert logged == checkpointed[:len(logged)], (logged, checkpointed)  # no row past the checkpoint
    assert len(logged) >= len(checkpointed) - 1
    _fake_epochs(monkeypatch)  # the rerun, from the last checkpoint
    final = _run(tmp_path, copy.deepcopy(saved[-1]))
    assert final["done"] and _log_epochs(tmp_path) == [0, 1, 2, 3]  # no row lost, none twice


def test_training_budget_is_in_steps_and_a_stopped_run_goes_on_exactly(monkeypatch, tmp_path: Path) -> None:
    from clusterspy.model import loop

    _fake_epochs(monkeypatch, seconds_per_epoch=100.0)
    (tmp_path / "whole").mkdir()
    whole = _run(tmp_path / "whole", loop.new_state())
    assert whole["done"] and whole["step"] == 40
    (tmp_path / "parts").mkdir()
    state, calls = loop.new_state(), 0
    while not state["done"]:  # 150 s a call: each call stops after its second epoch
        state = _run(tmp_path / "parts", state, budget_min=2.5)
        calls += 1
    assert calls == 2
    strip = ("train_seconds",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in state["history"]] == \
        [{k: v for k, v in r.items() if k not in strip} for r in whole["history"]]
    capped = loop.Schedule.from_config({"epochs": 4, "lr": 1.0, "calibration_every": 10, "batch_size": 1,
                                        "wall_budget_min": 1, "max_steps": 25}, {"n_images": 12})
    assert capped.total_steps == 25
    assert capped.progress({"step": 5, "train_seconds": 1e9}) == 5 / 25  # the clock does not count


def test_a_changed_training_config_is_refused_on_resume(capsys, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from clusterspy.model.training import check_resumable, load_config

    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(load_config({"seed": 1, "lr": 3e-3, "epochs": 2})))
    (out / "checkpoint.pt").write_bytes(b"a checkpoint")
    check_resumable(load_config({"seed": 1, "lr": 3e-3, "epochs": 5, "wall_budget_min": 9}), out)
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps({"seed": 1, "lr": 1e-2, "epochs": 2}))
    _one_line(*_cli(capsys, "train", "--config", changed, "--out", out), "lr was 0.003", "--no-resume")
    assert (out / "checkpoint.pt").read_bytes() == b"a checkpoint"


# ---------------------------------------------------------------------------------- batches, files
@pytest.mark.slow
def test_overlays_left_out_of_a_long_file_are_said(capsys, tmp_path: Path) -> None:
    frames = _frames(40)
    stack = tmp_path / "long.npy"
    np.save(stack, np.concatenate([frames, frames[:12]]))  # 52 frames with a cluster each
    out = tmp_path / "out"
    rc, err = _cli(capsys, "classify", stack, "--pixel-size", PIXEL_A, "--out", out, "--format", "csv")
    assert rc == 0, err
    note = "overlays drawn for the first 50 of the 52 frames with clusters"
    assert note in err
    with open(out / "files.csv", newline="") as fh:
        assert any(note in " ".join(row.values()) for row in csv.DictReader(fh))
    assert len(list(out.glob("long_frame*.png"))) == 50


def _two_signal_emd(path: Path, titles: tuple[str, str] = ("channel A", "channel B")) -> Path:
    """A Berkeley (NCEM) EMD holding two image signals whose titles name no detector: the first
    the inverted (bright-field-like) frame, the second the HAADF frame."""
    import h5py

    frame = _frames()[0]
    with h5py.File(path, "w") as f:
        f.attrs["version_major"], f.attrs["version_minor"] = 0, 2
        for title, img in zip(titles, (frame.max() - frame, frame), strict=True):
            group = f.require_group("data").create_group(title)
            group.attrs["emd_group_type"] = 1
            group.create_dataset("data", data=img)
            for i, name in ((1, "y"), (2, "x")):
                dim = group.create_dataset(f"dim{i}", data=np.arange(img.shape[i - 1]) * PIXEL_A / 10)
                dim.attrs["name"], dim.attrs["units"] = name, "nm"
    return path


def test_a_multi_signal_file_without_a_haadf_title_lists_its_signals(capsys, tmp_path: Path) -> None:
    pytest.importorskip("rsciio")
    path = _two_signal_emd(tmp_path / "two.emd")
    _one_line(*_cli(capsys, "classify", path), "channel A", "channel B", "--signal")
    _one_line(*_cli(capsys, *_series(path, tmp_path / "s")), "0: 'channel A'", "1: 'channel B'",
              "--signal")


@pytest.mark.parametrize("command", ["classify", "series", "fit"])
@pytest.mark.parametrize("choice", ["2", "channel C"])
def test_a_signal_the_file_does_not_hold_lists_those_it_holds(capsys, tmp_path: Path, command: str,
                                                              choice: str) -> None:
    pytest.importorskip("rsciio")
    path = _two_signal_emd(tmp_path / "two.emd")
    args = _series(path, tmp_path / "s") if command == "series" else [command, path]
    _one_line(*_cli(capsys, *args, "--signal", choice), repr(choice) if choice[0] == "c" else choice,
              "channel A", "channel B")


def test_signal_of_a_one_image_file_is_one_line(capsys, image: Path) -> None:
    _one_line(*_cli(capsys, "classify", image, "--signal", "1"), "holds one image", "signal 1")


def test_classify_reads_the_signal_chosen_and_a_rerun_with_another_is_refused(capsys, tmp_path: Path
                                                                               ) -> None:
    pytest.importorskip("rsciio")
    path = _two_signal_emd(tmp_path / "two.emd")
    out = tmp_path / "out"
    rc = main(["classify", str(path), "--signal", "channel B", "--out", str(out), "--format", "json",
               "--workers", "1"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    rows = json.loads(captured.out)
    assert rows and {r["label"] for r in rows} - {"unknown"}, rows  # the HAADF frame classifies
    settings = json.loads((out / "settings.json").read_text(encoding="utf-8"))
    assert settings["signal"] == "channel B" and settings["fingerprint"]["signal"] == "channel B"
    # the inverted signal 0 is refused as bright field: proof that --signal 0 reads the other one
    _one_line(*_cli(capsys, "classify", path, "--signal", "0"), "bright")
    _one_line(*_cli(capsys, "classify", path, "--signal", "1", "--out", out), "--signal", "--restart")
    _one_line(*_cli(capsys, "classify", path, "--out", out), "--signal", "--restart")
    assert main(["classify", str(path), "--signal", "channel B", "--out", str(out), "--workers", "1"]) == 0
    assert "1 file(s) already done" in capsys.readouterr().err


def test_series_records_the_signal_read_and_refuses_another_on_resume(capsys, tmp_path: Path) -> None:
    pytest.importorskip("rsciio")
    path = _two_signal_emd(tmp_path / "two.emd")
    out = tmp_path / "s"
    rc, err = _cli(capsys, *_series(path, out), "--signal", "1")
    assert rc == 0, err
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["input"]["signal"] == {"index": 1, "title": "channel B"}
    with open(out / "frames.csv", newline="", encoding="utf-8") as fh:
        assert next(r["label"] for r in csv.DictReader(fh)) not in ("", "unknown")
    rc, err = _cli(capsys, *_series(path, out), "--signal", "channel b")  # the same signal, by title
    assert rc == 0, err
    _one_line(*_cli(capsys, *_series(path, out), "--signal", "0", "--contrast", "haadf"),
              "signal", "--no-resume")


def test_renaming_the_fast_parameters_key_is_not_a_changed_config(tmp_path: Path) -> None:
    """A run started with ``backend_options: {calibration: ...}`` (the name before issue #17)
    resumes with ``parameters``: the same dataset, the same steps."""
    pytest.importorskip("torch")
    from clusterspy.errors import ConfigError
    from clusterspy.model.training import check_resumable, load_config

    pinned = {"z_exponent": 1.6}
    out = tmp_path / "run"
    out.mkdir()
    old = load_config({"seed": 1, "dataset": {"n_images": 8, "backend_options": {"calibration": pinned}}})
    (out / "config.json").write_text(json.dumps(old))
    check_resumable(load_config({"seed": 1, "dataset": {"n_images": 8,
                                                        "backend_options": {"parameters": pinned}}}), out)
    with pytest.raises(ConfigError, match="dataset"):
        check_resumable(load_config({"seed": 1, "dataset": {
            "n_images": 8, "backend_options": {"parameters": {"z_exponent": 1.7}}}}), out)


@pytest.mark.filterwarnings("always::UserWarning")  # shown as the CLI shows it, not raised
def test_a_damaged_tiff_prints_one_warning_line_and_no_tifffile_log(capsys, tmp_path: Path) -> None:
    import tifffile

    whole = tmp_path / "whole.tif"
    tifffile.imwrite(whole, _frames(4), imagej=True)
    data = whole.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) * 5 // 8])
    _, err = _cli(capsys, "classify", cut, "--pixel-size", PIXEL_A)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "tifffile" not in err.lower() and "Traceback" not in err, err
    assert any(ln.startswith("clusterspy: warning:") and "frames lost" in ln for ln in lines), err
    assert all(ln.startswith("clusterspy: ") for ln in lines), err


def test_a_pixel_size_given_in_python_over_the_file_calibration_is_warned_of(image: Path) -> None:
    """The CLI notes an override; Python had replaced the file's 0.3 Å/px by 0.36 without a word."""
    import clusterspy

    with pytest.warns(UserWarning, match=r"pixel_size_A=0\.36 Å/px replaces the calibration of .*frame\.npz "
                                         r"\(0\.3 Å/px\), \+20%"):
        clusterspy.classify(image, pixel_size_A=0.36)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the file's own value, or the same value given: no warning
        clusterspy.classify(image)
        clusterspy.classify(image, pixel_size_A=0.301)


def test_a_series_told_another_pixel_size_than_its_file_warns_in_the_summary(tmp_path: Path, caplog) -> None:
    from clusterspy.series import classify_series

    path = tmp_path / "stack.npz"
    np.savez(path, frames=_frames(2), pixel_size_A=PIXEL_A)
    result = classify_series(str(path), pixel_size_A=0.25, out=None)
    assert any("0.25 Å/px, replaces the file's own calibration (0.3 Å/px, -17%)" in w
               for w in result.summary["warnings"])
    assert "replaces the file's own calibration" in caplog.text  # said at the start too
    again = classify_series(str(path), out=None)
    assert not any("own calibration" in w for w in again.summary["warnings"])


def test_a_nan_border_left_by_drift_correction_is_no_data_and_nan_inside_is_refused(tmp_path: Path) -> None:
    """A registered frame's NaN margin had refused the whole image ("fix or mask them"; a newcomer, stop 39)
    — a fill now; NaN inside the image is still refused, saying where."""
    import clusterspy
    from clusterspy.errors import ImageDataError

    frame = _frames()[0]
    plain = clusterspy.classify(frame, pixel_size_A=PIXEL_A)
    shifted = frame.copy()
    shifted[:, :14] = np.nan  # a drift correction's margin on the left and at the top
    shifted[:9] = np.inf
    bordered = clusterspy.classify(shifted, pixel_size_A=PIXEL_A)
    assert [(r.label, r.reason) for r in bordered] == [(r.label, r.reason) for r in plain]
    assert plain[0].label == "icosahedral"
    holed = frame.copy()
    holed[60:64, 70:75] = np.nan
    with pytest.raises(ImageDataError, match=r"20 NaN or infinite pixel\(s\) \(20 of them inside the image"):
        clusterspy.classify(holed, pixel_size_A=PIXEL_A)
    with pytest.raises(ImageDataError, match=r"of the image\); replace them"):
        clusterspy.classify(np.where(np.arange(frame.shape[1]) < frame.shape[1] * 0.6, np.nan, frame),
                            pixel_size_A=PIXEL_A)


@pytest.mark.parametrize("canvas", ["white", "median"])
def test_an_image_pasted_into_a_larger_canvas_is_judged_as_the_image(canvas: str) -> None:
    """A newcomer's (stop 39) images pasted into a 2× canvas: white gave "looks like bright field", and
    with --contrast haadf (or on a median grey) one 10–18 nm cut_by_edge "cluster" of the whole paste."""
    import clusterspy

    frame = _frames()[0]
    u8 = np.round(255 * (frame - frame.min()) / (frame.max() - frame.min())).astype(np.uint8)
    alone = clusterspy.classify(u8, pixel_size_A=PIXEL_A)
    h, w = u8.shape
    fill = 255 if canvas == "white" else int(np.median(u8))
    big = np.full((2 * h, 2 * w), fill, np.uint8)
    big[h // 2:h // 2 + h, w // 4:w // 4 + w] = u8
    pasted = clusterspy.classify(big, pixel_size_A=PIXEL_A)
    assert [(r.label, r.reason) for r in pasted] == [(r.label, r.reason) for r in alone]
    assert alone[0].label == "icosahedral"
    assert pasted[0].diameter_nm == pytest.approx(alone[0].diameter_nm, rel=0.05)


@pytest.mark.parametrize("factor", [2, 3])
def test_an_image_enlarged_by_repeating_pixels_is_warned_of(factor: int, tmp_path: Path) -> None:
    """A newcomer's ×2 exports (stop 39), told the original pixel size: right labels at twice the
    diameters, without a word."""
    import clusterspy
    from clusterspy.image import enlargement_by_repetition

    frame = _frames()[0]
    big = np.repeat(np.repeat(frame, factor, axis=0), factor, axis=1)
    said = (rf"looks enlarged ×{factor} by repeating pixels .* this one's is {PIXEL_A / factor:.3g} Å/px and "
            rf"every diameter is ×{factor} too large")
    with pytest.warns(UserWarning, match=said):
        clusterspy.classify(big, pixel_size_A=PIXEL_A)
    assert enlargement_by_repetition(frame) is None
    import warnings

    with warnings.catch_warnings():  # a file whose own calibration was updated: no false alarm
        warnings.simplefilter("error")
        path = tmp_path / "big.npz"
        np.savez(path, image=big, pixel_size_A=PIXEL_A / factor)
        clusterspy.classify(path)
    u8 = np.round(255 * (frame - frame.min()) / np.ptp(frame)).astype(np.uint8)
    assert enlargement_by_repetition(u8) is None  # an 8-bit export: no rows repeated by chance


def test_a_series_of_a_stack_with_an_odd_page_says_so_in_its_summary(tmp_path: Path) -> None:
    import tifffile

    from clusterspy.series import classify_series

    frames = _frames(3)
    path = tmp_path / "odd.tif"
    for k, frame in enumerate(frames):
        tifffile.imwrite(path, frame if k != 1 else frame.astype(np.uint16), append=k > 0)
    with pytest.warns(UserWarning, match=r"page 2: .* uint16\) differs from the frames read"):
        result = classify_series(str(path), pixel_size_A=PIXEL_A, out=None)
    assert result.summary["n_frames"] == 2
    assert any(w.startswith("page(s) 2 of ") and "left out" in w for w in result.summary["warnings"])
