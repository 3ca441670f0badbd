"""napari plugin, headless: the npe2 manifest, the reader and the dock widget (under Xvfb: ``.ci/run``).

The widget runs the real classifier in napari's thread worker; the tests read the layers back and
compare them with the results (centres, diameters, colours, captions, table cells, tracks).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

if not os.environ.get("DISPLAY"):  # no X display: Qt offscreen, and napari's GL canvas cannot be made
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from clusterspy.integrations.napari.reader import get_reader, read_layers  # noqa: E402
from clusterspy.integrations.style import ISOMER_COLOURS, caption  # noqa: E402
from test_results_frames import field  # noqa: E402

# napari asks for a Qt6 binding to follow the system's light/dark theme; PyQt5 (ParticleSpy's) works
pytestmark = pytest.mark.filterwarnings("ignore:System theme detection requires a Qt6:UserWarning")

AU_EMD = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_atomic" / "Au_nanoparticle_temul.emd"
PX = 0.25  # Å/px of the simulated field


@pytest.fixture
def field_npz(tmp_path):
    p = tmp_path / "field.npz"
    np.savez(p, image=field(), pixel_size_A=PX)
    return p


@pytest.fixture
def stack_npz(tmp_path):
    frames = np.stack([field(seed=0), np.roll(field(seed=1), 3, axis=1)])
    p = tmp_path / "stack.npz"
    np.savez(p, frames=frames, pixel_size_A=PX)
    return p


def test_manifest_is_valid_and_discovered():
    from npe2 import PluginManager, PluginManifest

    import clusterspy.integrations.napari as plugin

    mf = PluginManifest.from_file(Path(plugin.__file__).with_name("napari.yaml"))
    assert mf.name == "clusterspy"
    pm = PluginManager.instance()
    pm.discover()
    assert "clusterspy" in pm._manifests  # the package's napari.manifest entry point
    widgets = pm.get_manifest("clusterspy").contributions.widgets
    assert {w.display_name for w in widgets} == {"Classify isomers"}


def test_reader_calibrated_and_not(field_npz, stack_npz, tmp_path):
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(field_npz)) is read_layers
    (data, kw, kind), = read_layers(str(field_npz))
    assert kind == "image" and data.shape == (256, 256)
    assert kw["scale"] == pytest.approx((PX / 10, PX / 10)) and kw["units"] == ("nm", "nm")
    assert kw["metadata"]["pixel_size_A"] == pytest.approx(PX)
    (data, kw, _), = read_layers(str(stack_npz))
    assert data.shape == (2, 256, 256) and kw["scale"] == pytest.approx((1.0, PX / 10, PX / 10))
    np.testing.assert_array_equal(np.asarray(data[1]), np.load(stack_npz)["frames"][1])  # lazy, same values
    bare = tmp_path / "bare.npy"
    np.save(bare, field())
    (data, kw, _), = read_layers(str(bare))
    assert kw["metadata"]["pixel_size_A"] is None and kw["scale"] == (1.0, 1.0) and "units" not in kw


@pytest.mark.shared
@pytest.mark.skipif(not AU_EMD.exists(), reason="needs ../shared/data")
def test_reader_on_the_real_velox_emd():
    (data, kw, _), = read_layers(str(AU_EMD))
    assert data.shape == (2048, 2048)
    assert kw["metadata"]["pixel_size_A"] == pytest.approx(0.07498, rel=1e-3)  # 7.498 pm/px
    assert kw["scale"] == pytest.approx((0.007498, 0.007498), rel=1e-3)


needs_display = pytest.mark.skipif(
    not os.environ.get("DISPLAY"),
    reason="napari's viewer draws with OpenGL: run under an X display (xvfb-run, as .ci/run does)")


def _run(widget, qtbot, timeout_ms=120_000):
    worker = widget.classify()  # disables the button; the worker's returned/errored handler enables it
    assert worker is not None, widget.status.text()
    qtbot.waitUntil(lambda: widget.button.isEnabled(), timeout=timeout_ms)


@needs_display
def test_widget_classifies_the_active_layer(make_napari_viewer, qtbot, field_npz):
    from napari.layers import Shapes

    from clusterspy.integrations.napari.widget import ClassifyWidget

    viewer = make_napari_viewer()
    viewer.open(str(field_npz), plugin="clusterspy")
    widget = ClassifyWidget(viewer)
    widget.explain.setChecked(True)
    viewer.window.add_dock_widget(widget)
    _run(widget, qtbot)
    res = widget.results
    assert len(res) == 4, widget.status.text()
    shapes = viewer.layers["field isomers"]
    assert isinstance(shapes, Shapes) and shapes.scale == pytest.approx(viewer.layers["field"].scale)
    for r, verts, edge in zip(res, shapes.data, shapes.edge_color, strict=True):
        centre = verts.mean(axis=0)
        np.testing.assert_allclose(centre, [r.y_px, r.x_px], atol=1e-6)
        np.testing.assert_allclose(np.ptp(verts[:, 0]) * PX / 10, r.diameter_nm, rtol=1e-6)
        np.testing.assert_allclose(edge[:3], np.array([int(ISOMER_COLOURS[r.label][i:i + 2], 16)
                                                       for i in (1, 3, 5)]) / 255, atol=1e-6)
    assert list(shapes.features["caption"]) == [caption(r) for r in res]
    table = widget.table
    assert table.rowCount() == 4
    assert [table.item(i, 2).text() for i in range(4)] == [r.label for r in res]
    assert [float(table.item(i, 4).text()) for i in range(4)] == pytest.approx([r.confidence for r in res],
                                                                              abs=5e-4)
    assert widget.progress.value() == 1
    sal = viewer.layers["field saliency"].data
    assert sal.shape == (256, 256) and 0 < sal.max() <= 1
    for r in res:  # each cluster's map peaks on the cluster, far above the gap between clusters
        y, x = round(r.y_px), round(r.x_px)
        assert sal[y - 30:y + 30, x - 30:x + 30].max() > 0.5
    assert sal[124:132, 124:132].max() < 0.05


@needs_display
def test_widget_stack_tracks(make_napari_viewer, qtbot, stack_npz):
    from clusterspy.integrations.napari.widget import ClassifyWidget

    viewer = make_napari_viewer()
    viewer.open(str(stack_npz), plugin="clusterspy")
    widget = ClassifyWidget(viewer)
    _run(widget, qtbot, timeout_ms=300_000)
    res = widget.results
    assert sorted({r.frame for r in res}) == [0, 1] and len(res) == 8
    assert widget.progress.value() == 2
    points = viewer.layers["stack tracks"]
    np.testing.assert_allclose(points.data, [[r.frame, r.y_px, r.x_px] for r in res])
    tracks = points.features.groupby("track")["frame"].apply(sorted)
    assert len(tracks) == 4 and all(t == [0, 1] for t in tracks)  # each cluster one track over both frames
    shapes = viewer.layers["stack isomers"]
    assert shapes.ndim == 3 and len(shapes.data) == 8
    widget.every_frame.setChecked(False)  # only the frame shown
    viewer.dims.set_current_step(0, 1)
    _run(widget, qtbot)
    assert {r.frame for r in widget.results} == {1} and len(widget.results) == 4
    assert "stack saliency" not in viewer.layers


@needs_display
def test_widget_says_what_is_missing(make_napari_viewer, qtbot, tmp_path):
    from clusterspy.integrations.napari.widget import ClassifyWidget

    viewer = make_napari_viewer()
    widget = ClassifyWidget(viewer)
    assert widget.classify() is None and "no image layer" in widget.status.text()
    bare = tmp_path / "bare.npy"
    np.save(bare, field())
    viewer.open(str(bare), plugin="clusterspy")
    assert widget.classify() is None and "pixel size" in widget.status.text()
    widget.pixel.setValue(PX)  # typed in: now it runs
    _run(widget, qtbot)
    assert len(widget.results) == 4
    widget.pixel.setValue(7.5)  # a nm value typed as Å: the image is refused, one line in the status
    _run(widget, qtbot)
    assert "cannot resolve atomic columns" in widget.status.text() and len(widget.results) == 0


@needs_display
def test_widget_offers_the_default_by_size_and_each_model_alone(make_napari_viewer, qtbot, field_npz):
    from clusterspy.integrations.napari.widget import AUTO_CHOICE, ClassifyWidget
    from clusterspy.predict import load_model

    viewer = make_napari_viewer()
    viewer.open(str(field_npz), plugin="clusterspy")
    widget = ClassifyWidget(viewer)
    choices = [widget.model.itemText(i) for i in range(widget.model.count())]
    assert choices == [AUTO_CHOICE, "isomernet-v2", "isomernet-v3", "isomernet-v4", "isomernet-v5",
                       "isomernet-v7"]
    widget.model.setCurrentText("isomernet-v3")
    widget.explain.setChecked(True)
    viewer.window.add_dock_widget(widget)
    _run(widget, qtbot)
    v3 = load_model("isomernet-v3").card.id
    assert widget.results and {r.model for r in widget.results} == {v3}
