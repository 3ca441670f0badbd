"""Backend "prism": abTEM 1.0.11's PRISM (``SMatrix``) multislice with frozen phonons.

The potential cell is the field of view itself (periodic, as PRISM requires); the probe is
scanned over the pixel centres of the field, so pixel ``(row, col)`` of both backends samples
the same specimen point (see :mod:`clusterspy.simulation.geometry`). abTEM band-limits waves to
``λ / (3 · sampling)`` (its antialiasing aperture): an annular detector reaching beyond that
angle would silently integrate less than asked, so :func:`choose_potential_sampling` either
picks a fine enough potential sampling or refuses a user-given one with a ConfigError.

PRISM's interpolation factor ``f`` makes the probe periodic with period ``cell / f`` and crops
the exit wave to that window around the probe. Electrons scattered onto the detector at angle
``θ`` drift sideways by ``t · tan θ`` over the specimen depth ``t`` that follows, so once that
drift exceeds about half the window, scattering from the probe's periodic replicas leaks into
the image: a halo of the cluster's columns over the surrounding support. Measured (Au55,
200 keV, 25 mrad, 70–200 mrad, 16 Å cell, static lattice): without support, ``f = 4`` matches
``f = 1`` to NCC 0.9997 at a drift/half-window ratio of 1.0; on a 20 Å carbon support (ratio
3.2) only to NCC 0.60, while the fast backend matches ``f = 1`` to 0.998
(``benchmarks/prism_window.py``).
:func:`max_interpolation` gives the largest safe factor (ratio ≤ ``WINDOW_TOLERANCE``); a larger
requested factor is refused with a ConfigError, and ``interpolation="auto"`` picks it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from clusterspy.errors import ConfigError, MissingDependencyError
from clusterspy.simulation.geometry import Field, Scene
from clusterspy.simulation.microscope import Microscope, antialias_limit_mrad

#: Vacuum [Å] above the cluster's entrance surface and below the deepest atom in the cell.
Z_MARGIN_A = 2.0
#: Default potential sampling [Å] when the detector allows it.
DEFAULT_SAMPLING_A = 0.05
#: Largest accepted ratio of the lateral drift ``depth · tan(outer angle)`` to half the PRISM
#: window ``cell / (2 · interpolation)`` (see the module docstring).
WINDOW_TOLERANCE = 1.35


def max_interpolation(field: Field, scene: Scene, microscope: Microscope) -> int:
    """Largest PRISM interpolation factor whose window holds the detector-angle drift.

    Parameters
    ----------
    field, scene
        The field of view [Å] and the atoms (metal and support) in field coordinates.
    microscope : Microscope
        Its detector outer angle [mrad] matters.

    Returns
    -------
    int
        ``f ≥ 1`` such that ``depth · tan(outer) ≤ WINDOW_TOLERANCE · min(cell) / (2 f)``, where
        ``depth`` [Å] is the specimen's extent along the beam (cluster and support).
    """
    z = np.concatenate([scene.metal_positions[:, 2], scene.support_positions[:, 2]])
    depth = float(z.max() - z.min()) if len(z) else 0.0
    drift = max(depth * math.tan(microscope.detector_mrad[1] * 1e-3), 1e-6)
    cell = min(field.extent_A)
    return max(1, int(WINDOW_TOLERANCE * cell / (2.0 * drift)))


def check_interpolation(interpolation: int | str, field: Field, scene: Scene,
                        microscope: Microscope, *, window: bool = True) -> int:
    """The interpolation factor to use: ``"auto"`` → :func:`max_interpolation`; an int is checked.

    ``window=False`` skips only the comparison with :func:`max_interpolation` (to measure the
    artefact, ``benchmarks/prism_window.py``); the factor must still be an integer >= 1.

    Raises
    ------
    ConfigError
        If the factor is not a positive integer, or (with ``window``) exceeds
        :func:`max_interpolation` (the image would carry PRISM's window artefact).
    """
    limit = max_interpolation(field, scene, microscope)
    if isinstance(interpolation, str):
        if interpolation != "auto":
            raise ConfigError(f"interpolation={interpolation!r} must be an integer >= 1 or 'auto'")
        return limit
    try:
        f = int(interpolation)
    except (TypeError, ValueError):
        raise ConfigError(f"interpolation={interpolation!r} must be an integer >= 1 or 'auto'") from None
    if f < 1 or f != interpolation:
        raise ConfigError(f"interpolation={interpolation} must be an integer >= 1 or 'auto'")
    if window and f > limit:
        width, height = field.extent_A
        raise ConfigError(
            f"PRISM interpolation {f} is too coarse for this specimen: its probe window "
            f"({min(width, height) / f:.1f} Å) is narrower than the sideways drift of electrons "
            f"scattered onto the detector's {microscope.detector_mrad[1]:g} mrad edge over the specimen's "
            f"depth (cluster + support), which puts a halo artefact in the image; use interpolation "
            f"<= {limit} (or 'auto'), or a larger field of view"
        )
    return f


def choose_potential_sampling(microscope: Microscope, potential_sampling_A: float | None = None) -> float:
    """Potential sampling [Å] at which abTEM represents the detector's outer angle.

    Parameters
    ----------
    microscope : Microscope
        Its ``energy_keV`` and ``detector_mrad[1]`` (outer angle) matter.
    potential_sampling_A : float, optional
        A requested sampling [Å]; ``None`` chooses the coarsest sampling (at most
        ``DEFAULT_SAMPLING_A``) whose antialiasing limit exceeds the outer angle by 2 %.

    Raises
    ------
    ConfigError
        If the requested sampling cannot represent the detector's outer angle.
    """
    outer = microscope.detector_mrad[1]
    need = microscope.wavelength_A / (3.0 * outer * 1e-3)  # Å
    if potential_sampling_A is None:
        return min(DEFAULT_SAMPLING_A, need / 1.02)
    s = float(potential_sampling_A)
    if not (np.isfinite(s) and s > 0):
        raise ConfigError(f"potential_sampling_A={potential_sampling_A} must be a length in Å > 0")
    limit = antialias_limit_mrad(microscope.energy_keV, s)
    if limit < outer:
        raise ConfigError(
            f"the detector's outer angle {outer:g} mrad exceeds abTEM's antialiasing limit "
            f"{limit:.0f} mrad at a potential sampling of {s:g} Å and {microscope.energy_keV:g} "
            f"keV (λ/(3·sampling)); use potential_sampling_A <= {need:.4f} Å, or leave it None "
            "to have it chosen, or lower detector_mrad's outer angle"
        )
    return s


def build_atoms(field: Field, scene: Scene) -> Any:
    """The scene as an ``ase.Atoms`` in the PRISM cell (pixel (0, 0) at ``(ps/2, ps/2)``)."""
    from ase import Atoms

    ps = field.pixel_size_A
    width, height = field.extent_A
    pos = np.concatenate([scene.metal_positions, scene.support_positions])
    num = np.concatenate([scene.metal_numbers, scene.support_numbers])
    pos = pos + np.array([ps / 2, ps / 2, Z_MARGIN_A])
    pos[:, 0] = np.mod(pos[:, 0], width)
    pos[:, 1] = np.mod(pos[:, 1], height)
    depth = float(pos[:, 2].max()) + Z_MARGIN_A
    return Atoms(numbers=num, positions=pos, cell=[width, height, depth], pbc=True)


#: Largest complex64 array [bytes] of one PRISM reduction batch (scan positions × window pixels).
REDUCTION_BATCH_BYTES = 512 * 2**20


def simulate_prism(
    field: Field,
    scene: Scene,
    microscope: Microscope,
    rng: np.random.Generator | None = None,
    *,
    interpolation: int | str = "auto",
    potential_sampling_A: float | None = None,
    slice_thickness_A: float = 1.0,
    frozen_phonons: int = 8,
    thermal_sigma_A: float = 0.08,
    lazy: bool = False,
    check_window: bool = True,
) -> Any:
    """Noiseless HAADF image of a scene with abTEM's PRISM.

    Parameters
    ----------
    field, scene
        The field of view and the atoms in field coordinates (``geometry.build_scene``).
    microscope : Microscope
        Energy, aperture, defocus (from the cluster's entrance surface), Cs, detector, source.
    rng : numpy.random.Generator, optional
        Seeds the frozen-phonon displacements (required when ``frozen_phonons > 0``).
    interpolation : int or "auto"
        PRISM interpolation factor (the probe is truncated to the cell / interpolation); checked
        against the specimen's depth by :func:`check_interpolation`; ``"auto"`` (default): the
        largest safe factor.
    potential_sampling_A : float, optional
        Potential sampling [Å]; checked against the detector (see
        :func:`choose_potential_sampling`).
    slice_thickness_A : float
        Multislice slice thickness [Å].
    frozen_phonons : int
        Number of frozen-phonon configurations (0: static lattice).
    thermal_sigma_A : float
        Isotropic r.m.s. thermal displacement per direction [Å].
    lazy : bool
        Return the lazy abTEM measurement (a Dask graph) instead of the array.
    check_window : bool
        Refuse an interpolation factor above :func:`max_interpolation` (default). ``False`` only
        to measure the artefact (``benchmarks/prism_window.py``).

    Returns
    -------
    numpy.ndarray
        ``(rows, cols)`` float32, fraction of the incident beam on the detector.
    """
    try:
        import abtem
    except ImportError:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("abtem", "train", "the prism backend") from None
    interpolation = check_interpolation(interpolation, field, scene, microscope, window=check_window)
    sampling = choose_potential_sampling(microscope, potential_sampling_A)
    atoms = build_atoms(field, scene)
    width, height = field.extent_A
    gpts = tuple(_fast_len(math.ceil(e / sampling)) for e in (width, height))
    if frozen_phonons > 0:
        if rng is None:
            raise ConfigError("frozen phonons are random: pass rng=numpy.random.default_rng(seed)")
        seed = int(rng.integers(2**31 - 1))
        atoms = abtem.FrozenPhonons(
            atoms, num_configs=int(frozen_phonons), sigmas=float(thermal_sigma_A), seed=seed
        )
    potential = abtem.Potential(atoms, gpts=gpts, slice_thickness=slice_thickness_A, projection="infinite")
    s_matrix = abtem.SMatrix(
        potential=potential,
        energy=microscope.energy_keV * 1e3,
        semiangle_cutoff=microscope.semiangle_mrad,
        interpolation=int(interpolation),
    )
    ps = field.pixel_size_A
    rows, cols = field.shape
    scan = abtem.GridScan(
        start=(ps / 2, ps / 2),
        end=(width + ps / 2, height + ps / 2),
        gpts=(cols, rows),
        endpoint=False,
    )
    detector = abtem.AnnularDetector(inner=microscope.detector_mrad[0], outer=microscope.detector_mrad[1])
    ctf = abtem.CTF(
        energy=microscope.energy_keV * 1e3,
        semiangle_cutoff=microscope.semiangle_mrad,
        defocus=microscope.defocus_A + Z_MARGIN_A,
        Cs=microscope.Cs_mm * 1e7,
        C23=microscope.three_fold_A,
        phi23=math.radians(microscope.three_fold_angle_deg),
    )
    # abTEM's reduction multiplies the coefficients of a batch of scan positions with the whole
    # S-matrix (its full grid, whatever the interpolation) at once: bounded to
    # REDUCTION_BATCH_BYTES, or a 110² scan of a 36 Å cell at interpolation 16 asked numpy for
    # 24.7 GB in one array
    batch = max(1, REDUCTION_BATCH_BYTES // (8 * math.prod(gpts)))
    measurement = s_matrix.scan(scan=scan, detectors=detector, ctf=ctf, lazy=True,
                                max_batch_reduction=batch)
    if lazy:
        return measurement
    with abtem.config.set({"diagnostics.progress_bar": False}):
        computed = measurement.compute()
    return finish(computed, field, microscope)


def finish(measurement: Any, field: Field, microscope: Microscope) -> np.ndarray:
    """abTEM measurement → ``(rows, cols)`` float32 array with the source blur applied."""
    arr = np.asarray(measurement.array, dtype=float)
    while arr.ndim > 2:  # frozen-phonon (ensemble) axes not reduced by abTEM
        arr = arr.mean(axis=0)
    img = arr.T  # abTEM scans index [x, y]; ours is [row = y, col = x]
    if microscope.source_size_A > 0 or microscope.source_elongation_A > 0:
        ps = field.pixel_size_A
        ky = np.fft.fftfreq(img.shape[0], d=ps)
        kx = np.fft.fftfreq(img.shape[1], d=ps)
        img = np.fft.ifft2(np.fft.fft2(img) * microscope.source_transfer(ky, kx)).real
    return np.ascontiguousarray(img, dtype=np.float32)


def _fast_len(n: int) -> int:
    import scipy.fft as sfft

    return sfft.next_fast_len(int(n), real=True)
