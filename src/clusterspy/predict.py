"""Classify clusters with the shipped ONNX model: crops → calibrated isomer probabilities →
a label, or ``"unknown"`` with the reason.

Nothing here imports PyTorch, abTEM or ASE: inference runs on ONNX Runtime, so the light
``pip install clusterspy`` is enough to classify. What the network expects and how its outputs
become labels is the model card's (:class:`clusterspy.weights.ModelCard`); whether an image or
a cluster is one the model can judge at all is :mod:`clusterspy.domain`'s.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.errors import InputFileError, NoClusterFoundError
from clusterspy.image import Image
from clusterspy.isomers import CLASSES, UNKNOWN
from clusterspy.weights import (
    CARD_NAME,
    DEFAULT_MODEL_DIR,
    DEFAULT_NORMALISATION,
    ModelCard,
    OnnxNetwork,
    dihedral_views,
    mean_of_views,
    normalise_crops,
    sha256_file,
    softmax,
)
from clusterspy.weights.astigmatism import ASTIGMATISM_DIR, AstigmatismNetwork

#: Folder of the shipped weights.
WEIGHTS_DIR = DEFAULT_MODEL_DIR
#: The shipped network.
DEFAULT_MODEL = WEIGHTS_DIR / "model.onnx"

__all__ = [
    "ASTIGMATISM", "ASTIGMATISM_RULE", "AUTO", "BY_SIZE", "CARD_NAME", "DEFAULT_MODEL",
    "DEFAULT_NORMALISATION", "FIT_FIELDS", "PIXEL_SIZE_SEARCH", "PIXEL_SIZE_SEARCH_RULE", "RESULT_COLUMNS",
    "ROUTE_FROM_NM", "SEARCHED_REASONS", "SEARCH_CONFIDENCE_MIN", "SECOND_OPINION", "SECOND_OPINION_CHECKS",
    "SECOND_OPINION_LOOKS", "SECOND_OPINION_RULE", "ClusterResult",
    "ClusterResults", "Model", "ModelsBySize", "astigmatic", "checks_label_of", "classify", "detection_lead",
    "detection_range_A", "dihedral_views", "judged_crop", "judging_model", "load_model", "model_summary",
    "normalise_crops", "routing_domain", "scaled_image", "search_context", "search_for", "search_pixel_size",
    "searched_at", "second_opinion_disagrees", "second_opinion_for", "second_opinion_of", "sha256_file",
    "shipped_model_covering", "shipped_models", "softmax", "table_confidence", "usable_models",
]


class Model(OnnxNetwork):
    """An ONNX isomer classifier and its model card: calibrated probabilities, labels, OOD distance.

    Parameters
    ----------
    onnx_path : path
        The ``.onnx`` network (``logits`` out; optionally ``features``, the pooled features
        the out-of-distribution score uses).
    card : ModelCard or dict
        The model card (see :class:`clusterspy.weights.ModelCard`).
    verify : bool
        Check the SHA-256 of the weights, of the card and of every file it lists (default True).
    """

    def __init__(self, onnx_path: str | Path, card: ModelCard | dict[str, Any], *,
                 verify: bool = True) -> None:
        super().__init__(onnx_path, card, verify=verify)
        self._ood: tuple[np.ndarray, np.ndarray, float] | None = None
        ood = self.card.ood
        if ood and "features" in self.outputs:
            with np.load(self.card.path(ood["file"])) as z:
                self._ood = (z["means"], z["precision"], float(ood["threshold"]))

    # -- the card's geometry and calibration ----------------------------------------------------
    @property
    def pixel_size_A(self) -> float:
        """Finest model input pixel size [Å/px]."""
        return self.card.pixel_size_A

    @property
    def temperature(self) -> float:
        """Temperature of the calibrated softmax."""
        return self.card.temperature

    @property
    def unknown_threshold(self) -> float:
        """Confidence below which a prediction is labelled ``"unknown"``."""
        return self.card.unknown_threshold

    @property
    def has_ood(self) -> bool:
        """Whether this model gives an out-of-distribution distance (features + statistics)."""
        return self._ood is not None

    @property
    def ood_threshold(self) -> float | None:
        """Distance above which a crop is out of distribution (None without OOD statistics)."""
        return None if self._ood is None else self._ood[2]

    def crop_pixel_size_A(self, diameter_A: float) -> float:
        """Pixel size [Å/px] of the crop of a cluster of ``diameter_A`` [Å] (:class:`ModelCard`)."""
        return self.card.crop_pixel_size_A(diameter_A)

    # -- inference ---------------------------------------------------------------------------
    def _run(self, crops: np.ndarray, batch_size: int = 256, features: bool | None = None
             ) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`OnnxNetwork.run`, with features by default when the model has OOD statistics."""
        return self.run(crops, batch_size, self._ood is not None if features is None else features)

    def predict_logits(self, crops: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Raw network logits ``(N, 4)`` of crops ``(N, crop_px, crop_px)`` (normalised inside)."""
        return self.run(crops, batch_size)[0]

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        """Calibrated probabilities ``(N, 4)`` in the order of :data:`clusterspy.isomers.CLASSES`.

        Parameters
        ----------
        crops : numpy.ndarray
            ``(N, crop_px, crop_px)`` model crops (:func:`clusterspy.detection.crop_cluster` at
            :meth:`crop_pixel_size_A`), cluster centred; any intensity unit.
        """
        return self.card.probabilities(self.predict_logits(crops))

    def infer(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Calibrated probabilities ``(N, 4)`` and out-of-distribution distances ``(N,)``.

        The distance is the Mahalanobis distance of the pooled features to the nearest class
        mean of the in-domain training images (None when the model has no OOD statistics).
        """
        return self._judged(*self._run(crops))

    def submit_infer(self, crops: np.ndarray, pool: Executor
                     ) -> Callable[[], tuple[np.ndarray, np.ndarray | None]]:
        """:meth:`infer` started on the worker threads of ``pool`` (:meth:`OnnxNetwork.submit`): a
        function that waits and returns the same numbers."""
        wait = self.submit(crops, pool, features=self._ood is not None)
        return lambda: self._judged(*wait())

    def _judged(self, logits: np.ndarray, feats: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray | None]:
        """Calibrated probabilities and OOD distances (None without statistics) of the network's outputs."""
        from clusterspy.weights.card import mahalanobis_distance

        probs = self.card.probabilities(logits)
        if feats is None or self._ood is None:
            return probs, None
        return probs, mahalanobis_distance(feats, self._ood[0], self._ood[1])

    def labels(self, probabilities: np.ndarray) -> list[str]:
        """Label of each row: the most probable class, or ``"unknown"`` below the threshold."""
        return self.card.labels(probabilities)

    def __repr__(self) -> str:
        return (
            f"Model({self.path.name}, {self.crop_px} px at ≥ {self.pixel_size_A} Å/px, "
            f"T={self.temperature:.3f}, unknown<{self.unknown_threshold:.3f})"
        )


class ModelsBySize:
    """Shipped models chosen cluster by cluster by size: the first whose domain covers it.

    The default of :func:`load_model` (no path, or ``"auto"``): ``isomernet-v2`` judges the
    clusters its diameter range holds (1.18–3.26 nm), ``isomernet-v3`` (0.87–8.05 nm, its field
    chosen from the diameter) the others; a cluster outside every range goes to the model whose
    range comes nearest (:func:`clusterspy.domain.route_by_size`). :func:`classify`, :func:`judge`
    and the series pipeline route so; each result records the model that judged it
    (:attr:`ClusterResult.model`, :func:`judging_model`).

    Attributes not defined here — :attr:`card`, :meth:`infer`, :meth:`crop_pixel_size_A` — are the
    first model's: code that takes one model (the structure fit's detection range, a series'
    image checks) uses the first model.

    A label of the first model — and of ``isomernet-v3`` and ``isomernet-v5``
    (:data:`SECOND_OPINION_CHECKS`) — stands
    only where ``second_opinion`` (the default: ``isomernet-v7``, trained with ±20 % pixel-size
    errors and astigmatic probes, :data:`SECOND_OPINION`) finds the same isomer most probable in its
    own crop of the cluster;
    otherwise the cluster is ``"unknown"`` with ``"models_disagree"`` (:func:`checks_label_of`).
    ``isomernet-v2`` was trained with exact calibrations: told a pixel size 30 % too small it labelled
    52 % of ``benchmarks/domain.py``'s held-out clusters wrongly, with the second opinion 3 %, for
    one right label in 160 at the true pixel size (the ``wrong_scale`` and ``heldout`` parts).

    Parameters
    ----------
    models : sequence of Model
        In order of preference; the first is the primary.
    second_opinion : Model, optional
        The model that checks the first one's labels.
    pixel_size_search : sequence of float
        Factors on the pixel size given tried, with a second opinion, for a cluster whose first
        model's label does not stand (:func:`search_pixel_size`; default none).
    astigmatism : AstigmatismNetwork, optional
        With a second opinion: the probe-shape network whose estimate withholds the labels it checks
        where the probe looks astigmatic (:func:`astigmatic`, reason ``"astigmatic"``).
    """

    def __init__(self, models: Sequence[Model], second_opinion: Model | None = None,
                 pixel_size_search: Sequence[float] = (),
                 astigmatism: AstigmatismNetwork | None = None) -> None:
        if not models:
            raise ValueError("ModelsBySize needs at least one model")
        self.models: tuple[Model, ...] = tuple(models)
        #: The model whose most probable isomer must agree with each label of the first model for
        #: that label to stand (else ``"unknown"``, ``"models_disagree"``); None: no second opinion.
        self.second_opinion: Model | None = second_opinion
        #: Factors on the pixel size given tried for a cluster of the first model whose label does
        #: not stand (:func:`search_pixel_size`); empty or without a second opinion: none.
        self.pixel_size_search: tuple[float, ...] = tuple(float(f) for f in pixel_size_search)
        #: The probe-shape network (:func:`astigmatic`), or None.
        self.astigmatism: AstigmatismNetwork | None = astigmatism

    @property
    def primary(self) -> Model:
        """The first model: its card, geometry and calibration are this object's."""
        return self.models[0]

    @property
    def id(self) -> str:
        """The models' identities joined by ``+`` (``isomernet-v2@…+isomernet-v3@…``)."""
        return "+".join(m.card.id for m in self.models)

    @property
    def name(self) -> str:
        """The models' names joined by ``+`` (``isomernet-v2+isomernet-v3``)."""
        return "+".join(m.card.name for m in self.models)

    def summary(self) -> dict[str, Any]:
        """The identity recorded with every output: the joined ``name``, ``id`` and SHA-256s, the
        rule, the union of the models' diameter and pixel-size ranges (``domain``), and each
        model's :meth:`ModelCard.summary` under ``by_size``."""
        from clusterspy.domain import ROUTE_RULE

        parts = [m.card.summary() for m in self.models]
        union = {}
        for key in ("diameter_nm", "image_pixel_size_A"):
            ranges = [m.card.domain[key] for m in self.models if key in m.card.domain]
            if ranges:
                union[key] = [min(float(r[0]) for r in ranges), max(float(r[1]) for r in ranges)]
        out = {"name": self.name, "id": self.id,
               **{k: "+".join(str(p.get(k)) for p in parts) for k in ("weights_sha256", "card_sha256")},
               "domain": union,
               "rule": ROUTE_RULE,
               "by_size": parts}
        if self.second_opinion is not None:
            out["second_opinion"] = {**self.second_opinion.card.summary(), "rule": SECOND_OPINION_RULE,
                                     "checks": "+".join(m.card.name for m in self.models
                                                        if checks_label_of(self, m))}
            if self.pixel_size_search:
                out["pixel_size_search"] = {"factors": [round(f, 6) for f in self.pixel_size_search],
                                            "rule": PIXEL_SIZE_SEARCH_RULE}
            if self.astigmatism is not None:
                out["astigmatism"] = {**self.astigmatism.summary(), "rule": ASTIGMATISM_RULE}
        return out

    def __getattr__(self, name: str) -> Any:  # the primary's card, inference, geometry
        if name == "models":
            raise AttributeError(name)
        return getattr(self.models[0], name)

    def __repr__(self) -> str:
        return "ModelsBySize(" + ", ".join(m.card.name for m in self.models) + ")"


def routing_domain(model: Model) -> dict[str, Any] | None:
    """The domain :func:`clusterspy.domain.route_by_size` routes ``model``'s clusters by in the
    default: its card's, with the diameter range starting at :data:`ROUTE_FROM_NM` where that is
    larger (the clusters below are the next model's). Its card's domain still judges them."""
    dom = model.card.domain
    start = ROUTE_FROM_NM.get(model.card.name)
    if not dom or start is None or "diameter_nm" not in dom:
        return dom
    lo, hi = (float(v) for v in dom["diameter_nm"])
    return {**dom, "diameter_nm": [max(lo, float(start)), hi]}


def detection_lead(models: Sequence[Model]) -> Model:
    """The model whose smallest size sets the detector's working pixel and smoothing in
    :func:`classify`: the first of ``models`` that judges the small clusters of its domain in the
    default — not one whose range there starts above its domain's (:data:`ROUTE_FROM_NM`: at
    0.5–0.6 Å/px, where ``isomernet-v2`` cannot judge, ``isomernet-v3``, not ``isomernet-v5``,
    whose smallest trained particles are 2.5 nm) — else the first."""
    return next((m for m in models if m.card.name not in ROUTE_FROM_NM), models[0])


def model_summary(model: Model | ModelsBySize) -> dict[str, Any]:
    """What every output records of the model(s) used (:meth:`ModelCard.summary`, or
    :meth:`ModelsBySize.summary` for the size-routed default)."""
    return model.summary() if isinstance(model, ModelsBySize) else model.card.summary()


def judging_model(model: Model | ModelsBySize, result: ClusterResult) -> Model:
    """The model (of the size-routed default, or the one given) that judged ``result``: its crop
    geometry and network are the ones to explain or redraw the result with."""
    members = model.models if isinstance(model, ModelsBySize) else (model,)
    return next((m for m in members if m.card.id == result.model), members[0])


def judged_crop(image: Image, result: ClusterResult, model: Model | ModelsBySize
                ) -> tuple[Model, np.ndarray, float]:
    """The crop ``result``'s model was shown, made again from the result alone: ``(model, crop,
    crop pixel size [Å/px])`` — the model that judged it (:func:`judging_model`), its crop field
    from the result's projected diameter, as :func:`classify` made it (at the pixel size × its
    :attr:`ClusterResult.pixel_size_factor` where the pixel-size search found the label)."""
    from clusterspy.detection import Detection, crop_cluster
    from clusterspy.domain import DETECTED_TO_PROJECTED

    m = judging_model(model, result)
    factor = float(getattr(result, "pixel_size_factor", 1.0) or 1.0)
    # the projected diameter the crop field was made from, at the pixel size the label was found at
    size_A = 10.0 * float(result.diameter_nm) * factor
    d = Detection(x_px=result.x_px, y_px=result.y_px, bbox=(0, 0, 0, 0),
                  diameter_A=size_A / DETECTED_TO_PROJECTED, area_px=0)
    step_A = m.crop_pixel_size_A(size_A)
    return m, crop_cluster(scaled_image(image, factor), d, step_A, m.crop_px), step_A


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime: float, card_mtime: float) -> Model:
    p = Path(path)
    return Model(p, ModelCard.read(p))


def load_model(path: str | Path | None = None) -> Model | ModelsBySize:
    """Load (and cache) an ONNX isomer model with its model card, verifying its SHA-256.

    Parameters
    ----------
    path : path or str, optional
        An ``.onnx`` file (its card is ``model_card.json`` or ``<stem>.json`` next to it), a
        folder holding ``model.onnx``, or the name of a shipped model (``"isomernet-v2"`` or
        ``"isomernet-v3"``): that model alone. Default (or ``"auto"``): the shipped models chosen
        by cluster size (:class:`ModelsBySize`: ``isomernet-v2``, then ``isomernet-v3`` for the
        clusters too small or too large for it), or the default weights alone where no other
        model is shipped.

    Raises
    ------
    InputFileError
        If the file or its card is missing, or a SHA-256 does not match.
    """
    if path is None or str(path) == AUTO:
        primary = _load_one(None)
        shipped = shipped_models()
        wide = [_load_one(shipped[n]) for n in BY_SIZE if n in shipped and shipped[n] != DEFAULT_MODEL]
        if not wide:
            return primary
        second = _load_one(shipped[SECOND_OPINION]) if SECOND_OPINION in shipped else None
        probe = _load_astigmatism() if second is not None and ASTIGMATISM else None
        key = (primary, *wide, second, probe)  # the cached models: one ModelsBySize for them
        if key not in _BY_SIZE_CACHE:
            _BY_SIZE_CACHE.clear()
            _BY_SIZE_CACHE[key] = ModelsBySize((primary, *wide), second_opinion=second,
                                               pixel_size_search=PIXEL_SIZE_SEARCH, astigmatism=probe)
        return _BY_SIZE_CACHE[key]
    return _load_one(path)


_BY_SIZE_CACHE: dict[tuple[Any, ...], ModelsBySize] = {}


def _load_astigmatism() -> AstigmatismNetwork | None:
    """The shipped probe-shape network (:data:`ASTIGMATISM`), loaded once (as :func:`_load_cached`: again
    only when a file changed); None where it is not shipped."""
    folder = ASTIGMATISM_DIR.parent / str(ASTIGMATISM)
    if not (folder / "model.onnx").is_file():
        return None
    return _astigmatism_cached(str(folder), (folder / "model.onnx").stat().st_mtime,
                               (folder / CARD_NAME).stat().st_mtime)


@lru_cache(maxsize=2)
def _astigmatism_cached(folder: str, mtime: float, card_mtime: float) -> AstigmatismNetwork:
    return AstigmatismNetwork(folder)


#: Shipped models that judge, after the default one, the clusters outside its sizes
#: (:class:`ModelsBySize`), in order.
BY_SIZE: tuple[str, ...] = ("isomernet-v5", "isomernet-v3")
#: The smallest projected diameter [nm] a model of :data:`BY_SIZE` judges in the default (below it
#: the next model judges), where that is above its domain's. ``isomernet-v5`` (160 px crops, 2.7× the
#: network time of ``isomernet-v3``'s 96 px: 23.5 against 8.8 ms a cluster, 8 views, 2 threads,
#: ``benchmarks/series_speed.py``'s ``network_ms_per_cluster``) from 5 nm / 1.15: above ~5 nm v3's
#: crop of a 1.25 × D field is coarser than 0.65 Å/px, and a 5 nm particle told a pixel size 15 %
#: too small measures 4.35 nm. Routed from 5 nm, a 5.15 nm Au decahedron told 0.2435 for 0.25 Å/px
#: went to v3 (fcc 0.966, wrong) in some frames of a series and v5 (decahedral 0.95) in others. On
#: ``benchmarks/domain.py``'s ``sizes`` and ``large`` particles measured 4.35–5 nm (told ×0.87, ×1,
#: ×1.15) v5 alone labels 43 of 46 right, v3 35, neither a wrong one (``benchmarks/route_boundary.py``).
ROUTE_FROM_NM: dict[str, float] = {"isomernet-v5": 4.35}
#: The shipped model that checks the default's first model (:class:`ModelsBySize`): a label of
#: ``isomernet-v2`` stands only where this model finds the same isomer most probable.
#: ``isomernet-v7`` (stop 40): ``isomernet-v4`` (the second opinion from stop 29) fine-tuned on images
#: 30 % of which were taken with an astigmatic (elliptical) probe (``configs/train_v7.yaml``). The
#: judges, v2 and v3, were trained on round probes only, and with v4 checking them clusters imaged
#: with the source drawn out by 1.65 / 2.35 Å FWHM got 15 / 25 wrong labels of 120; with v7 7 / 9
#: (``benchmarks/astigmatism.py``). Its cost: on ``benchmarks/domain.py``'s PRISM set 10 right labels
#: of 1,027 over the rotations and pixel-size errors (worst condition 97.5 → 95 %); wrong labels
#: fewer or as many in every set (fresh 9 → 7, told ×0.55–1.45 31 → 28).
SECOND_OPINION: str | None = "isomernet-v7"
#: The models of the default, besides its first, whose labels the second opinion checks too
#: (:func:`checks_label_of`). ``isomernet-v3``: a newcomer's Au decahedra of 2,000–3,500 atoms in one
#: orientation (``clusterspy simulate --motif decahedral --size 2500 --pixel-size 0.25 --seed 11``),
#: 4.1–4.3 nm at their true pixel size, were fcc 0.93–0.96 to v3 — and decahedral to v4 and v5. Of
#: the labels v3 gives at 3.0–4.6 nm to the ``sizes`` and ``large`` particles and to those decahedra
#: told ×0.87 / 1 / 1.15, v4's most probable isomer is v3's label for all 124 right ones and none of
#: the 5 wrong ones (``benchmarks/v3_check.py``). ``isomernet-v5`` (stop 40): a newcomer's astigmatic
#: Au icosahedra of 2,000 atoms (σ_long 0.7–1.0 Å) were decahedral 0.96–1.00 to v5, and v7 withdrew 5
#: of those 6 labels; of the labels v5 gives to ``benchmarks/domain.py``'s ``sizes`` and ``large``
#: particles (4.35–10.5 nm), v7 withdrew none (every figure of those parts unchanged).
SECOND_OPINION_CHECKS: tuple[str, ...] = ("isomernet-v3", "isomernet-v5")
#: The probe-shape network (``weights/probe/<name>``, :class:`AstigmatismNetwork`) whose estimate
#: withholds the default's checked labels (:func:`astigmatic`; None: none). The models that judge
#: (v2, v3, v5) were trained on round probes only; with the source drawn out by 2.35 Å FWHM they gave 9
#: wrong labels of 120 that isomernet-v7 did not withdraw (``benchmarks/astigmatism.py``), and a
#: newcomer's clusters blurred by σ_long 1.0–1.4 Å got 6–19 % confident wrong labels (stop 40).
ASTIGMATISM: str | None = "astigmatism-v1"
#: What :meth:`ModelsBySize.summary` records of the astigmatism rule.
ASTIGMATISM_RULE = ("a checked label stands only where the probe-shape network's estimate of the probe's "
                    "extra FWHM along its long axis, on the second opinion's crop at the pixel size given "
                    "(mean of 4 views), is below threshold_A; else unknown, astigmatic")
#: The second opinion's looks before all 8 of its test-time views (:func:`second_opinion_of`): ``(views,
#: margin)`` in turn — views are indices into :func:`~clusterspy.weights.dihedral_views` (0 the crop, 1 its
#: mirror image, 2 the crop turned 90°, 3 that one's mirror image); a look judges a crop where its views'
#: mean logits make the label the most probable isomer by ``margin`` [logits] or more.
#: ``benchmarks/second_opinion_looks.py``, on the 1,810 crops it checked in ``benchmarks/domain.py``'s PRISM
#: (every 15° rotation), held-out and fresh sets (±15 % pixel size) and the example series: no verdict
#: changed by either look. Until stop 42 the 4-view look at 2.5 logits was the only one (76 % judged on
#: it; the smallest all-8 lead among those 1.83 logits; 4 views' lead fell by at most 0.92 with all 8).
#: Stop 43 put 2 views at 3.5 logits before it (55 % judged there, the smallest all-8 lead among them
#: 2.46; 2 views' lead fell by up to 2.53 with all 8, so 3.0 was too near): 3.9 views a crop on average,
#: not 5.0, and 2 where the label is clear.
SECOND_OPINION_LOOKS: tuple[tuple[tuple[int, ...], float], ...] = (((0, 2), 3.5), ((0, 1, 2, 3), 2.5))
#: What :meth:`ModelsBySize.summary` records of the second opinion's rule.
SECOND_OPINION_RULE = ("a label of the first model (and of " + ", ".join(SECOND_OPINION_CHECKS) + ") stands "
                       "only where the second opinion's most probable "
                       "isomer (its own crop, its test-time views, no threshold) is the same; else unknown, "
                       "models_disagree; it looks at "
                       + ", then ".join(f"{len(v)} of its 8 views (judging where they make the label its "
                                        f"most probable isomer by {m:g} logits or more)"
                                        for v, m in SECOND_OPINION_LOOKS)
                       + ", then at all 8")
#: Factors on the pixel size given that the default tries for a cluster whose ``isomernet-v2``
#: label does not stand there (:func:`search_pixel_size`): the ±15 % calibration error the domain
#: promises to bear. ``isomernet-v2`` was trained with exact calibrations; told a pixel size 15 %
#: too large it labelled 67.5 % of ``benchmarks/domain.py``'s PRISM clusters right, 95 % with the search.
PIXEL_SIZE_SEARCH: tuple[float, ...] = (1 / 1.15, 1.15)
#: The first model's confidence a label found at another pixel size needs (its own threshold, at the
#: pixel size given, is 0.873): a label chosen among three pixel sizes has three chances to be wrong.
#: The smallest value at which the search gave no wrong label on ``benchmarks/domain.py``'s held-out
#: set (160 clusters at ×0.85, 1 and 1.15); on its fresh set, made to check it, 52 right and 2 wrong.
SEARCH_CONFIDENCE_MIN = 0.955
#: The verdicts at the pixel size given after which the pixel size is searched.
SEARCHED_REASONS: tuple[str, ...] = ("low_confidence", "models_disagree")
#: What :meth:`ModelsBySize.summary` records of the search's rule.
PIXEL_SIZE_SEARCH_RULE = (
    "where a label of the first model does not stand at the pixel size given (low_confidence or "
    "models_disagree), the image is told each factor × that pixel size (within the first model's pixel "
    "sizes); a label the first model gives there (in distribution, confidence ≥ 0.955, diameter in its "
    "range, lattice resolved at that scale) stands if the second "
    "opinion's most probable isomer is the same there and at the pixel size given; of several, the most "
    "confident; pixel_size_factor records the factor")
#: The name of the default (``--model auto``): the shipped models chosen by size.
AUTO = "auto"


def _load_one(path: str | Path | None) -> Model:
    p = Path(path) if path is not None else DEFAULT_MODEL
    if path is not None and not p.exists():
        p = _shipped_by_name(str(path)) or p
    if p.is_dir():
        p = p / "model.onnx"
    if not p.is_file():
        names = ", ".join([AUTO, *shipped_models()])
        hint = (" (the package was installed without its weights)" if path is None else
                f" (give an .onnx file, a folder holding model.onnx, or a shipped model: {names})")
        raise InputFileError(f"model file not found: {p}{hint}")
    card = ModelCard.read(p)
    card_file = card.path(CARD_NAME)
    card_mtime = card_file.stat().st_mtime if card_file.is_file() else 0.0
    return _load_cached(str(p.resolve()), p.stat().st_mtime, card_mtime)


def _shipped_by_name(name: str) -> Path | None:
    """The shipped model called ``name`` (the default's card name, or a folder beside it), or None."""
    if (WEIGHTS_DIR / name).is_dir():
        return WEIGHTS_DIR / name  # an earlier or alternative model, e.g. "isomernet-v3"
    card = DEFAULT_MODEL.with_name(CARD_NAME)
    if card.is_file() and json.loads(card.read_text()).get("name") == name:
        return DEFAULT_MODEL
    return None


def shipped_models() -> dict[str, Path]:
    """The models shipped in ``clusterspy/weights``: name → ``model.onnx`` (the default first),
    each loadable by its name (:func:`load_model`, ``--model NAME``)."""
    found: dict[str, Path] = {}
    card = DEFAULT_MODEL.with_name(CARD_NAME)
    if DEFAULT_MODEL.is_file() and card.is_file():
        try:
            name = json.loads(card.read_text()).get("name")
        except (OSError, ValueError, AttributeError):
            name = None
        found[str(name or "default")] = DEFAULT_MODEL
    if WEIGHTS_DIR.is_dir():
        for d in sorted(WEIGHTS_DIR.iterdir()):
            if (d / "model.onnx").is_file() and (d / CARD_NAME).is_file():
                found.setdefault(d.name, d / "model.onnx")
    return found


def shipped_model_covering(diameters_nm: Any, *, exclude: str | None = None
                           ) -> tuple[str, tuple[float, float]] | None:
    """The shipped model (:func:`shipped_models`) whose domain covers the most of ``diameters_nm``
    [nm] (at least one), with its diameter range [nm]; ``exclude``: a model's name not to propose
    (the one that was used). None when no other shipped model covers any of them. Among models that
    cover as many, the one made for the most of them (those from its :data:`ROUTE_FROM_NM`:
    ``isomernet-v5`` for particles of 4.35 nm and more, not ``isomernet-v3``, whose coarser crop labels
    fewer of them right), then the first. Each card is read as
    :func:`load_model` reads it (:meth:`ModelCard.read`, its :attr:`ModelCard.domain`)."""
    best: tuple[tuple[int, int], str, tuple[float, float]] | None = None
    sizes = [float(d) for d in diameters_nm if d is not None]
    for name, onnx in shipped_models().items():
        if name == exclude:
            continue
        try:
            lo, hi = (float(v) for v in ModelCard.read(onnx).domain["diameter_nm"])
        except (InputFileError, ValueError, KeyError, TypeError):  # an unreadable card: no offer
            continue
        start = ROUTE_FROM_NM.get(name)  # the sizes the default routes to it, not to a model before it
        n = (sum(lo <= d <= hi for d in sizes),
             0 if start is None else sum(max(lo, start) <= d <= hi for d in sizes))
        if n[0] and (best is None or n > best[0]):
            best = (n, name, (lo, hi))
    return None if best is None else (best[1], best[2])


#: What a verified result records of its structure fit (the ``fit_<field>`` columns): the fit's
#: isomer, model form, normalised cross-correlation with the data, zone axis and its own reason.
FIT_FIELDS: tuple[str, ...] = ("isomer", "form", "ncc", "zone_axis", "reason", "note")


@dataclass
class ClusterResult:
    """The classification of one cluster in one frame.

    ``x_px``, ``y_px`` are the cluster centre in the *input image's* pixels (col, row);
    ``diameter_nm`` its equivalent-circle diameter [nm]. ``label`` is the most probable isomer
    when that claim stands, else ``"unknown"`` and ``reason`` says why (a key of
    :data:`clusterspy.domain.REASONS`: out of the model's domain, or low confidence).
    ``confidence`` is the calibrated probability of the most probable class; it and
    ``probabilities`` are ``None`` when the cluster was never shown to the network (a reason
    decided before inference: too small or large, cut by the edge, a neighbour in view, not
    resolved).

    ``model`` is the id (``name@sha12``) of the model whose domain and network judged the
    cluster: with the size-routed default (:class:`ModelsBySize`) it says which one.

    ``pixel_size_factor`` is the factor on the pixel size given at which the verdict was made:
    1.0, or the factor at which the default's pixel-size search (:func:`search_pixel_size`) found
    the label that stands — a hint that the calibration may be off by as much.

    ``fit`` is set only when the label was checked by a structure fit (``clusterspy classify
    --verify``, :func:`clusterspy.workflows.verify_clusters`): ``{"isomer", "form", "ncc",
    "zone_axis", "reason", "note"}`` of the fit (:data:`FIT_FIELDS`; all None for a cluster not fitted
    because its label did not stand), written as the ``fit_<field>`` columns.
    """

    file: str | None
    frame: int
    cluster: int
    x_px: float
    y_px: float
    label: str
    confidence: float | None
    probabilities: dict[str, float] | None = field(default_factory=dict)
    diameter_nm: float | None = None
    reason: str | None = None
    ood_distance: float | None = None
    fit: dict[str, Any] | None = None
    model: str | None = None
    pixel_size_factor: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``clusterspy classify --format json`` (``fit_<field>`` keys only
        when the label was verified by a fit)."""
        probs = self.probabilities
        d = {
            "file": None if self.file is None else str(self.file),
            "frame": int(self.frame),
            "cluster": int(self.cluster),
            "x_px": float(self.x_px),
            "y_px": float(self.y_px),
            "diameter_nm": None if self.diameter_nm is None else round(float(self.diameter_nm), 3),
            "label": str(self.label),
            "reason": self.reason,
            "confidence": None if self.confidence is None else float(self.confidence),
            "probabilities": None if not probs else {c: float(probs[c]) for c in CLASSES},
            "ood_distance": None if self.ood_distance is None else round(float(self.ood_distance), 3),
            "model": self.model,
            "pixel_size_factor": round(float(self.pixel_size_factor), 6),
        }
        if self.fit is not None:
            d.update({f"fit_{k}": self.fit.get(k) for k in FIT_FIELDS})
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClusterResult:
        """The result back from its :meth:`to_dict` object (``fit_<field>`` keys gathered in ``fit``)."""
        d = dict(d)
        fit = {k: d.pop(f"fit_{k}") for k in FIT_FIELDS if f"fit_{k}" in d}
        return cls(**d, fit=fit or None)


def second_opinion_disagrees(label: str, probabilities: np.ndarray) -> bool:
    """Whether a second opinion's ``probabilities`` (in :data:`CLASSES` order) withdraw ``label``:
    a label (not ``"unknown"``) whose isomer is not the second opinion's most probable one."""
    return label != UNKNOWN and CLASSES[int(np.argmax(probabilities))] != label


def second_opinion_of(second: Model, crops: np.ndarray, labels: Sequence[str], pool: Executor | None = None
                      ) -> Callable[[], tuple[list[bool], dict[int, np.ndarray]]]:
    """The second opinion on ``labels`` (:func:`second_opinion_disagrees`), in looks of more views.

    ``second`` looks at each crop's test-time views in the turns of :data:`SECOND_OPINION_LOOKS`: where a
    look's mean logits make the label its most probable isomer by that look's margin or more, the label
    stands; the other crops go on to the next look, and those no look decides are judged on all 8 views
    — the verdict, and the probabilities, it gave before it had looks, to the last bit
    (:meth:`~clusterspy.weights.OnnxNetwork.run_views`; the views summed in their order). A model without
    test-time views judges on its one view.

    Parameters
    ----------
    second : Model
        The second opinion (``isomernet-v7``).
    crops : numpy.ndarray
        ``(N, crop_px, crop_px)``: its crops of the clusters (:meth:`Model.crop_pixel_size_A`).
    labels : sequence of str
        The first model's label of each (isomers, not ``"unknown"``).
    pool : Executor, optional
        Worker threads to run the views on (a series' inference pool); None runs them here. The first
        look starts at once; the later ones when the function returned is called.

    Returns
    -------
    callable
        Waits and returns ``(disagrees, probabilities)``: whether ``second`` withdraws each label,
        and its calibrated probabilities ``{index: (4,) array}`` of the crops it judged on all 8 views
        (every crop whose label it withdraws among them).
    """
    crops = np.asarray(crops)
    n_views = second.n_views
    looks = [([v for v in views if v < n_views], margin) for views, margin in SECOND_OPINION_LOOKS
             if n_views > 1]
    looks = [(views, margin) for views, margin in looks if views and len(views) < n_views]
    first = looks[0][0] if looks else list(range(n_views))

    def run(rows: np.ndarray, views: list[int]) -> Callable[[], list[list[np.ndarray]]]:
        if pool is not None:
            return second.submit_views(crops[rows], pool, views)
        outputs = second.run_views(crops[rows], views)
        return lambda: outputs

    every = np.arange(len(labels))
    started = run(every, first)

    def verdict() -> tuple[list[bool], dict[int, np.ndarray]]:
        logits: dict[int, np.ndarray] = {}  # each view's logits of the crops still undecided, in order
        undecided, seen = every, list(first)
        for v, out in zip(first, started(), strict=True):
            logits[v] = out[0]
        wanted = np.array([CLASSES.index(lab) for lab in labels], dtype=int)
        for views, margin in looks:
            new = [v for v in views if v not in seen]  # none on the first look: started above
            if new:
                for v, out in zip(new, run(undecided, new)(), strict=True):
                    logits[v] = out[0]
                seen += new
            mean = np.asarray(mean_of_views([[logits[v]] for v in views])[0], dtype=np.float64)
            rows = np.arange(len(undecided))
            others = mean.copy()
            others[rows, wanted[undecided]] = -np.inf
            lead = mean[rows, wanted[undecided]] - others.max(axis=1)
            keep = ~(lead >= margin)  # judged on this look where it leads by the margin: the label stands
            undecided = undecided[keep]
            logits = {v: x[keep] for v, x in logits.items()}
            if not undecided.size:
                break
        disagrees = [False] * len(labels)
        probs: dict[int, np.ndarray] = {}
        if undecided.size:
            rest = [v for v in range(n_views) if v not in seen]
            for v, out in zip(rest, run(undecided, rest)() if rest else [], strict=True):
                logits[v] = out[0]
            # summed in the order of the views, as predict_crops sums them: the same numbers to the bit
            full = mean_of_views([[logits[v]] for v in range(n_views)])[0]
            for k, p in zip(undecided.tolist(), second.card.probabilities(full), strict=True):
                probs[k] = p
                disagrees[k] = second_opinion_disagrees(labels[k], p)
        return disagrees, probs

    return verdict


def astigmatic(network: AstigmatismNetwork, crops: np.ndarray) -> list[bool]:
    """Whether each crop looks taken with an astigmatic probe: ``network``'s estimates
    (:meth:`AstigmatismNetwork.estimate`: the source's extra FWHM along its long axis and, for
    ``astigmatism-v2``, the phase of a three-fold astigmatism) reach its card's thresholds
    (:meth:`AstigmatismNetwork.drawn`). ``crops``: the second opinion's crops of the clusters, at the pixel
    size given. The default withholds such a label (``"unknown"``, ``"astigmatic"``):
    the models that judge were trained on round probes only (:data:`ASTIGMATISM`)."""
    return [bool(d) for d in network.judge(np.asarray(crops))()]


def _model_crops(image: Image, detections: list[Any], diam: list[float], model: Model) -> np.ndarray:
    """The crops ``model`` is shown of ``detections`` of projected diameters ``diam`` [Å]: its field
    from each diameter (:meth:`Model.crop_pixel_size_A`), ``(N, crop_px, crop_px)``."""
    from clusterspy.detection import crop_cluster

    return np.stack([crop_cluster(image, d, model.crop_pixel_size_A(D), model.crop_px)
                     for d, D in zip(detections, diam, strict=True)])


def _checked_by(second: Model, image: Image, detections: list[Any], diam: list[float],
                verdicts: list[tuple]) -> tuple[list[tuple], dict[int, np.ndarray]]:
    """``verdicts`` (of :func:`_judge_one`) with each label the ``second`` model does not find most
    probable, in its own crop of the cluster, made ``"unknown"`` / ``"models_disagree"``; and the
    second model's probabilities of the clusters it judged on all its views (``{index: (4,) array}``,
    :func:`second_opinion_of`)."""
    todo = [i for i, v in enumerate(verdicts) if v[0] != UNKNOWN]
    if not todo:
        return verdicts, {}
    disagrees, probs = second_opinion_of(second, _model_crops(image, [detections[i] for i in todo],
                                                              [diam[i] for i in todo], second),
                                         [verdicts[i][0] for i in todo])()
    out = list(verdicts)
    for k, i in enumerate(todo):
        _, conf, p, _, od = verdicts[i]
        if disagrees[k]:
            out[i] = (UNKNOWN, conf, p, "models_disagree", od)
    return out, {todo[k]: q for k, q in probs.items()}


def scaled_image(image: Image, factor: float) -> Image:
    """``image`` told a pixel size ``factor`` × its own (the data shared, not copied)."""
    return Image(image.data, float(image.pixel_size_A) * float(factor), image.metadata)


def search_pixel_size(first: Model, second: Model, image: Image | Sequence[Image], detections: list[Any],
                      diam: list[float], verdicts: list[tuple], factors: Sequence[float],
                      second_given: dict[int, np.ndarray] | None = None
                      ) -> tuple[list[tuple], list[float]]:
    """The pixel-size search (:data:`PIXEL_SIZE_SEARCH_RULE`) over the clusters ``first`` judged.

    A cluster whose verdict at the pixel size given is ``low_confidence`` or ``models_disagree``
    (:data:`SEARCHED_REASONS`) is judged again with the image told each pixel size ``factor`` ×
    the one given, where that pixel size and its diameter stay in ``first``'s ranges and its lattice
    is resolved at the right scale (:func:`clusterspy.domain.resolution_reason`). A label found
    there stands if ``first``'s verdict there is that label
    (:func:`clusterspy.domain.judge_probabilities`: in distribution, confident to
    :data:`SEARCH_CONFIDENCE_MIN` at least), ``second`` finds the same isomer most probable there,
    and ``second`` — trained with pixel-size errors — finds it most probable at the pixel size given
    too; of several, the one ``first`` is most confident of.
    Otherwise the verdict given stands. Each network runs once over every cluster and factor.

    Parameters
    ----------
    first, second : Model
        The judging model (``isomernet-v2``) and its second opinion (``isomernet-v7``).
    image : Image or sequence of Image
        The image, at the pixel size given [Å/px]; or one image per cluster (a series' windows,
        :func:`search_context`).
    detections, diam : list
        The clusters ``first`` judged and their projected diameters [Å] at the pixel size given.
    verdicts : list of tuple
        ``(label, confidence, probabilities, reason, ood_distance)`` of each, after the second
        opinion (:func:`_checked_by`).
    factors : sequence of float
        The factors on the pixel size tried (:data:`PIXEL_SIZE_SEARCH`).
    second_given : dict, optional
        ``second``'s probabilities at the pixel size given of the clusters it saw already.

    Returns
    -------
    list of tuple, list of float
        The verdicts, and each cluster's factor on the pixel size its verdict was made at (1.0:
        as given).
    """
    from clusterspy.domain import (
        amorphous_cap_A,
        crystal_evidence,
        judge_probabilities,
        pixel_size_range_A,
        resolution_reason,
    )

    used = [1.0] * len(verdicts)
    todo = [i for i, v in enumerate(verdicts) if v[3] in SEARCHED_REASONS]
    if not todo or not factors:
        return verdicts, used
    images = [image] * len(verdicts) if isinstance(image, Image) else list(image)

    def crops(pairs: list[tuple[int, float]], model: Model) -> np.ndarray:
        """``model``'s crops of clusters ``i`` with their image told ``f`` × its pixel size."""
        return np.concatenate([_model_crops(scaled_image(images[i], f), [detections[i]], [diam[i] * f], model)
                               for i, f in pairs])

    lo_A, hi_A = (10.0 * float(v) for v in first.card.domain.get("diameter_nm", [0.0, np.inf]))
    px_lo, px_hi = pixel_size_range_A(first.card.domain)
    pairs = [(i, f) for f in factors for i in todo
             if lo_A <= diam[i] * f <= hi_A and px_lo <= images[i].pixel_size_A * f <= px_hi
             and resolution_reason(scaled_image(images[i], f), detections[i].x_px, detections[i].y_px,
                                   diam[i] * f) is None]
    if not pairs:
        return verdicts, used
    probs, dist = first.infer(crops(pairs, first))
    amorphous_max_A = amorphous_cap_A(first.card.domain)
    found = []
    for k, (i, f) in enumerate(pairs):
        od = None if dist is None else float(dist[k])
        evidence = crystal_evidence(scaled_image(images[i], f), detections[i].x_px, detections[i].y_px,
                                    diam[i] * f)
        label, _ = judge_probabilities(probs[k], unknown_threshold=max(first.unknown_threshold,
                                                                       SEARCH_CONFIDENCE_MIN),
                                       ood_distance=od, ood_threshold=first.ood_threshold,
                                       diameter_A=diam[i] * f, amorphous_max_A=amorphous_max_A,
                                       crystal_evidence=evidence)
        if label != UNKNOWN:
            found.append((i, f, label, probs[k], od))
    if not found:
        return verdicts, used
    # the second opinion where a label stands at its pixel size, and at the pixel size given where
    # it has not looked yet
    given = dict(second_given or {})
    ask = sorted({i for i, *_ in found} - set(given))
    seen = second.predict_crops(crops([(i, f) for i, f, *_ in found] + [(i, 1.0) for i in ask], second))
    given.update(zip(ask, seen[len(found):], strict=True))
    stands: dict[int, list[tuple[float, str, np.ndarray, float | None]]] = {}
    for (i, f, label, p, od), there in zip(found, seen[:len(found)], strict=True):
        if not second_opinion_disagrees(label, there) and not second_opinion_disagrees(label, given[i]):
            stands.setdefault(i, []).append((f, label, p, od))
    out = list(verdicts)
    for i, options in stands.items():
        f, label, p, od = max(options, key=lambda o: float(np.max(o[2])))
        out[i] = (label, float(np.max(p)), {c: float(p[j]) for j, c in enumerate(CLASSES)}, None, od)
        used[i] = float(f)
    return out, used


def searched_at(factors: Sequence[float]) -> tuple[str, str]:
    """How the notes and warnings name where the pixel-size search found labels: the factors tried
    (``"0.87 or 1.15"``, :data:`PIXEL_SIZE_SEARCH`) and the labels found at each of ``factors`` (one per
    label found, not 1; ``"28 at × 0.87 and 3 at × 1.15"``)."""
    from collections import Counter

    counts = Counter(round(float(f), 6) for f in factors)
    return (" or ".join(f"{f:.2f}" for f in PIXEL_SIZE_SEARCH),
            " and ".join(f"{n} at × {f:.2f}" for f, n in sorted(counts.items())))


def search_context(image: Image, detection: Any, diameter_A: float, models: Sequence[Model],
                   factors: Sequence[float]) -> tuple[Image, Any]:
    """The part of ``image`` the pixel-size search of one cluster reads, copied: ``(image, detection)``
    with the detection moved into it, so that :func:`search_pixel_size` on them gives what it gives
    on the whole image (the series keeps these, not its frames, until a batch's labels are known).

    It holds every window the search reads at each factor (and 1): each model's crop
    (:func:`clusterspy.detection.crop_window_half_px`) and the resolution check's spectrum
    (:func:`clusterspy.domain.spectrum_window_px`) of the cluster of projected ``diameter_A`` [Å].
    """
    from dataclasses import replace

    from clusterspy.detection import crop_window_half_px
    from clusterspy.domain import spectrum_window_px

    px = float(image.pixel_size_A)
    half = 0.0
    for f in (1.0, *factors):
        for m in models:
            half = max(half, crop_window_half_px(m.crop_pixel_size_A(diameter_A * f) / (px * f), m.crop_px))
        half = max(half, spectrum_window_px(diameter_A * f, px * f) / 2)
    half = int(np.ceil(half)) + 3
    rows, cols = image.shape
    x, y = float(detection.x_px), float(detection.y_px)
    r0, c0 = max(int(np.floor(y)) - half, 0), max(int(np.floor(x)) - half, 0)
    r1, c1 = min(int(np.ceil(y)) + half + 1, rows), min(int(np.ceil(x)) + half + 1, cols)
    data = np.array(image.data[r0:r1, c0:c1], copy=True)
    b = detection.bbox
    moved = replace(detection, x_px=detection.x_px - c0, y_px=detection.y_px - r0,
                    bbox=(b[0] - r0, b[1] - c0, b[2] - r0, b[3] - c0))
    return Image(data, px, image.metadata), moved


def table_confidence(label: str, reason: str | None, confidence: float | None) -> float | None:
    """The confidence a human-readable table shows: for a label that stands, and for an ``unknown``
    whose reason is ``low_confidence`` (the low value is the reason); None for any other
    ``unknown`` (out of distribution, too large for an amorphous claim, a fit that disagrees),
    whose confidence is that of a claim withdrawn — often near 1, read as a confident label next
    to "unknown". JSON, CSV and :meth:`ClusterResults.table` keep every confidence."""
    if confidence is None or (label == UNKNOWN and reason != "low_confidence"):
        return None
    return float(confidence)


#: Columns of :meth:`ClusterResults.table` (``p_<class>`` for each of :data:`CLASSES`).
RESULT_COLUMNS: tuple[str, ...] = (
    "file", "frame", "cluster", "x_px", "y_px", "diameter_nm", "label", "reason", "confidence",
    *(f"p_{c}" for c in CLASSES), "ood_distance", "model", "pixel_size_factor",
)


class ClusterResults(list):
    """The clusters :func:`classify` found: a ``list`` of :class:`ClusterResult`, and a table.

    It is a list (indexing, iteration, ``len`` and ``==`` with a list work as before) with
    :meth:`table` and :meth:`to_dataframe`. HyperSpy markers and metadata are made by
    :func:`clusterspy.integrations.hyperspy.add_to_signal`, napari layers by the plugin
    (:mod:`clusterspy.integrations.napari`).
    """

    def table(self) -> dict[str, list[Any]]:
        """One list per column of :data:`RESULT_COLUMNS`, one entry per cluster.

        ``x_px``/``y_px`` are in the input image's pixels (col, row), ``diameter_nm`` in nm;
        what is ``None`` in a result (``reason`` of a label that stands, ``confidence`` and
        probabilities of a cluster never shown to the network) is ``None`` here. Verified results
        add the ``fit_<field>`` columns (:data:`FIT_FIELDS`).
        """
        columns = self.columns()
        cols: dict[str, list[Any]] = {c: [] for c in columns}
        for r in self:
            d = r.to_dict()
            probs = d.pop("probabilities") or {}
            d["diameter_nm"] = None if r.diameter_nm is None else float(r.diameter_nm)
            d["ood_distance"] = None if r.ood_distance is None else float(r.ood_distance)
            for c in CLASSES:
                d[f"p_{c}"] = probs.get(c)
            for k in columns:
                cols[k].append(d.get(k))
        return cols

    def columns(self) -> tuple[str, ...]:
        """:data:`RESULT_COLUMNS`, and the ``fit_<field>`` columns when a result was verified."""
        verified = any(r.fit is not None for r in self)
        return (*RESULT_COLUMNS, *(f"fit_{k}" for k in FIT_FIELDS)) if verified else RESULT_COLUMNS

    def to_dataframe(self) -> Any:
        """The :meth:`table` as a ``pandas.DataFrame``, one row per cluster (missing numbers NaN).

        Raises
        ------
        MissingDependencyError
            pandas is not installed (``pip install 'clusterspy[tables]'``).
        """
        from clusterspy.errors import import_optional

        pd = import_optional("pandas", "tables", "results as a DataFrame")
        table = self.table()
        numeric = {"x_px", "y_px", "diameter_nm", "confidence", "ood_distance", "fit_ncc",
                   *(f"p_{c}" for c in CLASSES)}
        return pd.DataFrame({k: (np.array([np.nan if v is None else v for v in col], dtype=float)
                                 if k in numeric else col) for k, col in table.items()},
                            columns=list(self.columns()))


def _as_image(image: Any, pixel_size_A: float | None, signal: int | str | None = None
              ) -> tuple[Image, str | None]:
    """Turn a path / array / Image / HyperSpy Signal2D into a checked :class:`Image` and a name."""
    from clusterspy.io import as_image

    img = as_image(image, pixel_size_A, signal=signal)
    if isinstance(image, (str, Path)):
        return img, str(image)
    name = img.metadata.get("source") or img.metadata.get("file") or img.metadata.get("title") or None
    return img, None if name is None else str(name)


def detection_range_A(card: ModelCard | None = None) -> tuple[float, float] | None:
    """The detector's diameter range [Å] :func:`classify` uses with a model (default: the shipped
    default's card), without the user's size range: a margin around the model's domain
    (:func:`_size_range_A`) in the detector's diameters
    (:data:`clusterspy.domain.DETECTED_TO_PROJECTED`). ``clusterspy fit`` detects with it too.
    None when no card is given and none is shipped (the fit then uses its own range)."""
    from clusterspy.domain import DETECTED_TO_PROJECTED

    if card is None:
        try:
            card = ModelCard.read(DEFAULT_MODEL)
        except InputFileError:
            return None
    lo, hi = _size_range_A(card, None, None)
    return lo / DETECTED_TO_PROJECTED, hi / DETECTED_TO_PROJECTED


def _size_range_A(card: ModelCard, min_size_nm: float | None, max_size_nm: float | None,
                  largest_A: float | None = None) -> tuple[float, float]:
    """Projected diameters [Å] of the clusters reported: a margin around the model's domain (to
    name what is too small or too large), or the user's range [nm], checked. ``largest_A``: the
    largest diameter [Å] of several models' domains, instead of this card's."""
    from clusterspy.errors import ConfigError

    d_lo, d_hi = (10.0 * float(v) for v in card.domain.get("diameter_nm", [1.0, 8.0]))
    d_hi = float(largest_A) if largest_A is not None else d_hi
    for name, v in (("min_size_nm / --min-size", min_size_nm), ("max_size_nm / --max-size", max_size_nm)):
        if v is not None and not (np.isfinite(float(v)) and float(v) > 0):
            raise ConfigError(f"the size limit ({name}) must be a positive diameter in nm, got {v}")
    lo = 10.0 * float(min_size_nm) if min_size_nm is not None else max(6.0, 0.8 * d_lo)
    hi = 10.0 * float(max_size_nm) if max_size_nm is not None else 2.5 * d_hi
    if lo >= hi:
        raise ConfigError(f"the size range is empty: {lo / 10:g}–{hi / 10:g} nm "
                          "(min_size_nm / --min-size must be below max_size_nm / --max-size)")
    return lo, hi


def _nothing_found(img: Image, name: str | None, lo_A: float, hi_A: float, contrast: str,
                   skipped_at_edge: int = 0) -> str:
    """The message of :class:`NoClusterFoundError`, naming what was (not) there; ``skipped_at_edge``:
    clusters of the size range found but left out because they touch the edge (``border="skip"``)."""
    from clusterspy.detection import detect_clusters

    where = (f"{name or 'the image'} ({img.shape[1]}×{img.shape[0]} px at {img.pixel_size_A:g} Å/px "
             f"= {img.extent_A[0] / 10:.3g}×{img.extent_A[1] / 10:.3g} nm)")
    if skipped_at_edge:  # found, and dropped by the user's choice: not a size or calibration problem
        n = skipped_at_edge
        them = "it" if n == 1 else "them"
        return (f"no cluster of {lo_A / 10:g}–{hi_A / 10:g} nm away from the edge in {where}: {n} "
                f"cluster{'' if n == 1 else 's'} touching the edge {'was' if n == 1 else 'were'} left out by "
                f"border=\"skip\" (--border skip); --border flag (border=\"flag\") reports {them} as unknown "
                "(cut_by_edge)")
    try:
        any_size = detect_clusters(img, min_diameter_A=max(3.0, 4 * img.pixel_size_A),
                                   max_diameter_A=1.5 * max(img.extent_A), exclude_border=False,
                                   polarity="bright")
    except Exception:  # the diagnosis must never hide the real message
        any_size = []
    any_size = [d for d in any_size if d.contrast >= 8.0]  # not a noise speckle
    if any_size:
        from clusterspy.domain import particle_diameter_A

        d = max(any_size, key=lambda r: r.contrast)
        d_nm = particle_diameter_A(d.diameter_A) / 10  # projected, as the range and the tables give it
        if lo_A <= 10 * d_nm <= hi_A:
            # its size is in the range: the detector, whose background window spans the models' largest
            # particles, found no background around it — a particle larger than, or filling, the frame
            # (a newcomer's tight crop of the 5.2 nm Pb particle, 4.2×3.5 nm: its 3.5 nm core stood out)
            r0, c0, r1, c1 = d.bbox
            share = (r1 - r0) * (c1 - c0) / float(img.shape[0] * img.shape[1])
            return (f"no cluster found in {where}: a bright region {d_nm:.2f} nm across stands out, "
                    f"its box {share:.0%} of the frame, but no background around it — the particle "
                    "probably fills the frame or is larger than it; crop wider, with vacuum or support "
                    "all around the particle")
        return (f"no cluster of {lo_A / 10:g}–{hi_A / 10:g} nm found in {where}; the most prominent "
                f"bright region is {d_nm:.2f} nm across — if that is your particle, "
                "check the pixel size, or widen the range with --min-size/--max-size (nm; min_size_nm= / "
                "max_size_nm= in Python)")
    return (f"no cluster found in {where}: nothing stands out above the background noise "
            + ("" if contrast == "haadf" else "(HAADF: bright clusters on a dark background) ")
            + "— check that this is an atomic-resolution image of clusters, as acquired (a high-pass "
            "'background subtraction', an image minus its blur, removes the particles' own contrast)")


def classify(
    image: Any,
    pixel_size_A: float | None = None,
    *,
    model: Model | str | Path | None = None,
    file: str | None = None,
    frame: int = 0,
    contrast: str = "auto",
    min_size_nm: float | None = None,
    max_size_nm: float | None = None,
    border: str = "flag",
    pixel_size: float | None = None,
    signal: int | str | None = None,
) -> ClusterResults:
    """Find every cluster in an image and classify its isomer — or say why it cannot.

    Parameters
    ----------
    image : path, numpy.ndarray, Image or hyperspy Signal2D
        A 2-D HAADF-STEM image. A bare array needs ``pixel_size_A``.
    pixel_size_A : float, optional
        Pixel size [Å/px]; overrides the file's calibration when given.
    model : Model or path, optional
        Default: the shipped model (:func:`load_model`).
    file : str, optional
        Name recorded in the results (default: the path, if ``image`` is one).
    frame : int
        Frame index recorded in the results.
    contrast : {"auto", "haadf"}
        ``"auto"`` refuses images that look like bright field; ``"haadf"`` trusts that the
        image is HAADF.
    min_size_nm, max_size_nm : float, optional
        Diameters [nm] of the clusters looked for; default: a margin around the model's domain,
        so that clusters too small or too large for the model are found and named.
    border : {"flag", "skip"}
        Clusters touching the image edge: reported as ``"unknown"`` with reason
        ``"cut_by_edge"`` (``"flag"``), or left out (``"skip"``).
    pixel_size : float, optional
        Deprecated spelling of ``pixel_size_A``.
    signal : int or str, optional
        For a path to a multi-signal file: which signal (index or title; see
        :func:`clusterspy.io.read_image`).

    Returns
    -------
    ClusterResults
        A list of :class:`ClusterResult`, one per detected cluster, in the order of
        :func:`clusterspy.detection.detect_clusters` (``.to_dataframe()`` gives the table).

    Raises
    ------
    OutOfDomainError
        If the whole image is outside the model's domain (pixel size, field, contrast).
    NoClusterFoundError
        If no cluster is found; the message says what was there.
    """
    from clusterspy.detection import detect_clusters
    from clusterspy.domain import DETECTED_TO_PROJECTED, cluster_reasons, particle_diameter_A, route_by_size
    from clusterspy.errors import ConfigError

    if pixel_size is not None:
        warnings.warn("classify(pixel_size=...) is deprecated; use pixel_size_A=", DeprecationWarning,
                      stacklevel=2)
        pixel_size_A = pixel_size_A if pixel_size_A is not None else pixel_size
    if border not in ("flag", "skip"):
        raise ConfigError(f"border must be 'flag' or 'skip', got {border!r}")
    mdl = model if isinstance(model, (Model, ModelsBySize)) else load_model(model)
    img, name = _as_image(image, pixel_size_A, signal)
    if pixel_size_A is not None:
        what = (file or name if isinstance(image, str | Path) else
                "the signal" if img.metadata.get("source") == "hyperspy" else file)
        warn_overridden_calibration(img.metadata, img.pixel_size_A, what)
    _warn_enlarged(img, file or name)
    models = usable_models(img, mdl, contrast)
    # the smallest size is the lead's (the first model that judges small clusters): it sets the
    # detector's working pixel and smoothing, so that the clusters that model judges are found as
    # with it alone; the largest, every model's
    lead = detection_lead(models)
    largest_A = max(10.0 * float(m.card.domain.get("diameter_nm", [1.0, 8.0])[1]) for m in models)
    lo_A, hi_A = _size_range_A(lead.card, min_size_nm, max_size_nm, largest_A)
    # detection always looks at the models' whole range (so that a large particle is seen whole,
    # not as fragments above a background estimated too small), then keeps the user's range
    det = [detection_range_A(m.card) for m in models]
    det_lo, det_hi = detection_range_A(lead.card)[0], max(d[1] for d in det)
    detections = detect_clusters(img, min_diameter_A=min(lo_A / DETECTED_TO_PROJECTED, det_lo),
                                 max_diameter_A=max(hi_A / DETECTED_TO_PROJECTED, det_hi),
                                 exclude_border=False, polarity="bright")
    # the domain reasons see every cluster found (a neighbour outside the user's size range is
    # still a neighbour); the user's range and border choice only select what is reported
    diam = [particle_diameter_A(d.diameter_A) for d in detections]
    route = [route_by_size(D, [routing_domain(m) for m in models]) for D in diam]
    reasons = [cluster_reasons(img, detections, m.card.domain, diameters_A=diam,
                               field_A=[m.card.crop_px * m.card.crop_pixel_size_A(D) for D in diam],
                               only=[i for i, j in enumerate(route) if j == k])
               for k, m in enumerate(models)]
    rows, cols = img.shape
    in_range = [i for i in range(len(detections)) if lo_A <= diam[i] <= hi_A]
    # --border skip leaves out every cluster the domain calls cut_by_edge: touching the edge or a
    # fill, or ending within the rim the detector misses
    keep = [i for i in in_range if border == "flag" or (
            (d := detections[i]).bbox[0] > 0 and d.bbox[1] > 0 and d.bbox[2] < rows and d.bbox[3] < cols
            and (d.fill_gap_px is None or d.fill_gap_px > 0) and reasons[route[i]][i] != "cut_by_edge")]
    if not keep:
        raise NoClusterFoundError(_nothing_found(img, file or name, lo_A, hi_A, contrast,
                                                 skipped_at_edge=len(in_range)))
    return _judge_by_size(img, [detections[i] for i in keep], models, file=file if file is not None else name,
                          frame=frame, reasons=[[r[i] for i in keep] for r in reasons],
                          **_second_opinion_args(mdl, models))


def _warn_enlarged(img: Image, name: str | None) -> None:
    """Warn (``UserWarning``) when the image was enlarged by repeating pixels
    (:func:`clusterspy.image.enlargement_by_repetition`) and its pixel size was not the file's own
    (typed for an export, or given with an array): it is then likely the original's,
    too large by that factor, and every diameter with it (a newcomer's ×2 exports, stop 39: right labels
    at twice the particles' diameters, judged by the model of the larger size)."""
    from clusterspy.image import enlargement_by_repetition

    if img.metadata.get("pixel_size_source") == "file":
        return  # the software that enlarged it wrote the pixel size (a newcomer's halved ones: stop 39)
    factor = enlargement_by_repetition(img.data)
    if factor is None:
        return
    px = float(img.pixel_size_A)
    warnings.warn(f"{name or 'the image'} looks enlarged ×{factor:g} by repeating pixels (a viewer's or an "
                  f"export's zoom): if {px:g} Å/px is the original image's pixel size, this one's is "
                  f"{px / factor:.3g} Å/px and every diameter is ×{factor:g} too large — give the original "
                  f"image, or --pixel-size {px / factor:.3g} (pixel_size_A=)", UserWarning, stacklevel=3)


def warn_overridden_calibration(metadata: dict[str, Any], pixel_size_A: float, name: str | None) -> None:
    """Warn (``UserWarning``) that the user's ``pixel_size_A`` [Å/px] replaced a different calibration
    of the file or signal (:func:`clusterspy.image.overridden_calibration_A`): a value typed for
    another image must not silently win over the one the file records."""
    from clusterspy.image import overridden_calibration_A

    own = overridden_calibration_A(metadata, pixel_size_A)
    if own is not None:
        warnings.warn(f"pixel_size_A={float(pixel_size_A):g} Å/px replaces the calibration of "
                      f"{name or 'the image'} ({own:g} Å/px), {float(pixel_size_A) / own - 1:+.0%}; leave "
                      "pixel_size_A out to use it", UserWarning, stacklevel=3)


def _second_opinion_args(model: Model | ModelsBySize, models: Sequence[Model]) -> dict[str, Any]:
    """What :func:`_judge_by_size` takes of ``model``'s second opinion for ``models`` (those in
    use): the checking model, the pixel-size search's factors, and which models it checks."""
    second = second_opinion_for(model, models)
    return {"second_opinion": second, "search": search_for(model, models),
            "checked": [checks_label_of(model, m) for m in models],
            "astigmatism": getattr(model, "astigmatism", None) if second is not None else None}


def checks_label_of(model: Model | ModelsBySize, member: Model) -> bool:
    """Whether ``model``'s second opinion checks the labels of ``member`` (one of its models): its
    first model's, and those of the models named in :data:`SECOND_OPINION_CHECKS`."""
    return (isinstance(model, ModelsBySize) and model.second_opinion is not None
            and (member is model.primary or member.card.name in SECOND_OPINION_CHECKS))


def second_opinion_for(model: Model | ModelsBySize, models: Sequence[Model]) -> Model | None:
    """The model that checks the labels of some of ``models`` (those in use,
    :func:`usable_models`; :func:`checks_label_of`): ``model``'s second opinion, else None."""
    if any(checks_label_of(model, m) for m in models):
        return model.second_opinion  # type: ignore[union-attr]
    return None


def search_for(model: Model | ModelsBySize, models: Sequence[Model]) -> tuple[float, ...]:
    """The factors of ``model``'s pixel-size search (:func:`search_pixel_size`) where ``models[0]``
    (the first in use) is its first model and has a second opinion, else none."""
    if not models or not isinstance(model, ModelsBySize) or models[0] is not model.primary \
            or second_opinion_for(model, models[:1]) is None:
        return ()
    return tuple(getattr(model, "pixel_size_search", ()))


def usable_models(img: Image, model: Model | ModelsBySize, contrast: str, *, refuse: bool = True
                   ) -> tuple[Model, ...]:
    """The models (the size-routed ones in order, or the one) whose domain accepts the whole image;
    when none does, the last model's :class:`OutOfDomainError` (its limits are the widest), or
    with ``refuse=False`` the first model. The contrast (the same for every model) is looked at
    once, after the pixel size and field (it cost ~24 ms a 1024² frame for each model)."""
    from clusterspy.domain import check_contrast, check_image
    from clusterspy.errors import ConfigError, OutOfDomainError

    if contrast not in ("auto", "haadf"):
        raise ConfigError(f"contrast must be 'auto' or 'haadf', got {contrast!r}")
    models = model.models if isinstance(model, ModelsBySize) else (model,)
    usable, error = [], None
    for m in models:
        try:
            check_image(img, m.card.domain, contrast="haadf")
        except OutOfDomainError as exc:
            error = exc  # the last model's: the size-routed default's later models are the wider
            continue
        usable.append(m)
    if usable:
        try:
            check_contrast(img, contrast)  # type: ignore[arg-type]
        except OutOfDomainError as exc:
            error, usable = exc, []
    if not usable:
        if refuse:
            raise error  # type: ignore[misc]
        return models[:1]
    return tuple(usable)


def judge(image: Image, detections: list[Any], model: Model | ModelsBySize, *, file: str | None = None,
          frame: int = 0, reasons: list[str | None] | None = None) -> ClusterResults:
    """Domain checks, inference and the label rule for clusters already found in an image.

    Clusters with a reason decided before inference (:func:`clusterspy.domain.cluster_reasons`)
    are not shown to the network; the others get calibrated probabilities, an
    out-of-distribution distance (when the model has OOD statistics) and a label, or
    ``"unknown"`` with ``"out_of_distribution"`` or ``"low_confidence"``. With the size-routed
    default (:class:`ModelsBySize`) each cluster goes to the model
    :func:`clusterspy.domain.route_by_size` chooses among those whose domain accepts the image
    (its pixel size and field; the first model when none does, as a single model is used);
    ``reasons`` (the pre-inference reasons of one model) is for a single model only.
    """
    models = model.models if isinstance(model, ModelsBySize) else (model,)
    if reasons is not None and len(models) > 1:
        raise ValueError("judge(reasons=...) is for a single model, not ModelsBySize")
    if isinstance(model, ModelsBySize):  # never route a cluster to a model that refuses the whole image
        models = usable_models(image, model, "haadf", refuse=False)
    return _judge_by_size(image, detections, models, file=file, frame=frame,
                          reasons=None if reasons is None else [list(reasons)],
                          **_second_opinion_args(model, models))


def _judge_by_size(image: Image, detections: list[Any], models: Sequence[Model], *, file: str | None,
                   frame: int, reasons: list[list[str | None]] | None,
                   second_opinion: Model | None = None, search: Sequence[float] = (),
                   checked: Sequence[bool] | None = None,
                   astigmatism: AstigmatismNetwork | None = None) -> ClusterResults:
    """:func:`judge` over models in order of preference (``reasons``: one list per model): each
    cluster goes to the model :func:`clusterspy.domain.route_by_size` chooses; the labels of the
    models ``checked`` marks (default: the first) are checked by ``second_opinion``
    (:func:`second_opinion_disagrees`), and the first's that do not stand searched at the pixel
    sizes ``search`` × the one given (:func:`search_pixel_size`); then every label of those models
    the probe-shape network ``astigmatism`` finds taken with an astigmatic probe is withheld
    (:func:`astigmatic`)."""
    from clusterspy.domain import cluster_reasons, particle_diameter_A, route_by_size

    diam = [particle_diameter_A(d.diameter_A) for d in detections]
    chosen = [route_by_size(D, [routing_domain(m) for m in models]) for D in diam]
    if reasons is None:
        reasons = [cluster_reasons(image, detections, m.card.domain, diameters_A=diam,
                                   field_A=[m.card.crop_px * m.card.crop_pixel_size_A(D) for D in diam],
                                   only=[i for i, j in enumerate(chosen) if j == k])
                   for k, m in enumerate(models)]
    judged: dict[int, tuple] = {}
    factor = [1.0] * len(detections)
    for j, m in enumerate(models):
        idx = [i for i, c in enumerate(chosen) if c == j]
        if idx:
            dets, dj = [detections[i] for i in idx], [diam[i] for i in idx]
            verdicts = _judge_one(image, dets, dj, [reasons[j][i] for i in idx], m)
            if second_opinion is not None and (checked[j] if checked is not None else j == 0):
                verdicts, seen = _checked_by(second_opinion, image, dets, dj, verdicts)
                if j == 0:
                    verdicts, used = search_pixel_size(m, second_opinion, image, dets, dj, verdicts, search,
                                                       seen)
                    for i, f in zip(idx, used, strict=True):
                        factor[i] = f
            judged.update(zip(idx, verdicts, strict=True))
    if second_opinion is not None and astigmatism is not None:
        idx = [i for i in range(len(detections)) if judged[i][0] != UNKNOWN
               and (checked[chosen[i]] if checked is not None else chosen[i] == 0)]
        if idx:
            crops = _model_crops(image, [detections[i] for i in idx], [diam[i] for i in idx], second_opinion)
            for i, drawn in zip(idx, astigmatic(astigmatism, crops), strict=True):
                if drawn:
                    _, conf, p, _, od = judged[i]
                    judged[i] = (UNKNOWN, conf, p, "astigmatic", od)
    results = ClusterResults()
    for i, d in enumerate(detections):
        label, conf, p, reason, od = judged[i]
        results.append(ClusterResult(
            file=file, frame=frame, cluster=i, x_px=float(d.x_px), y_px=float(d.y_px),
            label=label, confidence=conf, probabilities=p, diameter_nm=diam[i] / 10.0,
            reason=reason, ood_distance=od, model=models[chosen[i]].card.id, pixel_size_factor=factor[i],
        ))
    return results


def _judge_one(image: Image, detections: list[Any], diam: list[float], reasons: list[str | None],
               model: Model) -> list[tuple]:
    """``(label, confidence, probabilities, reason, ood_distance)`` of each cluster, by one model."""
    from clusterspy.domain import amorphous_cap_A, crystal_evidence, judge_probabilities

    card = model.card
    amorphous_max_A = amorphous_cap_A(card.domain)
    todo = [i for i, r in enumerate(reasons) if r is None]
    probs = dist = None
    if todo:
        probs, dist = model.infer(_model_crops(image, [detections[i] for i in todo], [diam[i] for i in todo],
                                               model))
    out = []
    k = 0
    for i in range(len(detections)):
        reason = reasons[i]
        conf = p = od = None
        label = UNKNOWN
        if reason is None:
            pi = probs[k]  # type: ignore[index]
            od = None if dist is None else float(dist[k])
            k += 1
            conf = float(np.max(pi))
            p = {c: float(pi[j]) for j, c in enumerate(CLASSES)}
            label, reason = judge_probabilities(
                pi, unknown_threshold=card.unknown_threshold, ood_distance=od,
                ood_threshold=model.ood_threshold, diameter_A=diam[i],
                amorphous_max_A=amorphous_max_A,
                crystal_evidence=crystal_evidence(image, detections[i].x_px, detections[i].y_px,
                                                  diam[i]))
        out.append((label, conf, p, reason, od))
    return out
