"""HAADF-STEM image simulation: one face, two backends.

- ``backend="prism"``: abTEM's PRISM multislice with frozen phonons (accurate, ~seconds to
  minutes per image; needs ``clusterspy[train]``);
- ``backend="fast"``: an incoherent model whose parameters were fitted to PRISM (``fast.py``,
  :class:`FastParameters`), about 0.5–0.8 ms of CPU per 128² image with exact Poisson noise
  (``poisson.py``), batched and threaded by :func:`simulate_batch`; it never imports abTEM.

Both return a :class:`clusterspy.image.Image` on the same pixel grid (see ``geometry.py``):
the field is centred on the metal atoms' x, y centre, which lands on pixel
``(rows // 2, cols // 2)``; ``data[row, col]`` with row = +y, col = +x.

Examples
--------
>>> from ase.cluster import Icosahedron
>>> from clusterspy.simulation import Acquisition, Microscope, simulate
>>> image = simulate(Icosahedron("Au", 3), Microscope(), pixel_size=0.2, extent=25.6,
...                  rng=0, acquisition=Acquisition(dose_e_per_A2=1e4))
>>> image.shape, image.pixel_size_A
((128, 128), 0.2)
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from clusterspy.errors import ConfigError
from clusterspy.image import Image
from clusterspy.simulation.acquisition import Acquisition
from clusterspy.simulation.fast import (
    _UNSET,
    FastParameters,
    FastSimulator,
    _cpu_count,
    as_parameters,
    default_parameters,
    deprecated_name,
    parameters_record,
    resolve_parameters,
)
from clusterspy.simulation.geometry import (
    Field,
    PlacedSupport,
    Scene,
    build_scene,
    field_shape,
    place_support,
)
from clusterspy.simulation.microscope import Microscope, antialias_limit_mrad, wavelength_A

if TYPE_CHECKING:
    from ase import Atoms

__all__ = [
    "Acquisition",
    "FastParameters",
    "FastSimulator",
    "Field",
    "Microscope",
    "PlacedSupport",
    "Scene",
    "antialias_limit_mrad",
    "build_scene",
    "default_parameters",
    "ncc",
    "parameters_record",
    "place_support",
    "simulate",
    "simulate_batch",
    "wavelength_A",
]

BACKENDS = ("fast", "prism")


def __getattr__(name: str) -> Any:
    # the deprecated names of the fast simulator's parameters (FastCalibration, ...), with a warning
    return deprecated_name(__name__, name)


def _rng(rng: np.random.Generator | int | None) -> tuple[np.random.Generator, Any]:
    """A Generator and what to record about it in the metadata."""
    if isinstance(rng, np.random.Generator):
        return rng, {
            "bit_generator": type(rng.bit_generator).__name__,
            "state": rng.bit_generator.state.get("state"),
        }
    if rng is None or isinstance(rng, int | np.integer):
        seed = None if rng is None else int(rng)
        return np.random.default_rng(seed), {"seed": seed}
    raise ConfigError(f"rng must be a numpy.random.Generator, an int seed or None, got {type(rng).__name__}")


@lru_cache(maxsize=16)
def _fast_simulator(
    microscope: Microscope,
    pixel_size: float,
    shape: tuple[int, int],
    parameters: FastParameters | None,
) -> FastSimulator:
    return FastSimulator(microscope, pixel_size, shape, parameters)


def simulate(
    atoms: Atoms,
    microscope: Microscope | None = None,
    pixel_size: float = 0.2,
    extent: float | tuple[float, float] = 25.6,
    backend: str = "fast",
    rng: np.random.Generator | int | None = None,
    acquisition: Acquisition | None = None,
    support: Atoms | None = None,
    **backend_options: Any,
) -> Image:
    """Simulate a HAADF-STEM image of a cluster (optionally on a support).

    Parameters
    ----------
    atoms : ase.Atoms
        The cluster (positions in Å); the field is centred on its metal atoms in x, y.
    microscope : Microscope, optional
        Defaults to ``Microscope()`` (200 keV, 25 mrad, HAADF 70–200 mrad).
    pixel_size : float
        Output pixel size [Å/px].
    extent : float or tuple of float
        Field of view [Å]: a width, or ``(width, height)``.
    backend : {"fast", "prism"}
        Simulator (see the module docstring).
    rng : numpy.random.Generator or int, optional
        Source of all randomness (frozen phonons, noise, jitter); an int is a seed.
    acquisition : Acquisition, optional
        Dose, noise, detector and scan distortions; ``None`` gives the ideal image.
    support : ase.Atoms, optional
        A support slab (e.g. ``clusterspy.structures.carbon_support``); it is centred on the
        field and put just beyond the cluster along the beam.
    **backend_options
        For "prism": ``interpolation``, ``potential_sampling_A``, ``slice_thickness_A``,
        ``frozen_phonons``, ``thermal_sigma_A`` (see :func:`prism.simulate_prism`); for
        "fast": ``parameters`` (:class:`FastParameters`, or a mapping of its fields, as a
        dataset specification's ``backend_options`` can pin them; default: the shipped ones,
        fitted to PRISM; ``calibration`` is their deprecated name).

    Returns
    -------
    Image
        ``data[row, col]`` float32 (fraction of the beam on the detector, or detector units
        after ``acquisition``), ``pixel_size_A = pixel_size``; ``metadata`` records the backend,
        microscope, acquisition, field origin (Å) and the random state.
    """
    microscope = Microscope() if microscope is None else microscope
    if not isinstance(microscope, Microscope):
        raise ConfigError("microscope must be a clusterspy.simulation.Microscope")
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    generator, rng_meta = _rng(rng)
    field, scene = build_scene(atoms, pixel_size, extent, support)
    if backend == "fast":
        parameters = resolve_parameters(backend_options.pop("parameters", None),
                                        backend_options.pop("calibration", _UNSET))
        if backend_options:
            raise ConfigError(f"unknown option(s) for the fast backend: {', '.join(backend_options)}")
        sim = _fast_simulator(microscope, field.pixel_size_A, field.shape, as_parameters(parameters))
        data = sim.render([scene])[0]
    else:
        from clusterspy.simulation.prism import simulate_prism

        data = simulate_prism(field, scene, microscope, generator, **backend_options)
    if acquisition is not None:
        data = acquisition.apply(data, field.pixel_size_A, generator)
    return Image(
        data,
        field.pixel_size_A,
        _metadata(
            backend,
            microscope,
            acquisition,
            field,
            rng_meta,
            len(scene.metal_numbers),
            len(scene.support_numbers),
        ),
    )


def simulate_batch(
    atoms: Sequence[Atoms | tuple[np.ndarray, np.ndarray]],
    microscope: Microscope | None = None,
    pixel_size: float = 0.2,
    extent: float | tuple[float, float] = 25.6,
    rng: np.random.Generator | int | None = None,
    acquisition: Acquisition | None = None,
    support: Sequence[Atoms | tuple[np.ndarray, np.ndarray] | None] | None = None,
    parameters: FastParameters | dict[str, Any] | None = None,
    chunk: int = 32,
    *,
    calibration: Any = _UNSET,
) -> list[Image]:
    """Simulate many images with the fast backend, vectorised (for training sets).

    Parameters
    ----------
    atoms : sequence of ase.Atoms or (positions [Å], atomic numbers) pairs
        One cluster per image.
    microscope, pixel_size, extent, rng, acquisition
        As in :func:`simulate`; all images share them. With an acquisition, every block of
        ``min(chunk, FastSimulator.block_images)`` images draws its noise from a child generator
        ``rng.spawn``-ed in order, so the result is reproducible from ``rng`` whatever the
        threads do (it differs from :func:`simulate` image by image).
    support : sequence, optional
        One support (or None) per image: ``ase.Atoms``, a (positions, numbers) pair or a
        :class:`PlacedSupport`. A support object given for several images is placed once and
        its rendering is cached (by content), so reusing a few slabs costs almost nothing.
    parameters : FastParameters or mapping, optional
        Fast-model parameters (default: the shipped ones, fitted to PRISM).
    chunk : int
        Largest number of images rendered and acquired in one vectorised block (capped at
        ``FastSimulator.block_images``: 16 for 128² px, fewer for larger images, so that the
        block's temporaries are reused rather than page-faulted in, see ``simulation._memory``);
        blocks run on all cores (threads).
    calibration : FastParameters or mapping, optional
        Deprecated name of ``parameters`` (a ``DeprecationWarning``).

    Returns
    -------
    list of Image
        Their ``data`` are views into one ``(n, rows, cols)`` float32 array
        (``np.stack([im.data for im in images])`` or ``images[0].data.base`` to get it).
    """
    microscope = Microscope() if microscope is None else microscope
    generator, rng_meta = _rng(rng)
    n = len(atoms)
    supports = [None] * n if support is None else list(support)
    if len(supports) != n:
        raise ConfigError(f"got {len(supports)} supports for {n} structures; give one per image")
    shape = field_shape(pixel_size, extent)
    parameters = resolve_parameters(parameters, calibration)
    sim = _fast_simulator(microscope, float(pixel_size), shape, as_parameters(parameters))
    out = np.empty((n, *shape), dtype=np.float32)
    fields: list[Field] = []
    # a support reused for many clusters is placed (and hashed) once
    placed: dict[int, PlacedSupport] = {}
    for s in supports:
        if s is not None and not isinstance(s, PlacedSupport) and id(s) not in placed:
            placed[id(s)] = place_support(s, pixel_size, extent)
    block = max(1, min(int(chunk), sim.block_images))
    starts = list(range(0, n, block))
    # one child generator per block, spawned in order: reproducible whatever the threads do
    children = generator.spawn(len(starts)) if acquisition is not None else [None] * len(starts)

    # per-line x shifts (jitter, x drift, shear) go into the rendering's inverse FFT when they
    # come first in the scan distortions (no y drift) and the render grid is the output grid
    fuse = (
        acquisition is not None and not acquisition.drift_A_per_line[1] and sim.shifts_lines_in_fourier_space
    )

    def work(start: int, child: np.random.Generator | None) -> list[Field]:
        # scenes are built here, block by block: each holds a copy of its support's atoms (~50 kB
        # for 2,000 C atoms), which, built all ahead, took fresh pages (~12 faults per image)
        fields, scenes = [], []
        for a, s in zip(atoms[start : start + block], supports[start : start + block], strict=True):
            field, scene = build_scene(a, pixel_size, extent, placed.get(id(s), s))
            fields.append(field)
            scenes.append(scene)
        if fuse:
            shifts = acquisition.line_shifts_px(len(scenes), shape[0], float(pixel_size), child)
            data = sim._render_block(scenes, line_shifts_px=shifts)
            data = acquisition.apply(data, float(pixel_size), child, lines_shifted=True)
        else:
            data = sim._render_block(scenes)
            if acquisition is not None:
                data = acquisition.apply(data, float(pixel_size), child)
        out[start : start + len(scenes)] = data
        return fields

    # rendering and noise release the GIL: blocks run on all cores
    with ThreadPoolExecutor(max(1, min(len(starts), _cpu_count()))) as pool:
        futures = [pool.submit(work, start, child) for start, child in zip(starts, children, strict=True)]
        for f in futures:
            fields.extend(f.result())
    micro_d = microscope.to_dict()
    acq_d = None if acquisition is None else acquisition.to_dict()
    return [
        Image(
            out[i],
            f.pixel_size_A,
            _metadata("fast", micro_d, acq_d, f, rng_meta, None, None, index=i),
        )
        for i, f in enumerate(fields)
    ]


def _metadata(
    backend: str,
    microscope: Microscope | dict,
    acquisition: Acquisition | dict | None,
    field: Field,
    rng_meta: Any,
    n_metal: int | None,
    n_support: int | None,
    index: int | None = None,
) -> dict:
    meta = {
        "simulation": {
            "backend": backend,
            "microscope": _as_dict(microscope),
            "acquisition": None if acquisition is None else _as_dict(acquisition),
            "origin_A": list(field.origin_A),
            "rng": rng_meta,
        }
    }
    if n_metal is not None:
        meta["simulation"]["n_atoms"] = n_metal
        meta["simulation"]["n_support_atoms"] = n_support
    if index is not None:
        meta["simulation"]["batch_index"] = index
    return meta


def _as_dict(obj: Microscope | Acquisition | dict) -> dict:
    """``obj.to_dict()``, or a copy of a dict made by it (its values are numbers, str or lists)."""
    if isinstance(obj, dict):
        return {k: list(v) if isinstance(v, list) else v for k, v in obj.items()}
    return obj.to_dict()


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation (Pearson) of two images of the same shape, in [-1, 1]."""
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ConfigError(f"images differ in shape: {a.shape} vs {b.shape}")
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0
