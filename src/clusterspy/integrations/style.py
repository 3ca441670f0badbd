"""How a classified cluster looks in another package: its colour and its caption.

The colours are :data:`clusterspy.plots.ISOMER_COLOURS` (Okabe & Ito, colour-blind safe); they are
repeated here because an integration may import only the core, and ``tests/test_hyperspy.py``
checks that both tables agree.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ISOMER_COLOURS", "caption", "colour"]

#: Colour of each isomer, of "unknown" and of frames without a label (= ``plots.ISOMER_COLOURS``).
ISOMER_COLOURS: dict[str, str] = {
    "icosahedral": "#E69F00", "decahedral": "#0072B2", "fcc": "#009E73", "amorphous": "#CC79A7",
    "unknown": "#999999", "lost": "#000000", "blurred": "#D55E00",
}


def colour(label: str) -> str:
    """Hex colour of ``label`` (grey for anything not in :data:`ISOMER_COLOURS`)."""
    return ISOMER_COLOURS.get(str(label), ISOMER_COLOURS["unknown"])


def caption(result: Any) -> str:
    """``"fcc 0.97"`` for a label that stands, ``"unknown: too_small"`` otherwise.

    Parameters
    ----------
    result : clusterspy.predict.ClusterResult
        One classified cluster.
    """
    if result.reason:
        return f"{result.label}: {result.reason}"
    if result.confidence is None:
        return str(result.label)
    return f"{result.label} {float(result.confidence):.2f}"
