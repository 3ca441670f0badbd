"""Read microscope images and series with their pixel size [Å/px]; write results atomically.

One face for many formats (RosettaSciIO underneath where it reads the format). The formats
and their readers are listed once, in :data:`clusterspy.io.formats.FORMATS`:

- ``.dm3``, ``.dm4`` — Gatan DigitalMicrograph (calibration from the axes);
- ``.emd`` — Velox EMD (HAADF signal picked; multi-frame stacks) and Berkeley / NCEM EMD;
- ``.tif``, ``.tiff`` — ImageJ, FEI/TIA, Velox, Zeiss ... pixel-size tags;
- ``.hspy``, ``.zspy`` — HyperSpy files;
- ``.png``, ``.jpg``, ``.jpeg`` — 8/16-bit images; the pixel size must come from the user;
- ``.npy`` — a 2-D (image) or 3-D (series) array; pixel size from the user;
- ``.npz`` — keys ``image`` / ``frames`` / ``data`` and ``pixel_size_A`` (optionally
  ``frame_time_s``).

A file holding several signals (Velox: HAADF, DF, BF, EDS ...) is read from its only 2-D image
signal, else from the one whose title names the detector (HAADF, ADF, DF, BF); when none does,
it is refused with a one-line :class:`~clusterspy.errors.InputFileError` listing its signals
(index, title, shape), and ``signal=`` (``--signal``) chooses one by index or title
(``metadata["signal_index"]`` records the one read).

Whatever the units in the file (m, mm, µm, nm, Å, pm), the pixel size is returned in Å/px.
A pixel size given by the user overrides the file's (decided in one place,
:func:`clusterspy.image.resolve_pixel_size`); ``metadata["pixel_size_source"]`` says which
one was used (``"file"`` or ``"user"``) and ``metadata["file_pixel_size_A"]`` keeps the
file's value.

Pixels must be square: a file whose X and Y pixel sizes differ is refused with a
:class:`~clusterspy.errors.CalibrationError` unless the user gives the pixel size.

Big files are read lazily (Dask / memory map): :class:`Series` loads one frame at a time,
and sizes are checked before anything is allocated (:data:`MAX_PIXELS`). A multi-page TIFF
is read page by page (the file is opened for each frame); a truncated one — or a truncated 3-D
``.npy`` — is read up to its last whole frame, with a warning and ``metadata["frames_lost"]``.

Modules: :mod:`~clusterspy.io.formats` (the table of readers), one module per reader
(:mod:`~clusterspy.io.rsciio_reader`, :mod:`~clusterspy.io.tiff`, :mod:`~clusterspy.io.pil`,
:mod:`~clusterspy.io.numpy_files`), :mod:`~clusterspy.io.read` (one image),
:mod:`~clusterspy.io.series` (:class:`Series`) and :mod:`~clusterspy.io.writers`.
"""

from __future__ import annotations

from clusterspy.image import MAX_PIXELS, check_image_data, check_shape, units_to_angstrom
from clusterspy.io.formats import FORMATS, SUPPORTED_EXTENSIONS
from clusterspy.io.read import as_image, image_from_signal, read_image
from clusterspy.io.series import Series, read_series
from clusterspy.io.writers import write_bytes_atomic, write_csv, write_json, write_text_atomic

__all__ = [
    "FORMATS",
    "MAX_PIXELS",
    "SUPPORTED_EXTENSIONS",
    "Series",
    "as_image",
    "check_image_data",
    "check_shape",
    "image_from_signal",
    "read_image",
    "read_series",
    "units_to_angstrom",
    "write_bytes_atomic",
    "write_csv",
    "write_json",
    "write_text_atomic",
]
