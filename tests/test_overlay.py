"""The classify overlay: bounded memory for big frames, zoom panels, legend, scale bar in nm."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from clusterspy.image import Image
from clusterspy.plots import OVERLAY_MAX_PX, display_binned, plot_overlay, save_figure
from clusterspy.predict import ClusterResult


def _result(i: int, x: float, y: float, label: str = "fcc", reason: str | None = None) -> ClusterResult:
    probs = {"icosahedral": 0.01, "decahedral": 0.02, "fcc": 0.95, "amorphous": 0.02}
    return ClusterResult(file="f", frame=0, cluster=i, x_px=x, y_px=y, label=label,
                         confidence=None if reason else 0.95, probabilities=None if reason else probs,
                         diameter_nm=2.5, reason=reason)


def test_display_binned_is_the_block_mean() -> None:
    rng = np.random.default_rng(0)
    data = rng.random((5000, 3001), dtype=np.float32)
    small, f = display_binned(data, max_px=1024)
    assert f == 5 and small.shape == (1000, 600)
    want = data[:1000 * 5, :600 * 5].reshape(1000, 5, 600, 5).mean(axis=(1, 3))
    np.testing.assert_allclose(small, want, rtol=1e-5)
    same, one = display_binned(data[:100, :80])
    assert one == 1 and np.array_equal(same, data[:100, :80])


def _big_image(tmp_path, n: int) -> Image:
    path = tmp_path / f"big{n}.npy"
    data = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, n))
    data[:] = 1.0
    data[n // 2 - 40:n // 2 + 40, n // 2 - 40:n // 2 + 40] = 5.0
    data.flush()
    return Image(np.load(path, mmap_mode="r"), 0.3)


def _overlay_peak(image: Image, results: list, png) -> tuple[object, int]:
    tracemalloc.start()
    fig = plot_overlay(image, results, title="big")
    save_figure(fig, png, dpi=110)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return fig, peak


def test_big_frame_overlay_memory_does_not_grow_with_the_frame(tmp_path) -> None:
    """The overlay of an 8192² frame (memory-mapped) allocates no more than that of a 4096² one:
    the frame is binned strip by strip to ≤ 2048 px (the old overlay made float64 copies of the
    whole frame: 4× more for 8192² than for 4096²)."""
    peaks = {}
    for n in (4096, 8192):
        results = [_result(0, n / 2, n / 2), _result(1, 100, 100, "unknown", "cut_by_edge")]
        fig, peaks[n] = _overlay_peak(_big_image(tmp_path, n), results, tmp_path / f"o{n}.png")
    assert peaks[8192] < 1.25 * peaks[4096], {n: f"{p / 2**20:.0f} MiB" for n, p in peaks.items()}
    assert peaks[8192] < 8192 * 8192 * 8  # less than the one float64 copy the old overlay began with
    # 2.5 nm at 0.3 Å/px is 83 px: under 40 screen pixels at 8192 px → zoom panels, one per cluster
    axes = fig.get_axes()
    assert len(axes) == 3
    main = axes[0]
    assert main.get_images()[0].get_array().shape == (8192 // 4, 8192 // 4)
    assert 8192 // 4 <= OVERLAY_MAX_PX
    legend = [t.get_text() for t in main.get_legend().get_texts()]
    assert legend == ["fcc", "unknown"]
    texts = [t.get_text() for t in main.texts]
    assert "0: fcc 0.95" in texts and "1: unknown (cut by edge)" in texts
    assert any(t.endswith(" nm") for t in texts)
    assert axes[1].get_title() == "cluster 0: fcc 0.95"
    assert axes[2].get_title() == "cluster 1: unknown: cut by edge"
    assert (tmp_path / "o8192.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("n_px", [160, 1024])
def test_small_frame_has_no_zoom_panels(n_px: int) -> None:
    image = Image(np.ones((n_px, n_px), np.float32), 0.3)
    fig = plot_overlay(image, [_result(0, n_px / 2, n_px / 2)])
    assert len(fig.get_axes()) == 1
    assert fig.get_axes()[0].get_images()[0].get_array().shape == (n_px, n_px)


def test_a_file_name_with_dollar_signs_is_drawn_as_text(tmp_path) -> None:
    """Issue #16: ``$\\frac$`` in a file name made matplotlib's mathtext fail (a traceback)."""
    image = Image(np.ones((160, 160), np.float32), 0.3)
    fig = plot_overlay(image, [_result(0, 80, 80)], title="x$\\frac$y")
    save_figure(fig, tmp_path / "x.png")
    assert fig.get_axes()[0].get_title().startswith("x\\$\\frac\\$y — ")
