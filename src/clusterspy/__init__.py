"""ClusterSpy: structural isomers of metal nanoclusters from HAADF-STEM images and series.

Heavy imports are lazy so that ``import clusterspy`` and ``clusterspy --help`` are fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "classify": "clusterspy.predict",
    "classify_series": "clusterspy.series",
    "Isomer": "clusterspy.isomers",
    "CLASSES": "clusterspy.isomers",
    "UNKNOWN": "clusterspy.isomers",
    "Image": "clusterspy.image",
    "ClusterSpyError": "clusterspy.errors",
    "read_image": "clusterspy.io",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'clusterspy' has no attribute {name!r}")
