"""Bridges to other microscopy packages: ParticleSpy (isomer per particle), HyperSpy signals.

Each submodule imports its package lazily, so ``import clusterspy.integrations`` is light.
"""

from __future__ import annotations

__all__ = ["hyperspy", "particlespy"]
