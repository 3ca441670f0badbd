"""``OnnxNetwork``: the exported network run with ONNX Runtime, as the card says to feed it.

Crops are normalised (:func:`clusterspy.weights.normalise_crops` with the card's settings) and,
when the card asks for test-time augmentation, logits (and pooled features) are averaged over
the 8 flips/rotations. :class:`clusterspy.predict.Model` builds the labels on it; training
(:mod:`clusterspy.model`) uses it to calibrate exactly the inference code path. No PyTorch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.errors import ImageDataError, InputFileError
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
        self._session = self._new_session(None)
        self._one_core_session: Any = None  # made by the first submit()
        self._input = self._session.get_inputs()[0].name
        self.outputs = [o.name for o in self._session.get_outputs()]

    def _new_session(self, threads: int | None) -> Any:
        """An ONNX Runtime session on ``threads`` cores (None: all, spinning between calls; the one-core
        session of :meth:`submit` does not spin, to leave the cores to the caller's own work)."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(self.path), sess_options=opts,
                                           providers=["CPUExecutionProvider"])
        except Exception as exc:  # corrupt or foreign file: one line, not a traceback
            raise InputFileError(
                f"ONNX Runtime cannot load {self.path}: {str(exc).splitlines()[0][:200]}"
            ) from None
        return session

    @property
    def crop_px(self) -> int:
        """Side of the input crop [px]."""
        return self.card.crop_px

    @property
    def tta(self) -> bool:
        """Whether logits are averaged over the 8 flips/rotations (card ``test_time_augmentation``)."""
        return self.card.tta

    @property
    def n_views(self) -> int:
        """Test-time views whose outputs are averaged: 8 with :attr:`tta`, else 1."""
        return 8 if self.tta else 1

    def run(self, crops: np.ndarray, batch_size: int = 256, features: bool = False
            ) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits ``(N, 4)`` and, when ``features`` and the graph has them, pooled features ``(N, F)``.

        Both are averaged over the test-time views. ``crops``: ``(N, crop_px, crop_px)`` in any
        intensity unit (normalised inside).
        """
        return mean_of_views(self.run_views(crops, range(self.n_views), batch_size, features))

    def run_views(self, crops: np.ndarray, views: Sequence[int], batch_size: int = 256, features: bool = False
                  ) -> list[list[np.ndarray]]:
        """The outputs (logits, and features as in :meth:`run`) of each test-time view ``views``
        (indices into :func:`~clusterspy.weights.card.dihedral_views`, in that order), not averaged:
        :func:`mean_of_views` of all :attr:`n_views` in order is :meth:`run`, to the last bit."""
        x, names = self._views(crops, features, views)
        return [self._run_view(self._session, v, names, batch_size) for v in x]

    def submit(self, crops: np.ndarray, pool: Executor, batch_size: int = 256, features: bool = False
               ) -> Callable[[], tuple[np.ndarray, np.ndarray | None]]:
        """:meth:`run` started on ``pool``, one task per test-time view, each on one core.

        Returns a function that waits for the views and gives what :meth:`run` gives — the same
        numbers to the last bit (the views are summed in the same order). A series classifies its
        batches so on the worker threads while the caller reads and checks the next frames: a
        view's task runs whenever a core is free, where a run on two cores waits at every layer
        for the busier one.
        """
        wait = self.submit_views(crops, pool, range(self.n_views), batch_size, features)
        return lambda: mean_of_views(wait())

    def submit_views(self, crops: np.ndarray, pool: Executor, views: Sequence[int], batch_size: int = 256,
                     features: bool = False) -> Callable[[], list[list[np.ndarray]]]:
        """:meth:`run_views` started on ``pool`` (one task per view, each on one core, as
        :meth:`submit`): a function that waits and returns the same outputs."""
        if self._one_core_session is None:
            self._one_core_session = self._new_session(1)
        session = self._one_core_session

        def start() -> list[Future]:  # normalising and turning the crops is a worker's job too
            x, names = self._views(crops, features, views)
            return [pool.submit(self._run_view, session, v, names, batch_size) for v in x]

        started = pool.submit(start)
        return lambda: [f.result() for f in started.result()]

    def _views(self, crops: np.ndarray, features: bool, which: Sequence[int] | None = None
               ) -> tuple[list[np.ndarray], list[str]]:
        """The normalised test-time views ``(N, 1, c, c)`` of ``crops`` (those numbered ``which``,
        default all) and the outputs to fetch."""
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
        if which is not None:
            views = [views[k] for k in which]
        want = ["logits"] + (["features"] if features and "features" in self.outputs else [])
        names = want if "logits" in self.outputs else [self.outputs[0]]
        return [np.ascontiguousarray(v, dtype=np.float32) for v in views], names

    def _run_view(self, session: Any, v: np.ndarray, names: list[str], batch_size: int
                  ) -> list[np.ndarray]:
        """The outputs ``names`` of one view ``(N, 1, c, c)``, ``batch_size`` crops a call."""
        parts = [session.run(names, {self._input: v[i : i + batch_size]})
                 for i in range(0, len(v), batch_size)]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(names))]


def mean_of_views(outputs: list[list[np.ndarray]]) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits (float32) and features (float64, or None) averaged over the views (outputs of
    :meth:`OnnxNetwork.run_views`), summed in order."""
    total = np.zeros(outputs[0][0].shape, np.float64)
    feats = np.zeros(outputs[0][1].shape, np.float64) if len(outputs[0]) > 1 else None
    for out in outputs:
        total += out[0]
        if feats is not None:
            feats += out[1]
    n = len(outputs)
    return (total / n).astype(np.float32), None if feats is None else feats / n
