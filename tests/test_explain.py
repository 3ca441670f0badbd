"""Occlusion saliency: it must point at the pixels the classifier really uses."""

from __future__ import annotations

import numpy as np
import pytest

from clusterspy.errors import ImageDataError
from clusterspy.explain import occlusion_saliency, saliency_overlay


class QuadrantModel:
    """A classifier whose evidence for class 0 is the brightness of the top-left quadrant only."""

    crop_px = 24
    pixel_size_A = 0.4

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        x = np.asarray(crops, float)
        evidence = x[:, :12, :12].mean(axis=(1, 2)) * 8.0
        p0 = 1 / (1 + np.exp(-(evidence - 2.0)))
        rest = (1 - p0) / 3
        return np.stack([p0, rest, rest, rest], axis=1)


def test_saliency_marks_the_region_the_model_uses() -> None:
    rng = np.random.default_rng(0)
    crop = rng.random((24, 24)) * 0.1
    crop[:12, :12] += 1.0  # class-0 evidence
    crop[12:, 12:] += 1.0  # bright, but ignored by the model
    sal = occlusion_saliency(QuadrantModel(), crop, patch_px=4)
    assert sal.shape == (24, 24) and sal.dtype == np.float32
    assert sal.max() == pytest.approx(1.0)
    assert sal.min() >= 0
    assert sal[:12, :12].mean() > 0.3
    assert sal[12:, 12:].max() == 0.0  # occluding ignored pixels changes nothing
    assert sal[:12, 12:].max() == 0.0


def test_batch_matches_single_and_explains_a_given_class() -> None:
    rng = np.random.default_rng(1)
    crops = rng.random((3, 24, 24)).astype(np.float32)
    model = QuadrantModel()
    batch = occlusion_saliency(model, crops, patch_px=6, class_index=np.zeros(3, int))
    single = occlusion_saliency(model, crops[1], patch_px=6, class_index=np.zeros(1, int))
    np.testing.assert_allclose(batch[1], single, atol=1e-6)


def test_wrong_crop_shape_is_a_clear_error() -> None:
    with pytest.raises(ImageDataError, match="24, 24"):
        occlusion_saliency(QuadrantModel(), np.zeros((2, 30, 30)))


def test_overlay_is_rgb_in_unit_range() -> None:
    rgb = saliency_overlay(np.arange(100.0).reshape(10, 10), np.linspace(0, 1, 100).reshape(10, 10))
    assert rgb.shape == (10, 10, 3)
    assert 0 <= rgb.min() and rgb.max() <= 1


def test_shipped_model_looks_at_the_cluster_not_the_vacuum() -> None:
    from clusterspy.detection import crop_cluster, detect_clusters
    from clusterspy.io import read_series
    from clusterspy.predict import load_model
    from clusterspy.workflows import EXAMPLE_SERIES

    model = load_model()
    frame = read_series(EXAMPLE_SERIES)[0]
    crop = crop_cluster(frame, detect_clusters(frame)[0], model.pixel_size_A, model.crop_px)
    sal = occlusion_saliency(model, crop)
    n = model.crop_px
    rows, cols = np.mgrid[:n, :n]
    radius_px = np.hypot(rows - n / 2, cols - n / 2)
    inside = sal[radius_px < 12 / model.pixel_size_A].mean()  # the ~2.4 nm cluster
    outside = sal[radius_px > 18 / model.pixel_size_A].mean()  # vacuum / support corners
    assert inside > 3 * outside + 1e-3, (inside, outside)
