"""Analysis by synthesis: the 3D atomic model whose fast simulation best matches a cluster.

:func:`fit_structure` finds the clusters of an image (:mod:`clusterspy.detection`) and, for each,
searches a template library of motif forms × sizes × symmetry-reduced orientations rendered by the
fast simulator, then refines rotation, centre, pixel-size scale and blur (``search.py``); the
isomer, form, atom count and orientation of the best fit are reported as a :class:`StructureFit`,
with the best fit of every other isomer beside it. Orientations are compared up to the motif's
point group (``symmetry.py``: I_h, D_5h, O_h, and C_s for twinned fcc).
"""

from __future__ import annotations

from clusterspy.fit.api import fit_cluster, fit_structure, fit_window, make_window
from clusterspy.fit.calibrate import LatticeMeasurement, measure_lattice
from clusterspy.fit.result import FIT_REASONS, StructureFit
from clusterspy.fit.symmetry import misorientation_deg, point_group, reduce_rotation, zone_axis

__all__ = [
    "FIT_REASONS",
    "LatticeMeasurement",
    "StructureFit",
    "fit_cluster",
    "fit_structure",
    "fit_window",
    "make_window",
    "measure_lattice",
    "misorientation_deg",
    "point_group",
    "reduce_rotation",
    "zone_axis",
]
