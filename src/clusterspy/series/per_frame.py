"""One frame at a time: find the clusters, follow them, test blur, and classify their crops in batches.

:class:`FrameClassifier` holds everything that decides the rows of the next frame — the tracker,
each track's last diameter, the image-level domain check, the most confident crops — and can
save it to a :class:`~clusterspy.series.checkpoint.Checkpoint` and be rebuilt from one, so a
resumed run continues exactly where the killed one stood.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from clusterspy.errors import ClusterSpyError, NoClusterFoundError
from clusterspy.image import Image
from clusterspy.isomers import CLASSES, UNKNOWN
from clusterspy.series.checkpoint import Checkpoint
from clusterspy.series.frames import (
    BAD_FRAME,
    BLURRED,
    BRIGHT_FIELD,
    COLUMN,
    MERGED_MESSAGE,
    SPLIT_MESSAGE,
    FramesTable,
    new_row,
)
from clusterspy.series.model_view import ModelView
from clusterspy.series.tracking import Tracker, sharpness
from clusterspy.series.windows import detect_in_windows

if TYPE_CHECKING:
    from clusterspy.domain import CrystalEvidence

__all__ = ["BLUR_WINDOW", "CONTRAST_SENTINEL_GRIDS_PX", "Batch", "FrameClassifier", "FrameSettings",
           "merged_message"]

#: Frames of a track's running sharpness median (blur test).
BLUR_WINDOW = 7
#: Grids [px] of the cheap contrast checks of every frame after the first, tried in turn
#: (:meth:`FrameClassifier.looks_bright_field`, on the series' reader thread): the coarser grid is the
#: cheaper look, the full check (binned to :data:`clusterspy.domain.CONTRAST_GRID_PX`) the dearest.
#: On the 40 frames of the
#: shipped example series both cues were ≥ 0.84 at 128² px (≥ 0.80 at 256²) and ≤ −0.84 for their
#: inverses. On 90 images — ArdaGen's 33 wide fields (HAADF and bright field), the three real
#: atomic-resolution files, 10 of StatSTEM's simulated series and 8 of the example's, each also
#: inverted — no frame the full check calls bright field had both cues positive at 64² px; 5
#: HAADF ones had not (they go on to 128², then to the full check).
CONTRAST_SENTINEL_GRIDS_PX = (64, 128)
_P = slice(COLUMN[f"p_{CLASSES[0]}"], COLUMN[f"p_{CLASSES[0]}"] + len(CLASSES))  # probability columns


@dataclass
class FrameSettings:
    """The settings that decide each frame's rows (see :func:`~clusterspy.series.classify_series`)."""

    detect: Callable
    crop: Callable
    detect_kwargs: dict
    windowed: bool
    full_detection_every: int = 10
    frame_time_s: float | None = None
    max_jump_A: float | None = None
    blur_threshold: float = 0.25
    max_clusters: int | None = None
    n_thumbnails: int = 6
    contrast: str = "auto"


@dataclass
class Batch:
    """Rows of consecutive frames whose crops are classified together (:meth:`FrameClassifier.submit`).

    ``tracker``, ``diameter_px``, ``domain_checked`` and ``complete`` are the run's state after its
    last frame (``next_frame`` − 1): what a checkpoint written when it completes must hold.
    """

    rows: list[list[Any]]
    crops: list[np.ndarray]
    crop_rows: list[int]
    crop_routes: list[int]
    next_frame: int
    complete: bool
    tracker: dict | None
    diameter_px: dict[int, float]
    domain_checked: bool
    #: ``(route, crop indices, wait)`` per route with crops: ``wait()`` gives their probabilities
    #: and OOD distances (:meth:`clusterspy.series.model_view.ModelView.submit`).
    inference: list[tuple[int, list[int], Callable[[], tuple]]] = field(default_factory=list)
    #: The second opinion's crop of each crop of a route it checks (None for the others).
    second_crops: list[np.ndarray | None] = field(default_factory=list)
    #: :func:`clusterspy.domain.crystal_evidence` of each crop's cluster.
    crystal_evidences: list[CrystalEvidence | None] = field(default_factory=list)
    #: ``(crop indices, wait)`` of the second opinion's inference, or None.
    second_inference: tuple[list[int], Callable[[], tuple]] | None = None
    #: ``(crop indices, wait)`` of the probe-shape network's verdicts (one bool per crop: the probe looks
    #: astigmatic) on the second opinion's crops
    #: (:meth:`clusterspy.weights.AstigmatismNetwork.judge`), or None.
    astigmatism_inference: tuple[list[int], Callable[[], np.ndarray]] | None = None
    #: ``[crop index, row, label, probabilities, OOD distance]`` of each crop once judged
    #: (:meth:`FrameClassifier.check`), before the second opinion; None until then.
    judged: list[list[Any]] | None = None
    #: What the pixel-size search of each crop of the first route reads
    #: (:func:`clusterspy.predict.search_context` and the projected diameter [Å]), or None.
    search_contexts: list[tuple[Image, Any, float] | None] = field(default_factory=list)


@dataclass
class FrameClassifier:
    """Rows of ``frames.csv`` from frames, classified in batches."""

    model: ModelView
    settings: FrameSettings
    state: Checkpoint = field(default_factory=Checkpoint)

    def __post_init__(self) -> None:
        self.tracker = None if self.state.tracker is None else Tracker.from_state(self.state.tracker)
        for c in CLASSES:
            self.state.thumbnails.setdefault(c, [])
        self.rows: list[list[Any]] = []
        self.crops: list[np.ndarray] = []
        self.crop_rows: list[int] = []
        self.crop_routes: list[int] = []  # which of self.model.routes judges each pending crop
        self.second_crops: list[np.ndarray | None] = []  # the second opinion's crops (first route)
        self.search_contexts: list[tuple[Image, Any, float] | None] = []  # their pixel-size search's
        self.crystal_evidences: list[CrystalEvidence | None] = []  # their clusters' lattice evidence

    # ------------------------------------------------------------------------------ one frame
    def add_frame(self, i: int, frame: Image | ClusterSpyError, bright_field: bool | None = None) -> None:
        """Make the rows of frame ``i`` (a bad frame: one row per track with its message).

        ``bright_field`` is :meth:`looks_bright_field` of the frame when the caller has taken it
        already (on another thread: :func:`~clusterspy.series.classify.classify_series` looks at
        the next frame while this one is detected); None takes it here.
        """
        t_s = i * self.settings.frame_time_s if self.settings.frame_time_s else None
        if isinstance(frame, ClusterSpyError):
            message = " ".join(str(frame).split())
            ids = [t.id for t in self.tracker.active(i)] if self.tracker is not None else [-1]
            self.rows += [new_row(i, t_s, tid, status=BAD_FRAME, message=message) for tid in ids]
            return
        if self.model.domain is not None and not self.state.domain_checked:
            self._check_first_frame(frame)  # pixel size, field, contrast: refuses the series
            self.state.domain_checked = True
        elif self.looks_bright_field(frame) if bright_field is None else bright_field:
            # a later frame: this frame only is not judged, and the run goes on
            ids = [t.id for t in self.tracker.active(i)] if self.tracker is not None else [-1]
            for tid in ids:
                self.rows.append(row := new_row(i, t_s, tid, label=UNKNOWN))
                row[COLUMN["reason"]] = BRIGHT_FIELD
            return
        dets = self._detect(i, frame)
        tracker = self._tracker(frame, dets)
        reasons = self._reasons(frame, dets)
        pos = np.array([[d.x_px, d.y_px] for d in dets], float).reshape(-1, 2)
        diam_px = np.array([(getattr(d, "diameter_A", None) or np.nan) / frame.pixel_size_A for d in dets],
                           float)
        limit = self.settings.max_clusters
        assign, lost = tracker.update(i, pos, None if limit is None else limit - len(tracker.tracks),
                                      diameters_px=diam_px)
        by_id = {t.id: t for t in tracker.tracks}
        for tid in sorted([*assign, *(t.id for t in lost)]):
            message = (SPLIT_MESSAGE.format(parent=tracker.split[tid]) if tid in tracker.split
                       else merged_message(tid, tracker.merged))
            row = new_row(i, t_s, tid, message=message)
            self.rows.append(row)
            if tid in assign:
                k = assign[tid]
                reason, route = (None, 0) if reasons is None else reasons[k]
                self._detected(row, frame, dets[k], by_id[tid], reason, route)

    def looks_bright_field(self, image: Image) -> bool:
        """Whether a frame after the first looks like bright field (with ``contrast="auto"`` and a
        model domain; else False).

        The two cues of :func:`clusterspy.domain.contrast_cues` are first taken on the frame
        binned to each of :data:`CONTRAST_SENTINEL_GRIDS_PX` ² px in turn; a frame where both
        are positive (HAADF's sign) passes; only when neither grid passes is the frame judged in
        full by :func:`clusterspy.domain.looks_bright_field` — the rule that refuses a first
        frame.
        """
        if self.model.domain is None or self.settings.contrast != "auto":
            return False
        from clusterspy.domain import contrast_cues, looks_bright_field

        for grid in CONTRAST_SENTINEL_GRIDS_PX:
            skew, texture = contrast_cues(image.data, grid_px=grid)
            if skew > 0 and texture > 0:
                return False
        return looks_bright_field(image.data)

    def _detect(self, i: int, image: Image) -> list:
        s, tr = self.settings, self.tracker
        dets = None
        tracks = [] if tr is None else tr.active(i)
        if (s.windowed and tracks and i % s.full_detection_every
                and all(t.last_frame == i - 1 and t.id in self.state.diameter_px for t in tracks)):
            dets = detect_in_windows(s.detect, image, tracks, self.state.diameter_px, s.detect_kwargs)
        if dets is None:
            try:
                dets = list(s.detect(image, **s.detect_kwargs))
            except NoClusterFoundError:
                dets = []
        return dets

    def _tracker(self, image: Image, dets: list) -> Tracker:
        if self.tracker is None:
            if self.settings.max_jump_A is not None:
                jump_px = self.settings.max_jump_A / image.pixel_size_A
            else:
                diam = [d for d in (getattr(d, "diameter_A", None) for d in dets) if d]
                jump_px = float(np.median(diam)) / image.pixel_size_A if diam else 50.0
            self.tracker = Tracker(max_jump_px=jump_px)
        return self.tracker

    def _check_first_frame(self, image: Image) -> None:
        """:func:`clusterspy.domain.check_image` as :func:`clusterspy.classify` makes it
        (:func:`clusterspy.predict.usable_models`): the series goes on when any model's domain
        accepts the frame, else the last (widest) model's refusal is raised."""
        from clusterspy.predict import usable_models

        usable_models(image, self.model.model, self.settings.contrast)

    def _usable_routes(self, image: Image) -> list[int]:
        """The routes whose model's domain accepts the frame's pixel size and field
        (:func:`clusterspy.predict.usable_models`, contrast checked once, by the first frame):
        clusters are routed among these only, as :func:`clusterspy.classify` routes; the first
        route when none does."""
        from clusterspy.predict import usable_models

        usable = usable_models(image, self.model.model, "haadf", refuse=False)
        return [j for j, v in enumerate(self.model.routes) if v.model in usable] or [0]

    def _reasons(self, image: Image, dets: list) -> list[tuple[str | None, int]] | None:
        """Each detection's reason decided before inference and the route (index into
        ``self.model.routes``) that judges it (:func:`clusterspy.domain.route_by_size`, as
        :func:`clusterspy.classify` chooses); None without a domain."""
        if self.model.domain is None or not dets or not all(hasattr(d, "bbox") for d in dets):
            return None
        from clusterspy.domain import cluster_reasons, particle_diameter_A, route_by_size
        from clusterspy.predict import routing_domain

        usable = self._usable_routes(image)
        domains = [routing_domain(self.model.routes[j].model) for j in usable]
        route = [usable[route_by_size(particle_diameter_A(getattr(d, "diameter_A", 0.0) or 0.0), domains)]
                 for d in dets]
        per_route = [cluster_reasons(image, dets, v.domain, field_A=[v.crop_px * v.crop_pixel_A(d, image)
                                                                     for d in dets],
                                     only=[k for k, r in enumerate(route) if r == j])
                     if v.domain is not None else [None] * len(dets) for j, v in enumerate(self.model.routes)]
        return [(per_route[j][k], j) for k, j in enumerate(route)]

    def _detected(self, row: list[Any], image: Image, d: Any, track: Any, reason: str | None,
                  route: int = 0) -> None:
        from clusterspy.domain import crystal_evidence, particle_diameter_A

        view = self.model.routes[route]
        row[COLUMN["model"]] = view.row_id
        row[COLUMN["pixel_size_factor"]] = 1.0  # as classify's: 1 unless the search found the label
        row[COLUMN["x_px"]], row[COLUMN["y_px"]] = float(d.x_px), float(d.y_px)
        if getattr(d, "diameter_A", None):
            self.state.diameter_px[track.id] = float(d.diameter_A) / image.pixel_size_A
            row[COLUMN["diameter_nm"]] = particle_diameter_A(d.diameter_A) / 10.0
        if reason is not None:
            row[COLUMN["label"]], row[COLUMN["reason"]] = UNKNOWN, reason
            return
        crop_A = view.crop_pixel_A(d, image)
        c = np.asarray(self.settings.crop(image, d, crop_A, view.crop_px), dtype=np.float32)
        s = sharpness(c)
        hist = track.sharpness_history
        threshold = self.settings.blur_threshold
        blurred = threshold > 0 and len(hist) >= 3 and s < threshold * float(np.median(hist))
        # every frame enters the (short) history, so a lasting change of the crop's texture — an
        # isomer or orientation without lattice fringes — becomes the new baseline within a few
        # frames instead of being flagged as blur for ever
        hist.append(s)
        del hist[:-BLUR_WINDOW]
        if blurred:
            row[COLUMN["label"]] = BLURRED
        else:
            row[COLUMN["label"]] = ""  # filled by the batch
            self.crop_rows.append(len(self.rows) - 1)
            self.crops.append(c)
            # a model without a domain (a test double, an old card) is not held to it, as classify's
            self.crystal_evidences.append(None if self.model.domain is None else crystal_evidence(
                image, d.x_px, d.y_px, particle_diameter_A(d.diameter_A or 0.0)))
            self.crop_routes.append(route)
            second = self.model.second if route in self.model.checked_routes else None
            self.second_crops.append(None if second is None
                                     else self._second_crop(image, d, c, crop_A, second))
            self.search_contexts.append(self._search_context(image, d) if second is not None and route == 0
                                        and self.model.search else None)

    def _second_crop(self, image: Image, d: Any, crop: np.ndarray, crop_A: float, second: ModelView
                     ) -> np.ndarray:
        """The second opinion's crop of ``d``: ``crop`` itself (the route's, at ``crop_A`` [Å/px])
        where both models ask for the same field and pixel size — the same numbers, cropped once
        (isomernet-v2's and v7's below ~3.3 nm) — else cropped anew."""
        second_A = second.crop_pixel_A(d, image)
        if second_A == crop_A and crop.shape == (second.crop_px, second.crop_px):
            return crop
        return np.asarray(self.settings.crop(image, d, second_A, second.crop_px), dtype=np.float32)

    def _search_context(self, image: Image, d: Any) -> tuple[Image, Any, float]:
        """What the pixel-size search of the first route's crop of ``d`` reads, and its projected
        diameter [Å] (:func:`clusterspy.predict.search_context`)."""
        from clusterspy.domain import particle_diameter_A
        from clusterspy.predict import search_context

        diameter_A = particle_diameter_A(d.diameter_A)
        models = [self.model.routes[0].model, self.model.second.model]  # type: ignore[union-attr]
        return (*search_context(image, d, diameter_A, models, self.model.search), diameter_A)

    # ------------------------------------------------------------------------------ batches
    def submit(self, next_frame: int, pool: Executor | None = None) -> Batch:
        """Hand the pending rows and crops to a :class:`Batch` and start their inference.

        With ``pool`` the network runs on its worker threads while the caller goes on with the next
        frames (ONNX Runtime releases the GIL): a laptop's cores work on detection and inference at
        once. The batch keeps what the checkpoint of its last frame must hold
        (tracker, diameters, domain check), since later frames change them before it completes.
        """
        st = self.state
        batch = Batch(
            rows=self.rows, crops=self.crops, crop_rows=self.crop_rows, crop_routes=self.crop_routes,
            next_frame=next_frame, complete=st.complete,
            tracker=None if self.tracker is None else self.tracker.state(),
            diameter_px=dict(st.diameter_px), domain_checked=st.domain_checked,
            second_crops=self.second_crops, search_contexts=self.search_contexts,
            crystal_evidences=self.crystal_evidences)
        self.rows, self.crops, self.crop_rows, self.crop_routes = [], [], [], []
        self.second_crops, self.search_contexts, self.crystal_evidences = [], [], []
        for j, view in enumerate(self.model.routes):
            todo = [k for k, route in enumerate(batch.crop_routes) if route == j]
            if not todo:
                continue
            crops = [batch.crops[k] for k in todo]
            if pool is None:
                result = view.probabilities(crops)
                batch.inference.append((j, todo, lambda r=result: r))
            else:
                batch.inference.append((j, todo, view.submit(crops, pool)))
        return batch

    def check(self, batch: Batch, pool: Executor | None = None) -> Batch:
        """Judge the crops of ``batch`` (waiting for its models' inference) and start the second
        opinion on the crops of the routes it checks whose label stands — only those, as
        :func:`clusterspy.classify` asks it (:func:`clusterspy.predict.second_opinion_for`): a crop out
        of distribution or without a confident label is not shown to it (the pixel-size search asks it
        of those it searches). With ``pool`` the second opinion runs on its worker threads while the
        caller goes on with the next frames; :meth:`complete` waits for it. A batch is checked once."""
        if batch.judged is not None:
            return batch
        judged: list[list[Any]] = []  # [crop index, row, label, probabilities, OOD distance]
        for j, todo, wait in batch.inference:
            view, (probs, dist) = self.model.routes[j], wait()
            for n, k in enumerate(todo):
                row, p = batch.rows[batch.crop_rows[k]], probs[n]
                od = None if dist is None else float(dist[n])
                label, row[COLUMN["reason"]] = view.judge(p, od, row[COLUMN["diameter_nm"]],
                                                          batch.crystal_evidences[k])
                judged.append([k, row, label, p, od])
        batch.judged = judged
        todo = [e for e in judged if e[2] != UNKNOWN and batch.second_crops[e[0]] is not None]
        if todo and self.model.second is not None:
            from clusterspy.predict import second_opinion_of

            crops = np.stack([batch.second_crops[e[0]] for e in todo])  # type: ignore[misc]
            batch.second_inference = ([e[0] for e in todo], second_opinion_of(
                self.model.second.model, crops, [e[2] for e in todo], pool))
        astigmatism = getattr(self.model.model, "astigmatism", None)
        if astigmatism is not None and self.model.second is not None:  # as classify: every label that
            from clusterspy.predict import SEARCHED_REASONS  # stands, or that the search may find

            ask = [e[0] for e in judged if batch.second_crops[e[0]] is not None
                   and (e[2] != UNKNOWN or e[1][COLUMN["reason"]] in SEARCHED_REASONS)]
            if ask:
                crops = np.stack([batch.second_crops[k] for k in ask])  # type: ignore[misc]
                batch.astigmatism_inference = (ask, astigmatism.judge(crops, pool))
        batch.second_crops = []  # shown to the second opinion (or not needed): let them go
        return batch

    def complete(self, batch: Batch, table: FramesTable) -> Checkpoint:
        """Label the rows of ``batch`` (:meth:`check` first, if the caller has not; waiting for the
        second opinion), hand them to ``table`` and return the checkpoint of its last frame.
        Batches complete in the order submitted."""
        judged = self.check(batch).judged
        assert judged is not None
        second: dict[int, np.ndarray] = {}  # the second opinion's probabilities, where it looked at all views
        withdrawn: set[int] = set()
        if batch.second_inference is not None:
            todo2, wait2 = batch.second_inference
            disagrees, probs = wait2()
            second = {todo2[n]: p for n, p in probs.items()}
            withdrawn = {k for k, d in zip(todo2, disagrees, strict=True) if d}
        for e in judged:
            if e[0] in withdrawn:
                e[2], e[1][COLUMN["reason"]] = UNKNOWN, "models_disagree"
        self._search(batch, judged, second)
        if batch.astigmatism_inference is not None:
            asked, wait_a = batch.astigmatism_inference
            drawn = {k for k, d in zip(asked, wait_a(), strict=True) if d}
            for e in judged:
                if e[0] in drawn and e[2] != UNKNOWN:
                    e[2], e[1][COLUMN["reason"]] = UNKNOWN, "astigmatic"
        for k, row, label, p, _ in judged:
            row[COLUMN["label"]], row[COLUMN["confidence"]] = label, float(np.max(p))
            row[_P] = [float(x) for x in p]
            if label != UNKNOWN:
                self._keep_thumbnail(label, float(np.max(p)), batch.crops[k], int(row[COLUMN["frame"]]),
                                     int(row[COLUMN["cluster"]]))
        table.append(batch.rows)
        st = self.state
        return Checkpoint(next_frame=batch.next_frame, frames_bytes=table.size_bytes(),
                          complete=batch.complete, tracker=batch.tracker, diameter_px=batch.diameter_px,
                          domain_checked=batch.domain_checked, thumbnails=st.thumbnails, order=st.order)

    def _search(self, batch: Batch, judged: list[list[Any]], second: dict[int, np.ndarray]) -> None:
        """The pixel-size search (:func:`clusterspy.predict.search_pixel_size`, as
        :func:`clusterspy.classify` makes it) of the batch's first-route crops without a label, in
        one call over their windows (:attr:`Batch.search_contexts`): a label found replaces the entry
        of ``judged`` (label, probabilities) and sets its row's reason and ``pixel_size_factor``."""
        from clusterspy.predict import SEARCHED_REASONS, search_pixel_size

        ctx = batch.search_contexts
        todo = [e for e in judged if e[1][COLUMN["reason"]] in SEARCHED_REASONS and e[0] < len(ctx)
                and ctx[e[0]] is not None]
        if not todo:
            return
        where = [ctx[e[0]] for e in todo]
        verdicts = [(label, float(np.max(p)), {c: float(x) for c, x in zip(CLASSES, p, strict=True)},
                     row[COLUMN["reason"]], od) for _, row, label, p, od in todo]
        out, used = search_pixel_size(
            self.model.routes[0].model, self.model.second.model,  # type: ignore[union-attr]
            [w[0] for w in where], [w[1] for w in where], [w[2] for w in where], verdicts, self.model.search,
            {n: second[e[0]] for n, e in enumerate(todo) if e[0] in second})
        for e, v, factor in zip(todo, out, used, strict=True):
            if factor != 1.0:
                e[1][COLUMN["reason"]], e[1][COLUMN["pixel_size_factor"]] = v[3], factor
                e[2], e[3] = v[0], np.array([v[2][c] for c in CLASSES])

    def _keep_thumbnail(self, label: str, conf: float, crop: np.ndarray, frame: int,
                        cluster: int) -> None:
        n = self.settings.n_thumbnails
        if n <= 0:
            return
        heap = self.state.thumbnails[label]
        self.state.order += 1
        item = (conf, self.state.order, crop, frame, cluster)
        if len(heap) < n:
            heapq.heappush(heap, item)
        elif conf > heap[0][0]:
            heapq.heapreplace(heap, item)

    @property
    def n_pending_crops(self) -> int:
        """Crops waiting for the next batch."""
        return len(self.crops)

    def thumbnails(self) -> dict[str, list[np.ndarray]]:
        """The most confident crops per isomer, most confident first."""
        return {c: [x[2] for x in sorted(h, key=_rank, reverse=True)]
                for c, h in self.state.thumbnails.items()}

    def thumbnail_frames(self) -> dict[str, list[tuple[int | None, int | None]]]:
        """``(frame, cluster)`` of each of :meth:`thumbnails`, in the same order."""
        return {c: [(x[3], x[4]) for x in sorted(h, key=_rank, reverse=True)]
                for c, h in self.state.thumbnails.items()}


def merged_message(track_id: int, merged: dict[int, int]) -> str:
    """The ``message`` of a track's row in the frame its cluster merged (:attr:`Tracker.merged`):
    "merged with cluster 1 into cluster 2" (:data:`~clusterspy.series.frames.MERGED_MESSAGE`);
    empty for a track that did not merge."""
    if track_id not in merged:
        return ""
    child = merged[track_id]
    others = sorted(p for p, c in merged.items() if c == child and p != track_id)
    return MERGED_MESSAGE.format(others=" and ".join(str(p) for p in others), child=child)


def _rank(item: tuple) -> tuple[float, int]:
    """A thumbnail's place: confidence, then classification order (never the crop)."""
    return item[0], item[1]
