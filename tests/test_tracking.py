"""Tracking through the events that break nearest-neighbour linking — a stage jump of several
clusters, two clusters merging — windowed detection beside the frame's edge, and the summary's
warning of a cluster whose diameter jumps (a magnification change). Small synthetic frames; the
network is a test double that reads the isomer from the cluster's brightness."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy import ndimage

from clusterspy.image import Image
from clusterspy.isomers import CLASSES
from clusterspy.series import classify_series
from clusterspy.series.tracking import Tracker
from clusterspy.series.windows import detect_in_windows
from test_series import PX, Det, crop_double  # the test doubles' pixel size, detection and crop


def detect_double(image: Image, **kwargs) -> list[Det]:
    """Bright regions of the smoothed frame, as detections."""
    g = ndimage.gaussian_filter(image.data.astype(float), 1.5)
    lab, n = ndimage.label(g > 0.3)
    out = []
    for sl, i in zip(ndimage.find_objects(lab), range(1, n + 1), strict=True):
        m = lab == i
        if m.sum() < 30:
            continue
        y, x = ndimage.center_of_mass(m)
        out.append(Det(float(x), float(y), (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop),
                       2 * np.sqrt(m.sum() / np.pi) * image.pixel_size_A, int(m.sum())))
    return out


class BrightnessModel:
    """The isomer is the cluster's central brightness: 1 → CLASSES[0], 2 → CLASSES[1], ..."""

    card: ClassVar[dict] = {"classes": list(CLASSES), "pixel_size_A": PX, "crop_px": 16,
                            "unknown_threshold": 0.5, "id": "brightness-double-1"}

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        out = np.full((len(crops), 4), 0.1 / 3)
        for n, c in enumerate(crops):
            out[n, int(np.clip(round(float(np.mean(c[6:10, 6:10]))) - 1, 0, 3))] = 0.9
        return out


def disc_frame(discs: list[tuple[float, float, float, float]], shape=(96, 240), seed=0) -> np.ndarray:
    """A frame of flat discs ``(x_px, y_px, radius_px, brightness)`` with a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = rng.normal(0, 0.03, shape)
    for x, y, r, amp in discs:
        img += amp * (((xx - x) ** 2 + (yy - y) ** 2) <= r**2)
    return img.astype(np.float32)


def series(frames: list[np.ndarray], **kw):
    return classify_series(np.stack(frames), PX, model=BrightnessModel(), detect=detect_double,
                           crop=crop_double, n_boot=20, **kw)


def rows(res, frame: int) -> dict[int, str]:
    """``{cluster: label}`` of one frame's rows."""
    t = res.frames
    return {int(c): str(lab) for c, lab, f in zip(t["cluster"], t["label"], t["frame"], strict=True)
            if int(f) == frame}


# ------------------------------------------------------------------------------ stage jump
def test_two_clusters_that_jump_together_beyond_the_gate_keep_their_ids():
    """A newcomer's stage jump (+90 px, gate 79 px) linked the icosahedron's track to the
    decahedron's new place, lost the decahedron and started a new track: a fake transition."""
    tr = Tracker(max_jump_px=79)
    for f in range(3):
        a, lost = tr.update(f, np.array([[100.0, 240.0], [260.0, 240.0]]))
    a, lost = tr.update(3, np.array([[190.5, 240.3], [349.8, 239.9]]))
    assert a == {0: 0, 1: 1} and lost == [] and len(tr.tracks) == 2
    assert np.allclose(tr.shift_px, [90, 0], atol=1)
    # the jump is a one-off: the drift stays that of the clusters, and the next frame links as usual
    assert np.allclose(tr.state()["drift_px"], 0, atol=1)
    a, lost = tr.update(4, np.array([[349.0, 240.0], [190.0, 240.0]]))
    assert a == {0: 1, 1: 0} and lost == [] and np.allclose(tr.shift_px, 0)


def test_a_lone_cluster_is_never_linked_beyond_the_gate():
    """One displacement cannot tell a jump from another cluster: no constellation, no shift."""
    from clusterspy.series.tracking import common_shift

    tr = Tracker(max_jump_px=20)
    tr.update(0, np.array([[50.0, 50.0]]))
    a, lost = tr.update(1, np.array([[90.0, 50.0]]))
    assert [t.id for t in lost] == [0] and a == {1: 0}
    # two tracks, one of them found in place, the other's detection gone and an unrelated one
    # appearing: one pair explains no more than no shift does
    pred = np.array([[50.0, 50.0], [150.0, 50.0]])
    assert np.all(common_shift(pred, np.array([[50.5, 50.0], [190.0, 80.0]]), 20.0) == 0)
    # among shifts that explain as many tracks, the smallest
    pos = np.array([[80.0, 50.0], [180.0, 50.0], [280.0, 50.0]])
    assert np.allclose(common_shift(pred, pos, 20.0), [30, 0])


def test_a_series_across_a_stage_jump_reports_no_transition():
    """Through classify_series: two clusters of two isomers jump by 3 gates at frame 6."""
    frames = [disc_frame([(60 + 60 * (t >= 6), 48, 8, 2), (120 + 60 * (t >= 6), 48, 8, 1)], seed=t)
              for t in range(10)]
    res = series(frames)
    assert res.summary["n_clusters"] == 2
    assert rows(res, 6) == {0: CLASSES[1], 1: CLASSES[0]}
    assert all(c["n_transitions_smoothed"] == 0 and c["n_lost"] == 0 for c in res.summary["clusters"])


# ------------------------------------------------------------------------------ mergers
def test_two_tracks_whose_clusters_merge_end_and_the_blob_starts_a_new_track():
    tr = Tracker(max_jump_px=16)
    tr.update(0, np.array([[60.0, 48.0], [80.0, 48.0]]), diameters_px=np.array([16.0, 16.0]))
    a, lost = tr.update(1, np.array([[70.0, 48.0]]), diameters_px=np.array([24.0]))
    assert a == {2: 0} and sorted(t.id for t in lost) == [0, 1]
    assert tr.merged == {0: 2, 1: 2}
    # the parents are followed no more (no more rows), and the state keeps that on resume
    resumed = Tracker.from_state(tr.state())
    for t in (tr, resumed):
        a, lost = t.update(2, np.array([[70.5, 48.0]]), diameters_px=np.array([24.0]))
        assert a == {2: 0} and lost == [] and t.merged == {}
    assert resumed.state() == tr.state()
    # a track lost beside a cluster, away from its blob, is only lost
    tr = Tracker(max_jump_px=16)
    tr.update(0, np.array([[60.0, 48.0], [90.0, 48.0]]), diameters_px=np.array([16.0, 16.0]))
    a, lost = tr.update(1, np.array([[60.0, 48.0]]), diameters_px=np.array([16.0]))
    assert a == {0: 0} and [t.id for t in lost] == [1] and tr.merged == {}


def test_a_merger_ends_both_parents_in_frames_csv_and_the_summary_warns(tmp_path):
    """A newcomer's coalescence gave the merged blob to one parent's track: its proportions mixed
    the two. The parents end (a lost row saying into which cluster), the blob is a new cluster."""
    frames = []
    for t in range(10):
        if t < 6:  # B (brightness 1) approaches A (brightness 2), 4 px a frame
            discs = [(60, 48, 8, 2), (100 - 4 * t, 48, 8, 1)]
        else:  # one coalesced cluster (brightness 3) between them
            discs = [(69, 48, 12, 3)]
        frames.append(disc_frame(discs, seed=t))
    res = series(frames)
    t = res.frames
    at = t["frame"] == 6
    msgs = {int(c): str(m) for c, m in zip(t["cluster"][at], t["message"][at], strict=True)}
    assert msgs == {0: "merged with cluster 1 into cluster 2", 1: "merged with cluster 0 into cluster 2",
                    2: ""}
    assert rows(res, 6) == {0: "lost", 1: "lost", 2: CLASSES[2]}
    assert set(t["cluster"][t["frame"] > 6]) == {2}  # the parents have no more rows
    props = {c["cluster"]: {k: v["value"] for k, v in c["smoothed"]["proportions"].items()}
             for c in res.summary["clusters"]}
    assert props[0][CLASSES[1]] == 1 and props[1][CLASSES[0]] == 1 and props[2][CLASSES[2]] == 1
    assert any(w.startswith("clusters 0 and 1 merged into cluster 2 at frame 6")
               for w in res.summary["warnings"])


def test_a_cluster_that_splits_is_reported_and_a_small_neighbour_is_not():
    tr = Tracker(max_jump_px=16)
    tr.update(0, np.array([[70.0, 48.0]]), diameters_px=np.array([24.0]))
    a, lost = tr.update(1, np.array([[64.0, 48.0], [77.0, 48.0]]), diameters_px=np.array([14.0, 14.0]))
    assert a == {0: 0, 1: 1} and lost == [] and tr.split == {1: 0}
    tr.update(2, np.array([[64.0, 48.0], [77.0, 48.0]]), diameters_px=np.array([14.0, 14.0]))
    assert tr.split == {}  # reported once, in the frame it happened
    # a piece under half the cluster's size is a neighbour that came into view
    tr = Tracker(max_jump_px=16)
    tr.update(0, np.array([[70.0, 48.0]]), diameters_px=np.array([24.0]))
    tr.update(1, np.array([[70.0, 48.0], [78.0, 48.0]]), diameters_px=np.array([22.0, 8.0]))
    assert tr.split == {}
    # the cluster's last diameter survives a resume
    assert Tracker.from_state(tr.state()).state() == tr.state()


def test_a_split_is_in_frames_csv_and_the_summary_warns():
    """A newcomer's blob of two particles that came apart was one cluster labelled half one isomer,
    half the other, with no word: the split is now said where it happens."""
    frames = []
    for t in range(10):
        if t < 5:  # one blob: two overlapping discs (brightness 3)
            discs = [(64, 48, 7, 3), (74, 48, 7, 3)]
        else:  # they come apart: A (brightness 2) and B (brightness 1), B moving away
            discs = [(61, 48, 6, 2), (77 + 3 * (t - 5), 48, 6, 1)]
        frames.append(disc_frame(discs, seed=t))
    res = series(frames)
    t = res.frames
    at = t["frame"] == 5
    msgs = {int(c): str(m) for c, m in zip(t["cluster"][at], t["message"][at], strict=True)}
    assert msgs == {0: "", 1: "split from cluster 0"}
    assert any(w.startswith("cluster 1 split from cluster 0 at frame 5") for w in res.summary["warnings"])


# ------------------------------------------------------------------------------ windows and edges
def test_windows_drop_a_neighbour_cut_by_the_window_not_by_the_frame():
    """The series detects with ``exclude_border=False`` (as classify); a neighbour the window cuts
    must not come back as a small cluster of its own."""
    from clusterspy.detection import detect_clusters
    from clusterspy.series.windows import cut_by_window

    img = Image(disc_frame([(100, 80, 30, 2), (200, 80, 30, 2)], shape=(160, 320)), PX)
    track = Tracker().add_track(100, 80, 0)
    kw = {"polarity": "bright", "exclude_border": False, "min_diameter_A": 8.0, "max_diameter_A": 80.0}
    found = detect_in_windows(detect_clusters, img, [track], {0: 60.0}, kw)
    assert found is not None and len(found) == 1 and abs(found[0].x_px - 100) < 2
    # the frame's own edge is no window's cut: a cluster there is kept, for the domain to name
    assert not cut_by_window((0, 0, 40, 40), 40.0, (0, 0, 100, 100), (300, 300))
    assert cut_by_window((0, 0, 40, 40), 40.0, (10, 0, 110, 100), (300, 300))
    assert cut_by_window((30, 30, 99, 60), 40.0, (0, 0, 100, 100), (300, 300))
    assert not cut_by_window((30, 30, 99, 60), 40.0, (200, 0, 300, 100), (300, 300))


def test_windows_that_disagree_hand_the_frame_to_the_full_search():
    """Touching clusters split in one window and seen as one blob in another: the whole frame decides."""
    img = Image(np.zeros((100, 300), np.float32), PX)

    def detect(window: Image, **kw) -> list[Det]:
        if window.data.shape[1] > 150:  # the wide window sees one blob
            return [Det(60.0, 50.0, (30, 20, 70, 100), 40.0, 1200)]
        return [Det(40.0, 50.0, (35, 25, 65, 55), 15.0, 700), Det(80.0, 50.0, (35, 65, 65, 95), 15.0, 700)]

    near, wide = Tracker().add_track(60, 50, 0), Tracker().add_track(80, 50, 0, track_id=1)
    assert detect_in_windows(detect, img, [near], {0: 20.0}, {}) is not None
    assert detect_in_windows(detect, img, [near, wide], {0: 20.0, 1: 60.0}, {}) is None


def test_a_series_keeps_a_cluster_cut_by_the_frame_edge_as_classify_does():
    """A newcomer's zoomed frames: ``classify`` reported a cluster cut_by_edge in every frame, the
    series "no cluster found in any of the 10 frames" (the detector's default exclude_border)."""
    from test_domain import particle
    from test_series import CardModelDouble

    px = 0.25
    frames = [Image(particle(shape=(240, 240), px=px, centres=((120, 20 + 2 * k),), diameters_A=(30.0,),
                             seed=k), px) for k in range(4)]
    res = classify_series(frames, model=CardModelDouble(), n_boot=10)
    t = res.frames
    assert list(t["frame"]) == [0, 1, 2, 3] and set(t["cluster"]) == {0}
    assert set(t["reason"]) == {"cut_by_edge"} and set(t["label"]) == {"unknown"}
    assert np.all(t["x_px"] < 40)
    # the user's own detect_kwargs still win
    skip = classify_series(frames, model=CardModelDouble(), n_boot=10, detect_kwargs={"exclude_border": True})
    assert skip.summary["n_clusters"] == 0


# ------------------------------------------------------------------------------ diameter jumps
def test_a_cluster_whose_diameter_jumps_between_frames_is_warned_of():
    """A newcomer's series zoomed ×1.5 at frame 20 with the same pixel size stored: 2.30 → 3.45 nm
    in one frame, with no warning. A steady cluster's noise (a few %) must not trigger it."""
    frames = [disc_frame([(80, 48, 8 if t < 5 else 12, 2)], seed=t) for t in range(8)]
    res = series(frames)
    (msg,) = [w for w in res.summary["warnings"] if "diameter changed" in w]
    d = res.frames["diameter_nm"]
    assert msg.startswith(f"cluster 0: its diameter changed from {d[4]:.2f} to {d[5]:.2f} nm "
                          f"(+{100 * (d[5] / d[4] - 1):.0f} %) between frames 4 and 5")
    assert "magnification or pixel size" in msg and "wrong link" in msg
    steady = [disc_frame([(80, 48, 8 + 0.5 * (t % 2), 2)], seed=t) for t in range(8)]  # ±6 % in area
    assert not any("diameter changed" in w for w in series(steady).summary["warnings"])
