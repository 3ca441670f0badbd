"""HyperSpy signals in, calibrated :class:`~clusterspy.image.Image` out, and back.

:func:`image_from_signal` lives in :mod:`clusterspy.io` (which reads signals duck-typed, never
importing this integration) and is re-exported here; :func:`signal_from_image` needs HyperSpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clusterspy.image import Image
from clusterspy.io import image_from_signal

__all__ = ["image_from_signal", "signal_from_image"]


def signal_from_image(image: Image) -> Any:
    """Return a HyperSpy ``Signal2D`` of ``image`` with axes in Å (``x``, ``y``)."""
    import hyperspy.api as hs

    s = hs.signals.Signal2D(np.asarray(image.data))
    for ax, name in zip(s.axes_manager.signal_axes, ("x", "y"), strict=True):
        ax.name, ax.scale, ax.units = name, float(image.pixel_size_A), "Å"
    s.metadata.General.title = str(image.metadata.get("title", ""))
    return s
