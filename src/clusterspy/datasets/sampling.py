"""One labelled training example from a specification and an index — the unit of every dataset.

:func:`make_sample` draws every random choice from ``numpy.random.default_rng([seed, index])``,
so example ``index`` is the same bytes whoever computes it, in whatever order (Dask workers,
resumed runs, on-the-fly training). Pipeline for one example:

1. label = ``index % 4`` (balanced classes); shape, atom count (log-uniform), element;
2. atomic model from :func:`clusterspy.structures.cluster` (cached per process), rotated
   uniformly on SO(3) or onto a named zone axis (+ in-plane rotation and a small tilt), with
   Gaussian thermal displacements; optionally a neighbouring cluster;
3. HAADF image with :func:`clusterspy.simulation.simulate` at a random microscope
   (kV, convergence, detector, source size, defocus), image pixel size and dose (Poisson
   noise, scan jitter), optionally on an amorphous carbon support;
4. contrast changes (gamma, smooth background), optionally the image edge cutting the cluster;
5. crop and rescale to the model pixel size with :func:`clusterspy.detection.crop_cluster`
   — the very function used at inference — around the true centre plus a centring error.

The crop is returned *raw* (not normalised): :func:`clusterspy.weights.normalise_crops` is
applied by the training loader (:mod:`clusterspy.model.data`) exactly as at inference.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from typing import Any

import numpy as np

from clusterspy.isomers import CLASSES

#: Lattice constants [Å] of the fcc metals (used to rescale cached Au models).
LATTICE_A = {"Au": 4.078, "Pt": 3.924, "Pd": 3.891, "Ag": 4.086, "Cu": 3.615}
#: Atomic numbers.
Z = {"Au": 79, "Pt": 78, "Pd": 46, "Ag": 47, "Cu": 29}
#: Requested atom counts are snapped to this log-spaced grid so that models can be cached.
SIZE_GRID = np.unique(np.round(np.concatenate(
    [np.geomspace(40, 2000, 28), np.geomspace(2000, 16000, 8)[1:]])).astype(int))
#: Zone axes per motif (names understood by clusterspy.structures.cluster).
ZONE_AXES = {
    "icosahedral": ["5-fold", "3-fold", "2-fold"],
    "decahedral": ["5-fold", "across"],
    "fcc": ["[011]", "[001]", "[111]"],
    "amorphous": [],
}
#: Amorphous models are costly to relax (seconds each): a coarser size grid and few variants.
AMORPHOUS_SIZE_GRID = np.unique(np.round(np.geomspace(40, 2000, 12)).astype(int))
AMORPHOUS_VARIANTS = 3


def _uniform(rng: np.random.Generator, r: Any, log: bool = False) -> float:
    """Draw from a range ``[lo, hi]`` (log-uniform if ``log``), ``{"choices": [...]}`` or a constant."""
    if isinstance(r, dict):
        choices = r["choices"]
        return float(choices[int(rng.integers(len(choices)))])
    if not isinstance(r, (list, tuple)):
        return float(r)
    lo, hi = float(r[0]), float(r[1])
    if log:
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    return float(rng.uniform(lo, hi))


@lru_cache(maxsize=512)
def _base_structure(motif: str, shape: str | None, size: int, orientation: str, variant: int):
    """Au model (cached per process) in a reference orientation."""
    from clusterspy.structures import cluster

    rng = np.random.default_rng([size, variant, len(motif), len(shape or "")])
    orient: Any = np.eye(3) if orientation == "none" else orientation
    shp: Any = {"index": variant} if motif == "amorphous" else shape
    return cluster(motif, size, "Au", rng, shape=shp, orientation=orient, in_plane_deg=0.0)


#: Side [Å] of the cached carbon slabs that supports are cut from.
SLAB_A = 96.0


@lru_cache(maxsize=2)
def _slab(variant: int):
    """A large amorphous carbon slab (cached per process); supports are cut out of it."""
    from clusterspy.structures import carbon_support

    return carbon_support(SLAB_A, SLAB_A, rng=np.random.default_rng([7, variant]))


def _support(extent_A: float, thickness_A: float, rng: np.random.Generator):
    """A ``extent × extent × thickness`` [Å] carbon support cut at random from a cached slab.

    Cutting from a cached :func:`clusterspy.structures.carbon_support` slab (same density and
    minimum C–C distance) instead of building a new one saves ~0.3 s per image.
    """
    from ase import Atoms

    slab = _slab(int(rng.integers(2)))
    pos = slab.get_positions()
    e = min(float(extent_A), SLAB_A)
    x0, y0 = rng.uniform(-SLAB_A / 2, SLAB_A / 2 - e, 2)
    z0 = rng.uniform(-SLAB_A, -thickness_A)
    sel = ((pos[:, 0] >= x0) & (pos[:, 0] < x0 + e) & (pos[:, 1] >= y0) & (pos[:, 1] < y0 + e)
           & (pos[:, 2] >= z0) & (pos[:, 2] < z0 + thickness_A))
    sub = pos[sel] - np.array([x0 + e / 2, y0 + e / 2, z0 + thickness_A])
    return Atoms(numbers=np.full(len(sub), 6), positions=sub)


def _rotation(rng: np.random.Generator, tilt_max_mrad: float, zone: bool) -> np.ndarray:
    from clusterspy.structures.orientation import random_rotation, rotation_about_z

    if not zone:
        return random_rotation(rng)
    # in-plane rotation, then a small tilt about a random in-plane axis
    rz = rotation_about_z(rng.uniform(0, 2 * np.pi))
    tilt = rng.uniform(0, tilt_max_mrad) * 1e-3
    phi = rng.uniform(0, 2 * np.pi)
    axis = np.array([np.cos(phi), np.sin(phi), 0.0])
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rt = np.eye(3) + np.sin(tilt) * k + (1 - np.cos(tilt)) * (k @ k)
    return rt @ rz


def _make_atoms(spec: dict[str, Any], rng: np.random.Generator, motif: str, size_range,
                element: str, zone_fraction: float) -> tuple[Any, dict[str, Any]]:
    shapes = spec["motifs"][motif]
    shape = shapes[int(rng.integers(len(shapes)))]
    if (motif == "amorphous" and spec.get("amorphous_size_atoms") is not None
            and size_range is spec["size_atoms"]):
        size_range = spec["amorphous_size_atoms"]
    size_req = _uniform(rng, size_range, log=True)
    grid = AMORPHOUS_SIZE_GRID if motif == "amorphous" else SIZE_GRID
    size = int(grid[np.argmin(np.abs(np.log(grid) - np.log(size_req)))])
    zones = ZONE_AXES.get(motif, [])
    zone = zones[int(rng.integers(len(zones)))] if zones and rng.random() < zone_fraction else None
    lo_v, hi_v = spec.get("amorphous_variants", [0, AMORPHOUS_VARIANTS])
    variant = int(rng.integers(lo_v, hi_v)) if motif == "amorphous" else 0
    base = _base_structure(motif, shape, size, zone or "none", variant)
    atoms = base.copy()
    pos = atoms.get_positions()
    pos = pos - pos.mean(axis=0)
    pos *= LATTICE_A[element] / LATTICE_A["Au"]
    rot = _rotation(rng, float(_uniform(rng, spec["zone_axis_tilt_mrad"])), zone is not None)
    pos = pos @ rot.T
    sigma = _uniform(rng, spec["thermal_sigma_A"])
    pos = pos + rng.normal(0.0, sigma, pos.shape)
    atoms.set_positions(pos)
    atoms.set_atomic_numbers(np.full(len(atoms), Z[element]))
    info = {
        "motif": motif, "shape": shape or str(base.info.get("shape", "")), "element": element,
        "n_atoms": len(atoms), "zone_axis": zone or "", "thermal_sigma_A": sigma,
    }
    return atoms, info


def projected_diameter_A(positions_A: np.ndarray, atom_radius_A: float = 1.4) -> float:
    """Equivalent-circle diameter [Å] of a cluster seen along z: its projected convex hull
    grown by ``atom_radius_A`` (hull area + perimeter · r + π r²), the quantity detection
    measures as :attr:`clusterspy.detection.Detection.diameter_A`.
    """
    from scipy.spatial import ConvexHull

    xy = np.asarray(positions_A, dtype=float)[:, :2]
    try:
        hull = ConvexHull(xy)
        area, perimeter = float(hull.volume), float(hull.area)
    except Exception:  # fewer than 3 points or collinear
        area, perimeter = 0.0, 2.0 * float(np.ptp(xy, axis=0).max()) if len(xy) else 0.0
    r = float(atom_radius_A)
    return 2.0 * float(np.sqrt((area + perimeter * r + np.pi * r * r) / np.pi))


def _add_neighbour(spec: dict[str, Any], rng: np.random.Generator, atoms: Any, radius_A: float,
                   element: str) -> Any:
    """``atoms`` plus a neighbouring cluster of a random motif placed 2–10 Å beside it."""
    other = CLASSES[int(rng.integers(len(CLASSES)))]
    natoms, _ = _make_atoms(spec, rng, other, [40, 400], element, 0.0)
    npos = natoms.get_positions()
    r2 = float(np.sqrt((npos[:, :2] ** 2).sum(1)).max()) + 1.0
    phi = rng.uniform(0, 2 * np.pi)
    d = radius_A + r2 + rng.uniform(2.0, 10.0)
    natoms.set_positions(npos + np.array([d * np.cos(phi), d * np.sin(phi), 0.0]))
    return atoms + natoms


def _simulate_field(spec: dict[str, Any], atoms: Any, mic: Any, px: float, extent_A: float,
                    acq: Any, support: Any, sim_rng: np.random.Generator) -> Any:
    """The acquired image of ``atoms`` on a field of ``extent_A`` [Å] at ``px`` [Å/px].

    With ``compact_field`` (expensive backends, PRISM) and no support, the noiseless image is
    simulated on a field just larger than the metal, padded with vacuum (HAADF signal 0) to the
    full field, then acquired.
    """
    from clusterspy.image import Image
    from clusterspy.simulation import simulate

    if not (spec.get("compact_field") and support is None):
        return simulate(atoms, mic, pixel_size=px, extent=extent_A, backend=spec["backend"],
                        rng=sim_rng, acquisition=acq, support=support,
                        **spec.get("backend_options", {}))
    allpos = atoms.get_positions()[:, :2]
    half = float(np.abs(allpos - allpos.mean(0)).max()) + float(spec["compact_field"])
    small = min(extent_A, 2 * half)
    ideal = simulate(atoms, mic, pixel_size=px, extent=small, backend=spec["backend"],
                     rng=sim_rng, **spec.get("backend_options", {}))
    n_full = round(extent_A / px)
    rs, cs = ideal.data.shape
    canvas = np.zeros((max(n_full, rs), max(n_full, cs)), np.float32)
    r0 = canvas.shape[0] // 2 - rs // 2
    c0 = canvas.shape[1] // 2 - cs // 2
    canvas[r0 : r0 + rs, c0 : c0 + cs] = ideal.data
    return Image(acq.apply(canvas, ideal.pixel_size_A, sim_rng), ideal.pixel_size_A)


def _adjust_contrast(data: np.ndarray, gamma: float, bg_level: float,
                     sim_rng: np.random.Generator) -> np.ndarray:
    """Contrast: a gamma on the 1–99.9 % range and a smooth additive background (``bg_level``)."""
    lo, hi = np.percentile(data, 1), np.percentile(data, 99.9)
    span = max(hi - lo, 1e-12)
    data = np.clip((data - lo) / span, 0, None) ** gamma
    if bg_level > 0:
        from scipy.ndimage import zoom

        coarse = sim_rng.normal(size=(5, 5))
        bg = zoom(coarse, (data.shape[0] / 5, data.shape[1] / 5), order=3, mode="nearest")
        bg = bg[: data.shape[0], : data.shape[1]]
        if bg.shape != data.shape:
            bg = np.pad(bg, [(0, data.shape[0] - bg.shape[0]), (0, data.shape[1] - bg.shape[1])],
                        mode="edge")
        bg = (bg - bg.min()) / max(bg.max() - bg.min(), 1e-12)
        data = data + bg_level * bg
    return data


def _cut_by_edge(data: np.ndarray, cx: float, cy: float, radius_px: float, side: int,
                 depth: float) -> tuple[np.ndarray, float, float]:
    """The image edge cuts the cluster at ``(cx, cy)`` [px]: ``depth`` of its radius stays on
    ``side`` (0 left, 1 right, 2 top, 3 bottom). Returns the data and the shifted centre."""
    c = round(depth * radius_px)
    if side == 0:
        data = data[:, int(cx) - c:]
        cx -= int(cx) - c
    elif side == 1:
        data = data[:, : int(cx) + c]
    elif side == 2:
        data = data[int(cy) - c:, :]
        cy -= int(cy) - c
    else:
        data = data[: int(cy) + c, :]
    return data, cx, cy


def make_sample(spec: dict[str, Any], index: int) -> tuple[np.ndarray, int, dict[str, Any]]:
    """Simulate example ``index`` of the dataset ``spec``.

    Parameters
    ----------
    spec : dict
        Full specification (:func:`clusterspy.datasets.load_spec`).
    index : int
        Example number; with ``spec["seed"]`` it fixes every random choice.

    Returns
    -------
    crop : numpy.ndarray
        ``(crop_px, crop_px)`` float32 raw crop at ``spec["pixel_size_A"]`` [Å/px].
    label : int
        Index into :data:`clusterspy.isomers.CLASSES`.
    metadata : dict
        Every parameter drawn (units in the keys).
    """
    from clusterspy.detection import Detection, crop_cluster
    from clusterspy.image import Image
    from clusterspy.simulation import Acquisition, Microscope

    rng = np.random.default_rng([int(spec["seed"]), int(index)])
    label = int(index) % len(CLASSES)
    motif = CLASSES[label]
    element = spec["elements"][int(rng.integers(len(spec["elements"])))]
    atoms, meta = _make_atoms(spec, rng, motif, spec["size_atoms"], element,
                              float(spec["zone_axis_fraction"]))
    pos = atoms.get_positions()
    radius = float(np.sqrt(((pos[:, :2] - pos[:, :2].mean(0)) ** 2).sum(1)).max()) + 1.0

    # neighbouring cluster (its own atoms, placed beside the main one)
    neighbour = rng.random() < float(spec["neighbour_probability"])
    if neighbour:
        atoms = _add_neighbour(spec, rng, atoms, radius, element)
    # microscope and acquisition
    mic = Microscope(
        energy_keV=_uniform(rng, spec["energy_keV"]),
        semiangle_mrad=_uniform(rng, spec["semiangle_mrad"]),
        detector_mrad=(_uniform(rng, spec["detector_inner_mrad"]),
                       _uniform(rng, spec["detector_outer_mrad"])),
        defocus_A=_uniform(rng, spec["defocus_A"]),
        source_size_A=_uniform(rng, spec["source_size_A"]),
    )
    if float(spec.get("source_elongation_probability") or 0.0) > 0.0:
        # an elliptical source: its own stream, so specifications without one are unchanged
        astig = np.random.default_rng([int(spec["seed"]), int(index), 2])
        if astig.random() < float(spec["source_elongation_probability"]):
            mic = dataclasses.replace(mic, source_elongation_A=_uniform(astig, spec["source_elongation_A"]),
                                      source_angle_deg=float(astig.uniform(0.0, 180.0)))
    if float(spec.get("three_fold_probability") or 0.0) > 0.0:
        # three-fold astigmatism: its own stream too
        a2 = np.random.default_rng([int(spec["seed"]), int(index), 3])
        if a2.random() < float(spec["three_fold_probability"]):
            mic = dataclasses.replace(mic, three_fold_A=_uniform(a2, spec["three_fold_A"]),
                                      three_fold_angle_deg=float(a2.uniform(0.0, 120.0)))
    px = _uniform(rng, spec["image_pixel_size_A"], log=True)
    dose = _uniform(rng, spec["dose_e_per_A2"], log=True)
    jitter = _uniform(rng, spec["jitter_px"])
    drift = (rng.normal(0.0, float(spec["drift_A_per_line"])),
             rng.normal(0.0, float(spec["drift_A_per_line"])))
    shear = rng.normal(0.0, float(spec["shear_px_per_line"]))
    flyback = (_uniform(rng, spec["flyback_px"]), rng.uniform(2.0, 10.0))
    err = rng.normal(0.0, float(spec["centre_error_A"]), 2)
    # whole-particle field (field_factor) and pixel-size calibration error (scale_error): their
    # draws come from their own stream, so specifications without them are unchanged
    field_factor = spec.get("field_factor")
    scale_error = float(spec.get("scale_error") or 0.0)
    extra = np.random.default_rng([int(spec["seed"]), int(index), 1])
    scale = float(np.exp(extra.uniform(-np.log1p(scale_error), np.log1p(scale_error))))
    d_measured = (projected_diameter_A(pos) * scale
                  * extra.uniform(1 - float(spec["diameter_error"]), 1 + float(spec["diameter_error"])))
    from clusterspy.detection import crop_pixel_size_A

    crop_pixel_A = crop_pixel_size_A(d_measured, float(spec["pixel_size_A"]), int(spec["crop_px"]),
                                     field_factor)
    field_A = float(spec["crop_px"]) * crop_pixel_A / scale  # true Å
    if spec.get("max_image_px"):
        px = max(px, (field_A + 8.0) / float(spec["max_image_px"]))
    extent = field_A + 2 * float(np.abs(err).max()) + 4.0
    support = None
    use_support = rng.random() < float(spec["support_probability"])
    thickness = _uniform(rng, spec["support_thickness_A"]) if use_support else 0.0
    sim_seed = int(rng.integers(2**31))
    gamma = _uniform(rng, spec["gamma"])
    bg_level = _uniform(rng, spec["background"])
    cut = rng.random() < float(spec["cut_probability"])
    cut_side = int(rng.integers(4))
    cut_depth = rng.uniform(0.3, 0.8)

    # field centred on the *main* cluster: the simulator centres on all metal atoms
    metal_centre = atoms.get_positions()[:, :2].mean(0)
    shift_A = -metal_centre  # main cluster (at the origin) relative to the field centre
    sim_rng = np.random.default_rng(sim_seed)
    if use_support:
        support = _support(extent + 2 * float(np.abs(shift_A).max()), thickness, sim_rng)
    acq = Acquisition(dose_e_per_A2=dose, jitter_px=jitter, drift_A_per_line=drift,
                      shear=shear, flyback=flyback)
    full_extent = extent + 2 * float(np.abs(shift_A).max())
    img = _simulate_field(spec, atoms, mic, px, full_extent, acq, support, sim_rng)
    data = np.asarray(img.data, dtype=np.float64)
    rows, cols = data.shape
    # the metal centre lands on pixel (rows // 2, cols // 2) (clusterspy.simulation)
    cx = cols // 2 + shift_A[0] / img.pixel_size_A
    cy = rows // 2 + shift_A[1] / img.pixel_size_A

    data = _adjust_contrast(data, gamma, bg_level, sim_rng)
    if cut:
        data, cx, cy = _cut_by_edge(data, cx, cy, radius / img.pixel_size_A, cut_side, cut_depth)
    # the pixel size the user states: off by `scale` (1 without a scale_error)
    image = Image(data.astype(np.float32), img.pixel_size_A * scale)
    det = Detection(
        x_px=float(cx + err[0] / img.pixel_size_A), y_px=float(cy + err[1] / img.pixel_size_A),
        bbox=(0, 0, data.shape[0], data.shape[1]),
        diameter_A=2 * radius if field_factor is None else d_measured,
        area_px=int(np.pi * (radius / img.pixel_size_A) ** 2),
    )
    crop = crop_cluster(image, det, crop_pixel_A, int(spec["crop_px"]))
    meta.update({
        "label": motif, "energy_keV": mic.energy_keV, "semiangle_mrad": mic.semiangle_mrad,
        "detector_inner_mrad": mic.detector_mrad[0], "detector_outer_mrad": mic.detector_mrad[1],
        "defocus_A": mic.defocus_A, "source_size_A": mic.source_size_A,
        "source_elongation_A": mic.source_elongation_A, "source_angle_deg": mic.source_angle_deg,
        "three_fold_A": mic.three_fold_A, "three_fold_angle_deg": mic.three_fold_angle_deg,
        "image_pixel_size_A": float(img.pixel_size_A), "dose_e_per_A2": dose,
        "jitter_px": jitter, "drift_A_per_line": list(drift), "shear_px_per_line": shear,
        "flyback_px": list(flyback), "support_thickness_A": thickness, "gamma": gamma,
        "background": bg_level, "neighbour": bool(neighbour), "cut": bool(cut),
        "centre_error_A": [float(err[0]), float(err[1])], "backend": spec["backend"],
        "pixel_size_scale": scale, "diameter_A": d_measured / scale, "crop_pixel_size_A": crop_pixel_A,
    })
    return crop.astype(np.float32), label, meta
