"""The table of readers: every supported file extension, what it is, and the reader for it.

The extensions are declared here once; :data:`SUPPORTED_EXTENSIONS`, the list of formats in
error messages and the files a folder series picks up are all derived from :data:`FORMATS`.
A reader takes ``(path, lazy)`` and returns ``(data, pixel_size_A | None, metadata)``: the
array-like (lazy where possible), the file's pixel size [Å/px] (None when it has none) and
the metadata (``source``, ``format``, ...).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.errors import ClusterSpyError, InputFileError

#: What a reader returns: the data (array-like), the file's pixel size [Å/px] or None, metadata.
ReadResult = tuple[Any, float | None, dict[str, Any]]


@dataclass(frozen=True)
class Format:
    """One supported file format.

    Parameters
    ----------
    description : str
        What the format is, for messages (``"Gatan DigitalMicrograph 4"``).
    reader : str
        ``"module:function"`` in :mod:`clusterspy.io` reading it (imported on first use).
    plugin : str or None
        The RosettaSciIO plugin (``rsciio.<plugin>``) that reads it, when one does.
    """

    description: str
    reader: str
    plugin: str | None = None


_PIL = "pil:read_pil"
_RSCIIO = "rsciio_reader:read_rsciio"

#: Extension (lower case) → format. The only place the supported extensions are declared.
FORMATS: dict[str, Format] = {
    ".dm3": Format("Gatan DigitalMicrograph 3", _RSCIIO, "digitalmicrograph"),
    ".dm4": Format("Gatan DigitalMicrograph 4", _RSCIIO, "digitalmicrograph"),
    ".emd": Format("Velox / Berkeley EMD (HDF5)", _RSCIIO, "emd"),
    ".tif": Format("TIFF (ImageJ, FEI/TIA, Velox tags)", "tiff:read_tiff", "tiff"),
    ".tiff": Format("TIFF (ImageJ, FEI/TIA, Velox tags)", "tiff:read_tiff", "tiff"),
    ".hspy": Format("HyperSpy HDF5", _RSCIIO, "hspy"),
    ".zspy": Format("HyperSpy Zarr", _RSCIIO, "zspy"),
    ".png": Format("PNG (pixel size from the user)", _PIL),
    ".jpg": Format("JPEG (pixel size from the user)", _PIL),
    ".jpeg": Format("JPEG (pixel size from the user)", _PIL),
    ".npy": Format("NumPy array (pixel size from the user)", "numpy_files:read_npy"),
    ".npz": Format("NumPy archive with 'image' or 'frames' and 'pixel_size_A'",
                   "numpy_files:read_npz"),
}

#: Supported file extensions (lower case) and what they are.
SUPPORTED_EXTENSIONS: dict[str, str] = {ext: f.description for ext, f in FORMATS.items()}


def supported_list() -> str:
    """The supported extensions, sorted and comma-separated, for messages."""
    return ", ".join(sorted(FORMATS))


def read_failure(p: Path, exc: BaseException) -> InputFileError:
    """The one-line error for a file its reader could not read (truncated, corrupt, other format)."""
    msg = " ".join(str(exc).split()) or type(exc).__name__
    if len(msg) > 160:
        msg = msg[:157] + "..."
    if isinstance(exc, ImportError):  # a reader's optional package, imported only when reading
        name = (exc.name or "").split(".")[0] or "the missing package"
        return InputFileError(f"reading {p.suffix.lower()} files needs the optional package {name!r} "
                              f"({msg}); install it with: pip install {name}")
    return InputFileError(
        f"cannot read {p.name} as {SUPPORTED_EXTENSIONS[p.suffix.lower()]}: the file is "
        f"truncated, corrupt or not of this format ({type(exc).__name__}: {msg})"
    )


@contextmanager
def reading(p: Path) -> Iterator[None]:
    """Turn any failure of a reader inside the block into :func:`read_failure`'s one-line error
    (our own errors pass unchanged)."""
    try:
        yield
    except ClusterSpyError:
        raise
    except Exception as exc:
        raise read_failure(p, exc) from None


def check_path(path: str | os.PathLike) -> Path:
    """Return ``path`` as a :class:`~pathlib.Path` after checking it is a readable image file.

    Raises
    ------
    InputFileError
        Missing, a folder, empty, or of an unsupported format (the message lists the formats).
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise InputFileError(f"file not found: {p}")
    if p.is_dir():
        raise InputFileError(f"{p} is a directory, not an image file (use read_series for a folder)")
    ext = p.suffix.lower()
    if ext not in FORMATS:
        raise InputFileError(
            f"unsupported file format {ext or '(no extension)'!r} for {p.name}; "
            f"supported: {supported_list()}"
        )
    if p.stat().st_size == 0:
        raise InputFileError(f"{p} is empty (0 bytes)")
    return p


def reader_for(ext: str) -> Callable[[Path, bool], ReadResult]:
    """The reader function of extension ``ext`` (lower case, with its dot)."""
    module, _, function = FORMATS[ext].reader.partition(":")
    return getattr(importlib.import_module(f"clusterspy.io.{module}"), function)


def read_any(path: str | os.PathLike, lazy: bool = True, signal: int | str | None = None) -> ReadResult:
    """Check ``path`` and read it with the reader its extension names in :data:`FORMATS`.

    ``signal`` chooses the signal of a file holding several (its index or title); a format
    read without RosettaSciIO holds one image, so only ``None`` or ``0`` fit it.

    Raises
    ------
    InputFileError
        ``signal`` names a signal the file does not hold (the message lists those it holds).
    """
    p = check_path(path)
    ext = p.suffix.lower()
    if FORMATS[ext].plugin is not None:
        return reader_for(ext)(p, lazy, signal=signal)
    if signal is not None and str(signal).strip() != "0":
        raise InputFileError(f"{p.name} holds one image (signal 0), not signal {signal!r}: --signal "
                             "chooses among the signals of a .emd, .hspy, .zspy, .dm3/.dm4 or .tif file")
    return reader_for(ext)(p, lazy)


def compute(data: Any) -> np.ndarray:
    """``data`` as a NumPy array (a Dask array is computed)."""
    if hasattr(data, "compute"):
        data = data.compute()
    return np.asarray(data)
