"""Acquisition: what the scan and the detector do to the ideal image.

Applied in this order to noiseless images of either backend (in units of the fraction of the
incident beam reaching the detector), vectorised over a batch:

1. scan distortions — drift along y (rows land at ``r (1 + drift_y)``), per-line x shifts
   (Gaussian scan-line jitter + x drift + shear, applied as exact sub-pixel Fourier shifts of each
   line), flyback distortion at the start of each line (``x → x + A exp(-x / τ)``);
2. a constant background (e.g. unmodelled support or detector dark level, same units);
3. shot noise: the detector counts electrons, Poisson with mean ``I · dose · pixel_size²``
   (exact, drawn by :func:`clusterspy.simulation.poisson.poisson_counts`, or its normal
   approximation);
4. detector gain and offset: ``out = gain · counts + offset`` (without a dose the noiseless
   signal ``I`` is scaled instead of the counts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.fft as sfft

from clusterspy.errors import ConfigError
from clusterspy.simulation.poisson import poisson_counts


@dataclass(frozen=True)
class Acquisition:
    """Dose, noise, detector response and scan distortions.

    Parameters
    ----------
    dose_e_per_A2 : float or None
        Electron dose [e⁻/Å²]; ``None`` gives a noiseless image.
    gain : float
        Detector gain [output units per detected electron].
    offset : float
        Detector offset [output units].
    jitter_px : float
        Standard deviation [px] of the random x shift of each scan line.
    drift_A_per_line : tuple of float
        Specimen drift ``(x, y)`` [Å per scan line].
    shear : float
        Extra x shift per scan line [px per line] (scan-coil shear).
    flyback : tuple of float
        ``(amplitude_px, decay_px)``: at the start of each line the probe lags by
        ``amplitude · exp(-col / decay)`` [px].
    background : float
        Constant added to the ideal image [fraction of the beam].
    noise : {"poisson", "gaussian"}
        Exact Poisson counts (tabulated alias sampler, ~10 ns per pixel), or its normal
        approximation ``N(λ, λ)`` rounded (accurate for λ ≳ 20 counts/px only).
    """

    dose_e_per_A2: float | None = None
    gain: float = 1.0
    offset: float = 0.0
    jitter_px: float = 0.0
    drift_A_per_line: tuple[float, float] = (0.0, 0.0)
    shear: float = 0.0
    flyback: tuple[float, float] = (0.0, 0.0)
    background: float = 0.0
    noise: str = "poisson"

    def __post_init__(self) -> None:
        if self.dose_e_per_A2 is not None and not (
            np.isfinite(self.dose_e_per_A2) and self.dose_e_per_A2 > 0
        ):
            raise ConfigError(
                f"electron dose {self.dose_e_per_A2} (dose_e_per_A2 / --dose) must be a positive dose in "
                "e⁻/Å² (e.g. 1e4), or None (no --dose) for a noiseless image"
            )
        if not (np.isfinite(self.jitter_px) and self.jitter_px >= 0):
            raise ConfigError(f"jitter_px={self.jitter_px} must be >= 0 (pixels)")
        if self.noise not in ("poisson", "gaussian"):
            raise ConfigError(f"noise={self.noise!r}: choose 'poisson' or 'gaussian'")
        for name in ("drift_A_per_line", "flyback"):
            value = getattr(self, name)
            if len(tuple(value)) != 2 or not np.all(np.isfinite(value)):
                raise ConfigError(f"{name}={value!r} must be a pair of finite numbers")
        if self.flyback[0] != 0 and self.flyback[1] <= 0:
            raise ConfigError("flyback=(amplitude_px, decay_px) needs decay_px > 0")
        if not (np.isfinite(self.gain) and np.isfinite(self.offset) and np.isfinite(self.shear)):
            raise ConfigError("gain, offset and shear must be finite numbers")

    def to_dict(self) -> dict:
        """The parameters as a JSON-serialisable dict."""
        d = asdict(self)
        d["drift_A_per_line"] = list(self.drift_A_per_line)
        d["flyback"] = list(self.flyback)
        return d

    def line_shifts_px(
        self, batch: int, rows: int, pixel_size_A: float, rng: np.random.Generator | None
    ) -> np.ndarray | None:
        """x shift [px] of every scan line: drift along x + shear + jitter (drawn from ``rng``).

        The probe on line ``r`` at column ``c`` sees the specimen at ``c + shift[b, r]``.

        Parameters
        ----------
        batch, rows : int
            Number of images and of scan lines per image.
        pixel_size_A : float
            Pixel size [Å/px] (converts the drift to pixels).
        rng : numpy.random.Generator
            Source of the jitter (required when ``jitter_px > 0``).

        Returns
        -------
        numpy.ndarray or None
            ``(batch, rows)`` float64 shifts [px]; ``None`` when the lines are not shifted.
        """
        dx_line = self.drift_A_per_line[0] / float(pixel_size_A) + self.shear
        if not (self.jitter_px > 0 or dx_line):
            return None
        if self.jitter_px > 0 and rng is None:
            raise ConfigError("this acquisition is random: pass rng=numpy.random.default_rng(seed)")
        shifts = np.broadcast_to(np.arange(rows) * dx_line, (batch, rows)).astype(float)
        if self.jitter_px > 0:
            shifts = shifts + self.jitter_px * rng.standard_normal((batch, rows))
        return shifts

    def apply(
        self,
        images: np.ndarray,
        pixel_size_A: float,
        rng: np.random.Generator | None = None,
        *,
        lines_shifted: bool = False,
    ) -> np.ndarray:
        """Acquire ideal images.

        Parameters
        ----------
        images : numpy.ndarray
            ``(rows, cols)`` or ``(batch, rows, cols)`` noiseless images [fraction of the beam].
        pixel_size_A : float
            Pixel size [Å/px] (sets the counts per pixel and converts drift to pixels).
        rng : numpy.random.Generator
            Source of all randomness (required when there is jitter or a dose).
        lines_shifted : bool
            The images already hold the per-line x shifts of :meth:`line_shifts_px`, drawn from
            ``rng`` just before (a renderer applied them in Fourier space): skip them here. Only
            without drift along y (which acts before the x shifts).

        Returns
        -------
        numpy.ndarray
            float32 array of the same shape.
        """
        out = np.asarray(images, dtype=np.float32)
        single = out.ndim == 2
        if single:
            out = out[None]
        needs_rng = self.jitter_px > 0 or self.dose_e_per_A2 is not None
        if needs_rng and rng is None:
            raise ConfigError("this acquisition is random: pass rng=numpy.random.default_rng(seed)")
        if lines_shifted and self.drift_A_per_line[1]:
            raise ValueError("lines_shifted=True needs drift_A_per_line[1] == 0 (y drift acts first)")
        ps = float(pixel_size_A)
        out = _scan_distort(out, self, ps, rng, lines_shifted)
        if self.background:
            out = out + np.float32(self.background)
        if self.dose_e_per_A2 is not None:
            lam = np.clip(out, 0.0, None) * np.float32(self.dose_e_per_A2 * ps * ps)
            if self.noise == "poisson":
                out = poisson_counts(lam, rng)
            else:
                z = rng.standard_normal(lam.shape, dtype=np.float32)
                out = np.clip(np.rint(lam + np.sqrt(lam) * z), 0.0, None)
        if self.gain != 1.0:
            out = out * np.float32(self.gain)
        if self.offset:
            out = out + np.float32(self.offset)
        out = out.astype(np.float32, copy=False)
        return out[0] if single else out


def _scan_distort(
    images: np.ndarray, acq: Acquisition, ps: float, rng: np.random.Generator | None, lines_shifted: bool
) -> np.ndarray:
    """Drift, jitter, shear and flyback of a raster scan (see the module docstring)."""
    b, rows, cols = images.shape
    dy_line = acq.drift_A_per_line[1] / ps
    if dy_line:
        y = np.arange(rows) * (1.0 + dy_line)
        y0 = np.clip(np.floor(y).astype(int), 0, rows - 1)
        y1 = np.clip(y0 + 1, 0, rows - 1)
        t = np.clip(y - y0, 0.0, 1.0).astype(np.float32)[None, :, None]
        images = images[:, y0] * (1 - t) + images[:, y1] * t
    shifts = None if lines_shifted else acq.line_shifts_px(b, rows, ps, rng)
    if shifts is not None:
        spec = sfft.rfft(np.asarray(images, dtype=np.float32), axis=-1)
        spec *= line_shift_phase(shifts, cols)
        images = sfft.irfft(spec, n=cols, axis=-1)
    amp, decay = acq.flyback
    if amp:
        x = np.arange(cols) + amp * np.exp(-np.arange(cols) / decay)
        x0 = np.clip(np.floor(x).astype(int), 0, cols - 1)
        x1 = np.clip(x0 + 1, 0, cols - 1)
        t = np.clip(x - x0, 0.0, 1.0).astype(np.float32)
        images = images[..., x0] * (1 - t) + images[..., x1] * t
    return np.asarray(images, dtype=np.float32)


def line_shift_phase(shifts_px: np.ndarray, cols: int) -> np.ndarray:
    """``exp(2πi s k / cols)``, ``k = 0 … cols // 2``: the rfft-space factor shifting each line.

    Multiplying a line's ``rfft`` by it gives ``I'(x) = I(x + s)`` (an exact sub-pixel shift of
    the band-limited line). ``shifts_px`` ``(...)`` [px] gives ``(..., cols // 2 + 1)`` complex64.
    """
    k = np.fft.rfftfreq(cols).astype(np.float32)
    theta = (2 * np.pi * np.asarray(shifts_px, dtype=np.float32))[..., None] * k
    phase = np.empty(theta.shape, np.complex64)
    np.cos(theta, out=phase.real)
    np.sin(theta, out=phase.imag)
    return phase
