"""Files RosettaSciIO reads (DigitalMicrograph, EMD, HyperSpy): the image signal and its pixel size."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.errors import ImageDataError, InputFileError
from clusterspy.image import NonSquarePixels, check_square, units_to_angstrom
from clusterspy.io.formats import FORMATS, ReadResult, reading

#: Time units of a navigation axis → s.
_TIME_TO_S: dict[str, float] = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "min": 60.0}


def rsciio_file_reader(p: Path) -> Callable[..., Any]:
    """RosettaSciIO's ``file_reader`` for ``p``'s format (the plugin named in the table).

    Raises
    ------
    InputFileError
        If RosettaSciIO (or the extra the format needs) is not installed.
    """
    ext = p.suffix.lower()
    plugin = FORMATS[ext].plugin
    if plugin is None:  # pragma: no cover - guarded by the table
        raise AssertionError(ext)
    try:
        return importlib.import_module(f"rsciio.{plugin}").file_reader
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise InputFileError(
            f"reading {ext} files needs RosettaSciIO with its HDF5/Zarr extras ({exc}); "
            "install it with: pip install 'rosettasciio[hdf5,tiff,zspy]'"
        ) from None


def signal_pixel_size(axes: Sequence[Mapping[str, Any]]) -> tuple[float | None, float | None]:
    """Pixel size [Å/px] from the two signal axes, and the frame time [s] of a time axis.

    Raises :class:`~clusterspy.image.NonSquarePixels` when the X and Y sizes differ.
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
            check_square(float(sizes[1]), float(sizes[0]))  # (x, y)
    frame_time = None
    for a in nav:
        factor = _TIME_TO_S.get(str(a.get("units", "")).strip())
        if factor is not None and a.get("scale"):
            frame_time = float(a["scale"]) * factor
    return pixel, frame_time


def _n_sig(s: dict[str, Any]) -> int:
    return sum(1 for a in s.get("axes", []) if not a.get("navigate", False))


def _title(s: dict[str, Any]) -> str:
    return str(s.get("metadata", {}).get("General", {}).get("title", ""))


def _is_image(s: dict[str, Any]) -> bool:
    return _n_sig(s) == 2 and np.ndim(s["data"]) in (2, 3)


def signal_list(signals: Sequence[dict[str, Any]], only_images: bool = False) -> str:
    """``0: 'HAADF' (512×512), 1: 'EDS' (2048)`` — the signals of a file, for messages.

    ``only_images`` lists just the 2-D image signals (with their index in the file).
    """
    return ", ".join(f"{i}: {_title(s)!r} ({'×'.join(str(n) for n in np.shape(s['data']))})"
                     for i, s in enumerate(signals) if _is_image(s) or not only_images)


def _chosen(p: Path, signals: list[dict[str, Any]], choice: int | str) -> dict[str, Any]:
    """The signal ``choice`` names (its index in the file, or its title), checked to be an image."""
    found = None
    if isinstance(choice, str):
        found = next((s for s in signals if _title(s).strip().lower() == choice.strip().lower()), None)
        if found is None and choice.strip().isdigit():
            choice = int(choice.strip())
    if found is None and isinstance(choice, (int, np.integer)) and 0 <= int(choice) < len(signals):
        found = signals[int(choice)]
    if found is None:
        raise InputFileError(f"{p.name} has no signal {choice!r} (--signal takes an index or a title); "
                             f"its signals: {signal_list(signals)}")
    if not _is_image(found):
        raise InputFileError(f"signal {choice!r} of {p.name} is not a 2-D image (shape "
                             f"{np.shape(found['data'])}); its image signals: "
                             f"{signal_list(signals, only_images=True)}")
    return found


def pick_signal(p: Path, signals: list[dict[str, Any]], choice: int | str | None = None, *,
                first_if_untitled: bool = False) -> dict[str, Any]:
    """Pick the image signal among several: ``choice``, else the only image, else the one whose
    title names the detector (HAADF, ADF, DF, BF, in that order; Velox: HAADF first).

    Parameters
    ----------
    p : pathlib.Path
        The file (for messages).
    signals : list of dict
        The signals RosettaSciIO read from it, in file order.
    choice : int or str, optional
        The signal to use: its index in the file (``0`` first) or its title (case-insensitive).
    first_if_untitled : bool
        Without ``choice`` and a detector title, take the first image signal instead of
        refusing (a TIFF, whose further series are previews).

    Raises
    ------
    ImageDataError
        If there is no signal, or none is a 2-D image (or a stack of them).
    InputFileError
        If ``choice`` names no image signal of the file, or none is given and the file holds
        several image signals none of whose titles names a detector (the message lists them).
    """
    if not signals:
        raise ImageDataError(f"{p.name} contains no signal")
    if choice is not None:
        return _chosen(p, signals, choice)
    images = [s for s in signals if _is_image(s)]
    if not images:
        kinds = sorted({f"{np.ndim(s['data'])}-D" for s in signals}) or ["none"]
        raise ImageDataError(
            f"{p.name} contains no 2-D image signal (found: {', '.join(kinds)} data); "
            "give a file with a HAADF/BF image"
        )
    if len(images) == 1:
        return images[0]
    for key in ("HAADF", "ADF", "DF", "BF"):
        for s in images:
            if key in _title(s).upper():
                return s
    if first_if_untitled:
        return images[0]
    raise InputFileError(f"{p.name} holds {len(images)} image signals and no title names the detector "
                         f"(HAADF, ADF, DF, BF): {signal_list(signals, only_images=True)}; choose one "
                         "with --signal N (its index) or --signal TITLE (signal= in Python)")


def signal_index(signals: Sequence[dict[str, Any]], sig: dict[str, Any]) -> int:
    """Index of ``sig`` in the file's ``signals``."""
    return next(i for i, s in enumerate(signals) if s is sig)


def signal_result(
    p: Path, sig: dict[str, Any], n_signals: int, *,
    fallback_pixel: Callable[[], float | None] | None = None,
) -> tuple[float | None, dict[str, Any]]:
    """The pixel size [Å/px] (None when the file has none) and metadata of the signal picked.

    ``fallback_pixel`` is asked when the axes carry no length calibration. Non-square pixels
    give no pixel size and ``metadata["non_square_pixel_A"]`` (refused by
    :func:`~clusterspy.image.resolve_pixel_size` unless the user gives one).
    """
    md_general = dict(sig.get("metadata", {}).get("General", {}))
    md: dict[str, Any] = {
        "source": str(p),
        "format": p.suffix.lower().lstrip("."),
        "title": md_general.get("title", ""),
        "signal_count": n_signals,
    }
    frame_time = None
    try:
        pixel, frame_time = signal_pixel_size(sig.get("axes", []))
        if pixel is None and fallback_pixel is not None:
            pixel = fallback_pixel()
    except NonSquarePixels as ns:
        pixel = None
        md["non_square_pixel_A"] = {"x": ns.x_A, "y": ns.y_A}
    if frame_time is not None:
        md["frame_time_s"] = frame_time
    return pixel, md


def squeeze_frames(data: Any) -> Any:
    """Drop singleton leading (navigation) dimensions, e.g. of a one-frame Velox stack."""
    while np.ndim(data) > 2 and data.shape[0] == 1:
        data = data[0]
    return data


def read_rsciio(p: Path, lazy: bool, signal: int | str | None = None) -> ReadResult:
    """Read a DigitalMicrograph, EMD or HyperSpy file: its image signal (lazy), pixel size, metadata.

    ``signal`` chooses the signal of a file holding several (index or title, see
    :func:`pick_signal`); ``metadata["signal_index"]`` records the one read.
    """
    file_reader = rsciio_file_reader(p)
    with reading(p):
        signals = list(file_reader(str(p), lazy=lazy))
    sig = pick_signal(p, signals, signal)
    pixel, md = signal_result(p, sig, len(signals))
    md["signal_index"] = signal_index(signals, sig)
    return squeeze_frames(sig["data"]), pixel, md
