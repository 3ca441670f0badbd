"""The pixel size an image's crystalline clusters imply: their lattice against the element's.

A cluster whose atomic columns are resolved and whose spectrum shows lattice fringes carries a
ruler: the element's lattice constant [Å]. :func:`measure_lattice` fits the crystalline models of
:mod:`clusterspy.fit` (the coarse template search over pixel-size errors of up to ±15 %, and a
short pattern search over rotation, centre, scale and blur) and returns the fitted scale: the
image's pixel size is best explained as ``pixel_size / scale`` — when the model's columns lie on
the data's (:data:`LATTICE_NCC_MIN`). It is the structure fit's own scale
(:attr:`clusterspy.fit.StructureFit.scale`), without the isomer comparison, the zone-axis prior and
the sizes between the coarse ones: a few seconds per cluster of ≤ 3 nm, 20–60 s for a 6 nm one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clusterspy.fit.api import (
    DETECTED_TO_ATOMS,
    FRINGE_PEAK_MAX,
    MAX_ATOMS,
    MIN_ATOMS,
    _fringe_peak,
    _settings,
    coarse_models,
    make_window,
)
from clusterspy.fit.library import FORMS, atoms_for_diameter
from clusterspy.fit.search import (
    COARSE_SCALES,
    MAX_ITERATIONS,
    coarse_search,
    lattice_ncc,
    one_blas_thread,
    refine,
)
from clusterspy.image import Image

#: Coarse candidates refined briefly (6 steps); the one whose columns match best
#: (:func:`clusterspy.fit.search.lattice_ncc`) goes on to the full pattern search.
CANDIDATES = 3
#: The data's zooms of a second coarse search, when the first (the structure fit's
#: :data:`clusterspy.fit.search.COARSE_SCALES`) gives no model whose columns lie on the data's: the
#: ends of the fit's scale range added. StatSTEM's PtIr told a pixel size 15 % too large or small:
#: scales 1.108 / 0.86 at lattice NCC 0.57 with the three, 1.117 / 0.85 at 0.75 / 0.65 with these
#: five; StatSTEM's Pb at its file's pixel size: 1.133 at 0.70 with the three, 1.099 at 0.50 with
#: the five (other sizes crowd the coarse list).
CALIBRATION_SCALES = (0.85, 0.9, 1.0, 1.1, 1.15)
#: Least :func:`clusterspy.fit.search.lattice_ncc` of the best model for its scale to stand: its
#: columns must lie on the data's. On 26 PRISM images (every third of the domain benchmark's, at the
#: true pixel size and told 15 % too large) crystalline clusters whose scale came out right scored
#: 0.65–0.96; amorphous clusters (whatever scale) 0.15–0.51, and icosahedra fitted by a twinned fcc
#: model at a scale 5 % short 0.34–0.36; StatSTEM's PtIr 0.72 (scale 0.99) and Pb 0.70 (1.13); the
#: TEMUL 3 nm Au particle 0.30, at scale 0.90 in one run and 1.10 in another.
LATTICE_NCC_MIN = 0.6


@dataclass(frozen=True)
class LatticeMeasurement:
    """One cluster's lattice against the element's (:func:`measure_lattice`).

    Attributes
    ----------
    scale : float or None
        The pixel-size scale the lattice gives (the image's pixel size is best explained as
        ``pixel_size / scale``); None when it gives none (``reason``).
    lattice_ncc : float or None
        :func:`clusterspy.fit.search.lattice_ncc` of the best crystalline model (None: not fitted).
    fitted_scale : float or None
        The best model's scale, standing or not.
    reason : str or None
        Why there is no scale: ``"size"`` (too small or large to fit), ``"no_fringes"`` (no
        lattice fringes: amorphous or unresolved), ``"columns_unmatched"`` (no crystalline model's
        columns line up with the data's within the fit's ±15 %: the pixel size may be further
        off, the element wrong, or the particle unlike every model). None when ``scale`` stands.
    """

    scale: float | None
    lattice_ncc: float | None = None
    fitted_scale: float | None = None
    reason: str | None = None


def measure_lattice(image: Image, x_px: float, y_px: float, diameter_A: float, *, element: str = "Au",
                    microscope: Any = None) -> LatticeMeasurement:
    """The scale of the best crystalline model of one cluster, when its columns lie on the data's.

    Parameters
    ----------
    image : Image
        The image, with the pixel size [Å/px] to be checked.
    x_px, y_px : float
        Centre of the cluster (column, row) [px].
    diameter_A : float
        The detector's equivalent-circle diameter of the cluster [Å]
        (:attr:`clusterspy.detection.Detection.diameter_A`).
    element : str
        The metal (its fcc lattice constant is the ruler).
    microscope : clusterspy.simulation.Microscope, optional
        Beam energy [keV] and convergence semi-angle [mrad] (default ``Microscope()``); the scale
        hangs on the lattice, hardly on the probe.

    Returns
    -------
    LatticeMeasurement
        Its ``scale`` lies within :data:`clusterspy.fit.search.SCALE_RANGE` (a value at an end of
        it says the error may be larger); None when the cluster is too small or large to fit, shows
        no lattice fringes (:data:`clusterspy.fit.api.FRINGE_PEAK_MAX`: amorphous, unresolved),
        or its best model's columns do not lie on the data's (:data:`LATTICE_NCC_MIN`: its scale
        is then no measurement).
    """
    microscope, z = _settings(element, microscope, None)
    size_A = diameter_A * DETECTED_TO_ATOMS
    n_guess = atoms_for_diameter(size_A, element)
    if not MIN_ATOMS <= n_guess <= MAX_ATOMS:
        return LatticeMeasurement(None, reason="size")
    if not _fringe_peak(image, x_px, y_px, diameter_A, resolved=True) >= FRINGE_PEAK_MAX:
        return LatticeMeasurement(None, reason="no_fringes")
    win, _ = make_window(image, x_px, y_px, size_A, microscope, z)
    crystals = tuple(f for f, (_, _, group) in FORMS.items() if group is not None)
    tried = []
    for scales in (COARSE_SCALES, CALIBRATION_SCALES):
        with one_blas_thread():
            models = coarse_models(crystals, n_guess, element, scales)
            coarse = coarse_search(win, models, keep=2, scales=scales)
            if not coarse:
                return LatticeMeasurement(None, reason="size")
            # the lattice is measured: the candidate whose columns lie best on the data's goes on (the
            # one of best NCC may match the outline with its columns off)
            started = [refine(win, c, iterations=6) for c in coarse[:CANDIDATES]]
            first = max(started, key=lambda c: lattice_ncc(win, c))
            best = refine(win, first, iterations=MAX_ITERATIONS - 6)
            lat = lattice_ncc(win, best)
        if lat >= LATTICE_NCC_MIN:
            return LatticeMeasurement(float(best.pose.scale), lat, float(best.pose.scale))
        tried.append((lat, float(best.pose.scale)))
    lat, scale = max(tried)
    return LatticeMeasurement(None, lat, scale, "columns_unmatched")
