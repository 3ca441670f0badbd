"""The class vocabulary: the structural isomers ClusterSpy tells apart."""

from __future__ import annotations

from enum import StrEnum


class Isomer(StrEnum):
    """Structural isomer (motif) of a metal nanocluster.

    ``fcc`` covers every single-crystal or twinned face-centred-cubic form
    (cuboctahedron, truncated octahedron, Wulff shapes, twinned fcc).
    """

    ICOSAHEDRAL = "icosahedral"
    DECAHEDRAL = "decahedral"
    FCC = "fcc"
    AMORPHOUS = "amorphous"


#: The classes in the order of the network's outputs.
CLASSES: tuple[str, ...] = tuple(i.value for i in Isomer)

#: Label given when the calibrated confidence is below the model card's threshold.
UNKNOWN = "unknown"


def parse_isomer(name: str) -> Isomer:
    """Return the :class:`Isomer` for ``name`` (case-insensitive, common aliases accepted).

    Raises
    ------
    ValueError
        If ``name`` is not an isomer.
    """
    aliases = {
        "ico": Isomer.ICOSAHEDRAL,
        "ih": Isomer.ICOSAHEDRAL,
        "icosahedron": Isomer.ICOSAHEDRAL,
        "dec": Isomer.DECAHEDRAL,
        "dh": Isomer.DECAHEDRAL,
        "decahedron": Isomer.DECAHEDRAL,
        "cub": Isomer.FCC,
        "fcc": Isomer.FCC,
        "cuboctahedral": Isomer.FCC,
        "to": Isomer.FCC,
        "amo": Isomer.AMORPHOUS,
        "amorphous": Isomer.AMORPHOUS,
        "glassy": Isomer.AMORPHOUS,
    }
    key = name.strip().lower()
    if key in aliases:
        return aliases[key]
    try:
        return Isomer(key)
    except ValueError:
        raise ValueError(f"unknown isomer {name!r}; expected one of {', '.join(CLASSES)}") from None
