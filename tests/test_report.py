"""The HTML report: self-contained, valid images, and (where Chromium exists) it renders."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from clusterspy.report import HtmlReport, array_to_png

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser",
                             shutil.which("chromium") or "") if p and Path(p).exists()), None)


def _report(tmp_path: Path) -> Path:
    from clusterspy import plots

    rep = HtmlReport("Test <report>")
    rep.paragraph("a & b")
    rep.warning("careful")
    rep.figure(plots.plot_proportions({"fcc": 0.6, "decahedral": 0.4},
                                      {"fcc": (0.5, 0.7), "decahedral": (0.3, 0.5)}), "props")
    rep.images([np.random.default_rng(0).random((32, 32)) for _ in range(3)], "fcc")
    rep.table(["a", "b"], [[1, 0.123456], ["x", float("nan")]])
    rep.details("json", '{"a": 1}')
    return rep.write(tmp_path / "report.html")


def test_report_is_self_contained(tmp_path):
    path = _report(tmp_path)
    html = path.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "Test &lt;report&gt;" in html and "a &amp; b" in html
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from outside
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(uris) == 4
    for u in uris:
        assert base64.b64decode(u)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "0.1235" in html and "–" in html
    assert not list(tmp_path.glob("*.tmp"))


def test_thumbnails_carry_their_labels(tmp_path):
    rep = HtmlReport("t")
    crops = [np.random.default_rng(i).random((16, 16)) for i in range(2)]
    rep.images(crops, "fcc", labels=["frame 12 · cluster 0", "frame 7 · cluster 1"])
    html = rep.html()
    assert html.count("<span><img") == 2
    assert "frame 12 · cluster 0</span>" in html and "frame 7 · cluster 1</span>" in html
    with pytest.raises(ValueError, match="2 thumbnails"):
        rep.images(crops, "fcc", labels=["frame 1"])


def test_array_to_png_handles_constant_images():
    assert array_to_png(np.zeros((8, 8)))[:4] == b"\x89PNG"


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed")
def test_report_renders_in_headless_chromium(tmp_path):
    path = _report(tmp_path)
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--screenshot={shot}", "--window-size=1000,1400", path.as_uri()]
    dom = subprocess.run([*cmd[:4], "--dump-dom", path.as_uri()], capture_output=True,
                         text=True, timeout=120)
    assert dom.returncode == 0 and "careful" in dom.stdout
    subprocess.run(cmd, capture_output=True, timeout=120, check=True)
    from matplotlib.image import imread

    img = imread(shot)
    assert img.shape[0] > 500 and img.shape[1] > 500
    assert float(np.std(img[..., :3])) > 0.05  # not a blank page


def test_strip_plot_has_a_time_axis_when_the_frame_time_is_known():
    from clusterspy import plots

    frames = np.arange(20)
    raw = np.array(["fcc"] * 8 + ["unknown"] * 2 + ["decahedral"] * 10, object)
    sm = raw.copy()
    sm[8:10] = "fcc"
    inferred = np.zeros(20, bool)
    inferred[8:10] = True
    fig = plots.plot_strip(frames, raw, sm, frame_time_s=0.25, inferred=inferred)
    ax = fig.axes[1]
    assert ax.get_xlabel() == "time (s)"
    assert max(c.get_offsets()[:, 0].max() for c in ax.collections) == pytest.approx(19 * 0.25)
    assert any(a.get_xlabel() == "frame number" for a in fig.axes[0].child_axes)
    open_markers = [c for c in ax.collections if len(c.get_facecolors()) == 0]
    assert len(open_markers) == 1 and len(open_markers[0].get_offsets()) == 2
    # times from a time_s column (frame 0 at 3 s), and frame numbers without any time
    fig_t = plots.plot_strip(frames, raw, time_s=3.0 + 0.5 * frames)
    assert fig_t.axes[0].get_xlabel() == "time (s)"
    assert min(c.get_offsets()[:, 0].min() for c in fig_t.axes[0].collections) == pytest.approx(
        3.0)
    assert plots.plot_strip(frames, raw).axes[0].get_xlabel() == "frame number"
