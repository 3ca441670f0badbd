"""Atomic models of metal nanoclusters: every motif, orientations, disorder, carbon support, verification.

Public face (docs/CONTRACTS.md):

- :func:`cluster` — icosahedral, decahedral, fcc (incl. twinned) and amorphous clusters of a given atom count;
- :func:`carbon_support` — amorphous carbon slab;
- :func:`identify_motif`, :func:`coordination_numbers`, :func:`cna_signatures` — geometric verification.

ASE is imported lazily (it belongs to the ``train`` extra).
"""

from __future__ import annotations

from clusterspy.structures.analysis import (
    cna_signatures,
    coordination_numbers,
    identify_motif,
    structure_summary,
)
from clusterspy.structures.builders import SHAPES, ZONE_AXES, cluster, lattice_constant
from clusterspy.structures.disorder import perturb
from clusterspy.structures.orientation import random_rotation, rotation_to_z, small_rotation
from clusterspy.structures.support import carbon_support, place_on_support

__all__ = [
    "SHAPES",
    "ZONE_AXES",
    "carbon_support",
    "cluster",
    "cna_signatures",
    "coordination_numbers",
    "identify_motif",
    "lattice_constant",
    "perturb",
    "place_on_support",
    "random_rotation",
    "rotation_to_z",
    "small_rotation",
    "structure_summary",
]
