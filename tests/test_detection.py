"""Finding clusters in fields and atomic-resolution images; crops at the model pixel size."""

from __future__ import annotations

import numpy as np
import pytest

from clusterspy.detection import crop_cluster, detect_clusters
from clusterspy.errors import ConfigError
from clusterspy.image import Image
from helpers import SHARED


def field(centres_A, diameters_A, pixel_A=1.0, size_px=256, dark=False, seed=0,
          columns_A=None) -> Image:
    """Synthetic HAADF field: flat-topped discs (optionally with atomic columns) + noise."""
    rng = np.random.default_rng(seed)
    yy, xx = (np.mgrid[:size_px, :size_px]) * pixel_A
    img = 200.0 + 30.0 * xx / xx.max()  # sloped background
    for (cx, cy), d in zip(centres_A, diameters_A, strict=True):
        r = np.hypot(xx - cx, yy - cy)
        disc = 1.0 / (1.0 + np.exp((r - d / 2) / (0.6)))
        if columns_A:
            disc = disc * (0.5 + 0.5 * np.cos(2 * np.pi * xx / columns_A)
                           * np.cos(2 * np.pi * yy / columns_A))
        img = img + 400.0 * disc
    img = rng.poisson(img).astype(np.float32)
    if dark:
        img = img.max() + img.min() - img
    return Image(img, pixel_A)


def test_separate_clusters_found_with_sizes():
    centres = [(50, 50), (150, 60), (90, 170), (200, 200)]
    diam = [20, 30, 40, 25]
    im = field(centres, diam)
    dets = detect_clusters(im, min_diameter_A=10, max_diameter_A=80)
    assert len(dets) == 4
    found = sorted((round(d.x_px), round(d.y_px), d.diameter_A) for d in dets)
    for (cx, cy), d_true in zip(sorted(centres), [diam[i] for i in np.argsort(
            [c[0] * 1000 + c[1] for c in centres])], strict=True):
        match = [f for f in found if abs(f[0] - cx) <= 2 and abs(f[1] - cy) <= 2]
        assert match, (cx, cy, found)
        assert match[0][2] == pytest.approx(d_true, rel=0.25)


def test_dark_field_polarity_auto():
    im = field([(60, 60), (180, 150)], [30, 30], dark=True)
    assert len(detect_clusters(im, min_diameter_A=10, max_diameter_A=80)) == 2
    assert len(detect_clusters(im, min_diameter_A=10, max_diameter_A=80, polarity="dark")) == 2


def test_touching_clusters_split_by_watershed():
    im = field([(100, 128), (128, 128)], [30, 30])  # centres 28 Å apart, discs overlap
    dets = detect_clusters(im, min_diameter_A=10, max_diameter_A=80)
    assert len(dets) == 2
    merged = detect_clusters(im, min_diameter_A=10, max_diameter_A=80, split_touching=False)
    assert len(merged) == 1


def test_size_limits():
    im = field([(60, 60), (180, 180)], [12, 50])
    dets = detect_clusters(im, min_diameter_A=20, max_diameter_A=80)
    assert len(dets) == 1 and dets[0].diameter_A > 40


def test_atomic_resolution_single_cluster_is_one_detection():
    # 128² at 0.25 Å/px, a 22 Å cluster made of columns 2.5 Å apart, noisy
    im = field([(16, 16)], [22], pixel_A=0.25, size_px=128, columns_A=2.5, seed=3)
    dets = detect_clusters(im)
    assert len(dets) == 1
    d = dets[0]
    assert abs(d.x_px - 64) < 4 and abs(d.y_px - 64) < 4
    assert d.diameter_A == pytest.approx(22, rel=0.25)


@pytest.mark.shared
def test_real_au_emd_central_particle():
    if not SHARED.is_dir():
        pytest.skip("../shared/data is absent")
    from clusterspy.io import read_image

    im = read_image(SHARED / "real_atomic/Au_nanoparticle_temul.emd")
    dets = detect_clusters(im)
    # the ~3 nm particle with resolved columns at about (x, y) = (1500, 920) px: one detection
    near = [d for d in dets if np.hypot(d.x_px - 1500, d.y_px - 920) < 200]
    assert len(near) == 1
    assert 15 < near[0].diameter_A < 45
    assert len(dets) < 10  # not its atomic columns


def test_crop_rescales_and_centres():
    im = field([(40, 40)], [20], pixel_A=0.5, size_px=160)
    det = detect_clusters(im, min_diameter_A=10, max_diameter_A=60)[0]
    crop = crop_cluster(im, det, pixel_size_A=1.0, crop_px=48)
    assert crop.shape == (48, 48) and crop.dtype == np.float32
    # the cluster (20 Å = 20 px at 1 Å/px) is centred
    yy, xx = np.mgrid[:48, :48]
    w = np.clip(crop - np.median(crop), 0, None)
    assert np.sum(w * xx) / w.sum() == pytest.approx(23.5, abs=1.0)
    assert np.sum(w * yy) / w.sum() == pytest.approx(23.5, abs=1.0)


def test_crop_near_border_padded_with_background():
    im = field([(12, 128)], [16], pixel_A=1.0, size_px=256)
    det = detect_clusters(im, min_diameter_A=8, max_diameter_A=40, exclude_border=False)[0]
    crop = crop_cluster(im, det, pixel_size_A=1.0, crop_px=64)
    left = crop[:, :5]  # outside the image: local background, not zeros
    assert np.all(left > 150) and np.all(left < 300)


def test_bad_parameters():
    im = field([(60, 60)], [20])
    with pytest.raises(ConfigError):
        detect_clusters(im, min_diameter_A=50, max_diameter_A=10)
    with pytest.raises(ConfigError):
        detect_clusters(im, polarity="sideways")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        crop_cluster(im, detect_clusters(im, min_diameter_A=10)[0], 1.0, 2)


def test_block_mean_binning_matches_reshape_mean():
    from clusterspy.detection import _bin

    rng = np.random.default_rng(1)
    a = rng.integers(0, 65535, (103, 77)).astype(np.uint16)
    for f in (1, 2, 3, 5):
        r, c = (103 // f) * f, (77 // f) * f
        ref = a[:r, :c].astype(np.float64).reshape(r // f, f, c // f, f).mean(axis=(1, 3))
        got = _bin(a, f)
        assert got.dtype == np.float32 and got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_coarse_working_pixel_maps_back_to_input_pixels():
    # 0.25 Å/px; working at 2 Å/px = 8× binning: positions and boxes still in input pixels
    im = field([(40, 60)], [30], pixel_A=0.25, size_px=512, seed=5)
    fine = detect_clusters(im, min_diameter_A=10, max_diameter_A=80, working_pixel_A=0.5)
    coarse = detect_clusters(im, min_diameter_A=10, max_diameter_A=80, working_pixel_A=2.0)
    assert len(fine) == len(coarse) == 1
    for d in (fine[0], coarse[0]):
        assert abs(d.x_px - 160) < 3 and abs(d.y_px - 240) < 3  # (40, 60) Å / 0.25 Å/px
        r0, c0, r1, c1 = d.bbox
        assert r0 <= 240 - 55 and r1 >= 240 + 55 and c0 <= 160 - 55 and c1 >= 160 + 55
        assert d.diameter_A == pytest.approx(30, rel=0.15)


def test_cluster_cut_by_the_edge_excluded_by_default():
    im = field([(4, 128), (128, 128)], [20, 20])
    default = detect_clusters(im, min_diameter_A=8, max_diameter_A=40)
    assert len(default) == 1 and abs(default[0].x_px - 128) < 2
    kept = detect_clusters(im, min_diameter_A=8, max_diameter_A=40, exclude_border=False)
    assert len(kept) == 2
    edge = min(kept, key=lambda d: d.x_px)
    assert edge.bbox[1] == 0  # its box starts at the edge


def test_robust_threshold_on_textured_support():
    # clusters on a support with a strong texture at about their own size: Otsu cuts the
    # texture into many false clusters (a texture this far above the noise, ≥ 30 σ, is not checked by
    # the stand-out rule of stop 39); the robust threshold (spread of the smoothed image
    # itself, texture included) keeps to the clusters
    from scipy import ndimage as ndi

    rng = np.random.default_rng(7)
    centres = [(40, 40), (120, 60), (200, 40), (60, 180), (180, 200)]
    im = field(centres, [14] * 5, seed=7)
    texture = ndi.gaussian_filter(rng.normal(0, 1, im.shape), 8)
    textured = Image(im.data + 60.0 * texture / texture.std(), 1.0)

    def score(threshold):
        dets = detect_clusters(textured, min_diameter_A=8, max_diameter_A=40,
                               threshold=threshold)
        hits = sum(any(np.hypot(d.x_px - cx, d.y_px - cy) < 4 for d in dets)
                   for cx, cy in centres)
        return hits, len(dets)

    hits, n = score("robust")
    assert hits == len(centres) and n <= len(centres) + 2
    _, n_otsu = score("otsu")
    assert n_otsu > 2 * n  # what the robust threshold is for


def test_bad_threshold_and_working_pixel():
    im = field([(60, 60)], [20])
    with pytest.raises(ConfigError):
        detect_clusters(im, threshold="magic")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        detect_clusters(im, working_pixel_A=-1.0)
    with pytest.raises(ConfigError):
        detect_clusters(im, background_A=0.0)


def test_a_size_range_wider_than_the_image_does_not_break_the_background():
    """detect_clusters(max_diameter_A=400) on a 64-px image at 0.12 Å/px binned its background copy to
    nothing (IndexError from numpy)."""
    from clusterspy.detection import detect_clusters
    from clusterspy.image import Image
    from helpers import blob

    found = detect_clusters(Image(blob(64), 0.12), min_diameter_A=2.0, max_diameter_A=400.0,
                            exclude_border=False)
    assert len(found) == 1
