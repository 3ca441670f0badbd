"""The shipped network and its model card: where training (:mod:`clusterspy.model`) and
inference (:mod:`clusterspy.predict`) meet.

A model folder holds ``model.onnx`` (logits, and from v3 on the pooled features the
out-of-distribution score uses), ``model_card.json`` (classes, input pixel size and crop,
normalisation, temperature, "unknown" threshold, domain of validity, training record) and,
optionally, ``ood_stats.npz`` (class means and precision matrix of the features on in-domain
simulated images). :class:`ModelCard` reads them, checks one SHA-256 per file, and is the
one place that turns logits into calibrated probabilities and probabilities into a label.
Nothing here imports PyTorch.
"""

from clusterspy.weights.card import (
    CARD_NAME,
    DEFAULT_MODEL_DIR,
    DEFAULT_NORMALISATION,
    ModelCard,
    dihedral_views,
    normalise_crops,
    sha256_file,
    softmax,
)
from clusterspy.weights.network import OnnxNetwork, mean_of_views

__all__ = [
    "CARD_NAME",
    "DEFAULT_MODEL_DIR",
    "DEFAULT_NORMALISATION",
    "ModelCard",
    "OnnxNetwork",
    "dihedral_views",
    "mean_of_views",
    "normalise_crops",
    "sha256_file",
    "softmax",
]
