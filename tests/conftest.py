"""Shared fixtures: the real-data folder (skipped cleanly when absent) and small synthetic images."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

#: The real data (read-only, never copied into the repository): ``../shared/data``.
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

#: This folder, for child processes that import the test helpers (:mod:`toy_data`).
TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; the test is skipped when the folder is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED


def blob(n: int = 64, seed: int = 0, *, noise: float = 5.0) -> np.ndarray:
    """A ``(n, n)`` float32 image: one Gaussian blob (σ = n/8 px) on a background, with noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    img = 100 + 900 * np.exp(-((xx - n / 2) ** 2 + (yy - n / 2) ** 2) / (2 * (n / 8) ** 2))
    return (img + rng.normal(0, noise, img.shape)).astype(np.float32)


@pytest.fixture
def blob_image():
    """A calibrated 64×64 image (0.5 Å/px) of one bright blob."""
    from clusterspy.image import Image

    return Image(blob(), 0.5, {"source": "synthetic blob"})
