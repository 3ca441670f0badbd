"""The command-line interface: help, error paths (one line, non-zero exit, no traceback), JSON schema."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clusterspy.isomers import CLASSES

WEIGHTS = Path(__file__).parents[1] / "src" / "clusterspy" / "weights" / "model_card.json"
needs_weights = pytest.mark.skipif(not WEIGHTS.exists(), reason="no shipped model yet")


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m clusterspy ARGS`` in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "clusterspy", *args],
        capture_output=True, text=True, cwd=cwd, timeout=300, check=False,
    )


def assert_clean_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """A user mistake: non-zero exit, one line on stderr that names the problem, no traceback."""
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]


def test_help_lists_every_command() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    for command in ("classify", "series", "thermo", "simulate", "train", "demo"):
        assert command in proc.stdout


def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys; from clusterspy.cli import main; "
        "rc = main(['--help']); "
        "mods = ('torch', 'abtem', 'ase', 'onnxruntime', 'hyperspy', 'matplotlib'); "
        "print('HEAVY=' + ','.join(m for m in mods if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY=", proc.stdout


def test_missing_file_is_a_clean_error(tmp_path: Path) -> None:
    assert_clean_error(run_cli("classify", str(tmp_path / "nope.tif")), "nope.tif")


def test_unknown_format_is_a_clean_error(tmp_path: Path) -> None:
    bad = tmp_path / "image.xyz"
    bad.write_text("not an image")
    assert_clean_error(run_cli("classify", str(bad)), "xyz")


def test_npy_without_pixel_size_is_a_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "image.npy"
    np.save(path, np.random.default_rng(0).random((64, 64), dtype=np.float32))
    assert_clean_error(run_cli("classify", str(path)), "--pixel-size")


def test_rgb_image_is_a_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "rgb.npy"
    np.save(path, np.zeros((64, 64, 3), dtype=np.float32))
    assert_clean_error(run_cli("classify", str(path), "--pixel-size", "0.3"), "rgb")


def test_negative_pixel_size_is_a_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "image.npy"
    np.save(path, np.ones((64, 64), dtype=np.float32))
    assert_clean_error(run_cli("classify", str(path), "--pixel-size", "-1"), "pixel size")


@needs_weights
def test_image_without_cluster_is_a_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "noise.npy"
    np.save(path, np.random.default_rng(1).poisson(5.0, (128, 128)).astype(np.float32))
    assert_clean_error(run_cli("classify", str(path), "--pixel-size", "0.3"), "cluster")


@needs_weights
def test_classify_json_schema(tmp_path: Path) -> None:
    pytest.importorskip("ase")
    image = tmp_path / "ico.npz"
    sim = run_cli("simulate", "--motif", "icosahedral", "--size", "309", "--pixel-size", "0.3",
                  "--extent", "48", "--dose", "50000", "--seed", "3", "--out", str(image))
    assert sim.returncode == 0, sim.stderr
    proc = run_cli("classify", str(image), "--format", "json", "--out", str(tmp_path / "out"), "--explain")
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)
    assert isinstance(records, list) and len(records) == 1
    record = records[0]
    assert set(record) == {"file", "frame", "cluster", "x_px", "y_px", "diameter_nm", "label", "reason",
                           "confidence", "probabilities", "ood_distance", "model", "pixel_size_factor"}
    assert record["pixel_size_factor"] == 1.0  # the true pixel size: nothing searched
    assert (record["reason"] is None) == (record["label"] != "unknown")
    assert set(record["probabilities"]) == set(CLASSES)
    assert abs(sum(record["probabilities"].values()) - 1) < 1e-4
    assert record["label"] in (*CLASSES, "unknown")
    assert 0 <= record["confidence"] <= 1
    # the cluster is centred in a 160-px field
    assert abs(record["x_px"] - 80) < 12 and abs(record["y_px"] - 80) < 12
    for name in ("results.json", "results.csv", "settings.json"):
        assert (tmp_path / "out" / name).is_file()
    for name in ("ico_overlay.png", "ico_overlay_saliency.png"):
        png = tmp_path / "out" / name
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    settings = json.loads((tmp_path / "out" / "settings.json").read_text())
    # the default: the models chosen by size, each with its SHA-256; the record names the one used
    assert [len(h) for h in settings["model"]["weights_sha256"].split("+")] == [64, 64, 64]
    assert record["model"] in [m["id"] for m in settings["model"]["by_size"]]


def test_explain_without_out_is_a_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "image.npy"
    np.save(path, np.ones((64, 64), dtype=np.float32))
    assert_clean_error(run_cli("classify", str(path), "--pixel-size", "0.3", "--explain"), "--out")


def _labels_csv(path: Path, rows: str) -> Path:
    path.write_text("temperature_K,label\n" + rows)
    return path


@pytest.mark.parametrize(
    ("rows", "args", "needle"),
    [
        ("300,fcc\nabc,fcc\n", (), "not a number"),
        ("300,fcc\nnan,fcc\n", (), "temperature"),
        ("300,fcc\n0,fcc\n", (), "temperature"),
        ("300,fcc\n-5,fcc\n", (), "temperature"),
        ("300,fcc\n400,decahedral\n", ("--reference", "foo"), "foo"),
        ("300,fcc\n400,decahedral\n", ("--reference", "icosahedral"), "never occurs"),
        ("300,fcc\n400,decahedral\n", ("--format", "xml"), "--format"),
    ],
)
def test_thermo_user_errors_are_one_line(tmp_path: Path, rows: str, args: tuple, needle: str) -> None:
    path = _labels_csv(tmp_path / "t.csv", rows)
    proc = run_cli("thermo", str(path), *args)
    assert_clean_error(proc, needle)
    assert proc.returncode == 2


def test_thermo_json_output_has_no_nan(tmp_path: Path, monkeypatch, capsys) -> None:
    from clusterspy import thermo
    from clusterspy.cli import main

    rows = "".join(f"{t},{lab}\n" for t in (300, 400) for lab in ["fcc"] * 3 + ["decahedral"] * 3)
    path = _labels_csv(tmp_path / "t.csv", rows)  # ≥ 5 labelled frames per temperature: fitted
    real = thermo.thermo_from_table

    def with_nan(*args, **kwargs):
        res = real(*args, **kwargs)
        res["van_t_hoff"][0]["delta_E_eV"] = float("nan")
        res["delta_G"][0]["ci95_eV"] = [float("-inf"), float("inf")]
        return res

    monkeypatch.setattr(thermo, "thermo_from_table", with_nan)
    assert main(["thermo", str(path), "--format", "json", "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    for text in (printed, (tmp_path / "out" / "thermo.json").read_text()):
        assert "NaN" not in text and "Infinity" not in text
        res = json.loads(text)
        assert res["van_t_hoff"][0]["delta_E_eV"] is None
        assert res["delta_G"][0]["ci95_eV"] == [None, None]


def test_help_shows_units() -> None:
    import os

    env = {**os.environ, "COLUMNS": "200", "PYTHONIOENCODING": "utf-8", "NO_COLOR": "1"}

    def help_of(command: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "clusterspy", command, "--help"],
                              capture_output=True, text=True, encoding="utf-8", env=env,
                              timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        return " ".join(proc.stdout.split())

    text = help_of("series")
    for unit in ("Time between frames, in s.", "Pixel size, in Å/px", "Specimen temperature, in K"):
        assert unit in text, text
    text = help_of("simulate")
    for unit in ("in keV", "in mrad", "in e⁻/Å²", "in Å/px", "Field of view, in Å"):
        assert unit in text, text
    assert "Beam energy ." not in text


@needs_weights
def test_series_at_two_temperatures_then_thermo(tmp_path: Path) -> None:
    data = np.load(Path(__file__).parents[1] / "src" / "clusterspy" / "data" / "example_series.npz")
    folders = []
    # frames 0–11 icosahedral, 12–21 decahedral: 8 ico + 4 dec at 300 K, 2 ico + 10 dec at 400 K
    for t, (a, b) in ((300.0, (4, 16)), (400.0, (10, 22))):
        stack = tmp_path / f"T{t:g}.npy"
        np.save(stack, data["frames"][a:b])
        out = tmp_path / f"series_{t:g}K"
        proc = run_cli("series", str(stack), "--pixel-size", "0.3", "--frame-time", "0.5",
                       "--temperature-K", f"{t:g}", "--out", str(out), "--format", "json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["temperature_K"] == t
        assert json.loads((out / "summary.json").read_text())["temperature_K"] == t
        folders.append(out)
    proc = run_cli("thermo", *map(str, folders), "--format", "json", "--out", str(tmp_path / "th"))
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["temperatures_K"] == [300.0, 400.0]
    assert res["delta_G"], res
    assert {d["temperature_K"] for d in res["delta_G"]} == {300.0, 400.0}
    for d in res["delta_G"]:
        assert {"isomer", "reference", "delta_G_eV", "ci95_eV"} <= set(d)
        assert all(np.isfinite([d["delta_G_eV"], *d["ci95_eV"]])), d
        assert d["ci95_eV"][0] <= d["delta_G_eV"] <= d["ci95_eV"][1]
    for b in res["branching"]:  # where an isomer goes when it leaves, per temperature
        assert b["temperature_K"] in (300.0, 400.0) and b["from"] != b["to"]
        if b["ratio"] is None:  # fewer than half a departure: no ratio (not the prior's 1/3)
            assert b["n_departures"] < 0.5 and b["ci95"] == [None, None]
            continue
        assert b["ci95"][0] <= b["ratio"] <= b["ci95"][1]
    assert (tmp_path / "th" / "thermo.json").is_file()
    # a folder that records no temperature: one line, naming the series option
    summary = folders[0] / "summary.json"
    summ = json.loads(summary.read_text())
    summ["temperature_K"] = None
    summary.write_text(json.dumps(summ))
    proc = run_cli("thermo", *map(str, folders))
    assert_clean_error(proc, "--temperature-K", str(folders[0].name))


@needs_weights
def test_classify_batch_goes_on_past_bad_files_and_records_them(tmp_path: Path) -> None:
    """A batch with a good image, a wide field (out of the model's domain), a blank image and a
    corrupt file: the good result is written, each failure is named, exit status 3."""
    pytest.importorskip("ase")
    good = tmp_path / "ico.npz"
    sim = run_cli("simulate", "--motif", "icosahedral", "--size", "309", "--pixel-size", "0.3",
                  "--extent", "48", "--dose", "50000", "--seed", "3", "--out", str(good))
    assert sim.returncode == 0, sim.stderr
    wide = tmp_path / "wide.npy"
    np.save(wide, np.random.default_rng(0).random((512, 512)).astype(np.float32))
    blank = tmp_path / "blank.npy"
    np.save(blank, np.random.default_rng(1).poisson(20.0, (256, 256)).astype(np.float32))
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00garbage")
    out = tmp_path / "out"
    proc = run_cli("classify", str(good), str(wide), str(blank), str(corrupt), "--pixel-size", "0.3",
                   "--out", str(out), "--format", "csv")
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert {r["file"] for r in rows if r["label"] != "unknown"} == {str(good)}  # noise gets no label
    assert str(good) in {r["file"] for r in rows}
    files = {r["file"]: r for r in csv.DictReader(io.StringIO((out / "files.csv").read_text()))}
    assert files[str(good)]["status"] == "ok" and int(files[str(good)]["clusters"]) == 1
    assert float(files[str(good)]["pixel_size_A"]) == 0.3 and files[str(good)]["pixel_size_source"] == "user"
    for bad in (blank, corrupt):
        assert files[str(bad)]["status"] == "failed" and files[str(bad)]["message"]
        assert str(bad) in proc.stderr
    # --out naming a file: one line, no traceback
    clash = run_cli("classify", str(good), "--out", str(corrupt))
    assert clash.returncode == 2 and "is a file" in clash.stderr and "Traceback" not in clash.stderr
    # the same wide field at 2 Å/px is refused at once, with the reason
    alone = run_cli("classify", str(wide), "--pixel-size", "2")
    assert alone.returncode == 2 and "cannot resolve atomic columns" in alone.stderr
    assert len(alone.stderr.strip().splitlines()) == 1


def test_simulate_blurs_with_a_real_source_size_by_default(tmp_path: Path) -> None:
    """``clusterspy simulate`` draws with a 0.6 Å effective source by default (an ideal probe, 0, is
    sharper than any microscope's, and its sharp fcc fringes tripped scale_mismatch for a newcomer),
    records it, and takes --source-size 0."""
    import inspect

    pytest.importorskip("ase")
    from clusterspy.cli import SOURCE_SIZE_A
    from clusterspy.workflows import simulate_to_file

    assert inspect.signature(simulate_to_file).parameters["source_size_A"].default == SOURCE_SIZE_A == 0.6
    for args, expected in (([], 0.6), (["--source-size", "0"], 0.0)):
        out = tmp_path / f"s{expected}.npz"
        proc = run_cli("simulate", "--motif", "fcc", "--size", "147", "--extent", "30", "--seed", "1",
                       *args, "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        with np.load(out) as z:
            assert json.loads(str(z["metadata"]))["source_size_A"] == expected
    with np.load(tmp_path / "s0.6.npz") as a, np.load(tmp_path / "s0.0.npz") as b:
        assert a["image"].std() < b["image"].std()  # the blur lowers the columns' contrast
    bad = run_cli("simulate", "--source-size", "-1", "--out", str(tmp_path / "x.npz"))
    assert bad.returncode == 2 and "--source-size" in bad.stderr


def test_simulate_draws_an_astigmatic_probe(tmp_path: Path) -> None:
    """``--source-elongation`` / ``--source-angle``: the columns drawn out along the direction (the
    image's gradients across it stronger than along it), recorded; a negative one refused in one line."""
    pytest.importorskip("ase")
    out = tmp_path / "a.npz"
    proc = run_cli("simulate", "--motif", "fcc", "--size", "147", "--extent", "30", "--seed", "1",
                   "--source-elongation", "2", "--source-angle", "90", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as z:
        meta = json.loads(str(z["metadata"]))
        image = z["image"].astype(float)
    assert (meta["source_elongation_A"], meta["source_angle_deg"]) == (2.0, 90.0)
    along_rows, along_cols = np.abs(np.diff(image, axis=0)).sum(), np.abs(np.diff(image, axis=1)).sum()
    assert along_cols > 1.5 * along_rows  # drawn out along y (rows): smooth down the columns
    bad = run_cli("simulate", "--source-elongation", "-1", "--out", str(tmp_path / "x.npz"))
    assert bad.returncode == 2 and "--source-elongation" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_simulate_draws_a_three_fold_probe_and_names_a_unit_slip(tmp_path: Path) -> None:
    """``--three-fold`` (C23 [Å]) is recorded; a newcomer's 0.5 (µm meant) was simulated as 0.5 Å without a
    word (stop 42): the note says it has no effect and what to give; a negative one is refused in one line."""
    pytest.importorskip("ase")
    out = tmp_path / "t.npz"
    proc = run_cli("simulate", "--motif", "fcc", "--size", "147", "--extent", "30", "--seed", "1",
                   "--three-fold", "6000", "--three-fold-angle", "30", "--out", str(out))
    assert proc.returncode == 0 and "note" not in proc.stderr, proc.stderr
    with np.load(out) as z:
        meta = json.loads(str(z["metadata"]))
    assert (meta["three_fold_A"], meta["three_fold_angle_deg"]) == (6000.0, 30.0)
    slip = run_cli("simulate", "--size", "147", "--extent", "30", "--three-fold", "0.5", "--out", str(out))
    assert slip.returncode == 0 and "if you meant 0.5 µm, give 5000" in slip.stderr
    bad = run_cli("simulate", "--three-fold", "-1", "--out", str(tmp_path / "x.npz"))
    assert bad.returncode == 2 and "--three-fold" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_simulate_refuses_a_size_larger_than_its_builders_make(tmp_path):
    """``--size 45000`` built a 17,885-atom icosahedron and said nothing: now one line, no file."""
    pytest.importorskip("ase")
    out = tmp_path / "big.npz"
    bad = run_cli("simulate", "--motif", "icosahedral", "--size", "45000", "--out", str(out))
    assert bad.returncode == 2 and "up to 20,000 atoms" in bad.stderr and "Traceback" not in bad.stderr
    assert not out.exists()
    # a pixel size that leaves the field a few pixels across, and a particle larger than the field
    tiny = run_cli("simulate", "--size", "309", "--pixel-size", "25", "--out", str(out))
    assert tiny.returncode == 2 and "1.6 px across" in tiny.stderr and not out.exists()
    big = run_cli("simulate", "--motif", "fcc", "--size", "12000", "--extent", "40", "--out", str(out))
    assert big.returncode == 2 and "larger than --extent 40 Å" in big.stderr and not out.exists()


def test_simulate_says_when_it_built_another_number_of_atoms(tmp_path):
    """``--size 1100`` icosahedral builds 923 atoms (whole shells): a newcomer's two "different"
    particles were the same; only the metadata said so."""
    pytest.importorskip("ase")
    shells = run_cli("simulate", "--motif", "icosahedral", "--size", "1100", "--out", str(tmp_path / "a.npz"))
    assert shells.returncode == 0 and "built 923 atoms, not the 1100 asked for" in shells.stderr
    exact = run_cli("simulate", "--motif", "icosahedral", "--size", "309", "--out", str(tmp_path / "b.npz"))
    assert exact.returncode == 0 and "note" not in exact.stderr
