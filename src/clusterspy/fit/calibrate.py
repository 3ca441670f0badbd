"""The pixel size an image's crystalline clusters imply: their lattice against the element's.

A cluster whose atomic columns are resolved and whose spectrum shows lattice fringes carries a
ruler: the element's lattice constant [Å]. :func:`lattice_scale` fits the crystalline models of
:mod:`clusterspy.fit` (the coarse template search, which tries pixel-size errors of ±10 %, and a
short pattern search over rotation, centre, scale and blur) and returns the fitted scale: the
image's pixel size is best explained as ``pixel_size / scale``. It is the structure fit's own
scale (:attr:`clusterspy.fit.StructureFit.scale`), without the isomer comparison, the zone-axis
prior and the sizes between the coarse ones: about a second per cluster.
"""

from __future__ import annotations

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
from clusterspy.fit.search import MAX_ITERATIONS, coarse_search, one_blas_thread, refine
from clusterspy.image import Image

#: Coarse candidates refined briefly (6 steps) before the best goes on to the full pattern search.
CANDIDATES = 3


def lattice_scale(image: Image, x_px: float, y_px: float, diameter_A: float, *, element: str = "Au",
                  microscope: Any = None) -> float | None:
    """The scale of the best crystalline model of one cluster, or None when its lattice does not show.

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
    float or None
        The fitted scale, within :data:`clusterspy.fit.search.SCALE_RANGE` (a value at an end of
        it says the error may be larger); None when the cluster shows no lattice fringes
        (:data:`clusterspy.fit.api.FRINGE_PEAK_MAX`: amorphous, unresolved), or is too small or
        large to fit.
    """
    microscope, z = _settings(element, microscope, None)
    size_A = diameter_A * DETECTED_TO_ATOMS
    n_guess = atoms_for_diameter(size_A, element)
    if not MIN_ATOMS <= n_guess <= MAX_ATOMS:
        return None
    if not _fringe_peak(image, x_px, y_px, diameter_A, resolved=True) >= FRINGE_PEAK_MAX:
        return None
    win, _ = make_window(image, x_px, y_px, size_A, microscope, z)
    crystals = tuple(f for f, (_, _, group) in FORMS.items() if group is not None)
    with one_blas_thread():
        coarse = coarse_search(win, coarse_models(crystals, n_guess, element), keep=2)
        if not coarse:
            return None
        first = max((refine(win, c, iterations=6) for c in coarse[:CANDIDATES]), key=lambda c: c.ncc)
        best = refine(win, first, iterations=MAX_ITERATIONS - 6)
    return float(best.pose.scale)
