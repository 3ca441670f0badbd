"""Datasets: reproducible from the seed, resumable after kill -9, parallel, partial loading."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("zarr")
pytest.importorskip("dask")

from clusterspy.datasets import generate, is_complete, load, load_spec
from clusterspy.errors import ConfigError
from helpers import toy_sample

TOY = {"seed": 3, "n_images": 48, "chunk_size": 4, "crop_px": 16, "pixel_size_A": 0.4}


def test_spec_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="unknown dataset specification keys"):
        load_spec({"n_imgs": 3})


def test_generate_is_reproducible_and_parallel(tmp_path):
    a = generate(TOY, tmp_path / "a.zarr", scheduler="synchronous", progress=False,
                 sample_fn=toy_sample)
    b = generate(TOY, tmp_path / "b.zarr", scheduler="threads", num_workers=2, progress=False,
                 sample_fn=toy_sample)
    ia, la, ma = load(a)
    ib, lb, _mb = load(b)
    assert ia.shape == (48, 16, 16) and ia.dtype == np.float32
    assert ia.tobytes() == ib.tobytes()
    assert np.array_equal(la, lb) and np.bincount(la).tolist() == [12, 12, 12, 12]
    assert [m["index"] for m in ma] == list(range(48))


def test_progress_bar_counts_chunks(tmp_path, capsys):
    generate(TOY, tmp_path / "p.zarr", scheduler="threads", num_workers=2, progress=True,
             sample_fn=toy_sample)
    err = capsys.readouterr().err
    assert "12/12" in err  # 48 images in chunks of 4, one update per chunk


def test_distributed_scheduler_address(tmp_path):
    """A real Dask distributed scheduler, addressed as ``tcp://…`` like a cluster."""
    distributed = pytest.importorskip("distributed")
    ref = generate(TOY, tmp_path / "ref.zarr", scheduler="synchronous", progress=False,
                   sample_fn=toy_sample)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp",
                                  dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://")
        out = generate(TOY, tmp_path / "dist.zarr", scheduler=cluster.scheduler_address,
                       progress=False, sample_fn=toy_sample)
    assert load(out)[0].tobytes() == load(ref)[0].tobytes()


def test_other_spec_in_same_folder_refused(tmp_path):
    generate({**TOY, "n_images": 8}, tmp_path / "d.zarr", scheduler="synchronous",
             progress=False, sample_fn=toy_sample)
    with pytest.raises(ConfigError, match="different specification"):
        generate({**TOY, "n_images": 8, "seed": 4}, tmp_path / "d.zarr",
                 scheduler="synchronous", progress=False, sample_fn=toy_sample)


_CHILD = """
import functools, sys
sys.path.insert(0, {tests!r})
from clusterspy.datasets import generate
from helpers import toy_sample
generate({spec!r}, {out!r}, scheduler="synchronous", progress=False,
         sample_fn=functools.partial(toy_sample, delay_s=0.04))
"""


def test_resume_after_kill_9(tmp_path):
    out = tmp_path / "killed.zarr"
    code = _CHILD.format(tests=str(Path(__file__).resolve().parent), spec=TOY, out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code])
    done = out / "_done"
    t0 = time.time()
    while time.time() - t0 < 60:
        if done.exists() and len(list(done.glob("*.json"))) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(list(done.glob("*.json")))
    assert 3 <= n_before < 12, "the child should have been killed mid-way"
    assert not is_complete(out)
    _part_img, _part_lab, part_meta = load(out, partial=True)
    assert len(part_meta) == 4 * n_before
    # resume in this process; compare with an uninterrupted run
    generate(TOY, out, scheduler="synchronous", progress=False, sample_fn=toy_sample)
    ref = generate(TOY, tmp_path / "ref.zarr", scheduler="synchronous", progress=False,
                   sample_fn=toy_sample)
    i1, l1, m1 = load(out)
    i2, l2, m2 = load(ref)
    assert i1.tobytes() == i2.tobytes() and np.array_equal(l1, l2)
    idx = [m["index"] for m in m1]
    assert idx == list(range(48))  # nothing lost, nothing duplicated
    assert not list(done.glob("*.tmp*"))
    assert json.loads(json.dumps(m1)) == m2


def _cli_spec(tmp_path: Path, **spec) -> tuple[Path, Path]:
    """A dataset specification file (no support, no neighbours) and the output folder for
    ``clusterspy dataset``."""
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({**spec, "support_probability": 0.0, "neighbour_probability": 0.0}))
    return path, tmp_path / "d.zarr"


def _children(pid: int) -> list[int]:
    """The process ids whose parent is ``pid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_sigterm_stops_the_dataset_workers_too(tmp_path):
    """``kill`` of ``clusterspy dataset`` left its worker processes computing, orphaned: now they end
    with it, and it exits 143 with one line saying what is kept (``test_resume_after_kill_9``: a
    rerun makes the unfinished chunks again, bit for bit)."""
    pytest.importorskip("ase")
    path, out = _cli_spec(tmp_path, seed=5, n_images=64, chunk_size=8, crop_px=64, size_atoms=[3000, 6000])
    proc = subprocess.Popen([sys.executable, "-m", "clusterspy", "dataset", str(path), str(out),
                             "--workers", "2", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers: list[int] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        # the pool's workers (spawned Python processes; the resource tracker is one more child)
        workers = [c for c in _children(proc.pid)
                   if "spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes().decode(errors="replace")]
        if len(workers) >= 2:
            break
        time.sleep(0.5)
    assert len(workers) >= 2, "the dataset's workers never started"
    time.sleep(3)  # at work on their first chunks
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == [f"clusterspy: terminated: the chunks finished so far are kept in {out}; run the same "
                     "command again to continue"], err
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), "worker processes outlived the command"


def test_make_sample_is_bit_reproducible():
    pytest.importorskip("ase")
    from clusterspy.datasets.sampling import make_sample

    spec = load_spec({"seed": 11, "crop_px": 48, "size_atoms": [50, 150],
                      "image_pixel_size_A": [0.3, 0.5], "support_probability": 0.0,
                      "neighbour_probability": 0.0})
    for index in (0, 2):  # icosahedral, fcc
        c1, l1, m1 = make_sample(spec, index)
        c2, l2, m2 = make_sample(spec, index)
        assert c1.shape == (48, 48) and c1.tobytes() == c2.tobytes()
        assert l1 == l2 == index and m1 == m2
        assert np.isfinite(c1).all() and c1.std() > 0


@pytest.mark.parametrize(("probability", "key", "values", "angle", "turn_deg"), [
    ("source_elongation_probability", "source_elongation_A", [2.0, 2.5], "source_angle_deg", 180.0),
    ("three_fold_probability", "three_fold_A", [6000.0, 8000.0], "three_fold_angle_deg", 120.0),
])
def test_a_probe_aberration_changes_only_the_probe(probability, key, values, angle, turn_deg):
    """``source_elongation_probability`` (an elliptical source) and ``three_fold_probability`` (a
    three-fold astigmatism, stop 42): the same cluster, orientation and noise stream, only the probe
    changed (each its own random stream), its value and azimuth recorded; without it a sample is what it
    always was."""
    pytest.importorskip("ase")
    from clusterspy.datasets.sampling import make_sample

    base = {"seed": 11, "crop_px": 48, "size_atoms": [50, 150], "image_pixel_size_A": [0.3, 0.5],
            "support_probability": 0.0, "neighbour_probability": 0.0}
    c0, _, m0 = make_sample(load_spec(base), 0)
    c1, _, m1 = make_sample(load_spec({**base, probability: 1.0, key: values}), 0)
    assert m0[key] == 0.0 and values[0] <= m1[key] <= values[1]
    assert 0.0 <= m1[angle] < turn_deg
    same = {k for k in m0 if k not in (key, angle)}
    assert {k: m0[k] for k in same} == {k: m1[k] for k in same}
    assert c0.tobytes() != c1.tobytes()
    # none at probability 0, whatever the range
    c2, _, m2 = make_sample(load_spec({**base, key: values}), 0)
    assert c2.tobytes() == c0.tobytes() and m2 == m0


def test_onthefly_matches_disk(tmp_path):
    from clusterspy.datasets import OnTheFly

    path = generate({**TOY, "n_images": 8}, tmp_path / "o.zarr", scheduler="synchronous",
                    progress=False, sample_fn=toy_sample)
    images, labels, _ = load(path)
    x, y = OnTheFly({**TOY, "n_images": 8}, sample_fn=toy_sample).batch(0, 8)
    assert x.tobytes() == images.tobytes() and np.array_equal(y, labels)


def test_cli_dataset_generates_resumes_and_refuses_a_missing_spec(tmp_path, capsys):
    """``clusterspy dataset SPEC OUT``: the simulated dataset; a second run finds it complete."""
    pytest.importorskip("ase")
    from clusterspy.cli import main

    # one icosahedral example: the other motifs take seconds to tens of seconds each to build
    path, out = _cli_spec(tmp_path, seed=11, n_images=1, chunk_size=1, crop_px=24, size_atoms=[40, 80])
    args = ["dataset", str(path), str(out), "--scheduler", "synchronous", "--no-progress"]
    assert main(args) == 0
    assert "dataset complete" in capsys.readouterr().out
    images, labels, _ = load(out)
    assert images.shape == (1, 24, 24) and labels.tolist() == [0] and np.isfinite(images).all()
    assert is_complete(out) and main(args) == 0
    assert load(out)[0].tobytes() == images.tobytes()
    assert main(["dataset", str(tmp_path / "missing.yaml"), str(tmp_path / "e.zarr")]) == 2
    assert "configuration file not found" in capsys.readouterr().err


# --------------------------------------------- issue #17: backend_options "calibration" → "parameters"
_PINNED = {"z_exponent": 1.6, "column_radius_A": 0.4, "extra_blur_A": 0.2}


def test_spec_with_the_old_calibration_key_loads_under_the_new_one():
    """backend_options ``calibration`` (the fast simulator's parameters before issue #17) loads as
    ``parameters``, with a DeprecationWarning; both names at once is an error."""
    from clusterspy.datasets.spec import upgrade_spec

    new = load_spec({"backend_options": {"parameters": _PINNED}})
    with pytest.deprecated_call(match="'calibration' is deprecated"):
        old = load_spec({"backend_options": {"calibration": _PINNED}})
    assert old == new and old["backend_options"] == {"parameters": _PINNED}
    with pytest.raises(ConfigError, match="twice"):
        load_spec({"backend_options": {"parameters": _PINNED, "calibration": _PINNED}})
    # only the fast backend's options are renamed; anything else passes unchanged
    prism = {"backend": "prism", "backend_options": {"calibration": 1}}
    assert upgrade_spec(prism) is prism and upgrade_spec("a/path.yaml") == "a/path.yaml"


def test_old_and_new_spec_spellings_give_bit_identical_samples():
    pytest.importorskip("ase")
    from clusterspy.datasets.sampling import make_sample

    spec = load_spec({"seed": 11, "crop_px": 32, "size_atoms": [50, 150],
                      "image_pixel_size_A": [0.3, 0.5], "support_probability": 0.0,
                      "neighbour_probability": 0.0, "backend_options": {"parameters": _PINNED}})
    shipped = load_spec({**spec, "backend_options": {}})
    # a full specification as recorded before the rename, used as it is (no load_spec)
    recorded = {**spec, "backend_options": {"calibration": _PINNED}}
    for index in (0, 1):
        c_new, l_new, m_new = make_sample(spec, index)
        with pytest.deprecated_call():
            c_old, l_old, m_old = make_sample(recorded, index)
        assert c_new.tobytes() == c_old.tobytes() and l_new == l_old and m_new == m_old
        assert c_new.tobytes() != make_sample(shipped, index)[0].tobytes()  # the pin matters


def test_resume_a_dataset_recorded_with_the_old_calibration_key(tmp_path):
    """A zarr whose attrs record ``backend_options: {calibration: ...}`` (made before the rename)
    resumes from the old or the new spelling of its spec (not "a different specification"),
    to the same bytes; a really different pin is still refused."""
    import zarr

    spec = {**TOY, "n_images": 8, "backend_options": {"parameters": _PINNED}}
    ref = generate(spec, tmp_path / "ref.zarr", scheduler="synchronous", progress=False,
                   sample_fn=toy_sample)
    for name, given in (("new", spec), ("old", {**spec, "backend_options": {"calibration": _PINNED}})):
        path = generate(spec, tmp_path / f"{name}.zarr", scheduler="synchronous", progress=False,
                        sample_fn=toy_sample)
        root = zarr.open_group(str(path), mode="r+")
        recorded = dict(root.attrs["spec"])
        recorded["backend_options"] = {"calibration": _PINNED}
        root.attrs["spec"] = recorded  # as an older version wrote it
        for marker in sorted((path / "_done").glob("*.json"))[:1]:
            marker.unlink()  # one chunk to redo
        assert not is_complete(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            generate(given, path, scheduler="synchronous", progress=False, sample_fn=toy_sample)
        assert is_complete(path) and load(path)[0].tobytes() == load(ref)[0].tobytes()
    with pytest.raises(ConfigError, match="different specification"):
        generate({**spec, "backend_options": {"parameters": {**_PINNED, "z_exponent": 1.7}}},
                 tmp_path / "old.zarr", scheduler="synchronous", progress=False, sample_fn=toy_sample)
