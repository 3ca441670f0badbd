"""Windowed detection: search only around each tracked cluster instead of the whole frame."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from clusterspy.errors import NoClusterFoundError
from clusterspy.image import Image

__all__ = ["cut_by_window", "detect_in_windows"]


def detect_in_windows(
    detect: Callable, image: Image, tracks: list, diameter_px: dict[int, float], detect_kwargs: dict,
) -> list | None:
    """Detect clusters only in a window (3 diameters wide) around each track's last position.

    A detection touching a window's edge where that edge is not the frame's is left out: a
    neighbour cut by the window, not by the frame (the detector keeps clusters at the edge when told
    ``exclude_border=False``, to name them ``cut_by_edge``), would pass for a small cluster.

    Returns the detections in the frame's pixel coordinates, or ``None`` when a window holds no
    cluster or two windows disagree — the centre of a detection of one lies inside, without
    coinciding with, a detection of another (two touching clusters split in one window and not in
    the other): the caller then searches the whole frame.
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
        dets = [d for d in dets if not cut_by_window(d.bbox, (getattr(d, "diameter_A", 0.0) or 0.0)
                                                     / image.pixel_size_A, (r0, c0, r1, c1), (rows, cols))]
        if not dets:
            return None
        for d in dets:
            b = d.bbox
            moved = replace(d, x_px=d.x_px + c0, y_px=d.y_px + r0,
                            bbox=(b[0] + r0, b[1] + c0, b[2] + r0, b[3] + c0))
            dist = [np.hypot(moved.x_px - f.x_px, moved.y_px - f.y_px) for f in found]
            inside = [2 < r < max(_radius_px(moved, image), _radius_px(f, image))
                      for r, f in zip(dist, found, strict=True)]
            if any(inside):  # two windows disagree (one blob here, two there): the whole frame decides
                return None
            if all(r > 2 for r in dist):
                found.append(moved)
    return found


def _radius_px(detection: object, image: Image) -> float:
    """Half a detection's diameter [px] (0 without one)."""
    return 0.5 * (getattr(detection, "diameter_A", 0.0) or 0.0) / image.pixel_size_A


def cut_by_window(bbox: tuple, detected_diameter_px: float, window: tuple[int, int, int, int],
                  shape: tuple[int, int]) -> bool:
    """Whether a detection's box comes as close to an edge of its window that is not an edge of the
    frame as :func:`clusterspy.domain.cut_by_edge` allows at the frame's edge
    (:func:`clusterspy.domain.edge_margin_px`): the window cuts it.

    Parameters
    ----------
    bbox : tuple of int
        ``(row0, col0, row1, col1)`` of the detection in the window [px] (ends exclusive).
    detected_diameter_px : float
        The detection's diameter [px].
    window : tuple of int
        ``(row0, col0, row1, col1)`` of the window in the frame [px] (ends exclusive).
    shape : tuple of int
        ``(rows, cols)`` of the frame [px].

    Returns
    -------
    bool
    """
    from clusterspy.domain import edge_margin_px

    m = edge_margin_px(detected_diameter_px)
    r0, c0, r1, c1 = window
    rows, cols = shape
    return bool((bbox[0] < m and r0 > 0) or (bbox[1] < m and c0 > 0)
                or (r1 - r0 - bbox[2] < m and r1 < rows) or (c1 - c0 - bbox[3] < m and c1 < cols))
