"""Process-wide memory-allocator setting for the vectorised simulation passes."""

from __future__ import annotations

import os
from functools import cache

#: glibc ``malloc`` settings applied once (see :func:`keep_freed_memory`): ``M_MMAP_THRESHOLD``
#: (-3) and ``M_TRIM_THRESHOLD`` (-1) [bytes].
MALLOC_SETTINGS = ((-3, 16 * 2**20), (-1, 64 * 2**20))


@cache
def keep_freed_memory() -> bool:
    """Let glibc keep the memory of freed arrays for reuse instead of handing it back to the OS.

    A fast-simulator render block or a Poisson pass allocates and frees a few MB of temporaries
    (splat grid, spectra, noise passes). With glibc's default, dynamic thresholds these were
    often ``mmap``-ed and ``munmap``-ed, or trimmed off the heap, every time: ~100–270 page
    faults per 128² image, 1.0–1.2 ms of CPU per image against 0.6 ms with the memory kept
    (one thread, 4-image blocks); larger blocks, which cost less Python per image, faulted even
    more. This sets ``MALLOC_SETTINGS`` with ``mallopt`` once per process (arrays up to 16 MB
    come from the heap, which keeps up to 64 MB free at its top), as
    ``MALLOC_MMAP_THRESHOLD_=16777216 MALLOC_TRIM_THRESHOLD_=67108864`` would. Skipped when the
    environment already tunes ``malloc`` (``MALLOC_*_`` or ``GLIBC_TUNABLES``), sets
    ``CLUSTERSPY_NO_MALLOPT``, or the C library is not
    glibc. Called by :class:`~clusterspy.simulation.fast.FastSimulator` and
    :func:`~clusterspy.simulation.poisson.poisson_counts`. Returns whether the settings apply.
    """
    env = os.environ
    if env.get("CLUSTERSPY_NO_MALLOPT") or "GLIBC_TUNABLES" in env:
        return False
    if any(k.startswith("MALLOC_") and k.endswith("_") for k in env):
        return False
    try:
        import ctypes
        import platform

        if platform.libc_ver()[0] != "glibc":
            return False
        libc = ctypes.CDLL("libc.so.6")
        return all(libc.mallopt(ctypes.c_int(p), ctypes.c_int(v)) == 1 for p, v in MALLOC_SETTINGS)
    except (OSError, AttributeError, ValueError):  # pragma: no cover - no glibc
        return False
