"""Reading images and series with their pixel size [Å/px]; atomic writers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clusterspy.errors import CalibrationError, ImageDataError, InputFileError
from clusterspy.io import (
    SUPPORTED_EXTENSIONS,
    as_image,
    read_image,
    read_series,
    units_to_angstrom,
    write_csv,
    write_json,
)
from helpers import blob


@pytest.mark.parametrize(("scale", "units", "expected"), [
    (1.249, "nm", 12.49), (7.498, "pm", 0.07498), (0.0012490, "µm", 12.49),
    (0.0012490, "μm", 12.49), (0.5, "Å", 0.5), (2e-10, "m", 2.0), (1.0, "<undefined>", None),
])
def test_units_to_angstrom(scale, units, expected):
    got = units_to_angstrom(scale, units)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_reciprocal_units_are_refused():
    with pytest.raises(CalibrationError, match="diffraction"):
        units_to_angstrom(0.1, "1/nm")


@pytest.mark.shared
def test_jeol_dm4_pixel_size(shared_data):
    im = read_image(shared_data / "widefield/particlespy/JEOL_HAADF_Image.dm4")
    assert im.shape == (112, 112)
    assert im.pixel_size_A == pytest.approx(12.49, abs=1e-3)
    assert im.data.dtype == np.float32
    assert im.metadata["pixel_size_source"] == "file"


@pytest.mark.shared
def test_velox_emd_pixel_size_and_haadf(shared_data):
    im = read_image(shared_data / "real_atomic/Au_nanoparticle_temul.emd")
    assert im.shape == (2048, 2048)
    assert im.pixel_size_A == pytest.approx(0.07498, abs=1e-5)
    assert im.metadata["title"] == "HAADF"


@pytest.mark.shared
@pytest.mark.parametrize(("name", "pixel", "shape"), [
    ("real_atomic/PtIr_fcc_statstem.npz", 0.1211, (512, 512)),
    ("real_atomic/Pb_fcc_statstem.npz", 0.22, (291, 341)),
])
def test_statstem_npz(shared_data, name, pixel, shape):
    im = read_image(shared_data / name)
    assert im.pixel_size_A == pytest.approx(pixel)
    assert im.shape == shape


@pytest.mark.shared
def test_series_npz_lazy(shared_data):
    s = read_series(shared_data / "series_sim/statstem_HMM_series_sim.npz")
    assert len(s) == 5
    assert s.pixel_size_A == pytest.approx(0.125)
    frames = list(s)
    assert [f.metadata["frame"] for f in frames] == [0, 1, 2, 3, 4]
    assert s[-1].shape == (361, 361)
    with pytest.raises(IndexError):
        s[5]
    with pytest.raises(ImageDataError, match="read_series"):
        read_image(shared_data / "series_sim/statstem_HMM_series_sim.npz")


def test_user_pixel_size_overrides_file(tmp_path):
    p = tmp_path / "a.npz"
    np.savez(p, image=blob(), pixel_size_A=0.3)
    im = read_image(p, pixel_size_A=0.25)
    assert im.pixel_size_A == 0.25
    assert im.metadata["pixel_size_source"] == "user"
    assert im.metadata["file_pixel_size_A"] == pytest.approx(0.3)
    assert read_image(p).pixel_size_A == pytest.approx(0.3)


def test_tiff_imagej_nm(tmp_path):
    import tifffile

    p = tmp_path / "ij.tif"
    # ImageJ: resolution in px per unit, unit 'nm' → 0.05 nm/px = 0.5 Å/px
    tifffile.imwrite(p, blob(), imagej=True, resolution=(20.0, 20.0),
                     metadata={"unit": "nm"})
    im = read_image(p)
    assert im.pixel_size_A == pytest.approx(0.5, rel=1e-4)


def test_hspy_roundtrip(tmp_path):
    hs = pytest.importorskip("hyperspy.api")
    s = hs.signals.Signal2D(blob())
    for ax in s.axes_manager.signal_axes:
        ax.scale, ax.units = 25.0, "pm"
    p = tmp_path / "a.hspy"
    s.save(p)
    im = read_image(p)
    assert im.pixel_size_A == pytest.approx(0.25)
    np.testing.assert_allclose(im.data, blob())


def test_png_needs_user_pixel_size(tmp_path):
    from PIL import Image as PILImage

    p = tmp_path / "a.png"
    PILImage.fromarray((blob() / 4).astype(np.uint8)).save(p)
    with pytest.raises(CalibrationError, match="pixel"):
        read_image(p)
    im = read_image(p, pixel_size_A=0.2)
    assert im.shape == (64, 64) and im.pixel_size_A == 0.2


def test_npy_stack_and_folder_series(tmp_path):
    stack = np.stack([blob(seed=i) for i in range(3)])
    np.save(tmp_path / "stack.npy", stack)
    s = read_series(tmp_path / "stack.npy", pixel_size_A=0.2)
    assert len(s) == 3 and s.shape == (3, 64, 64)
    np.testing.assert_allclose(s[1].data, stack[1])
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        np.savez(folder / f"f{i:02d}.npz", image=stack[i], pixel_size_A=0.2)
    s = read_series(folder)
    assert len(s) == 3 and s.pixel_size_A == pytest.approx(0.2)
    np.testing.assert_allclose(s[2].data, stack[2])


def test_npz_frame_time(tmp_path):
    p = tmp_path / "s.npz"
    np.savez(p, frames=np.stack([blob(seed=i) for i in range(2)]), pixel_size_A=0.2,
             frame_time_s=0.5)
    s = read_series(p)
    assert s.frame_time_s == 0.5
    assert s[1].metadata["time_s"] == 0.5


def test_unsupported_lists_formats(tmp_path):
    p = tmp_path / "a.xyz"
    p.write_text("hello")
    with pytest.raises(InputFileError) as err:
        read_image(p)
    for ext in (".dm4", ".emd", ".tif", ".npz"):
        assert ext in str(err.value)
    assert set(SUPPORTED_EXTENSIONS) >= {".dm3", ".dm4", ".emd", ".tif", ".tiff", ".hspy",
                                         ".zspy", ".png", ".jpg", ".npy", ".npz"}


def test_as_image_array():
    im = as_image(blob(), 0.2)
    assert im.pixel_size_A == 0.2
    with pytest.raises(CalibrationError):
        as_image(blob())


def test_writers_are_atomic(tmp_path):
    rows = [{"file": "a", "cluster": 0, "probabilities": {"fcc": np.float32(0.5)}}]
    out = write_csv(rows, tmp_path / "r.csv")
    assert out.read_text().splitlines()[0] == "file,cluster,probabilities_fcc"
    write_json(rows, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())[0]["probabilities"]["fcc"] == 0.5
    # a failure while serialising leaves the old file intact and no temp file behind
    with pytest.raises(ValueError):
        write_json([{"x": float("nan")}], tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())[0]["file"] == "a"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["r.csv", "r.json"]


def test_one_table_of_readers(tmp_path):
    """Every extension is declared once (io.formats.FORMATS): the public list, the message for an
    unsupported file and the files a folder series picks up all come from it."""
    from clusterspy.io.formats import FORMATS, reader_for

    assert SUPPORTED_EXTENSIONS == {ext: f.description for ext, f in FORMATS.items()}
    assert all(callable(reader_for(ext)) for ext in FORMATS)
    bad = tmp_path / "image.xyz"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputFileError, match=r"unsupported file format '\.xyz'") as err:
        read_image(bad)
    assert all(ext in str(err.value) for ext in FORMATS)
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(2):
        np.savez(folder / f"f{k}.npz", image=blob(seed=k), pixel_size_A=0.3)
    (folder / "notes.txt").write_text("not a frame")
    assert len(read_series(folder)) == 2


def test_resolve_pixel_size_user_wins_and_the_file_value_is_kept():
    from clusterspy.image import resolve_pixel_size

    md: dict = {}
    assert resolve_pixel_size("a.dm4", 0.25, 0.3, md) == 0.3
    assert md == {"pixel_size_source": "user", "file_pixel_size_A": 0.25}
    md = {}
    assert resolve_pixel_size("a.dm4", 0.25, None, md) == 0.25 and md["pixel_size_source"] == "file"
    with pytest.raises(CalibrationError, match=r"a\.png has no pixel-size calibration"):
        resolve_pixel_size("a.png", None, None, {})
    with pytest.raises(CalibrationError, match="non-square pixels"):
        resolve_pixel_size("a.tif", None, None, {"non_square_pixel_A": {"x": 0.2, "y": 0.3}})
    assert resolve_pixel_size("a.tif", None, 0.2, {"non_square_pixel_A": {"x": 0.2, "y": 0.3}}) == 0.2
    with pytest.raises(CalibrationError, match="implausible"):
        resolve_pixel_size("a.dm4", 5000.0, None, {})


def _emd(path, signals: dict[str, np.ndarray], pixel_A: float = 0.3):
    """A Berkeley (NCEM) EMD holding one 2-D image signal per ``{title: image}`` (stored
    transposed: RosettaSciIO reads NCEM ``dim1`` as x)."""
    h5py = pytest.importorskip("h5py")
    pytest.importorskip("rsciio")
    with h5py.File(path, "w") as f:
        f.attrs["version_major"], f.attrs["version_minor"] = 0, 2
        for title, image in signals.items():
            group = f.require_group("data").create_group(title)
            group.attrs["emd_group_type"] = 1
            group.create_dataset("data", data=image.T)
            for i, name in ((1, "x"), (2, "y")):
                dim = group.create_dataset(f"dim{i}", data=np.arange(image.shape[2 - i]) * pixel_A / 10)
                dim.attrs["name"], dim.attrs["units"] = name, "nm"
    return path


def test_signal_chooses_among_untitled_signals_by_index_or_title(tmp_path):
    a, b = blob(seed=1)[:, :48], blob(seed=2)[:, :48]  # not square: a transposed read would show
    path = _emd(tmp_path / "two.emd", {"channel A": a, "channel B": b})
    with pytest.raises(InputFileError, match=r"2 image signals.*0: 'channel A' \(64×48\), "
                                             r"1: 'channel B' \(64×48\).*--signal"):
        read_image(path)
    with pytest.raises(InputFileError, match="--signal"):
        read_series(path)
    for choice, want, index in ((0, a, 0), (1, b, 1), ("channel B", b, 1), ("Channel a", a, 0),
                                ("1", b, 1)):
        im = read_image(path, signal=choice)
        np.testing.assert_array_equal(im.data, want)
        assert im.metadata["signal_index"] == index and im.pixel_size_A == pytest.approx(0.3)
        frames = read_series(path, signal=choice)
        assert len(frames) == 1
        np.testing.assert_array_equal(frames[0].data, want)
    np.testing.assert_array_equal(as_image(path, signal="channel A").data, a)
    for bad in (2, -1, "channel C"):
        with pytest.raises(InputFileError, match=r"no signal .*its signals: 0: 'channel A'"):
            read_image(path, signal=bad)


def test_a_detector_title_or_a_single_image_needs_no_signal(tmp_path):
    a, b = blob(seed=1), blob(seed=2)
    im = read_image(_emd(tmp_path / "haadf.emd", {"channel A": a, "HAADF": b}))
    np.testing.assert_array_equal(im.data, b)
    assert im.metadata["title"] == "HAADF" and im.metadata["signal_count"] == 2
    one = read_image(_emd(tmp_path / "one.emd", {"channel A": a}))
    np.testing.assert_array_equal(one.data, a)


def test_signal_of_a_one_image_format(tmp_path):
    path = tmp_path / "one.npz"
    np.savez(path, image=blob(), pixel_size_A=0.3)
    assert read_image(path, signal=0).shape == (64, 64)
    with pytest.raises(InputFileError, match="holds one image"):
        read_image(path, signal="HAADF")
    folder = tmp_path / "frames"
    folder.mkdir()
    _emd(folder / "f0.emd", {"channel A": blob(seed=1), "channel B": blob(seed=2)})
    _emd(folder / "f1.emd", {"channel A": blob(seed=3), "channel B": blob(seed=4)})
    frames = read_series(folder, signal=1)
    np.testing.assert_array_equal(frames[1].data, blob(seed=4))
    with pytest.raises(InputFileError, match="--signal"):
        read_series(folder)
