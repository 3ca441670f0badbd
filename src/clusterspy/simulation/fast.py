"""Backend "fast": an incoherent HAADF model whose parameters were fitted to PRISM, batched.

Model
-----
HAADF imaging is close to incoherent: the image is the probe intensity convolved with an
object function,

    I(r) = c · Σ_i Z_i^n · g(m_i) · [(1 - s_i) P(r - r_i; Δf - z_i) + s_i P_s(r - r_i)]  ⊛  S(r),

where ``P(r; Δf)`` is the aperture-limited probe intensity at the effective defocus
``Δf - z_i`` an atom at depth ``z_i`` [Å] sees (defocus and Cs from :class:`Microscope`; the
probe spreads through the cluster's depth), ``n`` the detector-dependent Z exponent, ``S`` the
Gaussian source and ``c`` [Å²] a scale to PRISM's units (fraction of the incident beam reaching
the detector).

Two corrections model dynamical scattering along atomic columns, which an incoherent sum of
independent atoms misses (both are 1 for an isolated atom, and both switch off at their default
parameters, leaving the plain incoherent sum):

* ``g(m) = (1 + b (m - 1))^a · exp(-γ (m - 1))``, the *channelling* correction: ``m_i`` is the
  occupancy of the atomic column the atom belongs to (the number of metal atoms within
  ``column_radius_A`` of it in projection, itself included); on zone axes the probe channels
  onto densely occupied columns, so that, against PRISM (Au, 200 keV), their atoms scatter more
  onto the detector than isolated ones (``a > 0``), less so in long columns (``γ > 0``).
* ``s_i = 1 - exp(-k_i / K)``, the *spread* along a column: ``k_i`` is the number of metal atoms
  above atom ``i`` in its column (within ``column_radius_A`` in projection, at a smaller depth).
  The atoms above scatter electrons out of the channelled probe and pull in electrons of probe
  positions beside the column (cross-talk), so a deep atom of a column is lit by a broader
  probe: a fraction ``s_i`` of its weight is imaged with the *spread probe*
  ``P_s = P(·; Δf - z̄_s) ⊛ G(w_s)``, the probe at the weight-averaged depth ``z̄_s`` of the
  scene's spread part (one extra depth plane per image) broadened by a Gaussian ``G`` of FWHM
  ``w_s = spread_blur_A`` [Å]. Measured against PRISM: with the column intensities free
  (per-column least squares), one probe width cannot fit thin and thick columns together (NCC
  0.967 for Au923 [110] at the best single width, 0.989 with a sharp and a broadened probe per
  column), which no per-atom weight law ``g`` could fix; the spread term moves the image of
  long columns from the sharp towards the broad probe and so also saturates their peak
  intensity with thickness.

``n, c, a, b, γ``, the column radius, ``K``, ``w_s`` and an extra Gaussian blur of every atom
(``extra_blur_A``, FWHM [Å]) are fitted against PRISM references on half of the benchmark cases
by ``benchmarks/fit_fast_parameters.py`` (the other half is held out, see
``benchmarks/simulation_fidelity.py``) and ship in ``fast_parameters.json``
(:func:`default_parameters`; :class:`FastParameters`).

Algorithm (vectorised over a batch)
-----------------------------------
Atoms are splatted as weighted delta peaks (bilinear in x, y; linear between depth planes
spaced ``depth_step_A``) onto a periodic grid, one plane per probe depth; each plane is
Fourier transformed once (float32 ``rfft2``) and multiplied by the precomputed transform of the
probe intensity at that depth × the source transfer function ÷ the bilinear splatting kernel;
the planes are summed in Fourier space and inverted with one FFT. With the spread, each image
has one more plane, the spread parts ``s_i`` of its atoms' weights, filtered by the spread probe
(precomputed per depth plane, linear between the planes at the image's mean spread depth).
The grid is rendered at a pixel size no coarser than the probe intensity's Nyquist limit
``λ / (4 α)`` (oversampled by an integer factor when the output pixels are coarser) and then
point-sampled at the output pixel centres, like a scanned probe (when the oversampling factor
divides the grid's rows, only the sampled rows are inverted: their spectrum is the grid's with its
row aliases summed). FFT sizes are 2^a 3^b 5^c. Blocks of
:attr:`FastSimulator.block_images` run on all cores (threads; the FFTs release the GIL). When the
render grid is the output grid, ``simulate_batch`` applies the scan lines' x shifts (jitter, x
drift, shear of :class:`Acquisition`) between the two passes of the inverse FFT (a phase ramp on
each line's spectrum): the same exact sub-pixel shift ``Acquisition`` does, without its forward and
inverse FFT of every line (the ringing is then clipped at 0 after the shift instead of before;
NCC > 0.99999).

Depth planes
------------
The probe intensity changes with defocus on the scale of its depth of field ``λ / α²``
(40 Å at 200 keV, 25 mrad); linear interpolation between planes ``h`` apart errs by
~ ``h² ∂²P/∂Δf²``. The planes are spaced ``h = DEPTH_STEP_DOF_FRACTION · λ / α²`` (0.4: 16 Å
at 200 keV, 25 mrad, three planes for a 22 Å deep Au309), unless the parameters fix
``depth_step_A``; images stay within NCC 0.999 of a 2 Å spacing (tested for 25–35 mrad and
−20…+10 Å defocus; at 0.6 the 35 mrad, −20 Å case drops to NCC 0.97). The planes lie on a
fixed grid (``k · h`` below the cluster's entrance surface), so an image does not depend on the
batch it is rendered in.

Support
-------
Carbon support atoms are weighted like the metal (``Z^n``, no channelling) and all take the
probe at the support's mean depth (interpolated between the depth planes like the metal): an
amorphous support has no columns, so its image is the sum of independent atoms. The spectrum of
a support's splat does not depend on the cluster, so it is computed once and cached (by a hash
of the support's x, y and atomic numbers; up to ``SUPPORT_CACHE_BYTES`` per simulator):
reusing a few slabs costs one complex multiply-add per image instead of splatting thousands of
atoms and an FFT.
"""

from __future__ import annotations

import json
import math
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import scipy.fft as sfft

from clusterspy.errors import ConfigError
from clusterspy.simulation._memory import keep_freed_memory
from clusterspy.simulation.acquisition import line_shift_phase
from clusterspy.simulation.geometry import Scene, support_key
from clusterspy.simulation.microscope import Microscope

#: Reference inner detector angle [mrad] at which ``z_exponent`` is fitted.
_REFERENCE_INNER_MRAD = 70.0
#: Depth-plane spacing as a fraction of the probe's depth of field ``λ / α²`` (see the module
#: docstring); 0.4 keeps every image within NCC 0.9997 of a 2 Å spacing (25–35 mrad, ±20 Å
#: defocus, Au309–Au923; ``tests/test_simulation.py::test_depth_planes_match_fine_spacing``).
DEPTH_STEP_DOF_FRACTION = 0.4
#: Render-grid pixels per vectorised block (16 images of 128² px; fewer blocks, less Python per
#: image): with the allocator keeping freed memory (``_memory.keep_freed_memory``) the block's
#: temporaries (~10 MB) are reused, not page-faulted in again; 2,300 vs 1,600 images/s (Poisson
#: benchmark, 2 cores) against 4-image blocks, and 32-image blocks were slower again. It does not
#: depend on the allocator (``simulate_batch`` draws noise per block: the noise must not either).
RENDER_BLOCK_PIXELS = 16 * 128 * 128
#: Most images per vectorised block.
RENDER_BLOCK = 16
#: Memory [bytes] a simulator spends on cached support spectra (66 kB each at 128² px).
SUPPORT_CACHE_BYTES = 16 * 2**20
#: Marks a keyword that was not given (``None`` is a value: the shipped parameters).
_UNSET: Any = object()


@dataclass(frozen=True)
class FastParameters:
    """Parameters of the fast model, fitted to PRISM (see the module docstring).

    Formerly ``FastCalibration`` (deprecated alias).

    Attributes
    ----------
    z_exponent : float
        Z exponent ``n`` at the reference HAADF detector (inner angle 70 mrad).
    scale : float
        ``c`` [Å²]: ``c · Z^n`` is an atom's cross-section for scattering onto the detector, so
        that ``Σ c Z^n P(r)`` (probe intensity ``P`` normalised to 1 over area, [1/Å²]) is the
        fraction of the beam reaching the detector.
    channelling_a, channelling_b, channelling_c : float
        Channelling correction ``g(m) = (1 + b (m - 1))^a · exp(-c (m - 1))`` (``c`` is γ in the
        module docstring): ``a > 0`` brightens short dense columns (the probe channels onto
        them), ``c > 0`` saturates long ones.
    column_radius_A : float
        Radius [Å] within which atoms count as one column in projection.
    depth_step_A : float or None
        Spacing [Å] of the probe-depth planes; ``None`` (default): ``DEPTH_STEP_DOF_FRACTION``
        × the probe's depth of field ``λ / α²`` (16 Å at 200 keV, 25 mrad).
    extra_blur_A : float
        FWHM [Å] of an extra Gaussian blur (partial coherence of the PRISM reference).
    max_depth_planes : int
        Cap on the number of depth planes (deeper atoms use the deepest plane).
    spread_atoms : float
        ``K``: an atom with ``k`` metal atoms above it in its column (within ``column_radius_A``
        in projection, at smaller depth) images a fraction ``s(k) = 1 - exp(-k / K)`` of its
        weight with the spread probe (see ``spread_blur_A``).
    spread_blur_A : float
        FWHM [Å] of the Gaussian that broadens the spread probe; 0 (default) switches the spread
        off (the image is then the plain incoherent sum).
    """

    z_exponent: float = 1.7
    scale: float = 1.0e-5
    channelling_a: float = 0.0
    channelling_b: float = 1.0
    channelling_c: float = 0.0
    column_radius_A: float = 0.6
    depth_step_A: float | None = None
    extra_blur_A: float = 0.0
    max_depth_planes: int = 6
    spread_atoms: float = 1.0
    spread_blur_A: float = 0.0

    @classmethod
    def from_dict(cls, d: dict) -> FastParameters:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def has_channelling(self) -> bool:
        """Whether the channelling correction differs from 1."""
        return self.channelling_a != 0.0 or self.channelling_c != 0.0

    @property
    def has_spread(self) -> bool:
        """Whether part of the column atoms' weight is imaged with the spread probe."""
        return self.spread_blur_A > 0.0

    def spread_fraction(self, above: np.ndarray) -> np.ndarray:
        """``s(k) = 1 - exp(-k / K)`` of atoms with ``above = k`` atoms above them in their column."""
        return -np.expm1(-np.asarray(above, dtype=float) / max(self.spread_atoms, 1e-9))

    def channelling(self, extra: np.ndarray) -> np.ndarray:
        """``g(m)`` of atoms whose columns hold ``extra = m - 1`` other atoms."""
        g = (1.0 + self.channelling_b * extra) ** self.channelling_a
        if self.channelling_c:
            g = g * np.exp(-self.channelling_c * extra)
        return g

    def z_exponent_for(self, microscope: Microscope) -> float:
        """Z exponent for the microscope's detector.

        Fitted at a 70 mrad inner angle; elsewhere it moves towards the Rutherford value 2
        for higher inner angles and towards 1 for lower ones (a documented heuristic, after
        Hartel et al. 1996 / Krivanek et al. 2010: ~1.4 at 40 mrad, ~1.7 at 70, ~1.9 above 150).
        """
        inner = microscope.detector_mrad[0]
        n0 = self.z_exponent
        if inner >= _REFERENCE_INNER_MRAD:
            return 2.0 - (2.0 - n0) * math.exp(-(inner - _REFERENCE_INNER_MRAD) / 60.0)
        return 1.0 + (n0 - 1.0) * math.exp(-(_REFERENCE_INNER_MRAD - inner) / 60.0)


def as_parameters(parameters: FastParameters | Mapping[str, Any] | None) -> FastParameters | None:
    """A :class:`FastParameters` from itself, a mapping of its fields (e.g. from a dataset
    specification's ``backend_options``), or ``None`` (the shipped parameters, resolved later).

    Raises
    ------
    ConfigError
        For unknown field names or another type.
    """
    if parameters is None or isinstance(parameters, FastParameters):
        return parameters
    if isinstance(parameters, Mapping):
        names = {f.name for f in fields(FastParameters)}
        unknown = set(parameters) - names
        if unknown:
            raise ConfigError(f"unknown fast-simulator parameter(s) {sorted(unknown)}; "
                              f"expected some of {sorted(names)}")
        return FastParameters(**parameters)
    raise ConfigError(f"parameters must be a FastParameters or a mapping of its fields, "
                      f"got {type(parameters).__name__}")


def resolve_parameters(parameters: Any = None, calibration: Any = _UNSET, *, stacklevel: int = 3) -> Any:
    """``parameters``, or the deprecated ``calibration`` keyword it replaced (with a
    ``DeprecationWarning``, raised at ``stacklevel``); both at once is an error.

    Raises
    ------
    ConfigError
        When both are given.
    """
    if calibration is _UNSET:
        return parameters
    warnings.warn("the calibration= keyword of the fast simulator is deprecated; use parameters= "
                  "(the same FastParameters or mapping of its fields)", DeprecationWarning,
                  stacklevel=stacklevel)
    if parameters is not None:
        raise ConfigError("give the fast simulator's parameters once: parameters= (calibration= is "
                          "its deprecated name)")
    return calibration


#: Name of the shipped parameters file (in ``clusterspy.simulation``).
PARAMETERS_FILE = "fast_parameters.json"


@cache
def _shipped_parameters_file() -> dict[str, Any]:
    """Contents of the shipped ``fast_parameters.json`` (``{}`` when absent)."""
    try:
        text = resources.files("clusterspy.simulation").joinpath(PARAMETERS_FILE).read_text(
            encoding="utf-8")
    except FileNotFoundError:
        return {}
    return json.loads(text)


@cache
def default_parameters() -> FastParameters:
    """The parameters shipped with the package (``fast_parameters.json``, fitted to PRISM)."""
    return FastParameters.from_dict(_shipped_parameters_file().get("parameters", {}))


def parameters_record(parameters: FastParameters | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a fast-simulated dataset was made with: the parameters and where they come from.

    ``parameters`` as accepted by :func:`as_parameters` (e.g. pinned in a dataset
    specification's ``backend_options``); ``None``: the shipped parameters, with their provenance
    (the fitting command and the cases they were fitted on).
    """
    pinned = as_parameters(parameters)
    if pinned is not None:
        return {"source": "given (dataset specification)", "parameters": pinned.to_dict()}
    shipped = _shipped_parameters_file()
    return {"source": f"shipped {PARAMETERS_FILE}", "parameters": default_parameters().to_dict(),
            **{k: shipped[k] for k in ("command", "fitted_on") if k in shipped}}


#: Deprecated names (before issue #17: "calibration" also meant the pixel size and the
#: classifier's confidence) → their new names; looked up by :func:`__getattr__` with a warning.
DEPRECATED_NAMES = {
    "FastCalibration": "FastParameters",
    "as_calibration": "as_parameters",
    "default_calibration": "default_parameters",
    "calibration_record": "parameters_record",
}


def deprecated_name(module: str, name: str) -> Any:
    """The object a deprecated name stands for, with a ``DeprecationWarning`` (for the module
    ``__getattr__`` of ``module``, raised at its caller); ``AttributeError`` for other names."""
    if name not in DEPRECATED_NAMES:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    new = DEPRECATED_NAMES[name]
    warnings.warn(f"{module}.{name} is deprecated; use {module}.{new} (the fast simulator's "
                  "parameters, fitted to PRISM)", DeprecationWarning, stacklevel=3)
    return globals()[new]


def __getattr__(name: str) -> Any:
    return deprecated_name(__name__, name)


def column_occupancy(
    xy: np.ndarray, radius_A: float, group: np.ndarray | None = None, depth: np.ndarray | None = None
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Number of atoms within ``radius_A`` [Å] of each atom in projection (itself included).

    Parameters
    ----------
    xy : numpy.ndarray
        ``(N, 2)`` projected positions [Å].
    radius_A : float
        Column radius [Å] (distances ``<= radius_A`` count).
    group : numpy.ndarray, optional
        ``(N,)`` non-negative ints: atoms only count atoms of their own group (e.g. the
        scenes of a batch, counted in one call).
    depth : numpy.ndarray, optional
        ``(N,)`` depths [Å] (beam direction): also count, for each atom, the atoms of its column
        above it (at a smaller depth).

    Returns
    -------
    numpy.ndarray or tuple of numpy.ndarray
        ``(N,)`` float counts; with ``depth``, ``(counts, above)``.
    """
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    n = len(xy)
    if n == 0:
        return np.zeros(0) if depth is None else (np.zeros(0), np.zeros(0))
    r = float(radius_A)
    g = np.zeros(n) if group is None else np.asarray(group, dtype=float)
    # cells of height a bit over r along y: a neighbour lies in the atom's cell row or the two
    # next to it, within r along x. Sorted by (group, cell row, x), each is one contiguous range;
    # every pair is found once, from its first atom in that order: the atoms after it in its own
    # row (up to x + r) and those of the next row (x - r … x + r).
    cy = np.floor((xy[:, 1] - xy[:, 1].min()) / (r * (1.0 + 1e-6)))
    row = g * (cy.max() + 3.0) + cy + 1.0
    x = xy[:, 0] - xy[:, 0].min() + r
    big = float(x.max()) + 2.0 * r + 1.0
    key = row * big + x
    order = np.argsort(key, kind="stable")
    key, row, x = key[order], row[order], x[order]
    xo, yo = xy[order, 0], xy[order, 1]  # distances from the given coordinates
    eps = 1e-9 * (1.0 + float(key[-1]))  # ranges a little wide; the distance test decides
    index = np.arange(n)
    start_next = key + (big - r - eps)
    lo = np.concatenate([index + 1, np.searchsorted(key, start_next, side="left")])
    ends = np.concatenate([key + (r + eps), start_next + (2.0 * r + 2.0 * eps)])
    hi = np.searchsorted(key, ends, side="right")
    width = np.maximum(hi - lo, 0)
    atom = np.repeat(np.tile(index, 2), width)
    other = np.arange(len(atom)) - np.repeat(np.cumsum(width) - width - lo, width)
    dx = xo[atom] - xo[other]
    dy = yo[atom] - yo[other]
    near = dx * dx + dy * dy <= r * r
    a, o = atom[near], other[near]
    out = np.empty(n)
    out[order] = 1.0 + np.bincount(a, minlength=n) + np.bincount(o, minlength=n)
    if depth is None:
        return out
    zo = np.asarray(depth, dtype=float)[order]
    za, zb = zo[a], zo[o]
    above = np.empty(n)
    above[order] = np.bincount(a[zb < za], minlength=n) + np.bincount(o[za < zb], minlength=n)
    return out, above


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
    parameters : FastParameters or mapping, optional
        Model parameters (fitted to PRISM); defaults to the shipped ones
        (:func:`default_parameters`). ``calibration=`` is their deprecated name.
    oversample : int, optional
        Render-grid pixels per output pixel (along each axis); default: the least factor that
        samples the probe intensity at its Nyquist limit. Fewer alias the probe's finest
        frequencies (cheaper, for rough templates).
    """

    def __init__(
        self,
        microscope: Microscope,
        pixel_size_A: float,
        shape: tuple[int, int],
        parameters: FastParameters | Mapping[str, Any] | None = None,
        *,
        calibration: Any = _UNSET,
        oversample: int | None = None,
    ) -> None:
        keep_freed_memory()
        parameters = as_parameters(resolve_parameters(parameters, calibration))
        self.microscope = microscope
        self.pixel_size_A = float(pixel_size_A)
        self.shape = (int(shape[0]), int(shape[1]))
        #: The model's parameters (:class:`FastParameters`).
        self.parameters = parameters or default_parameters()
        nyquist_A = 1.0 / (2.0 * microscope.probe_band_limit_per_A)
        auto = max(1, math.ceil(self.pixel_size_A / nyquist_A - 1e-6))
        #: Render-grid pixels per output pixel along each axis.
        self.oversample = auto if oversample is None else max(1, int(oversample))
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
        blur = Microscope(source_size_A=self.parameters.extra_blur_A).source_transfer(ky, kx)
        self._base = microscope.source_transfer(ky, kx) * blur / kernel
        #: transfer function of the spread probe's extra broadening (float32, rfft layout)
        spread = Microscope(source_size_A=self.parameters.spread_blur_A)
        self._spread = spread.source_transfer(ky, kx).astype(np.float32)
        self._filters: dict[float, np.ndarray] = {}
        self._spread_filters: dict[float, np.ndarray] = {}
        self._spread_steps: dict[tuple[float, float], np.ndarray] = {}
        self._row_ramps: dict[int, np.ndarray] = {}
        self._support_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        alpha = microscope.semiangle_mrad * 1e-3
        dof_A = microscope.wavelength_A / alpha**2
        step = self.parameters.depth_step_A
        #: Spacing [Å] of the depth planes.
        self.depth_step_A = float(step) if step else DEPTH_STEP_DOF_FRACTION * dof_A
        self.exponent = self.parameters.z_exponent_for(microscope)

    @property
    def calibration(self) -> FastParameters:
        """Deprecated name of :attr:`parameters`."""
        warnings.warn("FastSimulator.calibration is deprecated; use FastSimulator.parameters",
                      DeprecationWarning, stacklevel=2)
        return self.parameters

    def _filter(self, depth_A: float, spread: bool = False) -> np.ndarray:
        """Transfer function (rfft layout, complex64) of the probe at depth ``depth_A`` [Å]
        (with ``spread``: of the spread probe)."""
        key = round(float(depth_A), 3)
        if spread:
            if key not in self._spread_filters:
                self._spread_filters[key] = (self._filter(key) * self._spread).astype(np.complex64)
            return self._spread_filters[key]
        if key not in self._filters:
            probe = self.microscope.probe_intensity(
                self.render_shape, self.render_pixel_A, self.microscope.defocus_A - key
            )
            # probe as a density [1/Å²]: the image does not depend on the pixel size
            density = probe / self.render_pixel_A**2
            if self.microscope.three_fold_A > 0:
                # the image of a point is the probe turned about its centre, P(-r) (the scan correlates
                # the probe with the object): only a probe without a centre of symmetry — three-fold
                # astigmatism — differs from it (PRISM agrees only so: NCC 0.79 -> 0.997 on one atom,
                # C23 = 5000 Å); the others are used as they are, their images unchanged to the bit
                density = np.roll(density[::-1, ::-1], 1, axis=(0, 1))
            self._filters[key] = (np.fft.rfft2(density) * self._base).astype(np.complex64)
        return self._filters[key]

    def atom_weights(self, scene: Scene) -> tuple[np.ndarray, np.ndarray]:
        """Weights (detector-fraction units) of the metal and the support atoms of a scene (the
        spread, when on, divides a metal atom's weight between the two probes; the sum stays)."""
        wm, _ = self._metal_weights(scene.metal_positions, scene.metal_numbers)
        return wm, self.parameters.scale * scene.support_numbers.astype(float) ** self.exponent

    def _metal_weights(
        self, positions: np.ndarray, numbers: np.ndarray, group: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``c Z^n g(m)`` of metal atoms at ``positions`` [Å], and (with the spread on) the number
        of atoms above each one in its column; ``group`` keeps the scenes of a block apart."""
        cal = self.parameters
        wm = cal.scale * numbers.astype(float) ** self.exponent
        above = None
        if len(wm) and (cal.has_channelling or cal.has_spread):
            if cal.has_spread:
                m, above = column_occupancy(positions[:, :2], cal.column_radius_A, group=group,
                                            depth=positions[:, 2])
            else:
                m = column_occupancy(positions[:, :2], cal.column_radius_A, group=group)
            if cal.has_channelling:
                wm = wm * cal.channelling(m - 1.0)
        return wm, above

    def _support_spectrum(self, scene: Scene) -> np.ndarray:
        """``rfft2`` of the support's weighted bilinear splat (complex64), cached by content."""
        key = scene.support_key or support_key(scene.support_positions[:, :2], scene.support_numbers)
        with self._lock:
            spec = self._support_cache.get(key)
            if spec is not None:
                self._support_cache.move_to_end(key)
                return spec
        ny, nx = self.render_shape
        _, ws = self.atom_weights(
            Scene(np.zeros((0, 3)), np.zeros(0, int), scene.support_positions, scene.support_numbers)
        )
        idx, w = self._splat_indices(scene.support_positions, [(np.int64(0), ws)])
        grid = np.bincount(idx, w, minlength=ny * nx).astype(np.float32).reshape(ny, nx)
        spec = sfft.rfft2(grid)
        with self._lock:
            self._support_cache[key] = spec
            while len(self._support_cache) > max(1, SUPPORT_CACHE_BYTES // spec.nbytes):
                self._support_cache.popitem(last=False)
        return spec

    def _spread_step(self, depth_A: float, step_A: float) -> np.ndarray:
        """Difference of the spread probe's transfer functions one plane deeper and at ``depth_A``."""
        key = (round(float(depth_A), 3), round(float(step_A), 3))
        if key not in self._spread_steps:
            deeper = self._filter(depth_A + step_A, spread=True)
            self._spread_steps[key] = deeper - self._filter(depth_A, spread=True)
        return self._spread_steps[key]

    def _splat_indices(
        self,
        positions: np.ndarray,
        planes: list[tuple[np.ndarray, np.ndarray]],
        band: tuple[int, int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Flat grid indices and weights of a bilinear splat of ``positions`` [Å] (x, y).

        ``planes`` lists ``(plane index, weight)`` pairs (arrays broadcastable to the atoms):
        every atom is spread over 4 pixels of each of its planes. ``band = (row0, height)``:
        the planes hold only the render rows ``row0 … row0 + height - 1`` (from :meth:`_row_band`).
        """
        ny, nx = self.render_shape
        r = self.render_pixel_A
        fx, fy = positions[:, 0] / r, positions[:, 1] / r
        ix, iy = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
        tx, ty = fx - ix, fy - iy
        ix0 = np.mod(ix, nx)
        ix1 = np.where(ix0 + 1 == nx, 0, ix0 + 1)
        if band is None:
            iy0 = np.mod(iy, ny)
            iy1 = np.where(iy0 + 1 == ny, 0, iy0 + 1)
        else:
            ny = band[1]
            iy0 = iy - band[0]
            iy1 = iy0 + 1
        pix = np.stack([iy0 * nx + ix0, iy0 * nx + ix1, iy1 * nx + ix0, iy1 * nx + ix1])
        wxy = np.stack([(1 - ty) * (1 - tx), (1 - ty) * tx, ty * (1 - tx), ty * tx])
        idx = [plane * (ny * nx) + pix for plane, _ in planes]
        w = [wp * wxy for _, wp in planes]
        return np.concatenate([a.ravel() for a in idx]), np.concatenate([a.ravel() for a in w])

    def _row_band(self, positions: np.ndarray) -> tuple[int, int] | None:
        """``(row0, height)``: the render rows a bilinear splat of ``positions`` [Å] touches, when
        they lie inside the grid without wrapping and leave some rows empty (else ``None``)."""
        ny = self.render_shape[0]
        iy = np.floor(positions[:, 1] / self.render_pixel_A)
        lo, hi = int(iy.min()), int(iy.max()) + 2
        if lo < 0 or hi > ny or hi - lo > ny - 8:
            return None
        return lo, hi - lo

    def _row_ramp(self, row0: int) -> np.ndarray:
        """``exp(-2πi m row0 / ny)`` ``(ny, 1)`` complex64: moves a band's spectrum down ``row0`` rows."""
        ramp = self._row_ramps.get(row0)
        if ramp is None:
            ny = self.render_shape[0]
            ramp = np.exp(-2j * np.pi * row0 * np.arange(ny) / ny).astype(np.complex64)[:, None]
            self._row_ramps[row0] = ramp
        return ramp

    def _metal_grid(
        self, scenes: list[Scene], n_metal: int
    ) -> tuple[np.ndarray, np.ndarray, tuple[int, int] | None] | None:
        """Splat of the metal atoms of a block, the depths [Å] of their spread planes, and the
        band of rows the grid holds.

        All atoms of the block at once: weights ``c Z^n g(m)`` (:meth:`atom_weights`), linear
        between the depth planes, bilinear in x, y. The grid is ``(len(scenes), planes, ny,
        nx)`` float32 with ``planes = n_metal``, or ``n_metal + 1`` with the spread (the last
        plane holds the spread part ``s(k)`` of the weights; its depth per scene is the
        weighted mean depth of that part). When the atoms touch only a band ``(row0, height)``
        of the render rows (:meth:`_row_band`), the grid holds just those ``height`` rows (the
        others are zero: their FFT costs nothing). ``None`` when there is no metal atom.
        """
        sizes = [len(sc.metal_numbers) for sc in scenes]
        if not sum(sizes):
            return None
        cal = self.parameters
        ny, nx = self.render_shape
        pos = np.concatenate([sc.metal_positions for sc in scenes])
        numbers = np.concatenate([sc.metal_numbers for sc in scenes])
        scene_of = np.repeat(np.arange(len(scenes)), sizes)
        wm, above = self._metal_weights(pos, numbers, scene_of)
        spread = cal.has_spread
        planes = n_metal + 1 if spread else n_metal
        base = scene_of * planes
        fz = np.clip(pos[:, 2] / self.depth_step_A, 0.0, n_metal - 1)
        k0 = np.floor(fz).astype(np.int64)
        tz = fz - k0
        k1 = np.minimum(k0 + 1, n_metal - 1)
        depths = np.zeros(len(scenes))
        band = self._row_band(pos)
        if band is not None:
            ny = band[1]
        if spread:
            ws = wm * cal.spread_fraction(above)
            wm = wm - ws
            total = np.bincount(scene_of, ws, minlength=len(scenes))
            depths = np.bincount(scene_of, ws * pos[:, 2], minlength=len(scenes)) / np.maximum(total, 1e-300)
            spec = [(base + k0, wm * (1.0 - tz)), (base + k1, wm * tz), (base + n_metal, ws)]
            idx, w = self._splat_indices(pos, spec, band)
        else:
            idx, w = self._splat_indices(pos, [(base + k0, wm * (1.0 - tz)), (base + k1, wm * tz)], band)
        grid = np.bincount(idx, w, minlength=len(scenes) * planes * ny * nx).astype(np.float32)
        return grid.reshape(len(scenes), planes, ny, nx), depths, band

    def render(self, scenes: list[Scene]) -> np.ndarray:
        """Noiseless images of ``scenes`` (in field coordinates, see ``geometry``).

        Returns
        -------
        numpy.ndarray
            ``(len(scenes), rows, cols)`` float32, in units of the fraction of the incident beam
            reaching the detector.
        """
        rows, cols = self.shape
        out = np.empty((len(scenes), rows, cols), dtype=np.float32)
        if not scenes:
            return out
        size = balanced_block(len(scenes), self.block_images, _cpu_count())
        blocks = [(i, scenes[i : i + size]) for i in range(0, len(scenes), size)]
        # the FFTs (most of the time) release the GIL: render blocks on all cores
        workers = min(len(blocks), _cpu_count())
        if workers > 1:
            pool = thread_pool()
            for i, block in zip(
                (b[0] for b in blocks), pool.map(lambda b: self._render_block(b[1]), blocks), strict=True
            ):
                out[i : i + len(block)] = block
        else:
            for i, block in blocks:
                out[i : i + len(block)] = self._render_block(block)
        return out

    @property
    def block_images(self) -> int:
        """Images per vectorised block: ``RENDER_BLOCK_PIXELS`` render-grid pixels (1 … ``RENDER_BLOCK``)."""
        ny, nx = self.render_shape
        return max(1, min(RENDER_BLOCK, RENDER_BLOCK_PIXELS // (ny * nx)))

    @property
    def shifts_lines_in_fourier_space(self) -> bool:
        """Whether :meth:`_render_block` can apply per-line x shifts (render grid = output grid)."""
        return self.render_shape == self.shape

    def _render_block(self, scenes: list[Scene], line_shifts_px: np.ndarray | None = None) -> np.ndarray:
        """Noiseless images of a block of scenes (see :meth:`render`).

        ``line_shifts_px`` ``(len(scenes), rows)`` [px]: shift every output line, ``I'(x) =
        I(x + s)`` (``Acquisition.line_shifts_px``), in Fourier space between the two passes of
        the inverse FFT, which saves a forward and an inverse FFT of every line; only when
        :attr:`shifts_lines_in_fourier_space`.
        """
        cal = self.parameters
        ny, nx = self.render_shape
        step = self.depth_step_A
        cap = max(1, int(cal.max_depth_planes))
        max_depth = max(
            (float(s.metal_positions[:, 2].max()) for s in scenes if len(s.metal_positions)), default=0.0
        )
        n_metal = int(min(cap, math.ceil(max_depth / step - 1e-9) + 1))

        support_planes: list[tuple[int, int, float, np.ndarray]] = []
        for b, scene in enumerate(scenes):
            if len(scene.support_numbers):
                # an amorphous support: its splat's spectrum is cached; it takes the probe of
                # its mean depth, interpolated linearly between the depth planes like the metal
                fz = min(float(scene.support_positions[:, 2].mean()) / step, cap - 1.0)
                k0 = math.floor(fz)
                support_planes.append((b, k0, fz - k0, self._support_spectrum(scene)))
        metal = self._metal_grid(scenes, n_metal)
        n_filters = max([n_metal] + [k0 + 2 for _, k0, _, _ in support_planes])
        filters = [self._filter(k * step) for k in range(min(n_filters, cap))]

        def at_depth(fz: float) -> np.ndarray:
            """The probe's transfer function at ``fz`` planes' depth, linear between planes."""
            k0 = min(math.floor(fz), len(filters) - 1)
            t = fz - k0
            if t <= 0.0 or k0 + 1 >= len(filters):
                return filters[k0]
            return (1 - t) * filters[k0] + t * filters[k0 + 1]

        if metal is not None:
            grid, spread_depths, band = metal
            if band is None:
                planes = sfft.rfft2(grid)
            else:  # only the band's rows along x; zero-padded to all rows along y
                planes = sfft.fft(sfft.rfft(grid, axis=-1), n=ny, axis=-2, overwrite_x=True)
            spec = np.multiply(planes[:, 0], filters[0])
            term = np.empty_like(spec)
            for k in range(1, n_metal):
                spec += np.multiply(planes[:, k], filters[k], out=term)
            if grid.shape[1] > n_metal:  # the spread plane: probe at its mean depth, broadened
                spread = [self._filter(k * step, spread=True) for k in range(n_metal)]
                f = np.empty_like(spread[0])
                for b, z in enumerate(spread_depths):
                    fz = min(max(float(z), 0.0) / step, n_metal - 1.0)
                    k0 = min(math.floor(fz), n_metal - 1)
                    if fz > k0:  # linear between the planes: S_k0 + t (S_k0+1 - S_k0)
                        np.multiply(self._spread_step(k0 * step, step), fz - k0, out=f)
                        f += spread[k0]
                    else:
                        f[...] = spread[k0]
                    spec[b] += np.multiply(planes[b, n_metal], f, out=term[b])
            if band is not None and band[0]:
                spec *= self._row_ramp(band[0])
        else:
            spec = np.zeros((len(scenes), ny, nx // 2 + 1), dtype=np.complex64)
        for b, k0, t, s in support_planes:
            spec[b] += s * at_depth(k0 + t)
        u = self.oversample
        rows, cols = self.shape
        if line_shifts_px is None and u > 1 and ny % u == 0:
            # only every u-th row is sampled: sum the spectrum's row aliases (a fold) and invert
            # ny / u rows; the same image at a u-th of the cost of the inverse along y
            folded = spec.reshape(len(scenes), u, ny // u, spec.shape[-1]).sum(axis=1)
            folded *= np.float32(1.0 / u)
            img = sfft.irfft(sfft.ifft(folded, axis=-2, overwrite_x=True), n=nx, axis=-1)
            out = np.ascontiguousarray(img[:, :rows, : cols * u : u], dtype=np.float32)
            return np.maximum(out, 0.0, out=out)
        if line_shifts_px is None:
            img = sfft.irfft2(spec, s=(ny, nx))
        else:
            if not self.shifts_lines_in_fourier_space:
                raise ValueError("line shifts need a render grid equal to the output grid")
            lines = sfft.ifft(spec, axis=-2)
            lines *= line_shift_phase(line_shifts_px, nx)
            img = sfft.irfft(lines, n=nx, axis=-1)
        out = np.ascontiguousarray(img[:, : rows * u : u, : cols * u : u], dtype=np.float32)
        # the deconvolved splat rings slightly (≲ 2 % of the peak) where the probe reaches
        # the Nyquist frequency; an intensity is never negative
        return np.maximum(out, 0.0, out=out)


_POOL: dict[int, ThreadPoolExecutor] = {}
_POOL_LOCK = threading.Lock()


def thread_pool() -> ThreadPoolExecutor:
    """The process's pool of one thread per core, for work that releases the GIL (FFTs, matrix
    products); created on first use, and again in a forked child (whose copy has no threads).

    Tasks given to it must not wait for other tasks of it. Starting a pool for every call cost a
    structure fit of a 923-atom cluster 1.3 s in 680 thread starts.
    """
    pid = os.getpid()
    with _POOL_LOCK:
        pool = _POOL.get(pid)
        if pool is None:
            _POOL.clear()
            pool = _POOL[pid] = ThreadPoolExecutor(_cpu_count(), thread_name_prefix="clusterspy")
        return pool


def balanced_block(n_images: int, most: int, cores: int) -> int:
    """Images per block for ``n_images`` rendered on ``cores``: at most ``most``, in blocks of nearly
    equal size whose number is a multiple of ``cores`` (each core renders as many) where that
    takes no smaller blocks than the rounding of a long batch.

    A structure fit scores 12–18 poses at a time: in blocks of the most images (4 at 256² px, 16 at
    128² px) that was 3–4 blocks on 2 cores (one core idle a third of the time) or one block (one
    core idle).
    """
    if n_images <= 0:
        return max(1, most)
    blocks = -(-n_images // max(1, most))
    if cores > 1:
        blocks = min(n_images, -(-blocks // cores) * cores)
    return -(-n_images // blocks)


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
