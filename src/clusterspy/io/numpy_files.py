"""NumPy files: ``.npy`` (a 2-D image or 3-D series; pixel size from the user) and ``.npz``.

An ``.npz`` holds one array under ``image`` / ``frames`` / ``data`` (or similar) and optionally
``pixel_size_A`` [Å/px] and ``frame_time_s`` [s]. Shapes are checked from the headers before
anything is loaded.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.errors import ImageDataError, InputFileError
from clusterspy.image import check_shape
from clusterspy.io.formats import ReadResult, read_failure

_NPZ_IMAGE_KEYS = ("image", "data", "img", "haadf")
_NPZ_SERIES_KEYS = ("frames", "series", "stack", "images")


def _npy_header(p: Path) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """Shape, dtype, Fortran order and data offset [bytes] of an ``.npy`` (nothing loaded)."""
    try:
        with open(p, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            offset = fh.tell()
    except Exception as exc:
        raise read_failure(p, exc) from None
    return tuple(shape), np.dtype(dtype), bool(fortran), offset


def _npy_shape(p: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from an ``.npy`` header (nothing loaded)."""
    shape, dtype, _, _ = _npy_header(p)
    return shape, dtype


def read_npy(p: Path, lazy: bool = True) -> ReadResult:
    """Read a 2-D or 3-D ``.npy`` array (memory-mapped); no pixel size.

    A 3-D (series) file cut short — a copy or a recording that stopped — is read up to its last
    whole frame, with a warning and ``metadata["frames_lost"]`` (as a truncated TIFF stack).
    """
    shape, dtype, fortran, offset = _npy_header(p)
    if dtype.hasobject:
        raise ImageDataError(f"{p.name} holds Python objects, not a numeric image")
    check_shape(shape, series=True, source=p.name)
    md: dict[str, Any] = {"source": str(p), "format": "npy"}
    size = p.stat().st_size
    if size < offset + int(np.prod(shape)) * dtype.itemsize:
        data = _truncated_npy(p, shape, dtype, fortran, offset, size)
        md["frames_lost"], md["frames_expected"] = shape[0] - len(data), shape[0]
        return data, None, md
    try:
        data = np.load(p, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise read_failure(p, exc) from None
    return data, None, md


def _truncated_npy(p: Path, shape: tuple[int, ...], dtype: np.dtype, fortran: bool, offset: int,
                   size: int) -> np.ndarray:
    """The whole frames of a series ``.npy`` cut short, memory-mapped, with a warning; a 2-D image
    or a Fortran-ordered file (whose frames are not contiguous) cut short is refused in one line."""
    import warnings

    frame_bytes = int(np.prod(shape[1:])) * dtype.itemsize if len(shape) == 3 else 0
    whole = (size - offset) // frame_bytes if frame_bytes and not fortran else 0
    if whole == 0:
        what = (f"part of its {shape} {dtype} image" if len(shape) == 2 else
                f"no whole frame of its {shape} {dtype} array" + (" (Fortran order)" if fortran else ""))
        raise InputFileError(f"{p.name} is truncated: its {size} bytes hold {what}; copy the file again")
    lost = shape[0] - whole
    warnings.warn(f"{p.name} is truncated: {lost} of {shape[0]} frames lost; reading the first {whole} whole "
                  "frame(s)", UserWarning, stacklevel=5)
    return np.memmap(p, dtype=dtype, mode="r", offset=offset, shape=(whole, *shape[1:]))


def read_npz(p: Path, lazy: bool = True) -> ReadResult:
    """Read an ``.npz`` archive: its image or frames array, ``pixel_size_A`` and ``frame_time_s``."""
    try:
        with zipfile.ZipFile(p) as zf:
            keys = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
    except Exception as exc:
        raise read_failure(p, exc) from None
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
        raise read_failure(p, exc) from None
    check_shape(shape, series=True, source=f"{p.name}[{key!r}]")
    md: dict[str, Any] = {"source": str(p), "format": "npz", "key": key}
    try:
        with np.load(p, allow_pickle=False) as z:
            data = z[key]
            pixel = float(z["pixel_size_A"]) if "pixel_size_A" in keys else None
            if "frame_time_s" in keys:
                md["frame_time_s"] = float(z["frame_time_s"])
    except Exception as exc:
        raise read_failure(p, exc) from None
    return data, pixel, md
