"""HyperSpy round trip: classify a Signal2D → markers + metadata table → saved .hspy → read back, equal."""

from __future__ import annotations

import numpy as np
import pytest

import clusterspy
from clusterspy.errors import CalibrationError, ImageDataError
from clusterspy.integrations.style import ISOMER_COLOURS, caption

hs = pytest.importorskip("hyperspy.api")


def _signal(pixel_A: float = 0.25, units: str = "nm", frames: int = 0):
    from test_results_frames import field

    data = field(pixel_A=pixel_A)
    if frames:
        data = np.stack([field(seed=k, pixel_A=pixel_A) for k in range(frames)])
    s = hs.signals.Signal2D(data)
    to_unit = {"nm": 0.1, "Å": 1.0, "pm": 100.0}[units]
    for ax in s.axes_manager.signal_axes:
        ax.scale, ax.units, ax.offset = pixel_A * to_unit, units, 3.0
    return s


def test_colours_are_those_of_the_plots():
    from clusterspy.plots import ISOMER_COLOURS as PLOT_COLOURS

    assert ISOMER_COLOURS == PLOT_COLOURS


@pytest.mark.parametrize("units", ["nm", "Å"])
def test_markers_sit_on_the_clusters(units):
    from clusterspy.integrations.hyperspy import to_markers

    s = _signal(units=units)
    res = clusterspy.classify(s)
    circles, texts = to_markers(res, s)
    ax = s.axes_manager.signal_axes[0]
    a_per_unit = {"nm": 10.0, "Å": 1.0}[units]
    xy = circles.kwargs["offsets"]
    np.testing.assert_allclose(xy[:, 0], ax.offset + ax.scale * np.array([r.x_px for r in res]))
    np.testing.assert_allclose(circles.kwargs["sizes"] * a_per_unit / 10.0, [r.diameter_nm for r in res])
    # the simulated particles are 2 nm discs (+ their soft edge) at (16, 16), (48, 16), ... Å + offset
    assert sorted(np.round((xy[:, 0] - ax.offset) * a_per_unit)) == pytest.approx([16, 16, 46, 48], abs=1.5)
    assert list(texts.kwargs["texts"]) == [caption(r) for r in res]
    assert list(circles.kwargs["edgecolors"]) == [ISOMER_COLOURS[r.label] for r in res]


def test_add_to_signal_round_trip_through_hspy(tmp_path):
    from clusterspy.integrations.hyperspy import add_to_signal, results_from_signal

    s = _signal()
    res = clusterspy.classify(s, file="field")
    assert add_to_signal(s, res) is s
    assert results_from_signal(s) == list(res)
    s.save(tmp_path / "field.hspy")
    back = hs.load(tmp_path / "field.hspy")
    assert results_from_signal(back) == list(res)
    assert back.metadata.ClusterSpy.units.diameter_nm == "nm"
    circles = back.metadata.Markers.ClusterSpy_outlines
    np.testing.assert_allclose(circles.kwargs["sizes"], [10 * r.diameter_nm / 10.0 for r in res])
    assert list(back.metadata.Markers.ClusterSpy_labels.kwargs["texts"]) == [caption(r) for r in res]


def test_unknown_clusters_round_trip():
    from clusterspy.integrations.hyperspy import add_to_signal, results_from_signal

    s = _signal()
    s.crop(s.axes_manager.signal_axes[0], 20, None)  # the left clusters are cut by the edge
    res = clusterspy.classify(s)
    assert {r.reason for r in res} == {None, "cut_by_edge"}
    add_to_signal(s, res)
    back = results_from_signal(s)
    assert back == list(res)
    assert all(r.probabilities is None and r.confidence is None for r in back if r.reason)


def test_stack_markers_follow_the_frames():
    from clusterspy.integrations.hyperspy import add_to_signal, results_from_signal

    s = _signal(frames=2)
    res = [r for k in range(2) for r in clusterspy.classify(s.inav[k], frame=k)]
    add_to_signal(s, res)
    circles = s.metadata.Markers.ClusterSpy_outlines
    assert circles.kwargs["offsets"].dtype == object and circles.kwargs["offsets"].shape == (2,)
    assert [len(o) for o in circles.kwargs["offsets"]] == [sum(r.frame == k for r in res) for k in range(2)]
    assert results_from_signal(s) == res


def test_errors_are_one_line():
    from clusterspy.integrations.hyperspy import add_to_signal, results_from_signal

    s = _signal()
    res = clusterspy.classify(s)
    with pytest.raises(ImageDataError, match="no ClusterSpy results"):
        results_from_signal(s)
    bare = hs.signals.Signal2D(s.data)
    with pytest.raises(CalibrationError, match="pixel_size_A"):
        add_to_signal(bare, res)
    add_to_signal(bare, res, pixel_size_A=0.25)  # pixels: sizes in px
    np.testing.assert_allclose(bare.metadata.Markers.ClusterSpy_outlines.kwargs["sizes"],
                               [10 * r.diameter_nm / 0.25 for r in res])
