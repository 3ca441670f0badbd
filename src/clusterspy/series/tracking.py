"""Following clusters from frame to frame, and telling sharp frames from blurred ones.

Tracking is nearest-neighbour linking: each track predicts its next position as its last position
plus the frame's common drift (median displacement of the tracks matched in the previous frame);
detections are assigned to tracks by minimum total distance (Hungarian algorithm) within a gate.
A track without a detection in a frame is *lost* in that frame (reported, never guessed); a detection
matched to no track starts a new track with a new id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Track", "Tracker", "sharpness"]


@dataclass
class Track:
    """One cluster followed through the series.

    Attributes
    ----------
    id : int
        Cluster id (0, 1, ... in order of first appearance).
    x_px, y_px : float
        Last known position [px] (column, row).
    last_frame : int
        Last frame where it was detected.
    sharpness_history : list of float
        Recent sharpness values (for the blur test).
    """

    id: int
    x_px: float
    y_px: float
    last_frame: int
    sharpness_history: list[float] = field(default_factory=list)


class Tracker:
    """Nearest-neighbour linking of detections through drift.

    Parameters
    ----------
    max_jump_px : float
        Largest distance [px] between a track's predicted position and a detection for them to be
        linked.
    max_lost_frames : int or None
        A track lost for more than this many consecutive frames is retired (no more rows); ``None``
        keeps every track to the end.
    """

    def __init__(self, max_jump_px: float = 50.0, max_lost_frames: int | None = None) -> None:
        self.max_jump_px = float(max_jump_px)
        self.max_lost_frames = max_lost_frames
        self.tracks: list[Track] = []
        self._next_id = 0
        self._drift = np.zeros(2)

    def add_track(self, x_px: float, y_px: float, frame: int, track_id: int | None = None) -> Track:
        """Start a track (also used to restore tracks when a run is resumed)."""
        tid = self._next_id if track_id is None else int(track_id)
        self._next_id = max(self._next_id, tid + 1)
        tr = Track(tid, float(x_px), float(y_px), int(frame))
        self.tracks.append(tr)
        return tr

    def active(self, frame: int) -> list[Track]:
        """Tracks still followed at ``frame``."""
        if self.max_lost_frames is None:
            return list(self.tracks)
        return [t for t in self.tracks if frame - t.last_frame <= self.max_lost_frames + 1]

    def state(self) -> dict:
        """Everything that decides the tracker's next links, as JSON-ready values (exact floats).

        :meth:`from_state` rebuilds an identical tracker (used to resume a run).
        """
        return {
            "max_jump_px": self.max_jump_px, "max_lost_frames": self.max_lost_frames,
            "next_id": self._next_id, "drift_px": [float(v) for v in self._drift],
            "tracks": [{"id": t.id, "x_px": t.x_px, "y_px": t.y_px, "last_frame": t.last_frame,
                        "sharpness_history": [float(v) for v in t.sharpness_history]}
                       for t in self.tracks],
        }

    @classmethod
    def from_state(cls, state: dict) -> Tracker:
        """The tracker saved by :meth:`state`."""
        tracker = cls(state["max_jump_px"], state["max_lost_frames"])
        tracker._next_id = int(state["next_id"])
        tracker._drift = np.array(state["drift_px"], dtype=float)
        tracker.tracks = [Track(int(t["id"]), float(t["x_px"]), float(t["y_px"]), int(t["last_frame"]),
                                [float(v) for v in t["sharpness_history"]]) for t in state["tracks"]]
        return tracker

    def update(
        self, frame: int, positions: np.ndarray, max_new: int | None = None,
    ) -> tuple[dict[int, int], list[Track]]:
        """Link this frame's detections to tracks.

        Parameters
        ----------
        frame : int
            Frame index.
        positions : numpy.ndarray
            ``(N, 2)`` detection positions ``(x_px, y_px)``.
        max_new : int, optional
            Start at most this many new tracks (from the unmatched detections, in their order);
            the others are ignored. ``None``: a new track for every unmatched detection.

        Returns
        -------
        assignment : dict
            ``{track id: index of its detection}`` for every track detected in this frame
            (including new tracks).
        lost : list of Track
            Active tracks with no detection in this frame.
        """
        from scipy.optimize import linear_sum_assignment

        pos = np.asarray(positions, dtype=float).reshape(-1, 2)
        active = self.active(frame)
        assignment: dict[int, int] = {}
        used: set[int] = set()
        if active and len(pos):
            pred = np.array([[t.x_px, t.y_px] for t in active]) + self._drift
            d = np.linalg.norm(pred[:, None, :] - pos[None, :, :], axis=2)
            big = 1e9
            cost = np.where(d <= self.max_jump_px, d, big)
            rows, cols = linear_sum_assignment(cost)
            moves = []
            for r, c in zip(rows, cols, strict=True):
                if cost[r, c] >= big:
                    continue
                tr = active[r]
                moves.append(pos[c] - [tr.x_px, tr.y_px])
                tr.x_px, tr.y_px = float(pos[c, 0]), float(pos[c, 1])
                tr.last_frame = frame
                assignment[tr.id] = int(c)
                used.add(int(c))
            if moves:
                self._drift = np.median(np.array(moves), axis=0)
        lost = [t for t in active if t.id not in assignment]
        new = [c for c in range(len(pos)) if c not in used]
        for c in new if max_new is None else new[:max(max_new, 0)]:
            tr = self.add_track(pos[c, 0], pos[c, 1], frame)
            assignment[tr.id] = c
        return assignment, lost


def sharpness(crop: np.ndarray, sigma_px: float = 1.0) -> float:
    """Scale-free sharpness of a crop: high-frequency power relative to the signal variance.

    ``var(∇² G_σ * crop) / var(G_σ * crop)``; the light Gaussian pre-smoothing (``sigma_px``)
    keeps shot noise from passing for detail. A blurred frame (defocus, motion during the scan)
    scores far below the sharp frames of the same cluster; compare within one series only.

    Parameters
    ----------
    crop : numpy.ndarray
        2-D image of the cluster.
    sigma_px : float
        Gaussian pre-smoothing [px].

    Returns
    -------
    float
        Sharpness (dimensionless, ≥ 0).
    """
    from scipy import ndimage

    g = ndimage.gaussian_filter(np.asarray(crop, dtype=np.float32), sigma_px)
    v = float(np.var(g))
    if v <= 0 or not np.isfinite(v):
        return 0.0
    return float(np.var(ndimage.laplace(g)) / v)
