"""``classify --calibrate``: the pixel size checked against the clusters' lattice
(:func:`clusterspy.fit.measure_lattice`, :func:`clusterspy.workflows.calibrate_pixel_size`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ase")

from clusterspy.image import Image
from clusterspy.predict import classify
from clusterspy.simulation import Acquisition, Microscope, simulate
from clusterspy.structures import cluster, random_rotation
from clusterspy.workflows import CALIBRATION_TOLERANCE, calibrate_pixel_size

TRUE_PX_A = 0.35


def _image(motif: str, seed: int, **kw) -> Image:
    """One Au cluster of 309 atoms, 128×128 px at 0.35 Å/px, 3·10⁴ e⁻/Å² (fast simulator)."""
    rng = np.random.default_rng(seed)
    atoms = cluster(motif, 309, "Au", rng, **kw)
    return simulate(atoms, Microscope(defocus_A=4.0, source_size_A=0.5), pixel_size=TRUE_PX_A, extent=44.8,
                    rng=rng, acquisition=Acquisition(dose_e_per_A2=3e4))


@pytest.fixture(scope="module")
def octahedron() -> Image:
    return _image("fcc", 4, shape="truncated_octahedron", orientation="[011]")


@pytest.mark.parametrize("error", [1.12, 0.89])
def test_a_wrong_pixel_size_is_corrected_from_the_lattice(octahedron: Image, error: float) -> None:
    told = Image(octahedron.data, TRUE_PX_A * error)
    cal = calibrate_pixel_size(told, classify(told), element="Au")
    assert cal.corrected and cal.scale is not None
    assert cal.pixel_size_A == pytest.approx(TRUE_PX_A, rel=0.03)
    assert cal.given_A == pytest.approx(TRUE_PX_A * error)
    assert f"not {TRUE_PX_A * error:g}" in cal.message()


def test_the_right_pixel_size_is_kept_and_another_element_moves_the_ruler(octahedron: Image) -> None:
    results = classify(octahedron)
    cal = calibrate_pixel_size(octahedron, results, element="Au")
    assert not cal.corrected and abs(cal.scale - 1.0) <= CALIBRATION_TOLERANCE
    assert cal.pixel_size_A == TRUE_PX_A and "kept" in cal.message()
    # told the clusters are Pb (a = 4.95 Å, 21 % above Au's 4.08): the fit's scale reaches the end
    # of its range and says so; the lattice cannot be read past it
    pb = calibrate_pixel_size(octahedron, results, element="Pb")
    assert pb.corrected and pb.at_bound and pb.scale < 1.0 and "or more" in pb.message()


def test_clusters_at_a_far_too_small_pixel_size_are_named_as_the_reason_nothing_was_measured(
        octahedron: Image) -> None:
    """Told half its pixel size, the cluster is ``scale_mismatch`` (fringes finer than a metal's) and
    not measured: the line says so and that the error is past what --calibrate measures (a
    newcomer's said "every one cut by the edge, beside a neighbour or unresolved")."""
    told = Image(octahedron.data, TRUE_PX_A * 0.5)
    results = classify(told)
    assert [r.reason for r in results] == ["scale_mismatch"]
    cal = calibrate_pixel_size(told, results, element="Au")
    assert not cal.measurements and cal.not_measured == {"scale_mismatch": 1} and not cal.corrected
    assert "(of those found: 1 scale_mismatch)" in cal.message()
    assert "too small by more than the ±15 % --calibrate can measure" in cal.message()
    # its known false alarm is named (a newcomer's exactly calibrated, very sharp simulation, stop 42)
    assert "unless the image is very sharp" in cal.message()
    assert cal.to_dict()["not_measured"] == {"scale_mismatch": 1}


def test_an_amorphous_cluster_gives_no_ruler() -> None:
    img = _image("amorphous", 6, orientation=random_rotation(np.random.default_rng(6)))
    told = Image(img.data, TRUE_PX_A * 1.12)
    cal = calibrate_pixel_size(told, classify(told), element="Au")
    assert cal.scale is None and not cal.corrected and cal.pixel_size_A == told.pixel_size_A
    assert "cluster 0: no lattice fringes" in cal.message() and "kept" in cal.message()
    assert cal.to_dict()["clusters"]["0"]["reason"] == "no_fringes"


def test_cli_calibrate_notes_the_pixel_size_used_and_records_it(octahedron: Image, tmp_path, capsys) -> None:
    from clusterspy.cli import main

    path = tmp_path / "to.npy"
    np.save(path, octahedron.data)
    out = tmp_path / "out"
    assert main(["classify", str(path), "--pixel-size", f"{TRUE_PX_A * 1.12:g}", "--calibrate",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "says the pixel size is 0.35" in err and "classified at" in err
    # said first, in a log too (not only on a terminal): a newcomer's --verify ran 96 s in silence
    assert "clusterspy: --calibrate fits the lattice of up to 3 clusters a frame" in err
    assert err.index("this can take minutes") < err.index("says the pixel size is 0.35")
    settings = json.loads((out / "settings.json").read_text())
    assert settings["calibrate"] is True and settings["element"] == "Au"
    row = (out / "files.csv").read_text().splitlines()[1].split(",")
    assert row[6] == "lattice"  # pixel_size_source
    assert float(row[5]) == pytest.approx(TRUE_PX_A, rel=0.03)  # pixel_size_A: the one used
    # the folder's results were calibrated: a rerun without --calibrate is refused, in one line
    assert main(["classify", str(path), "--pixel-size", f"{TRUE_PX_A * 1.12:g}", "--out", str(out)]) == 2
    assert "--calibrate True → default" in capsys.readouterr().err


def test_cli_series_calibrate_classifies_the_series_at_the_lattice_pixel_size_and_a_rerun_keeps_it(
        octahedron: Image, tmp_path, capsys) -> None:
    from clusterspy.cli import main

    rng = np.random.default_rng(0)
    noise = 0.01 * float(octahedron.data.std())
    frames = np.stack([octahedron.data + rng.normal(0, noise, octahedron.data.shape)
                       for _ in range(6)]).astype(np.float32)
    path, out = tmp_path / "series.npy", tmp_path / "out"
    np.save(path, frames)
    told = f"{TRUE_PX_A * 1.12:g}"
    args = ["series", str(path), "--pixel-size", told, "--calibrate", "--out", str(out), "--no-report"]
    assert main(args) == 0
    captured = capsys.readouterr()
    err = captured.err
    assert "pixel size checked against the lattice: frames 0, 1, 2: " in captured.out  # the printed summary
    assert "--calibrate measures against Au's lattice (a = 4.08 Å) as no --element was given" in err
    # one particle a frame: three frames are measured, and the median of their three scales decides
    assert "frames 0, 1, 2: the lattice of 3 clusters, if Au (--element), says the pixel size is 0.35" in err
    assert cal_frames(out) == [0, 1, 2]
    summary = json.loads((out / "summary.json").read_text())
    cal = summary["calibration"]
    assert cal["corrected"] and cal["given_pixel_size_A"] == pytest.approx(TRUE_PX_A * 1.12)
    run = json.loads((out / "run.json").read_text())  # the pixel size the frames were classified at
    assert run["settings"]["pixel_size_A"] == pytest.approx(cal["pixel_size_A"])
    assert cal["pixel_size_A"] == pytest.approx(TRUE_PX_A, rel=0.03)
    assert (out / "calibration.json").is_file()
    # the same command again finds the run complete and its calibration, without fitting again
    rows, summary_text = (out / "frames.csv").read_text(), (out / "summary.json").read_text()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "the pixel size calibrated by the earlier run in this folder: frames 0, 1, 2" in err
    assert (out / "frames.csv").read_text() == rows
    assert (out / "summary.json").read_text() == summary_text  # the same as the first run's
    # the folder's frames were classified at the calibrated pixel size: without --calibrate, refused
    # in one line
    assert main(["series", str(path), "--pixel-size", told, "--out", str(out), "--no-report"]) == 2
    assert "was classified with --calibrate at 0.3" in capsys.readouterr().err


def test_series_calibrate_refuses_images_that_carry_their_own_pixel_size(octahedron: Image) -> None:
    from clusterspy.errors import ConfigError
    from clusterspy.workflows import calibrate_series_pixel_size

    with pytest.raises(ConfigError, match="needs a file, a folder or a 3-D array"):
        calibrate_series_pixel_size([octahedron, octahedron])


def test_series_calibrate_leaves_another_calibration_alone_and_a_rerun_without_it_names_it(
        octahedron: Image, tmp_path, capsys) -> None:
    """A rerun on a calibrated series folder with another --element is refused and leaves the folder's
    calibration.json as it was; one without --calibrate is refused in one line that names it."""
    from clusterspy.cli import main

    path, out = tmp_path / "series.npy", tmp_path / "out"
    np.save(path, np.stack([octahedron.data] * 4).astype(np.float32))
    args = ["series", str(path), "--pixel-size", f"{TRUE_PX_A * 1.12:g}", "--out", str(out), "--no-report"]
    assert main([*args, "--calibrate", "--element", "Au"]) == 0
    kept = (out / "calibration.json").read_text()
    capsys.readouterr()
    assert main([*args, "--calibrate", "--element", "Pt"]) == 2
    # refused before fitting again, naming what differs (it fitted, then named the pixel size)
    err = capsys.readouterr().err
    assert "holds results of another run (calibrated with the element (--element) 'Au', now 'Pt')" in err
    assert "checking the pixel size" not in err
    assert (out / "calibration.json").read_text() == kept
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("clusterspy: error: ") and len(err.splitlines()) == 1
    assert "was classified with --calibrate at 0.3" in err and "add --calibrate to continue it" in err


def cal_frames(out: Path) -> list[int]:
    """The frames whose clusters calibrated a series folder (its summary.json)."""
    return json.loads((out / "summary.json").read_text())["calibration"]["frames"]


def test_a_series_whose_pixel_size_calibrate_could_not_check_warns_that_its_labels_rest_on_it(
        tmp_path, monkeypatch) -> None:
    """A newcomer's PtIr series at 1.4× its pixel size, ``--calibrate --element Pt``: "could not be
    checked … kept" on the first line, then fcc 1.00 in all 40 frames, and nothing in the summary's
    warnings, ``summary.json`` or the printed summary said the scale was unchecked. The warning goes with
    the labels now (and only where the check failed: a checked pixel size warns of nothing)."""
    import clusterspy.workflows as W

    example = Path(W.__file__).parent / "data" / "example_series.npz"
    with np.load(example) as z:
        frames, px = z["frames"][:6].astype(np.float32), float(z["pixel_size_A"])
    unchecked = {"given_pixel_size_A": px, "pixel_size_A": px, "scale": None, "element": "Au",
                 "at_bound": False, "corrected": False, "not_measured": {}, "clusters": {},
                 "frames": [0], "message": "frames 0: the pixel size could not be checked (…)",
                 "reused": False}
    checked = {**unchecked, "scale": 1.01, "message": "frames 0: agrees"}
    for cal, warned in ((unchecked, True), (checked, False)):
        monkeypatch.setattr(W, "calibrate_series_pixel_size", lambda *a, c=cal, **k: dict(c))
        out = tmp_path / f"out{int(warned)}"
        res = W.classify_series(frames, px, calibrate=True, out=out, report=False, n_boot=5)
        assert (res.frames["label"] != "unknown").any()  # labels that rest on the pixel size given
        warnings = json.loads((out / "summary.json").read_text())["warnings"]
        said = [w for w in warnings if w.startswith("--calibrate could not check the pixel size")]
        assert bool(said) is warned, warnings
        if warned:
            assert f"({px:g} Å/px kept): the labels rest on it unchecked" in said[0]


def test_a_pixel_size_too_far_off_to_check_is_kept_and_the_line_says_labels_rest_on_it(
        octahedron: Image) -> None:
    """Told 1.4× its pixel size, no Au lattice lines up within ±15 %: the pixel size given is kept, and
    the line says that any label rests on it unchecked (a newcomer read "kept" and an fcc 1.00 after
    it as a calibration confirmed)."""
    told = Image(octahedron.data, TRUE_PX_A * 1.4)
    cal = calibrate_pixel_size(told, classify(told), element="Au")
    assert cal.scale is None and not cal.corrected
    assert cal.message().startswith("the pixel size could not be checked (cluster 0: no Au model's columns")
    assert "Å/px kept, and any label rests on it unchecked (--verify fits each labelled" in cal.message()
