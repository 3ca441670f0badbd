"""Make the napari screenshots of the docs: the ClusterSpy dock widget at work.

- ``docs/napari_widget.png``: the real TEMUL Au Velox .emd (``../shared/data``), opened with the
  plugin's reader (7.498 pm/px from the file → layer scale in nm), classified with the default
  options and "show explanation";
- ``docs/napari_widget_series.png``: the built-in simulated example series (40 frames), every
  frame classified: outlines coloured by isomer, tracks, the table.

Run under an X display with ``clusterspy[napari]`` installed::

    xvfb-run -a -s "-screen 0 1600x1200x24" .venv/bin/python docs/napari_screenshot.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AU = ROOT.parent / "shared" / "data" / "real_atomic" / "Au_nanoparticle_temul.emd"
SERIES = ROOT / "src" / "clusterspy" / "data" / "example_series.npz"


def shoot(path: Path, out: Path, *, explain: bool, frame: int | None = None) -> None:
    """Open ``path`` in a new viewer, classify it with the widget, save the window as ``out``."""
    import napari
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from qtpy.QtWidgets import QApplication

    from clusterspy.integrations.napari.widget import ClassifyWidget

    def settle(seconds: float = 1.0) -> None:
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            QApplication.processEvents()
            time.sleep(0.02)

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    viewer.open(str(path), plugin="clusterspy")
    widget = ClassifyWidget(viewer)
    widget.explain.setChecked(explain)
    viewer.window.add_dock_widget(widget, name="Classify isomers", area="right")
    t0 = time.perf_counter()
    widget.classify()
    while not widget.button.isEnabled():
        QApplication.processEvents()
        time.sleep(0.05)
    print(f"{path.name}: classified in {time.perf_counter() - t0:.1f} s: {widget.status.text()}")
    viewer.reset_view()
    if frame is not None:
        viewer.dims.set_current_step(0, frame)
    settle()
    for note in viewer.window._qt_window.findChildren(NapariQtNotification):
        note.close()  # napari's PyQt5 deprecation notice would cover the canvas
    settle()
    viewer.window._qt_window.grab().save(str(out))
    print(f"wrote {out}")
    viewer.close()


def main() -> int:
    if not AU.exists():
        print(f"needs {AU}", file=sys.stderr)
        return 2
    shoot(AU, ROOT / "docs" / "napari_widget.png", explain=True)
    shoot(SERIES, ROOT / "docs" / "napari_widget_series.png", explain=False, frame=12)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
