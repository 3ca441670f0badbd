"""Specification → reproducible labelled dataset (zarr, Dask-parallel, resumable) or on the fly.

>>> from clusterspy.datasets import generate, load, load_spec
>>> generate("configs/dataset_train.yaml", "runs/data/train.zarr")   # doctest: +SKIP
>>> images, labels, metadata = load("runs/data/train.zarr")           # doctest: +SKIP

Command line (``clusterspy dataset SPEC OUT [--scheduler tcp://…] [--workers N]``).
"""

from __future__ import annotations

from clusterspy.datasets.onthefly import OnTheFly
from clusterspy.datasets.spec import DEFAULT_SPEC, load_spec, read_config
from clusterspy.datasets.store import generate, is_complete, load

__all__ = [
    "DEFAULT_SPEC",
    "OnTheFly",
    "generate",
    "is_complete",
    "load",
    "load_spec",
    "make_sample",
    "read_config",
]


def make_sample(spec, index):
    from clusterspy.datasets.sampling import make_sample as _make

    return _make(spec, index)


make_sample.__doc__ = "Simulate example ``index`` of ``spec`` (see clusterspy.datasets.sampling)."
