"""Explanations: which part of a crop made the network choose its isomer.

Occlusion sensitivity (Zeiler & Fergus, 2014): a square patch of the crop is replaced by the
crop's background level, the calibrated probability of the predicted class is measured again,
and the drop is credited to the pixels under the patch. It needs only forward passes, so it
works on the shipped ONNX model (no PyTorch) and explains exactly what the user ran — test-time
augmentation and temperature included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from clusterspy.errors import ImageDataError

if TYPE_CHECKING:
    from clusterspy.predict import Model


def occlusion_saliency(
    model: Model,
    crops: np.ndarray,
    *,
    patch_px: int | None = None,
    stride_px: int | None = None,
    class_index: np.ndarray | None = None,
) -> np.ndarray:
    """Occlusion-sensitivity maps of crops at the model's pixel size.

    Parameters
    ----------
    model : clusterspy.predict.Model
        The classifier (shipped by default).
    crops : numpy.ndarray
        ``(N, crop_px, crop_px)`` or one ``(crop_px, crop_px)`` crop at ``model.pixel_size_A``.
    patch_px : int, optional
        Side of the occluding patch [px]; default ``crop_px // 6`` (≈ 6 Å for the shipped model,
        about two atomic columns).
    stride_px : int, optional
        Step between patch positions [px]; default ``patch_px`` (non-overlapping patches: 36
        forward passes per crop for the shipped model).
    class_index : numpy.ndarray, optional
        ``(N,)`` class explained for each crop (index into :data:`clusterspy.isomers.CLASSES`);
        default: the predicted class.

    Returns
    -------
    numpy.ndarray
        ``(N, crop_px, crop_px)`` (or ``(crop_px, crop_px)`` for one crop) float32 maps: the mean
        drop of the explained class's probability when a patch covers the pixel, clipped at 0
        and scaled to a maximum of 1 per crop (all zeros when no patch changes the prediction).
    """
    x = np.asarray(crops, dtype=np.float32)
    single = x.ndim == 2
    if single:
        x = x[None]
    n_px = model.crop_px
    if x.ndim != 3 or x.shape[1:] != (n_px, n_px):
        raise ImageDataError(f"crops must have shape (N, {n_px}, {n_px}), got {np.shape(crops)}")
    patch = int(patch_px or max(2, n_px // 6))
    stride = int(stride_px or patch)
    starts = list(range(0, n_px - patch + 1, stride))
    if starts[-1] != n_px - patch:
        starts.append(n_px - patch)
    positions = [(r, c) for r in starts for c in starts]

    base = model.predict_crops(x)
    target = np.argmax(base, axis=1) if class_index is None else np.asarray(class_index, int)
    maps = np.zeros(x.shape, np.float64)
    counts = np.zeros((n_px, n_px), np.float64)
    for r, c in positions:
        counts[r : r + patch, c : c + patch] += 1
    for k in range(len(x)):
        fill = float(np.median(x[k]))
        occluded = np.repeat(x[k][None], len(positions), axis=0)
        for j, (r, c) in enumerate(positions):
            occluded[j, r : r + patch, c : c + patch] = fill
        drop = base[k, target[k]] - model.predict_crops(occluded)[:, target[k]]
        for j, (r, c) in enumerate(positions):
            maps[k, r : r + patch, c : c + patch] += drop[j]
    maps = np.clip(maps / counts, 0, None)
    peak = maps.reshape(len(x), -1).max(axis=1)
    maps = np.divide(maps, peak[:, None, None], out=np.zeros_like(maps), where=peak[:, None, None] > 0)
    maps = maps.astype(np.float32)
    return maps[0] if single else maps


def saliency_overlay(crop: np.ndarray, saliency: np.ndarray, *, alpha: float = 0.55) -> np.ndarray:
    """An RGB image of ``crop`` (grey) with ``saliency`` (0–1) laid over it in the 'magma' map.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` float in [0, 1], ready for :func:`matplotlib.image.imsave` or the reports.
    """
    from matplotlib import colormaps

    a = np.asarray(crop, float)
    lo, hi = np.percentile(a, [0.5, 99.5])
    grey = np.clip((a - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    s = np.clip(np.asarray(saliency, float), 0, 1)
    heat = colormaps["magma"](s)[..., :3]
    weight = alpha * s[..., None]
    return (1 - weight) * grey[..., None] + weight * heat
