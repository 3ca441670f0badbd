"""TIFF files: multi-page stacks read page by page (lazily), truncated ones up to their last whole page.

The pixel size comes from RosettaSciIO's reading of the tags (FEI/TIA, Velox, Zeiss ...) or,
failing that, from ImageJ's ``unit`` and the X/YResolution tags.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.errors import CalibrationError, ImageDataError, InputFileError
from clusterspy.image import check_shape, check_square, units_to_angstrom
from clusterspy.io.formats import ReadResult, read_failure, reading
from clusterspy.io.rsciio_reader import (
    pick_signal,
    rsciio_file_reader,
    signal_index,
    signal_result,
    squeeze_frames,
)


@contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """tifffile's own log of a damaged file left out while it is read (ClusterSpy says what it read
    of it: a truncated stack's warning), also in worker processes that never ran the CLI."""
    log = logging.getLogger("tifffile")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def read_tiff(p: Path, lazy: bool, signal: int | str | None = None) -> ReadResult:
    """Read a TIFF (see :func:`_read_tiff`), with tifffile's log of a damaged file left out."""
    with _quiet_tifffile():
        return _read_tiff(p, lazy, signal)


def _read_tiff(p: Path, lazy: bool, signal: int | str | None = None) -> ReadResult:
    """Read a TIFF: a multi-page stack as lazy frames, anything else eagerly through RosettaSciIO.

    RosettaSciIO would keep a lazily read TIFF open for ever, so only a multi-page greyscale
    stack is lazy (one page read per frame); ``lazy`` is accepted for the reader interface.
    ``signal`` chooses among several image series (index or title, see
    :func:`~clusterspy.io.rsciio_reader.pick_signal`); without it the first is read (a TIFF's
    further series are previews or thumbnails).
    """
    file_reader = rsciio_file_reader(p)
    with reading(p):
        frames = _tiff_frames(p)
        if frames is None:
            _check_tiff_size(p)
        signals = _tiff_signals(p, file_reader, pixels=frames is None)
    signals = list(signals)
    sig = pick_signal(p, signals, signal, first_if_untitled=True)
    if frames is not None and sig is not signals[0]:
        # the image picked is not the TIFF's first series (whose pages the frames serve)
        frames = None
        with reading(p):
            signals = list(_tiff_signals(p, file_reader, pixels=True))
        sig = pick_signal(p, signals, signal, first_if_untitled=True)
    pixel, md = signal_result(p, sig, len(signals), fallback_pixel=lambda: _tiff_imagej_pixel(p))
    md["signal_index"] = signal_index(signals, sig)
    data = sig["data"]
    if frames is not None:
        data = frames
        if frames.pages_left_out:
            md["pages_left_out"] = frames.pages_left_out  # 1-based page numbers
        if frames.lost:
            md["frames_lost"] = frames.lost
            md["frames_expected"] = frames.expected
    return squeeze_frames(data), pixel, md


def _check_tiff_size(p: Path) -> None:
    """Check the shape of a TIFF's first series before reading its pixels."""
    import tifffile

    try:
        with tifffile.TiffFile(p) as tif:
            shape = tif.series[0].shape
    except Exception as exc:
        raise read_failure(p, exc) from None
    check_shape(tuple(s for s in shape if s != 1) or shape, series=True, source=p.name)


#: TIFF ``ResolutionUnit`` values (inch, centimetre) and their length in Å.
_RESOLUTION_UNIT_A = {2: 2.54e8, 3: 1e8}
#: Plausible pixel sizes [Å/px] from a TIFF's inch or centimetre resolution: a microscope's, not a
#: printer's (72 dpi is 3.5·10⁶ Å/px).
_RESOLUTION_PLAUSIBLE_A = (1e-3, 1e3)


def _tiff_imagej_pixel(p: Path) -> float | None:
    """Pixel size [Å/px] from ImageJ's ``unit`` and the TIFF X/YResolution tags (px per unit), or
    from the tags alone in the TIFF's own units (inch, centimetre) when they give a pixel size a
    microscope has (:data:`_RESOLUTION_PLAUSIBLE_A`; a print resolution such as 72 dpi is none).

    Raises ``NonSquarePixels`` when the X and Y resolutions differ.
    """
    import tifffile

    try:
        with tifffile.TiffFile(p) as tif:
            unit = (tif.imagej_metadata or {}).get("unit")
            tags = tif.pages[0].tags
            tag = tags.get("XResolution")
            ytag = tags.get("YResolution")
            res_unit = tags.get("ResolutionUnit")
            if unit is None and tag is not None and res_unit is not None \
                    and int(res_unit.value) in _RESOLUTION_UNIT_A and tag.value[0]:
                length_A = _RESOLUTION_UNIT_A[int(res_unit.value)]
                num, den = tag.value
                ynum, yden = ytag.value if ytag is not None else (num, den)
                x_A = length_A * den / num
                if not _RESOLUTION_PLAUSIBLE_A[0] <= x_A <= _RESOLUTION_PLAUSIBLE_A[1]:
                    return None
                if ynum:
                    check_square(x_A, length_A * yden / ynum)
                return x_A
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
        check_square(x_A, y_A)
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
        self.pages_left_out: list[int] = []  # pages [1-based] of another shape, type or colour
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
            raise read_failure(self.path, exc) from None

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
            if len(shape) == 3 and page0.photometric == tifffile.PHOTOMETRIC.RGB \
                    and page0.planarconfig == tifffile.PLANARCONFIG.SEPARATE:
                # RosettaSciIO fails on it ("the last dimension size of the array must be 3 or 4")
                raise ImageDataError(f"{p.name} is a colour (RGB) image stored plane by plane, of shape "
                                     f"{shape}; save it as a single-channel greyscale image")
            if len(shape) != 2 or page0.dtype is None:
                return None  # RGB, volumes, ...: the whole-file reader explains
            series = tif.series[0]
            one_page_series = False  # each frame its own series: pages not laid out contiguously
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
                alike = [s for s in tif.series if _squeezed(s.shape) == _squeezed(shape)
                         and s.dtype == page0.dtype and len(s.pages) == 1]
                if expected == 1 and len(tif.series) > 1 and len(alike) > 1:
                    # one page per series (tifffile written frame by frame): a stack of those alike,
                    # not an image and its previews (those differ in size; any other page is warned of)
                    expected, known, one_page_series = len(alike), True, True
                elif expected == 1:
                    _warn_pages_left_out(p, tif, {0}, 1)
            else:
                return None  # 4-D and other shapes: the whole-file reader explains
            if expected <= 1:
                return None
            check_shape((expected, *shape), series=True, source=p.name)
            dtype = page0.dtype.newbyteorder(tif.byteorder)
            n_pages = len(tif.pages)
            contiguous = not one_page_series and page0.is_final and page0.dataoffsets and (
                series.dataoffset == page0.dataoffsets[0] or n_pages == 1)
            if contiguous:
                dataoffset = int(page0.dataoffsets[0])
                n = min(expected, max(size - dataoffset, 0) // int(page0.nbytes))
                frames = _TiffFrames(p, shape, dtype, n=n, expected=expected,
                                     dataoffset=dataoffset)
            else:
                # the frames' own pages (a page of another shape among them is its own series), else
                # the file's pages in order (a truncated file tifffile gave up on)
                own = [s.pages[0] for s in alike] if one_page_series else list(series.pages)
                candidates = own if len(own) >= expected else list(tif.pages)
                offsets: list[int] = []
                read: set[int] = set()
                for k in range(min(expected, len(candidates))):
                    page = candidates[k]
                    if page is None or tuple(page.shape) != shape or page.dtype != page0.dtype:
                        break
                    ends = [int(o) + int(c) for o, c in zip(page.dataoffsets,
                                                            page.databytecounts, strict=False)]
                    if max(ends, default=0) > size:
                        break  # this page's data run past the end of the file
                    offsets.append(int(page.offset))
                    read.add(int(page.index))
                frames = _TiffFrames(p, shape, dtype, n=len(offsets), expected=expected,
                                     offsets=offsets)
                if not frames.lost and len(read) < n_pages:
                    frames.pages_left_out = [k + 1 for k in _warn_pages_left_out(p, tif, read, len(frames))]
    except (ImageDataError, CalibrationError):
        raise
    except Exception as exc:
        raise read_failure(p, exc) from None
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
            UserWarning, stacklevel=6,  # past read_tiff and _read_tiff: read_series' caller
        )
    return frames


def _page_kind(page: Any) -> str:
    """How a TIFF page is described in a warning: its size [px], and its type or colour."""
    shape = tuple(int(v) for v in page.shape)
    colour = " colour" if len(shape) == 3 and shape[-1] in (3, 4) else ""
    return f"{shape[1]}×{shape[0]} px{colour} {page.dtype}"


def _warn_pages_left_out(p: Path, tif: Any, read: set[int], n_read: int) -> list[int]:
    """Warn when a TIFF holds full-resolution pages that are not read: pages of another shape, type or
    colour than the frames read (``read``: their page indices; ``n_read`` frames). Newcomers' stacks
    with one page cropped (stop 37), of another type or in colour (stop 39) had lost those pages, and
    the frames after them, without a word. Reduced pages (previews, pyramids) are left out."""
    others = [k for k, page in enumerate(tif.pages) if k not in read and not page.is_reduced]
    if not others:
        return others
    first = tif.pages[min(read) if read else 0]
    kinds = sorted({_page_kind(tif.pages[k]) for k in others})
    which = ", ".join(str(k + 1) for k in others[:8]) + (" …" if len(others) > 8 else "")
    warnings.warn(
        f"{p.name} has {len(tif.pages)} pages, and {len(others)} of them (page {which}: {'; '.join(kinds)}) "
        f"{'differs' if len(others) == 1 else 'differ'} from the frames read ({_page_kind(first)}): "
        f"{n_read} frame(s) read and numbered without {'it' if len(others) == 1 else 'them'} — save a "
        "stack's frames at one shape and type, or each frame as its own file",
        UserWarning, stacklevel=7,  # past _tiff_frames, read_tiff and _read_tiff: read_series' caller
    )
    return others


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
