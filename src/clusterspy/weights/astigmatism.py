"""``AstigmatismNetwork``: how drawn out the probe looks in a crop, in Å.

The isomer classifiers that judge (``isomernet-v2``, ``-v3``, ``-v5``) were trained on round
probes. Shown a cluster imaged with an astigmatic probe — its atomic columns drawn out along one
direction — they name isomers with near-certainty, and the second opinion (``isomernet-v7``) agrees
with some of those wrong labels. ``astigmatism-v1`` is isomernet-v7's network with one output, the
source's extra FWHM [Å] along its long axis (:attr:`clusterspy.simulation.Microscope.source_elongation_A`),
regressed on v7's crops of 22,000 of the 24,000 images of v6's and v7's training sets
(``training/astigmatism-v1/``). It sees the crop the second opinion is shown, and the default withholds
a label where it estimates the probe drawn out by its card's ``threshold_A`` or more
(:func:`clusterspy.predict.astigmatic`, reason ``"astigmatic"``).

The folder (``weights/probe/astigmatism-v1``) is not an isomer model: it is not among
:func:`clusterspy.predict.shipped_models`. No PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from pathlib import Path

import numpy as np

from clusterspy.errors import InputFileError
from clusterspy.weights.card import CARD_NAME, ModelCard
from clusterspy.weights.network import OnnxNetwork, mean_of_views

__all__ = ["ASTIGMATISM_BATCH", "ASTIGMATISM_DIR", "ASTIGMATISM_VIEWS", "AstigmatismNetwork",
           "three_fold_threshold_of", "threshold_of"]

#: The shipped probe-shape network's folder.
ASTIGMATISM_DIR = Path(__file__).resolve().parent / "probe" / "astigmatism-v1"
#: The test-time views (indices into :func:`~clusterspy.weights.dihedral_views`) whose estimates
#: are averaged: the crop, its mirror image, the crop turned 90° and that one's mirror image —
#: the second opinion's first look.
ASTIGMATISM_VIEWS: tuple[int, ...] = (0, 1, 2, 3)
#: Crops per ONNX Runtime call: each session's memory arena grows to its largest batch, and with the
#: isomer networks' 256 this network's added 0.25 GB to a series' peak RSS (stop 41).
ASTIGMATISM_BATCH = 32


def threshold_of(folder: str | Path) -> float | None:
    """The ``threshold_A`` [Å] of the probe-shape network in ``folder``, read from its card alone (no
    ONNX session); None where there is no readable card."""
    return three_fold_threshold_of(folder)[0]


def three_fold_threshold_of(folder: str | Path) -> tuple[float | None, float | None]:
    """``(threshold_A, three_fold_threshold_rad)`` of the probe-shape network in ``folder``, read from its
    card alone; None for what the card lacks (``astigmatism-v1`` has no three-fold output)."""
    try:
        rule = ModelCard.read(Path(folder) / CARD_NAME).data["astigmatism"]
        rad = rule.get("three_fold_threshold_rad")
        return float(rule["threshold_A"]), None if rad is None else float(rad)
    except (InputFileError, KeyError, TypeError, ValueError, AttributeError):
        return None, None


class AstigmatismNetwork(OnnxNetwork):
    """The probe-shape network (``elongation_A`` out) and its card.

    Parameters
    ----------
    folder : path, optional
        The folder of ``model.onnx`` and ``model_card.json`` (default: the shipped one).
    verify : bool
        Check the SHA-256 of the card and the weights (default True).
    """

    def __init__(self, folder: str | Path | None = None, *, verify: bool = True) -> None:
        folder = Path(folder) if folder is not None else ASTIGMATISM_DIR
        super().__init__(folder / "model.onnx", ModelCard.read(folder / CARD_NAME), verify=verify)

    @property
    def threshold_A(self) -> float:
        """Estimated extra FWHM [Å] from which a label is withheld (``"astigmatic"``)."""
        return float(self.card.data["astigmatism"]["threshold_A"])  # the card is verified: it is there

    @property
    def three_fold_threshold_rad(self) -> float | None:
        """Estimated phase [rad] of a three-fold astigmatism at the aperture's edge from which a label is
        withheld (``"astigmatic"``); None for a network without that output (``astigmatism-v1``)."""
        value = self.card.data["astigmatism"].get("three_fold_threshold_rad")
        return None if value is None else float(value)

    @property
    def thresholds(self) -> np.ndarray:
        """One threshold per output: :attr:`threshold_A`, then :attr:`three_fold_threshold_rad` where
        the network has that output (``astigmatism-v2``)."""
        rad = self.three_fold_threshold_rad
        return np.array([self.threshold_A] + ([] if rad is None else [rad]), dtype=np.float64)

    def estimate(self, crops: np.ndarray, views: Sequence[int] = ASTIGMATISM_VIEWS) -> np.ndarray:
        """Every output, one row per crop ``(N, outputs)``: the probe's estimated extra FWHM [Å] along
        its long axis, then (``astigmatism-v2``) the phase [rad] of its three-fold astigmatism at the
        aperture's edge.

        ``crops``: ``(N, 96, 96)`` — the second opinion's crops of the clusters (its
        :meth:`~clusterspy.predict.Model.crop_pixel_size_A`); any intensity unit.
        """
        return self._mean(self.run_views(crops, views, ASTIGMATISM_BATCH))

    def estimate_A(self, crops: np.ndarray, views: Sequence[int] = ASTIGMATISM_VIEWS) -> np.ndarray:
        """The probe's estimated extra FWHM [Å] along its long axis, one per crop ``(N,)``."""
        return self.estimate(crops, views)[:, 0]

    def submit_estimate(self, crops: np.ndarray, pool: Executor,
                        views: Sequence[int] = ASTIGMATISM_VIEWS) -> Callable[[], np.ndarray]:
        """:meth:`estimate` started on the worker threads of ``pool``: a function that waits and
        returns the same numbers."""
        wait = self.submit_views(crops, pool, views, ASTIGMATISM_BATCH)
        return lambda: self._mean(wait())

    def drawn(self, estimates: np.ndarray) -> np.ndarray:
        """Whether each crop's estimates (:meth:`estimate`, ``(N, outputs)``; or :meth:`estimate_A`'s
        ``(N,)``) reach a threshold (:attr:`thresholds`): the probe looks astigmatic, and the default
        withholds the label (``"astigmatic"``)."""
        e = np.asarray(estimates, dtype=np.float64)
        if e.ndim == 1:
            return e >= self.threshold_A
        return np.any(e >= self.thresholds[: e.shape[1]], axis=1)

    @staticmethod
    def _mean(outputs: list[list[np.ndarray]]) -> np.ndarray:
        e = np.asarray(mean_of_views(outputs)[0], dtype=np.float64)
        return e.reshape(len(e), -1)

    def summary(self) -> dict[str, object]:
        """What outputs record of it: name, id, SHA-256s and the thresholds [Å, rad]."""
        out = {"name": self.card.name, "id": self.card.id,
               "weights_sha256": self.card.data.get("weights_sha256"),
               "card_sha256": self.card.data.get("card_sha256"), "threshold_A": self.threshold_A}
        if self.three_fold_threshold_rad is not None:
            out["three_fold_threshold_rad"] = self.three_fold_threshold_rad
        return out
