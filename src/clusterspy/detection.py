"""Find clusters in a frame, crop and rescale them to the model's pixel size.

The detector works at a physical scale set by the pixel size [Å/px]:

1. the image is binned to a *working pixel size* of about ``min_diameter_A / 10`` (never
   finer than the data), which averages noise and makes 2048² atomic-resolution frames cheap;
2. the slowly varying background (support film, thickness, scan gain) is removed with a
   morphological opening of radius ``max_diameter_A / 2`` (on a coarse copy of the image);
3. the image is smoothed with a Gaussian of σ ≥ 2 Å — much larger than the spacing of
   atomic columns (2–3 Å) — so that a cluster imaged at atomic resolution is *one* blob,
   not a set of columns;
4. Otsu's threshold (kept ≥ 3 σ of the noise above the background class)
   gives a mask; holes are filled;
5. touching clusters are split by a watershed on the distance transform, seeded at most
   once per ``min_diameter_A``;
6. regions whose equivalent-circle diameter is outside ``[min_diameter_A, max_diameter_A]``
   are dropped.

Bright clusters (HAADF) or dark ones (bright field) are handled by ``polarity``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from clusterspy.errors import ConfigError, ImageDataError
from clusterspy.image import Image, check_pixel_size

Polarity = Literal["auto", "bright", "dark"]

#: Default smallest and largest cluster diameters [Å].
DEFAULT_MIN_DIAMETER_A = 8.0
DEFAULT_MAX_DIAMETER_A = 150.0

#: Smallest smoothing σ [Å]: wipes out atomic-column contrast (column spacing 2–3 Å).
COLUMN_SMOOTHING_A = 2.0


@dataclass(frozen=True)
class Detection:
    """One detected cluster.

    Attributes
    ----------
    x_px, y_px : float
        Centroid (column, row) [px] in the input image (origin = centre of top-left pixel).
    bbox : tuple of int
        ``(row0, col0, row1, col1)`` [px], end exclusive, in the input image.
    diameter_A : float
        Equivalent-circle diameter [Å].
    area_px : int
        Area [px] in the input image.
    contrast : float
        Mean background-subtracted intensity of the region, in units of the noise σ
        (a detection score; larger = surer).
    """

    x_px: float
    y_px: float
    bbox: tuple[int, int, int, int]
    diameter_A: float
    area_px: int
    contrast: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (JSON-ready)."""
        d = asdict(self)
        d["bbox"] = list(self.bbox)
        return d


def _bin(data: np.ndarray, factor: int) -> np.ndarray:
    if factor <= 1:
        return data
    rows = (data.shape[0] // factor) * factor
    cols = (data.shape[1] // factor) * factor
    d = data[:rows, :cols]
    binned = d.reshape(rows // factor, factor, cols // factor, factor).mean(axis=(1, 3))
    return binned


def _background(data: np.ndarray, radius_px: float) -> np.ndarray:
    """Background by a grey opening of radius ``radius_px`` done on a coarse copy."""
    from scipy import ndimage as ndi
    from skimage.morphology import disk

    coarse_f = max(1, int(radius_px // 8))
    coarse = _bin(data, coarse_f)
    r = max(1, round(radius_px / coarse_f))
    if r * 2 + 1 >= min(coarse.shape):
        # the structuring element is larger than the field: the background is a plane
        return np.full_like(data, np.percentile(coarse, 5))
    coarse = ndi.gaussian_filter(coarse, 1.0)
    opened = ndi.grey_opening(coarse, footprint=disk(r))
    opened = ndi.uniform_filter(opened, size=r)  # soften the opening's flat steps
    zoom = (data.shape[0] / opened.shape[0], data.shape[1] / opened.shape[1])
    bg = ndi.zoom(opened, zoom, order=1, mode="nearest")[: data.shape[0], : data.shape[1]]
    if bg.shape != data.shape:
        pad = ((0, data.shape[0] - bg.shape[0]), (0, data.shape[1] - bg.shape[1]))
        bg = np.pad(bg, pad, mode="edge")
    return bg


def _smoothed_noise(x: np.ndarray, sigma_px: float) -> float:
    """Noise σ of ``x`` after a Gaussian of ``sigma_px``, from pixel-to-pixel differences."""
    diff = np.diff(x, axis=1)
    raw = 1.4826 * float(np.median(np.abs(diff - np.median(diff)))) / np.sqrt(2.0)
    if raw == 0.0:
        raw = float(np.std(diff)) / np.sqrt(2.0) or 1e-12
    return raw / max(1.0, 2.0 * np.sqrt(np.pi) * sigma_px)


def _auto_polarity(x: np.ndarray) -> str:
    """'bright' if the intensity distribution has a heavier upper tail (HAADF), else 'dark'."""
    lo, med, hi = np.percentile(x, [1, 50, 99])
    return "bright" if (hi - med) >= (med - lo) else "dark"


def detect_clusters(
    image: Image,
    *,
    min_diameter_A: float = DEFAULT_MIN_DIAMETER_A,
    max_diameter_A: float = DEFAULT_MAX_DIAMETER_A,
    polarity: Polarity = "auto",
    smooth_A: float | None = None,
    threshold: Literal["otsu", "noise"] = "otsu",
    split_touching: bool = True,
    exclude_border: bool = True,
) -> list[Detection]:
    """Find the clusters in an image.

    Parameters
    ----------
    image : Image
        Calibrated image (any pixel size, e.g. 0.05–20 Å/px).
    min_diameter_A, max_diameter_A : float
        Accepted range of equivalent-circle diameters [Å] (default 8–150 Å).
    polarity : {"auto", "bright", "dark"}
        ``"bright"``: clusters brighter than the background (HAADF); ``"dark"``: darker
        (bright field); ``"auto"``: decided from the skew of the intensities.
    smooth_A : float, optional
        Gaussian σ [Å] of the smoothing before thresholding; default
        ``max(2 Å, 0.1 * min_diameter_A)`` (≫ the spacing of atomic columns in effect).
    threshold : {"otsu", "noise"}
        Otsu's threshold on the background-free image (kept above 3 σ of the noise), or a
        pure noise threshold (5 σ).
    split_touching : bool
        Split touching clusters with a watershed.
    exclude_border : bool
        Drop regions that touch the image edge (clusters cut by the edge cannot be
        classified); set False to count them.

    Returns
    -------
    list of Detection
        Sorted by decreasing contrast; empty if nothing is found.

    Raises
    ------
    ConfigError
        If the diameter range or the polarity is invalid.
    """
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu
    from skimage.measure import regionprops
    from skimage.segmentation import watershed

    if not isinstance(image, Image):
        raise ImageDataError(
            f"detect_clusters needs a clusterspy Image, got {type(image).__name__}; "
            "use clusterspy.io.as_image(array, pixel_size_A) first"
        )
    px = check_pixel_size(image.pixel_size_A)
    if not (np.isfinite(min_diameter_A) and np.isfinite(max_diameter_A)
            and 0 < min_diameter_A < max_diameter_A):
        raise ConfigError(
            f"need 0 < min_diameter_A < max_diameter_A, got {min_diameter_A} and {max_diameter_A} Å"
        )
    if polarity not in ("auto", "bright", "dark"):
        raise ConfigError(f"polarity must be 'auto', 'bright' or 'dark', got {polarity!r}")
    if threshold not in ("otsu", "noise"):
        raise ConfigError(f"threshold must be 'otsu' or 'noise', got {threshold!r}")

    data = np.asarray(image.data, dtype=np.float64)
    # 1. bin to the working pixel size
    factor = max(1, int(np.floor(min_diameter_A / 10.0 / px)))
    factor = min(factor, max(1, min(data.shape) // 32))
    work = _bin(data, factor)
    wpx = px * factor
    if polarity == "auto":
        polarity = _auto_polarity(ndi.gaussian_filter(work, max(1.0, 2.0 / wpx)))  # type: ignore[assignment]
    if polarity == "dark":
        work = -work
    # 2. background
    work = work - _background(work, 0.5 * max_diameter_A / wpx)
    # 3. smoothing
    sigma_A = smooth_A if smooth_A is not None else max(COLUMN_SMOOTHING_A, 0.1 * min_diameter_A)
    sigma_px = sigma_A / wpx
    smooth = ndi.gaussian_filter(work, sigma_px) if sigma_px > 0.3 else work
    # 4. threshold, above the background class and its noise
    noise = _smoothed_noise(work, sigma_px)
    if threshold == "otsu":
        try:
            t = float(threshold_otsu(smooth))
        except ValueError:
            return []
        below = smooth[smooth < t]
        floor = float(np.median(below)) if below.size else float(np.median(smooth))
        t = max(t, floor + 3 * noise)
    else:
        floor = float(np.median(smooth))
        t = floor + 5 * noise
    mask = smooth > t
    mask = ndi.binary_fill_holes(mask)
    min_area_w = np.pi / 4 * (min_diameter_A / wpx) ** 2
    labels, n = ndi.label(mask)
    if n == 0:
        return []
    # 5. watershed on the distance transform
    if split_touching:
        from skimage.feature import peak_local_max
        from skimage.morphology import h_maxima

        min_r = max(1.0, 0.5 * min_diameter_A / wpx)
        dist = ndi.gaussian_filter(ndi.distance_transform_edt(mask), 0.5)
        seeds = h_maxima(dist, max(0.5, 0.25 * min_r)).astype(bool) & (dist >= 0.5 * min_r)
        peaks = peak_local_max(
            np.where(seeds, dist, 0.0), min_distance=max(1, round(min_r)),
            labels=labels, exclude_border=False,
        )
        markers = np.zeros(labels.shape, dtype=np.int32)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        # every component gets at least one seed (at its deepest point)
        missing = np.setdiff1d(np.arange(1, n + 1), labels[markers > 0])
        for k, pos in enumerate(ndi.maximum_position(dist, labels, missing)):
            markers[pos] = len(peaks) + 1 + k
        labels = watershed(-dist, markers, mask=mask)
    # 6. measure, size limits; back to input-pixel coordinates
    out: list[Detection] = []
    rows, cols = data.shape
    for reg in regionprops(labels, intensity_image=smooth):
        area_w = reg.area
        if area_w < 0.5 * min_area_w:
            continue
        diameter_A = 2.0 * np.sqrt(area_w / np.pi) * wpx
        if not (min_diameter_A <= diameter_A <= max_diameter_A):
            continue
        r0, c0, r1, c1 = reg.bbox
        if exclude_border and (r0 == 0 or c0 == 0 or r1 >= work.shape[0] or c1 >= work.shape[1]):
            continue
        cy, cx = reg.centroid
        # a bin of `factor` px has its centre at factor*i + (factor-1)/2 in input pixels
        off = (factor - 1) / 2.0
        bbox = (
            int(max(0, r0 * factor)), int(max(0, c0 * factor)),
            int(min(rows, r1 * factor)), int(min(cols, c1 * factor)),
        )
        contrast = float((reg.intensity_mean - floor) / noise)
        out.append(Detection(
            x_px=float(cx * factor + off), y_px=float(cy * factor + off), bbox=bbox,
            diameter_A=float(diameter_A), area_px=int(area_w * factor * factor),
            contrast=contrast,
        ))
    out.sort(key=lambda d: -d.contrast)
    return out


def crop_cluster(
    image: Image, detection: Detection, pixel_size_A: float, crop_px: int
) -> np.ndarray:
    """Crop a cluster, rescaled to ``pixel_size_A`` and centred on its centroid.

    Parameters
    ----------
    image : Image
        The image the cluster was detected in.
    detection : Detection
        The cluster (its ``x_px``, ``y_px`` in ``image`` pixels).
    pixel_size_A : float
        Pixel size of the crop [Å/px] (the model's, ``model.card["pixel_size_A"]``).
    crop_px : int
        Side of the square crop [px].

    Returns
    -------
    numpy.ndarray
        ``float32`` array ``(crop_px, crop_px)`` covering ``crop_px * pixel_size_A`` Å;
        parts outside the image are filled with the local background (median of the
        surroundings outside the cluster).
    """
    from scipy import ndimage as ndi

    target = check_pixel_size(pixel_size_A)
    if int(crop_px) != crop_px or crop_px < 4:
        raise ConfigError(f"crop_px must be an integer ≥ 4, got {crop_px!r}")
    crop_px = int(crop_px)
    src = np.asarray(image.data, dtype=np.float32)
    scale = target / image.pixel_size_A  # input pixels per output pixel
    sigma = 0.5 * np.sqrt(scale**2 - 1.0) if scale > 1.0 else 0.0
    half = 0.5 * crop_px * scale + 4 * sigma + 3
    cx, cy = detection.x_px, detection.y_px
    r0, r1 = int(np.floor(cy - half)), int(np.ceil(cy + half)) + 1
    c0, c1 = int(np.floor(cx - half)), int(np.ceil(cx + half)) + 1
    rows, cols = src.shape
    window = src[max(r0, 0): min(r1, rows), max(c0, 0): min(c1, cols)]
    if window.size == 0:
        raise ImageDataError(
            f"the cluster at (x={cx:.1f}, y={cy:.1f}) px lies outside the {rows}×{cols} image"
        )
    # local background: median of the window outside the cluster's disc
    yy, xx = np.mgrid[max(r0, 0): min(r1, rows), max(c0, 0): min(c1, cols)]
    radius_px = 0.6 * detection.diameter_A / image.pixel_size_A + 2
    outside = (yy - cy) ** 2 + (xx - cx) ** 2 > radius_px**2
    background = float(np.median(window[outside])) if outside.any() else float(np.median(window))
    padded = np.pad(
        window,
        ((max(0, -r0), max(0, r1 - rows)), (max(0, -c0), max(0, c1 - cols))),
        mode="constant", constant_values=background,
    )
    if sigma > 0:
        padded = ndi.gaussian_filter(padded, sigma, mode="nearest")
    # output pixel i (centre) ↦ input coordinate centre + (i - (n-1)/2) * scale
    offs = (np.arange(crop_px) - (crop_px - 1) / 2.0) * scale
    rr = (cy - r0) + offs
    cc = (cx - c0) + offs
    grid = np.meshgrid(rr, cc, indexing="ij")
    out = ndi.map_coordinates(padded, grid, order=1, mode="constant", cval=background)
    return out.astype(np.float32)

