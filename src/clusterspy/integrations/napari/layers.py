"""What the napari widget draws, built without Qt: outlines, captions, tracks, table rows, saliency.

Coordinates are the image layer's data coordinates (``[frame,] row, col`` in pixels); the
layers get the image's ``scale`` (nm/px), so they sit on it whatever its calibration.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from clusterspy.image import Image
from clusterspy.predict import ClusterResult, table_confidence

from ..style import caption, colour

__all__ = ["TABLE_COLUMNS", "link_tracks", "outline_shapes", "saliency_map", "table_rows", "track_points"]

#: Columns of the widget's table (``x_px``/``y_px`` [px], ``diameter_nm`` [nm]).
TABLE_COLUMNS: tuple[str, ...] = ("frame", "cluster", "label", "reason", "confidence", "diameter_nm",
                                  "x_px", "y_px")


def outline_shapes(results: Sequence[ClusterResult], pixel_size_A: float, *, stack: bool = False
                   ) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Circle of each cluster's projected diameter, as napari ellipse corners, and the layer's options.

    Parameters
    ----------
    results : sequence of ClusterResult
        Classified clusters (``frame`` is the stack index when ``stack``).
    pixel_size_A : float
        Pixel size of the image [Å/px] (turns ``diameter_nm`` into pixels).
    stack : bool
        Prefix every vertex with the frame (a ``(frame, row, col)`` image).

    Returns
    -------
    data : list of numpy.ndarray
        ``(4, 2)`` or ``(4, 3)`` bounding-box corners of each circle, for ``shape_type="ellipse"``.
    options : dict
        ``edge_color`` (Okabe–Ito by label), ``features`` (label, confidence, reason, caption,
        diameter_nm, frame, cluster) and ``text`` (the caption above each circle).
    """
    data, widths = [], []
    for r in results:
        rad = 10.0 * float(r.diameter_nm or 0.0) / pixel_size_A / 2.0
        y, x = float(r.y_px), float(r.x_px)
        box = np.array([[y - rad, x - rad], [y - rad, x + rad], [y + rad, x + rad], [y + rad, x - rad]])
        data.append(np.c_[np.full(4, float(r.frame)), box] if stack else box)
        widths.append(max(1.0, 0.05 * rad))
    features = {
        "label": [r.label for r in results],
        "confidence": [np.nan if r.confidence is None else float(r.confidence) for r in results],
        "reason": [r.reason or "" for r in results],
        "caption": [caption(r) for r in results],
        "diameter_nm": [float(r.diameter_nm or np.nan) for r in results],
        "frame": [int(r.frame) for r in results],
        "cluster": [int(r.cluster) for r in results],
    }
    options = {
        "shape_type": "ellipse", "edge_color": [colour(r.label) for r in results],
        "face_color": "transparent", "edge_width": widths,
        "features": features,
        "text": {"string": "{caption}", "anchor": "upper_left", "size": 10, "color": "white"},
    }
    return data, options


def link_tracks(results: Sequence[ClusterResult], max_jump_px: float) -> list[int]:
    """Track id of every result of a stack (:class:`clusterspy.series.tracking.Tracker`'s linking).

    ``max_jump_px`` [px] is the largest move of a cluster between two frames.
    """
    from clusterspy.series.tracking import Tracker

    tracker = Tracker(max_jump_px=max_jump_px)
    ids = [-1] * len(results)
    for f in sorted({int(r.frame) for r in results}):
        idx = [i for i, r in enumerate(results) if int(r.frame) == f]
        pos = np.array([[results[i].x_px, results[i].y_px] for i in idx], float).reshape(-1, 2)
        assignment, _ = tracker.update(f, pos)
        for tid, j in assignment.items():
            ids[idx[j]] = int(tid)
    return ids


def track_points(results: Sequence[ClusterResult], track_ids: Sequence[int]
                 ) -> tuple[np.ndarray, dict[str, Any]]:
    """``(frame, row, col)`` points of the tracked clusters and the Points layer's options."""
    data = np.array([[float(r.frame), float(r.y_px), float(r.x_px)] for r in results], float).reshape(-1, 3)
    options = {
        "features": {"track": list(track_ids), "label": [r.label for r in results],
                     "frame": [int(r.frame) for r in results]},
        "face_color": [colour(r.label) for r in results], "size": 6, "symbol": "cross",
        "text": {"string": "track {track}", "anchor": "lower_right", "size": 8, "color": "white"},
    }
    return data, options


def table_rows(results: Sequence[ClusterResult]) -> list[list[str]]:
    """The table's cells, as text, in :data:`TABLE_COLUMNS` order."""
    rows = []
    for r in results:
        shown = table_confidence(r.label, r.reason, r.confidence)  # none for a withdrawn claim
        conf = "" if shown is None else f"{shown:.3f}"
        size = "" if r.diameter_nm is None else f"{r.diameter_nm:.2f}"
        rows.append([str(r.frame), str(r.cluster), r.label, r.reason or "", conf, size,
                     f"{r.x_px:.1f}", f"{r.y_px:.1f}"])
    return rows


def saliency_map(image: Image, results: Sequence[ClusterResult], model: Any) -> np.ndarray:
    """Occlusion saliency of every cluster shown to the network, pasted at its place in the image.

    Each cluster is cropped exactly as :func:`clusterspy.classify` crops it (its crop field and
    pixel size from the model card), explained by :func:`clusterspy.explain.occlusion_saliency`,
    and the map (0–1) is resampled back onto the image's pixels; overlapping maps keep the larger
    value. Clusters never shown to the network (a domain reason) stay 0.

    Returns
    -------
    numpy.ndarray
        ``float32`` map of ``image.shape``.
    """
    from scipy import ndimage as ndi

    from clusterspy.explain import occlusion_saliency
    from clusterspy.predict import judged_crop

    out = np.zeros(image.shape, np.float32)
    judged = [r for r in results if r.probabilities]
    if not judged:
        return out
    maps, steps, sides = [], [], []
    for r in judged:  # each with the model that judged it (the default chooses it by size)
        mdl, crop, step_A = judged_crop(image, r, model)
        maps.append(occlusion_saliency(mdl, crop))
        steps.append(step_A)
        sides.append(mdl.crop_px)
    rows, cols = np.mgrid[: image.shape[0], : image.shape[1]]
    for r, m, step_A, crop_px in zip(judged, maps, steps, sides, strict=True):
        half = crop_px * step_A / image.pixel_size_A / 2.0  # crop half-width [image px]
        r0, r1 = int(max(0, np.floor(r.y_px - half))), int(min(image.shape[0], np.ceil(r.y_px + half) + 1))
        c0, c1 = int(max(0, np.floor(r.x_px - half))), int(min(image.shape[1], np.ceil(r.x_px + half) + 1))
        if r0 >= r1 or c0 >= c1:
            continue
        # image pixel -> crop pixel (crop centre (crop_px - 1) / 2 sits on the cluster centre)
        cr = (rows[r0:r1, c0:c1] - r.y_px) * image.pixel_size_A / step_A + (crop_px - 1) / 2.0
        cc = (cols[r0:r1, c0:c1] - r.x_px) * image.pixel_size_A / step_A + (crop_px - 1) / 2.0
        vals = ndi.map_coordinates(m, [cr, cc], order=1, mode="constant", cval=0.0)
        out[r0:r1, c0:c1] = np.maximum(out[r0:r1, c0:c1], vals)
    return out
