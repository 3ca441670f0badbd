"""What the CLI tells its user: the line of an interrupted run (what stands, how to continue), the
summary of ``series --verify-sample``, and errors that name the flags a CLI user typed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from clusterspy.cli import main
from clusterspy.series import read_frames_csv

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
    # run.json says the frames.csv left is a part: the rows it holds, of how many
    progress = json.loads((out / "run.json").read_text())["progress"]
    kept = len(read_frames_csv(out / "frames.csv")["frame"])
    assert progress == {"frames_classified": kept, "n_frames": 40, "finished": False} and kept > 0
    assert not (out / ".clusterspy.lock").exists()  # released: the rerun is not refused
    assert main(args) == 0  # the advice holds: the same command finishes the run
    assert f"clusterspy: continuing the run in {out}" in capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text())["n_frames"] == 40
    assert json.loads((out / "run.json").read_text())["progress"] == {
        "frames_classified": 40, "n_frames": 40, "finished": True}
    assert main(args) == 0  # once more: nothing to classify, and it says so
    assert f"clusterspy: {out} holds this run finished" in capsys.readouterr().err


@needs_weights
def test_a_series_stopped_while_drawing_its_report_says_all_frames_are_kept(tmp_path, monkeypatch, capsys):
    """SIGTERM while the report was drawn said "the frames finished so far are kept" of a run whose
    every frame and summary were written: now it says so, and that a rerun draws the report."""
    from clusterspy import workflows

    out = tmp_path / "run"
    args = ["series", str(EXAMPLE), "--out", str(out)]

    def stopped(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(workflows, "write_series_report", stopped)
        assert main(args) == 130
    line = capsys.readouterr().err.splitlines()[-1]
    assert line == (f"clusterspy: interrupted: all 40 frames and summary.json are kept in {out}; the report "
                    "was not finished — run the same command again to draw it")
    assert main(args) == 0 and (out / "report.html").is_file()


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
    # stopped before its first frame (e.g. while the pixel size is calibrated): it says nothing is kept
    assert _one_line(capsys.readouterr().err) == (
        f"clusterspy: interrupted: stopped before its first frame was finished: no frame of this run is kept "
        f"in {tmp_path / 'o'} (only its settings); a rerun starts from the first")
    assert main(["classify", str(tmp_path / "x.npy")]) == 130  # no --out: nothing is kept
    assert _one_line(capsys.readouterr().err) == "clusterspy: interrupted"


# ------------------------------------------------------------------------ series --verify-sample
def _fit(isomer: str, reason: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(isomer=isomer, reason=reason, form=None, ncc=0.9, atoms=None, simulated=None)


def test_fit_sample_counts_follow_the_verdict_rule() -> None:
    from clusterspy.workflows import fit_sample_counts

    sample = [{"label": "icosahedral", "fit": _fit("icosahedral")},
              {"label": "decahedral", "fit": _fit("fcc")},
              {"label": "fcc", "fit": _fit("unknown", "ambiguous_fit")},
              {"label": "fcc", "fit": _fit("fcc", "poor_fit")}]
    assert fit_sample_counts(sample, 5) == {"asked": 5, "fitted": 4, "agree": 1, "disagree": 1,
                                            "inconclusive": 2}
    assert fit_sample_counts([], 3) == {"asked": 3, "fitted": 0, "agree": 0, "disagree": 0, "inconclusive": 0}


@pytest.fixture
def stub_fits(monkeypatch: pytest.MonkeyPatch) -> list:
    """``series_fit_sample`` returning three fits (agree, disagree, inconclusive) without fitting,
    and a report that records its sample instead of drawing (the slow parts of --verify-sample)."""
    import clusterspy.workflows as wf

    reported = []

    def sample(result, source, pixel_size_A=None, *, k, element="Au", microscope=None, signal=None,
               forms=None, store=None):
        return [{"frame": 0, "cluster": 0, "label": "icosahedral", "image": None, "fit": _fit("icosahedral")},
                {"frame": 12, "cluster": 0, "label": "decahedral", "image": None, "fit": _fit("icosahedral")},
                {"frame": 25, "cluster": 0, "label": "fcc", "image": None,
                 "fit": _fit("unknown", "ambiguous_fit")}][:k]

    monkeypatch.setattr(wf, "series_fit_sample", sample)
    monkeypatch.setattr(wf, "write_series_report", lambda result, model=None, fit_sample=None:
                        reported.append(fit_sample))
    return reported


@needs_weights
def test_series_verify_sample_prints_its_tally(tmp_path, capsys, stub_fits) -> None:
    pytest.importorskip("ase")
    out = tmp_path / "run"
    assert main(["series", str(EXAMPLE), "--out", str(out), "--verify-sample", "5"]) == 0
    stdout = capsys.readouterr().out
    assert ("structure fit of sampled frames: 3 fitted (at most 5 asked for): 1 agree with the smoothed "
            "label, 1 disagree, 1 inconclusive") in stdout
    assert len(stub_fits) == 1 and len(stub_fits[0]) == 3  # the report got the same fits
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["verify_sample"] == {"asked": 5, "fitted": 3, "agree": 1, "disagree": 1, "inconclusive": 1}
    assert main(["series", str(EXAMPLE), "--out", str(out), "--verify-sample", "2", "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["verify_sample"] == {"asked": 2, "fitted": 2, "agree": 1, "disagree": 1, "inconclusive": 0}


@needs_weights
def test_series_verify_sample_fits_with_the_microscope_given(tmp_path, monkeypatch, stub_fits) -> None:
    """--energy and --semiangle reach the sampled fits' Microscope and their store's settings."""
    pytest.importorskip("ase")
    import clusterspy.workflows as wf

    stub, seen = wf.series_fit_sample, []

    def sample(*args, **kwargs):
        seen.append(kwargs["microscope"])
        return stub(*args, **kwargs)

    monkeypatch.setattr(wf, "series_fit_sample", sample)
    out = tmp_path / "run"
    assert main(["series", str(EXAMPLE), "--out", str(out), "--verify-sample", "2", "--energy", "300",
                 "--semiangle", "30"]) == 0
    assert [(m.energy_keV, m.semiangle_mrad) for m in seen] == [(300.0, 30.0)]
    settings = json.loads((out / "verify_sample" / "settings.json").read_text())
    assert (settings["energy_keV (--energy)"], settings["semiangle_mrad (--semiangle)"]) == (300.0, 30.0)


@needs_weights
def test_series_without_verify_sample_prints_no_tally(tmp_path, capsys, stub_fits) -> None:
    assert main(["series", str(EXAMPLE), "--out", str(tmp_path / "run")]) == 0
    captured = capsys.readouterr()
    assert "structure fit" not in captured.out
    assert stub_fits == [None]


# ------------------------------------------------------------------- errors name the CLI flags
needs_ase = pytest.mark.skipif(importlib.util.find_spec("ase") is None, reason="needs ase (train extra)")


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Frame 0 of the example series as a calibrated .npz, the same inverted (bright field), and
    4 frames as a .npy stack (no calibration: --pixel-size 0.3)."""
    folder = tmp_path_factory.mktemp("frames")
    with np.load(EXAMPLE) as ex:
        stack, pixel = ex["frames"].astype(np.float32), float(ex["pixel_size_A"])
    assert abs(pixel - 0.3) < 1e-6
    np.savez(folder / "image.npz", image=stack[0], pixel_size_A=pixel)
    np.savez(folder / "bright_field.npz", image=stack[0].max() - stack[0], pixel_size_A=pixel)
    np.save(folder / "stack.npy", stack[:4])
    return folder / "image.npz", folder / "bright_field.npz", folder / "stack.npy"


def _error_names(capsys: pytest.CaptureFixture[str], args: list[str], *needles: str) -> str:
    """``clusterspy ARGS`` fails with one error line (exit 2) that holds every needle."""
    rc = main([str(a) for a in args])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2 and line.startswith("clusterspy: error: "), line
    for needle in needles:
        assert needle in line, line
    return line


@needs_ase
@pytest.mark.parametrize(("args", "flag"), [
    (["--energy", "-1"], "--energy"),
    (["--semiangle", "0"], "--semiangle"),
    (["--extent", "0"], "--extent"),
    (["--dose", "-1"], "--dose"),
    (["--dose", "0"], "--dose"),  # was a noiseless image, as without --dose
    (["--motif", "cube"], "--motif"),
    (["--size", "5"], "--size"),
    (["--pixel-size", "0.001", "--extent", "400"], "--pixel-size"),
])
def test_simulate_errors_name_the_flag(tmp_path, capsys, args: list[str], flag: str) -> None:
    _error_names(capsys, ["simulate", *args, "--out", tmp_path / "x.npz"], flag)
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize(("args", "flag"), [(["--energy", "5"], "--energy"),
                                            (["--semiangle", "200"], "--semiangle")])
def test_fit_errors_name_the_flag(frames, capsys, args: list[str], flag: str) -> None:
    _error_names(capsys, ["fit", frames[0], *args], flag)


@needs_weights
@pytest.mark.parametrize(("args", "flags"), [
    (["--min-size", "5", "--max-size", "1"], ("--min-size", "--max-size")),
    (["--min-size", "0"], ("--min-size",)),
    (["--max-size", "nan"], ("--max-size",)),
])
def test_classify_size_errors_name_the_flags(frames, capsys, args: list[str], flags: tuple[str, ...]) -> None:
    _error_names(capsys, ["classify", frames[0], *args], *flags)


@needs_weights
def test_bright_field_refusal_names_the_contrast_flag(frames, capsys) -> None:
    _error_names(capsys, ["classify", frames[1]], "--contrast haadf")


def test_fit_refuses_bright_field_as_classify_does(frames, tmp_path, capsys) -> None:
    """`fit` on an inverted frame fitted a "cluster" in the bright background (a newcomer's
    finding); it is refused at once, and --contrast haadf is the way past."""
    _error_names(capsys, ["fit", frames[1], "--out", tmp_path / "f"], "--contrast haadf")
    assert not (tmp_path / "f").exists()


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_series_frame_time_is_checked_before_anything_is_written(frames, tmp_path, capsys, value) -> None:
    _error_names(capsys, ["series", frames[2], "--pixel-size", "0.3", "--frame-time", value,
                          "--out", tmp_path / "s"], "--frame-time")
    assert not (tmp_path / "s").exists()


@needs_weights
def test_series_resume_refusal_names_the_changed_flag(frames, tmp_path, capsys) -> None:
    run = ["series", frames[2], "--pixel-size", "0.3", "--frame-time", "1", "--out", tmp_path / "s",
           "--no-report"]
    assert main([str(a) for a in run]) == 0
    capsys.readouterr()
    _error_names(capsys, [*run, "--frame-time", "2"], "(frame_time_s / --frame-time) was 1.0, now 2.0",
                 "--no-resume")
    _error_names(capsys, [*run, "--contrast", "haadf"], "--contrast")
    # the temperature decides no row (only the summary): adding it to a finished run is taken
    assert main([str(a) for a in [*run, "--temperature-K", "300"]]) == 0
    capsys.readouterr()
    _error_names(capsys, [*run[:1], frames[0], *run[2:]], f"input was {str(frames[2])!r}, now "
                 f"{str(frames[0])!r}")


def test_manifest_difference_of_the_same_input_path_says_it_changed() -> None:
    from clusterspy.series.manifest import _differences_in_words

    old = {"input": {"path": "/d/s.npy", "size_bytes": 1, "mtime_ns": 5}, "settings": {"stay": 0.9}}
    new = {"input": {"path": "/d/s.npy", "size_bytes": 1, "mtime_ns": 6}, "settings": {"stay": 0.9}}
    assert _differences_in_words(old, new) == ("input: '/d/s.npy' changed since (size, modification time or "
                                               "contents differ)")
    new = {"input": old["input"], "settings": {"stay": 0.8}}  # no flag sets it: its Python name
    assert _differences_in_words(old, new) == "settings.stay was 0.9, now 0.8"
    arrays = {"input": {"array_shape": [4, 8, 8]}}, {"input": {"array_shape": [5, 8, 8]}}
    assert _differences_in_words(*arrays) == ("input: another array (size, modification time or contents "
                                              "differ)")
    # every setting that differs, not the first alone (a newcomer was told of the frame time only)
    was = {"input": old["input"], "settings": {"frame_time_s": 0.5, "pixel_size_A": 0.24}}
    both = {"input": old["input"], "settings": {"frame_time_s": None, "pixel_size_A": 0.2115}}
    assert _differences_in_words(was, both) == (
        "frame time (frame_time_s / --frame-time) was 0.5, now not given; "
        "pixel size (pixel_size_A / --pixel-size) was 0.24, now 0.2115")


# ------------------------------------------------------- a newcomer's findings (ux2): advice that fits
@pytest.fixture(scope="module")
def at_edge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Frame 0 of the example series cut through its one cluster (.npy, --pixel-size 0.3)."""
    with np.load(EXAMPLE) as ex:
        frame = ex["frames"][0].astype(np.float32)
    path = tmp_path_factory.mktemp("edge") / "edge.npy"
    np.save(path, frame[:, 80:])  # the cluster's centre is at x = 80 px
    return path


@needs_weights
def test_border_skip_with_only_edge_clusters_says_they_were_left_out(at_edge, capsys) -> None:
    line = _error_names(capsys, ["classify", at_edge, "--pixel-size", "0.3", "--border", "skip"],
                        '1 cluster touching the edge was left out by border="skip" (--border skip)',
                        "--border flag", "cut_by_edge")
    assert "check the pixel size" not in line and "--min-size" not in line  # the particle was found
    assert main(["classify", str(at_edge), "--pixel-size", "0.3"]) == 0  # --border flag: reported
    out, err = capsys.readouterr()
    assert "cut_by_edge" in out
    # and the note says what to do about it (a newcomer's tight crop got no hint)
    (note,) = [ln for ln in err.splitlines() if ln.startswith("clusterspy: note:")]
    assert "1 cluster touches the image edge (cut_by_edge)" in note
    assert "Å inside the image" in note and "--border skip" in note
    assert "exactly constant region" in note  # a centred particle in a zero vacuum gets this reason too


@needs_weights
@pytest.mark.parametrize("pixel", ["3", "0.003"])
def test_refused_override_names_the_files_own_calibration(frames, capsys, pixel) -> None:
    _error_names(capsys, ["classify", frames[0], "--pixel-size", pixel],
                 "the file says 0.3 Å/px: drop --pixel-size (pixel_size_A=) to use it")


def test_domain_check_names_the_file_calibration_only_when_overridden() -> None:
    from clusterspy.domain import check_image
    from clusterspy.errors import OutOfDomainError
    from clusterspy.image import Image

    data = np.random.default_rng(0).normal(100, 5, (64, 64)).astype(np.float32)
    domain = {"image_pixel_size_A": [0.05, 0.5], "diameter_nm": [1.2, 3.3]}
    cases = [({"pixel_size_source": "user", "file_pixel_size_A": 0.2}, "the file says 0.2 Å/px: drop"),
             ({"pixel_size_source": "user", "file_pixel_size_A": 5.0}, "the file says 5 Å/px;"),
             ({"pixel_size_source": "user", "file_pixel_size_A": 2.0}, None),  # the same value
             ({"pixel_size_source": "user", "file_pixel_size_A": None}, None),
             ({"pixel_size_source": "file", "file_pixel_size_A": 2.0}, None)]
    for md, needle in cases:
        with pytest.raises(OutOfDomainError) as err:
            check_image(Image(data, 2.0, md), domain)
        assert (needle in str(err.value)) if needle else "the file says" not in str(err.value)


def test_table_shows_no_confidence_for_a_withdrawn_claim() -> None:
    from clusterspy.predict import ClusterResult, table_confidence
    from clusterspy.workflows import format_results

    probs = {"icosahedral": 0.996, "decahedral": 0.002, "fcc": 0.001, "amorphous": 0.001}
    rows = [("unknown", "out_of_distribution", 0.996), ("unknown", "low_confidence", 0.41),
            ("fcc", None, 0.97), ("unknown", "too_small", None)]
    results = [ClusterResult(file="a.npy", frame=0, cluster=i, x_px=10.0, y_px=10.0, label=lab,
                             confidence=c, probabilities=None if c is None else probs, diameter_nm=2.0,
                             reason=why) for i, (lab, why, c) in enumerate(rows)]
    table = format_results(results, "table").splitlines()[2:]
    assert "1.00" not in table[0] and "out_of_distribution" in table[0]
    assert "0.41" in table[1] and "0.97" in table[2]
    assert [table_confidence(lab, why, c) for lab, why, c in rows] == [None, 0.41, 0.97, None]
    assert json.loads(format_results(results, "json"))[0]["confidence"] == 0.996  # kept, as documented
    assert "0.996" in format_results(results, "csv").splitlines()[1]


@needs_weights
def test_too_large_cluster_points_to_the_shipped_model_that_covers_it(frames, capsys) -> None:
    from clusterspy.predict import load_model

    v3 = load_model("isomernet-v3").card.domain["diameter_nm"]
    # 3.5 nm at 0.45 Å/px: too large for v2 named alone; the default would send it to v3
    assert main(["classify", str(frames[0]), "--pixel-size", "0.45", "--model", "isomernet-v2"]) == 0
    out, err = capsys.readouterr()
    assert "too_large" in out
    notes = [ln for ln in err.splitlines() if "overrides the file's own calibration" not in ln]
    assert _one_line("\n".join(notes)) == (
        f"clusterspy: note: 1 cluster too large for isomernet-v2 (≤ 3.26 nm); --model isomernet-v3 "
        f"covers {v3[0]:g}–{v3[1]:g} nm (the default, --model auto, sends each cluster to the model that "
        "covers it)")
    assert main(["classify", str(frames[0]), "--pixel-size", "0.45"]) == 0  # the default: v3 judges it
    out, err = capsys.readouterr()
    assert "too_large" not in out and "isomernet-v3" in out and "too large" not in err
    assert main(["classify", str(frames[0])]) == 0  # nothing too large: no note
    assert "note:" not in capsys.readouterr().err


def test_unknown_model_name_lists_the_shipped_models(frames, capsys) -> None:
    from clusterspy.cli import MODEL_HELP
    from clusterspy.predict import shipped_models

    names = list(shipped_models())
    _error_names(capsys, ["classify", frames[0], "--model", "isomernet-v9"], "model file not found: "
                 "isomernet-v9", *names)
    assert all(name in MODEL_HELP for name in names)


def test_series_element_without_verify_sample_is_refused(frames, tmp_path, capsys) -> None:
    _error_names(capsys, ["series", frames[2], "--pixel-size", "0.3", "--element", "Pt",
                          "--out", tmp_path / "s"], "--element", "--verify-sample")
    assert not (tmp_path / "s").exists()


@needs_weights
def test_series_warning_is_printed_once_on_stderr(tmp_path, capsys) -> None:
    with np.load(EXAMPLE) as ex:
        stack = ex["frames"][:4].astype(np.float32)
    stack[2] = np.nan  # a frame that cannot be used
    np.save(tmp_path / "stack.npy", stack)
    assert main(["series", str(tmp_path / "stack.npy"), "--pixel-size", "0.3", "--no-report",
                 "--out", str(tmp_path / "s")]) == 0
    out, err = capsys.readouterr()
    assert "could not be used" not in out
    assert [ln for ln in err.splitlines() if "could not be used" in ln] == [
        "clusterspy: warning: 1 frame(s) could not be used (first: frame 2); see frames.csv"]
    assert "frame time unknown, model" in out and "unknown s" not in out


def test_an_out_folder_under_a_file_names_the_file(tmp_path) -> None:
    from clusterspy.errors import ConfigError
    from clusterspy.outdir import make_folder

    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"cannot create --out .*notes\.txt/sub: .*notes\.txt is a file$"):
        make_folder(tmp_path / "notes.txt" / "sub")
    with pytest.raises(ConfigError, match=r"notes\.txt is a file; give a folder"):
        make_folder(tmp_path / "notes.txt")


def test_series_shows_a_progress_bar_of_its_frames_on_a_terminal(tmp_path):
    """``clusterspy series`` draws a progress bar of its frames on stderr when that is a terminal
    (run under a pseudo-terminal here), and none when stderr is a pipe."""
    import os
    import pty
    import subprocess
    import sys

    from clusterspy.workflows import EXAMPLE_SERIES

    cmd = [sys.executable, "-m", "clusterspy", "series", str(EXAMPLE_SERIES), "--out",
           str(tmp_path / "tty"), "--no-report"]
    leader, follower = pty.openpty()
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower,
                          timeout=300, check=False)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.returncode == 0
    assert b"frames" in seen and b"/40" in seen  # "frames ━━━ 40/40"
    piped = subprocess.run([*cmd[:-3], "--out", str(tmp_path / "pipe"), "--no-report"], capture_output=True,
                           timeout=300, check=False)
    assert piped.returncode == 0 and b"/40" not in piped.stderr


def test_classify_notes_when_most_judged_clusters_are_unsure_and_names_calibrate() -> None:
    """At least half the clusters the network judged low confidence or unlike training — what a
    pixel size more than 15 % off does — gets one note naming --calibrate (not when calibrated already)."""
    from clusterspy.cli import _unsure_notes
    from clusterspy.predict import ClusterResult

    def result(k: int, reason: str | None) -> ClusterResult:
        return ClusterResult(file="f", frame=0, cluster=k, x_px=1.0, y_px=1.0, label="fcc" if reason is None
                             else "unknown", confidence=0.5, reason=reason)

    unsure = [result(0, "low_confidence"), result(1, "out_of_distribution"), result(2, None),
              result(3, "cut_by_edge"), result(4, "models_disagree")]
    (note,) = _unsure_notes(unsure, calibrated=False)
    assert note.startswith("3 of the 4 clusters the network judged got no label (1 low_confidence, 1 "
                           "models_disagree, 1 out_of_distribution) (models_disagree: isomernet-v7")
    assert "a pixel size more than 15 % off" in note and "15 % either side" in note
    assert "10–20" not in note and "20–45" not in note  # one range, not two that contradict (a newcomer's)
    assert "--calibrate --element <metal>" in note
    assert "the corners of an image rotated with zeros" in note  # not only the pixel size (a newcomer's)
    # a newcomer's 20 smoothed unresolved particles, all low_confidence, were told only of the pixel size
    assert "hides by smoothing, denoising or a high-pass" in note and "give the raw image" in note
    assert _unsure_notes(unsure, calibrated=True) == []
    mostly_sure = [result(0, "low_confidence"), result(1, None), result(2, None)]
    assert _unsure_notes(mostly_sure, calibrated=False) == []
    assert _unsure_notes([result(0, "cut_by_edge")], calibrated=False) == []
    # labels of isomernet-v3 withdrawn by v4 at an exact pixel size (a newcomer's 4.2 nm decahedra were
    # told "most often a pixel size more than 15 % off"): their own line, which does not blame it
    v3 = result(5, "models_disagree")
    v3.model = "isomernet-v3@3f7629830b93"
    (only,) = _unsure_notes([v3], calibrated=False)
    assert only.startswith("1 cluster judged by isomernet-v3 models_disagree") and "15 % off" not in only
    assert "3.3–4.35 nm" in only and "--model isomernet-v5" in only
    assert _unsure_notes([*unsure, v3], calibrated=False)[-1] == only


def test_a_message_many_files_share_is_printed_once() -> None:
    """A folder of 33 wide fields told 2 Å/px printed the same refusal 33 times: three or more files
    with one message now make one line that says how many; fewer keep a line each."""
    from clusterspy.cli import _failure_lines

    same = "2 Å/px cannot resolve atomic columns"
    failures = [{"file": f"w{k}.jpg", "frame": None, "message": same} for k in range(33)]
    failures.append({"file": "s.tif", "frame": 2, "message": "truncated"})
    assert _failure_lines(failures) == [f"33 files (the first w0.jpg): {same}", "s.tif (frame 2): truncated"]
    assert _failure_lines(failures[:2]) == [f"w0.jpg: {same}", f"w1.jpg: {same}"]


def test_the_table_keeps_the_start_and_end_of_a_long_file_name() -> None:
    """A newcomer read "dral_150_p0.25…" (the last 28 characters of an icosahedral file's name) as
    another isomer: a long name keeps its start and its end, 28 characters in all."""
    from clusterspy.workflows import FILE_CELL_CHARS, _file_cell

    assert _file_cell("/data/a.npz") == "a.npz"
    cell = _file_cell("/data/icosahedral_150_p0.25_src3_med5.npz")
    assert len(cell) == FILE_CELL_CHARS
    assert cell.startswith("icosahedral_") and cell.endswith("_med5.npz") and "…" in cell


@needs_weights
def test_a_glassy_call_above_the_amorphous_cap_is_not_called_too_large_for_every_model():
    """``too_large`` after inference (an amorphous call above the largest glassy cluster trained on)
    had the note for particles beyond every model's range: a newcomer's 5 nm cluster read "too large
    for every shipped model (together 0.87–10.54 nm)"."""
    from clusterspy.cli import _other_model_notes
    from clusterspy.predict import ClusterResult

    def result(k: int, d_nm: float, conf: float | None) -> ClusterResult:
        return ClusterResult(file="f", frame=0, cluster=k, x_px=1.0, y_px=1.0, label="unknown",
                             confidence=conf, reason="too_large", diameter_nm=d_nm)

    (glassy,) = _other_model_notes([result(0, 5.0, 0.96)], None)
    assert glassy.startswith("1 cluster too_large for a glassy call") and "every shipped model" not in glassy
    both = _other_model_notes([result(0, 5.0, 0.96), result(1, 12.5, None)], None)
    assert len(both) == 2 and "1 cluster too large for every shipped model" in both[1]


def test_an_element_outside_the_model_cards_gets_a_note():
    """A newcomer's simulated Pb decahedron was fcc 0.999 after ``--calibrate --element Pb`` agreed with
    the pixel size, and nothing said the networks never saw Pb."""
    from clusterspy.cli import _element_notes

    (note,) = _element_notes("Pb", None)
    assert note.startswith("--element Pb: the networks were trained on Ag, Au, Cu, Pd, Pt only")
    assert "21 % larger than Au's" in note and "--verify --element Pb" in note
    assert _element_notes("Pt", None) == [] and _element_notes(None, None) == []
    assert _element_notes("Xx", None) == []  # not a metal: the fit's own error says so


def test_the_search_note_does_not_blame_a_calibration_that_calibrate_confirmed():
    from clusterspy.cli import _searched_notes
    from clusterspy.predict import ClusterResult

    found = [ClusterResult(file="f", frame=0, cluster=0, x_px=1.0, y_px=1.0, label="decahedral",
                           confidence=0.99, reason=None, pixel_size_factor=0.87)]
    (plain,) = _searched_notes(found)
    assert "the calibration may be off by as much" in plain
    assert "suspect a blurred image (focus, astigmatism)" in plain  # stop 41: blur looks like it too
    (checked,) = _searched_notes(found, calibrated=True)
    assert "may be off" not in checked and "--calibrate measured the pixel size" in checked
    assert "check such labels with --verify" in checked
