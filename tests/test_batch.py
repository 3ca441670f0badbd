"""``clusterspy classify`` batches: incremental, resumable, the same on every engine, crash-safe.

The batch: 20 frames of the shipped example series (an Au cluster at 0.3 Å/px, each saved as its
own calibrated .npz) and three files that fail — pure noise (no cluster), a corrupt TIFF and a
wide field at 2 Å/px (outside the model's domain).
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from clusterspy.outdir import LOCK_NAME

EXAMPLE = Path(__file__).parents[1] / "src" / "clusterspy" / "data" / "example_series.npz"
WEIGHTS = Path(__file__).parents[1] / "src" / "clusterspy" / "weights" / "model_card.json"
pytestmark = pytest.mark.skipif(not WEIGHTS.exists(), reason="no shipped model")
N_GOOD = 20
BAD = ("zz_noise.npz", "zz_corrupt.tif", "zz_coarse.npz")
OUTPUTS = ("results.csv", "results.json", "files.csv")


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``python -m clusterspy ARGS`` in a subprocess, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "clusterspy", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="module")
def batch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 20 good images and 3 that fail."""
    folder = tmp_path_factory.mktemp("batch") / "images"
    folder.mkdir()
    with np.load(EXAMPLE) as ex:
        frames, pixel = ex["frames"], float(ex["pixel_size_A"])
    for i in range(N_GOOD):
        np.savez(folder / f"img{i:02d}.npz", image=frames[2 * i].astype(np.float32), pixel_size_A=pixel)
    rng = np.random.default_rng(1)
    np.savez(folder / BAD[0], image=rng.poisson(20.0, (256, 256)).astype(np.float32), pixel_size_A=pixel)
    (folder / BAD[1]).write_bytes(b"II*\x00garbage")
    np.savez(folder / BAD[2], image=rng.random((512, 512)).astype(np.float32), pixel_size_A=2.0)
    return folder


@pytest.fixture(scope="module")
def reference(batch_dir: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One uninterrupted single-process run of the batch through the CLI."""
    out = batch_dir.parent / "ref"
    proc = run_cli("classify", str(batch_dir), "--out", str(out), "--workers", "1", "--format", "csv")
    return out, proc


def _files_csv(out: Path) -> dict[str, dict[str, str]]:
    return {Path(r["file"]).name: r for r in csv.DictReader(io.StringIO((out / "files.csv").read_text()))}


def _snapshot(out: Path) -> dict[str, bytes]:
    """Every output a user reads (tables and figures), by name."""
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())
            if p.is_file() and (p.name in OUTPUTS or p.suffix == ".png")}


def test_batch_goes_on_records_failures_and_exits_3(batch_dir: Path, reference) -> None:
    out, proc = reference
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    files = _files_csv(out)
    assert len(files) == N_GOOD + len(BAD)
    for i in range(N_GOOD):
        row = files[f"img{i:02d}.npz"]
        assert row["status"] == "ok" and int(row["clusters"]) == 1 and row["message"] == "", row
        assert (out / f"img{i:02d}_overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name, needle in zip(BAD, ("no cluster", "corrupt", "cannot resolve atomic columns"), strict=True):
        assert files[name]["status"] == "failed" and needle in files[name]["message"], files[name]
        assert any(name in ln and needle in ln for ln in proc.stderr.splitlines()), proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert rows == list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    assert sorted({Path(r["file"]).name for r in rows}) == [f"img{i:02d}.npz" for i in range(N_GOOD)]
    labelled = [r for r in rows if r["label"] != "unknown"]
    assert len(labelled) >= N_GOOD // 2  # the example's cluster is one the model can judge
    settings = json.loads((out / "settings.json").read_text())
    # the default: one SHA-256 per model chosen by size, joined by "+"
    shas = settings["model"]["weights_sha256"].split("+")
    assert [len(h) for h in shas] == [64] * len(settings["model"]["by_size"]) and settings["seed"] is None
    assert settings["runs"][-1]["computed"] == N_GOOD + len(BAD)
    assert not (out / LOCK_NAME).exists()


def test_rerun_skips_done_files(batch_dir: Path, reference, tmp_path: Path) -> None:
    ref, first = reference
    out = tmp_path / "out"
    import shutil

    shutil.copytree(ref, out)
    parts = {p: p.stat().st_mtime_ns for p in (out / "parts").glob("*.json")}
    ok_parts = {p: t for p, t in parts.items() if json.loads(p.read_text())["status"] == "ok"}
    pngs = {p: p.stat().st_mtime_ns for p in out.glob("*.png")}
    assert len(parts) == N_GOOD + len(BAD) and len(pngs) == N_GOOD and len(ok_parts) == N_GOOD
    proc = run_cli("classify", str(batch_dir), "--out", str(out), "--workers", "1", "--format", "csv")
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == first.stdout
    assert f"{N_GOOD} file(s) already done there skipped" in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in ok_parts} == ok_parts  # nothing OK recomputed
    assert all(p.stat().st_mtime_ns != t for p, t in parts.items() if p not in ok_parts)  # failed: retried
    assert {p: p.stat().st_mtime_ns for p in pngs} == pngs
    runs = json.loads((out / "settings.json").read_text())["runs"]
    assert runs[-1]["computed"] == len(BAD) and runs[-1]["skipped"] == N_GOOD
    assert _snapshot(out) == _snapshot(ref)


def test_rerun_with_other_settings_or_changed_file_is_refused(batch_dir: Path, reference,
                                                              tmp_path: Path) -> None:
    ref, _ = reference
    out = tmp_path / "out"
    import shutil

    shutil.copytree(ref, out)
    proc = run_cli("classify", str(batch_dir), "--out", str(out), "--min-size", "1.2")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "--min-size" in proc.stderr and "--restart" in proc.stderr
    changed = tmp_path / "img00.npz"
    shutil.copy(batch_dir / "img00.npz", changed)
    first = run_cli("classify", str(changed), "--out", str(tmp_path / "one"))
    assert first.returncode == 0, first.stderr
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    proc = run_cli("classify", str(changed), "--out", str(tmp_path / "one"))
    assert proc.returncode == 2 and "changed since" in proc.stderr and "--restart" in proc.stderr
    proc = run_cli("classify", str(changed), "--out", str(tmp_path / "one"), "--restart")
    assert proc.returncode == 0, proc.stderr
    runs = json.loads((tmp_path / "one" / "settings.json").read_text())["runs"]
    assert len(runs) == 1 and runs[0]["computed"] == 1


def test_local_processes_and_dask_cluster_give_identical_outputs(batch_dir: Path, reference,
                                                                 tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    from clusterspy.batch import run_batch

    ref, _ = reference
    procs = run_cli("classify", str(batch_dir), "--out", str(tmp_path / "procs"), "--workers", "2")
    assert procs.returncode == 3, procs.stderr
    assert json.loads((tmp_path / "procs" / "settings.json").read_text())["runs"][-1]["engine"] == "processes"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, protocol="tcp",
                                  dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://")
        res = run_batch([batch_dir], out=tmp_path / "dask", scheduler=cluster.scheduler_address,
                        options={"contrast": "auto", "min_size_nm": None, "max_size_nm": None,
                                 "border": "flag"})
    assert res.engine == "dask" and res.exit_code == 3 and res.computed == N_GOOD + len(BAD)
    assert len(res.failed_files) == len(BAD)
    want = _snapshot(ref)
    assert len(want) == len(OUTPUTS) + N_GOOD
    assert _snapshot(tmp_path / "procs") == want
    assert _snapshot(tmp_path / "dask") == want


def test_sigkill_mid_batch_then_rerun_gives_the_uninterrupted_outputs(batch_dir: Path, reference,
                                                                       tmp_path: Path) -> None:
    ref, _ = reference
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "clusterspy", "classify", str(batch_dir), "--out", str(out),
            "--workers", "1"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list((out / "parts").glob("*.json"))) < 6:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_parts = len(list((out / "parts").glob("*.json")))
    assert 6 <= n_parts < N_GOOD + len(BAD), "the kill did not land mid-batch"
    assert (out / LOCK_NAME).exists()  # left by the killed run: stale, taken over below
    again = run_cli("classify", str(batch_dir), "--out", str(out), "--workers", "1")
    assert again.returncode == 3, again.stderr
    runs = json.loads((out / "settings.json").read_text())["runs"]
    assert len(runs) == 1 and 0 < runs[0]["computed"] <= N_GOOD + len(BAD) - n_parts + 1
    assert _snapshot(out) == _snapshot(ref)
    assert not list(out.rglob("*.tmp"))


def test_a_file_failed_for_a_missing_package_is_retried_once_it_is_installed(batch_dir: Path,
                                                                             tmp_path: Path) -> None:
    """P3: an .hspy file read without h5py fails with the pip hint; after the 'install' the rerun
    on the same --out reads it (the OK file is not redone, the old message is gone)."""
    hs = pytest.importorskip("hyperspy.api")
    pytest.importorskip("h5py")
    with np.load(EXAMPLE) as ex:
        frame, pixel = ex["frames"][0].astype(np.float32), float(ex["pixel_size_A"])
    sig = hs.signals.Signal2D(frame)
    for ax in sig.axes_manager.signal_axes:
        ax.scale, ax.units = pixel / 10, "nm"
    sig.metadata.General.title = "HAADF"
    sig.save(tmp_path / "img.hspy")
    args = ["classify", str(tmp_path / "img.hspy"), str(batch_dir / "img00.npz"), "--out",
            str(tmp_path / "out"), "--workers", "1"]
    without_h5py = ("import sys; sys.modules['h5py'] = None; from clusterspy.cli import main; "
                    f"sys.exit(main({args!r}))")
    first = subprocess.run([sys.executable, "-c", without_h5py], capture_output=True, text=True,
                           timeout=600, check=False)
    assert first.returncode == 3 and "Traceback" not in first.stderr, first.stderr
    files = _files_csv(tmp_path / "out")
    assert files["img.hspy"]["status"] == "failed" and "pip install" in files["img.hspy"]["message"]
    assert files["img00.npz"]["status"] == "ok"
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert "1 file(s) already done there skipped" in again.stderr
    files = _files_csv(tmp_path / "out")
    assert files["img.hspy"]["status"] == "ok" and files["img.hspy"]["message"] == ""
    assert int(files["img.hspy"]["clusters"]) >= 1
    runs = json.loads((tmp_path / "out" / "settings.json").read_text())["runs"]
    assert [(r["computed"], r["skipped"]) for r in runs] == [(2, 0), (1, 1)]


def test_a_reader_missing_its_optional_package_is_an_input_error_with_the_pip_hint() -> None:
    from clusterspy.errors import InputFileError
    from clusterspy.io.formats import read_failure

    err = read_failure(Path("scan.emd"), ModuleNotFoundError("No module named 'h5py'", name="h5py"))
    assert isinstance(err, InputFileError)
    assert "pip install h5py" in str(err) and "corrupt" not in str(err)


def test_a_second_run_on_a_locked_out_is_refused(batch_dir: Path, tmp_path: Path) -> None:
    from clusterspy.outdir import lock_folder

    out = tmp_path / "out"
    with lock_folder(out, "test holder"):
        proc = run_cli("classify", str(batch_dir / "img00.npz"), "--out", str(out))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "in use by test holder" in proc.stderr and str(os.getpid()) in proc.stderr
    assert not (out / LOCK_NAME).exists()


def test_stale_lock_is_taken_over(tmp_path: Path) -> None:
    import socket

    from clusterspy.outdir import acquire, release

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tmp_path.joinpath(LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    lock = acquire(tmp_path, "me")
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    release(lock)
    assert not lock.exists()


def test_a_zombie_lock_holder_is_stale_and_the_takeover_warning_has_the_prefix(batch_dir: Path,
                                                                               tmp_path: Path) -> None:
    """P8: a run killed by ``timeout -s KILL`` stays a zombie until reaped: its lock is stale."""
    import socket

    if not Path("/proc/self/stat").exists():
        pytest.skip("no /proc: zombies cannot be told from live processes")
    zombie = subprocess.Popen(["sleep", "0"])  # exits at once; not waited for: a zombie
    try:
        deadline = time.monotonic() + 30
        while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child never became a zombie"
            time.sleep(0.01)
        out = tmp_path / "out"
        out.mkdir()
        out.joinpath(LOCK_NAME).write_text(json.dumps({"pid": zombie.pid, "host": socket.gethostname(),
                                                       "started_utc": "2026-01-01T00:00:00Z"}))
        proc = run_cli("classify", str(batch_dir / "img00.npz"), "--out", str(out))
    finally:
        zombie.wait()
    assert proc.returncode == 0, proc.stderr
    assert f"pid {zombie.pid}" in proc.stderr and "taking over" in proc.stderr
    takeover = [line for line in proc.stderr.splitlines() if "taking over" in line]
    assert len(takeover) == 1 and takeover[0].startswith("clusterspy: warning: "), proc.stderr
    assert not (out / LOCK_NAME).exists()


def test_folder_without_images_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no images here")
    proc = run_cli("classify", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "holds no image files" in proc.stderr


@pytest.mark.parametrize(("args", "needle"), [
    (("--workers", "0"), "--workers"),
    (("--restart",), "--out"),
    (("--workers", "2", "--scheduler", "tcp://127.0.0.1:9"), "--scheduler"),
])
def test_batch_option_mistakes_are_one_line(batch_dir: Path, args: tuple[str, ...], needle: str) -> None:
    proc = run_cli("classify", str(batch_dir / "img00.npz"), *args)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and needle in proc.stderr, proc.stderr


def test_a_truncated_stack_is_warned_once_and_recorded_in_files_csv(tmp_path: Path, capfd) -> None:
    """A truncated TIFF stack classified with --out, in the process and in 2 workers: its warning was
    printed twice (the file is read again for the overlays) and files.csv said "ok" with no message;
    workers printed tifffile's own log."""
    import tifffile

    from clusterspy.cli import main
    from test_io_tiff import _cut_in_page

    with np.load(EXAMPLE) as ex:
        frames = ex["frames"][:6]
    whole = tmp_path / "whole.tif"
    tifffile.imwrite(whole, frames)
    cut = _cut_in_page(whole, 4, tmp_path / "cut.tif")
    warning = ("clusterspy: warning: cut.tif is truncated: 2 of 6 frames lost; reading the first 4 whole "
               "frame(s)")
    for workers in ("1", "2"):
        out = tmp_path / f"out{workers}"
        assert main(["classify", str(cut), str(whole), "--pixel-size", "0.3", "--out", str(out),
                     "--workers", workers]) == 0
        err = capfd.readouterr().err  # the file descriptor's: worker processes' output too
        assert err.count(warning) == 1 and "tifffile" not in err, err
        rows = {r["file"]: r for r in csv.DictReader(io.StringIO((out / "files.csv").read_text()))}
        assert rows[str(cut)]["message"] == warning.removeprefix("clusterspy: ")
        assert rows[str(cut)]["frames"] == "4" and rows[str(whole)]["message"] == ""
