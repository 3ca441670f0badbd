"""On-the-fly generation: an endless, reproducible stream of fresh examples for training."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np


class OnTheFly:
    """Iterate over examples ``start, start+1, …`` of a specification without storing them.

    Example ``i`` is identical to example ``i`` of a dataset generated on disk from the same
    specification (both call :func:`clusterspy.datasets.sampling.make_sample`).

    Parameters
    ----------
    spec : dict or path
        Dataset specification (``n_images`` is ignored: the stream is endless).
    start : int
        First example index.
    stride : int
        Step between indices (e.g. the number of DataLoader workers, each with its own offset).
    sample_fn : callable, optional
        ``sample_fn(spec, index) -> (crop, label, metadata)``.
    """

    def __init__(self, spec: Any, start: int = 0, stride: int = 1,
                 sample_fn: Callable | None = None) -> None:
        from clusterspy.datasets.spec import load_spec

        self.spec = load_spec(spec)
        self.start, self.stride = int(start), int(stride)
        if sample_fn is None:
            from clusterspy.datasets.sampling import make_sample

            sample_fn = make_sample
        self.sample_fn = sample_fn

    def __iter__(self) -> Iterator[tuple[np.ndarray, int]]:
        i = self.start
        while True:
            crop, label, _ = self.sample_fn(self.spec, i)
            yield crop, label
            i += self.stride

    def batch(self, first: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Examples ``first … first+n-1`` as ``(crops (n, H, W), labels (n,))``."""
        out = [self.sample_fn(self.spec, i)[:2] for i in range(first, first + n)]
        return np.stack([o[0] for o in out]), np.asarray([o[1] for o in out])
