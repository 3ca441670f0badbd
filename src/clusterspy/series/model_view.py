"""What a series run needs of the model: its card, crop geometry, and calibrated probabilities
turned into a label or a reason (one rule, :func:`clusterspy.domain.judge_probabilities`)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from clusterspy.errors import ConfigError
from clusterspy.image import Image
from clusterspy.isomers import CLASSES

if TYPE_CHECKING:
    from clusterspy.domain import CrystalEvidence

__all__ = ["ModelView"]


@dataclass
class ModelView:
    """A loaded model as the series pipeline uses it.

    Parameters
    ----------
    model : object
        Anything with ``card`` (dict or :class:`~clusterspy.weights.ModelCard` with ``classes``,
        ``pixel_size_A``, ``crop_px``, optional ``unknown_threshold``, ``id``) and
        ``predict_crops(crops) -> (N, 4)`` probabilities, or ``infer(crops) -> (probs, dist)``; or the
        size-routed default (:class:`clusterspy.predict.ModelsBySize`): this view is then its first
        model's, :attr:`routes` holds one view per model, in order, and :attr:`second` the view of
        its second opinion.
    """

    model: Any

    def __post_init__(self) -> None:
        self.card = dict(getattr(self.model, "card", {}) or {})
        classes = tuple(self.card.get("classes", CLASSES))
        if classes != CLASSES:
            raise ConfigError(f"the model's classes {classes} differ from ClusterSpy's {CLASSES}")
        self.model_pixel_A = float(self.card.get("pixel_size_A", 0) or 0)
        self.crop_px = int(self.card.get("crop_px", 64))
        model_card = getattr(self.model, "card", None)
        self.domain = model_card.domain if hasattr(model_card, "domain") else None
        self.threshold = float(self.card.get("unknown_threshold", 0.0) or 0.0)
        self.sha256 = self.card.get("weights_sha256") or self.card.get("sha256")
        self.id = self.card.get("id") or (
            f"{self.card.get('name', 'model')}@{self.sha256[:12]}" if self.sha256
            else self.card.get("name", "unknown-model"))
        from clusterspy.domain import amorphous_cap_A
        from clusterspy.predict import checks_label_of, search_for

        self.amorphous_max_A = amorphous_cap_A(self.domain)
        members = getattr(self.model, "models", None)  # ModelsBySize: one view per model
        self.routes: list[ModelView] = [ModelView(m) for m in members] if members else [self]
        second = getattr(self.model, "second_opinion", None) if members else None
        #: The view of the model that checks the labels of :attr:`checked_routes`
        #: (:attr:`clusterspy.predict.ModelsBySize.second_opinion`), or None.
        self.second: ModelView | None = None if second is None else ModelView(second)
        #: The routes whose labels :attr:`second` checks (:func:`clusterspy.predict.checks_label_of`:
        #: the first, and isomernet-v3's), as :func:`clusterspy.classify` checks them.
        self.checked_routes: frozenset[int] = frozenset(
            j for j, m in enumerate(members or ()) if checks_label_of(self.model, m))
        #: Factors on the pixel size tried for a first-route crop whose label does not stand
        #: (:func:`clusterspy.predict.search_pixel_size`); empty without a second opinion.
        self.search: tuple[float, ...] = search_for(self.model, members or ())
        if members:
            self.id = str(self.model.id)
        #: The id each row of this view's crops records (the one model's, not the routed pair's).
        self.row_id = self.routes[0].id if members else self.id

    def crop_pixel_A(self, detection: Any, image: Image) -> float:
        """Pixel size [Å/px] of the crop the model is shown for ``detection``."""
        from clusterspy.domain import particle_diameter_A

        if hasattr(self.model, "crop_pixel_size_A"):
            d_A = getattr(detection, "diameter_A", 0.0) or 0.0
            return float(self.model.crop_pixel_size_A(particle_diameter_A(d_A)))
        return self.model_pixel_A or image.pixel_size_A

    def submit(self, crops: list[np.ndarray], pool: Executor
               ) -> Callable[[], tuple[np.ndarray, np.ndarray | None]]:
        """:meth:`probabilities` started on ``pool``: a function that waits and returns them.

        A shipped model spreads its test-time views over the pool's threads
        (:meth:`clusterspy.predict.Model.submit_infer`); any other model runs as one task.
        """
        if hasattr(self.model, "submit_infer"):
            wait = self.model.submit_infer(np.stack(crops), pool)
            return lambda: self._checked(*wait(), len(crops))
        future = pool.submit(self.probabilities, crops)
        return future.result

    def probabilities(self, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """``(N, 4)`` calibrated probabilities of the crops and their OOD distances (or None)."""
        dist = None
        if hasattr(self.model, "infer"):
            probs, dist = self.model.infer(np.stack(crops))
            probs = np.asarray(probs, dtype=float)
        else:
            probs = np.asarray(self.model.predict_crops(np.stack(crops)), dtype=float)
        return self._checked(probs, dist, len(crops))

    @staticmethod
    def _checked(probs: np.ndarray, dist: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """``probs`` as float, refused unless ``(n, 4)``."""
        probs = np.asarray(probs, dtype=float)
        if probs.shape != (n, len(CLASSES)):
            raise ConfigError(f"model.predict_crops returned shape {probs.shape}, "
                              f"expected {(n, len(CLASSES))}")
        return probs, dist

    def judge(self, p: np.ndarray, dist: float | None, diameter_nm: float | None,
              crystal_evidence: CrystalEvidence | None = None) -> tuple[str, str | None]:
        """Label (an isomer or "unknown") and reason of one crop's probabilities
        (``crystal_evidence``: :func:`clusterspy.domain.crystal_evidence` of its cluster)."""
        from clusterspy.domain import judge_probabilities

        return judge_probabilities(
            p, unknown_threshold=self.threshold, ood_distance=dist,
            ood_threshold=getattr(self.model, "ood_threshold", None),
            diameter_A=None if diameter_nm is None else 10.0 * diameter_nm,
            amorphous_max_A=self.amorphous_max_A, crystal_evidence=crystal_evidence)
