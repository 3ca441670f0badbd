"""Files RosettaSciIO reads (DigitalMicrograph, EMD, HyperSpy): the image signal and its pixel size."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.errors import ImageDataError, InputFileError
from clusterspy.image import NonSquarePixels, check_square, units_to_angstrom
from clusterspy.io.formats import FORMATS, ReadResult, reading

#: Time units of a navigation axis → s.
_TIME_TO_S: dict[str, float] = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "min": 60.0}


def rsciio_file_reader(p: Path) -> Callable[..., Any]:
    """RosettaSciIO's ``file_reader`` for ``p``'s format (the plugin named in the table).

    Raises
    ------
    InputFileError
        If RosettaSciIO (or the extra the format needs) is not installed.
    """
    ext = p.suffix.lower()
    plugin = FORMATS[ext].plugin
    if plugin is None:  # pragma: no cover - guarded by the table
        raise AssertionError(ext)
    try:
        return importlib.import_module(f"rsciio.{plugin}").file_reader
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise InputFileError(
            f"reading {ext} files needs RosettaSciIO with its HDF5/Zarr extras ({exc}); "
            "install it with: pip install 'rosettasciio[hdf5,tiff,zspy]'"
        ) from None


def signal_pixel_size(axes: Sequence[Mapping[str, Any]]) -> tuple[float | None, float | None]:
    """Pixel size [Å/px] from the two signal axes, and the frame time [s] of a time axis.

    Raises :class:`~clusterspy.image.NonSquarePixels` when the X and Y sizes differ.
    """
    sig = [a for a in axes if not a.get("navigate", False)]
    nav = [a for a in axes if a.get("navigate", False)]
    sizes = []
    for a in sig[-2:]:
        sizes.append(units_to_angstrom(a.get("scale", 1.0), a.get("units")))
    pixel = None
    if sizes and all(s is not None for s in sizes):
        pixel = float(sizes[-1])  # x axis (columns)
        if len(sizes) == 2:
            check_square(float(sizes[1]), float(sizes[0]))  # (x, y)
    frame_time = None
    for a in nav:
        factor = _TIME_TO_S.get(str(a.get("units", "")).strip())
        if factor is not None and a.get("scale"):
            frame_time = float(a["scale"]) * factor
    return pixel, frame_time


def pick_signal(p: Path, signals: list[dict[str, Any]]) -> dict[str, Any]:
    """Pick the image signal among several (Velox: HAADF first).

    Raises
    ------
    ImageDataError
        If there is no signal, or none is a 2-D image (or a stack of them).
    """
    if not signals:
        raise ImageDataError(f"{p.name} contains no signal")

    def n_sig(s: dict[str, Any]) -> int:
        return sum(1 for a in s.get("axes", []) if not a.get("navigate", False))

    images = [s for s in signals if n_sig(s) == 2 and np.ndim(s["data"]) in (2, 3)]
    if not images:
        kinds = sorted({f"{np.ndim(s['data'])}-D" for s in signals}) or ["none"]
        raise ImageDataError(
            f"{p.name} contains no 2-D image signal (found: {', '.join(kinds)} data); "
            "give a file with a HAADF/BF image"
        )

    def title(s: dict[str, Any]) -> str:
        return str(s.get("metadata", {}).get("General", {}).get("title", ""))

    for key in ("HAADF", "ADF", "DF", "BF"):
        for s in images:
            if key in title(s).upper():
                return s
    return images[0]


def signal_result(
    p: Path, sig: dict[str, Any], n_signals: int, *,
    fallback_pixel: Callable[[], float | None] | None = None,
) -> tuple[float | None, dict[str, Any]]:
    """The pixel size [Å/px] (None when the file has none) and metadata of the signal picked.

    ``fallback_pixel`` is asked when the axes carry no length calibration. Non-square pixels
    give no pixel size and ``metadata["non_square_pixel_A"]`` (refused by
    :func:`~clusterspy.image.resolve_pixel_size` unless the user gives one).
    """
    md_general = dict(sig.get("metadata", {}).get("General", {}))
    md: dict[str, Any] = {
        "source": str(p),
        "format": p.suffix.lower().lstrip("."),
        "title": md_general.get("title", ""),
        "signal_count": n_signals,
    }
    frame_time = None
    try:
        pixel, frame_time = signal_pixel_size(sig.get("axes", []))
        if pixel is None and fallback_pixel is not None:
            pixel = fallback_pixel()
    except NonSquarePixels as ns:
        pixel = None
        md["non_square_pixel_A"] = {"x": ns.x_A, "y": ns.y_A}
    if frame_time is not None:
        md["frame_time_s"] = frame_time
    return pixel, md


def squeeze_frames(data: Any) -> Any:
    """Drop singleton leading (navigation) dimensions, e.g. of a one-frame Velox stack."""
    while np.ndim(data) > 2 and data.shape[0] == 1:
        data = data[0]
    return data


def read_rsciio(p: Path, lazy: bool) -> ReadResult:
    """Read a DigitalMicrograph, EMD or HyperSpy file: its image signal (lazy), pixel size, metadata."""
    file_reader = rsciio_file_reader(p)
    with reading(p):
        signals = file_reader(str(p), lazy=lazy)
    sig = pick_signal(p, list(signals))
    pixel, md = signal_result(p, sig, len(signals))
    return squeeze_frames(sig["data"]), pixel, md
