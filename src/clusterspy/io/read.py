"""One calibrated image from a file, an array, an :class:`~clusterspy.image.Image` or a HyperSpy signal."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.errors import CalibrationError, ImageDataError
from clusterspy.image import (
    Image,
    check_image_data,
    check_pixel_size,
    check_shape,
    resolve_pixel_size,
    units_to_angstrom,
)
from clusterspy.io.formats import compute, read_any


def read_image(
    path: str | os.PathLike, pixel_size_A: float | None = None, *, signal: int | str | None = None
) -> Image:
    """Read one 2-D image with its pixel size.

    Parameters
    ----------
    path : str or os.PathLike
        Image file; see :data:`SUPPORTED_EXTENSIONS`.
    pixel_size_A : float, optional
        Pixel size [Å/px]; overrides the file's calibration (recorded in
        ``metadata["pixel_size_source"] = "user"``). Required for PNG/JPEG/NPY.
    signal : int or str, optional
        Which signal of a file holding several (Velox .emd with HAADF, DF, BF, EDS ...): its
        index in the file (0 first) or its title. Needed when several image signals are there
        and no title names the detector (HAADF, ADF, DF, BF).

    Returns
    -------
    Image
        ``float32`` data with ``pixel_size_A`` [Å/px] and metadata (``source``, ``format``,
        ``pixel_size_source``, ``file_pixel_size_A``, ``signal_index`` and ``title`` of the
        signal read, ...).

    Raises
    ------
    InputFileError
        Missing, empty, truncated or unsupported file (the message lists the formats); several
        image signals and none chosen, or ``signal`` not in the file (the message lists them).
    ImageDataError
        Not a single 2-D image (a stack: use :func:`read_series`), RGB, NaN/Inf, constant,
        too large.
    CalibrationError
        No pixel size in the file and none given, or an implausible one.
    """
    data, file_pixel, md = read_any(path, lazy=True, signal=signal)
    name = Path(path).name
    if np.ndim(data) == 3:
        raise ImageDataError(
            f"{name} is a stack of {data.shape[0]} frames; use read_series (or "
            "`clusterspy series`) to read it frame by frame"
        )
    check_shape(np.shape(data), source=name)
    pixel = resolve_pixel_size(name, file_pixel, pixel_size_A, md)
    arr = check_image_data(compute(data), source=name)
    return Image(arr, pixel, md)


def as_image(
    obj: Any, pixel_size_A: float | None = None, *, metadata: Mapping[str, Any] | None = None,
    signal: int | str | None = None,
) -> Image:
    """Return a checked :class:`~clusterspy.image.Image` from a path, array, Image or Signal2D.

    Parameters
    ----------
    obj : str, os.PathLike, numpy.ndarray, Image or hyperspy Signal2D
        The image.
    pixel_size_A : float, optional
        Pixel size [Å/px]; required for a bare array, overrides the calibration otherwise.
    metadata : mapping, optional
        Extra metadata for a bare array.
    signal : int or str, optional
        For a path: which signal of a multi-signal file (see :func:`read_image`).

    Raises
    ------
    ClusterSpyError
        A subclass for every problem (missing file, bad data, no pixel size).
    """
    if isinstance(obj, (str, os.PathLike)):
        return read_image(obj, pixel_size_A, signal=signal)
    if isinstance(obj, Image):
        data = check_image_data(obj.data, source="the image")
        if pixel_size_A is None:
            return Image(data, obj.pixel_size_A, dict(obj.metadata))
        md = dict(obj.metadata)
        pixel = resolve_pixel_size("the image", obj.pixel_size_A, pixel_size_A, md)
        return Image(data, pixel, md)
    if hasattr(obj, "axes_manager") and hasattr(obj, "data"):
        return image_from_signal(obj, pixel_size_A=pixel_size_A)
    if isinstance(obj, (np.ndarray, list, tuple)) or hasattr(obj, "__array__"):
        data = check_image_data(obj, source="the array")
        if pixel_size_A is None:
            raise CalibrationError(
                "a bare array has no pixel size; give it with pixel_size_A= (Å/px) or --pixel-size"
            )
        md = dict(metadata or {})
        md.setdefault("pixel_size_source", "user")
        return Image(data, check_pixel_size(pixel_size_A), md)
    raise ImageDataError(
        f"cannot make an image from a {type(obj).__name__}; give a file path, a 2-D NumPy "
        "array with a pixel size, an Image or a HyperSpy Signal2D"
    )


def image_from_signal(signal: Any, pixel_size_A: float | None = None) -> Image:
    """Return the image of a HyperSpy ``Signal2D`` with its pixel size [Å/px].

    Parameters
    ----------
    signal : hyperspy.signals.Signal2D
        A single image (no navigation axes, or navigation size 1). The calibration comes
        from the signal axes' ``scale`` and ``units`` (m, µm, nm, Å, pm ... all converted).
    pixel_size_A : float, optional
        Pixel size [Å/px]; overrides the axes' calibration.

    Returns
    -------
    Image
        ``float32`` data, ``metadata`` with ``title``, ``pixel_size_source``.

    Raises
    ------
    ImageDataError
        Not a 2-D image signal (a spectrum, a stack of several frames, RGB ...).
    CalibrationError
        Uncalibrated axes and no ``pixel_size_A``.
    """
    am = getattr(signal, "axes_manager", None)
    if am is None:
        raise ImageDataError(f"expected a HyperSpy Signal2D, got {type(signal).__name__}")
    sig_axes = list(am.signal_axes)
    if len(sig_axes) != 2:
        raise ImageDataError(
            f"expected a 2-D image signal, got {len(sig_axes)} signal dimension(s); "
            "use signal.as_signal2D(...) or pick an image"
        )
    data = signal.data
    if hasattr(data, "compute"):
        data = data.compute()
    data = np.asarray(data)
    if data.ndim > 2:
        if int(np.prod(data.shape[:-2])) != 1:
            raise ImageDataError(
                f"the signal holds {int(np.prod(data.shape[:-2]))} images (shape {data.shape}); "
                "classify them one at a time (signal.inav[i]) or as a series"
            )
        data = data.reshape(data.shape[-2:])
    title = str(signal.metadata.get_item("General.title", "")) if hasattr(signal, "metadata") else ""
    arr = check_image_data(data, source=f"signal {title!r}" if title else "the signal")
    sizes = [units_to_angstrom(ax.scale, ax.units) for ax in sig_axes]
    file_pixel = None
    if all(s is not None for s in sizes):
        if not np.isclose(sizes[0], sizes[1], rtol=1e-3):
            raise CalibrationError(
                f"the signal's pixels are not square ({sizes[0]:.4g} × {sizes[1]:.4g} Å)"
            )
        file_pixel = float(sizes[0])
    md: dict[str, Any] = {"source": "hyperspy", "title": title, "file_pixel_size_A": file_pixel}
    if pixel_size_A is None and file_pixel is None:
        raise CalibrationError(
            "the signal's axes have no length calibration (units "
            f"{[str(ax.units) for ax in sig_axes]}); give pixel_size_A= (Å/px)"
        )
    pixel = resolve_pixel_size(title or "the signal", file_pixel, pixel_size_A, md)
    return Image(arr, pixel, md)
