"""classify_series plumbing: tracking, lost and blurred frames, batching, outputs, resume.

The network and the detector are replaced by small test doubles defined here (the model reads the
isomer encoded in the synthetic cluster's brightness and errs on a fixed 20 % of crops); the
end-to-end test with the shipped weights is at the bottom and skips while they are absent.
"""

from __future__ import annotations

import csv
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from clusterspy.errors import ConfigError, OutOfDomainError
from clusterspy.image import Image
from clusterspy.isomers import CLASSES
from clusterspy.series import classify_series, read_frames_csv
from clusterspy.series.frames import FRAME_COLUMNS
from clusterspy.series.tracking import Tracker, sharpness
from clusterspy.workflows import classify_series as classify_series_with_report

PX = 0.5  # Å/px
SIZE = 96


@dataclass
class Det:
    x_px: float
    y_px: float
    bbox: tuple
    diameter_A: float
    area_px: int


def detect_double(image: Image, **kwargs):
    g = ndimage.gaussian_filter(image.data.astype(float), 2)
    lab, n = ndimage.label(g > 0.35)
    out = []
    for i in range(1, n + 1):
        m = lab == i
        if m.sum() < 30:
            continue
        y, x = ndimage.center_of_mass(m)
        out.append(Det(float(x), float(y), (0, 0, 0, 0), 2 * np.sqrt(m.sum() / np.pi) * PX,
                       int(m.sum())))
    return out


def crop_double(image: Image, det, pixel_size_A: float, crop_px: int) -> np.ndarray:
    h = crop_px // 2
    pad = np.pad(image.data, h, mode="constant")
    r, c = round(det.y_px) + h, round(det.x_px) + h
    return pad[r - h:r + h, c - h:c + h].astype(np.float32)


class ModelDouble:
    """Reads the class from the crop's central brightness; wrong on ~20 % of crops (by checksum)."""

    def __init__(self, fail_after_batches: int | None = None, err: float = 0.2) -> None:
        self.card = {"classes": list(CLASSES), "pixel_size_A": PX, "crop_px": 32,
                     "unknown_threshold": 0.5, "id": "test-double-1"}
        self.batches: list[int] = []
        self.fail_after = fail_after_batches
        self.err = err

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        if self.fail_after is not None and len(self.batches) >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.batches.append(len(crops))
        out = np.full((len(crops), 4), 0.1 / 3)
        for n, c in enumerate(crops):
            level = float(np.mean(c[12:21, 12:21]))  # 3 lattice periods
            k = int(np.clip(round(level) - 1, 0, 3))
            if self.err and np.random.default_rng(zlib.crc32(c.tobytes())).random() < self.err:
                k = (k + 1) % 4
            out[n, k] = 0.9
        return out


def _blob(x, y, amp, rng):
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    disc = ((xx - x) ** 2 + (yy - y) ** 2) <= 8.0**2
    lattice = 1 + 0.6 * np.cos(2 * np.pi * xx / 3.0) * np.cos(2 * np.pi * yy / 3.0)
    return amp * disc * lattice


def make_frames(n=120, *, switches=(40, 80), lost=(50, 51, 52), blurred=(60,), two=False, seed=0):
    rng = np.random.default_rng(seed)
    truth = np.zeros(n, int)
    for s in switches:
        truth[s:] = (truth[s - 1] + 1) % 4
    frames = []
    for t in range(n):
        img = rng.normal(0, 0.03, (SIZE, SIZE))
        x0, y0 = 25 + 0.25 * t / 4, 30 + 0.1 * t / 4  # drift
        if t not in lost:
            img += _blob(x0, y0, truth[t] + 1, rng)
        if two:
            img += _blob(x0 + 40, y0 + 35, 3, rng)  # a second cluster, always fcc
        if t in blurred:
            img = ndimage.gaussian_filter(img, 3.0)
        frames.append(img.astype(np.float32))
    return np.stack(frames), truth


def run(frames, tmp_path=None, model=None, **kw):
    """The face (core + report, ``clusterspy.classify_series``) with the test doubles."""
    model = model or ModelDouble()
    return classify_series_with_report(frames, PX, frame_time_s=0.1, model=model, out=tmp_path,
                                       detect=detect_double, crop=crop_double, n_boot=200, **kw), model


def test_single_cluster_labels_lost_blurred_and_outputs(tmp_path):
    frames, truth = make_frames()
    _, model = run(frames, tmp_path, batch_size=16, report=True)
    assert max(model.batches) <= 16 + 1  # a frame's crops are never split; one cluster here
    with open(tmp_path / "frames.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == FRAME_COLUMNS
    assert len(rows) == len(frames)
    lab = {int(r["frame"]): r for r in rows}
    for t in (50, 51, 52):
        assert lab[t]["label"] == "lost" and lab[t]["smoothed_label"] == "lost"
        assert lab[t]["p_fcc"] == "" and lab[t]["x_px"] == ""
    assert lab[60]["label"] == "blurred"
    assert float(lab[10]["time_s"]) == pytest.approx(1.0)
    assert all(r["cluster"] == "0" for r in rows)
    ok = [t for t in range(len(frames)) if t not in (50, 51, 52, 60)]
    raw_acc = np.mean([lab[t]["label"] == CLASSES[truth[t]] for t in ok])
    sm_acc = np.mean([lab[t]["smoothed_label"] == CLASSES[truth[t]] for t in ok])
    assert raw_acc < 0.9
    assert sm_acc >= 0.97
    # positions follow the drift
    assert float(lab[100]["x_px"]) == pytest.approx(25 + 0.25 * 100 / 4, abs=1.0)
    summary = json.loads((tmp_path / "summary.json").read_text())
    cl = summary["clusters"][0]
    assert cl["n_lost"] == 3 and cl["n_blurred"] == 1
    assert summary["model"]["id"] == "test-double-1" and summary["seed"] == 0
    tc = np.array(cl["smoothed"]["transition_counts"])
    assert tc.sum() - np.trace(tc) == 2  # the two true switches, nothing spurious
    pr = cl["smoothed"]["proportions"]
    assert pr["icosahedral"]["value"] == pytest.approx(np.mean(truth[ok] == 0), abs=0.03)
    lo, hi = pr["icosahedral"]["ci95"]
    assert lo <= pr["icosahedral"]["value"] <= hi
    assert cl["smoothed"]["transition_rates_per_s"] is not None
    assert (tmp_path / "strip.png").stat().st_size > 1000
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in html and "src=\"http" not in html
    assert not list(tmp_path.glob("*.tmp"))


def test_two_clusters_are_tracked_separately():
    frames, truth = make_frames(60, switches=(30,), lost=(), blurred=(), two=True)
    res, _ = run(frames, None, batch_size=7)
    assert sorted(set(res.frames["cluster"])) == [0, 1]
    c0, c1 = res.cluster(0), res.cluster(1)
    assert len(c0["frame"]) == 60 and len(c1["frame"]) == 60
    assert np.all(c1["x_px"] - c0["x_px"] > 30)
    assert set(c1["smoothed_label"]) == {"fcc"}
    np.testing.assert_array_equal(c0["smoothed_label"], np.array(CLASSES)[truth])


def test_resume_after_crash_gives_the_same_result(tmp_path):
    frames, _ = make_frames(80, lost=(), blurred=())
    run(frames, tmp_path / "full", batch_size=10)
    crashing = ModelDouble(fail_after_batches=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(frames, tmp_path / "resumed", model=crashing, batch_size=10)
    partial = read_frames_csv(tmp_path / "resumed" / "frames.csv")
    assert 0 < len(partial["frame"]) < 80
    second = ModelDouble()
    run(frames, tmp_path / "resumed", model=second, batch_size=10)
    assert sum(second.batches) <= 80 - len(partial["frame"]) + 1
    a = (tmp_path / "full" / "frames.csv").read_text()
    b = (tmp_path / "resumed" / "frames.csv").read_text()
    assert a == b
    other = ModelDouble()
    other.card["id"] = "another-model"
    with pytest.raises(ConfigError, match="another run"):
        run(frames, tmp_path / "resumed", model=other)


def test_streams_from_an_iterator_and_a_memmap(tmp_path):
    frames, _ = make_frames(40, switches=(20,), lost=(), blurred=())
    seen = []

    def gen():
        for i, f in enumerate(frames):
            seen.append(i)
            yield Image(f, PX)

    res, model = run(gen(), None, batch_size=8)
    assert seen == list(range(40)) and max(model.batches) <= 8
    mm = np.lib.format.open_memmap(tmp_path / "s.npy", mode="w+", dtype=np.float32,
                                   shape=frames.shape)
    mm[:] = frames
    mm.flush()
    del mm
    res2, _ = run(np.load(tmp_path / "s.npy", mmap_mode="r"), None, batch_size=8)
    np.testing.assert_array_equal(res.frames["label"], res2.frames["label"])



def test_a_series_reads_at_most_one_frame_ahead_of_the_frame_being_detected():
    """The next frame is read (and its contrast looked at) on another thread while one is detected:
    one ahead, never more, so memory stays bounded by two frames whatever the series' length."""
    import threading
    import time

    frames, _ = make_frames(30, switches=(15,), lost=(), blurred=())
    read, ahead = [], []
    next_read = threading.Condition()

    def gen():
        for i, f in enumerate(frames):
            with next_read:
                read.append(i)
                next_read.notify_all()
            yield Image(f, PX, {"frame": i})

    def detect(image: Image, **kwargs):
        i = image.metadata["frame"]
        with next_read:  # the reader thread reads frame i + 1 meanwhile (the last frame has none)
            next_read.wait_for(lambda: len(read) > i + 1 or i == len(frames) - 1, timeout=5.0)
        time.sleep(0.002)  # room to read further, which it must not
        ahead.append(len(read) - 1 - i)
        return detect_double(image, **kwargs)

    res = classify_series_with_report(gen(), PX, frame_time_s=0.1, model=ModelDouble(), detect=detect,
                                      crop=crop_double, n_boot=50, batch_size=4)
    assert ahead == [1] * 29 + [0]
    assert list(res.frames["frame"][:30]) == list(range(30))


def test_tracker_links_through_drift_and_starts_new_tracks():
    tr = Tracker(max_jump_px=5)
    a, lost = tr.update(0, np.array([[10.0, 10.0], [50.0, 50.0]]))
    assert a == {0: 0, 1: 1} and lost == []
    a, lost = tr.update(1, np.array([[53.0, 51.0], [13.0, 11.0]]))
    assert a == {0: 1, 1: 0}
    # common drift (+3, +1) is predicted: a further step of 6 px is still linked
    a, lost = tr.update(2, np.array([[19.0, 12.0]]))
    assert a == {0: 0} and [t.id for t in lost] == [1]
    a, _ = tr.update(3, np.array([[80.0, 80.0]]))
    assert 2 in a


def test_sharpness_drops_on_blur():
    rng = np.random.default_rng(0)
    img = _blob(16, 16, 2.0, rng)[:32, :32] + rng.normal(0, 0.03, (32, 32))
    assert sharpness(ndimage.gaussian_filter(img, 3)) < 0.35 * sharpness(img)


def _shipped_model():
    try:
        from clusterspy.predict import load_model

        return load_model()
    except Exception:
        return None


@pytest.mark.skipif(_shipped_model() is None, reason="clusterspy.predict / shipped weights absent")
def test_end_to_end_with_shipped_weights(tmp_path):
    pytest.importorskip("clusterspy.detection")
    data_dir = Path(__file__).resolve().parents[1] / "src" / "clusterspy" / "data"
    series = sorted(data_dir.glob("*series*"))
    if not series:
        pytest.skip("no example series shipped yet")
    res = classify_series_with_report(series[0], out=tmp_path, n_boot=200)
    assert (tmp_path / "frames.csv").exists() and (tmp_path / "report.html").exists()
    assert len(res) > 0


def test_a_series_gives_the_same_rows_run_after_run_with_the_network_on_worker_threads(tmp_path):
    """The network runs one batch behind the frames, on worker threads: the rows (labels,
    probabilities to the last digit) must not depend on how the threads met."""
    pytest.importorskip("clusterspy.detection")
    data_dir = Path(__file__).resolve().parents[1] / "src" / "clusterspy" / "data"
    series = sorted(data_dir.glob("*series*"))
    if not series:
        pytest.skip("no example series shipped yet")
    runs = [classify_series(series[0], out=tmp_path / f"run{k}", n_boot=20, batch_size=7) for k in range(2)]
    texts = [(tmp_path / f"run{k}" / "frames.csv").read_text() for k in range(2)]
    assert texts[0] == texts[1]
    labelled = runs[0].frames["label"]
    assert np.isin(labelled, CLASSES).sum() > 10  # the network ran (batches of 7 crops: several in flight)


def test_a_series_finds_the_cluster_classify_finds_on_a_plain_background():
    """A newcomer's series: an example frame (vacuum of exact zeros) pasted on a 1024² Poisson
    background. The detector's automatic polarity reads it as dark; the series must detect as
    ``classify`` does (bright clusters, the models' size range), not report no cluster at all."""
    pytest.importorskip("clusterspy.detection")
    from clusterspy import classify
    from clusterspy.detection import detect_clusters

    data_dir = Path(__file__).resolve().parents[1] / "src" / "clusterspy" / "data"
    with np.load(data_dir / "example_series.npz") as ex:
        first, px = ex["frames"][:2].astype(float), float(ex["pixel_size_A"])
    rng = np.random.default_rng(1)
    frames = rng.poisson(732.0, size=(2, 1024, 1024)).astype(float)
    frames[:, 432:592, 432:592] = rng.poisson(first)
    assert detect_clusters(Image(frames[0], px)) == []  # the trap: automatic polarity finds nothing
    res = classify_series(frames, px, n_boot=10)
    found = classify(frames[0], pixel_size_A=px)
    assert len(found) == 1 and found[0].label in CLASSES
    assert list(res.frames["label"]) == [found[0].label, *res.frames["label"][1:]]
    assert np.all(np.isfinite(res.frames["x_px"])) and abs(res.frames["x_px"][0] - found[0].x_px) < 1


def test_a_series_at_a_pixel_size_only_v3_covers_goes_to_v3_as_classify_does():
    """0.5–0.6 Å/px is in v3's domain only: classify() routes every cluster to v3 there, and a series
    must too (it refused, quoting v2's ≤ 0.5 Å/px)."""
    pytest.importorskip("clusterspy.detection")
    data_dir = Path(__file__).resolve().parents[1] / "src" / "clusterspy" / "data"
    with np.load(data_dir / "example_series.npz") as ex:
        frames = ex["frames"][:3].astype(float)
    from scipy import ndimage as ndi

    frames = np.stack([ndi.zoom(f, 0.3 / 0.55, order=1) for f in frames])  # the same field at 0.55 Å/px
    res = classify_series(frames, 0.55, n_boot=10)
    models = {m for m in res.frames["model"] if m}
    assert models and all(m.startswith("isomernet-v3@") for m in models)
    with pytest.raises(OutOfDomainError, match=r"≤ 0\.6 Å/px"):
        classify_series(frames, 0.65, n_boot=10)


def test_a_series_without_any_cluster_says_why_in_one_line():
    """Pure noise (or a wrong pixel size): "0 cluster(s)" alone left a newcomer guessing."""
    pytest.importorskip("clusterspy.detection")
    frames = np.random.default_rng(5).poisson(700.0, size=(3, 256, 256)).astype(float)
    res = classify_series(frames, 0.3, n_boot=10)
    assert res.summary["n_clusters"] == 0
    note = res.no_label_note()
    assert note is not None
    assert note.startswith("no cluster found in any of the 3 frames: check the pixel size")
    assert note in res.describe()


CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser")
                 if Path(p).exists()), None)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed")
def test_series_report_renders_in_headless_chromium(tmp_path):
    import subprocess

    from matplotlib.image import imread

    frames, _ = make_frames(60, switches=(30,), lost=(40,), blurred=())
    run(frames, tmp_path, batch_size=16)
    page = (tmp_path / "report.html").as_uri()
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run([*base, "--dump-dom", page], capture_output=True, text=True,
                         timeout=120)
    assert dom.returncode == 0 and "Cluster 0" in dom.stdout
    shot = tmp_path / "shot.png"
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=1000,1600", page],
                   capture_output=True, timeout=120, check=True)
    img = imread(shot)
    assert img.shape[:2] == (1600, 1000)
    assert float(np.std(img[..., :3])) > 0.05


def test_lasting_loss_of_lattice_contrast_is_not_blur():
    """A cluster that loses its fringes for good (an off-zone orientation: crop sharpness ~0.15 of
    before) is flagged for at most a few frames, not for ever, while an isolated blurred frame
    in the new state (sharpness ~0.13 of its neighbours) is still caught."""
    frames, _ = make_frames(70, switches=(), lost=(), blurred=())
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    for t in range(30, 70):  # from frame 30: a smooth disc without lattice fringes
        x0, y0 = 25 + 0.25 * t / 4, 30 + 0.1 * t / 4
        disc = ndimage.gaussian_filter((((xx - x0) ** 2 + (yy - y0) ** 2) <= 8.0**2) * 1.0, 1.0)
        noise = np.random.default_rng(t).normal(0, 0.01, (SIZE, SIZE))
        frames[t] = (noise + 2.0 * disc).astype(np.float32)
    frames[60] = ndimage.gaussian_filter(frames[60], 4.0)
    result, _ = run(frames)
    labels = list(result.frames["label"])
    assert labels[60] == "blurred"
    assert sum(lab == "blurred" for lab in labels[30:60]) <= 4, labels[30:60]


@pytest.mark.skipif(_shipped_model() is None, reason="clusterspy.predict / shipped weights absent")
def test_window_detection_matches_full_frame_detection_and_recovers_a_jump():
    """Searching only around the tracked cluster gives the labels of a full-frame search; when the
    cluster jumps out of its window the whole frame is searched and the cluster is found again
    (beyond the tracker's maximum jump it becomes a new track, as with full-frame search)."""
    from clusterspy.workflows import EXAMPLE_SERIES

    with np.load(EXAMPLE_SERIES) as example:
        frames = example["frames"].astype(np.float32)
        px = float(example["pixel_size_A"])
    # put the 160-px frames on a 480-px field; at frame 25 the stage jumps by 140 px (42 Å)
    field = np.empty((len(frames), 480, 480), np.float32)
    for t, frame in enumerate(frames):
        col = 100 if t < 25 else 240
        field[t] = np.median(frame)
        field[t, 160:320, col:col + 160] = frame
    frames = field
    model = _shipped_model()
    full = classify_series(frames, px, model=model, full_detection_every=1).frames
    windowed = classify_series(frames, px, model=model, full_detection_every=10).frames
    assert list(windowed["label"]) == list(full["label"])
    assert np.nanmax(np.abs(windowed["x_px"] - full["x_px"])) < 1.5
    assert np.nanmax(np.abs(windowed["y_px"] - full["y_px"])) < 1.5
    after = windowed["frame"] == 25
    assert np.any(np.isfinite(windowed["x_px"][after]))  # found right after the jump
    assert np.nanmax(windowed["x_px"][after]) - np.nanmax(windowed["x_px"][windowed["frame"] == 24]) > 120


class CardModelDouble:
    """A model with a real ModelCard (domain 1–8 nm, HAADF): always 'fcc' at 0.95."""

    def __init__(self) -> None:
        from clusterspy.weights import ModelCard

        self.card = ModelCard({"name": "double", "classes": list(CLASSES), "pixel_size_A": 0.4,
                               "crop_px": 32, "field_factor": 1.25, "unknown_threshold": 0.5,
                               "domain": {"contrast": "HAADF", "image_pixel_size_A": [0.04, 0.6],
                                          "diameter_nm": [1.0, 8.0]}})

    def crop_pixel_size_A(self, diameter_A: float) -> float:
        return self.card.crop_pixel_size_A(diameter_A)

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        out = np.full((len(crops), 4), 0.05 / 3)
        out[:, CLASSES.index("fcc")] = 0.95
        return out


def test_frames_out_of_the_domain_are_unknown_with_their_reason_and_never_smoothed(tmp_path):
    """A cluster that grows past the model's largest size: those frames say too_large, carry no
    probabilities, and the HMM does not label them from their neighbours."""
    from test_domain import particle

    px = 0.25
    frames = [particle(shape=(480, 480), px=px, centres=((240, 240),),
                       diameters_A=(25.0 if k < 8 else 95.0,), seed=k) for k in range(12)]
    res = classify_series([Image(f, px) for f in frames], model=CardModelDouble(), out=tmp_path / "s",
                          n_boot=10)
    table = read_frames_csv(tmp_path / "s" / "frames.csv")
    assert list(FRAME_COLUMNS[-7:]) == ["diameter_nm", "reason", "status", "message",
                                        "inferred", "model", "pixel_size_factor"]  # appended last
    small, large = table["frame"] < 8, table["frame"] >= 8
    assert set(table["label"][small]) == {"fcc"} and set(table["reason"][small]) == {""}
    assert set(table["label"][large]) == {"unknown"} and set(table["reason"][large]) == {"too_large"}
    assert set(table["smoothed_label"][large]) == {"unknown"}
    assert np.all(table["inferred"][large] == 0)  # never labelled, so never inferred
    assert np.all(np.isnan(table["p_fcc"][large])) and np.all(table["diameter_nm"][large] > 8)
    assert np.all((table["diameter_nm"][small] > 2) & (table["diameter_nm"][small] < 4))
    assert res.summary["n_frames"] == 12
    # 4 of the 12 frames gave no evidence: the proportions (fcc 1.00 of the 8 others) say so
    assert any(w.startswith("cluster 0: 4 of the 12 frames it was found in gave no evidence (too_large 4)")
               for w in res.summary["warnings"])
    (unseen,) = [w for w in res.summary["warnings"] if "gave no evidence" in w]
    assert "transitions, rates and dwell times miss every change of isomer" in unseen
    assert "--calibrate" not in unseen  # too_large is no calibration's doing
    few = classify_series([Image(f, px) for f in frames[:9]], model=CardModelDouble(), n_boot=10)
    assert not any("gave no evidence" in w for w in few.summary["warnings"])  # 1 of 9: below 20 %


def test_frames_stopped_as_scale_mismatch_warn_of_transitions_and_name_calibrate():
    """A newcomer's example told ×0.85: 10 of 40 frames ``scale_mismatch`` (8 of the 10 fcc ones), 10
    transitions counted of 30, and a warning of proportions only, naming no remedy."""
    from clusterspy.series.summary import _unseen_frames_warning

    lab = np.array(["fcc"] * 6 + ["unknown"] * 4, dtype=object)
    reason = np.array([""] * 6 + ["scale_mismatch"] * 3 + ["out_of_distribution"], dtype=object)
    w = _unseen_frames_warning(3, lab, reason)
    assert w.startswith("cluster 3: 4 of the 10 frames it was found in gave no evidence (scale_mismatch 3, "
                        "out_of_distribution 1)")
    assert "transitions, rates and dwell times miss every change of isomer" in w
    assert "--calibrate --element <metal>" in w
    assert "one pixel size holds for the whole series" in w  # the labelled frames share the calibration


def test_frames_told_a_pixel_size_too_large_say_so_and_that_the_labelled_ones_share_it():
    """A newcomer's 10 frames told 2× their pixel size: 9 ``pixel_size_too_large``, the tenth labelled
    decahedral at twice its diameter, and the summary "decahedral 1.00" from it."""
    from clusterspy.series.summary import _unseen_frames_warning

    lab = np.array(["decahedral"] + ["unknown"] * 9, dtype=object)
    reason = np.array([""] + ["pixel_size_too_large"] * 9, dtype=object)
    w = _unseen_frames_warning(0, lab, reason)
    assert "pixel_size_too_large 9" in w and "1.5× or more too large" in w
    assert "one pixel size holds for the whole series" in w and "too small" not in w


def test_labelled_frames_among_mostly_unresolved_ones_are_called_chance():
    """A newcomer's smoothed 25-frame series of an unresolved 3.3 nm icosahedron (stop 35): 5 frames
    fcc 0.99 beside 20 not_resolved, summarised "fcc 1.00" with a warning of proportions only. When
    at least half the frames show no lattice, the warning says the labelled ones may rest on chance;
    below half (a particle that leaves its zone axis now and then) it does not."""
    from clusterspy.series.summary import _unseen_frames_warning

    def warning(n_labelled, n_unresolved):
        lab = np.array(["fcc"] * n_labelled + ["unknown"] * n_unresolved, dtype=object)
        reason = np.array([""] * n_labelled + ["not_resolved"] * n_unresolved, dtype=object)
        return _unseen_frames_warning(0, lab, reason)

    w = warning(5, 20)
    assert w.startswith("cluster 0: 20 of the 25 frames it was found in gave no evidence (not_resolved 20)")
    assert "its 5 labelled frames of the same particle may rest on chance" in w
    assert "give the raw frames" in w
    assert "rest on chance" in warning(10, 10)
    assert "rest on chance" not in warning(14, 6)
    assert "rest on chance" not in warning(0, 25)


def test_a_series_with_no_labelled_frame_says_why_and_skips_the_empty_sections(tmp_path):
    """P5: a 4–5 nm particle, larger than isomernet-v2's range: every frame too_large (the default
    would send it to isomernet-v5; with v2 named alone, the note points there)."""
    from clusterspy.predict import load_model
    from test_domain import particle

    px = 0.25
    frames = [particle(shape=(480, 480), px=px, centres=((240, 240),), diameters_A=(40.0,), seed=k)
              for k in range(10)]
    res = classify_series_with_report([Image(f, px) for f in frames], frame_time_s=0.5,
                                      out=tmp_path / "s", n_boot=10, explain=False,
                                      model=load_model("isomernet-v2"))
    assert set(res.frames["reason"]) == {"too_large"}
    note = res.no_label_note()
    assert note is not None and note.startswith("no frame labelled: 10 of 10 too_large (")
    median = float(np.median(res.frames["diameter_nm"]))
    assert f"({median:.2f} nm median diameter) — larger than the model" in note
    assert median > 4.35 and note.endswith("try --model isomernet-v5 (to 10.5 nm)")  # card: 2.54–10.54 nm
    text = res.describe()
    assert note in text and "proportions (smoothed" not in text
    assert "rates per second" not in text  # no transition warning for a series with no label
    html = (tmp_path / "s" / "report.html").read_text()
    assert "no frame labelled: 10 of 10 too_large" in html
    assert "Most confident frames" not in html and "Proportions of raw labels" not in html
    assert (tmp_path / "s" / "strip.png").exists()


@pytest.mark.parametrize("frame_time_s", [None, 0.5])
def test_strip_plot_frame_ticks_are_whole_numbers(frame_time_s):
    from clusterspy import plots

    frames = np.arange(20)
    labels = np.array(["unknown"] * 20)
    time_s = None if frame_time_s is None else frames * frame_time_s
    fig = plots.plot_strip(frames, labels, labels, time_s=time_s, frame_time_s=frame_time_s)
    fig.canvas.draw()
    ax = fig.axes[0]
    frame_axis = ax.child_axes[0] if frame_time_s else fig.axes[-1]
    ticks = [t for t in frame_axis.get_xticks() if -0.5 <= t <= 19.5]
    assert len(ticks) >= 3 and all(float(t).is_integer() for t in ticks), ticks


def test_a_series_too_large_for_every_model_says_to_check_the_pixel_size():
    """A particle measured larger than every shipped model covers — often a pixel size given 2×
    too large (a newcomer's Pb series) — gets the advice to check the pixel size."""
    from clusterspy.series.no_label import no_label_note

    n = 6
    frames = {"label": np.array(["unknown"] * n), "reason": np.array(["too_large"] * n),
              "status": np.array(["ok"] * n), "diameter_nm": np.full(n, 12.4)}
    note = no_label_note(frames, "isomernet-v2@x+isomernet-v5@z+isomernet-v3@y")
    assert note.startswith("no frame labelled: 6 of 6 too_large (12.40 nm median diameter)")
    assert note.endswith("no shipped model covers this size — if the particle is not that large, check the "
                         "pixel size (Å/px)")


def test_a_cluster_judged_by_two_models_is_warned_of():
    """Near the size where the default hands a cluster from one model to the next, a series' labels
    may change with the model (a newcomer's 4.33–4.36 nm decahedron: v3 fcc in 32 frames, v5
    decahedral in 4, nothing said; another's: v3 low_confidence in 14 frames, v5 decahedral in 16):
    the summary warns, naming the models, the frames each judged and the sizes measured."""
    from clusterspy.series.summary import _models_warning

    judged = np.array([True] * 5 + [False])  # the last frame never shown to the network
    models = np.array(["isomernet-v3@3f76"] * 3 + ["isomernet-v5@0da3"] * 2 + ["isomernet-v3@3f76"],
                      dtype=object)
    diam = np.array([4.33, 4.34, 4.34, 4.35, 4.36, 4.40])
    msg = _models_warning(7, judged, models, diam)
    assert msg is not None and msg.startswith(
        "cluster 7: its frames were judged by 2 models (isomernet-v3 in 3, isomernet-v5 in 2 frames) "
        "(measured 4.33–4.36 nm)")
    assert _models_warning(7, judged, np.array(["isomernet-v3@3f76"] * 6, dtype=object), diam) is None
    # a model whose frames were never judged (too large, cut by the edge) does not count
    assert _models_warning(7, np.array([True] * 3 + [False] * 3), models, diam) is None


def test_a_series_at_the_v3_v5_boundary_warns(tmp_path):
    """Through classify_series: frames whose cluster measures either side of 4.35 nm name two models."""
    pytest.importorskip("ase")
    from clusterspy.image import Image
    from clusterspy.series import classify_series
    from clusterspy.workflows import simulate_to_file

    path = simulate_to_file(motif="decahedral", size=3500, element="Au", backend="fast", energy_keV=200.0,
                            semiangle_mrad=25.0, pixel_size_A=0.25, extent_A=120.0, dose_e_per_A2=1e4,
                            seed=12, out=tmp_path / "dec.npz")
    with np.load(path) as z:
        frame = z["image"].astype(np.float32)
    from clusterspy.predict import classify

    (r,) = classify(frame, pixel_size_A=0.25)
    px = [0.25 * 4.35 / r.diameter_nm * f for f in (0.98, 1.02)]  # measured just below, just above
    res = classify_series([Image(frame, px[k % 2]) for k in range(4)], n_boot=5)
    names = {str(m).split("@")[0] for m in res.frames["model"]}
    assert names == {"isomernet-v3", "isomernet-v5"}
    assert any("its frames were judged by 2 models" in w for w in res.summary["warnings"])


def test_the_summary_line_says_why_frames_are_unknown():
    """A newcomer's series summary said "2 unknown" and not why (both ``saturated``)."""
    from clusterspy.series.summary import _reason_counts

    reasons = np.array(["saturated", "", "low_confidence", "saturated", None], dtype=object)
    assert _reason_counts(reasons[[0, 2, 3]]) == {"saturated": 2, "low_confidence": 1}
    assert list(_reason_counts(reasons)) == ["saturated", "none", "low_confidence"]
    data_dir = Path(__file__).resolve().parents[1] / "src" / "clusterspy" / "data"
    with np.load(data_dir / "example_series.npz") as ex:  # told 0.42 Å/px for 0.3: mostly unknown
        res = classify_series(ex["frames"][:12].astype(float), 0.42, n_boot=10)
    (cl,) = res.summary["clusters"]
    assert cl["n_unknown"] > 0 and sum(cl["unknown_reasons"].values()) == cl["n_unknown"]
    line = next(ln for ln in res.describe().splitlines() if ln.startswith("cluster 0:"))
    why = ", ".join(f"{k} {v}" for k, v in cl["unknown_reasons"].items())
    assert f"{cl['n_unknown']} unknown ({why})," in line


def test_the_no_label_headline_is_about_the_largest_particle_not_edge_fragments():
    """A newcomer's 200 frames around the 3 nm Au particle of the TEMUL .emd: the particle (3.8 nm,
    centred) was ``neighbour_in_view`` in every frame, and two small fragments at the edge
    ``cut_by_edge``; the headline counted the rows of all clusters together and told them to "centre
    the particle" — the fragments' advice. It names the largest cluster's reason now, and the others."""
    from clusterspy.series.no_label import no_label_note

    n = 200
    frames = {"label": np.array(["unknown"] * (3 * n - 52)),
              "cluster": np.array([0] * n + [1] * n + [2] * (n - 52)),
              "reason": np.array(["cut_by_edge"] * n + ["neighbour_in_view"] * n
                                 + ["cut_by_edge"] * (n - 52)),
              "diameter_nm": np.array([1.5] * n + [3.8] * n + [1.6] * (n - 52))}
    note = no_label_note(frames)
    assert note.startswith("no frame labelled: cluster 1 (the largest seen in most frames): 200 of its "
                           "200 frames neighbour_in_view "
                           "(3.80 nm median diameter) — another particle lies within its crop"), note
    assert note.endswith("2 other cluster(s), 348 rows, mostly cut_by_edge"), note
    # a cluster seen in few frames does not take the headline, however large
    frames["diameter_nm"][-10:] = 9.0
    frames["cluster"][-10:] = 3
    assert "cluster 1 (the largest seen in most frames)" in no_label_note(frames)
