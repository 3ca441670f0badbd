"""What the CLI tells its user: the line of an interrupted run (what stands, how to continue)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clusterspy.cli import main

EXAMPLE = Path(__file__).parents[1] / "src" / "clusterspy" / "data" / "example_series.npz"
WEIGHTS = Path(__file__).parents[1] / "src" / "clusterspy" / "weights" / "model_card.json"
needs_weights = pytest.mark.skipif(not WEIGHTS.exists(), reason="no shipped model")


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------------------------ Ctrl-C
def _interrupt_after_first_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C right after the series loop saved its first checkpoint (frames.csv rows written)."""
    from clusterspy.series import classify as series_classify

    real = series_classify._flush

    def flush_then_interrupt(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(series_classify, "_flush", flush_then_interrupt)


@needs_weights
def test_interrupted_series_names_its_folder_and_a_rerun_continues(tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "run"
    args = ["series", str(EXAMPLE), "--out", str(out), "--no-report"]
    with monkeypatch.context() as m:
        _interrupt_after_first_flush(m)
        assert main(args) == 130
    line = _one_line(capsys.readouterr().err)
    assert line == (f"clusterspy: interrupted: the frames finished so far are kept in {out}; run the same "
                    "command again to continue")
    assert (out / "frames.csv").is_file() and not (out / "summary.json").exists()
    assert not (out / ".clusterspy.lock").exists()  # released: the rerun is not refused
    assert main(args) == 0  # the advice holds: the same command finishes the run
    assert json.loads((out / "summary.json").read_text())["n_frames"] == 40


@needs_weights
def test_interrupted_series_with_no_resume_says_to_drop_it(tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "run"
    _interrupt_after_first_flush(monkeypatch)
    assert main(["series", str(EXAMPLE), "--out", str(out), "--no-report", "--no-resume"]) == 130
    line = _one_line(capsys.readouterr().err)
    assert f"kept in {out}" in line and "run the same command without --no-resume to continue" in line


def _two_images(folder: Path) -> list[str]:
    folder.mkdir()
    with np.load(EXAMPLE) as ex:
        frames, pixel = ex["frames"], float(ex["pixel_size_A"])
    paths = []
    for i in (0, 20):
        np.savez(folder / f"img{i:02d}.npz", image=frames[i].astype(np.float32), pixel_size_A=pixel)
        paths.append(str(folder / f"img{i:02d}.npz"))
    return paths


@needs_weights
@pytest.mark.parametrize("restart", [False, True])
def test_interrupted_classify_batch_names_its_folder_and_a_rerun_continues(
        tmp_path, monkeypatch, capsys, restart) -> None:
    from clusterspy import batch

    images, out = _two_images(tmp_path / "images"), tmp_path / "out"
    real, calls = batch.classify_task, []

    def second_file_interrupted(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    args = ["classify", *images, "--out", str(out), "--workers", "1", *(["--restart"] if restart else [])]
    with monkeypatch.context() as m:
        m.setattr(batch, "classify_task", second_file_interrupted)
        assert main(args) == 130
    line = _one_line(capsys.readouterr().err)
    again = "run the same command without --restart" if restart else "run the same command again"
    assert line == (f"clusterspy: interrupted: the files finished so far are kept in {out}; {again} "
                    "to continue")
    assert len(list((out / "parts").glob("*.json"))) == 1
    if not restart:  # the advice holds: the rerun keeps the first file and classifies the second
        assert main(args) == 0
        assert "(1 file(s) already done there skipped)" in capsys.readouterr().err


def test_interrupt_without_resumable_output_claims_nothing(tmp_path, monkeypatch, capsys) -> None:
    import clusterspy.batch

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(clusterspy.batch, "run_batch", interrupted)
    # an earlier command's note must not leak into this one
    monkeypatch.setattr("clusterspy.workflows.classify_series", interrupted)
    assert main(["series", str(tmp_path / "x.npy"), "--out", str(tmp_path / "o")]) == 130
    assert "kept in" in capsys.readouterr().err
    assert main(["classify", str(tmp_path / "x.npy")]) == 130  # no --out: nothing is kept
    assert _one_line(capsys.readouterr().err) == "clusterspy: interrupted"
