"""ClusterSpy: structural isomers of metal nanoclusters from HAADF-STEM images and series.

Heavy imports are lazy so that ``import clusterspy`` and ``clusterspy --help`` are fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "classify": "clusterspy.predict",
    "classify_series": "clusterspy.workflows",
    "write_thermo_report": "clusterspy.workflows",
    "Isomer": "clusterspy.isomers",
    "CLASSES": "clusterspy.isomers",
    "UNKNOWN": "clusterspy.isomers",
    "Image": "clusterspy.image",
    "ClusterSpyError": "clusterspy.errors",
    "read_image": "clusterspy.io",
    "StructureFit": "clusterspy.fit",
    "verify_clusters": "clusterspy.workflows",
    "calibrate_pixel_size": "clusterspy.workflows",
}

__all__ = ["__version__", "fit_structure", *_LAZY]


def fit_structure(image: Any, pixel_size_A: float | None = None, **options: Any) -> Any:
    """Fit a 3D atomic model to every cluster of an image (:func:`clusterspy.fit.fit_structure`).

    ``image`` may be a path, an array (with ``pixel_size_A`` [Å/px]), an ``Image`` or a HyperSpy
    Signal2D, as for :func:`classify`; ``options`` are those of :func:`clusterspy.fit.fit_structure`.
    Clusters are detected as :func:`classify` detects them with the shipped model
    (:func:`clusterspy.predict.detection_range_A`): the same clusters, numbered alike.
    """
    img = import_module("clusterspy.io").as_image(image, pixel_size_A)
    if "detect_range_A" not in options:
        options["detect_range_A"] = import_module("clusterspy.predict").detection_range_A()
    return import_module("clusterspy.fit").fit_structure(img, **options)


def __dir__() -> list[str]:
    """The public names, the lazily imported ones too (``dir(clusterspy)`` lists ``classify``)."""
    return sorted({*globals(), *_LAZY})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'clusterspy' has no attribute {name!r}")
