"""Read microscope images and series with their pixel size [Å/px]; write results atomically.

One face for many formats (RosettaSciIO underneath where it reads the format):

============================  ===========================================================
extension                     what is read
============================  ===========================================================
``.dm3``, ``.dm4``            Gatan DigitalMicrograph (calibration from the axes)
``.emd``                      Velox EMD (HAADF signal picked; multi-frame stacks) and
                              Berkeley / NCEM EMD
``.tif``, ``.tiff``           ImageJ, FEI/TIA, Velox, Zeiss ... pixel-size tags
``.hspy``, ``.zspy``          HyperSpy files
``.png``, ``.jpg``, ``.jpeg``  8/16-bit images; the pixel size must come from the user
``.npy``                      a 2-D (image) or 3-D (series) array; pixel size from the user
``.npz``                      keys ``image`` / ``frames`` / ``data`` and ``pixel_size_A``
                              (optionally ``frame_time_s``)
============================  ===========================================================

Whatever the units in the file (m, mm, µm, nm, Å, pm), the pixel size is returned in Å/px.
A pixel size given by the user overrides the file's; ``metadata["pixel_size_source"]`` says
which one was used (``"file"`` or ``"user"``) and ``metadata["file_pixel_size_A"]`` keeps
the file's value.

Pixels must be square: a file whose X and Y pixel sizes differ is refused with a
:class:`~clusterspy.errors.CalibrationError` unless the user gives the pixel size.

Big files are read lazily (Dask / memory map): :class:`Series` loads one frame at a time,
and sizes are checked before anything is allocated (:data:`MAX_PIXELS`). A multi-page TIFF
is read page by page (the file is opened for each frame); a truncated one is read up to its
last whole page, with a warning and ``metadata["frames_lost"]``.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.errors import CalibrationError, ImageDataError, InputFileError
from clusterspy.image import Image, check_pixel_size

#: Supported file extensions (lower case) and what they are.
SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".dm3": "Gatan DigitalMicrograph 3",
    ".dm4": "Gatan DigitalMicrograph 4",
    ".emd": "Velox / Berkeley EMD (HDF5)",
    ".tif": "TIFF (ImageJ, FEI/TIA, Velox tags)",
    ".tiff": "TIFF (ImageJ, FEI/TIA, Velox tags)",
    ".hspy": "HyperSpy HDF5",
    ".zspy": "HyperSpy Zarr",
    ".png": "PNG (pixel size from the user)",
    ".jpg": "JPEG (pixel size from the user)",
    ".jpeg": "JPEG (pixel size from the user)",
    ".npy": "NumPy array (pixel size from the user)",
    ".npz": "NumPy archive with 'image' or 'frames' and 'pixel_size_A'",
}

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

_NPZ_IMAGE_KEYS = ("image", "data", "img", "haadf")
_NPZ_SERIES_KEYS = ("frames", "series", "stack", "images")


def _supported_list() -> str:
    return ", ".join(sorted({e for e in SUPPORTED_EXTENSIONS}))


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


# ----------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------


def check_shape(shape: Sequence[int], *, series: bool = False, source: str = "the data") -> None:
    """Check the shape of an image (2-D) or series (3-D) before any data are loaded.

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


def check_image_data(data: Any, *, source: str = "the data") -> np.ndarray:
    """Return ``data`` as a float32 2-D array after checking it is a usable image.

    Raises
    ------
    ImageDataError
        If ``data`` is not numeric, not 2-D, too large, contains NaN/Inf or is constant.
    """
    shape = np.shape(data)
    check_shape(shape, source=source)
    arr = np.asarray(data)
    if arr.dtype.kind == "c":
        raise ImageDataError(f"{source} is complex-valued; give the intensity (abs²) instead")
    if arr.dtype.kind not in "biuf":
        raise ImageDataError(f"{source} is not numeric (dtype {arr.dtype})")
    arr = arr.astype(np.float32, copy=False)
    finite = np.isfinite(arr)
    if not finite.all():
        bad = int(arr.size - np.count_nonzero(finite))
        raise ImageDataError(f"{source} contains {bad} NaN or infinite pixel(s); fix or mask them")
    if float(arr.max()) == float(arr.min()):
        raise ImageDataError(f"{source} is constant (every pixel = {float(arr.flat[0])}): no contrast")
    return arr


def as_image(
    obj: Any, pixel_size_A: float | None = None, *, metadata: Mapping[str, Any] | None = None
) -> Image:
    """Return a checked :class:`~clusterspy.image.Image` from a path, array, Image or Signal2D.

    Parameters
    ----------
    obj : str, os.PathLike, numpy.ndarray, Image or hyperspy Signal2D
        The image.
    pixel_size_A : float, optional
        Pixel size [Å/px]; required for a bare array, overrides the calibration otherwise.
    metadata : mapping, optional
        Extra metadata for a bare array.

    Raises
    ------
    ClusterSpyError
        A subclass for every problem (missing file, bad data, no pixel size).
    """
    if isinstance(obj, (str, os.PathLike)):
        return read_image(obj, pixel_size_A)
    if isinstance(obj, Image):
        data = check_image_data(obj.data, source="the image")
        if pixel_size_A is None:
            return Image(data, obj.pixel_size_A, dict(obj.metadata))
        md = dict(obj.metadata)
        md.update(pixel_size_source="user", file_pixel_size_A=obj.pixel_size_A)
        return Image(data, check_pixel_size(pixel_size_A), md)
    if hasattr(obj, "axes_manager") and hasattr(obj, "data"):
        return image_from_signal(obj, pixel_size_A=pixel_size_A)
    if isinstance(obj, (np.ndarray, list, tuple)) or hasattr(obj, "__array__"):
        data = check_image_data(obj, source="the array")
        if pixel_size_A is None:
            raise CalibrationError(
                "a bare array has no pixel size; give it with pixel_size_A= (Å/px) or --pixel-size"
            )
        md = dict(metadata or {})
        md.setdefault("pixel_size_source", "user")
        return Image(data, check_pixel_size(pixel_size_A), md)
    raise ImageDataError(
        f"cannot make an image from a {type(obj).__name__}; give a file path, a 2-D NumPy "
        "array with a pixel size, an Image or a HyperSpy Signal2D"
    )


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


# ----------------------------------------------------------------------------------------
# low-level readers: each returns (array-like (lazy where possible), pixel_size_A | None, md)
# ----------------------------------------------------------------------------------------


def _check_path(path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise InputFileError(f"file not found: {p}")
    if p.is_dir():
        raise InputFileError(f"{p} is a directory, not an image file (use read_series for a folder)")
    ext = p.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise InputFileError(
            f"unsupported file format {ext or '(no extension)'!r} for {p.name}; "
            f"supported: {_supported_list()}"
        )
    if p.stat().st_size == 0:
        raise InputFileError(f"{p} is empty (0 bytes)")
    return p


def _fail(p: Path, exc: BaseException) -> InputFileError:
    msg = " ".join(str(exc).split()) or type(exc).__name__
    if len(msg) > 160:
        msg = msg[:157] + "..."
    return InputFileError(
        f"cannot read {p.name} as {SUPPORTED_EXTENSIONS[p.suffix.lower()]}: the file is "
        f"truncated, corrupt or not of this format ({type(exc).__name__}: {msg})"
    )


class _NonSquarePixels(Exception):
    """The file's X and Y pixel sizes [Å/px] differ (refused unless the user gives one)."""

    def __init__(self, x_A: float, y_A: float) -> None:
        super().__init__(f"X {x_A:.4g} Å/px, Y {y_A:.4g} Å/px")
        self.x_A, self.y_A = float(x_A), float(y_A)


def _check_square(x_A: float, y_A: float) -> None:
    if not np.isclose(x_A, y_A, rtol=1e-3):
        raise _NonSquarePixels(x_A, y_A)


def _signal_pixel_size(axes: Sequence[Mapping[str, Any]]) -> tuple[float | None, float | None]:
    """Pixel size [Å/px] from the two signal axes, and the frame time [s] of a time axis.

    Raises ``_NonSquarePixels`` (caught by the reader) when the X and Y sizes differ.
    """
    sig = [a for a in axes if not a.get("navigate", False)]
    nav = [a for a in axes if a.get("navigate", False)]
    sizes = []
    for a in sig[-2:]:
        sizes.append(units_to_angstrom(a.get("scale", 1.0), a.get("units")))
    pixel = None
    if sizes and all(s is not None for s in sizes):
        pixel = float(sizes[-1])  # x axis (columns)
        if len(sizes) == 2:
            _check_square(float(sizes[1]), float(sizes[0]))  # (x, y)
    frame_time = None
    for a in nav:
        units = str(a.get("units", "")).strip()
        factor = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "min": 60.0}.get(units)
        if factor is not None and a.get("scale"):
            frame_time = float(a["scale"]) * factor
    return pixel, frame_time


def _pick_signal(p: Path, signals: list[dict[str, Any]]) -> dict[str, Any]:
    """Pick the image signal among several (Velox: HAADF first)."""

    def n_sig(s: dict[str, Any]) -> int:
        return sum(1 for a in s.get("axes", []) if not a.get("navigate", False))

    images = [s for s in signals if n_sig(s) == 2 and np.ndim(s["data"]) in (2, 3)]
    if not images:
        kinds = sorted({f"{np.ndim(s['data'])}-D" for s in signals}) or ["none"]
        raise ImageDataError(
            f"{p.name} contains no 2-D image signal (found: {', '.join(kinds)} data); "
            "give a file with a HAADF/BF image"
        )

    def title(s: dict[str, Any]) -> str:
        return str(s.get("metadata", {}).get("General", {}).get("title", ""))

    for key in ("HAADF", "ADF", "DF", "BF"):
        for s in images:
            if key in title(s).upper():
                return s
    return images[0]


def _read_rsciio(p: Path, lazy: bool) -> tuple[Any, float | None, dict[str, Any]]:
    ext = p.suffix.lower()
    try:
        if ext in (".dm3", ".dm4"):
            from rsciio.digitalmicrograph import file_reader
        elif ext == ".emd":
            from rsciio.emd import file_reader
        elif ext in (".tif", ".tiff"):
            from rsciio.tiff import file_reader
        elif ext == ".hspy":
            from rsciio.hspy import file_reader
        elif ext == ".zspy":
            from rsciio.zspy import file_reader
        else:  # pragma: no cover - guarded by caller
            raise AssertionError(ext)
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise InputFileError(
            f"reading {ext} files needs RosettaSciIO with its HDF5/Zarr extras ({exc}); "
            "install it with: pip install 'rosettasciio[hdf5,tiff,zspy]'"
        ) from None
    tiff_frames: _TiffFrames | None = None
    try:
        if ext in (".tif", ".tiff"):
            # a multi-page TIFF is served page by page (a truncated one up to its last whole
            # page); anything else is read eagerly (rsciio keeps a lazy TIFF open for ever)
            tiff_frames = _tiff_frames(p)
            if tiff_frames is None:
                _check_tiff_size(p)
            signals = _tiff_signals(p, file_reader, pixels=tiff_frames is None)
        else:
            signals = file_reader(str(p), lazy=lazy)
    except (ImageDataError, CalibrationError, InputFileError):
        raise
    except Exception as exc:
        raise _fail(p, exc) from None
    if not signals:
        raise ImageDataError(f"{p.name} contains no signal")
    sig = _pick_signal(p, list(signals))
    if tiff_frames is not None and sig is not signals[0]:
        # the image picked is not the TIFF's first series (whose pages tiff_frames serves)
        tiff_frames = None
        try:
            signals = _tiff_signals(p, file_reader, pixels=True)
        except Exception as exc:
            raise _fail(p, exc) from None
        sig = _pick_signal(p, list(signals))
    md_general = dict(sig.get("metadata", {}).get("General", {}))
    md: dict[str, Any] = {
        "source": str(p),
        "format": ext.lstrip("."),
        "title": md_general.get("title", ""),
        "signal_count": len(signals),
    }
    frame_time = None
    try:
        pixel, frame_time = _signal_pixel_size(sig.get("axes", []))
        if pixel is None and ext in (".tif", ".tiff"):
            pixel = _tiff_imagej_pixel(p)
    except _NonSquarePixels as ns:  # refused in _resolve_pixel unless the user gives one
        pixel = None
        md["non_square_pixel_A"] = {"x": ns.x_A, "y": ns.y_A}
    if frame_time is not None:
        md["frame_time_s"] = frame_time
    data = sig["data"]
    if tiff_frames is not None:
        data = tiff_frames
        if tiff_frames.lost:
            md["frames_lost"] = tiff_frames.lost
            md["frames_expected"] = tiff_frames.expected
    # squeeze singleton navigation dimensions (e.g. a one-frame Velox stack)
    while np.ndim(data) > 2 and data.shape[0] == 1:
        data = data[0]
    return data, pixel, md


def _check_tiff_size(p: Path) -> None:
    """Check the shape of a TIFF's first series before reading its pixels."""
    import tifffile

    try:
        with tifffile.TiffFile(p) as tif:
            shape = tif.series[0].shape
    except Exception as exc:
        raise _fail(p, exc) from None
    check_shape(tuple(s for s in shape if s != 1) or shape, series=True, source=p.name)


def _tiff_imagej_pixel(p: Path) -> float | None:
    """Pixel size [Å/px] from ImageJ's ``unit`` and the TIFF X/YResolution tags (px per unit).

    Raises ``_NonSquarePixels`` when the X and Y resolutions differ.
    """
    import tifffile

    try:
        with tifffile.TiffFile(p) as tif:
            unit = (tif.imagej_metadata or {}).get("unit")
            tags = tif.pages[0].tags
            tag = tags.get("XResolution")
            ytag = tags.get("YResolution")
            if unit is None or tag is None:
                return None
            num, den = tag.value
            ynum, yden = ytag.value if ytag is not None else (num, den)
    except Exception:
        return None
    if not num:
        return None
    unit = {"micron": "µm", "\\u00B5m": "µm"}.get(str(unit), str(unit))
    x_A = units_to_angstrom(den / num, unit)
    y_A = units_to_angstrom(yden / ynum, unit) if ynum else None
    if x_A is not None and y_A is not None:
        _check_square(x_A, y_A)
    return x_A


class _TiffFrames:
    """The frames of a multi-page TIFF, read one page at a time (the file is opened per read).

    Either the frames lie back to back from ``dataoffset`` (uncompressed, contiguous: read
    straight from the file, also past lost IFDs of a truncated file), or each frame is the page
    whose IFD starts at ``offsets[k]`` (decoded by tifffile).
    """

    ndim = 3

    def __init__(self, path: Path, frame_shape: tuple[int, int], dtype: np.dtype, *,
                 n: int, expected: int, dataoffset: int | None = None,
                 offsets: Sequence[int] | None = None) -> None:
        self.path = path
        self.frame_shape = tuple(int(s) for s in frame_shape)
        self.dtype = np.dtype(dtype)
        self._n = int(n)
        self.expected = int(expected)
        self.lost = max(self.expected - self._n, 0)
        self._dataoffset = dataoffset
        self._offsets = list(offsets) if offsets is not None else None

    def __len__(self) -> int:
        return self._n

    @property
    def shape(self) -> tuple[int, ...]:
        return (self._n, *self.frame_shape)

    def __getitem__(self, index: int) -> np.ndarray:
        if not isinstance(index, (int, np.integer)):
            raise TypeError("TIFF frames are read one at a time: give an integer index")
        k = int(index) + self._n if index < 0 else int(index)
        if not 0 <= k < self._n:
            raise IndexError(f"frame {index} out of range for {self._n} frames")
        try:
            return self._read(k)
        except InputFileError:
            raise
        except Exception as exc:
            raise _fail(self.path, exc) from None

    def _read(self, k: int) -> np.ndarray:
        if self._dataoffset is not None:
            out = np.empty(self.frame_shape, dtype=self.dtype)
            with open(self.path, "rb") as fh:
                fh.seek(self._dataoffset + k * out.nbytes)
                got = fh.readinto(memoryview(out).cast("B"))
            if got != out.nbytes:
                raise InputFileError(
                    f"{self.path.name} ends inside frame {k}: the file was truncated or changed "
                    "while it was read; copy it again"
                )
            return out
        import tifffile

        assert self._offsets is not None
        with tifffile.TiffFile(self.path) as tif:
            tif.filehandle.seek(self._offsets[k])
            page = tifffile.TiffPage(tif, index=k)
            arr = page.asarray()
        if tuple(arr.shape) != self.frame_shape:
            raise ImageDataError(
                f"page {k} of {self.path.name} has shape {arr.shape}, not {self.frame_shape}"
            )
        return arr


def _squeezed(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(s) for s in shape if s != 1)


def _tiff_frames(p: Path) -> _TiffFrames | None:
    """Lazy frames of a multi-page greyscale TIFF stack, or None for anything else.

    The number of frames expected comes from tifffile's series or, when the file is truncated
    and tifffile falls back to one page, from the ImageJ / tifffile metadata in the first page.
    Only whole frames are served; a :class:`UserWarning` says how many were lost.

    Raises
    ------
    InputFileError
        If not one frame is whole.
    ImageDataError
        If the frames are empty, tiny or too large.
    """
    import tifffile

    size = p.stat().st_size
    try:
        with tifffile.TiffFile(p) as tif:
            page0 = tif.pages.first
            shape = tuple(int(s) for s in page0.shape)
            if len(shape) != 2 or page0.dtype is None:
                return None  # RGB, volumes, ...: the whole-file reader explains
            series = tif.series[0]
            sq = _squeezed(series.shape)
            known = series.kind in ("imagej", "shaped")  # the count is from the metadata
            if len(sq) == 3 and sq[1:] == shape:
                expected = sq[0]
            elif sq == _squeezed(shape):
                expected = 1  # one image, or a truncated stack tifffile gave up on
                ij = tif.imagej_metadata if tif.is_imagej else None
                if ij and sum(int(ij.get(k, 1)) > 1 for k in ("channels", "slices", "frames")) <= 1:
                    expected = max(expected, int(ij.get("images", 1) or 1))
                    known = True
                shaped = tif.shaped_metadata if tif.is_shaped else None
                if shaped and shaped[0].get("shape"):
                    ssq = _squeezed(shaped[0]["shape"])
                    if len(ssq) == 3 and ssq[1:] == shape:
                        expected = max(expected, ssq[0])
                        known = True
            else:
                return None  # 4-D and other shapes: the whole-file reader explains
            if expected <= 1:
                return None
            check_shape((expected, *shape), series=True, source=p.name)
            dtype = page0.dtype.newbyteorder(tif.byteorder)
            n_pages = len(tif.pages)
            contiguous = page0.is_final and page0.dataoffsets and (
                series.dataoffset == page0.dataoffsets[0] or n_pages == 1)
            if contiguous:
                dataoffset = int(page0.dataoffsets[0])
                n = min(expected, max(size - dataoffset, 0) // int(page0.nbytes))
                frames = _TiffFrames(p, shape, dtype, n=n, expected=expected,
                                     dataoffset=dataoffset)
            else:
                offsets: list[int] = []
                for k in range(min(expected, n_pages)):
                    page = tif.pages[k]
                    if tuple(page.shape) != shape or page.dtype != page0.dtype:
                        break
                    ends = [int(o) + int(c) for o, c in zip(page.dataoffsets,
                                                            page.databytecounts, strict=False)]
                    if max(ends, default=0) > size:
                        break  # this page's data run past the end of the file
                    offsets.append(int(page.offset))
                frames = _TiffFrames(p, shape, dtype, n=len(offsets), expected=expected,
                                     offsets=offsets)
    except (ImageDataError, CalibrationError):
        raise
    except Exception as exc:
        raise _fail(p, exc) from None
    if frames.lost:
        if len(frames) == 0:
            raise InputFileError(
                f"{p.name} is truncated: not one of its {expected} frames is whole; "
                "copy the file again"
            )
        lost = (f"{frames.lost} of {expected} frames lost" if known else
                f"frame {len(frames) + 1} is incomplete and the file does not say how many "
                f"frames it had (at least {frames.lost} lost)")
        warnings.warn(
            f"{p.name} is truncated: {lost}; reading the first {len(frames)} whole frame(s)",
            UserWarning, stacklevel=5,
        )
    return frames


def _tiff_signals(p: Path, file_reader: Any, *, pixels: bool) -> list[dict[str, Any]]:
    """rsciio's signals of a TIFF, with their pixels or (``pixels=False``) without.

    What ``rsciio.tiff.file_reader`` does, in a ``with`` block: the file is closed even when
    reading fails (rsciio leaves it open then).
    """
    import tifffile

    try:
        from rsciio.tiff._api import _read_tiff
    except ImportError:  # pragma: no cover - another rsciio: its public reader, eagerly
        return list(file_reader(str(p), lazy=False))
    with tifffile.TiffFile(p) as tif:
        # lazy: the pixels stay in the file (the Dask arrays are never computed)
        return [_read_tiff(tif, s, str(p), lazy=not pixels) for s in tif.series]


def _read_pil(p: Path) -> tuple[Any, float | None, dict[str, Any]]:
    try:
        from PIL import Image as PILImage
    except ImportError:  # pragma: no cover
        raise InputFileError("reading PNG/JPEG needs Pillow: pip install pillow") from None
    try:
        with PILImage.open(p) as im:
            w, h = im.size
            n_frames = getattr(im, "n_frames", 1)
            check_shape((h, w), source=p.name)
            if n_frames > 1:
                raise ImageDataError(f"{p.name} is an animated image with {n_frames} frames")
            mode = im.mode
            if mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LA"):
                rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
                spread = float(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).max())
                if spread > 8.0:
                    raise ImageDataError(
                        f"{p.name} is a colour image (mode {mode}); "
                        "save it as a single-channel greyscale image"
                    )
                data = rgb.mean(axis=2)
            else:
                data = np.asarray(im)
    except (ImageDataError, CalibrationError):
        raise
    except Exception as exc:
        raise _fail(p, exc) from None
    return data, None, {"source": str(p), "format": p.suffix.lower().lstrip(".")}


def _npy_shape(p: Path) -> tuple[tuple[int, ...], np.dtype]:
    try:
        with open(p, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    except Exception as exc:
        raise _fail(p, exc) from None
    return tuple(shape), np.dtype(dtype)


def _read_npy(p: Path) -> tuple[Any, float | None, dict[str, Any]]:
    shape, dtype = _npy_shape(p)
    if dtype.hasobject:
        raise ImageDataError(f"{p.name} holds Python objects, not a numeric image")
    check_shape(shape, series=True, source=p.name)
    try:
        data = np.load(p, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise _fail(p, exc) from None
    return data, None, {"source": str(p), "format": "npy"}


def _read_npz(p: Path) -> tuple[Any, float | None, dict[str, Any]]:
    import zipfile

    try:
        with zipfile.ZipFile(p) as zf:
            keys = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
    except Exception as exc:
        raise _fail(p, exc) from None
    key = next((k for k in (*_NPZ_SERIES_KEYS, *_NPZ_IMAGE_KEYS) if k in keys), None)
    if key is None:
        arrays = [k for k in keys if k not in ("pixel_size_A", "frame_time_s")]
        if len(arrays) != 1:
            raise ImageDataError(
                f"{p.name} has keys {keys}; expected an 'image' or 'frames' array "
                "(and 'pixel_size_A')"
            )
        key = arrays[0]
    # check the array's shape from its header before loading it
    try:
        with zipfile.ZipFile(p) as zf, zf.open(key + ".npy") as fh:
            version = np.lib.format.read_magic(fh)
            reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, _, _ = reader(fh)
    except Exception as exc:
        raise _fail(p, exc) from None
    check_shape(shape, series=True, source=f"{p.name}[{key!r}]")
    md: dict[str, Any] = {"source": str(p), "format": "npz", "key": key}
    try:
        with np.load(p, allow_pickle=False) as z:
            data = z[key]
            pixel = float(z["pixel_size_A"]) if "pixel_size_A" in keys else None
            if "frame_time_s" in keys:
                md["frame_time_s"] = float(z["frame_time_s"])
    except Exception as exc:
        raise _fail(p, exc) from None
    return data, pixel, md


def _read_any(path: str | os.PathLike, lazy: bool = True) -> tuple[Any, float | None, dict]:
    p = _check_path(path)
    ext = p.suffix.lower()
    if ext in (".png", ".jpg", ".jpeg"):
        data, pixel, md = _read_pil(p)
    elif ext == ".npy":
        data, pixel, md = _read_npy(p)
    elif ext == ".npz":
        data, pixel, md = _read_npz(p)
    else:
        data, pixel, md = _read_rsciio(p, lazy=lazy)
    return data, pixel, md


def _resolve_pixel(
    p: Path | str, file_pixel: float | None, user_pixel: float | None, md: dict[str, Any]
) -> float:
    if user_pixel is not None:
        value = check_pixel_size(user_pixel)
        md["pixel_size_source"] = "user"
        md["file_pixel_size_A"] = file_pixel
        return value
    ns = md.get("non_square_pixel_A")
    if file_pixel is None and ns:
        raise CalibrationError(
            f"{Path(p).name} has non-square pixels (X {ns['x']:.4g} Å/px, Y {ns['y']:.4g} Å/px); "
            "ClusterSpy needs square pixels: resample the image to square pixels, or give the "
            "pixel size with pixel_size_A= (Å/px) or --pixel-size to override the calibration"
        )
    if file_pixel is None:
        raise CalibrationError(
            f"{Path(p).name} has no pixel-size calibration; give it with "
            "pixel_size_A= (Å/px) or --pixel-size"
        )
    md["pixel_size_source"] = "file"
    md["file_pixel_size_A"] = file_pixel
    return check_pixel_size(file_pixel)


# ----------------------------------------------------------------------------------------
# public readers
# ----------------------------------------------------------------------------------------


def read_image(path: str | os.PathLike, pixel_size_A: float | None = None) -> Image:
    """Read one 2-D image with its pixel size.

    Parameters
    ----------
    path : str or os.PathLike
        Image file; see :data:`SUPPORTED_EXTENSIONS`.
    pixel_size_A : float, optional
        Pixel size [Å/px]; overrides the file's calibration (recorded in
        ``metadata["pixel_size_source"] = "user"``). Required for PNG/JPEG/NPY.

    Returns
    -------
    Image
        ``float32`` data with ``pixel_size_A`` [Å/px] and metadata (``source``, ``format``,
        ``pixel_size_source``, ``file_pixel_size_A``, ...).

    Raises
    ------
    InputFileError
        Missing, empty, truncated or unsupported file (the message lists the formats).
    ImageDataError
        Not a single 2-D image (a stack: use :func:`read_series`), RGB, NaN/Inf, constant,
        too large.
    CalibrationError
        No pixel size in the file and none given, or an implausible one.
    """
    data, file_pixel, md = _read_any(path, lazy=True)
    name = Path(path).name
    if np.ndim(data) == 3:
        raise ImageDataError(
            f"{name} is a stack of {data.shape[0]} frames; use read_series (or "
            "`clusterspy series`) to read it frame by frame"
        )
    check_shape(np.shape(data), source=name)
    pixel = _resolve_pixel(path, file_pixel, pixel_size_A, md)
    arr = check_image_data(_compute(data), source=name)
    return Image(arr, pixel, md)


def _compute(data: Any) -> np.ndarray:
    if hasattr(data, "compute"):
        data = data.compute()
    return np.asarray(data)


class Series:
    """A lazy sequence of calibrated frames (one :class:`Image` per frame, loaded on access).

    Parameters
    ----------
    frames : array-like or list of paths
        A 3-D array-like ``(frame, row, col)`` (NumPy, memory map or Dask) or a list of
        image files (one frame each).
    pixel_size_A : float
        Pixel size [Å/px] of every frame (for a folder: that of the first file, unless given).
    frame_time_s : float, optional
        Time between frames [s], when known.
    metadata : dict
        Metadata shared by all frames.
    """

    def __init__(
        self,
        frames: Any,
        pixel_size_A: float,
        frame_time_s: float | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        user_pixel_size_A: float | None = None,
    ) -> None:
        self._frames = frames
        self.pixel_size_A = check_pixel_size(pixel_size_A)
        self.frame_time_s = frame_time_s
        self.metadata = dict(metadata or {})
        self._user_pixel = user_pixel_size_A

    def __len__(self) -> int:
        return len(self._frames)

    def __iter__(self) -> Iterator[Image]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, index: int) -> Image:
        n = len(self)
        if not isinstance(index, (int, np.integer)):
            raise TypeError("Series indices must be integers")
        i = int(index) + n if index < 0 else int(index)
        if not 0 <= i < n:
            raise IndexError(f"frame {index} out of range for a series of {n} frames")
        item = self._frames[i]
        md = dict(self.metadata)
        md["frame"] = i
        if self.frame_time_s is not None:
            md["time_s"] = i * self.frame_time_s
        if isinstance(item, Path):
            img = read_image(item, self._user_pixel)
            md.update(img.metadata)
            md["frame"] = i
            return Image(img.data, img.pixel_size_A, md)
        arr = check_image_data(_compute(item), source=f"frame {i} of {md.get('source', 'the series')}")
        return Image(arr, self.pixel_size_A, md)

    @property
    def shape(self) -> tuple[int, ...]:
        """``(frames, rows, cols)`` [px] (rows/cols of the first frame for a folder)."""
        if isinstance(self._frames, list):
            return (len(self), *self[0].shape)
        return tuple(int(s) for s in self._frames.shape)

    def __repr__(self) -> str:
        return (f"Series({len(self)} frames, {self.pixel_size_A:.4g} Å/px, "
                f"frame_time_s={self.frame_time_s}, source={self.metadata.get('source')!r})")


def read_series(path: str | os.PathLike, pixel_size_A: float | None = None) -> Series:
    """Read a series of frames lazily: a stack file, a single image, or a folder of images.

    Parameters
    ----------
    path : str or os.PathLike
        A multi-frame file (Velox .emd, .tif stack, .hspy, .npy ``(N, rows, cols)``, .npz
        with ``frames``), a single image (a series of one), or a folder whose supported
        image files (sorted by name) are the frames.
    pixel_size_A : float, optional
        Pixel size [Å/px]; overrides the file's calibration.

    Returns
    -------
    Series
        Lazy frames: ``len(series)``, ``series[i]`` and iteration give :class:`Image`;
        ``series.frame_time_s`` [s] when the file records it.

    Raises
    ------
    ClusterSpyError
        A subclass for every problem (see :func:`read_image`).
    """
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.iterdir()
                       if f.is_file() and f.suffix.lower() in SUPPORTED_EXTENSIONS)
        if not files:
            raise InputFileError(
                f"folder {p} contains no image files; supported: {_supported_list()}"
            )
        first = read_image(files[0], pixel_size_A)
        md = {"source": str(p), "format": "folder", "files": [str(f) for f in files],
              "pixel_size_source": first.metadata.get("pixel_size_source")}
        return Series(files, first.pixel_size_A, None, md, user_pixel_size_A=pixel_size_A)
    data, file_pixel, md = _read_any(p, lazy=True)
    check_shape(np.shape(data), series=True, source=p.name)
    pixel = _resolve_pixel(p, file_pixel, pixel_size_A, md)
    if np.ndim(data) == 2:
        data = data[None]
    frame_time = md.pop("frame_time_s", None)
    return Series(data, pixel, frame_time, md)


# ----------------------------------------------------------------------------------------
# writers (atomic: temp file in the same folder, then rename)
# ----------------------------------------------------------------------------------------


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file in the same folder and a rename.

    A reader never sees a half-written file, and an interrupted write leaves the old file (or
    none) in place. The folder must exist. Returns the path.
    """
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise InputFileError(f"cannot write {target}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_json(obj: Any, path: str | os.PathLike, *, indent: int = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (nothing half-written on failure).

    NumPy scalars/arrays and objects with ``to_dict()`` are converted. Returns the path.
    """
    text = json.dumps(obj, indent=indent, default=_jsonable, ensure_ascii=False, allow_nan=False)
    return write_text_atomic(path, text + "\n")


def write_csv(
    rows: Sequence[Mapping[str, Any]], path: str | os.PathLike,
    *, fieldnames: Sequence[str] | None = None,
) -> Path:
    """Write ``rows`` (one mapping each) as CSV with a header, atomically. Returns the path.

    Nested mappings (e.g. ``probabilities``) are flattened to ``key_subkey`` columns.
    """
    flat = []
    for row in rows:
        out: dict[str, Any] = {}
        for k, v in (row.to_dict() if hasattr(row, "to_dict") else row).items():
            if isinstance(v, Mapping):
                for k2, v2 in v.items():
                    out[f"{k}_{k2}"] = _jsonable(v2) if isinstance(v2, np.generic) else v2
            else:
                out[k] = _jsonable(v) if isinstance(v, (np.generic, Path)) else v
        flat.append(out)
    if fieldnames is None:
        fieldnames = []
        for row in flat:
            fieldnames += [k for k in row if k not in fieldnames]
    import io as _io

    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return write_text_atomic(path, buf.getvalue())
