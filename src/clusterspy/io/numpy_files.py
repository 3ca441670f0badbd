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

from clusterspy.errors import ImageDataError
from clusterspy.image import check_shape
from clusterspy.io.formats import ReadResult, read_failure

_NPZ_IMAGE_KEYS = ("image", "data", "img", "haadf")
_NPZ_SERIES_KEYS = ("frames", "series", "stack", "images")


def _npy_shape(p: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from an ``.npy`` header (nothing loaded)."""
    try:
        with open(p, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    except Exception as exc:
        raise read_failure(p, exc) from None
    return tuple(shape), np.dtype(dtype)


def read_npy(p: Path, lazy: bool = True) -> ReadResult:
    """Read a 2-D or 3-D ``.npy`` array (memory-mapped); no pixel size."""
    shape, dtype = _npy_shape(p)
    if dtype.hasobject:
        raise ImageDataError(f"{p.name} holds Python objects, not a numeric image")
    check_shape(shape, series=True, source=p.name)
    try:
        data = np.load(p, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise read_failure(p, exc) from None
    return data, None, {"source": str(p), "format": "npy"}


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
