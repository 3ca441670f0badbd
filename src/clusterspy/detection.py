"""Find clusters in a frame, crop and rescale them to the model's pixel size.

The detector never needs atomic resolution (clusters are ≥ ~8 Å, smoothing ≥ 2 Å), so it works
on a binned copy of the frame, at a physical scale set by the pixel size [Å/px]:

1. the image is block-mean binned to a *working pixel size* of about ``min_diameter_A / 6``
   (never finer than the data; ``working_pixel_A`` overrides): the smallest cluster is still
   ≥ 6 px across, noise is averaged, and a 1024² frame at 0.3 Å/px becomes 256²;
2. the slowly varying background (support film, thickness, scan gain) is removed with a grey
   opening of radius ``background_A`` (default ``max_diameter_A / 2``), done on a coarse copy
   and interpolated back;
3. the image is smoothed with a Gaussian of σ ≥ 2 Å — much larger than the spacing of
   atomic columns (2–3 Å) — so that a cluster imaged at atomic resolution is *one* blob,
   not a set of columns;
4. a threshold gives a mask (holes filled): Otsu's (kept ≥ 3 σ of the noise above the
   background class), a pure noise threshold, or a robust one from the spread of the smoothed
   image itself (textured supports in wide fields). Otsu's follows the brightest clusters, so a
   faint pass (:func:`_faint_regions`) looks again away from them for clusters far fainter (a
   55-atom cluster beside a 561-atom particle);
5. touching clusters are split by a watershed on the distance transform, seeded by its
   h-maxima at most once per ``min_diameter_A`` — only in components large enough to hold two
   clusters, each on its own bounding box (an isolated cluster costs nothing);
6. each region is measured again in its own window of the input (binned only so far that it
   stays ≥ :data:`MEASURE_PX` px across): the contour at :data:`MEASURE_LEVEL` of its height
   over the median of its local background gives its position, box, area and
   equivalent-circle diameter — independent of the frame's size and of whatever else the frame
   holds (a threshold from the whole frame's histogram is not); regions whose diameter is
   outside ``[min_diameter_A, max_diameter_A]`` are dropped.

A constant fill connected to the frame edge (the corners a rotation fills, padding:
:func:`fill_mask`) is not data: it is replaced by the nearest data before the background is
estimated, nothing is detected in it, and each detection records its distance to it
(:attr:`Detection.fill_gap_px`) so that :func:`clusterspy.domain.cut_by_edge` treats its boundary
like the frame edge. Where such a fill merges with an exactly constant background (the zeros of a
simulated, low-count or masked vacuum), the region is no fill, and a cut is found from the data along
its edge instead (:func:`_cut_by_constant`): a straight edge with the particle's thick inside right
against it and a wholly constant band beyond it is a cut (its ``fill_gap_px`` is 0); a whole
particle's rim is faint, or its edge ragged, or the vacuum beyond its facet strewn with counts.

About 6 ms for a 1024² frame (0.3 Å/px) and 12 ms for a 2048² one (0.075 Å/px) on one core.
Bright clusters (HAADF) or dark ones (bright field) are handled by ``polarity``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from clusterspy.errors import ConfigError, ImageDataError
from clusterspy.image import FILL_MIN_RUN_PX, Image, check_pixel_size, edge_fill_values, pasted_rectangle

Polarity = Literal["auto", "bright", "dark"]

#: Default smallest and largest cluster diameters [Å].
DEFAULT_MIN_DIAMETER_A = 8.0
DEFAULT_MAX_DIAMETER_A = 150.0

#: Smallest smoothing σ [Å]: wipes out atomic-column contrast (column spacing 2–3 Å).
COLUMN_SMOOTHING_A = 2.0

#: Threshold of ``threshold="robust"``, in robust standard deviations of the smoothed image.
ROBUST_K = 4.0

#: The faint pass (:func:`_faint_regions`) runs when Otsu's threshold lies at least this many σ of the
#: smoothed noise above the background: the bright clusters set it far above a small cluster's top.
FAINT_PASS_FROM_SIGMA = 12.0
#: Least height of a cluster's peak over the median of its surroundings (the background between the
#: regions), in the larger of the smoothed noise σ and the surroundings' robust spread (a support's
#: texture): :func:`_stands_out`, and the faint pass's least peak (``threshold="noise"`` uses 5 σ of the
#: noise alone).
STAND_OUT_SIGMA = 10.0
#: Regions of a mean contrast (:attr:`Detection.contrast`, σ of the noise) below this are checked by
#: :func:`_stands_out` (patches of a carbon film's texture: 4.9–12.8 at 10⁴ e⁻/Å²; the newcomer's
#: particles on it ≥ 76, the TEMUL file's defocused ones ≥ 180). Brighter ones are not: next to a
#: rotation's fill the background's estimate can sink, and the 3 nm TEMUL particle's surroundings with it.
STAND_OUT_CHECKED_BELOW = 30.0


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
    fill_gap_px : float or None
        Distance [px] from the region to the nearest pixel of a constant fill (the corners a
        rotation fills, padding: :func:`fill_mask`), whose boundary is an edge of the data like
        the frame's; 0 when the straight edge of an exactly constant region (a fill merged with a
        constant background) runs through the particle (:func:`_cut_by_constant`); None when no fill
        lies near the cluster.
    elongation : float
        Ratio of the long to the short axis of the region's second moments (1 for a disc). A
        single cluster's is rarely above 1.4; two overlapping clusters measured as one reach
        1.4–1.9 (:data:`clusterspy.domain.ELONGATION_MAX`).
    """

    x_px: float
    y_px: float
    bbox: tuple[int, int, int, int]
    diameter_A: float
    area_px: int
    contrast: float = 0.0
    fill_gap_px: float | None = None
    elongation: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary (JSON-ready)."""
        d = asdict(self)
        d["bbox"] = list(self.bbox)
        return d


def _bin(data: np.ndarray, factor: int) -> np.ndarray:
    """Block mean over ``factor × factor`` pixels (edges that do not fill a block are dropped).

    Returns ``float32``; done with strided additions, ~0.3 ms for a 1024² ``uint16`` frame.
    """
    data = np.asarray(data)
    if factor <= 1:
        return data.astype(np.float32, copy=False)
    rows = (data.shape[0] // factor) * factor
    cols = (data.shape[1] // factor) * factor
    d = data[:rows, :cols].reshape(rows // factor, factor, cols)
    s = d[:, 0].astype(np.float32)
    for k in range(1, factor):
        s += d[:, k]
    s = s.reshape(rows // factor, cols // factor, factor)
    out = s[..., 0].copy()
    for k in range(1, factor):
        out += s[..., k]
    out *= np.float32(1.0 / (factor * factor))
    return out


def _interp_weights(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and weights of linear interpolation from ``n_in`` block centres to ``n_out`` px."""
    pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5  # pixel centres in block units
    pos = np.clip(pos, 0, n_in - 1)
    i0 = np.minimum(np.floor(pos).astype(np.intp), max(n_in - 2, 0))
    w = (pos - i0).astype(np.float32)
    return i0, w


def _upsample(x: np.ndarray, n_rows: int, n_cols: int) -> np.ndarray:
    """Separable bilinear upsampling of a smooth coarse map to ``(n_rows, n_cols)`` px."""
    if x.shape[0] > 1:
        i, w = _interp_weights(n_rows, x.shape[0])
        x = x[i] * (1 - w)[:, None] + x[i + 1] * w[:, None]
    else:
        x = np.repeat(x, n_rows, axis=0)
    if x.shape[1] > 1:
        i, w = _interp_weights(n_cols, x.shape[1])
        x = x[:, i] * (1 - w) + x[:, i + 1] * w
    else:
        x = np.repeat(x, n_cols, axis=1)
    return x


def _background(data: np.ndarray, radius_px: float) -> np.ndarray:
    """Background by a grey opening of half-width ``radius_px`` [px] done on a coarse copy.

    The opening (square window, separable) removes every bright feature narrower than
    ``2 * radius_px``; it runs on a copy binned to ~8 px per radius and is brought back by
    separable bilinear interpolation (no BLAS: its threads stall on a busy machine).
    """
    from scipy import ndimage as ndi

    coarse_f = max(1, min(int(radius_px // 8), min(data.shape) // 2))  # never binned to nothing
    coarse = _bin(data, coarse_f)
    r = max(1, round(radius_px / coarse_f))
    if r * 2 + 1 >= min(coarse.shape):
        # the window is larger than the field: the background is a plane
        return np.full_like(data, np.percentile(coarse, 5))
    coarse = ndi.gaussian_filter(coarse, 1.0)
    opened = ndi.grey_opening(coarse, size=(2 * r + 1, 2 * r + 1))
    opened = ndi.uniform_filter(opened, size=r)  # soften the opening's flat steps
    if coarse_f == 1 and opened.shape == data.shape:
        return opened
    # bin centres → pixel centres; rows/cols the binning dropped are extrapolated flat
    bg = _upsample(opened, opened.shape[0] * coarse_f, opened.shape[1] * coarse_f)
    if bg.shape != data.shape:
        pad = ((0, data.shape[0] - bg.shape[0]), (0, data.shape[1] - bg.shape[1]))
        bg = np.pad(bg, pad, mode="edge")
    return bg


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of a mask: background components that do not touch the edge."""
    from scipy import ndimage as ndi

    bl, nb = ndi.label(~mask)
    if nb == 0:
        return mask
    edge = np.zeros(nb + 1, dtype=bool)
    edge[bl[0]] = edge[bl[-1]] = edge[bl[:, 0]] = edge[bl[:, -1]] = True
    edge[0] = True
    return mask | ~edge[bl]


def _solid(mask: np.ndarray, factor: int) -> np.ndarray:
    """The ``factor × factor`` blocks (as :func:`_bin` makes them) wholly inside ``mask``.

    Compared with a tolerance: in float32, 121 × (1/121) is 0.99999994, and a test ``>= 1`` had
    found no solid block at factors 11 and 22 (so no fill at, e.g., 0.12 Å/px).
    """
    return _bin(mask, factor) > np.float32(1.0 - 0.5 / factor**2)


def _sub(x: np.ndarray, n: int = 16384) -> np.ndarray:
    """A regular subsample of about ``n`` pixels (for medians, percentiles, histograms)."""
    step = max(1, int(np.sqrt(x.size / n)))
    return x[::step, ::step] if x.ndim == 2 else x[::step * step]


def _smoothed_noise(x: np.ndarray, sigma_px: float, valid: np.ndarray | None = None) -> float:
    """Noise σ of ``x`` after a Gaussian of ``sigma_px`` [px], from pixel-to-pixel differences
    (between ``valid`` pixels only, when given)."""
    step = max(1, x.size // 16384)
    diff = np.diff(x[::step], axis=1)  # every k-th row: ≥ 16k differences
    if valid is not None:
        both = valid[::step, 1:] & valid[::step, :-1]
        diff = diff[both] if both.any() else diff.ravel()
    raw = 1.4826 * float(np.median(np.abs(diff - np.median(diff)))) / np.sqrt(2.0)
    if raw == 0.0:
        raw = float(np.std(diff)) / np.sqrt(2.0) or 1e-12
    return raw / max(1.0, 2.0 * np.sqrt(np.pi) * sigma_px)


def _stands_out(smooth: np.ndarray, labels: np.ndarray, k: int, sl: tuple[slice, slice],
                peaks: np.ndarray, noise: float, margin_px: int,
                excluded: np.ndarray | None = None) -> bool | None:
    """Whether region ``k`` of ``labels`` (box ``sl``, peak ``peaks[k]``) stands :data:`STAND_OUT_SIGMA` ×
    the larger of ``noise`` and its surroundings' robust spread above their median.

    Its surroundings are the pixels of its box grown by its own size (at least ``2 * margin_px``), at
    least ``margin_px`` from every region and not ``excluded`` (a fill): the background between the
    regions, a vacuum or a support's texture. A cluster stands far above it (a newcomer's particles of
    55–2,057 atoms on carbon, stop 39: 12.7–69×; the TEMUL file's defocused particles pass too); the
    texture's own patches do not (1.1–8.0× on the same carbon alone). None when fewer than 16 such
    pixels are there (a tight crop: nothing to judge by).
    """
    from scipy import ndimage as ndi

    grow = max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start, 2 * margin_px)
    r0, r1 = max(sl[0].start - grow, 0), min(sl[0].stop + grow, smooth.shape[0])
    c0, c1 = max(sl[1].start - grow, 0), min(sl[1].stop + grow, smooth.shape[1])
    near = ndi.maximum_filter((labels[r0:r1, c0:c1] > 0).view(np.uint8), size=2 * margin_px + 1) > 0
    if excluded is not None:
        near |= excluded[r0:r1, c0:c1]
    around = smooth[r0:r1, c0:c1][~near]
    if around.size < 16:
        return None
    mid = float(np.median(around))
    spread = 1.4826 * float(np.median(np.abs(around - mid)))
    return bool(peaks[k] >= mid + STAND_OUT_SIGMA * max(noise, spread))


def _faint_regions(smooth: np.ndarray, mask: np.ndarray, t: float, floor: float, noise: float,
                   fill: np.ndarray | None, margin_px: int, min_area_px: float) -> np.ndarray | None:
    """Regions Otsu's threshold ``t`` missed because brighter clusters set it: a 55-atom cluster beside
    a 561-atom particle peaks below half the particle's height (a newcomer's at stop 38 were not found).

    Otsu's threshold again, on the pixels ``margin_px`` away from ``mask`` (and from a ``fill``), kept
    ≥ 3 σ of the smoothed ``noise`` above their own background. A region above it is added when it:

    - peaks above the frame's background ``floor`` by :data:`STAND_OUT_SIGMA` × the larger of
      ``noise`` and those pixels' robust spread (a support's texture);
    - holds fewer than ``min_area_px`` [px] of ``mask`` (one that holds more is the skirt of a cluster
      found first; one that holds less, the tip of a small cluster too small to be measured);
    - does not touch the frame's edge;
    - is no larger than the largest region of ``mask`` (larger yet far fainter is background);
    - stands out from its own surroundings (:func:`_stands_out`: carbon under one particle, vacuum
      elsewhere).

    Runs only when ``t`` lies ≥ :data:`FAINT_PASS_FROM_SIGMA` σ above ``floor``; None when it does not
    run or adds nothing.
    """
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    if noise <= 0 or t < floor + FAINT_PASS_FROM_SIGMA * noise or not mask.any():
        return None
    away = ndi.maximum_filter(mask.view(np.uint8), size=2 * margin_px + 1) == 0
    if fill is not None:
        away &= ~fill
    rest = smooth[away]
    if rest.size < 64 or not (rest > floor + STAND_OUT_SIGMA * noise).any():  # a series' usual frame
        return None
    sample = _sub(rest)
    # the spread of what lies away from the clusters found: the noise, or more where a support's
    # texture or a cluster's diffuse halo is there (a PRISM cluster's halo gave 2σ "clusters" beside it)
    spread = 1.4826 * float(np.median(np.abs(sample - np.median(sample))))
    level = floor + STAND_OUT_SIGMA * max(noise, spread)
    t2 = float(threshold_otsu(sample))
    below = sample[sample < t2]
    floor2 = float(np.median(below)) if below.size else float(np.median(sample))
    t2 = max(t2, floor2 + 3 * noise)
    if t2 >= t:
        return None
    low = smooth > t2
    if fill is not None:
        low &= ~fill
    lab, n = ndi.label(low)
    if n == 0:
        return None
    where = lab[low]
    peak = np.full(n + 1, -np.inf)
    np.maximum.at(peak, where, smooth[low])  # over the few pixels above t2 (ndi.maximum sorts them all)
    keep = peak >= level
    # a cluster found first, seen lower (its skirt), is left as found; a tip of a small cluster that
    # rose above the first threshold only over too few pixels to be measured is replaced by its region
    keep &= np.bincount(where, weights=mask[low], minlength=n + 1) < min_area_px
    # nor at the frame's edge, where the background's estimate is weakest (a support's rim made
    # cut_by_edge "clusters" of carbon); a faint cluster cut by the edge could not be judged anyway
    keep[np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])] = False
    # nor larger than the largest cluster found first: thickness grows with size, so a region larger
    # yet far fainter is the background (a patch of carbon), not a cluster
    found, _ = ndi.label(mask)
    keep &= np.bincount(where, minlength=n + 1) <= np.bincount(found.ravel())[1:].max()
    keep[0] = False
    # and it must stand out from its own surroundings too: a frame's background is not one texture
    # (carbon under a particle, vacuum elsewhere), and a patch of carbon is no cluster
    slices = ndi.find_objects(lab)
    for k in np.flatnonzero(keep):
        keep[k] = _stands_out(smooth, lab, int(k), slices[k - 1], peak, noise, margin_px, ~away) is True
    if not keep.any():
        return None
    return keep[lab]


def _auto_polarity(x: np.ndarray) -> str:
    """'bright' if the intensity distribution has a heavier upper tail (HAADF), else 'dark'."""
    lo, med, hi = np.percentile(_sub(x), [1, 50, 99])
    return "bright" if (hi - med) >= (med - lo) else "dark"


def _split_touching(
    labels: np.ndarray, n: int, min_r: float, min_area: float
) -> tuple[np.ndarray, int]:
    """Split touching clusters: watershed on the distance transform, component by component.

    Only components that could hold two clusters (area ≥ ``min_area`` [px]) are looked at; in
    each, seeds are the regional maxima of the (lightly smoothed) distance transform that stand
    ≥ ``min_r / 4`` above their saddles (h-maxima), lie ≥ ``min_r / 2`` inside the mask and are
    ≥ ``min_r`` apart [px]. Done on each component's bounding box, so it costs nothing for
    isolated clusters.
    """
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    areas = np.bincount(labels.ravel(), minlength=n + 1)
    big = np.flatnonzero(areas >= min_area)
    big = big[big > 0]
    if big.size == 0:
        return labels, n
    slices = ndi.find_objects(labels)
    h = max(0.5, 0.25 * min_r)
    next_id = n + 1
    for k in big:
        sl = slices[k - 1]
        # one pixel of margin so the distance transform sees the background around the component
        sl = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in sl)
        comp = labels[sl] == k
        dist = ndi.gaussian_filter(ndi.distance_transform_edt(comp), 0.5)
        if dist.max() < min_r:  # too thin to hold two clusters of the minimum size
            continue
        seeds = h_maxima(dist, h).astype(bool) & (dist >= 0.5 * min_r) & comp
        if np.count_nonzero(seeds) < 2:
            continue
        peaks = peak_local_max(np.where(seeds, dist, 0.0), min_distance=max(1, round(min_r)),
                               exclude_border=False)
        if len(peaks) < 2:
            continue
        markers = np.zeros(comp.shape, dtype=np.int32)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        parts = watershed(-dist, markers, mask=comp)
        sub = labels[sl]
        for j in range(2, len(peaks) + 1):
            sub[parts == j] = next_id
            next_id += 1
    return labels, next_id - 1


#: Largest share of the frame a constant fill may cover: beyond it the constant is the image's own
#: background (a noise-free simulation), not a margin around the data (a 45° rotation fills 50 %).
FILL_MAX_SHARE = 0.6
#: Width [px] of the band along a fill whose pixels mix data and fill (a cubic spline's support).
FILL_BAND_PX = 2


def fill_mask(data: np.ndarray, factor: int = 1) -> np.ndarray | None:
    """Blocks of a constant fill connected to the frame edge, on a grid binned by ``factor``.

    Rotating an image (``scipy.ndimage.rotate``, ImageJ) or padding it fills the corners or the
    margin with one constant (0, the mean, an edge value): not data, and its boundary is an edge
    of the data like the frame's. A fill is made of exactly constant pixels, starts in a run of
    ≥ :data:`FILL_MIN_RUN_PX` px along the frame edge (so a frame without one costs four edge
    scans), encloses no patch of data (:func:`_enclosing`), ends at a sharp edge (:func:`_ragged`: not
    the ragged zeros of a background subtracted and clipped) and covers at most
    :data:`FILL_MAX_SHARE` of the frame (an exactly constant background around clusters — a
    noise-free simulation, a low-count vacuum — is not a fill; where such a background and a fill
    merge, :func:`_cut_by_constant` finds the cut), unless the data are a rectangle pasted into it
    (:func:`clusterspy.image.pasted_rectangle`: a canvas round an image).

    Parameters
    ----------
    data : numpy.ndarray
        The frame.
    factor : int
        Block size [px] of the grid returned (the detector's binning).

    Returns
    -------
    numpy.ndarray or None
        Boolean map of ``factor × factor`` blocks (as :func:`_bin` makes them) that hold a fill
        pixel, grown by one block and the :data:`FILL_BAND_PX` band where spline interpolation
        mixed fill and data; None when the frame has no fill.
    """
    return _constant_regions(data, factor)[0]


def _constant_regions(data: np.ndarray, factor: int
                      ) -> tuple[np.ndarray | None, np.ndarray | None, list[float]]:
    """The fill (:func:`fill_mask`) and every exactly constant region connected to the frame edge.

    Returns
    -------
    fill : numpy.ndarray or None
        As :func:`fill_mask` returns it.
    constant : numpy.ndarray or None
        Boolean map of the ``factor × factor`` blocks wholly made of an edge constant
        (:func:`clusterspy.image.edge_fill_values`), in regions that touch the frame edge and
        cover ≥ :data:`FILL_MIN_RUN_PX`² px — fill or constant background alike, not grown;
        None when there is none.
    values : list of float
        The edge constants.
    """
    from scipy import ndimage as ndi

    data = np.asarray(data)
    values = edge_fill_values(data)
    if not values:
        return None, None, values
    rows, cols = (data.shape[0] // factor) * factor, (data.shape[1] // factor) * factor
    eq = np.isin(data[:rows, :cols], values)
    share = float(eq.mean())
    lab, n = ndi.label(_solid(eq, factor))
    edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    area = np.bincount(lab.ravel(), minlength=n + 1)
    keep = np.zeros(n + 1, bool)
    keep[edge] = area[edge] >= FILL_MIN_RUN_PX**2 / factor**2  # a few noise zeros are no fill
    keep[0] = False
    constant = keep[lab]
    if not constant.any():
        return None, None, values
    pasted = share > FILL_MAX_SHARE and pasted_rectangle(eq)  # a canvas round an image: a fill however large
    if share > FILL_MAX_SHARE and not pasted:  # in pixels: on a coarse grid a background shrinks below it
        return None, constant, values
    keep[_enclosing(lab, keep)] = False
    keep[_ragged(lab, keep, _bin(eq, factor), factor)] = False
    mask = keep[lab]
    if not mask.any() or (mask.mean() > FILL_MAX_SHARE and not pasted):
        return None, constant, values
    # blocks the fill's boundary crosses are not solid: one block more, in all 8 directions
    grow = 1 + int(np.ceil(FILL_BAND_PX / factor))
    return ndi.binary_dilation(mask, structure=np.ones((3, 3), bool), iterations=grow), constant, values


#: Least area [px] of a connected plateau of the image's maximum to be an annotation (a scale bar,
#: its text): a saturated column's plateau can be as large, but its rim is bright.
ANNOTATION_MIN_PX = 40
#: Largest half-width [px] of a letter's stroke (a plateau no thicker is drawn, whatever its shape).
ANNOTATION_STROKE_PX = 3.0
#: Least ratio of the long side of a plateau's box to its short side for a bar: a cluster clipped
#: white is a compact blob (a newcomer's 8-bit export clipped at the 90th percentile: one plateau of
#: 5,288 px over a whole Au309 decahedron, its rim at the background like a bar's).
ANNOTATION_ELONGATION = 3.0
#: Largest height of the data just around such a plateau (the 80th percentile of its rim), as a share
#: of the maximum's height over the image's median, for it to be drawn on the image: a burned-in bar
#: or text sits on the background (≈ 0); the plateaus of columns an 8-bit export clipped sit on the
#: columns' flanks, 0.33–0.67 (a fast-simulated Au309 at 0.2 Å/px stretched to its 85th–95th
#: percentile: 40–70 px plateaus, as thin as a letter's stroke).
ANNOTATION_RIM_MAX = 0.2


def annotation_mask(data: np.ndarray) -> np.ndarray | None:
    """Pixels drawn on the image — a burned-in scale bar, its text — or None when there are none.

    An annotation is a connected plateau of the image's maximum (8-connected, at least
    :data:`ANNOTATION_MIN_PX` px), thin as a letter's stroke (:data:`ANNOTATION_STROKE_PX`) or long as
    a bar (:data:`ANNOTATION_ELONGATION`), whose rim (the pixels 2–3 px around it) lies at the background: its
    80th percentile's height over the image's median is under :data:`ANNOTATION_RIM_MAX` of the maximum's. A
    saturated cluster's plateaus sit on its columns' bright flanks, and Poisson noise never makes a
    plateau. Velox or DigitalMicrograph exports with a scale bar had it found as a cluster (a newcomer:
    ``cut_by_edge`` in every frame of a series, or the real particle's ``neighbour_in_view``).
    """
    from scipy import ndimage as ndi

    data = np.asarray(data)
    top = data.max()
    at_top = data == top
    if np.count_nonzero(at_top) < ANNOTATION_MIN_PX:  # a raw frame's maximum: a few pixels
        return None
    median = float(np.median(_sub(data.ravel())))
    if not float(top) > median:
        return None
    lab, n = ndi.label(at_top, structure=np.ones((3, 3), bool))
    if n == 0:
        return None
    area = np.bincount(lab.ravel(), minlength=n + 1)
    out = np.zeros(data.shape, bool)
    for k, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None or area[k] < ANNOTATION_MIN_PX:
            continue
        r0, r1 = max(0, sl[0].start - 3), min(data.shape[0], sl[0].stop + 3)
        c0, c1 = max(0, sl[1].start - 3), min(data.shape[1], sl[1].stop + 3)
        own = lab[r0:r1, c0:c1] == k
        height, width = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        thin = float(ndi.distance_transform_edt(np.pad(own, 1))[1:-1, 1:-1].max()) <= ANNOTATION_STROKE_PX
        if not (thin or max(height, width) >= ANNOTATION_ELONGATION * min(height, width)):
            continue  # a compact blob: a cluster clipped white, not a bar or a letter
        rim = ndi.binary_dilation(own, iterations=3) & ~ndi.binary_dilation(own)
        values = data[r0:r1, c0:c1][rim]
        rim_height = float(np.percentile(values, 80)) - median if values.size else float("inf")
        if rim_height < ANNOTATION_RIM_MAX * (float(top) - median):
            out[r0:r1, c0:c1] |= own
    return out if out.any() else None


def _enclosing(lab: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Labels of the kept constant regions that wholly enclose a patch of data inside the frame.

    A rotation's or a pad's fill lies around the data: where it closes a ring, what it encloses is
    the image itself — a rotated frame, whose corners reach the frame's four sides, or a padded
    rectangle. A constant background around a cluster — the exact zeros of a vacuum in a simulated
    or low-count image — encloses the cluster: a rounded patch away from the sides.
    """
    from scipy import ndimage as ndi

    mask = keep[lab]
    holes, n = ndi.label(ndi.binary_fill_holes(mask) & ~mask)
    area = np.bincount(holes.ravel(), minlength=n + 1)
    rows, cols = lab.shape
    inner = []
    for k, sl in enumerate(ndi.find_objects(holes), start=1):
        if sl is None:
            continue
        spans = sl[0].start <= 2 and sl[1].start <= 2 and sl[0].stop >= rows - 2 and sl[1].stop >= cols - 2
        box = (sl[0].stop - sl[0].start) * (sl[1].stop - sl[1].start)
        if not spans and area[k] < 0.95 * box:  # neither a rotated frame nor a padded rectangle
            inner.append(k)
    if not inner:
        return np.zeros(0, int)
    rim = ndi.binary_dilation(np.isin(holes, inner), structure=np.ones((3, 3), bool)) & mask
    return np.unique(lab[rim])


#: Depth [px] of the band beyond a constant region (past the :data:`FILL_BAND_PX` that interpolation
#: mixes) whose share of constant pixels tells a fill from a ragged constant background.
RAGGED_BAND_PX = 8
#: Least share of exactly constant pixels in that band for a constant region to be a ragged
#: background, not a fill: a rotation's or a pad's fill ends at a sharp edge, beyond which the data
#: hold 2–8 % of its constant (StatSTEM's Pb and PtIr rotated by 5–80°, padded); an image whose
#: background was subtracted and clipped at zero holds 49–92 % zeros there (StatSTEM's Pb clipped
#: at its median: its whole particle had been ``cut_by_edge`` by the "fill"); a low-count vacuum
#: smoothed by a Gaussian of 1 px leaves patches of zeros between the spread counts, 23 % beyond one
#: of them (a newcomer's simulated Au309 icosahedron, 0.2 Å/px, 10⁴ e⁻/Å²: ``cut_by_edge``).
RAGGED_MIN_SHARE = 0.15


def _ragged(lab: np.ndarray, keep: np.ndarray, constant_share: np.ndarray, factor: int) -> np.ndarray:
    """Labels of the kept constant regions whose edge is ragged: a constant background, not a fill.

    A fill is one constant up to a sharp edge, beyond which the data hold few pixels of that
    constant; the zeros of a background that was subtracted and clipped, or of a low-count vacuum,
    thin out gradually, and the band :data:`RAGGED_BAND_PX` deep beyond such a region (past the
    :data:`FILL_BAND_PX` that interpolation mixes) holds :data:`RAGGED_MIN_SHARE` or more of them.
    ``constant_share`` is each ``factor × factor`` block's share of constant pixels on the grid of
    ``lab``.
    """
    from scipy import ndimage as ndi

    inner = -(-(FILL_BAND_PX + 1) // factor)
    outer = inner + max(1, -(-RAGGED_BAND_PX // factor))
    rows, cols = lab.shape
    out = []
    for k, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None or not keep[k]:
            continue
        r0, r1 = max(0, sl[0].start - outer), min(rows, sl[0].stop + outer)
        c0, c1 = max(0, sl[1].start - outer), min(cols, sl[1].stop + outer)
        region = lab[r0:r1, c0:c1] == k
        dist = ndi.distance_transform_cdt(~region, metric="chessboard")
        band = (dist > inner) & (dist <= outer)
        if band.any() and float(constant_share[r0:r1, c0:c1][band].mean()) >= RAGGED_MIN_SHARE:
            out.append(k)
    return np.asarray(out, dtype=int)


#: Height of the data along a constant region's edge over the local background, as a share of the
#: cluster's top, above which the edge runs through the particle's inside (a cut), not along its rim:
#: the detector's contour (:data:`MEASURE_LEVEL`) reaches the edge.
CUT_LEVEL = 0.35
#: Least length of a straight stretch of constant edge with such data along it, as a share of the
#: detected diameter, for the particle to be cut: a cut 10 % deep leaves 0.48–0.66 (StatSTEM PtIr,
#: simulated Au clusters); a round rim stays within a line :data:`LINE_WIDTH_PX` wide over at most
#: 2 √(1.5 D) px, ≤ 0.31 D for the ≥ 64 px a particle spans where this is measured (a flat disc with
#: a sharp rim: 0.27); a whole faceted particle of bright Gaussian columns on exact zeros (frame 3 of
#: StatSTEM's simulated HMM series) showed a straight bright facet of 0.43 D, so 0.45.
CUT_MIN_SHARE = 0.45
#: Least length [Å] of that straight stretch, whatever the diameter: the few columns of a cluster of
#: ~55 atoms are all about as bright, and the exact zeros of a low-count vacuum around it follow a
#: facet for 4–9 Å (PRISM Au₅₅ at 5·10³–10⁵ e⁻/Å²: 0.74 D); a cut small particle is left to the
#: frame-edge rule.
CUT_MIN_LENGTH_A = 10.0
#: Least share of the pixels of that straight stretch that are constant-edge pixels: a crop's or a
#: rotation's edge holds them all (0.9–1.0 measured), the ragged edge of a low-count vacuum's zeros
#: few.
CUT_MIN_DENSITY = 0.75
#: Width [px] of the line :func:`_straight_line` fits (a digital line at any angle lies within it).
LINE_WIDTH_PX = 1.5
#: Depth [measuring px] of the band beyond a straight constant edge whose purity
#: (:func:`_purity_beyond`) tells a fill from a low-count vacuum.
CUT_BAND_PX = 4.0
#: Least share of exactly constant pixels in that band for the edge to be a fill's (a cut): a crop's
#: or a rotation's fill is wholly constant (1.0); the exact zeros of a low-count vacuum next to a
#: facet are strewn with counts — `clusterspy simulate --dose 500 / 2000` (0.2 Å/px) leaves 95 % /
#: 87 % of the image zero, and the facets of its icosahedra were called cut. A vacuum with no counts
#: at all (0.15 Å/px at 10³ e⁻/Å²: 99.99 % zero) is as pure as a fill, and is still called cut.
CUT_FILL_PURITY = 0.99


def _straight_line(pts: np.ndarray) -> tuple[np.ndarray, float, float, float] | None:
    """The straight line that holds most of the points ``pts`` (row, col) [px].

    A Hough transform in 2° steps with lines :data:`LINE_WIDTH_PX` wide, refined by a least-squares
    fit to the points near the best line.

    Returns
    -------
    tuple or None
        ``(normal, offset, density, extent)``: the line holds the points ``p`` with
        ``offset ≤ p · normal ≤ offset + LINE_WIDTH_PX``; ``extent`` [px] is their extent along it;
        ``density`` is how many it holds over the pixels of an 8-connected digital line across that
        extent (≈ 1 for a straight edge). None for fewer than 3 points.
    """
    if len(pts) < 3:
        return None
    theta = np.deg2rad(np.arange(0.0, 180.0, 2.0))
    normals = np.stack([np.cos(theta), np.sin(theta)])
    proj = pts @ normals
    ordered = np.sort(proj, axis=0)
    idx = np.arange(len(ordered))
    best, j_best, lo_best = 0, 0, 0.0
    for j in range(theta.size):
        counts = np.searchsorted(ordered[:, j], ordered[:, j] + LINE_WIDTH_PX, side="right") - idx
        i = int(np.argmax(counts))
        if counts[i] > best:
            best, j_best, lo_best = int(counts[i]), j, float(ordered[i, j])
    normal = normals[:, j_best]
    on = (proj[:, j_best] >= lo_best) & (proj[:, j_best] <= lo_best + LINE_WIDTH_PX)
    # refined by a least-squares line through the points near it (2° steps miss long lines)
    close = np.abs(proj[:, j_best] - lo_best - 0.5 * LINE_WIDTH_PX) <= 2.0 * LINE_WIDTH_PX
    if np.count_nonzero(close) >= 3:
        _, vecs = np.linalg.eigh(np.cov(pts[close].T))
        fit = vecs[:, 0]
        p = pts @ fit
        centre = float(np.median(p[close]))
        lo_fit = centre - 0.5 * LINE_WIDTH_PX
        on_fit = (p >= lo_fit) & (p <= lo_fit + LINE_WIDTH_PX)
        if np.count_nonzero(on_fit) >= best:
            normal, lo_best, on, best = fit, lo_fit, on_fit, int(np.count_nonzero(on_fit))
    t = pts[on] @ np.array([-normal[1], normal[0]])
    extent = float(t.max() - t.min()) + 1.0
    return normal, lo_best, best / (extent * max(abs(normal[0]), abs(normal[1]))), extent


def _cut_by_constant(data: np.ndarray, sign: float, constant: np.ndarray, values: list[float],
                     factor: int, bbox: tuple[int, int, int, int], diameter_A: float, px_A: float,
                     sigma_A: float) -> bool:
    """Whether the edge of an exactly constant region runs through a detected particle (a cut).

    A constant background around a whole cluster (the exact zeros of a simulated or low-count
    vacuum, a masked image) and a fill that cuts a particle (a crop through it, then rotated with a
    constant fill) can merge into one region that :func:`fill_mask` must leave alone. What tells
    them apart is the physics of the image: a whole particle's projected thickness falls to zero at
    its rim and the probe's tail spreads its last columns over ~1 Å, so the data along a
    background's edge are faint (or the edge is ragged: the scattered zeros of a low-count rim); a
    cut leaves the particle's thick inside — data at its full height — right against a *straight*
    edge. The particle is cut when, along a straight stretch of the constant region's edge of at
    least :data:`CUT_MIN_SHARE` of ``diameter_A`` and :data:`CUT_MIN_LENGTH_A` (that the edge
    fills to :data:`CUT_MIN_DENSITY`), the data one pixel in from it (past the pixel a linear
    interpolation mixes), averaged along it over ``sigma_A``, stand above :data:`CUT_LEVEL` of the
    particle's height over its local background — and the band beyond that stretch is a fill's,
    wholly constant (:data:`CUT_FILL_PURITY`), not a low-count vacuum's zeros along a facet.

    Parameters
    ----------
    data : numpy.ndarray
        The frame.
    sign : float
        1 for bright particles, −1 for dark ones.
    constant : numpy.ndarray
        The constant regions on the detector's grid (:func:`_constant_regions`).
    values : list of float
        The edge constants.
    factor : int
        Block size [px] of the detector's grid.
    bbox : tuple of int
        ``(row0, col0, row1, col1)`` [px] of the detection, end exclusive.
    diameter_A : float
        Its equivalent-circle diameter [Å].
    px_A : float
        Pixel size [Å/px].
    sigma_A : float
        Smoothing σ [Å] that wipes out the atomic columns.

    Returns
    -------
    bool
        True when the constant region cuts the particle.
    """
    from scipy import ndimage as ndi

    r0, c0, r1, c1 = bbox
    size = max(r1 - r0, c1 - c0)
    m = max(1, size // 64)  # ≥ 64 measuring px across the box
    margin = int(0.5 * size + 4 * sigma_A / px_A) + m
    w0, v0 = max(0, r0 - margin), max(0, c0 - margin)
    w1, v1 = min(data.shape[0], r1 + margin), min(data.shape[1], c1 + margin)
    w1, v1 = w0 + (w1 - w0) // m * m, v0 + (v1 - v0) // m * m
    near = _coarse_map(constant, w0, v0, (w1 - w0) // m, (v1 - v0) // m, m, factor)
    if not near.any():
        return False
    raw = data[w0:w1, v0:v1]
    # the constant pixels at most one detector block beyond its wholly constant blocks: a fill's
    # exact edge, not the zeros a low-count vacuum strews into a particle's rim
    eq = raw == values[0] if len(values) == 1 else np.isin(raw, values)
    reach = max(1, -(-factor // m))
    const = _solid(eq, m) & ndi.maximum_filter(near, size=2 * reach + 1)
    if not const.any():
        return False
    valid = ~ndi.binary_dilation(const)  # the pixels next to the edge mix fill and data
    disc = np.hypot(*np.mgrid[-2:3, -2:3]) <= 2.0
    sig = sigma_A / (px_A * m)
    g = int(np.ceil(3 * sig)) + 3
    b0, b1 = (r0 - w0) // m, (r1 - w0) // m + 1  # the box on the measuring grid
    d0, d1 = (c0 - v0) // m, (c1 - v0) // m + 1
    # the data one pixel in from the edge (distance 1–2 px) next to the box
    strip = np.zeros_like(valid)
    strip[max(0, b0 - 3):b1 + 3, max(0, d0 - 3):d1 + 3] = True
    strip &= valid & ndi.binary_dilation(const, structure=disc)
    if not strip.any():
        return False
    win = _bin(raw, m) * np.float32(sign)
    sl = (slice(max(0, b0 - g), b1 + g), slice(max(0, d0 - g), d1 + g))

    def mean_over(where: np.ndarray) -> np.ndarray:  # Gaussian mean over the pixels `where` only
        w = ndi.gaussian_filter(where[sl].astype(np.float32), sig, mode="nearest")
        v = ndi.gaussian_filter(np.where(where[sl], win[sl], 0).astype(np.float32), sig, mode="nearest")
        return v / np.maximum(w, 1e-3)

    inside = np.zeros_like(valid)
    inside[b0:b1, d0:d1] = True
    inside &= valid
    if not inside.any():
        return False
    top = float(np.percentile(mean_over(valid)[inside[sl]], 99))
    grow = max(1, int(np.ceil(2 * sig)))
    around = valid.copy()
    around[max(0, b0 - grow):b1 + grow, max(0, d0 - grow):d1 + grow] = False
    base = float(np.median(win[around])) if np.count_nonzero(around) >= 16 else sign * float(values[0])
    bright = np.zeros_like(valid)
    bright[sl] = strip[sl] & (mean_over(strip) > base + CUT_LEVEL * (top - base))  # averaged along the edge
    if not bright.any():
        return False
    # the constant region's edge pixels those data face, and the straight line that holds most
    edge = const & ~ndi.binary_erosion(const, border_value=1)
    facing = edge & ndi.maximum_filter(bright, size=7)
    line = _straight_line(np.argwhere(facing).astype(float))
    if line is None:
        return False
    _, _, density, span_px = line
    length_A = span_px * m * px_A
    if length_A < max(CUT_MIN_SHARE * diameter_A, CUT_MIN_LENGTH_A) or density < CUT_MIN_DENSITY:
        return False
    return _purity_beyond(_bin(eq, m), facing, line) >= CUT_FILL_PURITY


def _purity_beyond(constant_share: np.ndarray, facing: np.ndarray,
                   line: tuple[np.ndarray, float, float, float]) -> float:
    """The share of exactly constant pixels in a band :data:`CUT_BAND_PX` deep beyond a straight
    constant edge (``line`` of :func:`_straight_line`, through the ``facing`` edge pixels), along
    the stretch the edge pixels span, on the side away from the particle (the side with more constant
    pixels). ``constant_share``: each measuring pixel's share of constant input pixels."""
    normal, offset, _, _ = line
    rows, cols = np.mgrid[:constant_share.shape[0], :constant_share.shape[1]].astype(float)
    across = rows * normal[0] + cols * normal[1]
    along = rows * -normal[1] + cols * normal[0]
    pts = np.argwhere(facing).astype(float)
    on = np.abs(pts @ normal - offset - 0.5 * LINE_WIDTH_PX) <= LINE_WIDTH_PX
    t = pts[on] @ np.array([-normal[1], normal[0]])
    if t.size == 0:
        return 0.0
    span = (along >= t.min()) & (along <= t.max())
    below = span & (across < offset - 1.0) & (across >= offset - 1.0 - CUT_BAND_PX)
    far = offset + LINE_WIDTH_PX + 1.0
    above = span & (across > far) & (across <= far + CUT_BAND_PX)
    shares = [float(constant_share[b].mean()) for b in (below, above) if b.any()]
    return max(shares) if shares else 0.0


def _inpaint(work: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """``work`` with its ``invalid`` pixels set to the nearest valid one (a fill is not background)."""
    from scipy import ndimage as ndi

    idx = ndi.distance_transform_edt(invalid, return_distances=False, return_indices=True)
    return work[tuple(idx)]


#: Pixels across a candidate's box at which its diameter is measured (finer data is binned to it).
MEASURE_PX = 32
#: Height, over the local background, of the contour a cluster is measured at, as a share of its top
#: (99th percentile of the smoothed region). 0.35 keeps the scale :data:`clusterspy.domain.
#: DETECTED_TO_PROJECTED` was calibrated on: 0.863 (0.78–0.94) of the atoms' hull on the 96 images
#: of ``benchmarks/domain.py``'s size set, was 0.865 (0.78–0.95) with the frame-wide threshold; at
#: half height it would be 0.77.
MEASURE_LEVEL = 0.35
#: Least height of that contour over the local background, in robust σ of the background.
MEASURE_MIN_SNR = 2.0


def elongation(rows: np.ndarray, cols: np.ndarray) -> float:
    """Long over short axis of a region's second moments, from its pixels' row and column indices
    (1 for a disc, 2 for an ellipse twice as long as wide)."""
    if len(rows) < 3:
        return 1.0
    r = rows - rows.mean()
    c = cols - cols.mean()
    a, b, d = float((r * r).mean()), float((r * c).mean()), float((c * c).mean())
    half, mid = 0.5 * (a + d), np.sqrt(0.25 * (a - d) ** 2 + b * b)
    short = half - mid
    # a pixel's own extent (variance 1/12) keeps a one-pixel-wide region finite
    return float(np.sqrt((half + mid + 1 / 12) / (short + 1 / 12)))


def _window(sl: tuple[slice, slice], factor: int, shape: tuple[int, int], margin_px: int, m: int
            ) -> tuple[int, int, int, int]:
    """``(row0, col0, row1, col1)`` [input px] of a candidate's box grown by ``margin_px``, clipped
    to the frame, its sides multiples of the measuring bin ``m``."""
    r0 = max(0, sl[0].start * factor - margin_px)
    c0 = max(0, sl[1].start * factor - margin_px)
    r1 = min(shape[0], sl[0].stop * factor + margin_px)
    c1 = min(shape[1], sl[1].stop * factor + margin_px)
    return r0, c0, r0 + (r1 - r0) // m * m, c0 + (c1 - c0) // m * m


def _coarse_map(grid: np.ndarray, r0: int, c0: int, n_rows: int, n_cols: int, m: int, factor: int
                ) -> np.ndarray:
    """Values of a working-grid map at the centres of the measuring grid's pixels (nearest)."""
    rr = np.minimum((r0 + np.arange(n_rows) * m + (m - 1) // 2) // factor, grid.shape[0] - 1)
    cc = np.minimum((c0 + np.arange(n_cols) * m + (m - 1) // 2) // factor, grid.shape[1] - 1)
    return grid[np.ix_(rr, cc)]


def _contour_region(smooth: np.ndarray, own: np.ndarray, allowed: np.ndarray,
                         background: np.ndarray) -> np.ndarray | None:
    """The region above :data:`MEASURE_LEVEL` of the cluster's height over its local background
    (holes filled).

    ``own`` is the candidate's coarse region; ``allowed`` what may belong to it (not another
    cluster, not a fill); ``background`` the pixels of the local background.
    """
    from scipy import ndimage as ndi

    if np.count_nonzero(background) < 16 or not own.any():
        return None
    around = smooth[background]
    base = float(np.median(around))
    spread = 1.4826 * float(np.median(np.abs(around - base)))
    peak = float(np.percentile(smooth[own], 99))
    if MEASURE_LEVEL * (peak - base) < MEASURE_MIN_SNR * spread:
        return None  # the contour would lie in the noise or texture around it
    lab, n = ndi.label((smooth > base + MEASURE_LEVEL * (peak - base)) & allowed)
    if n == 0:
        return None
    overlap = np.bincount(lab[own], minlength=n + 1)
    overlap[0] = 0
    if overlap.max() == 0:
        return None
    return _fill_holes(lab == int(np.argmax(overlap)))


def _measure(data: np.ndarray, sign: float, labels: np.ndarray, k: int, sl: tuple[slice, slice],
             factor: int, px_A: float, sigma_A: float, fill: np.ndarray | None
             ) -> tuple[float, float, tuple[int, int, int, int], float, int, float | None, float] | None:
    """Measure candidate ``k`` in a local window at (nearly) the data's own resolution.

    The window is the candidate's box grown by half its size and 4 σ of smoothing; the data are
    binned only so far that the box stays ≥ :data:`MEASURE_PX` px across, smoothed by
    ``sigma_A`` [Å], and cut at :data:`MEASURE_LEVEL` of the height of the cluster's top (99th
    percentile) over the median of the local background (the window outside the box grown by
    2 σ, less other clusters and the fill). The diameter then depends neither on the frame's size
    nor on its other content (a threshold from the whole frame's histogram does), only on the
    cluster and its surroundings.

    Returns
    -------
    tuple or None
        ``(y_px, x_px, bbox, diameter_A, area_px, fill_gap_px, elongation)`` in input pixels, or
        None when the window has no local background to measure against.
    """
    from scipy import ndimage as ndi

    box_px = max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start) * factor
    m = max(1, int(box_px // MEASURE_PX))
    r0, c0, r1, c1 = _window(sl, factor, data.shape, int(0.5 * box_px + 4 * sigma_A / px_A) + m, m)
    win = _bin(data[r0:r1, c0:c1], m) * np.float32(sign)
    lab = _coarse_map(labels, r0, c0, win.shape[0], win.shape[1], m, factor)
    own = lab == k
    bad = (lab != 0) & ~own
    filled = None
    if fill is not None:
        filled = _coarse_map(fill, r0, c0, win.shape[0], win.shape[1], m, factor)
        bad |= filled
    sigma_px = sigma_A / (px_A * m)
    grow = int(np.ceil(2 * sigma_px)) + 1
    i0, j0 = max(0, (sl[0].start * factor - r0) // m - grow), max(0, (sl[1].start * factor - c0) // m - grow)
    i1, j1 = (sl[0].stop * factor - r0) // m + grow, (sl[1].stop * factor - c0) // m + grow
    background = ~bad
    background[i0:i1, j0:j1] = False
    if filled is not None and filled.any() and background.any():
        win[filled] = np.median(win[background])  # smoothing must not pull the fill in
    smooth = ndi.gaussian_filter(win, sigma_px, mode="nearest") if sigma_px > 0.3 else win
    region = _contour_region(smooth, own & ~bad, ~bad, background)
    if region is None:
        return None
    area = int(np.count_nonzero(region))
    ii, jj = np.nonzero(region)
    off = (m - 1) / 2.0
    bbox = (r0 + int(ii.min()) * m, c0 + int(jj.min()) * m,
            r0 + (int(ii.max()) + 1) * m, c0 + (int(jj.max()) + 1) * m)
    gap = None
    if filled is not None and filled.any():
        gap = float(ndi.distance_transform_edt(~filled)[region].min() - 1.0) * m
    return (r0 + float(ii.mean()) * m + off, c0 + float(jj.mean()) * m + off, bbox,
            2.0 * np.sqrt(area / np.pi) * px_A * m, area * m * m, gap, elongation(ii, jj))


def _coarse(labels: np.ndarray, k: int, sl: tuple[slice, slice], area_w: float, factor: int,
            wpx_A: float, shape: tuple[int, int], fill: np.ndarray | None
            ) -> tuple[float, float, tuple[int, int, int, int], float, int, float | None, float]:
    """Candidate ``k`` as the detector's working grid sees it (a region too faint for
    :func:`_measure`), in the same form and input pixels."""
    from scipy import ndimage as ndi

    own = labels[sl] == k
    ii, jj = np.nonzero(own)
    off = (factor - 1) / 2.0  # a bin of `factor` px has its centre at factor*i + off
    last = [s.stop >= n for s, n in zip(sl, labels.shape, strict=True)]  # on the grid's far edge
    bbox = (sl[0].start * factor, sl[1].start * factor,
            shape[0] if last[0] else sl[0].stop * factor, shape[1] if last[1] else sl[1].stop * factor)
    gap = None
    if fill is not None and fill[sl].any():
        gap = float(ndi.distance_transform_edt(~fill[sl])[own].min() - 1.0) * factor
    return ((sl[0].start + float(ii.mean())) * factor + off, (sl[1].start + float(jj.mean())) * factor + off,
            bbox, 2.0 * np.sqrt(area_w / np.pi) * wpx_A, int(area_w * factor * factor), gap,
            elongation(ii, jj))


def detect_clusters(
    image: Image,
    *,
    min_diameter_A: float = DEFAULT_MIN_DIAMETER_A,
    max_diameter_A: float = DEFAULT_MAX_DIAMETER_A,
    polarity: Polarity = "auto",
    smooth_A: float | None = None,
    threshold: Literal["otsu", "noise", "robust"] = "otsu",
    split_touching: bool = True,
    exclude_border: bool = True,
    background_A: float | None = None,
    working_pixel_A: float | None = None,
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
    threshold : {"otsu", "noise", "robust"}
        ``"otsu"``: Otsu's threshold on the background-free image (kept above 3 σ of the
        noise); ``"noise"``: 5 σ of the pixel noise (from pixel-to-pixel differences) above
        the median; ``"robust"``: ``ROBUST_K`` robust standard deviations (1.4826 × MAD) of
        the smoothed background-free image above its median — the spread then includes the
        texture of the support, not only the shot noise (for wide fields on textured
        supports, where particles are a minority of the pixels).
    split_touching : bool
        Split touching clusters with a watershed.
    exclude_border : bool
        Drop regions that touch the image edge (clusters cut by the edge cannot be
        classified); set False to count them (then their box and diameter are those of the
        visible part).
    background_A : float, optional
        Radius [Å] of the grey opening that estimates the background; default
        ``max_diameter_A / 2`` (the opening must not fit inside the largest cluster).
    working_pixel_A : float, optional
        Pixel size [Å/px] the detection works at (block-mean binning by an integer factor;
        never finer than the data); default ``min_diameter_A / 6`` — the smallest cluster is
        still ≥ 6 px across, and a 1024² frame at 0.3 Å/px becomes 256².

    Returns
    -------
    list of Detection
        Sorted by decreasing contrast; empty if nothing is found. Positions, boxes and areas
        are in the input image's pixels (found at the working pixel size, so a box is exact
        to one working pixel).

    Raises
    ------
    ConfigError
        If the diameter range or the polarity is invalid.
    """
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

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
    if threshold not in ("otsu", "noise", "robust"):
        raise ConfigError(f"threshold must be 'otsu', 'noise' or 'robust', got {threshold!r}")
    if working_pixel_A is not None and not (np.isfinite(working_pixel_A) and working_pixel_A > 0):
        raise ConfigError(f"working_pixel_A must be > 0, got {working_pixel_A!r}")
    if background_A is not None and not (np.isfinite(background_A) and background_A > 0):
        raise ConfigError(f"background_A must be > 0, got {background_A!r}")

    data = np.asarray(image.data)
    # 1. bin to the working pixel size; a constant fill (rotation corners, padding) is no data
    target = working_pixel_A if working_pixel_A is not None else min_diameter_A / 6.0
    factor = max(1, int(np.floor(target / px)))
    factor = min(factor, max(1, min(data.shape) // 32))
    work = _bin(data, factor)
    wpx = px * factor
    fill, constant, values = _constant_regions(data, factor)
    drawn = annotation_mask(data)
    if drawn is not None:  # a burned-in scale bar or text is no data either: no cluster, an edge
        blocks = _bin(drawn, factor) > 0
        blocks = ndi.binary_dilation(blocks, structure=np.ones((3, 3), bool),
                                     iterations=1 + int(np.ceil(FILL_BAND_PX / factor)))
        fill = blocks if fill is None else fill | blocks
    if fill is not None:
        work = _inpaint(work, fill)
    if polarity == "auto":
        polarity = _auto_polarity(ndi.gaussian_filter(work, max(1.0, 2.0 / wpx)))  # type: ignore[assignment]
    sign = -1.0 if polarity == "dark" else 1.0
    if polarity == "dark":
        work = -work
    # 2. background
    bg_radius_A = background_A if background_A is not None else 0.5 * max_diameter_A
    work = work - _background(work, bg_radius_A / wpx)
    # 3. smoothing
    sigma_A = smooth_A if smooth_A is not None else max(COLUMN_SMOOTHING_A, 0.1 * min_diameter_A)
    sigma_px = sigma_A / wpx
    smooth = ndi.gaussian_filter(work, sigma_px) if sigma_px > 0.3 else work
    # 4. threshold, above the background class and its noise
    noise = _smoothed_noise(work, sigma_px, None if fill is None else ~fill)
    if threshold == "otsu":
        try:
            t = float(threshold_otsu(_sub(smooth)))
        except ValueError:
            return []
        sample = _sub(smooth)
        below = sample[sample < t]
        floor = float(np.median(below)) if below.size else float(np.median(sample))
        t = max(t, floor + 3 * noise)
    elif threshold == "noise":
        floor = float(np.median(_sub(smooth)))
        t = floor + 5 * noise
    else:
        sample = _sub(smooth)
        floor = float(np.median(sample))
        spread = 1.4826 * float(np.median(np.abs(sample - floor)))
        t = floor + ROBUST_K * max(spread, noise)
    mask = smooth > t
    if fill is not None:
        mask &= ~fill
    margin_px = max(1, round(2 * sigma_px))
    if threshold == "otsu":
        faint = _faint_regions(smooth, mask, t, floor, noise, fill, margin_px,
                               np.pi / 4 * (0.5 * min_diameter_A / wpx) ** 2)
        if faint is not None:
            mask |= faint
    mask = _fill_holes(mask)
    min_area_w = np.pi / 4 * (min_diameter_A / wpx) ** 2
    labels, n = ndi.label(mask)
    if n == 0:
        return []
    # 5. watershed on the distance transform, only where two clusters could touch
    if split_touching:
        labels, n = _split_touching(labels, n, max(1.0, 0.5 * min_diameter_A / wpx), min_area_w)
    # 6. candidates (coarse size with a margin), each measured in its own full-resolution window
    flat = labels.ravel()
    area = np.bincount(flat, minlength=n + 1).astype(float)
    sum_i = np.bincount(flat, weights=smooth.ravel(), minlength=n + 1)
    slices = ndi.find_objects(labels)
    peak = None
    if threshold == "otsu":  # each must stand out from its own surroundings (a support's texture)
        peak = np.full(n + 1, -np.inf)
        np.maximum.at(peak, labels[mask], smooth[mask])
    out: list[Detection] = []
    rows, cols = data.shape
    for k in range(1, n + 1):
        sl = slices[k - 1] if k - 1 < len(slices) else None
        if sl is None or area[k] == 0:
            continue
        coarse_A = 2.0 * np.sqrt(area[k] / np.pi) * wpx
        if not (0.5 * min_diameter_A <= coarse_A <= 2.0 * max_diameter_A):
            continue
        dim = (sum_i[k] / area[k] - floor) / noise < STAND_OUT_CHECKED_BELOW
        if peak is not None and dim and _stands_out(smooth, labels, k, sl, peak, noise, margin_px,
                                                    fill) is False:  # None (a tight crop): kept
            continue
        found = _measure(data, sign, labels, k, sl, factor, px, sigma_A, fill)
        if found is None:  # too faint to measure on its own: the detector's region
            found = _coarse(labels, k, sl, area[k], factor, wpx, data.shape, fill)
        y_px, x_px, bbox, diameter_A, area_px, gap, elong = found
        if not (min_diameter_A <= diameter_A <= max_diameter_A):
            continue
        if constant is not None and (gap is None or gap > 0) and _cut_by_constant(
                data, sign, constant, values, factor, bbox, diameter_A, px, sigma_A):
            gap = 0.0
        if exclude_border and (bbox[0] == 0 or bbox[1] == 0 or bbox[2] >= rows or bbox[3] >= cols):
            continue
        out.append(Detection(
            x_px=float(x_px), y_px=float(y_px), bbox=tuple(int(v) for v in bbox),  # type: ignore[arg-type]
            diameter_A=float(diameter_A), area_px=int(area_px),
            contrast=float((sum_i[k] / area[k] - floor) / noise), fill_gap_px=gap, elongation=elong,
        ))
    out.sort(key=lambda d: -d.contrast)
    return out


def crop_pixel_size_A(
    diameter_A: float, min_pixel_size_A: float, crop_px: int, field_factor: float | None = None
) -> float:
    """Pixel size [Å/px] of a model crop that holds a whole cluster of ``diameter_A``.

    The crop has ``crop_px`` pixels; its field ``crop_px * pixel size`` [Å] is at least
    ``field_factor * diameter_A`` and never finer than ``min_pixel_size_A``:
    ``max(min_pixel_size_A, field_factor * diameter_A / crop_px)``. Without a
    ``field_factor`` (models with a fixed field), ``min_pixel_size_A``. The same rule makes
    the training crops (:mod:`clusterspy.datasets.sampling`) and the crops classified.

    Parameters
    ----------
    diameter_A : float
        Equivalent-circle diameter of the cluster [Å] (:attr:`Detection.diameter_A`).
    min_pixel_size_A : float
        The model's finest input pixel size [Å/px].
    crop_px : int
        Side of the model's crop [px].
    field_factor : float, optional
        Field of view over diameter (e.g. 1.25).
    """
    if field_factor is None or not np.isfinite(diameter_A) or diameter_A <= 0:
        return float(min_pixel_size_A)
    return float(max(min_pixel_size_A, field_factor * float(diameter_A) / int(crop_px)))


def crop_window_half_px(scale: float, crop_px: int) -> float:
    """Half the side [input px] of the window :func:`crop_cluster` reads for a crop of ``crop_px``
    output pixels of ``scale`` input pixels each (the crop, its anti-alias blur's reach, a margin)."""
    sigma = 0.5 * np.sqrt(scale**2 - 1.0) if scale > 1.0 else 0.0
    return 0.5 * crop_px * scale + 4 * sigma + 3


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
        parts outside the image, and annotations drawn on it (:func:`annotation_mask`: a scale
        bar, its text), are filled with the local background (median of the surroundings outside
        the cluster).
    """
    from scipy import ndimage as ndi

    target = check_pixel_size(pixel_size_A)
    if int(crop_px) != crop_px or crop_px < 4:
        raise ConfigError(f"crop_px must be an integer ≥ 4, got {crop_px!r}")
    crop_px = int(crop_px)
    src = np.asarray(image.data)  # only the window is converted to float32 (crop first)
    scale = target / image.pixel_size_A  # input pixels per output pixel
    sigma = 0.5 * np.sqrt(scale**2 - 1.0) if scale > 1.0 else 0.0
    half = crop_window_half_px(scale, crop_px)
    cx, cy = detection.x_px, detection.y_px
    r0, r1 = int(np.floor(cy - half)), int(np.ceil(cy + half)) + 1
    c0, c1 = int(np.floor(cx - half)), int(np.ceil(cx + half)) + 1
    rows, cols = src.shape
    window = src[max(r0, 0): min(r1, rows), max(c0, 0): min(c1, cols)].astype(np.float32)
    if window.size == 0:
        raise ImageDataError(
            f"the cluster at (x={cx:.1f}, y={cy:.1f}) px lies outside the {rows}×{cols} image"
        )
    # local background: median of the window outside the cluster's disc
    yy, xx = np.mgrid[max(r0, 0): min(r1, rows), max(c0, 0): min(c1, cols)]
    radius_px = 0.6 * detection.diameter_A / image.pixel_size_A + 2
    outside = (yy - cy) ** 2 + (xx - cx) ** 2 > radius_px**2
    background = float(np.median(window[outside])) if outside.any() else float(np.median(window))
    drawn = annotation_mask(window)
    if drawn is not None:  # a scale bar or its text in the field: not shown to the network
        window[ndi.binary_dilation(drawn, iterations=FILL_BAND_PX)] = background
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

