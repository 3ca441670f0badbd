"""Classify clusters with the shipped ONNX model: crops → calibrated isomer probabilities.

Nothing here imports PyTorch, abTEM or ASE: inference runs on ONNX Runtime, so the light
``pip install clusterspy`` is enough to classify.

The per-crop normalisation :func:`normalise_crops` lives here and is *also* the function the
training pipeline (:mod:`clusterspy.datasets`) applies to every training crop, so training and
inference see identically prepared inputs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.errors import ImageDataError, InputFileError, NoClusterFoundError
from clusterspy.image import Image
from clusterspy.isomers import CLASSES, UNKNOWN

#: Folder of the shipped weights.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: The shipped network and its model card.
DEFAULT_MODEL = WEIGHTS_DIR / "model.onnx"
CARD_NAME = "model_card.json"

#: Default normalisation (also written in the model card, which wins when present).
DEFAULT_NORMALISATION: dict[str, Any] = {
    "method": "median_percentile",
    "percentile": 99.5,
    "clip": [-3.0, 10.0],
}


def normalise_crops(crops: np.ndarray, normalisation: dict[str, Any] | None = None) -> np.ndarray:
    """Robust per-crop normalisation: subtract the median, divide by a high percentile.

    ``out = clip((x - median(x)) / percentile(x - median(x), p), lo, hi)`` for each crop, so
    that the detector gain, offset and dose do not matter. Used for both training and inference.

    Parameters
    ----------
    crops : numpy.ndarray
        ``(N, H, W)`` or ``(H, W)`` crops (any intensity unit).
    normalisation : dict, optional
        ``{"method": "median_percentile", "percentile": p, "clip": [lo, hi]}``; the default is
        :data:`DEFAULT_NORMALISATION`.

    Returns
    -------
    numpy.ndarray
        float32 array of the same shape.
    """
    norm = {**DEFAULT_NORMALISATION, **(normalisation or {})}
    if norm["method"] != "median_percentile":
        raise ValueError(f"unknown normalisation method {norm['method']!r}")
    x = np.asarray(crops, dtype=np.float32)
    squeeze = x.ndim == 2
    if squeeze:
        x = x[None]
    if x.ndim != 3:
        raise ImageDataError(f"crops must be (N, H, W), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ImageDataError("crops contain NaN or Inf values")
    flat = x.reshape(len(x), -1)
    med = np.median(flat, axis=1)
    centred = flat - med[:, None]
    scale = np.percentile(centred, float(norm["percentile"]), axis=1)
    fallback = centred.std(axis=1)
    scale = np.where(scale > 1e-12, scale, np.where(fallback > 1e-12, fallback, 1.0))
    out = centred / scale[:, None]
    lo, hi = norm["clip"]
    out = np.clip(out, lo, hi).reshape(x.shape).astype(np.float32)
    return out[0] if squeeze else out


def dihedral_views(x: np.ndarray) -> list[np.ndarray]:
    """The 8 flips/rotations (dihedral group D4) of images ``(..., H, W)``."""
    views = []
    for k in range(4):
        r = np.rot90(x, k, axes=(-2, -1))
        views.extend([r, r[..., ::-1]])
    return views


def sha256_file(path: str | Path) -> str:
    """SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Model:
    """An ONNX isomer classifier and its model card.

    Parameters
    ----------
    onnx_path : path
        The ``.onnx`` network (logits out).
    card : dict
        The model card (see ``clusterspy/weights/model_card.json``): ``classes``,
        ``pixel_size_A`` [Å/px], ``crop_px`` [px], ``normalisation``, ``temperature``,
        ``unknown_threshold``, training config, metrics, ``weights_sha256``.
    verify : bool
        Check the SHA-256 of the weights against the card (default True).
    """

    def __init__(self, onnx_path: str | Path, card: dict[str, Any], *, verify: bool = True) -> None:
        self.path = Path(onnx_path)
        self.card = card
        if not self.path.is_file():
            raise InputFileError(f"model file not found: {self.path}")
        if verify:
            expected = card.get("weights_sha256")
            if not expected:
                raise InputFileError(
                    f"the model card of {self.path} has no 'weights_sha256'; cannot verify the "
                    "weights (re-export the model with clusterspy train)"
                )
            actual = sha256_file(self.path)
            if actual != expected:
                raise InputFileError(
                    f"SHA-256 mismatch for {self.path}: file is {actual[:12]}…, model card says "
                    f"{expected[:12]}…; the weights are corrupt or do not belong to this card — "
                    "reinstall clusterspy or re-export the model"
                )
        if tuple(card.get("classes", CLASSES)) != CLASSES:
            raise InputFileError(
                f"model classes {card.get('classes')} differ from clusterspy's {list(CLASSES)}"
            )
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name

    # -- calibration -------------------------------------------------------------------------
    @property
    def pixel_size_A(self) -> float:
        """Model input pixel size [Å/px]."""
        return float(self.card["pixel_size_A"])

    @property
    def crop_px(self) -> int:
        """Model input crop size [px]."""
        return int(self.card["crop_px"])

    @property
    def temperature(self) -> float:
        """Temperature of the calibrated softmax."""
        return float(self.card.get("temperature", 1.0))

    @property
    def unknown_threshold(self) -> float:
        """Confidence below which a prediction is labelled ``"unknown"``."""
        return float(self.card.get("unknown_threshold", 0.0))

    # -- inference ---------------------------------------------------------------------------
    def predict_logits(self, crops: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Raw network logits ``(N, 4)`` of crops ``(N, crop_px, crop_px)`` (normalised inside)."""
        x = np.asarray(crops)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1:] != (self.crop_px, self.crop_px):
            raise ImageDataError(
                f"crops must have shape (N, {self.crop_px}, {self.crop_px}) at "
                f"{self.pixel_size_A} Å/px, got {x.shape}; use clusterspy.detection.crop_cluster"
            )
        x = normalise_crops(x, self.card.get("normalisation"))[:, None]
        views = dihedral_views(x) if self.tta else [x]
        total = np.zeros((len(x), len(CLASSES)), np.float64)
        for v in views:
            v = np.ascontiguousarray(v, dtype=np.float32)
            for i in range(0, len(v), batch_size):
                total[i : i + batch_size] += self._session.run(
                    None, {self._input: v[i : i + batch_size]})[0]
        return (total / len(views)).astype(np.float32)

    @property
    def tta(self) -> bool:
        """Whether logits are averaged over the 8 flips/rotations (card ``test_time_augmentation``)."""
        return self.card.get("test_time_augmentation") == "dihedral8"

    def predict_crops(self, crops: np.ndarray) -> np.ndarray:
        """Calibrated probabilities ``(N, 4)`` in the order of :data:`clusterspy.isomers.CLASSES`.

        Parameters
        ----------
        crops : numpy.ndarray
            ``(N, crop_px, crop_px)`` crops at the model pixel size (:attr:`pixel_size_A`),
            cluster centred; any intensity unit (each crop is normalised inside).
        """
        return softmax(self.predict_logits(crops), self.temperature)

    def labels(self, probabilities: np.ndarray) -> list[str]:
        """Label of each row: the most probable class, or ``"unknown"`` below the threshold."""
        p = np.atleast_2d(probabilities)
        best = p.argmax(axis=1)
        return [
            CLASSES[b] if p[i, b] >= self.unknown_threshold else UNKNOWN
            for i, b in enumerate(best)
        ]

    def __repr__(self) -> str:
        return (
            f"Model({self.path.name}, {self.crop_px} px at {self.pixel_size_A} Å/px, "
            f"T={self.temperature:.3f}, unknown<{self.unknown_threshold:.3f})"
        )


def _read_card(onnx_path: Path) -> dict[str, Any]:
    for candidate in (onnx_path.with_suffix(".json"), onnx_path.with_name(CARD_NAME)):
        if candidate.is_file():
            with open(candidate, encoding="utf-8") as fh:
                return json.load(fh)
    raise InputFileError(
        f"no model card next to {onnx_path} (expected {onnx_path.with_name(CARD_NAME)})"
    )


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime: float) -> Model:
    p = Path(path)
    return Model(p, _read_card(p))


def load_model(path: str | Path | None = None) -> Model:
    """Load (and cache) an ONNX isomer model with its model card, verifying its SHA-256.

    Parameters
    ----------
    path : path, optional
        An ``.onnx`` file (its card is ``model_card.json`` or ``<stem>.json`` next to it) or a
        folder holding ``model.onnx``; default: the weights shipped in ``clusterspy/weights``.

    Raises
    ------
    InputFileError
        If the file or its card is missing, or the SHA-256 of the weights does not match.
    """
    p = Path(path) if path is not None else DEFAULT_MODEL
    if p.is_dir():
        p = p / "model.onnx"
    if not p.is_file():
        hint = " (the package was installed without its weights)" if path is None else ""
        raise InputFileError(f"model file not found: {p}{hint}")
    return _load_cached(str(p.resolve()), p.stat().st_mtime)


@dataclass
class ClusterResult:
    """The classification of one cluster in one frame.

    ``x_px``, ``y_px`` are the cluster centre in the *input image's* pixels (col, row);
    ``confidence`` is the calibrated probability of the most probable class; ``label`` is that
    class or ``"unknown"`` when ``confidence`` is below the model card's threshold.
    """

    file: str | None
    frame: int
    cluster: int
    x_px: float
    y_px: float
    label: str
    confidence: float
    probabilities: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``clusterspy classify --format json``."""
        return {
            "file": None if self.file is None else str(self.file),
            "frame": int(self.frame),
            "cluster": int(self.cluster),
            "x_px": float(self.x_px),
            "y_px": float(self.y_px),
            "label": str(self.label),
            "confidence": float(self.confidence),
            "probabilities": {c: float(self.probabilities[c]) for c in CLASSES},
        }


def _as_image(image: Any, pixel_size: float | None) -> tuple[Image, str | None]:
    """Turn a path / array / Image / HyperSpy Signal2D into a checked :class:`Image` and a name."""
    from clusterspy.io import as_image

    img = as_image(image, pixel_size)
    if isinstance(image, (str, Path)):
        return img, str(image)
    name = img.metadata.get("source") or img.metadata.get("file") or img.metadata.get("title") or None
    return img, None if name is None else str(name)


def classify(
    image: Any,
    pixel_size: float | None = None,
    *,
    model: Model | str | Path | None = None,
    file: str | None = None,
    frame: int = 0,
) -> list[ClusterResult]:
    """Find every cluster in an image and classify its isomer.

    Parameters
    ----------
    image : path, numpy.ndarray, Image or hyperspy Signal2D
        A 2-D HAADF-STEM image. A bare array needs ``pixel_size``.
    pixel_size : float, optional
        Pixel size [Å/px]; overrides the file's calibration when given.
    model : Model or path, optional
        Default: the shipped model (:func:`load_model`).
    file : str, optional
        Name recorded in the results (default: the path, if ``image`` is one).
    frame : int
        Frame index recorded in the results.

    Returns
    -------
    list of ClusterResult
        One per detected cluster, in the order of :func:`clusterspy.detection.detect_clusters`.

    Raises
    ------
    NoClusterFoundError
        If no cluster is found in the image.
    """
    from clusterspy.detection import crop_cluster, detect_clusters

    mdl = model if isinstance(model, Model) else load_model(model)
    img, name = _as_image(image, pixel_size)
    detections = detect_clusters(img)
    if not detections:
        raise NoClusterFoundError(
            f"no cluster found in {file or name or 'the image'} "
            f"({img.shape[1]}×{img.shape[0]} px at {img.pixel_size_A:g} Å/px); check the pixel "
            "size and that the image is HAADF (bright clusters on a dark background)"
        )
    crops = np.stack(
        [crop_cluster(img, d, mdl.pixel_size_A, mdl.crop_px) for d in detections]
    )
    probs = mdl.predict_crops(crops)
    labels = mdl.labels(probs)
    return [
        ClusterResult(
            file=file if file is not None else name,
            frame=frame,
            cluster=i,
            x_px=float(d.x_px),
            y_px=float(d.y_px),
            label=labels[i],
            confidence=float(probs[i].max()),
            probabilities={c: float(probs[i, k]) for k, c in enumerate(CLASSES)},
        )
        for i, d in enumerate(detections)
    ]
