"""Windowed detection: search only around each tracked cluster instead of the whole frame."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from clusterspy.errors import NoClusterFoundError
from clusterspy.image import Image

__all__ = ["detect_in_windows"]


def detect_in_windows(
    detect: Callable, image: Image, tracks: list, diameter_px: dict[int, float], detect_kwargs: dict,
) -> list | None:
    """Detect clusters only in a window (3 diameters wide) around each track's last position.

    Returns the detections in the frame's pixel coordinates, or ``None`` when a window holds no
    cluster (the caller then searches the whole frame).
    """
    rows, cols = image.data.shape
    found = []
    for t in tracks:
        half = 1.5 * diameter_px[t.id] + 4
        r0, r1 = max(0, int(t.y_px - half)), min(rows, int(t.y_px + half) + 1)
        c0, c1 = max(0, int(t.x_px - half)), min(cols, int(t.x_px + half) + 1)
        window = Image(image.data[r0:r1, c0:c1], image.pixel_size_A, image.metadata)
        try:
            dets = list(detect(window, **detect_kwargs))
        except NoClusterFoundError:
            dets = []
        if not dets:
            return None
        for d in dets:
            b = d.bbox
            moved = replace(d, x_px=d.x_px + c0, y_px=d.y_px + r0,
                            bbox=(b[0] + r0, b[1] + c0, b[2] + r0, b[3] + c0))
            if all(np.hypot(moved.x_px - f.x_px, moved.y_px - f.y_px) > 2 for f in found):
                found.append(moved)
    return found
