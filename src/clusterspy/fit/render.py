"""Models rendered with the fast simulator on a window of the data's pixel grid.

A *pose* places a model in the window: rotation ``R`` (model → image frame), centre ``(x, y)``
[Å, window frame: x = column × pixel size, y = row × pixel size], a scale ``s`` of the model's
coordinates (the pixel-size correction: the data's pixel size is best explained as
``pixel_size_A / s``) and an extra Gaussian blur (FWHM [Å]) for the probe, source and defocus
that the nominal microscope misses. The intensity scale and offset are not part of the pose:
the normalised cross-correlation (NCC) is blind to them, and :func:`intensity_fit` gives them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from clusterspy.simulation import FastSimulator, Microscope
from clusterspy.simulation.geometry import Scene

_EMPTY = np.zeros((0, 3))
_EMPTY_Z = np.zeros(0, dtype=int)


@dataclass(frozen=True)
class Pose:
    """Where and how a model lies in the window (see the module docstring)."""

    rotation: np.ndarray
    x_A: float
    y_A: float
    scale: float = 1.0
    blur_A: float = 0.5

    def moved(self, **kw: float) -> Pose:
        """A copy with some fields changed."""
        return replace(self, **kw)


@lru_cache(maxsize=8)
def simulator(microscope: Microscope, pixel_size_A: float, shape: tuple[int, int]) -> FastSimulator:
    """The fast simulator of a window (cached: its probe transforms are computed once)."""
    return FastSimulator(microscope, pixel_size_A, shape)


def placed_positions(positions: np.ndarray, pose: Pose) -> np.ndarray:
    """Model positions [Å] in the window frame (z from the entrance surface, ≥ 0)."""
    p = pose.scale * (positions @ np.asarray(pose.rotation).T)
    p[:, 0] += pose.x_A
    p[:, 1] += pose.y_A
    p[:, 2] -= p[:, 2].min()
    return p


def render(models: list[np.ndarray], numbers: int, poses: list[Pose], microscope: Microscope,
           pixel_size_A: float, shape: tuple[int, int]) -> np.ndarray:
    """Noiseless images ``(n, rows, cols)`` of models (positions [Å], model frame) in their poses.

    ``numbers`` is the atomic number of every atom. The blur of each pose is applied after the
    fast simulator, as a Gaussian transfer function on the window.
    """
    sim = simulator(microscope, float(pixel_size_A), tuple(shape))
    scenes = [Scene(placed_positions(m, p), np.full(len(m), numbers), _EMPTY, _EMPTY_Z)
              for m, p in zip(models, poses, strict=True)]
    images = sim.render(scenes)
    return blur(images, np.array([p.blur_A for p in poses]), pixel_size_A)


def blur(images: np.ndarray, fwhm_A: np.ndarray, pixel_size_A: float) -> np.ndarray:
    """Images ``(n, rows, cols)`` convolved with Gaussians of FWHM ``fwhm_A`` [Å] (one per image)."""
    _, rows, cols = images.shape
    ky = np.fft.fftfreq(rows, d=pixel_size_A)
    kx = np.fft.rfftfreq(cols, d=pixel_size_A)
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    sigma = np.maximum(np.asarray(fwhm_A, dtype=float), 0.0) / 2.3548
    transfer = np.exp(-2.0 * np.pi**2 * sigma[:, None, None] ** 2 * k2[None])
    return np.fft.irfft2(np.fft.rfft2(images) * transfer, s=(rows, cols)).astype(np.float32)


def ncc_many(templates: np.ndarray, data: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """NCC (Pearson) of every template ``(n, rows, cols)`` or ``(n, pixels)`` with ``data`` in ``mask``."""
    t = templates.reshape(len(templates), -1).astype(np.float64)
    d = np.asarray(data, dtype=np.float64).ravel()
    if mask is not None:
        sel = np.asarray(mask).ravel()
        t, d = t[:, sel], d[sel]
    t = t - t.mean(axis=1, keepdims=True)
    d = d - d.mean()
    den = np.sqrt((t * t).sum(axis=1) * (d * d).sum())
    return np.where(den > 0, (t @ d) / np.where(den > 0, den, 1.0), 0.0)


def intensity_fit(model: np.ndarray, data: np.ndarray) -> tuple[float, float]:
    """Least-squares ``data ≈ gain · model + offset``: ``(gain, offset)``."""
    m = np.asarray(model, dtype=float).ravel()
    d = np.asarray(data, dtype=float).ravel()
    a = np.stack([m, np.ones_like(m)], axis=1)
    (gain, offset), *_ = np.linalg.lstsq(a, d, rcond=None)
    return float(gain), float(offset)
