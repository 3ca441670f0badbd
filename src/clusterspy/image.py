"""A calibrated image: the array and its pixel size in Å/px travel together.

Array convention (the same everywhere in ClusterSpy, simulation and real data):
``data[row, col]`` with ``row`` = y increasing downwards and ``col`` = x increasing
to the right; the origin (0, 0) is the *centre* of the top-left pixel; a position
``(x_A, y_A)`` in Å maps to ``(col, row) = (x_A / pixel_size_A, y_A / pixel_size_A)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clusterspy.errors import CalibrationError, ImageDataError


@dataclass(frozen=True)
class Image:
    """A 2-D image with its calibration.

    Parameters
    ----------
    data : numpy.ndarray
        2-D array, ``data[row (y), col (x)]``.
    pixel_size_A : float
        Pixel size [Å/px], the same along x and y.
    metadata : dict
        Free-form metadata (source file, frame, seed, microscope, ...).
    """

    data: np.ndarray
    pixel_size_A: float
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_pixel_size(self.pixel_size_A)
        if np.ndim(self.data) != 2:
            raise ImageDataError(
                f"an image must be 2-D, got an array of shape {np.shape(self.data)}"
            )

    @property
    def shape(self) -> tuple[int, int]:
        """Shape ``(rows, cols)`` [px]."""
        return tuple(self.data.shape)  # type: ignore[return-value]

    @property
    def extent_A(self) -> tuple[float, float]:
        """Field of view ``(width, height)`` [Å]."""
        rows, cols = self.data.shape
        return cols * self.pixel_size_A, rows * self.pixel_size_A


def check_pixel_size(pixel_size_A: float | None) -> float:
    """Return ``pixel_size_A`` as a float after checking it is a plausible pixel size [Å/px].

    Raises
    ------
    CalibrationError
        If it is missing, not finite, not positive, or outside 0.001–1000 Å/px.
    """
    if pixel_size_A is None:
        raise CalibrationError(
            "no pixel size: the file has no calibration; give it with --pixel-size (Å/px)"
        )
    try:
        value = float(pixel_size_A)
    except (TypeError, ValueError):
        raise CalibrationError(
            f"pixel size must be a number in Å/px, got {pixel_size_A!r}"
        ) from None
    if not np.isfinite(value) or value <= 0:
        raise CalibrationError(f"pixel size must be a positive number of Å/px, got {value}")
    if not 1e-3 <= value <= 1e3:
        raise CalibrationError(
            f"pixel size {value} Å/px is implausible for HAADF-STEM (expected 0.001–1000 Å/px); "
            "check the units (1 nm = 10 Å, 1 pm = 0.01 Å)"
        )
    return value
