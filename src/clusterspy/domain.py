"""Is this image, is this cluster, one the model can judge? → a reason, or none.

A label is a claim. Before inference, every image is checked against the model card's domain
(:attr:`clusterspy.weights.ModelCard.domain`): a pixel size too coarse to resolve atomic columns
(or so fine that no cluster fits in the field), or bright-field contrast, refuses the whole
image at once with :class:`~clusterspy.errors.OutOfDomainError`. Every cluster found then gets a
reason not to label it, or ``None``:

``too_small`` / ``too_large``
    its diameter [nm] is outside the range trained on (a large particle would be judged from
    its middle);
``cut_by_edge``
    it touches the image edge, or its detected region ends closer to the edge than the rim the
    detector misses (:func:`edge_margin_px`) — the boundary of a constant fill (the corners a
    rotation fills, padding) counts as an edge;
``neighbour_in_view``
    a larger cluster, or one that touches it, shares the model's field of view;
``scale_mismatch``
    its strongest lattice fringes are finer than any metal's (< 1.25 Å at the pixel size given:
    :func:`spectrum_scores`) — the pixel size is too small, e.g. a file calibrated in pm read as Å
    or a value typed 2–3× too small, or a binned image whose calibration was not updated;
``pixel_size_too_large``
    a resolved cluster of 3.5 nm and more whose strongest lattice spot is coarser than any metal's
    strongest fringe could look at a pixel size 20 % too large (> 3.5 Å: :func:`strongest_spot`) —
    the pixel size given is too large, e.g. a value typed 2× too large, or that of an image since
    upsampled;
``not_resolved``
    its atomic columns are not resolved: no lattice-fringe power above the noise
    (:func:`lattice_contrast`) or above the particle's own shape (:func:`lattice_over_shape`) —
    out of focus, too coarse a pixel, smeared, or a blob at a wrong pixel size — or no
    more than around it (:func:`lattice_over_surroundings`: the texture of a whole wide field
    at a wrong pixel size); or, after inference, a crystalline call on a cluster of 3.5 nm or
    more whose spectrum shows no sharp lattice spots, or a smaller one whose lattice band is
    speckle (:func:`crystal_evidence_missing`: a smoothed or denoised image of an unresolved
    particle); or an amorphous call on a cluster whose lattice band is speckle with no ring of
    atomic spacings (:func:`amorphous_evidence_missing`: a crystal blurred or off its zone axis);
``out_of_distribution``
    after inference: the network's features are unlike those of every simulated training image
    (Mahalanobis distance above the threshold calibrated on in-domain images);
``low_confidence``
    after inference: the calibrated confidence is below the card's "unknown" threshold;
``models_disagree``
    after inference, in the default: the second opinion (``isomernet-v7``) finds another isomer
    most probable (:func:`clusterspy.predict.second_opinion_of`);
``astigmatic``
    after inference, in the default: the probe looks astigmatic — the probe-shape network
    (:class:`clusterspy.weights.astigmatism.AstigmatismNetwork`) estimates the atomic columns drawn
    out along one direction by its threshold or more, and the models that judge were trained on
    round probes only (:func:`clusterspy.predict.astigmatic`);
``fit_disagrees``
    only with verification (``clusterspy classify --verify``): the 3D atomic model whose
    simulation matches the cluster best — a conclusive structure fit (:mod:`clusterspy.fit`) —
    is of another isomer than the network's (:func:`judge_fit`).

The label is ``"unknown"`` whenever the reason is not ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from itertools import pairwise
from typing import Any, Literal, NamedTuple

import numpy as np

from clusterspy.errors import ConfigError, OutOfDomainError
from clusterspy.image import (
    FILL_MIN_RUN_PX,
    Image,
    edge_fill_values,
    overridden_calibration_A,
    pasted_rectangle,
)
from clusterspy.weights.card import mahalanobis_distance

__all__ = [
    "REASONS",
    "ROUTE_RULE",
    "CrystalEvidence",
    "amorphous_cap_A",
    "amorphous_evidence_missing",
    "check_contrast",
    "check_image",
    "cluster_reasons",
    "contrast_cues",
    "crystal_evidence",
    "crystal_evidence_missing",
    "cut_by_edge",
    "edge_margin_px",
    "fringe_peak",
    "judge_fit",
    "judge_probabilities",
    "lattice_contrast",
    "lattice_over_shape",
    "lattice_over_surroundings",
    "lattice_peakedness",
    "lattice_ring",
    "lattice_spots",
    "looks_bright_field",
    "mahalanobis_distance",
    "particle_diameter_A",
    "resolution_reason",
    "resolution_scores",
    "route_by_size",
    "saturated_plateau",
    "saturated_share",
    "spectrum_scores",
    "strongest_spot",
    "tiled_lattice_contrast",
]

#: Every reason a cluster may get instead of a label, in the order they are tested.
REASONS = ("too_small", "too_large", "cut_by_edge", "neighbour_in_view", "elongated", "saturated",
           "scale_mismatch",
           "pixel_size_too_large", "not_resolved", "out_of_distribution", "low_confidence",
           "models_disagree", "astigmatic", "fit_disagrees")

Contrast = Literal["auto", "haadf"]

#: The detector's equivalent-circle diameter underestimates a cluster's projected size (the hull of
#: its atoms grown by 1.4 Å, what the training set's fields were made from): the projected
#: thickness of a cluster falls to zero at its edge, below the detector's threshold. Measured on
#: fast-simulated Au icosahedra, decahedra and fcc clusters of 55–5,000 atoms in random
#: orientations on carbon (doses 2·10³ and 5·10⁴ e⁻/Å²): ratio 0.86 (0.80–0.93). Checked by
#: ``benchmarks/domain.py`` (``sizes.reported_over_true_diameter``) on its 1–8 nm set.
DETECTED_TO_PROJECTED = 1.16


def particle_diameter_A(detected_diameter_A: float) -> float:
    """A cluster's projected diameter [Å] from the detector's equivalent-circle diameter [Å]."""
    return float(detected_diameter_A) * DETECTED_TO_PROJECTED


def edge_margin_px(detected_diameter_px: float) -> int:
    """How close [px] a detected region may come to the image edge before its cluster counts as cut.

    The detector's region stops short of the projected particle by
    ``(DETECTED_TO_PROJECTED − 1) / 2`` of its diameter on each side (the thin rim of atoms below
    its threshold): a region that ends closer than that to the edge belongs to a particle the edge
    cuts (a simulated Au₃₀₉ decahedron cut 2–25 px inside its rim ended 1–2 px short of the edge).
    """
    return 1 + int(np.ceil(0.5 * (DETECTED_TO_PROJECTED - 1.0) * float(detected_diameter_px)))


def cut_by_edge(bbox: Sequence[int], detected_diameter_px: float, shape: Sequence[int],
                fill_gap_px: float | None = None) -> bool:
    """Whether a detected region ``bbox`` (row0, col0, row1, col1) [px] lies within
    :func:`edge_margin_px` of the edge of an image of ``shape`` (rows, cols), or of the boundary
    of a constant fill ``fill_gap_px`` [px] away (the corners a rotation fills, padding; 0 where a
    fill merged with a constant background cuts it: :attr:`clusterspy.detection.Detection.fill_gap_px`):
    its particle is cut."""
    r0, c0, r1, c1 = bbox
    m = edge_margin_px(detected_diameter_px)
    near_fill = fill_gap_px is not None and fill_gap_px < m
    return bool(r0 < m or c0 < m or shape[0] - r1 < m or shape[1] - c1 < m or near_fill)


#: Band of spatial frequencies of the lattice fringes [1/Å]: spacings 1.25–3.2 Å (Cu {220} — the only
#: fringes of an fcc particle seen along [111] — to Pb {111}).
LATTICE_BAND = (1 / 3.2, 1 / 1.25)
#: Band of fringes finer than the strongest of any metal lattice [1/Å] (0.6–1.25 Å): a cluster whose
#: strongest fringes lie here is seen at a wrong scale (:func:`spectrum_scores`).
FINE_BAND = (1 / 1.25, 1 / 0.6)
#: Least peak power of :data:`FINE_BAND` over the white-noise level for ``scale_mismatch`` (pure noise
#: gives ≈ 5 at the 99.5th percentile).
FINE_CONTRAST_MIN = 12.0
#: Band of the particle's shape [1/Å] below the lattice band (5.5–3.6 Å).
SHAPE_BAND = (1 / 5.5, 1 / 3.6)
#: Default threshold of :func:`lattice_over_shape` (cards: ``domain.lattice_over_shape_min``).
LATTICE_OVER_SHAPE_MIN = 1.0
#: Least ratio of :func:`lattice_over_surroundings` (cards: ``domain.lattice_over_surroundings_min``).
#: Labelled clusters of PRISM images, of the structure-fit set and of StatSTEM's PtIr have their
#: fringes far above their surroundings (vacuum, carbon: 10³–10⁷); the textured blobs of JPEG wide
#: fields claimed at 0.2–0.5 Å/px (their true 2 Å/px: no columns) that passed the other rules give
#: 1–6 (a few 11–380 next to an empty region).
LATTICE_OVER_SURROUNDINGS_MIN = 8.0
#: Default threshold of :func:`lattice_contrast`: twice the 95th percentile of white noise (≈ 3);
#: cards may set their own (``domain.lattice_contrast_min``).
LATTICE_CONTRAST_MIN = 6.0
#: Side [Å] of the tiles of :func:`tiled_lattice_contrast`: the smallest window's, on which
#: :data:`LATTICE_CONTRAST_MIN` was set.
LATTICE_TILE_A = 12.0
#: Least :func:`tiled_lattice_contrast` that shows columns where the whole window's
#: :func:`lattice_contrast` does not: above :data:`LATTICE_CONTRAST_MIN`, since it is the largest of
#: up to 25 tiles. Poisson noise alone (150 windows of 48 Å at 0.4 Å/px, 5–500 counts a pixel):
#: median 4.5, 99th percentile 5.8, largest 6.45 (``benchmarks/resolution_check.py``).
TILED_LATTICE_CONTRAST_MIN = 8.0
#: Least :func:`lattice_peakedness` of a crystalline cluster under :data:`FRINGES_NEEDED_FROM_A`
#: (:func:`crystal_evidence_missing`): the speckle of noise alone, white or smoothed, gives
#: ln 100 / ln 2 ≈ 6.6.
LATTICE_PEAKEDNESS_MIN = 8.0
#: Least :func:`fringe_peak` of a cluster whose spectrum shows lattice fringes (glassy clusters:
#: 4–11; crystalline ones of 3.5 nm and more: 21 and up; real particles 50–860).
LATTICE_FRINGES_MIN = 15.0
#: Projected diameter [Å] from which a crystalline label needs sharp lattice spots, not only a
#: peaked lattice band (:func:`crystal_evidence_missing`). Below it a crystal has too few columns for
#: sharp spots: right crystalline labels of 1–3.5 nm clusters on the benchmark sets have a fringe
#: peak of 4.3 and up;
#: from 3.5 nm, 21 and up (92 particles of the ``sizes``, ``large``, held-out and fresh sets; a
#: one-off at stop 34, before the rule).
FRINGES_NEEDED_FROM_A = 35.0
#: Least :func:`lattice_spots` of a crystalline cluster (under :data:`FRINGES_NEEDED_FROM_A`, unless
#: its :func:`lattice_ring` or :func:`fringe_peak` shows the lattice): the speckle of noise alone
#: gives ≈ 6.6 at the 99th percentile of powers over their shell's median, whatever filter smoothed
#: it. Checked at stop 35 (a one-off) on the ``smoothed_sweep`` part of
#: ``benchmarks/resolution_check.py`` and the PRISM (every 15° and ×0.87 / 1 / 1.15), held-out,
#: fresh, ``sizes`` and ``large`` sets of ``benchmarks/domain.py``: spots and ring alone cost right
#: labels of small PRISM clusters once rotated (by interpolation, which smooths again), so under 3.5
#: nm a sharp spot (:data:`SHARP_SPOT_MIN`) also counts.
LATTICE_SPOTS_MIN = 9.0
#: Width [FFT bins] of the frequency shells of :func:`lattice_spots`.
SPOT_SHELL_BINS = 1.5
#: Band [1/Å] of the strongest fringes of the fcc metals ({111} and {200}: Pb 2.86 Å to Ni / Cu
#: 1.76–1.81 Å, within ±5 %), the ring of :func:`lattice_ring`.
RING_BAND = (1 / 2.95, 1 / 1.72)
#: Band [1/Å] just below :data:`RING_BAND` (5.5–3.3 Å), which :func:`lattice_ring` compares it with.
BELOW_RING_BAND = (1 / 5.5, 1 / 3.3)
#: Least :func:`lattice_ring` that shows a lattice ring: a ring no stronger than the frequencies
#: below it is no ring. Smoothing only lowers the ring against them (a filter passes lower
#: frequencies better), so it cannot make one.
LATTICE_RING_MIN = 1.0
#: Least :func:`fringe_peak` that shows a lattice under :data:`FRINGES_NEEDED_FROM_A` where spots and
#: ring do not: smoothed unresolved particles of the ``smoothed_sweep`` and of the newcomers reach
#: 15.9 (a median filter of 3 px: 15.9, a box of 3: 15.7), the 1.7 nm fcc PRISM cluster that rotation
#: by interpolation smooths 24–40 (stop 35, a one-off); :data:`LATTICE_FRINGES_MIN` (15) let those
#: through.
SHARP_SPOT_MIN = 20.0

#: Spacings [Å] searched for a cluster's strongest spot (:func:`strongest_spot`): from below the
#: particle's shape (8 Å) to finer than any metal's {220} (1.2 Å).
SPOT_SEARCH_A = (8.0, 1.2)
#: Spacing [Å] beyond which a resolved cluster's strongest spot is coarser than the strongest
#: fringe of any metal at a pixel size up to 20 % too large (the cards' ``pixel_size_error``; Pb
#: {111}: 2.86 Å × 1.2 = 3.43 Å; Au {111}: 2.35 Å × 1.2 = 2.82 Å) → ``pixel_size_too_large``
#: (:func:`resolution_reason`),
#: from :data:`FRINGES_NEEDED_FROM_A`. The strongest spot of 72 fast-simulated Au / Pt / Cu particles
#: of 2–10 nm (``benchmarks/scale_cues.py`` ``coarse``; the clusters of 3.5 nm and more) lies at most at
#: 2.75 Å at their true pixel size, 2.90 Å told 15 % too large, 3.15 Å told 30 % too large; StatSTEM's
#: Pb at 2.59 Å at its file's pixel size, 3.07 Å told 15 % more.
COARSE_SPOT_FROM_A = 3.5
#: Least :func:`strongest_spot` peak for ``pixel_size_too_large``: a lattice's spot, not a shape's.
#: Unresolved particles of 4.5–10 nm (``clusterspy simulate --size 3000 --source-size 4.5``, 9 of
#: them told ×1 / ×1.5 / ×2, raw and after a Gaussian of 1 px; stop 36, a one-off) reach 28.6 at
#: 3.5–8 Å from their shape alone (with 15, 4 of them got this reason); the lattices of the
#: ``coarse`` part of ``benchmarks/scale_cues.py``'s particles told ×1.5–2 gave 38–530 in the same
#: one-off (most above 60), StatSTEM's Pb told ×2 192.
COARSE_SPOT_MIN = 60.0


def _pixel_size_hint(px: float, lo: float, hi: float) -> str:
    """A guess at the unit mistake behind an out-of-range pixel size."""
    for factor, unit in ((0.01, "pm"), (10.0, "nm")):
        if lo <= px * factor <= hi:
            return f" — if you meant {px:g} {unit}, give {px * factor:g} Å"
    return ""


def _overridden_calibration(image: Image, lo: float, hi: float) -> str:
    """``"; the file says … Å/px …"`` when the user's pixel size replaced a different calibration of
    the file (``metadata["file_pixel_size_A"]``, :func:`clusterspy.image.resolve_pixel_size`), else ``""``."""
    own = overridden_calibration_A(image.metadata, image.pixel_size_A)
    if own is None:
        return ""
    if lo <= own <= hi:
        return f"; the file says {own:g} Å/px: drop --pixel-size (pixel_size_A=) to use it"
    return f"; the file says {own:g} Å/px"


#: An image finer than the card's smallest pixel size (``image_pixel_size_A``) is still judged down to
#: this fraction of it: its crops are binned to the model's own pixel size (:func:`check_image`).
FINEST_PIXEL_FACTOR = 0.25


def pixel_size_range_A(domain: Mapping[str, Any]) -> tuple[float, float]:
    """The image pixel sizes [Å/px] a model with this card ``domain`` judges (:func:`check_image`):
    from :data:`FINEST_PIXEL_FACTOR` × the card's smallest to its largest."""
    lo, hi = (float(v) for v in domain.get("image_pixel_size_A", [0.05, 0.5]))
    return FINEST_PIXEL_FACTOR * lo, hi


def check_image(image: Image, domain: Mapping[str, Any], *, contrast: Contrast = "auto",
                min_diameter_A: float | None = None) -> None:
    """Refuse, at once, an image the model cannot judge at all.

    Parameters
    ----------
    image : Image
        The calibrated image.
    domain : mapping
        The model card's domain (``image_pixel_size_A`` [Å/px], ``diameter_nm``, ``contrast``).
    contrast : {"auto", "haadf"}
        ``"auto"`` refuses images whose contrast looks like bright field (dark particles on a
        bright background); ``"haadf"`` trusts the user that the image is HAADF.
    min_diameter_A : float, optional
        Smallest cluster looked for [Å]; default the domain's smallest diameter.

    Raises
    ------
    OutOfDomainError
        With one line that says why and what to do.
    ConfigError
        If ``contrast`` is not one of the choices.
    """
    if contrast not in ("auto", "haadf"):
        raise ConfigError(f"contrast must be 'auto' or 'haadf', got {contrast!r}")
    px = float(image.pixel_size_A)
    lo, hi = (float(v) for v in domain.get("image_pixel_size_A", [0.05, 0.5]))
    from_file = image.metadata.get("pixel_size_source") == "file"
    overridden = _overridden_calibration(image, lo, hi)
    hint = overridden or ("" if from_file else _pixel_size_hint(px, lo, hi))
    if px > hi:
        raise OutOfDomainError(
            f"{px:g} Å/px{' (the file calibration)' if from_file else ''} cannot resolve atomic columns "
            f"(the model needs ≤ {hi:g} Å/px){hint}; ClusterSpy classifies atomic-resolution images"
            + ("" if overridden else " (give the right pixel size with --pixel-size or pixel_size_A=, or "
               "image at a higher magnification)")
        )
    d_min_A = float(min_diameter_A) if min_diameter_A else 10.0 * float(domain.get("diameter_nm", [1, 8])[0])
    field_A = min(image.shape) * px
    if px < pixel_size_range_A(domain)[0] or field_A < d_min_A:
        raise OutOfDomainError(
            f"at {px:g} Å/px the {image.shape[1]}×{image.shape[0]} px image is only "
            f"{field_A:.3g} Å across: too small to hold a cluster of ≥ {d_min_A / 10:g} nm"
            + (hint or "; check the pixel size (Å/px)")
        )
    check_contrast(image, contrast)


def check_contrast(image: Image, contrast: Contrast = "auto") -> None:
    """Refuse an image that looks like bright field (:func:`looks_bright_field`), unless
    ``contrast="haadf"`` says it is HAADF.

    Raises
    ------
    OutOfDomainError
        With one line saying why and what to do.
    """
    if contrast not in ("auto", "haadf"):
        raise ConfigError(f"contrast must be 'auto' or 'haadf', got {contrast!r}")
    if contrast == "auto" and looks_bright_field(image.data):
        raise OutOfDomainError(
            "the image looks like bright field (dark particles on a bright background); ClusterSpy "
            "judges HAADF (Z-contrast) images only — if this is HAADF, pass --contrast haadf "
            "(contrast='haadf' in Python)"
        )


#: Side [px] of the grid :func:`contrast_cues` works on: a larger frame is block-averaged by the
#: smallest integer factor that brings it to at most this many pixels squared, so the cost of the
#: bright-field check (~30–60 ms) does not grow with the frame.
CONTRAST_GRID_PX = 256
#: Least magnitude of :func:`contrast_cues`' ``fine_skew`` (negative) for bright field: featureless
#: noise has a standard deviation of 0.01–0.03 (256² px) to 0.06 (64² px); the HAADF files and
#: variants of ``tests/test_bright_field.py`` (real frames, crops, rotations, fast simulations)
#: gave ≥ 0.16, real bright-field wide fields −0.16 to −7 (one at −0.02).
BRIGHT_FIELD_SKEW_MIN = 0.05
#: Least magnitude of ``texture_brightness`` (negative) for bright field: featureless noise has a
#: standard deviation of 0.04 (256² px) to 0.14 (64² px); the same HAADF images gave ≥ 0.13,
#: real bright-field wide fields −0.30 to −0.63.
BRIGHT_FIELD_TEXTURE_MIN = 0.1


def contrast_cues(data: np.ndarray, *, grid_px: int = CONTRAST_GRID_PX) -> tuple[float, float]:
    """The two cues of :func:`looks_bright_field`: ``(fine_skew, texture_brightness)``.

    The frame is block-averaged to about ``grid_px`` ² px (a frame of up to ``grid_px`` ² px is
    used as it is); a constant fill along the edge (rotated or padded images:
    :func:`clusterspy.image.edge_fill_values`) is no data and takes no part (all filters are
    normalised convolutions that leave it, and the outside of the frame, out).

    Parameters
    ----------
    data : numpy.ndarray
        The frame, 2D, any intensity unit and offset.
    grid_px : int
        Side [px] of the binned grid; the thresholds of :func:`looks_bright_field` hold for the
        default :data:`CONTRAST_GRID_PX` (a coarser grid is cheaper: a first look).

    Returns
    -------
    fine_skew : float
        Skewness (dimensionless) of the band-passed frame: Gaussian blurs of σ = 1 and 2 px
        of the binned grid, subtracted. Atomic columns, single atoms and small particles are
        bright peaks in HAADF (> 0), dark ones in bright field (< 0).
    texture_brightness : float
        Spearman rank correlation (−1 … 1) between the local mean (σ = 4 px) and the local
        power of the fine detail (the frame less its σ = 1 px blur, squared, blurred by
        σ = 4 px). In HAADF the structure — columns, particles, the larger shot noise of more
        counts — is in the bright parts and the vacuum is dark and smooth (> 0); in bright
        field the particles are dark (< 0).
        Both are ``nan`` when fewer than 64 px of data remain.
    """
    from scipy import ndimage as ndi

    x = np.asarray(data)
    step = max(1, min(int(np.ceil(np.sqrt(x.size / grid_px**2))), *x.shape))
    rows, cols = (x.shape[0] // step) * step, (x.shape[1] // step) * step
    b = (x[:rows, :cols].reshape(rows // step, step, cols).sum(1, dtype=np.float64)
         .reshape(rows // step, cols // step, step).sum(2) / step**2)
    b = (b - np.median(b)).astype(np.float32)  # without its offset (a detector's 15,000 counts)
    w = np.ones(b.shape, np.float32)
    fill = _fill_blocks(x[:rows:step, :cols:step], max(4, FILL_MIN_RUN_PX // step))
    if fill is not None:
        w[fill] = 0.0
        b[fill] = 0.0
    inside = w > 0
    if inside.sum() < 64:
        return float("nan"), float("nan")
    norm = _blur_norms(b.shape) if fill is None else _blur_norms_of(w)

    def blur(v: np.ndarray, sigma: float) -> np.ndarray:  # the mean of the data near each pixel
        return ndi.gaussian_filter(v * w, sigma, mode="constant") / norm[sigma]

    b1 = blur(b, 1.0)
    band = (b1 - blur(b, 2.0))[inside].astype(np.float64)
    band -= band.mean()
    m2 = float(np.mean(band**2))
    skew = float(np.mean(band**3)) / m2**1.5 if m2 > 0 else 0.0
    # both maps are smooth on σ = 4 px: every second pixel each way holds their ranks (4× fewer
    # to sort: the sort was half the cost)
    half = inside[::2, ::2]
    level = blur(b, 4.0)[::2, ::2][half]
    detail = blur((b - b1) ** 2, 4.0)[::2, ::2][half]
    if np.ptp(level) == 0 or np.ptp(detail) == 0:
        return skew, 0.0
    return skew, float(np.corrcoef(_ranks(level), _ranks(detail))[0, 1])


def _blur_norms_of(w: np.ndarray) -> dict[float, np.ndarray]:
    """The normalisations of :func:`contrast_cues`' blurs for the data weights ``w``: each σ's
    blur of ``w`` (zero outside the frame), floored at 10⁻⁶."""
    from scipy import ndimage as ndi

    return {s: np.maximum(ndi.gaussian_filter(w, s, mode="constant"), 1e-6) for s in (1.0, 2.0, 4.0)}


@lru_cache(maxsize=8)
def _blur_norms(shape: tuple[int, int]) -> dict[float, np.ndarray]:
    """:func:`_blur_norms_of` a frame with data everywhere (the same for every frame of a series)."""
    norms = _blur_norms_of(np.ones(shape, np.float32))
    for v in norms.values():
        v.setflags(write=False)
    return norms


def _ranks(v: np.ndarray) -> np.ndarray:
    """Ranks 0 … n−1 of the values of ``v`` (ties in order of appearance), as float64."""
    r = np.empty(v.size)
    r[np.argsort(v, kind="stable")] = np.arange(v.size)
    return r


def _fill_blocks(sample: np.ndarray, min_run_px: int) -> np.ndarray | None:
    """Pixels of ``sample`` (one per block of the binned grid) in a constant fill connected to the
    frame edge, grown by 2 px (blocks that mix fill and data; a spline's band), or None.

    A constant that covers more than 60 % of the frame is a background (a noise-free
    simulation's exact-zero vacuum), not a fill — unless the data are a rectangle pasted into it
    (:func:`clusterspy.image.pasted_rectangle`).
    """
    from scipy import ndimage as ndi

    values = edge_fill_values(sample, min_run_px)
    if not values:
        return None
    constant = np.isin(sample, values)
    lab, _ = ndi.label(constant)
    edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    fill = np.isin(lab, edge[edge > 0])
    if not fill.any() or (fill.mean() > 0.6 and not pasted_rectangle(constant)):
        return None
    return ndi.binary_dilation(fill, iterations=2)


def looks_bright_field(data: np.ndarray) -> bool:
    """True when the contrast looks like bright field: dark objects on a bright background.

    HAADF is Z-contrast: atomic columns, single atoms and particles are bright peaks on a dark,
    smooth vacuum or thin support. Two local cues of :func:`contrast_cues`, each blind to how
    much of the frame the particles cover (a tight crop, a frame mostly filled by large
    particles, a wide field of small ones), must both say bright field: the fine detail of the
    band-passed frame is skewed to dark values (``fine_skew < 0``), and the detail lives in the
    darker parts of the frame (``texture_brightness < 0``). Both cues change sign when the frame
    is inverted, so of an image and its inverse at most one is refused. Each must pass a margin
    (:data:`BRIGHT_FIELD_SKEW_MIN`, :data:`BRIGHT_FIELD_TEXTURE_MIN`) that featureless noise
    does not reach: a frame with nothing to tell the contrast by is trusted as HAADF.

    Parameters
    ----------
    data : numpy.ndarray
        The frame, 2D, any intensity unit and offset.

    Returns
    -------
    bool
        True when both cues say bright field.
    """
    skew, texture = contrast_cues(data)
    return bool(skew < -BRIGHT_FIELD_SKEW_MIN and texture < -BRIGHT_FIELD_TEXTURE_MIN)


#: The rule of :func:`route_by_size`, as outputs record it.
ROUTE_RULE = ("each cluster judged by the first model whose diameter range holds it, else by the one whose "
              "range comes nearest (clusterspy.domain.route_by_size); a model's range may start above its "
              "domain's (clusterspy.predict.ROUTE_FROM_NM)")


def route_by_size(diameter_A: float, domains: list[dict | None]) -> int:
    """Which of several models (their domains, in order of preference) judges a cluster of
    projected diameter ``diameter_A`` [Å]: the first whose ``diameter_nm`` range holds it; when
    none does, the one whose range comes nearest (it names the cluster ``too_small`` or
    ``too_large`` against the widest range there is). The rule of the size-routed default
    (:class:`clusterspy.predict.ModelsBySize`), in :func:`clusterspy.classify` and in series."""
    gaps = []
    for j, dom in enumerate(domains):
        lo, hi = (10.0 * float(v) for v in (dom or {}).get("diameter_nm", [0.0, np.inf]))
        if lo <= diameter_A <= hi:
            return j
        gaps.append(lo - diameter_A if diameter_A < lo else diameter_A - hi)
    return int(np.argmin(gaps)) if gaps else 0


def amorphous_cap_A(domain: dict | None) -> float | None:
    """Largest measured diameter [Å] at which an "amorphous" call stands (None: no cap).

    The card's ``amorphous_max_diameter_nm`` is the compact-sphere diameter of the largest glassy
    cluster trained on; a model trained with a pixel-size error ``e`` (``pixel_size_error``) saw
    such clusters at up to ``1 + e`` times that size, as a cluster measured under the same error
    is (isomernet-v3: 3.3 nm × 1.2 = 3.96 nm; isomernet-v2, trained with exact calibrations:
    3.26 nm).
    """
    nm = (domain or {}).get("amorphous_max_diameter_nm")
    if nm is None:
        return None
    return 10.0 * float(nm) * (1.0 + float((domain or {}).get("pixel_size_error") or 0.0))


def judge_probabilities(
    probabilities: np.ndarray,
    *,
    unknown_threshold: float,
    ood_distance: float | None = None,
    ood_threshold: float | None = None,
    diameter_A: float | None = None,
    amorphous_max_A: float | None = None,
    crystal_evidence: CrystalEvidence | None = None,
) -> tuple[str, str | None]:
    """The label and reason of a cluster the network has seen: ``(isomer, None)`` when the claim
    stands, else ``("unknown", reason)``.

    In order: ``out_of_distribution`` (features farther than ``ood_threshold``),
    ``low_confidence`` (top probability below ``unknown_threshold``), ``too_large`` (an
    "amorphous" call on a particle larger than the glassy clusters trained on),
    ``not_resolved`` (a crystalline call on a cluster whose spectrum shows no lattice:
    :func:`crystal_evidence_missing` of ``crystal_evidence`` — :func:`crystal_evidence` — and
    ``diameter_A``; an amorphous call on one whose spectrum shows no resolved structure at all:
    :func:`amorphous_evidence_missing`; None skips both tests).
    """
    from clusterspy.isomers import CLASSES, UNKNOWN

    p = np.asarray(probabilities, float)
    best = int(np.argmax(p))
    if ood_distance is not None and ood_threshold is not None and ood_distance > ood_threshold:
        return UNKNOWN, "out_of_distribution"
    if p[best] < unknown_threshold:
        return UNKNOWN, "low_confidence"
    if (CLASSES[best] == "amorphous" and diameter_A is not None and amorphous_max_A is not None
            and diameter_A > amorphous_max_A):
        return UNKNOWN, "too_large"
    if (CLASSES[best] != "amorphous" and crystal_evidence is not None and diameter_A is not None
            and crystal_evidence_missing(crystal_evidence, diameter_A)):
        return UNKNOWN, "not_resolved"
    if CLASSES[best] == "amorphous" and crystal_evidence is not None and amorphous_evidence_missing(
            crystal_evidence):
        return UNKNOWN, "not_resolved"
    return CLASSES[best], None


class CrystalEvidence(NamedTuple):
    """What a cluster's window spectrum shows of a lattice (:func:`crystal_evidence`), tested by
    :func:`crystal_evidence_missing`; ``nan`` for a score that could not be measured."""

    #: :func:`lattice_peakedness`: the band's top over its median.
    peakedness: float
    #: :func:`fringe_peak`: the sharpest spot over its frequency shell's median.
    fringe_peak: float
    #: :func:`lattice_spots`: the band's top powers over their own thin frequency shell's median.
    spots: float
    #: :func:`lattice_ring`: the metal lattice's ring over the frequencies just below it.
    ring: float


def crystal_evidence_missing(evidence: CrystalEvidence, diameter_A: float) -> bool:
    """Whether a cluster of projected ``diameter_A`` [Å] called crystalline shows no lattice in its
    spectrum (``evidence``: :func:`crystal_evidence`).

    From :data:`FRINGES_NEEDED_FROM_A` (3.5 nm) it shows one when its sharpest spot stands out
    (``fringe_peak`` ≥ :data:`LATTICE_FRINGES_MIN`, 15) and its spots stand above speckle
    (``spots`` ≥ :data:`LATTICE_SPOTS_MIN`, 9). Under it a resolved crystal has too few columns for
    sharp spots, and it shows one when its band is peaked (``peakedness`` ≥
    :data:`LATTICE_PEAKEDNESS_MIN`, 8) and it has spots above speckle, a ring at the metal's
    spacings (``ring`` ≥ :data:`LATTICE_RING_MIN`, 1) or one spot sharper than smoothing makes
    (``fringe_peak`` ≥ :data:`SHARP_SPOT_MIN`, 20).

    Why: the resolution check compares the fringe band's power with a noise level estimated from
    neighbouring pixels, which assumes white noise. A smoothed image (a Gaussian filter of 0.5–1.5
    px, a median or box filter of 3–5 px, a "denoised" export) has lost most of that noise but kept
    the band's, so an unresolved blob passes it, and the networks call most such blobs fcc with
    confidence (a newcomer's 45 of 72 smoothed unresolved Au particles of 1.8–3.5 nm; stop 34).
    Their spectrum is still speckle, not spots. The peakedness (stop 34) compares the band's top
    with its median, but a filter makes the band's power fall with frequency, which raises that
    ratio too (a Gaussian of 1.5 px: up to 39). The spots divide each power by the median of its
    own thin frequency shell first, so no filter changes them, and a ring of broad spots — a small
    crystal's — must stand above the frequencies below it, which a filter can only lower (stop 35).
    A ``nan`` score is not held against the cluster.
    """
    peakedness, fringe, spots, ring = evidence
    if diameter_A >= FRINGES_NEEDED_FROM_A:
        return bool(fringe < LATTICE_FRINGES_MIN or spots < LATTICE_SPOTS_MIN)
    if peakedness < LATTICE_PEAKEDNESS_MIN:
        return True
    return bool(spots < LATTICE_SPOTS_MIN and ring < LATTICE_RING_MIN and fringe < SHARP_SPOT_MIN)


def amorphous_evidence_missing(evidence: CrystalEvidence) -> bool:
    """Whether a cluster called amorphous shows no resolved structure at all in its spectrum
    (``evidence``: :func:`crystal_evidence`): its lattice band is speckle (``peakedness`` <
    :data:`LATTICE_PEAKEDNESS_MIN`, 8) and it has no ring at the metals' atomic spacings (``ring`` <
    :data:`LATTICE_RING_MIN`, 1).

    Why: "amorphous" claims that the atoms are there but not in order, which an image shows only
    when it resolves them. A glassy cluster seen at atomic resolution puts a ring of its atomic
    spacings (2–3 Å) and speckle above the band's median; a crystal seen off its zone axis, blurred
    by the probe or out of focus shows neither, and the networks call some such crystals amorphous
    with confidence. Both thresholds are the noise levels that :func:`crystal_evidence_missing`
    holds crystalline calls to, not values tuned on those labels (stop 42, a one-off on the
    benchmark sets of ``domain.py`` and ``astigmatism.py`` before the rule: 18 wrong and 194 right
    "amorphous" labels; 6 wrong and 1 right one have neither). A ``nan`` score is not held against
    the cluster.
    """
    peakedness, _, _, ring = evidence
    return bool(peakedness < LATTICE_PEAKEDNESS_MIN and ring < LATTICE_RING_MIN)


def crystal_evidence(image: Image, x_px: float, y_px: float, diameter_A: float) -> CrystalEvidence:
    """What :func:`crystal_evidence_missing` tests of a cluster of projected ``diameter_A`` [Å], from
    one window spectrum: its :func:`lattice_peakedness`, :func:`fringe_peak`,
    :func:`lattice_spots` and :func:`lattice_ring`."""
    spec = _window_spectrum(image, x_px, y_px, diameter_A, noise=False)
    return CrystalEvidence(_peakedness_of(spec), _fringe_peak_of(spec), _spots_of(spec), _ring_of(spec))


def judge_fit(label: str, reason: str | None, fit_isomer: str | None, fit_reason: str | None,
              lattice_at_bound: bool = False) -> tuple[str, str | None]:
    """The label and reason of a cluster once a structure fit has checked the network's label.

    A conclusive fit (``fit_reason`` None) of another isomer than a label that stands turns the
    label into ``("unknown", "fit_disagrees")``; so does a fit whose crystalline model lines up
    with the data only at the end of its ±15 % scale range or blur
    (``lattice_at_bound``: :func:`clusterspy.fit.api.lattice_at_bound`), whatever its isomer: the
    image is not at the pixel size the network was given, or shows no lattice of the element (a
    newcomer's wide-field JPEG told 0.4 Å/px: support texture labelled fcc 0.96 by the network
    and "agreed" by an fcc fit at scale 1.150). Everything else leaves the network's decision as
    it was: a label with a reason already (the fit was not asked), a fit that agrees, and an
    inconclusive fit (``poor_fit``, ``ambiguous_fit``, ``too_small``, …: physics could neither
    confirm nor refute the label, which the caller records beside it).

    Parameters
    ----------
    label, reason : str, str or None
        The network's label and reason (:func:`judge_probabilities`).
    fit_isomer, fit_reason : str or None
        The fit's isomer and its own reason (:data:`clusterspy.fit.FIT_REASONS`), None when
        there was no fit.
    lattice_at_bound : bool
        The fit's crystalline model lines up only at an end of its scale or blur range.

    Returns
    -------
    tuple of (str, str or None)
        The label and reason that stand.
    """
    from clusterspy.isomers import UNKNOWN

    if reason is not None:
        return label, reason
    if lattice_at_bound:
        return UNKNOWN, "fit_disagrees"
    if fit_isomer is None or fit_reason is not None:
        return label, reason
    if fit_isomer != label:
        return UNKNOWN, "fit_disagrees"
    return label, reason


def spectrum_window_px(diameter_A: float, pixel_size_A: float) -> int:
    """Side [px] of the square :func:`_window_spectrum` reads around a cluster of ``diameter_A`` [Å]:
    0.7 × the diameter, within 12–40 Å, at least 16 px."""
    return max(16, round(float(np.clip(0.7 * diameter_A, 12.0, 40.0)) / float(pixel_size_A)))


def _window_origin(x_px: float, y_px: float, n: int, shape: tuple[int, ...]) -> tuple[int, int]:
    """Top-left ``(row, col)`` of the ``n``-px square centred on ``(x_px, y_px)`` [px], moved inside
    an image of ``shape`` where it would reach past an edge."""
    rows, cols = shape[:2]
    return (min(max(round(y_px - n / 2), 0), max(rows - n, 0)),
            min(max(round(x_px - n / 2), 0), max(cols - n, 0)))


def _window_spectrum(image: Image, x_px: float, y_px: float, diameter_A: float, *, noise: bool = True
                     ) -> tuple[np.ndarray, np.ndarray, float, float] | None:
    """Power spectrum of a Hann-windowed square centred on a cluster (side ``0.7 × diameter``,
    12–40 Å): ``(power, frequency [1/Å], white-noise power level, Nyquist [1/Å])``, or None.
    ``noise=False`` skips the noise level (two medians over the window; ``nan`` instead): the
    windows of :func:`lattice_over_surroundings` compare powers only."""
    px = float(image.pixel_size_A)
    nyq = 0.5 / px
    if nyq <= LATTICE_BAND[0] * 1.2:
        return None
    n = spectrum_window_px(diameter_A, px)
    r0, c0 = _window_origin(x_px, y_px, n, image.shape)
    win = np.asarray(image.data[r0:r0 + n, c0:c0 + n], dtype=np.float64)
    if min(win.shape) < 16:
        return None
    from scipy import fft as sfft

    w, f = _hann_and_frequencies(win.shape, px)
    power = np.abs(sfft.fft2((win - win.mean()) * w)) ** 2
    if not noise:
        return power, f, float("nan"), nyq
    diffs = np.concatenate([np.diff(win, axis=0).ravel(), np.diff(win, axis=1).ravel()])
    sigma = 1.4826 * float(np.median(np.abs(diffs - np.median(diffs)))) / np.sqrt(2.0)
    if sigma <= 0:
        sigma = float(np.std(diffs)) / np.sqrt(2.0)
    return power, f, sigma**2 * float((w**2).sum()), nyq


@lru_cache(maxsize=32)
def _hann_and_frequencies(shape: tuple[int, int], px: float) -> tuple[np.ndarray, np.ndarray]:
    """The 2-D Hann window and the spatial frequency [1/Å] of each FFT bin of a ``shape`` window."""
    w = np.outer(np.hanning(shape[0]), np.hanning(shape[1]))
    fy = np.fft.fftfreq(shape[0], d=px)
    fx = np.fft.fftfreq(shape[1], d=px)
    w.setflags(write=False)
    f = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    f.setflags(write=False)
    return w, f


def resolution_scores(image: Image, x_px: float, y_px: float, diameter_A: float) -> tuple[float, float]:
    """``(lattice_contrast, lattice_over_shape)`` from one window spectrum (one FFT)."""
    return spectrum_scores(image, x_px, y_px, diameter_A)[:2]


def lattice_peakedness(image: Image, x_px: float, y_px: float, diameter_A: float) -> float:
    """How far the lattice band's strongest powers stand above its own median: the 99th percentile
    of the power in :data:`LATTICE_BAND` over its median, in the window of :func:`lattice_contrast`.

    Unlike :func:`lattice_contrast`, it needs no estimate of the noise, so smoothing does not fool
    it: noise — white, or smoothed by any filter — is speckle, whose powers are exponentially
    distributed around a level that varies slowly with frequency (≈ 6.6); resolved columns put
    spots, and a glassy cluster a ring, far above the band's median. ``nan`` when the band lies
    beyond the Nyquist frequency.
    """
    return _peakedness_of(_window_spectrum(image, x_px, y_px, diameter_A, noise=False))


def _peakedness_of(spec: tuple[np.ndarray, np.ndarray, float, float] | None) -> float:
    """:func:`lattice_peakedness` of a :func:`_window_spectrum`."""
    band = np.empty(0) if spec is None else _lattice_band(spec)
    if band.size < 8:
        return float("nan")
    p99, median = (float(v) for v in np.percentile(band, [99, 50]))
    return p99 / median if median > 0 else float("nan")


def lattice_spots(image: Image, x_px: float, y_px: float, diameter_A: float) -> float:
    """How far the strongest powers of the lattice band stand above the speckle of their own
    frequency: each power in :data:`LATTICE_BAND` is divided by the median of its shell of
    spatial frequency (:data:`SPOT_SHELL_BINS` FFT bins wide, from the band's lower edge; the
    remainder narrower than a shell at its upper edge is left out), and the 99th percentile of
    these ratios is returned, in the window of :func:`lattice_contrast`.

    Noise is speckle — exponentially distributed power around a level that varies slowly with
    frequency — so any filter that smoothed it (Gaussian, median, box) leaves ≈ 6.6
    (ln 100 / ln 2); the spots of resolved columns stand far above their shell. Unlike
    :func:`lattice_peakedness`, a level that falls across the band (a smoothed image's) does not
    raise it. ``nan`` when the band lies beyond the Nyquist frequency.
    """
    return _spots_of(_window_spectrum(image, x_px, y_px, diameter_A, noise=False))


def _spots_of(spec: tuple[np.ndarray, np.ndarray, float, float] | None) -> float:
    """:func:`lattice_spots` of a :func:`_window_spectrum`."""
    if spec is None:
        return float("nan")
    power, f, _, nyq = spec
    step = float(f[0, 1])  # one FFT bin [1/Å]
    edges = np.arange(LATTICE_BAND[0], min(LATTICE_BAND[1], nyq) + 1e-12, SPOT_SHELL_BINS * step)
    ratios = []
    for lo, hi in pairwise(edges):
        shell = power[(f >= lo) & (f < hi)]
        median = float(np.median(shell)) if shell.size >= 4 else 0.0
        if median > 0:
            ratios.append(shell / median)
    if not ratios or sum(r.size for r in ratios) < 8:
        return float("nan")
    return float(np.percentile(np.concatenate(ratios), 99))


def lattice_ring(image: Image, x_px: float, y_px: float, diameter_A: float) -> float:
    """How strongly the fringes of a metal lattice stand out as a ring: the 90th percentile of the
    power in :data:`RING_BAND` (the {111} and {200} spacings of the fcc metals, 1.72–2.95 Å) over
    that in :data:`BELOW_RING_BAND` (3.3–5.5 Å), in the window of :func:`lattice_contrast`.

    A small crystal's few columns give broad spots that fill a ring at its lattice spacing, far
    above the frequencies below it (a few up to hundreds). An unresolved blob's spectrum falls with
    frequency, and smoothing makes it fall faster: below 1 but for chance. ``nan`` when either band
    lies beyond the Nyquist frequency or holds fewer than 4 powers.
    """
    return _ring_of(_window_spectrum(image, x_px, y_px, diameter_A, noise=False))


def _ring_of(spec: tuple[np.ndarray, np.ndarray, float, float] | None) -> float:
    """:func:`lattice_ring` of a :func:`_window_spectrum`."""
    if spec is None:
        return float("nan")
    power, f, _, nyq = spec
    ring = power[(f >= RING_BAND[0]) & (f < min(RING_BAND[1], nyq))]
    below = power[(f >= BELOW_RING_BAND[0]) & (f < BELOW_RING_BAND[1])]
    if ring.size < 4 or below.size < 4:
        return float("nan")
    below_p90 = float(np.percentile(below, 90))
    return float(np.percentile(ring, 90)) / below_p90 if below_p90 > 0 else float("nan")


def strongest_spot(image: Image, x_px: float, y_px: float, diameter_A: float) -> tuple[float, float]:
    """The spacing [Å] of a cluster's strongest lattice spot and how far it stands above its own
    frequency shell: ``(spacing_A, peak)``.

    In the window spectrum of :func:`lattice_contrast`, the powers at spacings of
    :data:`SPOT_SEARCH_A` (8–1.2 Å) are divided, shell by shell (:data:`SPOT_SHELL_BINS` FFT bins
    wide), by their shell's median, as in :func:`fringe_peak`; the largest ratio is ``peak`` and
    the spacing of its frequency bin is ``spacing_A``. A resolved crystal's strongest spot is its {111} or
    {200} fringe (1.8–2.9 Å for the fcc metals); seen much coarser, the pixel size given is too
    large (:data:`COARSE_SPOT_FROM_A`). ``(nan, nan)`` when the window holds no such shells.
    """
    return _strongest_spot_of(_window_spectrum(image, x_px, y_px, diameter_A, noise=False))


def _strongest_spot_of(spec: tuple[np.ndarray, np.ndarray, float, float] | None) -> tuple[float, float]:
    """:func:`strongest_spot` of a :func:`_window_spectrum`."""
    nan = (float("nan"), float("nan"))
    if spec is None:
        return nan
    from scipy import ndimage as ndi

    power, f, _, nyq = spec
    lo, hi = 1.0 / SPOT_SEARCH_A[0], min(1.0 / SPOT_SEARCH_A[1], nyq)
    inside = (f >= lo) & (f < hi)
    freqs, values = f[inside], power[inside]
    shell = ((freqs - lo) // (SPOT_SHELL_BINS * float(f[0, 1]))).astype(np.int64)  # f[0, 1]: one bin
    counts = np.bincount(shell)
    ids = np.flatnonzero(counts >= 8)
    if ids.size == 0:
        return nan
    medians = np.zeros(counts.size)
    medians[ids] = ndi.median(values, shell, ids)
    med = medians[shell]
    ratio = np.divide(values, med, out=np.zeros_like(values), where=med > 0)
    k = int(np.argmax(ratio))
    return (1.0 / float(freqs[k]), float(ratio[k])) if ratio[k] > 0 else nan


def spectrum_scores(image: Image, x_px: float, y_px: float, diameter_A: float
                    ) -> tuple[float, float, float]:
    """``(lattice_contrast, lattice_over_shape, fine_over_lattice)`` from one window spectrum.

    ``fine_over_lattice`` is the peak power (99.5th percentile) of fringes finer than any metal's
    strongest (:data:`FINE_BAND`, 0.6–1.25 Å) over that of :data:`LATTICE_BAND`, when the fine
    peak stands :data:`FINE_CONTRAST_MIN` × above the noise (else 0): > 1 means the strongest
    fringes are finer than a metal lattice allows — the pixel size given is too small (a 2.3 Å
    {111} fringe seen at 0.9 Å). ``nan`` for a score whose band lies beyond the Nyquist frequency.
    """
    return _spectrum_scores_of(_window_spectrum(image, x_px, y_px, diameter_A))


def _spectrum_scores_of(spec: tuple[np.ndarray, np.ndarray, float, float] | None
                        ) -> tuple[float, float, float]:
    """:func:`spectrum_scores` of a :func:`_window_spectrum` (with its noise level)."""
    nan = float("nan")
    if spec is None:
        return nan, nan, nan
    power, f, noise, nyq = spec
    band = _lattice_band(spec)
    shape = power[(f >= SHAPE_BAND[0]) & (f < SHAPE_BAND[1])]
    if band.size < 8:
        return nan, nan, nan
    p95 = float(np.percentile(band, 95))
    lc = p95 / noise if noise > 0 else nan
    ls = p95 / float(np.median(shape)) if shape.size >= 4 and np.median(shape) > 0 else nan
    fine = power[(f >= FINE_BAND[0]) & (f < min(FINE_BAND[1], nyq))]
    fl = nan
    if fine.size >= 8 and noise > 0:
        fine_peak = float(np.percentile(fine, 99.5))
        fl = fine_peak / float(np.percentile(band, 99.5)) if fine_peak > FINE_CONTRAST_MIN * noise else 0.0
    return lc, ls, fl


def lattice_contrast(image: Image, x_px: float, y_px: float, diameter_A: float) -> float:
    """How strongly atomic columns show inside a cluster, in units of the noise.

    A Hann-windowed square of the image centred on the cluster (side ``0.7 × diameter``,
    12–40 Å) is Fourier transformed; the 95th percentile of its power in :data:`LATTICE_BAND`
    (fringes of 1.25–3.2 Å) is divided by the power white noise of the window's own noise level
    would have there (σ² Σw², σ from the median absolute pixel-to-pixel difference). White noise
    or an unresolved blob gives ≈ 3 (the 95th percentile of exponentially distributed power);
    resolved columns, or the ring of a glassy cluster, give far more. ``nan`` when the band lies
    beyond the Nyquist frequency.
    """
    return resolution_scores(image, x_px, y_px, diameter_A)[0]


def fringe_peak(image: Image, x_px: float, y_px: float, diameter_A: float) -> float:
    """How sharply the lattice-band power of a cluster peaks: lattice fringes (order) or a diffuse ring.

    In the window spectrum of :func:`lattice_contrast`, the power in :data:`LATTICE_BAND` is
    divided, shell by shell (8 shells of spatial frequency), by the shell's median; the largest
    ratio is returned. The diffuse ring of a glassy cluster is speckle (exponentially distributed
    power): 4–11 on 7 fast-simulated glassy Au clusters of 60–550 atoms; the spots of lattice
    fringes give 21–630 on 10 fast-simulated crystalline clusters (55–923 atoms, random
    orientations), 50–860 on the real particles of ``benchmarks/structure_fit.py``. ``nan`` when
    the band lies beyond the Nyquist frequency.
    """
    return _fringe_peak_of(_window_spectrum(image, x_px, y_px, diameter_A, noise=False))


def _fringe_peak_of(spec: tuple[np.ndarray, np.ndarray, float, float] | None) -> float:
    """:func:`fringe_peak` of a :func:`_window_spectrum`."""
    if spec is None:
        return float("nan")
    power, f, _, nyq = spec
    edges = np.linspace(LATTICE_BAND[0], min(LATTICE_BAND[1], nyq), 9)
    ratios = [power[(f >= lo) & (f < hi)] for lo, hi in pairwise(edges)]
    ratios = [r / np.median(r) for r in ratios if r.size >= 8 and np.median(r) > 0]
    return float(max(r.max() for r in ratios)) if ratios else float("nan")


def lattice_over_shape(image: Image, x_px: float, y_px: float, diameter_A: float) -> float:
    """Lattice-band power over the particle's shape power just below it.

    The 95th percentile of the power in :data:`LATTICE_BAND` divided by the median power at
    3.6–5.5 Å (:data:`SHAPE_BAND`), in the window of :func:`lattice_contrast`. A smooth blob —
    whose spectrum only falls with frequency — gives < 1 even when the image has almost no
    noise (JPEG, filtered or binned data, where :func:`lattice_contrast` is inflated); white
    noise gives ≈ 4; resolved columns give ≫ 1.
    """
    return resolution_scores(image, x_px, y_px, diameter_A)[1]


def lattice_over_surroundings(image: Image, x_px: float, y_px: float, diameter_A: float,
                              others_xy_px: np.ndarray | None = None,
                              others_diameter_px: np.ndarray | None = None) -> float:
    """Lattice-band power on a cluster over that of the same band around it.

    The 95th percentile of the power in :data:`LATTICE_BAND` in the window of
    :func:`lattice_contrast`, divided by the median of the same figure in up to 8 windows of the
    same size around the cluster (centres one diameter plus one window side away, every 45°),
    leaving out windows that reach past the image or are centred on another cluster
    (``others_xy_px`` (col, row) [px] and ``others_diameter_px`` [px]). Atomic columns stand far
    above vacuum or carbon (10³–10⁷ on simulated and real particles); a blob whose "fringes" are
    the texture of the whole frame — noise or JPEG blocks of a wide field at a wrong pixel size —
    gives ≈ 1–6.
    ``nan`` when fewer than two surrounding windows fit, or the band lies beyond Nyquist.
    """
    px = float(image.pixel_size_A)
    half = 0.5 * float(np.clip(0.7 * diameter_A, 12.0, 40.0)) / px
    dist = diameter_A / px + 2.0 * half
    others = np.empty((0, 2)) if others_xy_px is None else np.asarray(others_xy_px, float).reshape(-1, 2)
    o_diam = np.zeros(len(others)) if others_diameter_px is None else np.asarray(others_diameter_px, float)
    rows, cols = image.shape
    centres = [(x_px, y_px)]
    for a in np.radians(np.arange(0.0, 360.0, 45.0)):
        x, y = x_px + dist * np.cos(a), y_px + dist * np.sin(a)
        if x - half < 0 or y - half < 0 or x + half > cols or y + half > rows:
            continue
        if len(others) and np.any(np.hypot(*(others - [x, y]).T) < 0.5 * o_diam):
            continue
        centres.append((x, y))
    p95 = _band_p95s(image, centres, diameter_A)
    on, around = float(p95[0]), p95[1:][np.isfinite(p95[1:])]
    if not np.isfinite(on) or len(around) < 2:
        return float("nan")
    return on / max(float(np.median(around)), 1e-300)


def _band_p95s(image: Image, centres_px: Sequence[tuple[float, float]], diameter_A: float) -> np.ndarray:
    """95th percentile of the :data:`LATTICE_BAND` power in the window of :func:`lattice_contrast`
    centred on each ``(x, y)`` [px] of ``centres_px`` (``nan`` where the band has no room): the
    windows of :func:`_window_spectrum`, transformed together (one FFT call, one percentile)."""
    px = float(image.pixel_size_A)
    nan = np.full(len(centres_px), np.nan)
    if 0.5 / px <= LATTICE_BAND[0] * 1.2:
        return nan
    n = spectrum_window_px(diameter_A, px)
    wins = []
    for x, y in centres_px:
        r0, c0 = _window_origin(x, y, n, image.shape)
        wins.append(np.asarray(image.data[r0:r0 + n, c0:c0 + n], dtype=np.float64))
    stack = np.stack(wins)
    if min(stack.shape[1:]) < 16:
        return nan
    from scipy import fft as sfft

    w, f = _hann_and_frequencies(stack.shape[1:], px)
    power = np.abs(sfft.fft2((stack - stack.mean(axis=(1, 2), keepdims=True)) * w)) ** 2
    band = power[:, (f >= LATTICE_BAND[0]) & (f < min(LATTICE_BAND[1], 0.5 / px))]
    return np.percentile(band, 95, axis=1) if band.shape[1] >= 8 else nan


def _lattice_band(spec: tuple[np.ndarray, np.ndarray, float, float]) -> np.ndarray:
    """The powers of a :func:`_window_spectrum` in :data:`LATTICE_BAND` (below its Nyquist)."""
    power, f, _, nyq = spec
    return power[(f >= LATTICE_BAND[0]) & (f < min(LATTICE_BAND[1], nyq))]


def tiled_lattice_contrast(image: Image, x_px: float, y_px: float, diameter_A: float) -> float:
    """The largest :func:`lattice_contrast` of the :data:`LATTICE_TILE_A` (12 Å) tiles, overlapping
    by half, of a cluster's window (:func:`spectrum_window_px`); ``nan`` when the window is not two
    tiles wide (clusters below ~3.4 nm: their window is the tile).

    Why: :func:`lattice_contrast` takes the 95th percentile of the lattice band's powers. A 40 Å
    window (a particle of 5.7 nm and more) has ~2,700 frequency bins there, of which the spots of
    one set of fringes — all an fcc particle off its zone axes shows — fill far less than 5 %; a
    12 Å tile has ~245, and the same fringes reach its top 5 %. All 8 fcc Au particles of ~7 nm
    (9,000 atoms, ``clusterspy simulate`` at 0.4 Å/px, seeds 1–8) were ``not_resolved`` with a
    lattice contrast of 1.5–5.6, and 7.0–30.7 with the tiles (5 of 8 above
    :data:`TILED_LATTICE_CONTRAST_MIN`, all 5 then labelled fcc); Poisson noise alone gives the
    largest tile 4.5 (median).
    """
    px = float(image.pixel_size_A)
    n = spectrum_window_px(diameter_A, px)
    t = spectrum_window_px(LATTICE_TILE_A / 0.7, px)  # a window of 12 Å
    if n < 2 * t:
        return float("nan")
    r0, c0 = _window_origin(x_px, y_px, n, image.shape)
    step = max(1, t // 2)
    best = float("nan")
    for dr in range(0, n - t + 1, step):
        for dc in range(0, n - t + 1, step):
            spec = _window_spectrum(image, c0 + dc + t / 2, r0 + dr + t / 2, LATTICE_TILE_A / 0.7)
            if spec is None:
                continue
            band, noise = _lattice_band(spec), spec[2]
            if band.size >= 8 and noise > 0:
                lc = float(np.percentile(band, 95)) / noise
                best = lc if not np.isfinite(best) else max(best, lc)
    return best


def resolution_reason(image: Image, x_px: float, y_px: float, diameter_A: float, *,
                      lc_min: float = LATTICE_CONTRAST_MIN, ls_min: float = LATTICE_OVER_SHAPE_MIN
                      ) -> str | None:
    """``"scale_mismatch"``, ``"not_resolved"``, ``"pixel_size_too_large"`` or None for a cluster of
    projected ``diameter_A`` [Å].

    From one window spectrum (:func:`spectrum_scores`): resolved columns at a wrong scale are
    named first, then columns not resolved (:func:`lattice_over_shape` < ``ls_min``; or
    :func:`lattice_contrast` < ``lc_min`` where the window's tiles do not show columns either:
    :func:`tiled_lattice_contrast` < :data:`TILED_LATTICE_CONTRAST_MIN`, or ``nan`` for a window
    narrower than two 12 Å tiles). Before those, a cluster of :data:`FRINGES_NEEDED_FROM_A` (3.5 nm)
    and more whose :func:`strongest_spot` is a lattice's (≥ :data:`COARSE_SPOT_MIN`) at a spacing
    coarser than :data:`COARSE_SPOT_FROM_A` (3.5 Å) is ``pixel_size_too_large``: its fringes, seen
    coarser, have left the lattice band, and the shape band holds them (StatSTEM's PtIr told 2×
    its pixel size was ``not_resolved``). A crystalline label is checked once more after
    inference (:func:`crystal_evidence_missing`).
    """
    spec = _window_spectrum(image, x_px, y_px, diameter_A)
    lc, ls, fl = _spectrum_scores_of(spec)
    if np.isfinite(fl) and fl > 1.0:
        return "scale_mismatch"
    if diameter_A >= FRINGES_NEEDED_FROM_A:
        spacing_A, peak = _strongest_spot_of(spec)
        if peak >= COARSE_SPOT_MIN and spacing_A > COARSE_SPOT_FROM_A:
            return "pixel_size_too_large"
    if np.isfinite(ls) and ls < ls_min:
        return "not_resolved"
    if np.isfinite(lc) and lc < lc_min and not (
            tiled_lattice_contrast(image, x_px, y_px, diameter_A) >= max(lc_min, TILED_LATTICE_CONTRAST_MIN)):
        return "not_resolved"
    return None


def cluster_reasons(
    image: Image,
    detections: Sequence[Any],
    domain: Mapping[str, Any],
    *,
    field_A: Sequence[float] | None = None,
    check_resolution: bool = True,
    diameters_A: Sequence[float] | None = None,
    only: Sequence[int] | None = None,
) -> list[str | None]:
    """The reason, decided before inference, not to label each detected cluster (or None).

    Parameters
    ----------
    image : Image
        The image the clusters were found in.
    detections : sequence of Detection
        Found with ``exclude_border=False`` (clusters touching the edge are kept, to be named).
    domain : mapping
        The model card's domain (``diameter_nm``; optional ``lattice_contrast_min``).
    field_A : sequence of float, optional
        Side [Å] of each cluster's model crop (for ``neighbour_in_view``); default 1.25 × its
        diameter.
    check_resolution : bool
        Test :func:`lattice_contrast`, :func:`lattice_over_shape` and
        :func:`lattice_over_surroundings` (``not_resolved``).
    diameters_A : sequence of float, optional
        Each cluster's projected diameter [Å]; default :func:`particle_diameter_A` of the
        detector's.
    only : sequence of int, optional
        Judge only these detections (the others still count as neighbours; their entry is None):
        the clusters this model judges when models are chosen by size.

    Returns
    -------
    list of str or None
        One entry per detection, a key of :data:`REASONS` or None.
    """
    d_lo, d_hi = (10.0 * float(v) for v in domain.get("diameter_nm", [1.0, 8.0]))
    lc_min = float(domain.get("lattice_contrast_min", LATTICE_CONTRAST_MIN))
    ls_min = float(domain.get("lattice_over_shape_min", LATTICE_OVER_SHAPE_MIN))
    los_min = float(domain.get("lattice_over_surroundings_min", LATTICE_OVER_SURROUNDINGS_MIN))
    px = float(image.pixel_size_A)
    xy = np.array([[d.x_px, d.y_px] for d in detections], float).reshape(-1, 2) * px
    diam = (np.asarray(diameters_A, float) if diameters_A is not None
            else np.array([particle_diameter_A(d.diameter_A) for d in detections], float))
    fields = np.asarray(field_A, float) if field_A is not None else 1.25 * diam
    out: list[str | None] = []
    wanted = None if only is None else set(only)
    top: float | None = None  # the image's maximum, once a cluster reaches the saturation test
    for i, d in enumerate(detections):
        if wanted is not None and i not in wanted:
            out.append(None)
            continue
        if cut_by_edge(d.bbox, d.diameter_A / px, image.shape, getattr(d, "fill_gap_px", None)):
            out.append("cut_by_edge")
            continue
        if diam[i] < d_lo:
            out.append("too_small")
            continue
        if diam[i] > d_hi:
            out.append("too_large")
            continue
        if _crowded(i, xy, diam, fields[i]):
            out.append("neighbour_in_view")
            continue
        if getattr(d, "elongation", 1.0) > ELONGATION_MAX:
            out.append("elongated")
            continue
        if top is None:
            data = np.asarray(image.data)
            high = float(data.max())
            top = high if high > float(data.min()) else float("inf")  # a constant image clips nothing
        if saturated_share(image.data, d.bbox, top) >= SATURATED_MIN_SHARE:
            out.append("saturated")
            continue
        if check_resolution:
            reason = resolution_reason(image, d.x_px, d.y_px, diam[i], lc_min=lc_min, ls_min=ls_min)
            if reason is None:
                others = np.arange(len(detections)) != i
                los = lattice_over_surroundings(image, d.x_px, d.y_px, diam[i], xy[others] / px,
                                                diam[others] / px)
                reason = "not_resolved" if np.isfinite(los) and los < los_min else None
            if reason is not None:
                out.append(reason)
                continue
        out.append(None)
    return out


#: Least share of a cluster's box covered by a plateau of the image's maximum (:func:`saturated_plateau`)
#: for ``saturated``: its brightest columns are clipped, and with them the column intensities that
#: tell twin planes apart. A newcomer's 8-bit exports of fast-simulated decahedra of 1,400 atoms
#: (3.8–4.1 nm), contrast stretched to the 85th–97th percentile, got fcc 0.94–1.00 in 5 of 38 (their
#: plateaus: 21–38 % of the box); stretched to the 99.5th percentile, StatSTEM's PtIr and Pb keep 1–3 %
#: and were labelled right; raw images hold none (a Poisson count's maximum is a lone pixel).
SATURATED_MIN_SHARE = 0.05


def saturated_plateau(data: np.ndarray, top: float | None = None) -> np.ndarray:
    """Pixels at the image's maximum (``top``, default ``data``'s own) with a 4-neighbour at it too:
    the plateaus a saturated detector or an export that clipped the highlights (8-bit, contrast
    stretched) leaves on the brightest columns. Noise reaches its maximum at lone pixels. No pixel
    in a constant image (no data to clip)."""
    d = np.asarray(data)
    if top is None:
        top = d.max()
        if top == d.min():
            return np.zeros(d.shape, bool)
    at_top = d == top
    near = np.zeros_like(at_top)
    near[1:] |= at_top[:-1]
    near[:-1] |= at_top[1:]
    near[:, 1:] |= at_top[:, :-1]
    near[:, :-1] |= at_top[:, 1:]
    return at_top & near


def saturated_share(data: np.ndarray, bbox: Sequence[int], top: float | None = None) -> float:
    """The share of a detection's box ``bbox`` (row0, col0, row1, col1) [px] that the plateau of the
    image's maximum ``top`` (default ``data``'s own) covers: :func:`saturated_plateau` of the box
    alone, so no pass over the whole frame."""
    d = np.asarray(data)
    if top is None:
        top = float(d.max()) if d.max() > d.min() else float("inf")
    r0, c0, r1, c1 = (max(int(v), 0) for v in bbox)
    box = d[r0:r1, c0:c1]
    return float(saturated_plateau(box, top).mean()) if box.size else 0.0


#: Largest share of a crop's field that other clusters may cover (training had small neighbours).
NEIGHBOUR_FIELD_SHARE = 0.10

#: Largest elongation of a cluster's outline (long over short axis of its second moments,
#: :attr:`clusterspy.detection.Detection.elongation`) that is labelled: more elongated than any
#: single cluster the networks were tested on, the outline is two overlapping or coalesced particles
#: measured as one (or a rod), and one label for it would be a claim about two particles. Single
#: clusters of ``benchmarks/domain.py``'s sets as :func:`clusterspy.classify` detects them, at their
#: pixel size and ±15 % (``benchmarks/elongation.py``): 1 of 1,455 above it (a 55-atom cluster's
#: fragment), the next 1.45 (Ino decahedra seen side-on). Pairs of 2.8 nm particles with centres
#: 14–18 Å apart, merged by the detector: 1.53–1.93; 10–12 Å apart: 1.23–1.49, nearly round, and
#: not caught. A newcomer's (stop 38) such pairs got one isomer with confidence ≥ 0.96 in 15 of 25.
ELONGATION_MAX = 1.5


def _crowded(i: int, xy_A: np.ndarray, diam_A: np.ndarray, field_A: float) -> bool:
    """Whether another cluster touches cluster ``i`` (gap < 1 Å) or covers more than
    :data:`NEIGHBOUR_FIELD_SHARE` of its square field of view (discs of the measured diameters)."""
    others = np.arange(len(xy_A)) != i
    if not others.any():
        return False
    dist = np.sqrt(((xy_A - xy_A[i]) ** 2).sum(1))
    if np.any((dist - 0.5 * (diam_A + diam_A[i]) < 1.0) & others):
        return True
    g = (np.arange(24) + 0.5) / 24 - 0.5
    gx, gy = np.meshgrid(g * field_A + xy_A[i, 0], g * field_A + xy_A[i, 1])
    pts = np.stack([gx.ravel(), gy.ravel()], 1)
    covered = np.zeros(len(pts), bool)
    for j in np.flatnonzero(others):
        covered |= ((pts - xy_A[j]) ** 2).sum(1) < (0.5 * diam_A[j]) ** 2
    return bool(covered.mean() > NEIGHBOUR_FIELD_SHARE)
