"""The resume point of a series run: everything that decides the next frame, saved atomically.

A checkpoint is written after each batch of rows reaches ``frames.csv``: the next frame to read,
the length of ``frames.csv`` at that moment [bytes], the tracker (positions, drift, next id,
each track's sharpness history for the blur test), the last diameter of each track, and the most
confident crops so far (thumbnails). A run killed at any point and started again reads it, cuts
``frames.csv`` back to that length and goes on exactly as the run that was never killed.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.io import write_text_atomic

__all__ = ["CHECKPOINT_NAME", "Checkpoint"]

#: File name of the checkpoint inside the output folder.
CHECKPOINT_NAME = ".series_checkpoint.json"

#: ``{isomer: [(confidence, order, crop)]}`` — a min-heap per isomer of the most confident crops.
Thumbs = dict[str, list[tuple[float, int, np.ndarray, int | None, int | None]]]


def _crop_to_json(c: np.ndarray) -> dict[str, Any]:
    a = np.ascontiguousarray(c, dtype=np.float32)
    return {"shape": list(a.shape), "float32_b64": base64.b64encode(a.tobytes()).decode("ascii")}


def _crop_from_json(d: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(d["float32_b64"]), np.float32).reshape(d["shape"]).copy()


@dataclass
class Checkpoint:
    """State of a run after its last complete batch.

    Attributes
    ----------
    next_frame : int
        First frame not yet in ``frames.csv``.
    frames_bytes : int or None
        Length of ``frames.csv`` [bytes] holding exactly the rows of frames ``< next_frame``.
    complete : bool
        Every frame is in ``frames.csv`` (only smoothing and the summary were left).
    tracker : dict or None
        :meth:`clusterspy.series.tracking.Tracker.state` (None before the first frame).
    diameter_px : dict of int to float
        Last detected diameter of each track [px] (sizes the detection windows).
    domain_checked : bool
        The image-level domain check (pixel size, field, contrast) has passed.
    thumbnails : dict
        Min-heaps of ``(confidence, order, crop, frame, cluster)`` per isomer (frame and cluster
        None in a checkpoint written before they were kept).
    order : int
        Crops classified so far (breaks ties between equal confidences).
    """

    next_frame: int = 0
    frames_bytes: int | None = None
    complete: bool = False
    tracker: dict | None = None
    diameter_px: dict[int, float] = field(default_factory=dict)
    domain_checked: bool = False
    thumbnails: Thumbs = field(default_factory=dict)
    order: int = 0

    def save(self, folder: Path) -> None:
        """Write ``folder/.series_checkpoint.json`` atomically."""
        doc = {
            "next_frame": self.next_frame, "frames_bytes": self.frames_bytes,
            "complete": self.complete, "tracker": self.tracker,
            "diameter_px": [[k, v] for k, v in self.diameter_px.items()],
            "domain_checked": self.domain_checked, "order": self.order,
            "thumbnails": {c: [[float(conf), int(k), _crop_to_json(crop), fr, cl]
                               for conf, k, crop, fr, cl in heap]
                           for c, heap in self.thumbnails.items()},
        }
        write_text_atomic(folder / CHECKPOINT_NAME, json.dumps(doc))

    @classmethod
    def load(cls, folder: Path) -> Checkpoint | None:
        """The checkpoint in ``folder``, or None when there is none."""
        path = folder / CHECKPOINT_NAME
        if not path.exists():
            return None
        doc = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            next_frame=int(doc["next_frame"]), frames_bytes=doc["frames_bytes"],
            complete=bool(doc["complete"]), tracker=doc["tracker"],
            diameter_px={int(k): float(v) for k, v in doc["diameter_px"]},
            domain_checked=bool(doc["domain_checked"]), order=int(doc["order"]),
            thumbnails={c: [(float(e[0]), int(e[1]), _crop_from_json(e[2]),
                             *(e[3:5] if len(e) >= 5 else (None, None))) for e in heap]
                        for c, heap in doc["thumbnails"].items()},
        )

    @staticmethod
    def remove(folder: Path) -> None:
        """Delete the checkpoint of ``folder`` (a fresh start)."""
        (folder / CHECKPOINT_NAME).unlink(missing_ok=True)
