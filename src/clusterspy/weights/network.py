"""``OnnxNetwork``: the exported network run with ONNX Runtime, as the card says to feed it.

Crops are normalised (:func:`clusterspy.weights.normalise_crops` with the card's settings) and,
when the card asks for test-time augmentation, logits (and pooled features) are averaged over
the 8 flips/rotations. :class:`clusterspy.predict.Model` builds the labels on it; training
(:mod:`clusterspy.model`) uses it to calibrate exactly the inference code path. No PyTorch.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from clusterspy.errors import ImageDataError, InputFileError
from clusterspy.isomers import CLASSES
from clusterspy.weights.card import ModelCard, dihedral_views, normalise_crops


class OnnxNetwork:
    """An exported isomer network and its card.

    Parameters
    ----------
    onnx_path : path
        The ``.onnx`` network (``logits`` out; optionally ``features``, the pooled features).
    card : ModelCard or dict
        Its model card.
    verify : bool
        Check the SHA-256 of the card, the weights and every file the card lists (default True).
    """

    def __init__(self, onnx_path: str | os.PathLike, card: ModelCard | dict, *, verify: bool = True) -> None:
        self.path = Path(onnx_path)
        self.card = card if isinstance(card, ModelCard) else ModelCard(card, self.path.parent)
        if not self.path.is_file():
            raise InputFileError(f"model file not found: {self.path}")
        if verify:
            self.card.verify(self.path)
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # corrupt or foreign file: one line, not a traceback
            raise InputFileError(
                f"ONNX Runtime cannot load {self.path}: {str(exc).splitlines()[0][:200]}"
            ) from None
        self._input = self._session.get_inputs()[0].name
        self.outputs = [o.name for o in self._session.get_outputs()]

    @property
    def crop_px(self) -> int:
        """Side of the input crop [px]."""
        return self.card.crop_px

    @property
    def tta(self) -> bool:
        """Whether logits are averaged over the 8 flips/rotations (card ``test_time_augmentation``)."""
        return self.card.tta

    def run(self, crops: np.ndarray, batch_size: int = 256, features: bool = False
            ) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits ``(N, 4)`` and, when ``features`` and the graph has them, pooled features ``(N, F)``.

        Both are averaged over the test-time views. ``crops``: ``(N, crop_px, crop_px)`` in any
        intensity unit (normalised inside).
        """
        x = np.asarray(crops)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1:] != (self.crop_px, self.crop_px):
            raise ImageDataError(
                f"crops must have shape (N, {self.crop_px}, {self.crop_px}), got {x.shape}; "
                "use clusterspy.detection.crop_cluster"
            )
        x = normalise_crops(x, self.card.normalisation)[:, None]
        views = dihedral_views(x) if self.tta else [x]
        want = ["logits"] + (["features"] if features and "features" in self.outputs else [])
        names = want if "logits" in self.outputs else [self.outputs[0]]
        total = np.zeros((len(x), len(CLASSES)), np.float64)
        feats: np.ndarray | None = None
        for v in views:
            v = np.ascontiguousarray(v, dtype=np.float32)
            for i in range(0, len(v), batch_size):
                got = self._session.run(names, {self._input: v[i : i + batch_size]})
                total[i : i + batch_size] += got[0]
                if len(got) > 1:
                    if feats is None:
                        feats = np.zeros((len(x), got[1].shape[1]), np.float64)
                    feats[i : i + batch_size] += got[1]
        n = len(views)
        return (total / n).astype(np.float32), None if feats is None else feats / n
