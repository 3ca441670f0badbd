"""``fit_structure``: find the clusters of an image and fit a 3D atomic model to each."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from clusterspy.domain import LATTICE_FRINGES_MIN
from clusterspy.errors import ConfigError, NoClusterFoundError
from clusterspy.fit.library import FORMS, Model, atoms_for_diameter, family, models_near
from clusterspy.fit.result import StructureFit
from clusterspy.fit.search import (
    BLUR_RANGE_A,
    COARSE_SCALES,
    MAX_ITERATIONS,
    SCALE_RANGE,
    SEARCH_OVERSAMPLE,
    Candidate,
    Window,
    coarse_search,
    judged,
    lattice_ncc,
    one_blas_thread,
    refine,
    resize_glassy,
    try_neighbours,
    zone_locked,
)
from clusterspy.fit.symmetry import reduce_rotation, zone_axis
from clusterspy.image import Image
from clusterspy.isomers import Isomer
from clusterspy.simulation import Microscope

#: Detected (thresholded) diameter → diameter of the sphere of fcc density holding the particle's
#: atoms, and the margin [Å] of the window around it. The detector's threshold misses the thin rim:
#: on 18 fast-simulated Au clusters (55–923 atoms, every crystalline motif, random orientations,
#: 100 keV, 0.3–0.4 Å/px; seed 90210) the ratio's median was 1.10 (with 1.0 the first guess of
#: the atom count was 0.74 × the true one, and the size search started off by a magic size or two).
DETECTED_TO_ATOMS = 1.10
WINDOW_MARGIN_A = 7.0
#: Smallest and largest estimated sizes fitted [atoms].
MIN_ATOMS, MAX_ATOMS = 20, 6000
#: A fit below this NCC with the data does not stand (reason ``"poor_fit"``).
MIN_NCC = 0.3
#: Least NCC margin of the best model over the best model of every other isomer for its isomer to
#: stand (else ``"ambiguous_fit"``), and of the best crystalline model over the best glassy one for
#: a crystalline isomer to stand (:func:`claimed_model`). On the first PRISM benchmark images the
#: right crystalline isomers won by 0.08–0.17 and led the glassy model by more than 0.1; on glassy
#: clusters the best crystalline model led the glassy one by 0.01; the TEMUL 3 nm Au particle's
#: best fit led by 0.005.
MIN_MARGIN = 0.03
#: Largest :func:`clusterspy.domain.fringe_peak` of a cluster whose spectrum shows no lattice
#: fringes (glassy: 4–11, crystalline: 21–630 on fast-simulated Au clusters; real particles 50–860).
FRINGE_PEAK_MAX = LATTICE_FRINGES_MIN
#: A crystalline fit whose atomic columns show (lattice fringes: :func:`clusterspy.domain.fringe_peak`
#: ≥ :data:`FRINGE_PEAK_MAX`) takes the best pose with the beam on a named zone axis
#: (:func:`zone_prior`) unless it matches the data worse than the free pose by more than this NCC.
#: Columns are resolved only within a few degrees of a zone axis; a free pose far off every axis
#: that still matches better fits the particle's outline, which the library's ideal forms do not
#: have. StatSTEM's PtIr particle (on [110]): the free fit 17.6° off every axis (twinned fcc,
#: NCC 0.9205, its columns 0.42 Å (median) from StatSTEM's), the best on [110] a truncated
#: octahedron at NCC 0.907 (0.0135 less; columns 0.18 Å off; its neighbouring shapes then 0.923).
#: The 22 crystalline PRISM clusters in random orientations this rule reached (of 56 cases) lost
#: 0.036–0.22 (median 0.10) when locked on their best axis.
ZONE_NCC_TOLERANCE = 0.02
#: The zone-axis prior is applied first to the best model, then to the best model of every other
#: crystalline isomer within this NCC of the best after that (:func:`_fit_one`): one further behind
#: stays behind by more than the claim's margin whatever its axis-held pose (the PRISM set's
#: axis-held poses gained at most 0.02 over the free ones). Before, every isomer within
#: ``2 · MIN_MARGIN + ZONE_NCC_TOLERANCE`` of the best free fit was refitted on the axes: 6.6 s of
#: the 15 s fit of a 923-atom icosahedron, for isomers 0.06 behind.
ZONE_PRIOR_REACH = MIN_MARGIN + 0.02
#: Windows of finer data are binned (by an integer factor) to at least this pixel size [Å/px]:
#: the fast simulator's cost grows with the window's area in pixels, and 0.28 Å/px still resolves
#: the 1.4–2.4 Å spacings of projected columns.
FIT_PIXEL_A = 0.28
#: FWHM [Å] of the diffuse tail fitted beside the model's image (:meth:`Window.score`): a blurred copy
#: of the model with its own non-negative weight, for the probe's tails and diffuse scattering
#: around the particle that a Gaussian blur of the columns cannot give. StatSTEM's Pb particle sits in
#: a halo whose intensity exceeds its columns' contrast: without the tail every model's fit raised
#: its blur to the bound (3 Å) to match the halo, and lost the columns.
TAIL_FWHM_A = 10.0
#: A crystalline fit whose scale (the pixel-size correction) departs from 1 by more than this,
#: or lies within :data:`BOUND_MARGIN` of an end of :data:`clusterspy.fit.search.SCALE_RANGE`, or
#: whose blur lies as near the top of :data:`clusterspy.fit.search.BLUR_RANGE_A`, gets a ``note``
#: (:func:`scale_note`). StatSTEM's PtIr particle (a = 3.92 Å for Pt, 3.84 for Ir) at the file's
#: 0.1211 Å/px: --element Pt 0.975 (blur 1.35 Å), Au 0.937 (a = 4.08 Å), Cu 1.061 (a = 3.61 Å;
#: NCC 0.924 as Pt's 0.923: the scale absorbs the 8 % mismatch), Pb (a = 4.95 Å, 26 % beyond
#: the scale range) every motif's blur at 3.0 Å and a glassy best model (ambiguous_fit); the
#: element's a × scale is 3.82–3.84 Å for Pt, Au and Cu alike.
SCALE_NOTE_MIN = 0.05
BOUND_MARGIN = 0.01
#: The images the fit takes (:func:`clusterspy.domain.check_image`): pixel sizes [Å/px] that resolve
#: atomic columns, as the shipped models' domain. At 1.211 Å/px (StatSTEM's PtIr, its 0.1211 Å/px
#: told ×10) the fit took PtIr's atomic columns for 46 clusters and gave ten of them an isomer; at
#: 12.1 (pm typed as Å) it ran for minutes on thousands of "clusters".
FIT_DOMAIN = {"image_pixel_size_A": (0.05, 0.5), "contrast": "haadf"}
#: Detection range [Å] (equivalent-circle diameters) of :func:`fit_structure` when it is given none;
#: :func:`clusterspy.fit_structure` and ``clusterspy fit`` give classify's
#: (:func:`clusterspy.predict.detection_range_A`) whenever a model card is shipped.
DETECT_RANGE_A = (5.0, 200.0)


def _as_image(image: Any, pixel_size_A: float | None) -> Image:
    if isinstance(image, Image):
        return image if pixel_size_A is None else Image(image.data, float(pixel_size_A), image.metadata)
    return Image(np.asarray(image, dtype=np.float32), pixel_size_A)  # type: ignore[arg-type]


def make_window(img: Image, x_px: float, y_px: float, diameter_A: float, microscope: Microscope,
                z: int, others: Sequence[tuple[float, float, float]] = ()
                ) -> tuple[Window, tuple[int, int, int, int]]:
    """The background-free window of the data around a cluster and its bounds (row0, col0, row1, col1).

    Data finer than :data:`FIT_PIXEL_A` are binned by an integer factor (the window's pixel size
    is then that factor × the image's; its bounds stay in the image's pixels). ``others``: the
    other clusters of the image, ``(x_px, y_px, diameter_A)`` each (image pixels, the detector's
    diameter): their discs, :data:`NEIGHBOUR_MARGIN_A` wider, are left out of the window's mask,
    its background and its centroid (no model of this cluster explains a neighbour's intensity).
    """
    f = max(1, int(FIT_PIXEL_A // img.pixel_size_A))
    px = img.pixel_size_A * f
    half = f * int(np.ceil((0.5 * diameter_A + WINDOW_MARGIN_A) / px))
    r0, c0 = max(0, round(y_px) - half), max(0, round(x_px) - half)
    r1, c1 = min(img.shape[0], r0 + 2 * half), min(img.shape[1], c0 + 2 * half)
    r1, c1 = r0 + (r1 - r0) // f * f, c0 + (c1 - c0) // f * f
    data = np.asarray(img.data[r0:r1, c0:c1], dtype=np.float64)
    if f > 1:
        data = data.reshape((r1 - r0) // f, f, (c1 - c0) // f, f).mean(axis=(1, 3))
    rows, cols = data.shape
    yy, xx = np.mgrid[:rows, :cols]
    own, left_out = _outside_neighbours(others, (r0, c0), f, img.pixel_size_A, (rows, cols),
                                        (x_px, y_px, 0.5 * diameter_A / img.pixel_size_A))
    edge = np.zeros((rows, cols), bool)
    edge[[0, -1], :] = edge[:, [0, -1]] = True
    border = data[edge & own] if (edge & own).any() else data[edge]
    background = float(np.median(border))
    data = data - background
    smooth = np.clip(ndimage.gaussian_filter(data, 1.0 / px), 0, None) * own
    w = smooth.sum()
    cx = float((smooth * xx).sum() / w) if w > 0 else (cols - 1) / 2
    cy = float((smooth * yy).sum() / w) if w > 0 else (rows - 1) / 2
    radius = min(rows, cols) / 2.0 - 1.0
    mask = ((xx - (cols - 1) / 2) ** 2 + (yy - (rows - 1) / 2) ** 2 <= radius**2) & own
    win = Window(data, px, mask, (cx, cy), microscope, z, background, tail_fwhm_A=TAIL_FWHM_A,
                 oversample=SEARCH_OVERSAMPLE, left_out=left_out)
    return win, (r0, c0, r1, c1)


#: Margin [Å] around a neighbour's detected disc left out of a cluster's window (its halo).
NEIGHBOUR_MARGIN_A = 3.0
#: A cluster whose window keeps less than this share of its disc once the neighbours are left
#: out is not fitted (``"neighbour_in_view"``).
MIN_OWN_WINDOW = 0.6


def _outside_neighbours(others: Sequence[tuple[float, float, float]], origin: tuple[int, int], f: int,
                        image_px_A: float, shape: tuple[int, int], own: tuple[float, float, float]
                        ) -> tuple[np.ndarray, tuple[tuple[float, ...], ...]]:
    """Window pixels the neighbours leave to the cluster (:func:`left_out_pixels`), bool, and the
    neighbours and the cluster in window pixels: ``((col, row, radius, margin_radius), …, (col, row,
    radius))``, the cluster last (``own`` and ``others`` in image pixels / Å, as :func:`make_window`)."""
    r0, c0 = origin

    def window_px(x: float, y: float) -> tuple[float, float]:
        # window pixel (i, j) covers image pixels f·i … f·i + f − 1: its centre is at f·i + (f − 1)/2
        return (float(x) - c0 - (f - 1) / 2) / f, (float(y) - r0 - (f - 1) / 2) / f

    discs = tuple((*window_px(x, y), 0.5 * float(d_A) / image_px_A / f,
                   (0.5 * float(d_A) + NEIGHBOUR_MARGIN_A) / image_px_A / f) for x, y, d_A in others)
    cluster = (*window_px(own[0], own[1]), own[2] / f)
    out = np.zeros(shape, bool)
    reaching = []
    for d in discs:  # left_out_pixels is the union of each neighbour's pixels: one pass each
        theirs = left_out_pixels(shape, (d, cluster))
        if theirs.any():
            out |= theirs
            reaching.append(d)
    return ~out, (*reaching, cluster) if reaching else ()


def left_out_pixels(shape: tuple[int, int], spec: Sequence[Sequence[float]]) -> np.ndarray:
    """The pixels of a window left to other clusters, bool.

    ``spec``: each neighbour ``(col, row, radius, margin_radius)`` and, last, the cluster ``(col,
    row, radius)`` [window px] (``StructureFit.simulated.metadata["left_out_px"]``). A pixel is left
    out when it lies within a neighbour's ``margin_radius`` (its radius :data:`NEIGHBOUR_MARGIN_A`
    wider) and nearer that neighbour than the cluster by power distance (``|p − c|² − r²``): the
    cluster's own rim stays where an irregular or edge-cut neighbour's equivalent disc reaches over it.
    """
    rows, cols = shape
    out = np.zeros((rows, cols), bool)
    if len(spec) < 2:
        return out
    yy, xx = np.mgrid[:rows, :cols]
    c, r, rad = spec[-1]
    power_own = (xx - c) ** 2 + (yy - r) ** 2 - rad**2
    for col, row, rad_n, reach in spec[:-1]:
        d2 = (xx - col) ** 2 + (yy - row) ** 2
        out |= (d2 <= reach**2) & (d2 - rad_n**2 < power_own)
    return out


def _own_share(win: Window) -> float:
    """The share of the window's disc left to its cluster (:func:`make_window`'s ``others``)."""
    rows, cols = win.shape
    yy, xx = np.mgrid[:rows, :cols]
    disc = (xx - (cols - 1) / 2) ** 2 + (yy - (rows - 1) / 2) ** 2 <= (min(rows, cols) / 2.0 - 1.0) ** 2
    return float(win.mask.sum()) / max(1, int(disc.sum()))


def fit_window(win: Window, n_atoms_guess: float, element: str, forms: tuple[str, ...] | None = None,
               ) -> tuple[Candidate, dict[str, Candidate]]:
    """Fit every motif to a window; the best candidate and the best of each isomer."""
    with one_blas_thread():
        return _fit_window(win, n_atoms_guess, element, forms)


def _fit_window(win: Window, n_atoms_guess: float, element: str, forms: tuple[str, ...] | None,
                ) -> tuple[Candidate, dict[str, Candidate]]:
    forms = tuple(FORMS) if forms is None else forms
    models = coarse_models(forms, n_atoms_guess, element)
    if not models:
        raise ConfigError(f"no model of {', '.join(forms)} near {n_atoms_guess:.0f} atoms")
    coarse = coarse_search(win, models, keep=2)
    started: dict[str, list[Candidate]] = {}
    first: dict[str, float] = {}
    for c in coarse:
        iso = c.model.isomer.value
        if iso in first and first[iso] >= c.ncc + 0.03 and not c.zone:
            continue  # clearly worse than the motif's first candidate: not worth refining
        first.setdefault(iso, c.ncc)
        started.setdefault(iso, []).append(refine(win, c, iterations=FIRST_ITERATIONS))
    # only the best few candidates of each isomer go on to the pattern search's full length
    rest = MAX_ITERATIONS - FIRST_ITERATIONS
    best_of: dict[str, Candidate] = {
        iso: max((refine(win, c, iterations=rest) for c in sorted(cs, key=lambda c: -c.ncc)[:FINALISTS]),
                 key=lambda c: c.ncc)
        for iso, cs in started.items()}
    # sizes and shapes between the coarse ones: for the best crystalline model (the winner, or the
    # one the glassy model must be beaten by: api.claimed_model) and the glassy one
    crystals = [c for iso, c in best_of.items() if iso != Isomer.AMORPHOUS.value]
    if crystals:
        best = max(crystals, key=lambda c: c.ncc)
        best_of[best.model.isomer.value] = try_neighbours(win, best, models + family(best.model))
    if Isomer.AMORPHOUS.value in best_of:
        best_of[Isomer.AMORPHOUS.value] = resize_glassy(win, best_of[Isomer.AMORPHOUS.value])
    return max(best_of.values(), key=lambda c: c.ncc), best_of


#: Pattern-search iterations every coarse candidate gets (:func:`fit_window`); the best
#: :data:`FINALISTS` of each isomer then go on to :data:`clusterspy.fit.search.MAX_ITERATIONS` (all
#: of them did: 3.6 s of a 7 s fit of a 484-atom decahedron, most of it on candidates that did not
#: stand).
FIRST_ITERATIONS = 6
#: Candidates of each isomer that go on from :data:`FIRST_ITERATIONS` to the full pattern search.
FINALISTS = 2


def coarse_models(forms: tuple[str, ...], n_atoms_guess: float, element: str,
                  scales: tuple[float, ...] = COARSE_SCALES) -> list[Model]:
    """The models of the coarse search: of each form, the two nearest the estimated atom count, and
    for every other scale ``s`` of ``scales`` (:data:`clusterspy.fit.search.COARSE_SCALES`) the one nearest
    ``n / s³`` (the size whose outline the data show if the pixel size is off by ``s``: at
    12 % off, a model of the estimated size matches the outline only at the wrong scale, where its
    lattice does not match, and the refinement's steps do not cross from one magic size to the next).
    Distinct models, by form."""
    out: dict[tuple, Model] = {}
    for f in forms:
        for s in (1.0, *(s for s in scales if s != 1.0)):
            for m in models_near(f, n_atoms_guess / s**3, element, spread=2.0, limit=2 if s == 1.0 else 1):
                out.setdefault((m.form, m.params), m)
    return list(out.values())


def fit_structure(image: Any, pixel_size_A: float | None = None, *, element: str = "Au",
                  microscope: Microscope | None = None, forms: tuple[str, ...] | None = None,
                  check_resolution: bool = True, contrast: str = "auto",
                  detect_range_A: tuple[float, float] | None = None) -> list[StructureFit]:
    """Find every cluster in an image and fit the 3D atomic model whose simulation matches it best.

    Parameters
    ----------
    image : Image or numpy.ndarray
        A 2-D HAADF-STEM image (an array needs ``pixel_size_A``). Files and HyperSpy signals go
        through :func:`clusterspy.fit_structure` (the package's public function), which reads them.
    pixel_size_A : float, optional
        Pixel size [Å/px]; overrides the image's own.
    element : str
        The metal (an fcc element known to ASE: Au, Pt, Pd, Ag, Cu, Pb, Ir, ...).
    microscope : Microscope, optional
        Beam energy [keV], convergence semi-angle [mrad] and detector angles [mrad] of the data
        (default ``Microscope()``: 200 keV, 25 mrad, 70–200 mrad); defocus and source size are
        absorbed by the fitted blur.
    forms : tuple of str, optional
        The forms tried (keys of :data:`clusterspy.fit.library.FORMS`); default all.
    check_resolution : bool
        Leave out clusters whose atomic columns are not resolved, or seen at a wrong scale
        (``not_resolved``, ``scale_mismatch``: the rules of :mod:`clusterspy.domain` that
        :func:`clusterspy.classify` applies). ``False`` fits them anyway (for tests).
    contrast : {"auto", "haadf"}
        ``"auto"`` refuses an image that looks like bright field
        (:func:`clusterspy.domain.check_contrast`); ``"haadf"`` trusts that it is HAADF.
    detect_range_A : (float, float), optional
        The detector's diameter range [Å] (:func:`clusterspy.detection.detect_clusters`; default
        :data:`DETECT_RANGE_A`). :func:`clusterspy.fit_structure` and ``clusterspy fit`` pass
        :func:`clusterspy.classify`'s (:func:`clusterspy.predict.detection_range_A`), so that both
        find, number and judge at the edge the same clusters.

    Returns
    -------
    list of StructureFit
        One per detected cluster (detection order); a cluster that cannot be fitted has
        ``isomer="unknown"`` and a ``reason``.

    Raises
    ------
    OutOfDomainError
        If the pixel size cannot resolve atomic columns, or is too small for the image to hold a
        cluster (:data:`FIT_DOMAIN`, :func:`clusterspy.domain.check_image`: one line, with a hint such
        as pm typed as Å), or if the image looks like bright field (with ``contrast="auto"``).
    NoClusterFoundError
        If no cluster is found.
    """
    from clusterspy.detection import detect_clusters
    from clusterspy.domain import check_image

    img = _as_image(image, pixel_size_A)
    microscope, z = _settings(element, microscope, forms)
    check_image(img, FIT_DOMAIN, contrast=contrast, min_diameter_A=DETECT_RANGE_A[0])  # type: ignore[arg-type]
    lo_A, hi_A = DETECT_RANGE_A if detect_range_A is None else detect_range_A
    dets = detect_clusters(img, min_diameter_A=lo_A, max_diameter_A=hi_A, exclude_border=False,
                           polarity="bright")
    if not dets:
        raise NoClusterFoundError(
            f"no cluster found in the {img.shape[1]}×{img.shape[0]} px image at {img.pixel_size_A:g} Å/px; "
            "check that it is an atomic-resolution HAADF image and that the pixel size is right")
    out = []
    for i, d in enumerate(dets):
        t0 = time.perf_counter()
        diameter = d.diameter_A * DETECTED_TO_ATOMS
        n_guess = atoms_for_diameter(diameter, element)
        res = StructureFit(cluster=i, x_px=float(d.x_px), y_px=float(d.y_px), isomer="unknown")
        others = [o for o in dets if o is not d]
        res.reason = _reason_not_to_fit(img, d, n_guess, check_resolution, others)
        if res.reason is None:
            resolved = check_resolution or _reason_not_to_fit(img, d, n_guess, True, others) is None
            peak = _fringe_peak(img, d.x_px, d.y_px, d.diameter_A, resolved)
            _fit_one(res, img, diameter, n_guess, element, microscope, z, forms, peak,
                     [(o.x_px, o.y_px, o.diameter_A) for o in others])
        res.seconds = time.perf_counter() - t0
        out.append(res)
    return out


def fit_cluster(image: Image, x_px: float, y_px: float, diameter_A: float, *, element: str = "Au",
                microscope: Microscope | None = None, forms: tuple[str, ...] | None = None,
                cluster: int = 0, others: Sequence[tuple[float, float, float]] = ()) -> StructureFit:
    """Fit the 3D atomic model to one cluster found already (by :func:`clusterspy.classify`).

    What :func:`fit_structure` does for each cluster it detects, for a cluster detected elsewhere:
    the domain's edge and resolution rules are the caller's (a cluster :func:`clusterspy.classify`
    labelled has passed them); the fit's own size range still applies (``too_small``, ``too_large``).

    Parameters
    ----------
    image : Image
        The calibrated image the cluster was found in.
    x_px, y_px : float
        Centre of the cluster (column, row) [px].
    diameter_A : float
        The detector's equivalent-circle diameter of the cluster [Å]
        (:attr:`clusterspy.detection.Detection.diameter_A`).
    element, microscope, forms
        As for :func:`fit_structure`.
    cluster : int
        Index recorded in the result.
    others : sequence of (x_px, y_px, diameter_A)
        The other clusters found in the image (centre [px], the detector's diameter [Å]): left out
        of the fit's window (:func:`make_window`).

    Returns
    -------
    StructureFit
        The fit (``isomer="unknown"`` with a ``reason`` when it is not conclusive).
    """
    t0 = time.perf_counter()
    microscope, z = _settings(element, microscope, forms)
    n_guess = atoms_for_diameter(diameter_A * DETECTED_TO_ATOMS, element)
    res = StructureFit(cluster=int(cluster), x_px=float(x_px), y_px=float(y_px), isomer="unknown")
    res.reason = _size_reason(n_guess)
    if res.reason is None:
        peak = _fringe_peak(image, x_px, y_px, diameter_A, resolved=True)
        _fit_one(res, image, diameter_A * DETECTED_TO_ATOMS, n_guess, element, microscope, z, forms, peak,
                 others)
    res.seconds = time.perf_counter() - t0
    return res


def _settings(element: str, microscope: Microscope | None, forms: tuple[str, ...] | None
              ) -> tuple[Microscope, int]:
    """Check the element and forms; the microscope (default ``Microscope()``) and atomic number."""
    from ase.data import atomic_numbers

    from clusterspy.structures import lattice_constant

    lattice_constant(element)  # a clear error for an unknown element
    if forms is not None and not set(forms) <= set(FORMS):
        raise ConfigError(f"unknown form(s) {sorted(set(forms) - set(FORMS))}; use {', '.join(FORMS)}")
    return (Microscope() if microscope is None else microscope), atomic_numbers[element]


def _fit_one(res: StructureFit, img: Image, diameter_A: float, n_guess: float, element: str,
             microscope: Microscope, z: int, forms: tuple[str, ...] | None, fringe_peak: float,
             others: Sequence[tuple[float, float, float]] = ()) -> None:
    """Fit every motif in the window around ``res``'s centre and fill ``res`` with the model it may
    claim (:func:`claimed_model`). Where the lattice shows (``fringe_peak``: :func:`_fringe_peak`),
    the best model of every crystalline isomer first takes the pose of :func:`zone_prior`: resolved
    columns are seen only near a zone axis, whichever the motif, so each isomer is judged in the
    pose the physics allows. (With the prior on the claimed isomer only, a free decahedron off
    every axis came within 0.026 NCC of StatSTEM's PtIr fcc particle and made it ambiguous.)"""
    from ase import Atoms

    win, bounds = make_window(img, res.x_px, res.y_px, diameter_A, microscope, z, others)
    if _own_share(win) < MIN_OWN_WINDOW:
        res.reason = "neighbour_in_view"
        return
    winner, best_of = fit_window(win, n_guess, element, forms)
    if fringe_peak >= FRINGE_PEAK_MAX:
        with one_blas_thread():
            first = winner.model.isomer.value
            best_of[first] = zone_prior(win, best_of[first], n_guess, element, forms)
            lead = max(best_of.values(), key=lambda c: c.ncc)
            # a glassy best model of a cluster whose fringes show is no claim (claimed_model), and no
            # crystalline one can overtake it by MIN_MARGIN with the at most 0.02 an axis gains
            for iso, cand in list(best_of.items()) if lead.model.group is not None else ():
                if iso != first and cand.ncc >= lead.ncc - ZONE_PRIOR_REACH:
                    best_of[iso] = zone_prior(win, cand, n_guess, element, forms)
            fcc = best_of.get(Isomer.FCC.value)
            if fcc is not None and fcc.model.form == "twinned_fcc" and fcc is max(best_of.values(),
                                                                                 key=lambda c: c.ncc):
                best_of[Isomer.FCC.value] = twin_shown(win, fcc, n_guess, element, forms)
    with one_blas_thread():
        win, best_of = judged(win, best_of)
    winner = max(best_of.values(), key=lambda c: c.ncc)
    winner, claim = claimed_model(winner, best_of, bool(fringe_peak < FRINGE_PEAK_MAX))
    _fill(res, winner, best_of, win, bounds, img.pixel_size_A, Atoms, z)
    res.reason = res.reason or claim
    if res.reason is not None:
        res.isomer = "unknown"


def _size_reason(n_guess: float) -> str | None:
    """``"too_small"`` / ``"too_large"`` outside the fitted sizes [atoms], else None."""
    if n_guess < MIN_ATOMS:
        return "too_small"
    if n_guess > MAX_ATOMS:
        return "too_large"
    return None


def _fringe_peak(img: Image, x_px: float, y_px: float, detected_diameter_A: float, resolved: bool
                 ) -> float:
    """:func:`clusterspy.domain.fringe_peak` of a cluster whose atoms are resolved (``resolved``:
    :func:`clusterspy.domain.resolution_reason` found nothing), else ``nan``.

    Below :data:`FRINGE_PEAK_MAX` the atoms are resolved but the spectrum shows no lattice
    fringes (disorder shows: :func:`claimed_model`); at or above it the lattice shows
    (:func:`zone_prior`); ``nan`` compares false either way.
    """
    from clusterspy.domain import fringe_peak, particle_diameter_A

    if not resolved:
        return float("nan")
    return float(fringe_peak(img, x_px, y_px, particle_diameter_A(detected_diameter_A)))


def zone_prior(win: Window, winner: Candidate, n_atoms_guess: float, element: str,
               forms: tuple[str, ...] | None = None) -> Candidate:
    """The winner, or the best pose of its isomer with the beam on a named zone axis.

    For a cluster whose lattice shows (resolved columns are seen only within a few degrees of a
    zone axis): the models of the winner's isomer (the coarse search's, and the winner's own) are
    fitted with the beam on each named zone axis (:func:`clusterspy.fit.search.zone_locked`);
    the best replaces a winner off every named axis unless its NCC is lower by more than
    :data:`ZONE_NCC_TOLERANCE`. The neighbouring sizes and shapes of every form's axis-locked
    fit are then tried on the same axis
    (:func:`clusterspy.fit.search.try_neighbours` without tilt), and the best stands.

    Parameters
    ----------
    win : Window
        The cluster's window.
    winner : Candidate
        The free fit (any isomer; a glassy one is returned as it is).
    n_atoms_guess : float
        The atom count estimated from the detected size.
    element : str
        The metal.
    forms : tuple of str, optional
        The forms fitted (default all).

    Returns
    -------
    Candidate
        ``winner`` or the zone-axis fit that replaces it.
    """
    group = winner.model.group
    if group is None or zone_axis(winner.pose.rotation, group)[0] is not None:
        return winner
    forms = tuple(FORMS) if forms is None else forms
    iso = winner.model.isomer
    models = coarse_models(tuple(f for f in forms if FORMS[f][0] is iso), n_atoms_guess, element)
    locked = zone_locked(win, [winner.model, *models])
    if not locked or locked[0].ncc < winner.ncc - ZONE_NCC_TOLERANCE:
        return winner
    # the sizes and shapes between the coarse ones, on the same axis, from each form's fit (PtIr:
    # from the best, a truncated octahedron of 976 atoms, none matched better; from another form's,
    # a truncated octahedron of 807 atoms, NCC 0.923; StatSTEM counted 798 atoms)
    return max((try_neighbours(win, c, models + family(c.model), tilt=False) for c in locked),
               key=lambda c: c.ncc)


#: A twinned fcc model that leads (:func:`twin_shown`) gives way to the best single-crystal fcc
#: model within this NCC of it whose columns match the data's at least as well
#: (:func:`clusterspy.fit.search.lattice_ncc`).
TWIN_NCC_TOLERANCE = 0.01


def twin_shown(win: Window, twinned: Candidate, n_atoms_guess: float, element: str,
               forms: tuple[str, ...] | None = None) -> Candidate:
    """The twinned fcc model, or the single-crystal fcc model that explains the columns better.

    A twin boundary is a feature of the columns: seen edge-on it splits the lattice into two
    mirrored halves, seen off its plane one half shows no columns. The NCC, dominated by the
    outline, does not see it (StatSTEM's Pb particle, a single crystal on [110]: a twinned model
    of 1,504 atoms whose lower half is off the zone led a truncated octahedron of 1,289 atoms by
    0.0015 NCC, with columns matched at 0.76 against the octahedron's 0.81; StatSTEM counted 1,189
    atoms). So, where the lattice shows, the best single-crystal fcc model with the beam on a
    named zone axis (fitted as in :func:`zone_prior`) replaces a leading twinned one when it is
    within :data:`TWIN_NCC_TOLERANCE` NCC of it and its :func:`clusterspy.fit.search.lattice_ncc`
    is at least as high.

    Parameters
    ----------
    win : Window
        The cluster's window.
    twinned : Candidate
        The leading fcc candidate, a ``twinned_fcc`` model.
    n_atoms_guess, element, forms
        As for :func:`zone_prior`.

    Returns
    -------
    Candidate
        ``twinned`` or the single-crystal model that replaces it.
    """
    forms = tuple(FORMS) if forms is None else forms
    single = tuple(f for f in forms if FORMS[f][0] is Isomer.FCC and f != "twinned_fcc")
    models = coarse_models(single, n_atoms_guess, element)
    locked = zone_locked(win, models) if models else []
    if not locked:
        return twinned
    best = max((try_neighbours(win, c, models + family(c.model), tilt=False) for c in locked),
               key=lambda c: c.ncc)
    if best.ncc < twinned.ncc - TWIN_NCC_TOLERANCE:
        return twinned
    return best if lattice_ncc(win, best) >= lattice_ncc(win, twinned) else twinned


def _reason_not_to_fit(img: Image, d: Any, n_guess: float, check_resolution: bool,
                       others: Sequence[Any] = ()) -> str | None:
    """Why a detected cluster is not fitted, by the rules of :mod:`clusterspy.domain` (or None).

    ``others``: the other clusters detected in the image (left out of the windows of
    :func:`clusterspy.domain.lattice_over_surroundings`).
    """
    from clusterspy.domain import (
        LATTICE_OVER_SURROUNDINGS_MIN,
        cut_by_edge,
        lattice_over_surroundings,
        particle_diameter_A,
        resolution_reason,
    )

    if cut_by_edge(d.bbox, d.diameter_A / img.pixel_size_A, img.shape, getattr(d, "fill_gap_px", None)):
        return "cut_by_edge"
    size = _size_reason(n_guess)
    if size is not None:
        return size
    if not check_resolution:
        return None
    diameter = particle_diameter_A(d.diameter_A)
    reason = resolution_reason(img, d.x_px, d.y_px, diameter)
    if reason is None:
        px = img.pixel_size_A
        xy = np.array([[o.x_px, o.y_px] for o in others], float).reshape(-1, 2)
        diam = np.array([particle_diameter_A(o.diameter_A) / px for o in others], float)
        ratio = lattice_over_surroundings(img, d.x_px, d.y_px, diameter, xy, diam)
        if np.isfinite(ratio) and ratio < LATTICE_OVER_SURROUNDINGS_MIN:
            reason = "not_resolved"
    return reason


def claimed_model(winner: Candidate, best_of: dict[str, Candidate], disordered: bool
                  ) -> tuple[Candidate, str | None]:
    """The model that stands for a cluster, and why its isomer is not a claim (or None).

    ``disordered``: the cluster's atoms are resolved but its spectrum shows no lattice fringes
    (:func:`_disorder_shows`). Then a crystalline isomer is claimed only when its best model
    matches better than the best glassy model by :data:`MIN_MARGIN`; else the glassy model stands
    (``amorphous``): a random packing explains the data as well as any ordered model. Without
    that evidence of disorder a glassy best model is no claim. Otherwise the best model's isomer
    stands when it leads the best model of every other isomer by :data:`MIN_MARGIN`, else
    ``"ambiguous_fit"`` (the best model is kept for inspection: figure, xyz).
    """
    glassy = best_of.get(Isomer.AMORPHOUS.value)
    crystals = [c.ncc for iso, c in best_of.items() if iso != Isomer.AMORPHOUS.value]
    if disordered and glassy is not None and crystals and glassy.ncc >= max(crystals) - MIN_MARGIN:
        return glassy, None
    if winner is glassy and not disordered:
        return winner, "ambiguous_fit"
    others = [c.ncc for iso, c in best_of.items() if iso != winner.model.isomer.value]
    if others and winner.ncc - max(others) < MIN_MARGIN:
        return winner, "ambiguous_fit"
    return winner, None


def scale_note(scale: float, blur_A: float, element: str) -> str | None:
    """A note when the best crystalline model fits only far from the expected scale or blur.

    The fitted scale says the data's pixel size is best explained as ``pixel_size / scale``:
    equally, the data's lattice constant is about the element's × ``scale``. A scale more than
    :data:`SCALE_NOTE_MIN` from 1, or at an end of :data:`clusterspy.fit.search.SCALE_RANGE`,
    or a blur at the top of :data:`clusterspy.fit.search.BLUR_RANGE_A` (the model's columns
    cannot be lined up with the data's and are blurred away) names the two likely causes: a wrong
    pixel size or a wrong element.

    Parameters
    ----------
    scale : float
        Fitted scale of the best crystalline model (dimensionless).
    blur_A : float
        Its fitted blur, FWHM [Å].
    element : str
        The element fitted.

    Returns
    -------
    str or None
        One line, or None when scale and blur are unremarkable.
    """
    from clusterspy.structures import lattice_constant

    a_A = lattice_constant(element)
    lo, hi = SCALE_RANGE
    causes = (f"the pixel size (--pixel-size) or the element (--element {element}, a = {a_A:.2f} Å) "
              "may be wrong")
    if blur_A >= BLUR_RANGE_A[1] - BOUND_MARGIN:
        return (f"the best crystalline model's fitted blur {blur_A:.2f} Å is at the top of its range: its "
                f"atomic columns do not line up with the data's (fitted scale {scale:.3f}); the image may be "
                f"out of focus or smeared (drift), or {causes}")
    at_bound = scale <= lo + BOUND_MARGIN or scale >= hi - BOUND_MARGIN
    if not at_bound and abs(scale - 1.0) <= SCALE_NOTE_MIN:
        return None
    where = f" at the {'lower' if scale < 1 else 'upper'} bound of its range {lo}–{hi}" if at_bound else ""
    return (f"the best crystalline model's fitted scale {scale:.3f}{where} says the data's lattice is "
            f"{'at least ' if at_bound else ''}{abs(scale - 1) * 100:.0f} % "
            f"{'smaller' if scale < 1 else 'larger'} than {element}'s (a ≈ {a_A * scale:.2f} Å, if the model "
            f"matched the right lattice planes: a lattice more than {round((hi - 1) * 100)} % off is matched "
            f"on others); {causes}")


def lattice_at_bound(fit: Any) -> bool:
    """Whether a fit's best model is crystalline and lines up with the data only at an end of the
    fitted scale range (:data:`~clusterspy.fit.search.SCALE_RANGE`, ±15 %) or with the largest
    blur: the data's lattice is not the element's at the pixel size given (a pixel size 15 % off
    or more, another element) or there are no columns to line up with. What
    :func:`clusterspy.workflows.verify_clusters` takes as a fit that disagrees with the label's
    premise."""
    if fit.form is None or fit.form == "glassy" or fit.scale is None:
        return False
    lo, hi = SCALE_RANGE
    scale, blur = float(fit.scale), float(fit.blur_A or 0.0)
    return scale <= lo + BOUND_MARGIN or scale >= hi - BOUND_MARGIN or blur >= BLUR_RANGE_A[1] - BOUND_MARGIN


def _note(winner: Candidate, best_of: dict[str, Candidate], element: str) -> str | None:
    """:func:`scale_note` of the best crystalline candidate (a glassy model has no lattice)."""
    crystals = [c for iso, c in best_of.items() if iso != Isomer.AMORPHOUS.value]
    if winner.model.isomer.value != Isomer.AMORPHOUS.value:
        crystals.append(winner)
    if not crystals:
        return None
    best = max(crystals, key=lambda c: c.ncc)
    return scale_note(float(best.pose.scale), float(best.pose.blur_A), element)


def _fill(res: StructureFit, winner: Candidate, best_of: dict[str, Candidate], win: Window,
          bounds: tuple[int, int, int, int], img_px: float, atoms_cls: Any, z: int) -> None:
    """Fill a StructureFit from the winning candidate."""
    from ase.data import chemical_symbols

    from clusterspy.fit.render import placed_positions

    r0, c0, _, _ = bounds
    px = win.pixel_size_A
    pose = winner.pose
    fitted = win.fitted(winner.model, pose)
    res.window = bounds
    res.ncc = float(winner.ncc)
    f = round(px / img_px)
    # window pixel (i, j) covers image pixels f·i … f·i + f − 1: its centre is at f·i + (f − 1)/2
    res.x_px, res.y_px = c0 + f * pose.x_A / px + (f - 1) / 2, r0 + f * pose.y_A / px + (f - 1) / 2
    res.alternatives = {iso: {"form": c.model.form, "n_atoms": c.model.n_atoms, "ncc": round(float(c.ncc), 4)}
                        for iso, c in best_of.items() if iso != winner.model.isomer.value}
    res.note = _note(winner, best_of, chemical_symbols[z])
    if winner.ncc < MIN_NCC:
        res.reason = "poor_fit"
        return
    group = winner.model.group
    rot = reduce_rotation(pose.rotation, group)
    axis, off = zone_axis(rot, group)
    pos = placed_positions(winner.model.positions, pose)  # R·g·p is the same set of atoms as R·p
    pos[:, 0] += (c0 + (f - 1) / 2) * img_px
    pos[:, 1] += (r0 + (f - 1) / 2) * img_px
    res.isomer = winner.model.isomer.value
    res.form = winner.model.form
    res.n_atoms = winner.model.n_atoms
    res.rotation = rot
    res.zone_axis = axis
    res.zone_axis_off_deg = None if group is None else float(off)
    res.atoms = atoms_cls(numbers=np.full(len(pos), z), positions=pos)
    res.scale, res.blur_A = float(pose.scale), float(pose.blur_A)
    res.aspect, res.shear = float(pose.aspect), float(pose.shear)
    res.simulated = Image((fitted + win.background).astype(np.float32), px,
                          {"window": list(bounds), "fit": {"form": res.form, "n_atoms": res.n_atoms},
                           "left_out_px": [list(d) for d in win.left_out]})  # left_out_pixels()
