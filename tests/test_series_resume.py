"""A series run that survives kills, other settings, concurrent runs and bad frames.

Exact resume (SIGKILL at random points, then the same run again: byte-identical outputs), the run
manifest (another input or setting refused), the folder lock, bad frames recorded as rows, stray
``.tmp`` files cleaned. The network and the detector are the doubles of ``test_series``; the CLI
test at the bottom uses the shipped model and the example series.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from clusterspy.errors import ConfigError
from clusterspy.outdir import LOCK_NAME
from clusterspy.series import read_frames_csv
from clusterspy.series.checkpoint import CHECKPOINT_NAME
from clusterspy.series.frames import FRAME_COLUMNS
from clusterspy.series.tracking import Tracker

sys.path.insert(0, str(Path(__file__).parent))
from test_series import ModelDouble, make_frames, run

TESTS = Path(__file__).resolve().parent
OUTPUTS = ("frames.csv", "summary.json", "run.json")


def _same_outputs(a: Path, b: Path) -> None:
    for name in OUTPUTS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_resume_restores_the_blur_history_and_thumbnails(tmp_path):
    """The frame right after the checkpoint is blurred: only a restored sharpness history flags it."""
    frames, _ = make_frames(60, switches=(30,), lost=(), blurred=(10, 40))
    full, _ = run(frames, tmp_path / "full", batch_size=10, report=False)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(frames, tmp_path / "resumed", model=ModelDouble(fail_after_batches=1), batch_size=10,
            report=False)
    state = json.loads((tmp_path / "resumed" / CHECKPOINT_NAME).read_text())
    assert state["next_frame"] == 10 and not state["complete"]
    assert not (tmp_path / "resumed" / LOCK_NAME).exists()  # released on the error
    resumed, model = run(frames, tmp_path / "resumed", batch_size=10, report=False)
    assert sum(model.batches) < 60  # the first ten frames were not classified again
    assert resumed.frames["label"][10] == "blurred"
    _same_outputs(tmp_path / "full", tmp_path / "resumed")
    for c, crops in full.thumbnails.items():
        assert len(crops) == len(resumed.thumbnails[c])
        for x, y in zip(crops, resumed.thumbnails[c], strict=True):
            np.testing.assert_array_equal(x, y)


CHILD = """
import sys
sys.path.insert(0, {tests!r})
import numpy as np
from test_series import run
res, _ = run(np.load({npy!r}, mmap_mode="r"), {out!r}, batch_size=8, report=False)
np.savez({out!r} + "/../thumbs_" + {tag!r} + ".npz",
         **{{f"{{c}}_{{k}}": x for c, xs in res.thumbnails.items() for k, x in enumerate(xs)}})
"""


def _child(npy: Path, out: Path, tag: str) -> subprocess.Popen:
    code = CHILD.format(tests=str(TESTS), npy=str(npy), out=str(out), tag=tag)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    """Wait for ``proc``; its exit status and stderr."""
    err = proc.communicate(timeout=timeout)[1]
    return proc.returncode, err.decode()


def _kill_after_a_checkpoint(proc: subprocess.Popen, out: Path, rng: np.random.Generator,
                             sig: int = signal.SIGKILL) -> bool:
    """Send ``sig`` to ``proc`` at a random moment after its next checkpoint; False if it ended first."""
    ckpt = out / CHECKPOINT_NAME
    before = ckpt.stat().st_mtime_ns if ckpt.exists() else 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpt.exists() and ckpt.stat().st_mtime_ns != before:
            break
        time.sleep(0.005)
    time.sleep(float(rng.uniform(0, 0.05)))
    if proc.poll() is not None:
        _finish(proc)
        return False
    proc.send_signal(sig)
    _finish(proc)
    return True


def test_sigkill_at_random_points_then_resume_is_byte_identical(tmp_path):
    frames, _ = make_frames(240, switches=(80, 160), lost=(50, 51, 120), blurred=(60, 97, 150, 201))
    npy = tmp_path / "series.npy"
    np.save(npy, frames)
    rc, err = _finish(_child(npy, tmp_path / "ref", "ref"))
    assert rc == 0, err
    rng = np.random.default_rng(16)
    kills = 0
    for _ in range(3):
        proc = _child(npy, tmp_path / "killed", "killed")
        kills += _kill_after_a_checkpoint(proc, tmp_path / "killed", rng)
    assert kills >= 2
    assert (tmp_path / "killed" / LOCK_NAME).exists()  # left by the SIGKILLed run, taken over below
    # a killed run's frames.csv is not taken for a whole one: its run.json says unfinished, and how
    # many frames' rows frames.csv holds (those of its last checkpoint) — or of the checkpoint before
    # it, when the kill fell between the checkpoint's write and run.json's (two files: a loaded
    # machine widens that moment; run.json never claims more than the checkpoint holds)
    progress = json.loads((tmp_path / "killed" / "run.json").read_text())["progress"]
    kept = json.loads((tmp_path / "killed" / CHECKPOINT_NAME).read_text())["next_frame"]
    assert progress["n_frames"] == 240 and progress["finished"] is False and kept > 0
    assert 0 < progress["frames_classified"] <= kept
    interrupted = _child(npy, tmp_path / "killed", "killed")  # Ctrl-C: the lock is released
    if _kill_after_a_checkpoint(interrupted, tmp_path / "killed", rng, signal.SIGINT):
        assert not (tmp_path / "killed" / LOCK_NAME).exists()
    rc, err = _finish(_child(npy, tmp_path / "killed", "killed"))
    assert rc == 0, err
    _same_outputs(tmp_path / "ref", tmp_path / "killed")
    with np.load(tmp_path / "thumbs_ref.npz") as a, np.load(tmp_path / "thumbs_killed.npz") as b:
        assert sorted(a) == sorted(b) and len(a) > 0
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert not list((tmp_path / "killed").glob(".*.tmp"))


def test_resume_refuses_another_input_or_other_settings(tmp_path):
    from test_series import classify_series_with_report, crop_double, detect_double

    def again(path, pixel_size_A=0.5, frame_time_s=0.1, **kw):
        return classify_series_with_report(str(path), pixel_size_A, frame_time_s=frame_time_s,
                                           model=ModelDouble(), out=out, detect=detect_double,
                                           crop=crop_double, n_boot=200, report=False, **kw)

    frames, _ = make_frames(40, switches=(20,), lost=(), blurred=())
    npy = tmp_path / "s.npy"
    np.save(npy, frames)
    out = tmp_path / "out"
    again(npy)
    with pytest.raises(ConfigError, match=r"frame_time_s / --frame-time\) was 0\.1, now 0\.2.*--no-resume"):
        again(npy, frame_time_s=0.2)
    with pytest.raises(ConfigError, match=r"pixel_size_A / --pixel-size\) was 0\.5, now 0\.6.*--no-resume"):
        again(npy, pixel_size_A=0.6)
    np.save(npy, frames[::-1])  # another file at the same path
    with pytest.raises(ConfigError, match="input"):
        again(npy)
    fresh = again(npy, resume=False)
    assert len(fresh) == 40 and json.loads((out / "run.json").read_text())["input"]["path"] == str(npy)


def test_a_run_that_wrote_no_row_is_replaced_and_said_so(tmp_path):
    """A finished run that found no cluster leaves nothing to lose, so another run may take its
    folder; it used to do so without a word (a newcomer took it for an unguarded folder)."""
    from test_series import classify_series_with_report, crop_double

    def none_found(image, **kw):
        return []

    said: list[str] = []
    noise = np.random.default_rng(0).normal(0, 1, (6, 64, 64)).astype(np.float32)
    out = tmp_path / "out"
    for px in (0.5, 0.6):
        classify_series_with_report(noise, px, model=ModelDouble(), out=out, detect=none_found,
                                    crop=crop_double, n_boot=50, report=False, announce=said.append)
    assert said == [f"{out} held another run that wrote no frame's row (pixel size (pixel_size_A / "
                    "--pixel-size) was 0.5, now 0.6): this one replaces it"]
    assert json.loads((out / "run.json").read_text())["settings"]["pixel_size_A"] == 0.6


def test_bad_frames_are_rows_and_the_run_goes_on(tmp_path):
    frames, _ = make_frames(40, switches=(20,), lost=(), blurred=())
    frames[0] = np.nan  # before any track: a row of cluster -1
    frames[12, 5, 5] = np.nan
    frames[25] = 0.0  # blank
    npy = tmp_path / "bad.npy"
    np.save(npy, frames)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".frames.csv.x1y2.tmp").write_text("left by a kill")
    res, _ = run(str(npy), tmp_path / "out", report=False)
    table = read_frames_csv(tmp_path / "out" / "frames.csv")
    bad = table["status"] == "bad_frame"
    assert sorted(table["frame"][bad]) == [0, 12, 25]
    assert table["cluster"][table["frame"] == 0].tolist() == [-1]
    assert "NaN" in table["message"][table["frame"] == 12][0]
    assert "constant" in table["message"][table["frame"] == 25][0]
    assert set(table["label"][bad]) == {"lost"}
    good = ~bad
    assert set(table["status"][good]) == {"ok"} and np.all(table["message"][good] == "")
    assert sorted(set(table["frame"][good])) == [f for f in range(40) if f not in (0, 12, 25)]
    assert res.summary["n_bad_frames"] == 3 and res.summary["n_frames"] == 40
    assert [c["cluster"] for c in res.summary["clusters"]] == [0]
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_a_frames_csv_without_status_columns_is_still_read(tmp_path):
    old = ",".join(FRAME_COLUMNS[:14]) + "\n0,0,0,1.5,2.5,fcc,fcc,0.9,0.03,0.03,0.9,0.04,2.1,\n"
    assert FRAME_COLUMNS[13] == "reason"  # the last column before status and message existed
    (tmp_path / "frames.csv").write_text(old)
    t = read_frames_csv(tmp_path / "frames.csv")
    assert t["label"].tolist() == ["fcc"] and t["status"].tolist() == ["ok"] and t["message"].tolist() == [""]


def test_tracker_state_round_trip_links_the_same_way():
    rng = np.random.default_rng(3)
    a = Tracker(max_jump_px=6)
    for f in range(5):
        a.update(f, rng.uniform(0, 100, (3, 2)))
    a.tracks[0].sharpness_history[:] = [0.1, 0.2]
    b = Tracker.from_state(json.loads(json.dumps(a.state())))
    assert b.state() == a.state()
    for f in range(5, 9):
        pos = rng.uniform(0, 100, (4, 2))
        assert a.update(f, pos, max_new=1)[0] == b.update(f, pos, max_new=1)[0]
    assert a.state() == b.state()


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_folder_in_use_is_refused_and_a_stale_lock_taken_over(tmp_path, caplog):
    frames, _ = make_frames(20, switches=(), lost=(), blurred=())
    out = tmp_path / "out"
    out.mkdir()
    owner = _sleeper()
    try:
        record = {"pid": owner.pid, "host": socket.gethostname(), "started_utc": "2026-01-01T00:00:00Z",
                  "command": "clusterspy series"}
        (out / LOCK_NAME).write_text(json.dumps(record))
        with pytest.raises(ConfigError, match=f"in use by .*pid {owner.pid}"):
            run(frames, out, report=False)
        assert not (out / "frames.csv").exists()
    finally:
        owner.kill()
        owner.wait()
    res, _ = run(frames, out, report=False)  # the owner is dead: its lock is taken over
    assert len(res) == 20 and not (out / LOCK_NAME).exists()
    assert any("taking over" in r.getMessage() and str(owner.pid) in r.getMessage()
               for r in caplog.records if r.levelname == "WARNING")


def _shipped_model_present() -> bool:
    try:
        from clusterspy.predict import load_model

        load_model()
        return True
    except Exception:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _shipped_model_present(), reason="shipped weights absent")
def test_cli_series_killed_twice_ends_identical_and_a_second_run_is_refused(tmp_path):
    """``clusterspy series`` with the shipped model on the example series, 3× longer (120 frames)."""
    from clusterspy.workflows import EXAMPLE_SERIES

    with np.load(EXAMPLE_SERIES) as ex:
        stack = np.concatenate([ex["frames"]] * 3)
        px, dt = float(ex["pixel_size_A"]), float(ex["frame_time_s"])
    npy = tmp_path / "long.npy"
    np.save(npy, stack)
    exe = [sys.executable, "-m", "clusterspy", "series", str(npy), "--pixel-size", str(px),
           "--frame-time", str(dt), "--no-report"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}

    def cli(out: Path) -> subprocess.Popen:
        return subprocess.Popen([*exe, "--out", str(out)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env=env)

    assert _finish(cli(tmp_path / "ref"), 600)[0] == 0
    rng = np.random.default_rng(7)
    first = cli(tmp_path / "killed")
    time.sleep(0.5)
    second = cli(tmp_path / "killed")  # the same --out while the first runs
    rc, err = _finish(second, 120)
    err = err.strip()
    assert rc == 2 and "in use by" in err and len(err.splitlines()) == 1, err
    kills = _kill_after_a_checkpoint(first, tmp_path / "killed", rng)
    kills += _kill_after_a_checkpoint(cli(tmp_path / "killed"), tmp_path / "killed", rng)
    assert kills >= 1
    assert _finish(cli(tmp_path / "killed"), 600)[0] == 0
    _same_outputs(tmp_path / "ref", tmp_path / "killed")


def test_a_truncated_tiff_stack_is_classified_up_to_its_last_whole_frame(tmp_path):
    from test_io_tiff import _cut_in_page, _write

    frames, _ = make_frames(40, switches=(20,), lost=(), blurred=())
    cut = _cut_in_page(_write(tmp_path / "whole.tif", frames, "shaped"), 30, tmp_path / "cut.tif")
    with pytest.warns(UserWarning, match="10 of 40 frames lost"):
        res, _ = run(str(cut), tmp_path / "out", report=False)
    assert res.summary["n_frames"] == 30 and res.summary["frames_lost_in_file"] == 10
    assert any("10 frame(s) at the end" in w for w in res.summary["warnings"])
    assert sorted(set(res.frames["frame"])) == list(range(30))


def test_a_truncated_npy_series_is_classified_up_to_its_last_whole_frame(tmp_path):
    """A .npy series cut short (a copy or a recording that stopped) was refused outright; it is read
    up to its last whole frame, as a truncated TIFF stack, and the summary says how many were lost.
    A cut image, or a series without one whole frame, is refused in one line."""
    from clusterspy.errors import InputFileError
    from clusterspy.io import read_image, read_series

    frames, _ = make_frames(40, switches=(20,), lost=(), blurred=())
    whole = tmp_path / "whole.npy"
    np.save(whole, frames)
    data = whole.read_bytes()
    frame_bytes = frames[0].nbytes
    cut = tmp_path / "cut.npy"
    cut.write_bytes(data[: len(data) - 10 * frame_bytes - frame_bytes // 2])  # 29 whole frames
    with pytest.warns(UserWarning, match="11 of 40 frames lost"):
        res, _ = run(str(cut), tmp_path / "out", report=False)
    assert res.summary["n_frames"] == 29 and res.summary["frames_lost_in_file"] == 11
    assert any("11 frame(s) at the end" in w for w in res.summary["warnings"])
    with pytest.warns(UserWarning) as record:
        series = read_series(cut, pixel_size_A=0.3)
    assert record[0].filename == __file__  # points at the caller, as a truncated TIFF's
    np.testing.assert_array_equal(series[28].data, frames[28])
    (tmp_path / "head.npy").write_bytes(data[: len(data) - 40 * frame_bytes + 100])
    with pytest.raises(InputFileError, match="hold no whole frame of its"):
        read_series(tmp_path / "head.npy", pixel_size_A=0.3)
    np.save(tmp_path / "image.npy", frames[0])
    image = (tmp_path / "image.npy").read_bytes()
    (tmp_path / "image_cut.npy").write_bytes(image[: len(image) // 2])
    with pytest.raises(InputFileError, match=r"is truncated: .* hold part of its \(.*\) .* image"):
        read_image(tmp_path / "image_cut.npy", pixel_size_A=0.3)
