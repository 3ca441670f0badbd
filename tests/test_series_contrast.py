"""The contrast of every frame of a series, not only the first: frames that turn bright field
(inverted) midway are marked "bright_field" and not classified; the run goes on."""

from __future__ import annotations

from importlib.resources import files

import numpy as np
import pytest

from clusterspy.series import classify_series, read_frames_csv


def _shipped_model():
    try:
        from clusterspy.predict import load_model

        return load_model()
    except Exception:
        return None


def _example_frames() -> tuple[np.ndarray, float]:
    with np.load(str(files("clusterspy") / "data" / "example_series.npz")) as z:
        return z["frames"][:24].astype(np.float32), float(z["pixel_size_A"])


@pytest.mark.skipif(_shipped_model() is None, reason="clusterspy.predict / shipped weights absent")
@pytest.mark.parametrize("inverted", [(13, 14, 15), (20,), (22, 23)])
def test_frames_inverted_midway_are_marked_and_the_others_classified(tmp_path, inverted):
    frames, px = _example_frames()
    for i in inverted:
        frames[i] = frames[i].max() + frames[i].min() - frames[i]
    res = classify_series(frames, px, model=_shipped_model(), out=tmp_path, n_boot=10, batch_size=4)
    t = read_frames_csv(tmp_path / "frames.csv")
    bad = np.isin(t["frame"], inverted)
    assert set(t["reason"][bad]) == {"bright_field"} and set(t["label"][bad]) == {"unknown"}
    assert set(t["smoothed_label"][bad]) == {"unknown"} and np.all(np.isnan(t["p_fcc"][bad]))
    assert "bright_field" not in set(t["reason"][~bad])
    assert sorted(set(t["frame"])) == list(range(24))  # the run went on to the end
    check = res.summary["contrast_check"]
    assert check["checked"] and check["frames_bright_field"] == len(inverted)
    assert any("bright field" in w for w in res.summary["warnings"])


@pytest.mark.skipif(_shipped_model() is None, reason="clusterspy.predict / shipped weights absent")
def test_contrast_haadf_trusts_every_frame(tmp_path):
    frames, px = _example_frames()
    frames[13] = frames[13].max() + frames[13].min() - frames[13]
    res = classify_series(frames[:16], px, model=_shipped_model(), n_boot=10, contrast="haadf")
    assert "bright_field" not in set(res.frames["reason"])
    assert not res.summary["contrast_check"]["checked"]
