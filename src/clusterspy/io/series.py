"""A series of frames read lazily (one calibrated :class:`~clusterspy.image.Image` per frame)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.errors import InputFileError
from clusterspy.image import (
    Image,
    check_image_data,
    check_not_colour_channels,
    check_pixel_size,
    check_shape,
    resolve_pixel_size,
)
from clusterspy.io.formats import FORMATS, compute, read_any, supported_list
from clusterspy.io.read import read_image

#: Frames read from a memory-mapped file between two releases of its pages.
RELEASE_EVERY = 16


def _read_only_map(a: Any) -> Any:
    """The ``mmap.mmap`` under a read-only ``numpy.memmap`` (or a view of one), else None."""
    for _ in range(8):
        if isinstance(a, np.memmap) and getattr(a, "mode", None) in ("r", "readonly"):
            return getattr(a, "_mmap", None)
        a = getattr(a, "base", None)
        if a is None:
            return None
    return None


def _release_pages(frames: Any) -> None:
    """Hand back the resident pages of a read-only memory-mapped file (``madvise(MADV_DONTNEED)``).

    They are clean file pages, re-read from the page cache if needed: the kernel counts mapped
    pages in the process's resident memory, so without this it would grow with the frames read.
    """
    import mmap

    mm = _read_only_map(frames)
    if mm is not None and hasattr(mmap, "MADV_DONTNEED"):
        try:
            mm.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):  # closed map or platform without madvise
            pass


class Series:
    """A lazy sequence of calibrated frames (one :class:`Image` per frame, loaded on access).

    Frames of a memory-mapped file (``.npy``) are handed back to the kernel every
    :data:`RELEASE_EVERY` frames read, so resident memory does not grow with the series.

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
    user_pixel_size_A : float, optional
        For a folder: the pixel size [Å/px] the user gave, applied to each file.
    signal : int or str, optional
        For a folder: the signal read from each file (index or title).
    """

    def __init__(
        self,
        frames: Any,
        pixel_size_A: float,
        frame_time_s: float | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        user_pixel_size_A: float | None = None,
        signal: int | str | None = None,
    ) -> None:
        self._frames = frames
        self.pixel_size_A = check_pixel_size(pixel_size_A)
        self.frame_time_s = frame_time_s
        self.metadata = dict(metadata or {})
        self._user_pixel = user_pixel_size_A
        self._signal = signal
        self._reads = 0

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
            img = read_image(item, self._user_pixel, signal=self._signal)
            md.update(img.metadata)
            md["frame"] = i
            return Image(img.data, img.pixel_size_A, md)
        self._reads += 1
        if self._reads % RELEASE_EVERY == 0:
            _release_pages(self._frames)
        arr = check_image_data(compute(item), source=f"frame {i} of {md.get('source', 'the series')}")
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


def read_series(
    path: str | os.PathLike, pixel_size_A: float | None = None, *, signal: int | str | None = None
) -> Series:
    """Read a series of frames lazily: a stack file, a single image, or a folder of images.

    Parameters
    ----------
    path : str or os.PathLike
        A multi-frame file (Velox .emd, .tif stack, .hspy, .npy ``(N, rows, cols)``, .npz
        with ``frames``), a single image (a series of one), or a folder whose supported
        image files (sorted by name) are the frames.
    pixel_size_A : float, optional
        Pixel size [Å/px]; overrides the file's calibration.
    signal : int or str, optional
        Which signal of a multi-signal file (index or title; see :func:`read_image`); for a
        folder, of each of its files.

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
                       if f.is_file() and f.suffix.lower() in FORMATS)
        if not files:
            raise InputFileError(
                f"folder {p} contains no image files; supported: {supported_list()}"
            )
        first = read_image(files[0], pixel_size_A, signal=signal)
        md = {"source": str(p), "format": "folder", "files": [str(f) for f in files],
              "pixel_size_source": first.metadata.get("pixel_size_source")}
        return Series(files, first.pixel_size_A, None, md, user_pixel_size_A=pixel_size_A,
                      signal=signal)
    data, file_pixel, md = read_any(p, lazy=True, signal=signal)
    check_shape(np.shape(data), series=True, source=p.name)
    if np.ndim(data) == 3 and np.shape(data)[0] in (3, 4):
        check_not_colour_channels(np.stack([compute(data[k]) for k in range(3)]), p.name)
    pixel = resolve_pixel_size(p.name, file_pixel, pixel_size_A, md)
    if np.ndim(data) == 2:
        data = data[None]
    frame_time = md.pop("frame_time_s", None)
    return Series(data, pixel, frame_time, md)
