"""The microscope: beam energy, probe-forming aperture, aberrations, HAADF detector, source size.

Conventions (the same as abTEM's): the beam travels along +z and enters the specimen at its
smallest z; ``defocus_A`` is ``-C10`` and is measured from the *entrance surface of the metal
cluster*, so a positive defocus puts the probe's focus that far *into* the cluster. At a depth
``z`` [Å] below the entrance surface the probe therefore has an effective defocus
``defocus_A - z`` (propagation through ``z`` adds ``z`` to ``C10``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from clusterspy.errors import ConfigError

#: Electron rest energy [keV].
_ME_C2_KEV = 510.99895
#: h·c [keV·Å].
_HC_KEV_A = 12.398419843


def wavelength_A(energy_keV: float) -> float:
    """Relativistic electron wavelength [Å] at an acceleration energy ``energy_keV`` [keV]."""
    e = float(energy_keV)
    return _HC_KEV_A / math.sqrt(e * (2.0 * _ME_C2_KEV + e))


def antialias_limit_mrad(energy_keV: float, sampling_A: float) -> float:
    """Largest scattering angle [mrad] abTEM represents at a potential sampling ``sampling_A`` [Å].

    abTEM band-limits every wave to 2/3 of the Nyquist frequency (its antialiasing aperture),
    i.e. to ``λ / (3 · sampling)`` rad; scattering beyond that angle is silently lost, so an
    annular detector whose outer angle exceeds it integrates less than it claims.
    """
    return wavelength_A(energy_keV) / (3.0 * float(sampling_A)) * 1e3


@dataclass(frozen=True)
class Microscope:
    """A (S)TEM with a HAADF detector.

    Parameters
    ----------
    energy_keV : float
        Acceleration energy [keV].
    semiangle_mrad : float
        Convergence semi-angle of the probe-forming aperture [mrad].
    detector_mrad : tuple of float
        Inner and outer collection angles of the annular (HAADF) detector [mrad].
    defocus_A : float
        Defocus [Å] (= -C10), measured from the entrance surface of the cluster; positive
        focuses into the cluster.
    Cs_mm : float
        Spherical aberration C30 [mm].
    source_size_A : float
        Full width at half maximum of the (Gaussian) effective source [Å]; it blurs the image
        incoherently.
    source_elongation_A : float
        Extra full width at half maximum [Å] of the effective source along one direction
        (``source_angle_deg``), added in quadrature to ``source_size_A``: an elliptical probe, the
        first-order picture of an uncorrected two-fold astigmatism (columns drawn out along one
        direction). 0 (default): a round source.
    source_angle_deg : float
        Direction of the elongation [°], from the image's x axis (columns) towards its y axis (rows).
    three_fold_A : float
        Three-fold astigmatism C23 (A2) [Å], a coherent aberration of the probe: the phase
        ``2π/λ · C23 α³ / 3 · cos(3(φ − φ23))`` (abTEM's polar convention), which draws the probe out
        into three lobes. 0 (default): none. 1 µm = 10⁴ Å at 25 mrad and 200 kV gives 13 rad at the
        aperture's edge; a well-corrected microscope keeps it under ~50 nm.
    three_fold_angle_deg : float
        Its azimuth φ23 [°], from the image's x axis (columns) towards its y axis (rows).
    """

    energy_keV: float = 200.0
    semiangle_mrad: float = 25.0
    detector_mrad: tuple[float, float] = (70.0, 200.0)
    defocus_A: float = 0.0
    Cs_mm: float = 0.0
    source_size_A: float = 0.0
    source_elongation_A: float = 0.0
    source_angle_deg: float = 0.0
    three_fold_A: float = 0.0
    three_fold_angle_deg: float = 0.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.energy_keV) and 10.0 <= self.energy_keV <= 3000.0):
            raise ConfigError(f"beam energy {self.energy_keV} keV (energy_keV / --energy) is not a TEM "
                              "energy; give it in keV (e.g. 200)")
        if not (np.isfinite(self.semiangle_mrad) and 0.5 <= self.semiangle_mrad <= 100.0):
            raise ConfigError(
                f"probe convergence semi-angle {self.semiangle_mrad} mrad (semiangle_mrad / --semiangle) "
                "must be between 0.5 and 100 mrad (e.g. 25)"
            )
        try:
            inner, outer = (float(v) for v in self.detector_mrad)
        except (TypeError, ValueError):
            raise ConfigError(
                f"detector_mrad={self.detector_mrad!r} must be (inner, outer) angles in mrad, e.g. (70, 200)"
            ) from None
        if not (0.0 <= inner < outer):
            raise ConfigError(
                f"detector_mrad={self.detector_mrad!r}: need 0 <= inner < outer (mrad), e.g. (70, 200)"
            )
        object.__setattr__(self, "detector_mrad", (inner, outer))
        if not np.isfinite(self.defocus_A) or not np.isfinite(self.Cs_mm):
            raise ConfigError("defocus_A (Å) and Cs_mm (mm) must be finite numbers")
        if not (np.isfinite(self.source_size_A) and self.source_size_A >= 0.0):
            raise ConfigError(f"source_size_A={self.source_size_A} must be a FWHM in Å >= 0 (e.g. 0.5)")
        if not (np.isfinite(self.source_elongation_A) and self.source_elongation_A >= 0.0):
            raise ConfigError(f"source_elongation_A={self.source_elongation_A} must be a FWHM in Å >= 0 "
                              "(0: a round source)")
        if not np.isfinite(self.source_angle_deg):
            raise ConfigError(f"source_angle_deg={self.source_angle_deg} must be an angle in degrees")
        if not (np.isfinite(self.three_fold_A) and self.three_fold_A >= 0.0
                and np.isfinite(self.three_fold_angle_deg)):
            raise ConfigError(f"three_fold_A={self.three_fold_A} must be a three-fold astigmatism C23 in Å "
                              f">= 0 (1 µm = 10000 Å), three_fold_angle_deg={self.three_fold_angle_deg} an "
                              "angle in degrees")

    @property
    def wavelength_A(self) -> float:
        """Relativistic electron wavelength [Å]."""
        return wavelength_A(self.energy_keV)

    @property
    def three_fold_phase_rad(self) -> float:
        """The phase [rad] the three-fold astigmatism puts at the aperture's edge, ``2π/λ · C23 α³ / 3``:
        what sets how much it spoils the probe, whatever the energy and aperture (under ~1 rad: no
        visible effect)."""
        return 2.0 * math.pi / self.wavelength_A * self.three_fold_A * (self.semiangle_mrad * 1e-3) ** 3 / 3.0

    @property
    def probe_band_limit_per_A(self) -> float:
        """Highest spatial frequency of the probe *intensity* [1/Å]: ``2 α / λ``."""
        return 2.0 * self.semiangle_mrad * 1e-3 / self.wavelength_A

    def to_dict(self) -> dict:
        """The parameters as a JSON-serialisable dict (units in the keys)."""
        d = asdict(self)
        d["detector_mrad"] = list(self.detector_mrad)
        return d

    # ------------------------------------------------------------------ probe
    def probe_wave_fourier(
        self, gpts: tuple[int, int], sampling_A: float, defocus_A: float | None = None
    ) -> np.ndarray:
        """Probe wave function in reciprocal space on a ``gpts = (ny, nx)`` grid.

        Parameters
        ----------
        gpts : tuple of int
            Grid shape ``(rows, cols)``.
        sampling_A : float
            Real-space grid spacing [Å].
        defocus_A : float, optional
            Effective defocus [Å] (``-C10``); defaults to ``self.defocus_A``.

        Returns
        -------
        numpy.ndarray
            Complex array ``(rows, cols)`` in FFT order: aperture × exp(-i χ), with a one-pixel
            soft aperture edge.
        """
        ny, nx = gpts
        lam = self.wavelength_A
        df = self.defocus_A if defocus_A is None else defocus_A
        ky = np.fft.fftfreq(ny, d=sampling_A)
        kx = np.fft.fftfreq(nx, d=sampling_A)
        k2 = ky[:, None] ** 2 + kx[None, :] ** 2
        alpha = np.sqrt(k2) * lam  # rad
        cutoff = self.semiangle_mrad * 1e-3
        # soft edge one reciprocal pixel wide (in angle) to avoid staircase artefacts
        dk = lam / (sampling_A * max(nx, ny))
        aperture = np.clip((cutoff - alpha) / dk + 0.5, 0.0, 1.0)
        c10 = -df
        c30 = self.Cs_mm * 1e7
        chi = 2.0 * np.pi / lam * (0.5 * c10 * alpha**2 + 0.25 * c30 * alpha**4)
        if self.three_fold_A > 0.0:
            phi = np.arctan2(ky[:, None], kx[None, :])  # from x (columns) towards y (rows)
            chi = chi + 2.0 * np.pi / lam * self.three_fold_A / 3.0 * alpha**3 * np.cos(
                3.0 * (phi - math.radians(self.three_fold_angle_deg)))
        return aperture * np.exp(-1j * chi)

    def probe_intensity(
        self, gpts: tuple[int, int], sampling_A: float, defocus_A: float | None = None
    ) -> np.ndarray:
        """Probe intensity ``|ψ(r)|²`` on a periodic grid, centred on pixel ``(0, 0)``, sum 1.

        Parameters are those of :meth:`probe_wave_fourier`.
        """
        psi = np.fft.ifft2(self.probe_wave_fourier(gpts, sampling_A, defocus_A))
        intensity = np.abs(psi) ** 2
        return intensity / intensity.sum()

    def source_transfer(self, ky: np.ndarray, kx: np.ndarray) -> np.ndarray:
        """Fourier transform of the Gaussian source at ``(ky, kx)`` [1/Å]: FWHM ``source_size_A``,
        and ``source_elongation_A`` more (in quadrature) along ``source_angle_deg``."""
        fwhm_per_sigma = 2.0 * math.sqrt(2.0 * math.log(2.0))
        sigma = self.source_size_A / fwhm_per_sigma
        k2 = ky[:, None] ** 2 + kx[None, :] ** 2
        exponent = sigma**2 * k2
        if self.source_elongation_A > 0.0:
            angle = math.radians(self.source_angle_deg)
            along = ky[:, None] * math.sin(angle) + kx[None, :] * math.cos(angle)
            exponent = exponent + (self.source_elongation_A / fwhm_per_sigma) ** 2 * along**2
        return np.exp(-2.0 * np.pi**2 * exponent)
