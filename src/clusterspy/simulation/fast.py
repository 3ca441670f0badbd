"""Backend "fast": a calibrated incoherent HAADF model, batched.

Model
-----
HAADF imaging is close to incoherent: the image is the probe intensity convolved with an
object function,

    I(r) = c · Σ_i Z_i^n · g(m_i) · P(r - r_i; Δf - z_i)  ⊛  S(r),

where ``P(r; Δf)`` is the aperture-limited probe intensity at the effective defocus
``Δf - z_i`` an atom at depth ``z_i`` sees (defocus and Cs from :class:`Microscope`; the probe
spreads through the cluster's depth), ``n`` the detector-dependent Z exponent, ``S`` the
Gaussian source and ``c`` a scale to PRISM's units (fraction of the incident beam reaching the
detector). ``g(m) = (1 + b (m - 1))^a`` is a *channelling correction*: ``m_i`` is
the occupancy of the atomic column the atom belongs to (the number of metal atoms within
``column_radius_A`` of it in projection); on zone axes the probe channels along densely occupied
columns, which changes their intensity from the sum of independent atoms (for Au it
saturates: a < 0), which the incoherent model misses. ``n, c, a, b`` (and an extra Gaussian
blur, ``extra_blur_A``) are fitted against PRISM references by
``benchmarks/calibrate_fast.py`` and ship in ``fast_calibration.json``.

Algorithm (vectorised over a batch)
-----------------------------------
Atoms are splatted as weighted delta peaks (bilinear in x, y; linear between depth planes
spaced ``depth_step_A``) onto a periodic grid, one plane per probe depth; each plane is
Fourier transformed once and multiplied by the precomputed transform of the probe intensity at
that depth × the source transfer function ÷ the bilinear splatting kernel; the planes are
summed in Fourier space and inverted with one FFT. The grid is rendered at a pixel size no
coarser than the probe intensity's Nyquist limit ``λ / (4 α)`` (oversampled by an integer factor
when the output pixels are coarser) and then point-sampled at the output pixel centres, like
a scanned probe. FFT sizes are 2^a 3^b 5^c.

Support
-------
Carbon support atoms are splatted like the metal (``Z^n``, no channelling) into one extra
plane at the probe focus of the support's mid-depth: an amorphous support has no columns, so
its image is the sum of independent atoms; this is exact for the incoherent model and cheap
(a few thousand bilinear splats).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from functools import cache
from importlib import resources

import numpy as np
import scipy.fft as sfft

from clusterspy.simulation.geometry import Scene
from clusterspy.simulation.microscope import Microscope

#: Reference inner detector angle [mrad] at which ``z_exponent`` is calibrated.
_REFERENCE_INNER_MRAD = 70.0


@dataclass(frozen=True)
class FastCalibration:
    """Parameters of the fast model (see the module docstring).

    Attributes
    ----------
    z_exponent : float
        Z exponent ``n`` at the reference HAADF detector (inner angle 70 mrad).
    scale : float
        ``c`` [Å²]: ``c · Z^n`` is an atom's cross-section for scattering onto the detector, so
        that ``Σ c Z^n P(r)`` (probe intensity ``P`` normalised to 1 over area, [1/Å²]) is the
        fraction of the beam reaching the detector.
    channelling_a, channelling_b : float
        Channelling correction ``g(m) = (1 + b (m - 1))^a``.
    column_radius_A : float
        Radius [Å] within which atoms count as one column in projection.
    depth_step_A : float
        Spacing [Å] of the probe-depth planes.
    extra_blur_A : float
        FWHM [Å] of an extra Gaussian blur (partial coherence of the PRISM reference).
    max_depth_planes : int
        Cap on the number of depth planes (deeper atoms use the deepest plane).
    """

    z_exponent: float = 1.7
    scale: float = 1.0e-5
    channelling_a: float = 0.0
    channelling_b: float = 1.0
    column_radius_A: float = 0.6
    depth_step_A: float = 8.0
    extra_blur_A: float = 0.0
    max_depth_planes: int = 6

    @classmethod
    def from_dict(cls, d: dict) -> FastCalibration:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict:
        return asdict(self)

    def z_exponent_for(self, microscope: Microscope) -> float:
        """Z exponent for the microscope's detector.

        Calibrated at a 70 mrad inner angle; elsewhere it moves towards the Rutherford value 2
        for higher inner angles and towards 1 for lower ones (a documented heuristic, after
        Hartel et al. 1996 / Krivanek et al. 2010: ~1.4 at 40 mrad, ~1.7 at 70, ~1.9 above 150).
        """
        inner = microscope.detector_mrad[0]
        n0 = self.z_exponent
        if inner >= _REFERENCE_INNER_MRAD:
            return 2.0 - (2.0 - n0) * math.exp(-(inner - _REFERENCE_INNER_MRAD) / 60.0)
        return 1.0 + (n0 - 1.0) * math.exp(-(_REFERENCE_INNER_MRAD - inner) / 60.0)


@cache
def default_calibration() -> FastCalibration:
    """The calibration shipped with the package (``fast_calibration.json``)."""
    try:
        text = resources.files("clusterspy.simulation").joinpath("fast_calibration.json").read_text()
    except FileNotFoundError:
        return FastCalibration()
    return FastCalibration.from_dict(json.loads(text).get("parameters", {}))


def column_occupancy(xy: np.ndarray, radius_A: float) -> np.ndarray:
    """Number of atoms within ``radius_A`` [Å] of each atom in projection (itself included)."""
    if len(xy) == 0:
        return np.zeros(0)
    from scipy.spatial import cKDTree

    return cKDTree(xy).query_ball_point(xy, radius_A, return_length=True).astype(float)


class FastSimulator:
    """Renders noiseless HAADF images of many scenes on one field, in batches.

    Precomputes, once per (microscope, pixel size, shape), the probe transforms for every depth
    plane; :meth:`render` then costs a bilinear splat and a few FFTs per image.

    Parameters
    ----------
    microscope : Microscope
        The microscope.
    pixel_size_A : float
        Output pixel size [Å/px].
    shape : tuple of int
        Output ``(rows, cols)`` [px].
    calibration : FastCalibration, optional
        Model parameters; defaults to the shipped calibration.
    """

    def __init__(
        self,
        microscope: Microscope,
        pixel_size_A: float,
        shape: tuple[int, int],
        calibration: FastCalibration | None = None,
    ) -> None:
        self.microscope = microscope
        self.pixel_size_A = float(pixel_size_A)
        self.shape = (int(shape[0]), int(shape[1]))
        self.calibration = calibration or default_calibration()
        nyquist_A = 1.0 / (2.0 * microscope.probe_band_limit_per_A)
        self.oversample = max(1, math.ceil(self.pixel_size_A / nyquist_A - 1e-6))
        self.render_pixel_A = self.pixel_size_A / self.oversample
        rows, cols = self.shape
        self.render_shape = (
            sfft.next_fast_len(rows * self.oversample, real=True),
            sfft.next_fast_len(cols * self.oversample, real=True),
        )
        ny, nx = self.render_shape
        ky = np.fft.fftfreq(ny, d=self.render_pixel_A)
        kx = np.fft.rfftfreq(nx, d=self.render_pixel_A)
        # divide out the bilinear splatting kernel, apply the source and the extra blur
        kernel = (np.sinc(ky * self.render_pixel_A) ** 2)[:, None] * (np.sinc(kx * self.render_pixel_A) ** 2)[
            None, :
        ]
        blur = Microscope(source_size_A=self.calibration.extra_blur_A).source_transfer(ky, kx)
        self._base = microscope.source_transfer(ky, kx) * blur / kernel
        self._filters: dict[float, np.ndarray] = {}
        self.exponent = self.calibration.z_exponent_for(microscope)

    def _filter(self, depth_A: float) -> np.ndarray:
        """Transfer function (rfft layout, complex64) of the probe at depth ``depth_A`` [Å]."""
        key = round(float(depth_A), 3)
        if key not in self._filters:
            probe = self.microscope.probe_intensity(
                self.render_shape, self.render_pixel_A, self.microscope.defocus_A - key
            )
            # probe as a density [1/Å²]: the image does not depend on the pixel size
            density = probe / self.render_pixel_A**2
            self._filters[key] = (np.fft.rfft2(density) * self._base).astype(np.complex64)
        return self._filters[key]

    def atom_weights(self, scene: Scene) -> tuple[np.ndarray, np.ndarray]:
        """Weights (detector-fraction units) of the metal and the support atoms of a scene."""
        cal = self.calibration
        n = self.exponent
        wm = cal.scale * scene.metal_numbers.astype(float) ** n
        if cal.channelling_a != 0.0 and len(wm):
            m = column_occupancy(scene.metal_positions[:, :2], cal.column_radius_A) - 1.0
            wm = wm * (1.0 + cal.channelling_b * m) ** cal.channelling_a
        ws = cal.scale * scene.support_numbers.astype(float) ** n
        return wm, ws

    def render(self, scenes: list[Scene]) -> np.ndarray:
        """Noiseless images of ``scenes`` (in field coordinates, see ``geometry``).

        Returns
        -------
        numpy.ndarray
            ``(len(scenes), rows, cols)`` float32, in units of the fraction of the incident beam
            reaching the detector.
        """
        cal = self.calibration
        ny, nx = self.render_shape
        step = cal.depth_step_A
        max_depth = max((float(s.metal_positions[:, 2].max()) for s in scenes), default=0.0)
        n_metal = int(min(cal.max_depth_planes, math.ceil(max_depth / step - 1e-9) + 1))
        has_support = any(len(s.support_numbers) for s in scenes)
        support_depth = 0.0
        if has_support:
            support_depth = float(
                np.mean([s.support_positions[:, 2].mean() for s in scenes if len(s.support_numbers)])
            )
        n_planes = n_metal + int(has_support)
        depths = [k * step for k in range(n_metal)] + ([support_depth] if has_support else [])
        filters = np.stack([self._filter(d) for d in depths])

        idx_parts: list[np.ndarray] = []
        w_parts: list[np.ndarray] = []
        r = self.render_pixel_A

        def splat(xy: np.ndarray, planes: list[tuple[np.ndarray, np.ndarray]]) -> None:
            fx, fy = xy[:, 0] / r, xy[:, 1] / r
            ix, iy = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
            tx, ty = fx - ix, fy - iy
            for dy, wy in ((0, 1.0 - ty), (1, ty)):
                yy = np.mod(iy + dy, ny)
                for dx, wx in ((0, 1.0 - tx), (1, tx)):
                    pix = yy * nx + np.mod(ix + dx, nx)
                    for plane, w in planes:
                        idx_parts.append(plane * (ny * nx) + pix)
                        w_parts.append(w * wy * wx)

        for b, scene in enumerate(scenes):
            wm, ws = self.atom_weights(scene)
            fz = np.clip(scene.metal_positions[:, 2] / step, 0.0, n_metal - 1)
            k0 = np.floor(fz).astype(np.int64)
            tz = fz - k0
            k1 = np.minimum(k0 + 1, n_metal - 1)
            base = b * n_planes
            splat(scene.metal_positions, [(base + k0, wm * (1.0 - tz)), (base + k1, wm * tz)])
            if len(ws):
                splat(scene.support_positions, [(np.int64(base + n_metal), ws)])
        total = len(scenes) * n_planes * ny * nx
        grid = np.bincount(np.concatenate(idx_parts), np.concatenate(w_parts), minlength=total).astype(
            np.float32
        )
        grid = grid.reshape(len(scenes), n_planes, ny, nx)
        spec = sfft.rfft2(grid, workers=-1)
        spec = np.einsum("bkyx,kyx->byx", spec, filters)
        img = sfft.irfft2(spec, s=(ny, nx), workers=-1)
        u = self.oversample
        rows, cols = self.shape
        out = np.ascontiguousarray(img[:, : rows * u : u, : cols * u : u], dtype=np.float32)
        # the deconvolved splat rings slightly (≲ 2 % of the peak) where the probe reaches
        # the Nyquist frequency; an intensity is never negative
        return np.maximum(out, 0.0, out=out)
