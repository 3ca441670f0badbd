"""TIFF stacks read page by page, truncated stacks, non-square pixels in a TIFF calibration."""

from __future__ import annotations

import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest

from clusterspy.errors import CalibrationError, InputFileError
from clusterspy.io import read_image, read_series

tifffile = pytest.importorskip("tifffile")

N_PAGES = 40


def _stack(n: int = N_PAGES, size: int = 32, dtype: type = np.uint16) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 1000, (n, size, size)).astype(dtype)


def _write(path: Path, data: np.ndarray, layout: str) -> Path:
    """Write ``data`` as a multi-page TIFF in one of the usual layouts."""
    if layout == "imagej":  # ImageJ hyperstack: contiguous pixels, all IFDs after them
        tifffile.imwrite(path, data, imagej=True, resolution=(20.0, 20.0),
                         metadata={"unit": "nm"})
    elif layout == "shaped":  # tifffile's own: contiguous, shape in the first page
        tifffile.imwrite(path, data)
    elif layout == "zlib":  # compressed pages: one IFD and strip after another
        tifffile.imwrite(path, data, compression="zlib")
    elif layout == "shaped_per_frame":  # tifffile written frame by frame: one shaped series per page
        with tifffile.TiffWriter(path) as tw:
            for frame in data:
                tw.write(frame, contiguous=False)
    elif layout == "no_metadata":  # plain pages, no record of how many there are
        with tifffile.TiffWriter(path) as tw:
            for frame in data:
                tw.write(frame, contiguous=False, metadata=None)
    else:  # pragma: no cover
        raise AssertionError(layout)
    return path


def _cut_in_page(path: Path, page: int, out: Path) -> Path:
    """Copy ``path`` to ``out`` cut in the middle of the pixels of ``page`` (0-based)."""
    with tifffile.TiffFile(path) as tif:
        pg = tif.pages[page]
        cut = int(pg.dataoffsets[0]) + int(pg.databytecounts[0]) // 2
    out.write_bytes(path.read_bytes()[:cut])
    return out


@pytest.mark.parametrize("layout", ["shaped", "zlib"])
def test_tiff_stack_is_read_page_by_page(tmp_path, layout):
    data = _stack(size=128, dtype=np.float32)  # 40 × 64 KiB
    p = _write(tmp_path / "stack.tif", data, layout)
    read_series(p, pixel_size_A=0.2)[0]  # imports and caches out of the measurement
    tracemalloc.start()
    try:
        s = read_series(p, pixel_size_A=0.2)
        frame = s[17]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the whole stack is 2.6 MB; one page is 64 KiB
    assert peak < data.nbytes / 4, f"reading one frame allocated {peak} bytes"
    assert not isinstance(s._frames, np.ndarray) and not hasattr(s._frames, "compute")
    assert len(s) == N_PAGES and s.shape == (N_PAGES, 128, 128)
    np.testing.assert_array_equal(frame.data, tifffile.imread(p, key=17))
    for k in (0, 39, -1):
        np.testing.assert_array_equal(s[k].data, data[k])
    assert "frames_lost" not in s.metadata


def test_tiff_stack_pages_are_decoded_on_demand(tmp_path, monkeypatch):
    data = _stack()
    p = _write(tmp_path / "stack.tif", data, "zlib")
    expected = tifffile.imread(p, key=25)
    calls: list[int] = []
    real = tifffile.TiffPage.asarray

    def counting(self, *args, **kwargs):
        calls.append(self.index)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(tifffile.TiffPage, "asarray", counting)
    s = read_series(p, pixel_size_A=0.2)
    assert calls == []
    np.testing.assert_array_equal(s[25].data, expected)
    assert calls == [25]


@pytest.mark.parametrize("layout", ["imagej", "shaped", "zlib"])
def test_truncated_tiff_stack_keeps_its_whole_pages(tmp_path, layout):
    data = _stack()
    whole = _write(tmp_path / "whole.tif", data, layout)
    p = _cut_in_page(whole, 24, tmp_path / "cut.tif")  # in the middle of page 25 of 40
    with pytest.warns(UserWarning, match="16 of 40 frames lost") as record:
        s = read_series(p, pixel_size_A=0.2)
    assert record[0].filename == __file__  # points at the caller, not at io.py
    assert len(s) == 24 and s.shape == (24, 32, 32)
    assert s.metadata["frames_lost"] == 16
    assert s.metadata["frames_expected"] == 40
    for k in (0, 11, 23):
        np.testing.assert_array_equal(s[k].data, data[k])
    with pytest.raises(IndexError):
        s[24]


def test_truncated_tiff_stack_without_page_count(tmp_path):
    data = _stack()
    whole = _write(tmp_path / "whole.tif", data, "no_metadata")
    p = _cut_in_page(whole, 24, tmp_path / "cut.tif")
    with pytest.warns(UserWarning, match="at least 1 lost"):
        s = read_series(p, pixel_size_A=0.2)
    assert len(s) == 24 and s.metadata["frames_lost"] == 1
    np.testing.assert_array_equal(s[23].data, data[23])


def test_tiff_stack_cut_in_its_first_page(tmp_path):
    whole = _write(tmp_path / "whole.tif", _stack(), "imagej")
    p = _cut_in_page(whole, 0, tmp_path / "cut.tif")
    with pytest.raises(InputFileError, match="not one of its 40 frames is whole") as err:
        read_series(p, pixel_size_A=0.2)
    assert "\n" not in str(err.value)


def test_truncated_single_tiff_is_a_one_line_error(tmp_path):
    whole = tmp_path / "whole.tif"
    tifffile.imwrite(whole, _stack(1, 64)[0])
    p = _cut_in_page(whole, 0, tmp_path / "cut.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for reader in (read_image, read_series):
            with pytest.raises(InputFileError, match="truncated") as err:
                reader(p, pixel_size_A=0.2)
            assert "\n" not in str(err.value)


@pytest.mark.parametrize(("unit", "x", "y"), [("nm", "0.5", "1"), ("micron", "500", "1000")])
def test_tiff_non_square_pixels_are_refused(tmp_path, unit, x, y):
    image = _stack(3, 64).astype(np.float32)
    one = tmp_path / "one.tif"
    tifffile.imwrite(one, image[0], imagej=True, resolution=(20.0, 10.0),  # px per unit: X, Y
                     metadata={"unit": unit})
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, image, imagej=True, resolution=(20.0, 10.0), metadata={"unit": unit})
    for reader, p in ((read_image, one), (read_series, stack)):
        with pytest.raises(CalibrationError) as err:
            reader(p)
        msg = str(err.value)
        assert f"X {x} Å/px, Y {y} Å/px" in msg, msg
        assert "resample" in msg and "--pixel-size" in msg and "\n" not in msg
    # a pixel size given by the user overrides the calibration
    im = read_image(one, pixel_size_A=0.5)
    assert im.pixel_size_A == 0.5 and im.metadata["pixel_size_source"] == "user"
    s = read_series(stack, pixel_size_A=0.5)
    assert len(s) == 3 and s.pixel_size_A == 0.5
    np.testing.assert_array_equal(s[2].data, image[2])


def test_tiff_square_imagej_stack_keeps_its_calibration(tmp_path):
    p = _write(tmp_path / "stack.tif", _stack(), "imagej")
    s = read_series(p)
    assert len(s) == N_PAGES
    assert s.pixel_size_A == pytest.approx(0.5, rel=1e-4)
    assert s.metadata["pixel_size_source"] == "file"


def test_tiff_written_frame_by_frame_is_a_stack_not_one_image(tmp_path):
    # tifffile's writer makes each page its own series: they are the frames, not previews.
    data = _stack(n=12)
    p = _write(tmp_path / "frames.tif", data, "shaped_per_frame")
    with tifffile.TiffFile(p) as tif:
        assert len(tif.series) == 12  # the layout the test is about
    s = read_series(p, pixel_size_A=0.2)
    assert len(s) == 12
    for k in (0, 5, 11):
        np.testing.assert_array_equal(s[k].data, data[k])


def test_pages_of_another_shape_are_said_to_be_left_out(tmp_path):
    """A newcomer's stack whose second page was cropped: tifffile makes it a series of its own, and the
    file was read as one image without a word of the other page."""
    data = _stack(2, 64, np.uint8)
    p = tmp_path / "ragged.tif"
    tifffile.imwrite(p, data[0])
    tifffile.imwrite(p, data[1][:32, :48], append=True)
    said = (r"2 pages, and 1 of them \(page 2: 48×32 px uint8\) differs from the frames read "
            r"\(64×64 px uint8\): 1 frame")
    with pytest.warns(UserWarning, match=said) as record:
        s = read_series(p, pixel_size_A=0.2)
    assert record[0].filename == __file__
    assert len(s) == 1
    np.testing.assert_array_equal(s[0].data, data[0])


def test_a_preview_page_is_no_frame_left_out(tmp_path):
    """A reduced-resolution page (a preview or thumbnail, NewSubfileType 1) is not a frame."""
    data = _stack(1, 64)[0]
    p = tmp_path / "preview.tif"
    tifffile.imwrite(p, data)
    tifffile.imwrite(p, data[::4, ::4], append=True, subfiletype=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = read_series(p, pixel_size_A=0.2)
    assert len(s) == 1


def _false_colour(image: np.ndarray, cmap: str) -> np.ndarray:
    """``image`` through a matplotlib colour map, as 8-bit ``(3, rows, cols)`` channels."""
    from matplotlib import colormaps

    norm = (image - image.min()) / (image.max() - image.min())
    rgb = (colormaps[cmap](norm)[..., :3] * 255).astype(np.uint8)
    return np.moveaxis(rgb, -1, 0)


@pytest.mark.parametrize("cmap", ["jet", "viridis", "gray"])
def test_colour_channels_stored_as_three_pages_are_refused_not_read_as_frames(tmp_path: Path, cmap: str
                                                                                ) -> None:
    """A newcomer's (stop 39) false-colour exports, one page per channel, were 3 "frames": 5 wrong labels."""
    from clusterspy.errors import ImageDataError
    from clusterspy.series import classify_series
    from helpers import blob

    chw = _false_colour(blob(96, noise=20.0), cmap)
    path = tmp_path / "rgb_pages.tif"
    tifffile.imwrite(path, chw, photometric="minisblack")
    pages = r"rgb_pages\.tif holds 3 pages of 8-bit data that are the colour channels of one image"
    with pytest.raises(ImageDataError, match=pages):
        read_series(path, pixel_size_A=0.2)
    np.save(tmp_path / "rgb.npy", chw)
    with pytest.raises(ImageDataError, match="colour channels"):
        read_series(tmp_path / "rgb.npy", pixel_size_A=0.2)
    with pytest.raises(ImageDataError, match="colour channels"):
        classify_series(chw, pixel_size_A=0.2, out=None)


@pytest.mark.parametrize("mean", [0.05, 0.3, 2.0, 30.0])
def test_three_frames_of_8_bit_counts_are_a_series(tmp_path: Path, mean: float) -> None:
    """Independent frames take about the product of their values: never taken for colour channels."""
    frames = np.random.default_rng(2).poisson(mean, (3, 64, 64)).astype(np.uint8)
    frames[:, 20:40, 20:40] += 3  # something to see
    path = tmp_path / "counts.tif"
    tifffile.imwrite(path, frames, photometric="minisblack")
    assert len(read_series(path, pixel_size_A=0.2)) == 3


def test_a_planar_rgb_tiff_is_named_a_colour_image(tmp_path: Path) -> None:
    from clusterspy.errors import ImageDataError
    from helpers import blob

    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, _false_colour(blob(64), "viridis"), photometric="rgb", planarconfig="separate")
    with pytest.raises(ImageDataError, match=r"planar\.tif is a colour \(RGB\) image stored plane by plane"):
        read_image(path, pixel_size_A=0.2)


def test_a_tiff_calibrated_in_centimetres_is_read_and_a_print_resolution_is_not(tmp_path: Path) -> None:
    """A TIFF's own resolution unit (cm, inch) is a calibration when it gives a microscope's pixel size
    (a newcomer's PtIr at 8.26·10⁸ px/cm = 0.1211 Å/px was "uncalibrated", stop 39); 72 dpi is a printer's."""
    from helpers import blob

    path = tmp_path / "cm.tif"
    tifffile.imwrite(path, blob(64), resolution=(1e8 / 0.1211, 1e8 / 0.1211), resolutionunit="CENTIMETER")
    assert read_image(path).pixel_size_A == pytest.approx(0.1211, rel=1e-6)
    inch = tmp_path / "inch.tif"
    tifffile.imwrite(inch, blob(64), resolution=(2.54e8 / 0.3, 2.54e8 / 0.3), resolutionunit="INCH")
    assert read_image(inch).pixel_size_A == pytest.approx(0.3, rel=1e-6)
    printed = tmp_path / "72dpi.tif"
    tifffile.imwrite(printed, blob(64), resolution=(72, 72), resolutionunit="INCH")
    with pytest.raises(CalibrationError, match="has no pixel-size calibration"):
        read_image(printed)


@pytest.mark.parametrize("odd", ["shape", "type", "colour"])
def test_a_stack_with_one_odd_page_keeps_its_other_frames_and_says_so(tmp_path, odd):
    """A newcomer's stacks (stop 39) with one page of another type or in colour were read as one frame
    (5 of 6 lost, no word); one of another shape had made the rest "truncated", 2 of them lost."""
    data = _stack(6, 40, np.float32)
    p = tmp_path / f"odd_{odd}.tif"
    for k in range(6):
        page = data[k]
        if k == 2:
            page = {"shape": page[:30, :36], "type": page.astype(np.uint16),
                    "colour": np.repeat(page.astype(np.uint8)[..., None], 3, axis=2)}[odd]
        tifffile.imwrite(p, page, append=k > 0)
    said = r"6 pages, and 1 of them \(page 3: .*\) differs from the frames read \(40×40 px float32\): 5 frame"
    with pytest.warns(UserWarning, match=said):
        s = read_series(p, pixel_size_A=0.2)
    assert len(s) == 5 and s.metadata["pages_left_out"] == [3]
    for frame, page in zip(range(5), (0, 1, 3, 4, 5), strict=True):
        np.testing.assert_array_equal(s[frame].data, data[page])
