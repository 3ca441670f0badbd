"""HyperSpy signals in, calibrated :class:`~clusterspy.image.Image` out, and results back on them.

:func:`image_from_signal` lives in :mod:`clusterspy.io` (which reads signals duck-typed, never
importing this integration) and is re-exported here; :func:`signal_from_image` needs HyperSpy.

Results on a signal: :func:`to_markers` makes HyperSpy 2 markers (a circle of each cluster's
diameter, coloured by isomer, and its label and confidence or ``"unknown: reason"`` as text);
:func:`add_to_signal` adds them to the signal (permanent: saved with it) together with the results
table in ``signal.metadata.ClusterSpy``, which :func:`results_from_signal` reads back.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clusterspy.errors import CalibrationError, ImageDataError
from clusterspy.image import Image
from clusterspy.io import image_from_signal, units_to_angstrom
from clusterspy.isomers import CLASSES
from clusterspy.predict import RESULT_COLUMNS, ClusterResult, ClusterResults

from .style import caption, colour

__all__ = ["add_to_signal", "image_from_signal", "results_from_signal", "signal_from_image", "to_markers"]

#: Columns of the table stored in ``signal.metadata.ClusterSpy.results`` that are text.
_TEXT_COLUMNS = ("file", "label", "reason", "model")
#: Integer columns of that table.
_INT_COLUMNS = ("frame", "cluster")


def signal_from_image(image: Image) -> Any:
    """Return a HyperSpy ``Signal2D`` of ``image`` with axes in Å (``x``, ``y``)."""
    import hyperspy.api as hs

    s = hs.signals.Signal2D(np.asarray(image.data))
    for ax, name in zip(s.axes_manager.signal_axes, ("x", "y"), strict=True):
        ax.name, ax.scale, ax.units = name, float(image.pixel_size_A), "Å"
    s.metadata.General.title = str(image.metadata.get("title", ""))
    return s


def _axes(signal: Any, pixel_size_A: float | None) -> tuple[tuple[float, float], float, float]:
    """``((x0, y0), scale, A_per_unit)``: the data coordinates of pixel (0, 0), the axis scale
    [axis units/px] and the length of one axis unit [Å] (1 for uncalibrated axes scaled by
    ``pixel_size_A``)."""
    ax_x, ax_y = signal.axes_manager.signal_axes
    scale = float(ax_x.scale)
    a_per_unit = units_to_angstrom(1.0, getattr(ax_x, "units", None))
    if pixel_size_A is not None:  # the user's pixel size: sizes in the axis' own units per px
        a_per_unit = float(pixel_size_A) / scale
    if a_per_unit is None:
        raise CalibrationError(
            "the signal's axes have no length unit; give pixel_size_A= (Å/px) to draw the clusters' sizes"
        )
    return (float(ax_x.offset), float(ax_y.offset)), scale, a_per_unit


def _frames_of(signal: Any, results: list[ClusterResult]) -> list[list[ClusterResult]]:
    """The results per navigation index (one list for a 2-D signal)."""
    nav = signal.axes_manager.navigation_shape
    if len(nav) == 0:
        return [list(results)]
    if len(nav) > 1:
        raise ImageDataError(f"markers for signals with {len(nav)} navigation axes are not supported "
                             "(a single image or a 1-D stack of frames)")
    out: list[list[ClusterResult]] = [[] for _ in range(nav[0])]
    for r in results:
        if not 0 <= int(r.frame) < nav[0]:
            raise ImageDataError(f"result for frame {r.frame} but the signal has {nav[0]} frames")
        out[int(r.frame)].append(r)
    return out


def to_markers(results: list[ClusterResult], signal: Any, *, pixel_size_A: float | None = None,
               text_size: float = 2.0) -> list[Any]:
    """HyperSpy markers of classified clusters: outlines (circles) and captions (texts).

    Parameters
    ----------
    results : list of ClusterResult
        From :func:`clusterspy.classify` on ``signal`` (``x_px``, ``y_px`` in its pixels); for
        a stack (one navigation axis), ``frame`` is the navigation index.
    signal : hyperspy.signals.Signal2D
        The signal the markers will be drawn on (its axes place them, in its units).
    pixel_size_A : float, optional
        Pixel size [Å/px], needed only when the axes carry no length unit.
    text_size : float
        Size of the captions (HyperSpy's ``Texts`` ``sizes``, an area scale: 1 is about 10 pt,
        4 about 20 pt).

    Returns
    -------
    list of hyperspy.drawing.markers.Markers
        ``[Circles, Texts]``: circles whose ``sizes`` are the projected diameters (axis units;
        HyperSpy's ``Circles`` take diameters), edge colour by isomer (Okabe–Ito); texts at the
        top of each circle.
    """
    import hyperspy.api as hs

    (x0, y0), scale, a_per_unit = _axes(signal, pixel_size_A)
    per_frame = _frames_of(signal, results)

    def arrays(rs: list[ClusterResult]) -> dict[str, Any]:
        xy = np.array([[x0 + r.x_px * scale, y0 + r.y_px * scale] for r in rs], float).reshape(-1, 2)
        diameter = np.array([10.0 * float(r.diameter_nm or 0.0) / a_per_unit for r in rs], float)
        return {"xy": xy, "r": diameter, "colours": [colour(r.label) for r in rs],
                "texts": [caption(r) for r in rs],
                "text_xy": xy - np.c_[np.zeros_like(diameter), diameter / 2.0]}

    parts = [arrays(rs) for rs in per_frame]
    if len(signal.axes_manager.navigation_shape) == 0:
        p = parts[0]
        circles = hs.plot.markers.Circles(offsets=p["xy"], sizes=p["r"], edgecolors=p["colours"],
                                          facecolors="none", linewidths=2)
        texts = hs.plot.markers.Texts(offsets=p["text_xy"], texts=p["texts"], color=p["colours"],
                                      sizes=text_size, verticalalignment="bottom",
                                      horizontalalignment="center")
    else:
        def ragged(key: str) -> np.ndarray:
            arr = np.empty(len(parts), dtype=object)
            for i, p in enumerate(parts):
                arr[i] = p[key]
            return arr

        circles = hs.plot.markers.Circles(offsets=ragged("xy"), sizes=ragged("r"),
                                          edgecolors=ragged("colours"), facecolors="none", linewidths=2)
        texts = hs.plot.markers.Texts(offsets=ragged("text_xy"), texts=ragged("texts"),
                                      color=ragged("colours"), sizes=text_size,
                                      verticalalignment="bottom", horizontalalignment="center")
    circles.name, texts.name = "ClusterSpy_outlines", "ClusterSpy_labels"
    return [circles, texts]


def add_to_signal(signal: Any, results: list[ClusterResult], *, pixel_size_A: float | None = None,
                  plot_markers: bool = False) -> Any:
    """Put classified clusters on ``signal``: permanent markers and the table in its metadata.

    The table is ``signal.metadata.ClusterSpy.results`` (one list per column of
    :data:`clusterspy.predict.RESULT_COLUMNS`; missing numbers NaN, missing text ``""``);
    ``signal.metadata.ClusterSpy.units`` gives the units of ``x_px``, ``y_px`` (px) and
    ``diameter_nm`` (nm). Both are saved with the signal (``.hspy``) and read back by
    :func:`results_from_signal`.

    Parameters
    ----------
    signal : hyperspy.signals.Signal2D
        The image (or 1-D stack of frames) the results were computed on.
    results : list of ClusterResult
        From :func:`clusterspy.classify` (or one list over the frames of a stack).
    pixel_size_A : float, optional
        Pixel size [Å/px], needed only when the axes carry no length unit.
    plot_markers : bool
        Draw the markers now, if the signal is plotted.

    Returns
    -------
    hyperspy.signals.Signal2D
        The same signal.
    """
    for m in to_markers(results, signal, pixel_size_A=pixel_size_A):
        signal.add_marker(m, permanent=True, plot_marker=plot_markers)
    table = ClusterResults(results).table()
    stored: dict[str, Any] = {}
    for k, col in table.items():
        if k in _TEXT_COLUMNS:
            stored[k] = ["" if v is None else str(v) for v in col]
        elif k in _INT_COLUMNS:
            stored[k] = np.asarray(col, dtype=np.int64)
        else:
            stored[k] = np.array([np.nan if v is None else float(v) for v in col], dtype=float)
    signal.metadata.set_item("ClusterSpy.results", stored)
    signal.metadata.set_item("ClusterSpy.units", {"x_px": "px", "y_px": "px", "diameter_nm": "nm"})
    return signal


def results_from_signal(signal: Any) -> ClusterResults:
    """The results :func:`add_to_signal` stored in ``signal.metadata.ClusterSpy``.

    Raises
    ------
    ImageDataError
        The signal carries no ClusterSpy results.
    """
    if not signal.metadata.has_item("ClusterSpy.results"):
        raise ImageDataError("this signal carries no ClusterSpy results (add them with add_to_signal)")
    tab = signal.metadata.ClusterSpy.results.as_dictionary()
    # older tables lack "model" and "pixel_size_factor"
    missing = [c for c in RESULT_COLUMNS if c not in tab and c not in ("model", "pixel_size_factor")]
    if missing:
        raise ImageDataError(f"the ClusterSpy results of this signal lack the columns {missing}")
    n = len(tab["label"])

    def num(k: str, i: int) -> float | None:
        v = float(np.asarray(tab[k])[i])
        return None if np.isnan(v) else v

    out = ClusterResults()
    for i in range(n):
        probs = {c: num(f"p_{c}", i) for c in CLASSES}
        out.append(ClusterResult(
            file=str(tab["file"][i]) or None, frame=int(tab["frame"][i]), cluster=int(tab["cluster"][i]),
            x_px=float(tab["x_px"][i]), y_px=float(tab["y_px"][i]), label=str(tab["label"][i]),
            confidence=num("confidence", i),
            probabilities=None if any(v is None for v in probs.values()) else probs,  # type: ignore[misc]
            diameter_nm=num("diameter_nm", i), reason=str(tab["reason"][i]) or None,
            ood_distance=num("ood_distance", i),
            model=str(tab["model"][i]) or None if "model" in tab else None,
            pixel_size_factor=num("pixel_size_factor", i) or 1.0 if "pixel_size_factor" in tab else 1.0))
    return out
