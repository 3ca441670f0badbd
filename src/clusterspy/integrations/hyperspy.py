"""HyperSpy signals in, calibrated :class:`~clusterspy.image.Image` out."""

from __future__ import annotations

from typing import Any

import numpy as np

from clusterspy.errors import CalibrationError, ImageDataError
from clusterspy.image import Image, check_pixel_size


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
    from clusterspy.io import check_image_data, units_to_angstrom

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
    if pixel_size_A is not None:
        md["pixel_size_source"] = "user"
        return Image(arr, check_pixel_size(pixel_size_A), md)
    if file_pixel is None:
        raise CalibrationError(
            "the signal's axes have no length calibration (units "
            f"{[str(ax.units) for ax in sig_axes]}); give pixel_size_A= (Å/px)"
        )
    md["pixel_size_source"] = "file"
    return Image(arr, check_pixel_size(file_pixel), md)


def signal_from_image(image: Image) -> Any:
    """Return a HyperSpy ``Signal2D`` of ``image`` with axes in Å (``x``, ``y``)."""
    import hyperspy.api as hs

    s = hs.signals.Signal2D(np.asarray(image.data))
    for ax, name in zip(s.axes_manager.signal_axes, ("x", "y"), strict=True):
        ax.name, ax.scale, ax.units = name, float(image.pixel_size_A), "Å"
    s.metadata.General.title = str(image.metadata.get("title", ""))
    return s
