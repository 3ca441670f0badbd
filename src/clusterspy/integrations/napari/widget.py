"""The dock widget: classify the active image layer (or every frame of a stack) off the GUI thread.

It reads the pixel size from the layer (the reader's ``metadata["pixel_size_A"]``, or a scale in
nm or Å) unless one is typed in, runs :func:`clusterspy.classify` with the options of
``clusterspy classify`` in a :func:`napari.qt.threading.thread_worker` (a progress bar counts the
frames), and adds

- a Shapes layer: each cluster's circle (its projected diameter), coloured by isomer (Okabe–Ito),
  with its label and confidence, or ``"unknown: reason"``, as text;
- for a stack, a Points layer of the clusters linked into tracks over the frames;
- with "show explanation", the occlusion saliency of every judged cluster as an image layer;

and fills the table. A user mistake (no pixel size, an image outside the model's domain, no
cluster) is one line in the widget's status, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from clusterspy.errors import ClusterSpyError, ImageDataError, NoClusterFoundError, OutOfDomainError
from clusterspy.image import Image
from clusterspy.predict import ClusterResults, classify, load_model, shipped_models

from .layers import TABLE_COLUMNS, link_tracks, outline_shapes, saliency_map, table_rows, track_points

__all__ = ["ClassifyWidget", "Settings", "layer_pixel_size_A"]

#: The model choice that means the default: each cluster judged by the shipped model covering its size.
AUTO_CHOICE = "auto (by size)"
_A_PER_UNIT = {"nanometer": 10.0, "nm": 10.0, "angstrom": 1.0, "Å": 1.0, "picometer": 0.01, "pm": 0.01}


@dataclass
class Settings:
    """The options of one run (those of ``clusterspy classify``).

    ``pixel_size_A`` [Å/px] (None: from the layer), ``min_size_nm``/``max_size_nm`` [nm] (None:
    the model's range), ``contrast`` ``"auto"``/``"haadf"``, ``border`` ``"flag"``/``"skip"``,
    ``model`` (None: the shipped default), ``every_frame`` and ``explain``.
    """

    pixel_size_A: float | None = None
    contrast: str = "auto"
    min_size_nm: float | None = None
    max_size_nm: float | None = None
    border: str = "flag"
    model: str | None = None
    every_frame: bool = True
    explain: bool = False


def layer_pixel_size_A(layer: Any, user_A: float | None = None) -> float:
    """Pixel size [Å/px] of an image layer: the user's, the reader's metadata, or a length scale.

    Raises
    ------
    CalibrationError
        None of them is known.
    """
    from clusterspy.errors import CalibrationError

    if user_A:
        return float(user_A)
    md = getattr(layer, "metadata", {}) or {}
    if md.get("pixel_size_A"):
        return float(md["pixel_size_A"])
    unit = str(getattr(layer, "units", ("pixel",))[-1])
    if unit in _A_PER_UNIT:
        return float(layer.scale[-1]) * _A_PER_UNIT[unit]
    raise CalibrationError(f"layer '{layer.name}' has no pixel size; type it in (Å/px)")


def run_frames(data: Any, frames: list[int], pixel_A: float, settings: Settings, name: str):
    """Classify ``frames`` of ``data`` (a 2-D image when ``frames == [0]`` and ``data.ndim == 2``).

    A generator (run by the widget's thread worker): yields ``(done, total)`` after each frame and
    returns ``(results, saliency maps by frame, messages)``; a frame with no cluster or outside
    the model's domain is a message, not an error.
    """
    model = load_model(settings.model)
    results, maps, messages = ClusterResults(), {}, []
    for k, f in enumerate(frames):
        arr = np.asarray(data if np.ndim(data) == 2 else data[f], dtype=np.float32)
        img = Image(arr, pixel_A, {"source": name, "frame": f})
        try:
            res = classify(img, model=model, file=name, frame=f, contrast=settings.contrast,
                           min_size_nm=settings.min_size_nm, max_size_nm=settings.max_size_nm,
                           border=settings.border)
        except (NoClusterFoundError, OutOfDomainError) as e:
            messages.append(f"frame {f}: {e}" if len(frames) > 1 else str(e))
            res = ClusterResults()
        results.extend(res)
        if settings.explain:
            maps[f] = saliency_map(img, res, model)
        yield k + 1, len(frames)
    return results, maps, messages


class ClassifyWidget(QWidget):
    """Dock widget: classify the active image layer's clusters (napari's ``Classify isomers``).

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer (napari passes it).
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.results = ClusterResults()
        self.worker: Any = None
        self._build()

    # -- the form ---------------------------------------------------------------------------
    def _build(self) -> None:
        form = QFormLayout()
        self.pixel = _spin(0.0, 1000.0, 4, "Å/px; 0 = from the layer")
        self.contrast = _combo(["auto", "haadf"])
        self.min_size = _spin(0.0, 1000.0, 2, "nm; 0 = the model's range")
        self.max_size = _spin(0.0, 1000.0, 2, "nm; 0 = the model's range")
        self.border = _combo(["flag", "skip"])
        self.model = _combo([AUTO_CHOICE, *shipped_models()])  # the default: the models chosen by size
        self.every_frame = QCheckBox("every frame of a stack")
        self.every_frame.setChecked(True)
        self.explain = QCheckBox("show explanation (saliency)")
        for label, w in (("pixel size [Å/px]", self.pixel), ("contrast", self.contrast),
                         ("min size [nm]", self.min_size), ("max size [nm]", self.max_size),
                         ("clusters at the edge", self.border), ("model", self.model)):
            form.addRow(label, w)
        self.button = QPushButton("Classify")
        self.button.clicked.connect(self.classify)
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.table = QTableWidget(0, len(TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(TABLE_COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.setMinimumWidth(460)
        box = QVBoxLayout()
        box.addLayout(form)
        for w in (self.every_frame, self.explain, self.button, self.progress, self.status, self.table):
            box.addWidget(w)
        self.setLayout(box)

    def settings(self) -> Settings:
        """The form's values."""
        return Settings(
            pixel_size_A=self.pixel.value() or None, contrast=self.contrast.currentText(),
            min_size_nm=self.min_size.value() or None, max_size_nm=self.max_size.value() or None,
            border=self.border.currentText(),
            model=None if self.model.currentText() == AUTO_CHOICE else self.model.currentText(),
            every_frame=self.every_frame.isChecked(), explain=self.explain.isChecked())

    # -- running ------------------------------------------------------------------------------
    def _image_layer(self) -> Any:
        from napari.layers import Image as ImageLayer

        active = self.viewer.layers.selection.active
        if isinstance(active, ImageLayer):
            return active
        images = [ly for ly in self.viewer.layers if isinstance(ly, ImageLayer)]
        if not images:
            raise ImageDataError("no image layer to classify; open an image first")
        return images[-1]

    def classify(self) -> Any:
        """Start classifying the active image layer; returns the thread worker (None on a mistake)."""
        from napari.qt.threading import thread_worker

        try:
            layer = self._image_layer()
            if layer.rgb or layer.data.ndim not in (2, 3):
                raise ImageDataError(f"layer '{layer.name}' is not a 2-D image or a stack of them")
            st = self.settings()
            pixel_A = layer_pixel_size_A(layer, st.pixel_size_A)
        except ClusterSpyError as e:
            self.status.setText(str(e))
            return None
        stack = layer.data.ndim == 3
        frames = (list(range(layer.data.shape[0])) if st.every_frame
                  else [int(self.viewer.dims.current_step[0])]) if stack else [0]
        self.button.setEnabled(False)
        self.status.setText(f"classifying {len(frames)} frame(s) at {pixel_A:.4g} Å/px …")
        self.progress.setRange(0, len(frames))
        self.progress.setValue(0)
        worker = thread_worker(run_frames)(layer.data, frames, pixel_A, st, layer.name)
        worker.yielded.connect(lambda p: self.progress.setValue(p[0]))
        worker.returned.connect(lambda out: self._show(layer, pixel_A, stack, st, *out))
        worker.errored.connect(self._failed)
        self.worker = worker
        worker.start()
        return worker

    def _failed(self, exc: BaseException) -> None:
        self.button.setEnabled(True)
        self.status.setText(str(exc) if isinstance(exc, ClusterSpyError) else f"failed: {exc!r}")

    def _show(self, layer: Any, pixel_A: float, stack: bool, st: Settings, results: ClusterResults,
              maps: dict[int, np.ndarray], messages: list[str]) -> None:
        self.button.setEnabled(True)
        self.results = results
        for suffix in (" isomers", " tracks", " saliency"):
            if layer.name + suffix in self.viewer.layers:
                self.viewer.layers.remove(layer.name + suffix)
        place = {"scale": tuple(layer.scale), "units": tuple(layer.units)}  # on the image, in its units
        if results:
            data, opts = outline_shapes(results, pixel_A, stack=stack)
            self.viewer.add_shapes(data, name=layer.name + " isomers", **place, **opts)
        if stack and results:
            points, popts = track_points(results, link_tracks(results, max_jump_px=20.0 / pixel_A))
            self.viewer.add_points(points, name=layer.name + " tracks", **place, **popts)
        if maps and any(r.probabilities for r in results):  # a map only where the network looked
            sal = maps[next(iter(maps))] if not stack else np.stack(
                [maps.get(f, np.zeros(layer.data.shape[1:], np.float32)) for f in range(layer.data.shape[0])])
            self.viewer.add_image(sal, name=layer.name + " saliency", **place, colormap="magma",
                                  blending="additive", opacity=0.6, contrast_limits=(0.0, 1.0))
        self._fill_table(results)
        n_label = sum(r.reason is None for r in results)
        if maps and not any(r.probabilities for r in results):
            messages.append("no explanation: no cluster was shown to the network")
        self.status.setText("; ".join([f"{len(results)} cluster(s), {n_label} labelled", *messages]))

    def _fill_table(self, results: ClusterResults) -> None:
        rows = table_rows(results)
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            for j, cell in enumerate(row):
                self.table.setItem(i, j, QTableWidgetItem(cell))
        self.table.resizeColumnsToContents()


def _spin(lo: float, hi: float, decimals: int, tip: str) -> QDoubleSpinBox:
    w = QDoubleSpinBox()
    w.setRange(lo, hi)
    w.setDecimals(decimals)
    w.setToolTip(tip)
    w.setSpecialValueText("auto")
    return w


def _combo(items: list[str]) -> QComboBox:
    w = QComboBox()
    w.addItems(items)
    return w
