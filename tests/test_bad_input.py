"""A corpus of bad files and arrays: each gives a ClusterSpyError with a clear one-line message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clusterspy.errors import (
    CalibrationError,
    ClusterSpyError,
    ImageDataError,
    InputFileError,
)
from clusterspy.image import Image
from clusterspy.io import MAX_PIXELS, as_image, read_image, read_series
from helpers import SHARED

GOOD = np.random.default_rng(0).normal(100, 10, (64, 64)).astype(np.float32)


def _write(tmp: Path, name: str, content: bytes) -> Path:
    p = tmp / name
    p.write_bytes(content)
    return p


def _npy_header_only(tmp: Path, shape: tuple[int, ...]) -> Path:
    """A .npy whose header announces a huge array (the data are never written)."""
    p = tmp / "huge.npy"
    with open(p, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return p


def _rgb_png(tmp: Path) -> Path:
    from PIL import Image as PILImage

    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0] = 255
    rgb[:16, :, 2] = 200
    p = tmp / "rgb.png"
    PILImage.fromarray(rgb).save(p)
    return p


def _spectrum_hspy(tmp: Path) -> Path:
    hs = pytest.importorskip("hyperspy.api")
    p = tmp / "spec.hspy"
    hs.signals.Signal1D(np.arange(100.0)).save(p)
    return p


def _non_image_emd(tmp: Path) -> Path:
    import h5py

    p = tmp / "notimage.emd"
    with h5py.File(p, "w") as f:
        f.attrs["version_major"] = 0
        f.create_group("Data").create_dataset("table", data=np.arange(10))
    return p


def _truncated_dm4(tmp: Path) -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/data is absent")
    data = (SHARED / "widefield/particlespy/JEOL_HAADF_Image.dm4").read_bytes()
    return _write(tmp, "truncated.dm4", data[: len(data) // 3])


def _npz(tmp: Path, **arrays) -> Path:
    p = tmp / "bad.npz"
    np.savez(p, **arrays)
    return p


def _npy(tmp: Path, arr) -> Path:
    p = tmp / "bad.npy"
    np.save(p, arr)
    return p


FILES = {
    "missing file": (lambda t: t / "nope.dm4", InputFileError),
    "directory": (lambda t: t, InputFileError),
    "zero-byte dm4": (lambda t: _write(t, "empty.dm4", b""), InputFileError),
    "zero-byte tif": (lambda t: _write(t, "empty.tif", b""), InputFileError),
    "truncated dm4": (_truncated_dm4, InputFileError),
    "garbage dm3": (lambda t: _write(t, "junk.dm3", b"\x00\x01garbage" * 50), InputFileError),
    "text named .tif": (lambda t: _write(t, "text.tif", b"this is not a tiff\n" * 20),
                        InputFileError),
    "text named .png": (lambda t: _write(t, "text.png", b"hello" * 40), InputFileError),
    "text named .emd": (lambda t: _write(t, "text.emd", b"hello" * 40), InputFileError),
    "wrong extension .docx": (lambda t: _write(t, "report.docx", b"PK\x03\x04"), InputFileError),
    "no extension": (lambda t: _write(t, "image", b"\x00" * 100), InputFileError),
    "non-image emd": (_non_image_emd, ClusterSpyError),
    "spectrum hspy": (_spectrum_hspy, ImageDataError),
    "colour png": (_rgb_png, ImageDataError),
    "1-D npy": (lambda t: _npy(t, np.arange(100.0)), ImageDataError),
    "4-D npy": (lambda t: _npy(t, np.zeros((2, 2, 16, 16))), ImageDataError),
    "huge npy (header only)": (lambda t: _npy_header_only(t, (100_000, 100_000)), ImageDataError),
    "object npy": (lambda t: _npy(t, np.array([{"a": 1}] * 100, dtype=object)), ClusterSpyError),
    "NaN image npz": (lambda t: _npz(t, image=np.where(GOOD > 110, np.nan, GOOD),
                                     pixel_size_A=0.2), ImageDataError),
    "constant image npz": (lambda t: _npz(t, image=np.ones((64, 64)), pixel_size_A=0.2),
                           ImageDataError),
    "negative pixel size npz": (lambda t: _npz(t, image=GOOD, pixel_size_A=-0.2), CalibrationError),
    "npz without image key": (lambda t: _npz(t, a=GOOD, b=GOOD), ImageDataError),
    "npz without pixel size": (lambda t: _npz(t, image=GOOD), CalibrationError),
    "tiny image npz": (lambda t: _npz(t, image=GOOD[:4, :4], pixel_size_A=0.2), ImageDataError),
}


def _one_line(err: BaseException) -> None:
    msg = str(err)
    assert msg and "\n" not in msg and len(msg) < 400, msg
    assert "Traceback" not in msg


@pytest.mark.parametrize("case", list(FILES))
def test_bad_file(tmp_path, case):
    make, expected = FILES[case]
    path = make(tmp_path)
    with pytest.raises(expected) as err:
        read_image(path)
    assert isinstance(err.value, ClusterSpyError)
    _one_line(err.value)


def test_series_of_empty_folder(tmp_path):
    with pytest.raises(InputFileError) as err:
        read_series(tmp_path)
    _one_line(err.value)


ARRAYS = {
    "RGB array": (np.zeros((32, 32, 3)), 0.2, ImageDataError),
    "1-D array": (np.arange(64.0), 0.2, ImageDataError),
    "3-D stack": (np.zeros((5, 32, 32)), 0.2, ImageDataError),
    "4-D array": (np.zeros((2, 2, 32, 32)), 0.2, ImageDataError),
    "NaN": (np.where(GOOD > 110, np.nan, GOOD), 0.2, ImageDataError),
    "Inf": (np.where(GOOD > 110, np.inf, GOOD), 0.2, ImageDataError),
    "constant": (np.full((64, 64), 7.0), 0.2, ImageDataError),
    "complex": (GOOD.astype(complex), 0.2, ImageDataError),
    "strings": (np.full((16, 16), "a"), 0.2, ImageDataError),
    "negative pixel size": (GOOD, -0.1, CalibrationError),
    "zero pixel size": (GOOD, 0.0, CalibrationError),
    "NaN pixel size": (GOOD, float("nan"), CalibrationError),
    "pixel size in m by mistake": (GOOD, 2e-11, CalibrationError),
    "no pixel size": (GOOD, None, CalibrationError),
    "not an image object": ({"a": 1}, 0.2, ImageDataError),
}


@pytest.mark.parametrize("case", list(ARRAYS))
def test_bad_array(case):
    data, pixel, expected = ARRAYS[case]
    with pytest.raises(expected) as err:
        as_image(data, pixel)
    _one_line(err.value)


def test_too_large_array_checked_before_use():
    big = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32),
                                          shape=(MAX_PIXELS // 1000 + 1, 1001), strides=(0, 0))
    with pytest.raises(ImageDataError, match="too large"):
        as_image(big, 0.2)


def test_image_class_refuses_bad_pixel_size():
    with pytest.raises(CalibrationError):
        Image(GOOD, -1.0)
