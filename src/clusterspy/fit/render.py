"""Models rendered with the fast simulator on a window of the data's pixel grid.

A *pose* places a model in the window: rotation ``R`` (model → image frame), centre ``(x, y)``
[Å, window frame: x = column × pixel size, y = row × pixel size], a scale ``s`` of the model's
coordinates (the pixel-size correction: the data's pixel size is best explained as
``pixel_size_A / s``), a linear scan distortion of the image frame (``aspect``: x stretched by
``a`` and y by ``1/a``, a pixel-size ratio of ``a²`` between the fast and slow scan directions;
``shear``: x moved by ``γ·y``, drift along the fast scan during the slow scan) and an extra Gaussian
blur (FWHM [Å]) for the probe, source and defocus that the nominal microscope misses. The
intensity scale and offset are not part of the pose: the normalised cross-correlation (NCC) is
blind to them, and :func:`intensity_fit` gives them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import scipy.fft as sfft

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
    aspect: float = 1.0
    shear: float = 0.0

    def moved(self, **kw: float) -> Pose:
        """A copy with some fields changed."""
        return replace(self, **kw)


@lru_cache(maxsize=8)
def simulator(microscope: Microscope, pixel_size_A: float, shape: tuple[int, int],
              oversample: int | None = None) -> FastSimulator:
    """The fast simulator of a window (cached: its probe transforms are computed once);
    ``oversample``: :class:`clusterspy.simulation.FastSimulator`'s."""
    return FastSimulator(microscope, pixel_size_A, shape, oversample=oversample)


def placed_positions(positions: np.ndarray, pose: Pose) -> np.ndarray:
    """Model positions [Å] in the window frame (z from the entrance surface, ≥ 0), the scan distortion
    applied about the model's centre."""
    p = pose.scale * (positions @ np.asarray(pose.rotation).T)
    if pose.aspect != 1.0 or pose.shear != 0.0:
        p[:, 0] = pose.aspect * p[:, 0] + pose.shear * p[:, 1]
        p[:, 1] /= pose.aspect
    p[:, 0] += pose.x_A
    p[:, 1] += pose.y_A
    p[:, 2] -= p[:, 2].min()
    return p


def render(models: list[np.ndarray], numbers: int, poses: list[Pose], microscope: Microscope,
           pixel_size_A: float, shape: tuple[int, int], oversample: int | None = None) -> np.ndarray:
    """Noiseless images ``(n, rows, cols)`` of models (positions [Å], model frame) in their poses.

    ``numbers`` is the atomic number of every atom. The blur of each pose is applied after the
    fast simulator, as a Gaussian transfer function on the window. ``oversample``: the fast
    simulator's (default: its own choice, see :func:`simulator`).
    """
    images = render_unblurred(models, numbers, poses, microscope, pixel_size_A, shape, oversample)
    return blur(images, np.array([p.blur_A for p in poses]), pixel_size_A)


def render_unblurred(models: list[np.ndarray], numbers: int, poses: list[Pose], microscope: Microscope,
                     pixel_size_A: float, shape: tuple[int, int], oversample: int | None = None
                     ) -> np.ndarray:
    """The fast simulator's images ``(n, rows, cols)`` of :func:`render`, before the poses' blur."""
    sim = simulator(microscope, float(pixel_size_A), tuple(shape), oversample)
    scenes = [Scene(placed_positions(m, p), np.full(len(m), numbers), _EMPTY, _EMPTY_Z)
              for m, p in zip(models, poses, strict=True)]
    return sim.render(scenes)


def geometry_key(pose: Pose) -> tuple:
    """What places the atoms of a pose (rotation, centre, scale, scan distortion; not the blur), rounded
    to 1e-9: a move and its reverse (``R(−θ) R(θ) R``) give the key of the pose they started from."""
    rot = np.round(np.asarray(pose.rotation, dtype=float), 9) + 0.0
    return (rot.tobytes(), *(round(float(v), 9) + 0.0
                             for v in (pose.x_A, pose.y_A, pose.scale, pose.aspect, pose.shear)))


#: Windows of at most this many pixels are blurred by matrix products (the Gaussian is separable:
#: ``C_y · image · C_xᵀ`` with circulant ``C``), larger ones by FFT: on 100–160 px windows, whose
#: sizes have large prime factors (122 = 2 · 61), the products took 0.1–0.3 ms an image, the FFTs
#: 0.2–0.6 ms.
MATMUL_BLUR_PIXELS = 180 * 180


def blur(images: np.ndarray, fwhm_A: np.ndarray, pixel_size_A: float) -> np.ndarray:
    """Images ``(n, rows, cols)`` convolved with Gaussians of FWHM ``fwhm_A`` [Å] (one per image).

    The convolution is periodic on the window, with the Gaussian's transfer function sampled at the
    window's discrete frequencies; computed in single precision (within 1e-6 of double precision,
    relative to the peak), once per distinct FWHM, by :data:`MATMUL_BLUR_PIXELS` the one way or
    the other.
    """
    n, rows, cols = images.shape
    px = float(pixel_size_A)
    sigma = np.maximum(np.asarray(fwhm_A, dtype=float).reshape(-1), 0.0) / 2.3548
    distinct, which = np.unique(sigma, return_inverse=True)
    which = which.ravel()
    images = np.asarray(images, dtype=np.float32)
    if rows * cols <= MATMUL_BLUR_PIXELS:
        out = np.empty((n, rows, cols), dtype=np.float32)
        for j, s in enumerate(distinct):
            sel = which == j
            cy, cx = _circulant_gaussian(rows, px, float(s)), _circulant_gaussian(cols, px, float(s))
            part = (images[sel].reshape(-1, cols) @ cx).reshape(-1, rows, cols)  # cx is symmetric
            out[sel] = np.matmul(cy, part)
        return out
    k2 = _frequencies_squared(rows, cols, px)
    transfer = np.exp(-2.0 * np.pi**2 * distinct[:, None, None] ** 2 * k2[None]).astype(np.float32)
    spec = sfft.rfft2(images)
    spec *= transfer[which]
    return sfft.irfft2(spec, s=(rows, cols)).astype(np.float32, copy=False)


@lru_cache(maxsize=256)
def _circulant_gaussian(n: int, pixel_size_A: float, sigma_A: float) -> np.ndarray:
    """The ``(n, n)`` float32 circulant (symmetric) matrix of the periodic Gaussian blur of standard
    deviation ``sigma_A`` [Å] along one axis of ``n`` pixels (transfer ``exp(−2π²σ²k²)`` at the
    axis's discrete frequencies; read-only)."""
    k = np.fft.fftfreq(n, d=pixel_size_A)
    kernel = np.fft.ifft(np.exp(-2.0 * np.pi**2 * sigma_A**2 * k**2)).real
    i = np.arange(n)
    c = kernel[(i[:, None] - i[None, :]) % n].astype(np.float32)
    c.setflags(write=False)
    return c


@lru_cache(maxsize=16)
def _frequencies_squared(rows: int, cols: int, pixel_size_A: float) -> np.ndarray:
    """``|k|²`` [Å⁻²] of a window's ``rfft2`` layout (read-only)."""
    ky = np.fft.fftfreq(rows, d=pixel_size_A)
    kx = np.fft.rfftfreq(cols, d=pixel_size_A)
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    k2.setflags(write=False)
    return k2


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


def ncc_with_tail(templates: np.ndarray, tails: np.ndarray, data: np.ndarray, mask: np.ndarray | None = None
                  ) -> np.ndarray:
    """Correlation of ``data`` with its best model ``g · template + h · tail + c`` (``g, h ≥ 0``), per
    template ``(n, rows, cols)`` and its tail image.

    The multiple correlation coefficient of the two-regressor least-squares fit; where that fit
    gives a negative weight, the better one-regressor fit (at ``h = 0`` it is :func:`ncc_many`).
    """
    n = len(templates)
    sel = None if mask is None else np.asarray(mask).ravel()
    a = templates.reshape(n, -1).astype(np.float64)
    b = tails.reshape(n, -1).astype(np.float64)
    d = np.asarray(data, dtype=np.float64).ravel()
    if sel is not None:
        a, b, d = a[:, sel], b[:, sel], d[sel]
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    d = d - d.mean()
    aa, bb, ab = (a * a).sum(axis=1), (b * b).sum(axis=1), (a * b).sum(axis=1)
    ad, bd, dd = a @ d, b @ d, float(d @ d)
    if dd <= 0:
        return np.zeros(n)
    det = aa * bb - ab * ab
    ok = det > 1e-12 * aa * bb
    safe = np.where(ok, det, 1.0)
    g, h = (bb * ad - ab * bd) / safe, (aa * bd - ab * ad) / safe
    both = ok & (g >= 0) & (h >= 0)
    r2 = np.where(both, (g * ad + h * bd) / dd, 0.0)
    one_a = np.where(aa > 0, np.maximum(ad, 0) ** 2 / (np.where(aa > 0, aa, 1.0) * dd), 0.0)
    one_b = np.where(bb > 0, np.maximum(bd, 0) ** 2 / (np.where(bb > 0, bb, 1.0) * dd), 0.0)
    r2 = np.where(both, r2, np.maximum(one_a, one_b))
    r = np.sqrt(np.clip(r2, 0.0, 1.0))
    return np.where(both | (ad >= 0), r, -r)


def intensity_fit_tail(model: np.ndarray, tail: np.ndarray, data: np.ndarray) -> tuple[float, float, float]:
    """Least-squares ``data ≈ gain · model + tail_gain · tail + offset`` with both gains ≥ 0:
    ``(gain, tail_gain, offset)`` (:func:`ncc_with_tail`'s model)."""
    from scipy.optimize import lsq_linear

    m = np.asarray(model, dtype=float).ravel()
    t = np.asarray(tail, dtype=float).ravel()
    d = np.asarray(data, dtype=float).ravel()
    a = np.stack([m, t, np.ones_like(m)], axis=1)
    res = lsq_linear(a, d, bounds=([0.0, 0.0, -np.inf], [np.inf, np.inf, np.inf]))
    return float(res.x[0]), float(res.x[1]), float(res.x[2])


def intensity_fit(model: np.ndarray, data: np.ndarray) -> tuple[float, float]:
    """Least-squares ``data ≈ gain · model + offset``: ``(gain, offset)``."""
    m = np.asarray(model, dtype=float).ravel()
    d = np.asarray(data, dtype=float).ravel()
    a = np.stack([m, np.ones_like(m)], axis=1)
    (gain, offset), *_ = np.linalg.lstsq(a, d, rcond=None)
    return float(gain), float(offset)
