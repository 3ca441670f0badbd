"""napari reader: the files :mod:`clusterspy.io` reads, as image layers scaled in nm/px.

A 2-D file gives a 2-D layer, a stack (Velox ``.emd`` series, multi-page TIFF, ``.npy``/``.npz``
frames) a ``(frame, row, col)`` layer, read lazily (a Dask array: a frame is read when shown).
The layer's ``scale`` is the pixel size in nm/px and its ``units`` are nm;
``metadata["pixel_size_A"]`` keeps the pixel size [Å/px] and ``metadata["pixel_size_source"]`` where
it came from. A file without a calibration (PNG, JPEG,
``.npy``) opens in pixels with ``metadata["pixel_size_A"] = None``: the widget then asks for it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.errors import CalibrationError
from clusterspy.io import SUPPORTED_EXTENSIONS, read_series

__all__ = ["get_reader", "read_layers"]

LayerData = tuple[np.ndarray, dict[str, Any], str]


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """npe2 reader contribution: :func:`read_layers` for supported files, else ``None``."""
    paths = [path] if isinstance(path, str) else list(path)
    if not paths or any(Path(p).suffix.lower() not in SUPPORTED_EXTENSIONS for p in paths):
        return None
    return read_layers


def _lazy_stack(series: Any) -> Any:
    """``(frame, row, col)`` Dask array reading one frame of ``series`` when napari shows it."""
    import dask
    import dask.array as da

    first = np.asarray(series[0].data)
    frames = [da.from_delayed(dask.delayed(lambda i: np.asarray(series[i].data))(i), first.shape, first.dtype)
              for i in range(len(series))]
    return da.stack(frames)


def _one(path: str) -> LayerData:
    p = Path(path)
    try:
        series = read_series(p)
        pixel_A: float | None = float(series.pixel_size_A)
    except CalibrationError:  # no calibration in the file: open in pixels, ask later
        series = read_series(p, pixel_size_A=1.0)
        pixel_A = None
    data = np.asarray(series[0].data) if len(series) == 1 else _lazy_stack(series)
    md = {k: v for k, v in series.metadata.items() if isinstance(v, (str, int, float, bool))}
    md.update(pixel_size_A=pixel_A, source=str(p),
              pixel_size_source=None if pixel_A is None else md.get("pixel_size_source", "file"))
    if series.frame_time_s is not None:
        md["frame_time_s"] = float(series.frame_time_s)
    step = 1.0 if pixel_A is None else pixel_A / 10.0  # nm/px
    lead = data.ndim - 2
    kwargs: dict[str, Any] = {"name": p.stem, "scale": (1.0,) * lead + (step, step), "metadata": md,
                              "colormap": "gray"}
    if pixel_A is not None:
        kwargs["units"] = ("pixel",) * lead + ("nm", "nm")
    return data, kwargs, "image"


def read_layers(path: str | list[str]) -> list[LayerData]:
    """Read one or several files as napari layer data ``(data, kwargs, "image")``.

    Raises
    ------
    ClusterSpyError
        The file cannot be read (napari shows the one-line message).
    """
    paths = [path] if isinstance(path, str) else list(path)
    return [_one(p) for p in paths]
