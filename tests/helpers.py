"""Test helpers shared by the test modules (and their child processes): the real-data path,
small synthetic images, a cheap synthetic dataset sample (no simulation)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.isomers import CLASSES

#: The real data (read-only, never copied into the repository): ``../shared/data``.
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def temul_au() -> Any:
    """The TEMUL Au .emd of ``../shared/data`` as an ``Image`` (the test is skipped without it)."""
    import pytest

    from clusterspy.io import read_image

    path = SHARED / "real_atomic" / "Au_nanoparticle_temul.emd"
    if not path.exists():
        pytest.skip("../shared/data is absent")
    return read_image(path)


def blob(n: int = 64, seed: int = 0, *, noise: float = 5.0) -> np.ndarray:
    """A ``(n, n)`` float32 image: one Gaussian blob (σ = n/8 px) on a background, with noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    img = 100 + 900 * np.exp(-((xx - n / 2) ** 2 + (yy - n / 2) ** 2) / (2 * (n / 8) ** 2))
    return (img + rng.normal(0, noise, img.shape)).astype(np.float32)


def toy_sample(spec: dict[str, Any], index: int, *, delay_s: float = 0.0
               ) -> tuple[np.ndarray, int, dict[str, Any]]:
    """One example in the shape of :func:`clusterspy.datasets.make_sample`'s output.

    Class ``k = index % 4`` is a Gaussian-windowed lattice with a class-dependent spacing plus
    noise; deterministic in ``(spec["seed"], index)``. ``delay_s`` makes each example take at
    least that long [s] (to interrupt a generation mid-way).
    """
    rng = np.random.default_rng([int(spec["seed"]), int(index)])
    label = int(index) % len(CLASSES)
    n = int(spec["crop_px"])
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    period = 3.0 + 1.5 * label
    phase = rng.uniform(0, 2 * np.pi, 2)
    img = (np.cos(2 * np.pi * xx / period + phase[0]) * np.cos(2 * np.pi * yy / period + phase[1])
           + 1.0)
    r2 = (xx - n / 2) ** 2 + (yy - n / 2) ** 2
    img *= np.exp(-r2 / (2 * (n / 4) ** 2))
    img = img + rng.normal(0, 0.3, img.shape)
    if delay_s:
        time.sleep(delay_s)
    return img.astype(np.float32), label, {"label": CLASSES[label], "period_px": period}
