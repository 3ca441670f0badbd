"""Where the frames of a series come from: a file or folder, an array, or images — read through
:class:`clusterspy.io.Series`, one frame at a time, with the identity of the input for resume."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.errors import ClusterSpyError, ConfigError
from clusterspy.image import Image, check_image_data, check_not_colour_channels, check_pixel_size

__all__ = ["FrameSource", "open_frames"]

#: Bytes of the input hashed to recognise it on resume (with its size and modification time).
HASHED_BYTES = 1 << 20


@dataclass
class FrameSource:
    """The frames of a series and what identifies them.

    Attributes
    ----------
    frames : clusterspy.io.Series, sequence or iterable
        Frames (an :class:`~clusterspy.io.Series` for files and arrays).
    pixel_size_A : float or None
        Pixel size [Å/px] of the frames (None when only the images know it).
    frame_time_s : float or None
        Time between frames [s] recorded in the file.
    description : str
        What ``summary.json`` calls the source.
    identity : dict
        Resolved path, size [bytes], modification time [ns] and SHA-256 of the first MiB (of a
        file, a folder's files or an array's bytes) — what a resumed run must find again.
    """

    frames: Any
    pixel_size_A: float | None
    frame_time_s: float | None
    description: str
    identity: dict[str, Any]
    checked: bool = False

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def frames_lost(self) -> int:
        """Frames the file announces but does not hold whole (a truncated stack), else 0."""
        return int(getattr(self.frames, "metadata", {}).get("frames_lost", 0) or 0)

    @property
    def length(self) -> int | None:
        """Number of frames, or None for an iterable of unknown length."""
        return len(self.frames) if hasattr(self.frames, "__len__") else None

    def iter_from(self, start: int) -> Iterator[tuple[int, Image | ClusterSpyError]]:
        """Yield ``(index, frame)`` from ``start`` on; a frame that cannot be read or used (NaN,
        constant, truncated) is yielded as its :class:`~clusterspy.errors.ClusterSpyError`."""
        frames = self.frames
        if hasattr(frames, "__getitem__") and hasattr(frames, "__len__"):
            for i in range(start, len(frames)):
                yield i, self._read(lambda i=i: frames[i], i)
        else:
            for i, item in enumerate(frames):
                if i >= start:
                    yield i, self._read(lambda item=item: item, i)

    def _read(self, get: Any, i: int) -> Image | ClusterSpyError:
        try:
            item = get()
            if isinstance(item, Image):
                if not self.checked:  # a Series has checked its frames already
                    check_image_data(item.data, source=f"frame {i}")
                return item
            return Image(check_image_data(item, source=f"frame {i}"), check_pixel_size(self.pixel_size_A),
                         {"frame": i})
        except ClusterSpyError as exc:
            return exc


def _file_identity(p: Path) -> dict[str, Any]:
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file())
        h = hashlib.sha256()
        for f in files:
            st = f.stat()
            h.update(f"{f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return {"path": str(p.resolve()), "files": len(files),
                "size_bytes": sum(f.stat().st_size for f in files),
                "mtime_ns": max((f.stat().st_mtime_ns for f in files), default=0),
                "sha256_listing": h.hexdigest()}
    st = p.stat()
    with open(p, "rb") as fh:
        head = fh.read(HASHED_BYTES)
    return {"path": str(p.resolve()), "size_bytes": st.st_size, "mtime_ns": st.st_mtime_ns,
            "sha256_first_MiB": hashlib.sha256(head).hexdigest()}


def _array_identity(a: np.ndarray) -> dict[str, Any]:
    h = hashlib.sha256()
    left = HASHED_BYTES
    for frame in a:
        chunk = np.ascontiguousarray(frame).tobytes()[:left]
        h.update(chunk)
        left -= len(chunk)
        if left <= 0:
            break
    return {"array_shape": list(a.shape), "dtype": str(a.dtype), "sha256_first_MiB": h.hexdigest()}


def open_frames(source: Any, pixel_size_A: float | None, signal: int | str | None = None) -> FrameSource:
    """The frames of ``source`` (a path, a 3-D array, or a sequence / iterable of images).

    Parameters
    ----------
    source : str, os.PathLike, numpy.ndarray, or sequence/iterable of Image or 2-D arrays
        A multi-frame file or folder (:func:`clusterspy.io.read_series`), a ``(frames, rows,
        cols)`` array (may be a memory map) or images.
    pixel_size_A : float, optional
        Pixel size [Å/px]; overrides the file's; needed for arrays.
    signal : int or str, optional
        Which signal of a multi-signal file (index or title). The signal read (index, title)
        joins the input's identity when the file holds several, so a resume must read the same.

    Raises
    ------
    ClusterSpyError
        The file cannot be read, the array is not 3-D, or a pixel size is missing.
    """
    from clusterspy.io import Series, read_series

    if isinstance(source, str | os.PathLike):
        series = read_series(source, pixel_size_A=pixel_size_A, signal=signal)
        identity = _file_identity(Path(source).expanduser())
        md = series.metadata
        if int(md.get("signal_count", 1) or 1) > 1:  # the signal read, however it was named
            identity["signal"] = {"index": md.get("signal_index"), "title": md.get("title")}
        elif md.get("format") == "folder" and signal is not None:  # the signal of each file
            identity["signal"] = {"asked": signal}
        return FrameSource(series, series.pixel_size_A, series.frame_time_s, str(source),
                           identity, checked=True)
    if signal is not None:
        raise ConfigError("signal= chooses the signal of a file; give the file's path, not its data")
    if isinstance(source, np.ndarray):
        if source.ndim != 3:
            raise ConfigError(f"an array series must be (frames, rows, cols), got {source.shape}")
        description = f"array{source.shape}"
        if source.shape[0] in (3, 4):
            check_not_colour_channels(np.asarray(source[:3]), f"the {description}")
        series = Series(source, check_pixel_size(pixel_size_A), None, {"source": description})
        return FrameSource(series, series.pixel_size_A, None, description, _array_identity(source),
                           checked=True)
    if not isinstance(source, Iterable):
        raise ConfigError(f"cannot read frames from a {type(source).__name__}; give a file, a folder, "
                          "a 3-D array or images")
    return FrameSource(source, pixel_size_A, getattr(source, "frame_time_s", None),
                       type(source).__name__, {"type": type(source).__name__})
