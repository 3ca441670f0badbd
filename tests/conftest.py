"""Shared fixtures: the real-data folder (skipped cleanly when absent) and a small synthetic image.

Helpers that test modules import (``SHARED``, ``blob``, ``toy_sample``) live in :mod:`helpers`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

#: This folder, for the test modules and their child processes that import :mod:`helpers`.
TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from helpers import SHARED, blob  # noqa: E402


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; the test is skipped when the folder is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED


@pytest.fixture
def blob_image():
    """A calibrated 64×64 image (0.5 Å/px) of one bright blob."""
    from clusterspy.image import Image

    return Image(blob(), 0.5, {"source": "synthetic blob"})
