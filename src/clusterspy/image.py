"""A calibrated image: the array and its pixel size in Å/px travel together.

This module is the one place where pixel size and image data are checked
(:func:`check_pixel_size`, :func:`check_shape`, :func:`check_image_data`), where length
units become Å (:func:`units_to_angstrom`) and where the user's and the file's pixel size
are reconciled (:func:`resolve_pixel_size`).

Array convention (the same everywhere in ClusterSpy, simulation and real data):
``data[row, col]`` with ``row`` = y increasing downwards and ``col`` = x increasing
to the right; the origin (0, 0) is the *centre* of the top-left pixel; a position
``(x_A, y_A)`` in Å maps to ``(col, row) = (x_A / pixel_size_A, y_A / pixel_size_A)``.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
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


#: Shortest run [px] of one exact value along the frame edge that may start a constant fill.
FILL_MIN_RUN_PX = 16


#: Largest share of exactly constant pixels inside the data's rectangle of an image pasted into a
#: larger canvas (:func:`pasted_rectangle`).
PASTED_MAX_CONSTANT_SHARE = 0.02
#: Least share of the canvas such a pasted image covers (a square particle of a noise-free simulation,
#: exactly a rectangle of data, is smaller).
PASTED_MIN_SHARE = 0.1


def pasted_rectangle(constant: np.ndarray) -> bool:
    """Whether the pixels that are not ``constant`` fill an upright rectangle, the rest being the
    constant: an image pasted into a larger canvas (a slide, a figure), whose fill may cover more of the
    frame than any rotation's and is still a fill, not a background. A noise-free simulation's
    exact-zero vacuum lies inside the rectangle of its data too (≥ 20 % of a round cluster's box), and a
    pasted image that holds much of the constant itself is not taken for one
    (:data:`PASTED_MAX_CONSTANT_SHARE`)."""
    rows = np.flatnonzero(~constant.all(axis=1))
    cols = np.flatnonzero(~constant.all(axis=0))
    if rows.size < 8 or cols.size < 8:
        return False
    inner = constant[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return bool(inner.size >= PASTED_MIN_SHARE * constant.size and inner.mean() <= PASTED_MAX_CONSTANT_SHARE)


def edge_fill_values(data: np.ndarray, min_run_px: int = FILL_MIN_RUN_PX) -> list[float]:
    """Values that repeat exactly over ≥ ``min_run_px`` consecutive pixels along a frame edge.

    Such runs are no measured data but a constant fill: the corners that rotating an image
    (``scipy.ndimage.rotate``, ImageJ) fills with 0 or the mean, or padding. Four edge scans,
    so a frame without a fill costs next to nothing.
    """
    values: set[float] = set()
    for side in (data[0], data[-1], data[:, 0], data[:, -1]):
        side = np.asarray(side)
        starts = np.flatnonzero(np.concatenate(([True], side[1:] != side[:-1], [True])))
        runs = np.diff(starts)
        values.update(float(side[i]) for i in starts[:-1][runs >= min_run_px])
    return sorted(values)


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


#: Largest number of pixels of one frame that is accepted (checked before allocating).
MAX_PIXELS: int = 16384 * 16384

#: Length units → Å.
_UNIT_TO_A: dict[str, float] = {
    "m": 1e10,
    "mm": 1e7,
    "µm": 1e4,  # micro sign
    "μm": 1e4,  # Greek mu
    "um": 1e4,
    "micron": 1e4,
    "microns": 1e4,
    "nm": 10.0,
    "nanometer": 10.0,
    "nanometers": 10.0,
    "å": 1.0,
    "Å": 1.0,  # angstrom sign
    "a": 1.0,
    "ang": 1.0,
    "angstrom": 1.0,
    "angstroms": 1.0,
    "pm": 0.01,
}


def units_to_angstrom(scale: float, units: str | None) -> float | None:
    """Convert a pixel size ``scale`` in ``units`` to Å/px.

    Parameters
    ----------
    scale : float
        Pixel size in ``units`` per pixel.
    units : str or None
        Length unit (``"m"``, ``"mm"``, ``"µm"``, ``"nm"``, ``"Å"``, ``"pm"``, ...).

    Returns
    -------
    float or None
        Pixel size [Å/px], or None when the units are missing or not a length
        (uncalibrated axis).

    Raises
    ------
    CalibrationError
        If the units are reciprocal lengths (a diffraction pattern, not an image).
    """
    if units is None:
        return None
    u = str(units).strip()
    if u in ("", "<undefined>", "px", "pixel", "pixels", "Undefined", "t.u."):
        return None
    key = u if u in _UNIT_TO_A else u.lower()
    if key not in _UNIT_TO_A:
        if u.startswith("1/") or u.endswith("^-1") or "rad" in u.lower():
            raise CalibrationError(
                f"the image axes are in {u!r} (reciprocal space): this looks like a diffraction "
                "pattern, not a real-space image"
            )
        return None
    try:
        value = float(scale) * _UNIT_TO_A[key]
    except (TypeError, ValueError):
        return None
    if not np.isfinite(value) or value <= 0:
        return None
    return value


#: Most distinct colours, over the most distinct values of one channel, of 3 or 4 pages of 8-bit data
#: that are the colour channels of one image (:func:`check_not_colour_channels`): a colour map's
#: channels are functions of one value, so they take about as many colours as one channel takes
#: values; frames of a series are independent (their noise), so they take about the product.
#: (``hot``, whose channels rise one after the other, reaches 3 at most; three frames of Poisson counts
#: of mean 0.01 take 3.7 times as many, of mean 0.05 6.3 times.)
COLOUR_CHANNELS_MAX_RATIO = 3.2
#: Fewest colours of such pages (sparse counts take few values alone and together).
COLOUR_CHANNELS_MIN_COLOURS = 24


def check_not_colour_channels(frames: np.ndarray, source: str = "the data") -> None:
    """Refuse 3 or 4 pages of 8-bit data that are the colour channels of one image stored channel
    first (an ImageJ "RGB stack", a ``(3, rows, cols)`` array, a TIFF of one page per channel),
    which a series reader would take for 3 or 4 frames: each channel of a false-colour export is
    not the image, and a newcomer's (stop 39) got confident wrong labels from them.

    Parameters
    ----------
    frames : numpy.ndarray
        The first 3 frames ``(3, rows, cols)`` (of 3 or 4).
    source : str
        What the data are, for the message.

    Raises
    ------
    ImageDataError
        When the pages are 8-bit and take at most :data:`COLOUR_CHANNELS_MAX_RATIO` times as many
        colours (value triples) as their richest channel takes values, and at least
        :data:`COLOUR_CHANNELS_MIN_COLOURS` colours. (Jet's channels take 94–115 values each and 247
        colours together; three frames of Poisson counts of mean 2 take 13 values each and 689 together.)
    """
    a = np.asarray(frames)
    if a.ndim != 3 or a.shape[0] != 3 or a.size == 0:
        return
    if not (np.issubdtype(a.dtype, np.integer) and int(a.min()) >= 0 and int(a.max()) <= 255):
        return
    step = max(1, a[0].size // 262144)  # ≤ 2.6·10⁵ pixels
    ch = a.reshape(3, -1)[:, ::step].astype(np.int64)
    singles = max(len(np.unique(c)) for c in ch)
    colours = len(np.unique((ch[0] << 16) | (ch[1] << 8) | ch[2]))
    if COLOUR_CHANNELS_MIN_COLOURS <= colours <= COLOUR_CHANNELS_MAX_RATIO * singles:
        raise ImageDataError(
            f"{source} holds 3 pages of 8-bit data that are the colour channels of one image ({colours} "
            f"colours, as a colour map gives), not frames of a series; save the data as a single-channel "
            "greyscale image (the microscope's own file is best)"
        )


def check_shape(shape: Sequence[int], *, series: bool = False, source: str = "the data") -> None:
    """Check the shape of an image (2-D) or series (3-D) before any data are loaded.

    Parameters
    ----------
    shape : sequence of int
        The array's shape ``(rows, cols)`` or ``(frames, rows, cols)`` [px].
    series : bool
        Whether a 3-D stack of frames is accepted.
    source : str
        What the data are, for the message.

    Raises
    ------
    ImageDataError
        If the number of dimensions is wrong, a dimension is empty or tiny, or a frame has
        more than :data:`MAX_PIXELS` pixels.
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    if ndim == 3 and shape[-1] in (3, 4) and shape[0] > 4:
        raise ImageDataError(
            f"{source} is a colour (RGB/RGBA) image of shape {shape}; "
            "save it as a single-channel greyscale image"
        )
    wanted = (2, 3) if series else (2,)
    if ndim not in wanted:
        what = "a 2-D image or a 3-D stack of frames" if series else "a 2-D image"
        hint = "; use read_series for a stack of frames" if ndim == 3 and not series else ""
        raise ImageDataError(f"{source} has shape {shape}, expected {what}{hint}")
    rows, cols = shape[-2:]
    if min(shape) == 0:
        raise ImageDataError(f"{source} is empty (shape {shape})")
    if rows < 8 or cols < 8:
        raise ImageDataError(f"{source} is too small ({rows}×{cols} px); need at least 8×8 px")
    if rows * cols > MAX_PIXELS:
        raise ImageDataError(
            f"{source} is too large ({rows}×{cols} px > {MAX_PIXELS} px per frame); "
            "crop or bin it first"
        )


#: Least difference, between the phases of a period of 2–4 rows (and of columns), of the share of
#: adjacent rows (columns) that are identical, for :func:`enlargement_by_repetition` (a viewer's ×2 by
#: nearest neighbour gives 1.0, ×1.5 0.5; raw data, 8-bit and JPEG exports, pads ≤ 0.11).
REPEATED_PHASE_MIN = 0.4


def _repeated_share_by_phase(a: np.ndarray, axis: int) -> tuple[int, np.ndarray] | None:
    """The period (2–4) whose phases differ most in the share of identical adjacent rows (``axis=0``)
    or columns, and those shares; None without varying rows."""
    live = (np.ptp(a, axis=1 - axis) > 0)[:-1]
    same = np.all(np.diff(a, axis=axis) == 0, axis=1 - axis).astype(float)
    same[~live] = np.nan
    best: tuple[int, np.ndarray] | None = None
    for period in (2, 3, 4):
        n = len(same) // period * period
        if n < 8 * period:
            continue
        share = np.nanmean(same[:n].reshape(-1, period), axis=0)
        if np.all(np.isfinite(share)) and (best is None or np.ptp(share) > np.ptp(best[1])):
            best = (period, share)
    return best


def enlargement_by_repetition(data: np.ndarray, side_px: int = 512) -> float | None:
    """The factor by which the image was enlarged by repeating pixels (a viewer's or an export's
    nearest-neighbour zoom: ×2 repeats every row and column once, ×1.5 every other one), or None.

    Looked for in the central ``side_px`` × ``side_px`` px: in both directions, identical adjacent
    rows (columns) must come at fixed phases of a period of 2–4 (:data:`REPEATED_PHASE_MIN`); the
    factor is the period over the phases without a repeat. Enlargement by interpolation is not found.
    """
    a = np.asarray(data)
    r0, c0 = max(0, (a.shape[0] - side_px) // 2), max(0, (a.shape[1] - side_px) // 2)
    a = a[r0:r0 + side_px, c0:c0 + side_px]
    factors = []
    for axis in (0, 1):
        found = _repeated_share_by_phase(a, axis)
        if found is None or np.ptp(found[1]) < REPEATED_PHASE_MIN:
            return None
        period, share = found
        repeated = int(np.count_nonzero(share > 0.5))
        if not 0 < repeated < period:
            return None
        factors.append(period / (period - repeated))
    return factors[0] if factors[0] == factors[1] else None


#: Largest share of a frame that non-finite pixels along its edge may cover and be filled
#: (:func:`check_image_data`).
NON_FINITE_BORDER_MAX_SHARE = 0.5


def _fill_non_finite_border(arr: np.ndarray, source: str) -> np.ndarray:
    """``arr`` with its NaN / ±inf pixels set to the median of the others, when they all lie in regions
    that reach the frame's edge (the border a drift correction or registration leaves): a constant
    fill connected to the edge, which the detector treats as no data and as an edge
    (:func:`clusterspy.detection.fill_mask`). NaN inside the image is refused."""
    from scipy import ndimage as ndi

    bad = ~np.isfinite(arr)
    n_bad = int(np.count_nonzero(bad))
    labels, _ = ndi.label(bad)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    inside = n_bad - int(np.count_nonzero(np.isin(labels, edge[edge > 0])))
    if inside or n_bad > NON_FINITE_BORDER_MAX_SHARE * arr.size:
        where = (f"{inside} of them inside the image, away from its edge" if inside
                 else f"{n_bad / arr.size:.0%} of the image")
        raise ImageDataError(f"{source} contains {n_bad} NaN or infinite pixel(s) ({where}); replace them by "
                             "values of the data (e.g. its median) or crop them away")
    out = arr.astype(np.float32, copy=True)
    out[bad] = np.median(out[~bad])
    return out


def check_image_data(data: Any, *, source: str = "the data") -> np.ndarray:
    """Return ``data`` as a float32 2-D array after checking it is a usable image.

    NaN or infinite pixels in regions that reach the frame's edge (up to
    :data:`NON_FINITE_BORDER_MAX_SHARE` of it: the border of a drift-corrected or registered
    frame) are set to the median of the others — a fill, no data and an edge to the detector.

    Raises
    ------
    ImageDataError
        If ``data`` is not numeric, not 2-D, too large, contains NaN/Inf inside the image (or
        over more than that share of it) or is constant.
    """
    shape = np.shape(data)
    check_shape(shape, source=source)
    arr = np.asarray(data)
    if arr.dtype.kind == "c":
        raise ImageDataError(f"{source} is complex-valued; give the intensity (abs²) instead")
    if arr.dtype.kind not in "biuf":
        raise ImageDataError(f"{source} is not numeric (dtype {arr.dtype})")
    lo, hi = float(arr.min()), float(arr.max())  # NaN or ±inf anywhere shows in one of them
    if not (np.isfinite(lo) and np.isfinite(hi)):
        arr = _fill_non_finite_border(arr, source)
        lo, hi = float(arr.min()), float(arr.max())
    if hi == lo:
        raise ImageDataError(f"{source} is constant (every pixel = {lo}): no contrast")
    return arr.astype(np.float32, copy=False)


class NonSquarePixels(Exception):
    """A file's X and Y pixel sizes [Å/px] differ (refused unless the user gives one)."""

    def __init__(self, x_A: float, y_A: float) -> None:
        super().__init__(f"X {x_A:.4g} Å/px, Y {y_A:.4g} Å/px")
        self.x_A, self.y_A = float(x_A), float(y_A)


def check_square(x_A: float, y_A: float) -> None:
    """Raise :class:`NonSquarePixels` when the X and Y pixel sizes [Å/px] differ by > 0.1 %."""
    if not np.isclose(x_A, y_A, rtol=1e-3):
        raise NonSquarePixels(x_A, y_A)


def resolve_pixel_size(
    name: str, file_pixel_A: float | None, user_pixel_A: float | None,
    metadata: MutableMapping[str, Any],
) -> float:
    """Decide the pixel size [Å/px] of an image from the user's and the file's.

    The user's value wins; ``metadata`` is updated with ``pixel_size_source`` (``"user"`` or
    ``"file"``) and ``file_pixel_size_A`` (the file's own value, None when it has none).

    Parameters
    ----------
    name : str
        The file's (or signal's) name, for messages.
    file_pixel_A : float or None
        The pixel size the file records [Å/px].
    user_pixel_A : float or None
        The pixel size the user gave [Å/px].
    metadata : mutable mapping
        The image's metadata; ``metadata["non_square_pixel_A"]`` (``{"x", "y"}`` in Å/px), when
        present, says the file's pixels are not square.

    Raises
    ------
    CalibrationError
        No user value and the file has none (or non-square pixels), or an implausible value.
    """
    if user_pixel_A is not None:
        value = check_pixel_size(user_pixel_A)
        metadata["pixel_size_source"] = "user"
        metadata["file_pixel_size_A"] = file_pixel_A
        return value
    ns = metadata.get("non_square_pixel_A")
    if file_pixel_A is None and ns:
        raise CalibrationError(
            f"{name} has non-square pixels (X {ns['x']:.4g} Å/px, Y {ns['y']:.4g} Å/px); "
            "ClusterSpy needs square pixels: resample the image to square pixels, or give the "
            "pixel size with pixel_size_A= (Å/px) or --pixel-size to override the calibration"
        )
    if file_pixel_A is None:
        raise CalibrationError(
            f"{name} has no pixel-size calibration; give it with "
            "pixel_size_A= (Å/px) or --pixel-size"
        )
    metadata["pixel_size_source"] = "file"
    metadata["file_pixel_size_A"] = file_pixel_A
    return check_pixel_size(file_pixel_A)


#: Relative difference above which a user's pixel size is said to replace the file's own calibration.
OVERRIDE_TOLERANCE = 0.01


def overridden_calibration_A(metadata: Mapping[str, Any], pixel_size_A: float) -> float | None:
    """The file's own pixel size [Å/px] when the user's ``pixel_size_A`` [Å/px] replaced it and differs
    from it by more than :data:`OVERRIDE_TOLERANCE` (metadata of :func:`resolve_pixel_size`), else None."""
    own = metadata.get("file_pixel_size_A")
    if metadata.get("pixel_size_source") != "user" or not own:
        return None
    own = float(own)
    if not np.isfinite(own) or own <= 0 or abs(own / float(pixel_size_A) - 1) <= OVERRIDE_TOLERANCE:
        return None
    return own
