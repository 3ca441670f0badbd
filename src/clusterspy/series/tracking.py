"""Following clusters from frame to frame, and telling sharp frames from blurred ones.

Tracking is nearest-neighbour linking: each track predicts its next position as its last position
plus the frame's common drift (median displacement of the tracks matched in the previous frame);
detections are assigned to tracks by minimum total distance (Hungarian algorithm) within a gate.
A track without a detection in a frame is *lost* in that frame (reported, never guessed); a detection
matched to no track starts a new track with a new id.

Two events break that picture, and each is told apart before linking:

- a *stage jump*: the whole field moves further than the gate between two frames. Two or more
  tracks that all find a detection after one common extra shift are evidence of it
  (:func:`common_shift`); the links are then made around the shifted predictions. A lone cluster is
  never linked beyond the gate: one displacement alone cannot tell a jump from another cluster.
- a *merger*: two clusters coalesce into one blob. A track left without a detection whose
  predicted position lies inside a detection another track was linked to has merged with it: both
  tracks end there, and the blob starts a new track (:attr:`Tracker.merged`), so the labels of the
  parents and of the merged cluster are never pooled.

A *split* — a new detection whose centre lies inside where a followed cluster was, beside the
detection that cluster is linked to, and at least :data:`SPLIT_MIN_SHARE` of its diameter — is
reported (:attr:`Tracker.split`), not acted on: the cluster follows the part nearest its track, so its
labels before and after may be of different particles, and the summary says so. Ending the track
there, as a merger does, would also cut a small cluster's track wherever noise breaks its detection
in two for a frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["MAX_SHIFT_GATES", "Track", "Tracker", "common_shift", "sharpness"]

#: Largest common shift (stage jump) sought, in gates (:attr:`Tracker.max_jump_px`).
MAX_SHIFT_GATES = 5.0
#: A track is explained by a common shift when a detection lies within this share of the gate
#: (at least :data:`MIN_SHIFT_TOLERANCE_PX`) of its shifted prediction.
SHIFT_TOLERANCE_GATES = 0.25
#: Smallest tolerance [px] of :data:`SHIFT_TOLERANCE_GATES`.
MIN_SHIFT_TOLERANCE_PX = 3.0
#: Tracks (spread over the list) whose (detection − prediction) pairs propose the candidate shifts.
SHIFT_SEED_TRACKS = 16
#: Least diameter of a new detection, as a share of the cluster's previous one, for it to count as a
#: part split from that cluster (a piece smaller than this is a neighbour that came into view).
SPLIT_MIN_SHARE = 0.5


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
    ended : bool
        The cluster merged with another (:attr:`Tracker.merged`): the track is followed no more.
    diameter_px : float or None
        Diameter [px] of its last detection, where the caller gave diameters (for splits).
    """

    id: int
    x_px: float
    y_px: float
    last_frame: int
    sharpness_history: list[float] = field(default_factory=list)
    ended: bool = False
    diameter_px: float | None = None


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
        #: ``{parent track id: new track id}`` of the mergers found by the last :meth:`update`.
        self.merged: dict[int, int] = {}
        #: The common shift [px] ``(x, y)`` (stage jump) found by the last :meth:`update`.
        self.shift_px = np.zeros(2)
        #: ``{new track id: id of the cluster it split from}`` found by the last :meth:`update`.
        self.split: dict[int, int] = {}

    def add_track(self, x_px: float, y_px: float, frame: int, track_id: int | None = None) -> Track:
        """Start a track (also used to restore tracks when a run is resumed)."""
        tid = self._next_id if track_id is None else int(track_id)
        self._next_id = max(self._next_id, tid + 1)
        tr = Track(tid, float(x_px), float(y_px), int(frame))
        self.tracks.append(tr)
        return tr

    def active(self, frame: int) -> list[Track]:
        """Tracks still followed at ``frame`` (not ended by a merger, not retired)."""
        live = [t for t in self.tracks if not t.ended]
        if self.max_lost_frames is None:
            return live
        return [t for t in live if frame - t.last_frame <= self.max_lost_frames + 1]

    def state(self) -> dict:
        """Everything that decides the tracker's next links, as JSON-ready values (exact floats).

        :meth:`from_state` rebuilds an identical tracker (used to resume a run).
        """
        return {
            "max_jump_px": self.max_jump_px, "max_lost_frames": self.max_lost_frames,
            "next_id": self._next_id, "drift_px": [float(v) for v in self._drift],
            "tracks": [{"id": t.id, "x_px": t.x_px, "y_px": t.y_px, "last_frame": t.last_frame,
                        "sharpness_history": [float(v) for v in t.sharpness_history], "ended": t.ended,
                        "diameter_px": t.diameter_px}
                       for t in self.tracks],
        }

    @classmethod
    def from_state(cls, state: dict) -> Tracker:
        """The tracker saved by :meth:`state`."""
        tracker = cls(state["max_jump_px"], state["max_lost_frames"])
        tracker._next_id = int(state["next_id"])
        tracker._drift = np.array(state["drift_px"], dtype=float)
        tracker.tracks = [Track(int(t["id"]), float(t["x_px"]), float(t["y_px"]), int(t["last_frame"]),
                                [float(v) for v in t["sharpness_history"]], bool(t.get("ended", False)),
                                None if t.get("diameter_px") is None else float(t["diameter_px"]))
                          for t in state["tracks"]]
        return tracker

    def update(
        self, frame: int, positions: np.ndarray, max_new: int | None = None,
        diameters_px: np.ndarray | None = None,
    ) -> tuple[dict[int, int], list[Track]]:
        """Link this frame's detections to tracks.

        First the frame's common shift beyond the drift (a stage jump) is sought
        (:func:`common_shift`, kept in :attr:`shift_px`); detections are then linked to the shifted
        predictions within the gate. With ``diameters_px``, a track left without a detection whose
        prediction lies inside a detection linked to another track has merged with it: both end
        (they are among ``lost``, and never active again) and the detection starts a new track;
        :attr:`merged` maps each parent to it.

        Parameters
        ----------
        frame : int
            Frame index.
        positions : numpy.ndarray
            ``(N, 2)`` detection positions ``(x_px, y_px)``.
        max_new : int, optional
            Start at most this many new tracks (from the unmatched detections, in their order);
            the others are ignored. ``None``: a new track for every unmatched detection. A merged
            cluster's new track is always started.
        diameters_px : numpy.ndarray, optional
            ``(N,)`` detection diameters [px]; without them no merger is sought.

        Returns
        -------
        assignment : dict
            ``{track id: index of its detection}`` for every track detected in this frame
            (including new tracks).
        lost : list of Track
            Active tracks with no detection in this frame (merged parents included).
        """
        pos = np.asarray(positions, dtype=float).reshape(-1, 2)
        active = self.active(frame)
        self.merged, self.shift_px, self.split = {}, np.zeros(2), {}
        assignment: dict[int, int] = {}
        before: dict[int, tuple[np.ndarray, float | None]] = {}  # where each cluster was expected
        if active and len(pos):
            pred = np.array([[t.x_px, t.y_px] for t in active]) + self._drift
            self.shift_px = common_shift(pred, pos, self.max_jump_px)
            pred = pred + self.shift_px
            before = {t.id: (pred[k], t.diameter_px) for k, t in enumerate(active)}
            assignment, moves = self._link(frame, active, pred, pos)
            merges = self._mergers(active, pred, pos, assignment, diameters_px)
            self._start_merged(frame, pos, assignment, merges)
            # a shift beyond the gate is a stage jump, a one-off no drift predicts; a smaller one is
            # motion the drift follows
            jump = self.shift_px if np.hypot(*self.shift_px) > self.max_jump_px else np.zeros(2)
            kept = [m - jump for tid, m in moves.items() if tid not in self.merged]
            if kept:  # the drift of the clusters followed on (mergers left out)
                self._drift = np.median(np.array(kept), axis=0)
        lost = [t for t in active if t.id not in assignment]
        new = [c for c in range(len(pos)) if c not in assignment.values()]
        for c in new if max_new is None else new[:max(max_new, 0)]:
            tr = self.add_track(pos[c, 0], pos[c, 1], frame)
            assignment[tr.id] = c
            parent = self._split_from(c, pos, diameters_px, assignment, before)
            if parent is not None:
                self.split[tr.id] = parent
        if diameters_px is not None:
            by_id = {t.id: t for t in self.tracks}
            diam = np.asarray(diameters_px, dtype=float).reshape(-1)
            for tid, c in assignment.items():
                by_id[tid].diameter_px = float(diam[c]) if np.isfinite(diam[c]) else None
        return assignment, lost

    def _split_from(self, c: int, pos: np.ndarray, diameters_px: np.ndarray | None,
                    assignment: dict[int, int], before: dict[int, tuple[np.ndarray, float | None]]
                    ) -> int | None:
        """The cluster new detection ``c`` split from, or None: a cluster followed on in this frame
        whose predicted disc (its predicted position, its last diameter) holds both ``c``'s centre and
        its own detection's, ``c`` being at least :data:`SPLIT_MIN_SHARE` of its diameter."""
        if diameters_px is None:
            return None
        diam = np.asarray(diameters_px, dtype=float).reshape(-1)
        for tid, k in assignment.items():
            if tid not in before or k == c:
                continue
            centre, d = before[tid]
            if d is None or not np.isfinite(diam[c]) or diam[c] < SPLIT_MIN_SHARE * d:
                continue
            if np.hypot(*(pos[c] - centre)) <= 0.5 * d and np.hypot(*(pos[k] - centre)) <= 0.5 * d:
                return tid
        return None

    def _link(self, frame: int, active: list[Track], pred: np.ndarray, pos: np.ndarray
              ) -> tuple[dict[int, int], dict[int, np.ndarray]]:
        """Hungarian links of ``active`` tracks (predicted at ``pred``) to detections within the gate.

        Moves the tracks (those not linked by :attr:`shift_px` only) and returns the links
        ``{track id: detection index}`` and each linked track's move [px].
        """
        from scipy.optimize import linear_sum_assignment

        d = np.linalg.norm(pred[:, None, :] - pos[None, :, :], axis=2)
        big = 1e9
        cost = np.where(d <= self.max_jump_px, d, big)
        rows, cols = linear_sum_assignment(cost)
        assignment: dict[int, int] = {}
        moves: dict[int, np.ndarray] = {}
        for r, c in zip(rows, cols, strict=True):
            if cost[r, c] >= big:
                continue
            tr = active[r]
            moves[tr.id] = pos[c] - [tr.x_px, tr.y_px]
            tr.x_px, tr.y_px = float(pos[c, 0]), float(pos[c, 1])
            tr.last_frame = frame
            assignment[tr.id] = int(c)
        for tr in active:  # the stage moved under the tracks not found too
            if tr.id not in assignment:
                tr.x_px, tr.y_px = tr.x_px + float(self.shift_px[0]), tr.y_px + float(self.shift_px[1])
        return assignment, moves

    @staticmethod
    def _mergers(active: list[Track], pred: np.ndarray, pos: np.ndarray, assignment: dict[int, int],
                 diameters_px: np.ndarray | None) -> dict[int, list[int]]:
        """``{detection index: [parent track ids]}`` of the detections that took in an unlinked track:
        its prediction lies within the detection's radius, and another track was linked to it."""
        if diameters_px is None:
            return {}
        radius = 0.5 * np.asarray(diameters_px, dtype=float).reshape(-1)
        owner = {c: tid for tid, c in assignment.items()}
        merges: dict[int, list[int]] = {}
        for k, tr in enumerate(active):
            if tr.id in assignment or not owner:
                continue
            dist = {c: float(np.hypot(*(pos[c] - pred[k]))) for c in owner}
            c = min(dist, key=lambda j: dist[j])
            if np.isfinite(radius[c]) and dist[c] <= radius[c]:
                merges.setdefault(c, [owner[c]]).append(tr.id)
        return merges

    def _start_merged(self, frame: int, pos: np.ndarray, assignment: dict[int, int],
                      merges: dict[int, list[int]]) -> None:
        """End the parents of each merger and start the merged cluster's track (in ``assignment``)."""
        by_id = {t.id: t for t in self.tracks}
        for c, parents in sorted(merges.items()):
            del assignment[parents[0]]
            child = self.add_track(pos[c, 0], pos[c, 1], frame)
            assignment[child.id] = c
            for tid in parents:
                by_id[tid].ended = True
                self.merged[tid] = child.id


def common_shift(pred: np.ndarray, pos: np.ndarray, gate_px: float) -> np.ndarray:
    """The frame's common shift [px] ``(x, y)`` beyond the predictions (a stage jump), or zero.

    Each (detection − prediction) pair within :data:`MAX_SHIFT_GATES` gates is a candidate; a
    candidate explains a track when a detection lies within the tolerance
    (:data:`SHIFT_TOLERANCE_GATES` of the gate, at least :data:`MIN_SHIFT_TOLERANCE_PX`) of the
    track's shifted prediction. A non-zero candidate is adopted only when it explains at least two
    tracks and more than no shift does — a constellation moving together, never a lone cluster
    linked to an unrelated detection; among equals, the smallest shift.

    Parameters
    ----------
    pred : numpy.ndarray
        ``(M, 2)`` predicted track positions [px].
    pos : numpy.ndarray
        ``(N, 2)`` detection positions [px].
    gate_px : float
        The tracker's gate [px] (:attr:`Tracker.max_jump_px`).

    Returns
    -------
    numpy.ndarray
        ``(2,)`` shift [px].
    """
    from scipy.spatial import cKDTree

    zero = np.zeros(2)
    if len(pred) < 2 or len(pos) < 2:
        return zero
    tol = max(SHIFT_TOLERANCE_GATES * gate_px, MIN_SHIFT_TOLERANCE_PX)
    # a true shift pairs every track with its detection: a few tracks suffice to propose it
    picks = np.linspace(0, len(pred) - 1, min(len(pred), SHIFT_SEED_TRACKS)).round().astype(int)
    seeds = pred[np.unique(picks)]
    cand = (pos[None, :, :] - seeds[:, None, :]).reshape(-1, 2)
    norm = np.linalg.norm(cand, axis=1)
    keep = (norm <= MAX_SHIFT_GATES * gate_px) & (norm > tol)
    cand, norm = cand[keep], norm[keep]
    if not len(cand):
        return zero
    tree = cKDTree(pos)
    explained = _explained(tree, pred[None, :, :] + cand[:, None, :], tol)
    base = int(_explained(tree, pred[None, :, :], tol)[0])
    best = int(explained.max())
    if best < 2 or best <= base:
        return zero
    k = min(np.flatnonzero(explained == best), key=lambda j: norm[j])
    return cand[k].astype(float)


def _explained(tree, points: np.ndarray, tol: float) -> np.ndarray:
    """For each ``(M, 2)`` set of shifted predictions in ``points`` ``(S, M, 2)``: how many tracks
    find a detection (of ``tree``) within ``tol`` [px], each detection counted for one track only."""
    s, m = points.shape[:2]
    dist, idx = tree.query(points.reshape(-1, 2), distance_upper_bound=tol)
    idx = np.where(np.isfinite(dist), idx, -1).reshape(s, m)
    idx.sort(axis=1)
    first = np.ones_like(idx, dtype=bool)
    first[:, 1:] = idx[:, 1:] != idx[:, :-1]
    return np.sum(first & (idx >= 0), axis=1)


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
