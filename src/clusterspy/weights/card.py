"""``ModelCard``: a model's configuration travelling with its weights (cf. timm's pretrained config).

The card says what the network expects (input pixel size [Å/px], crop [px], how the field
grows with the particle, normalisation), how its logits become calibrated probabilities
(temperature) and labels ("unknown" threshold), and where its answers can be trusted
(``domain``). It is read and checked here once; every part of ClusterSpy that classifies asks
it rather than reading the JSON itself.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.errors import ImageDataError, InputFileError
from clusterspy.isomers import CLASSES, UNKNOWN

#: Folder of the shipped model.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent
#: File name of a model card.
CARD_NAME = "model_card.json"

#: Default normalisation (a card's own ``normalisation`` wins).
DEFAULT_NORMALISATION: dict[str, Any] = {
    "method": "median_percentile",
    "percentile": 99.5,
    "clip": [-3.0, 10.0],
}

#: Lattice constants [Å] of the fcc metals a card may name (for sizes in nm).
_LATTICE_A = {"Au": 4.078, "Pt": 3.924, "Pd": 3.891, "Ag": 4.086, "Cu": 3.615, "Ni": 3.524,
              "Al": 4.05, "Pb": 4.95, "Ir": 3.839, "Rh": 3.803}


def normalise_crops(crops: np.ndarray, normalisation: Mapping[str, Any] | None = None) -> np.ndarray:
    """Robust per-crop normalisation: subtract the median, divide by a high percentile.

    ``out = clip((x - median(x)) / percentile(x - median(x), p), lo, hi)`` for each crop, so
    that the detector gain, offset and dose do not matter. The training data
    (:mod:`clusterspy.model`) and inference (:mod:`clusterspy.predict`) both use it.

    Parameters
    ----------
    crops : numpy.ndarray
        ``(N, H, W)`` or ``(H, W)`` crops (any intensity unit).
    normalisation : mapping, optional
        ``{"method": "median_percentile", "percentile": p, "clip": [lo, hi]}``; default
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


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def onnx_external_data(path: str | os.PathLike) -> list[str]:
    """The external data files an ONNX model names (paths relative to its folder), sorted.

    Read from the protobuf bytes (each ``StringStringEntryProto`` whose key is ``location``), so
    that checking a model needs neither the ``onnx`` package nor loading the network.
    """
    data = Path(path).read_bytes()
    names: set[str] = set()
    for m in re.finditer(rb"\x0a\x08location\x12", data):
        i, length, shift = m.end(), 0, 0
        while i < len(data):  # the value's length: a protobuf varint
            byte = data[i]
            i += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        names.add(data[i:i + length].decode("utf-8", "replace"))
    return sorted(names)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def mahalanobis_distance(features: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Smallest Mahalanobis distance of each feature row to the class means (shared covariance).

    Parameters
    ----------
    features : numpy.ndarray
        ``(N, F)`` pooled network features.
    means : numpy.ndarray
        ``(K, F)`` class means on in-domain training images.
    precision : numpy.ndarray
        ``(F, F)`` inverse of the shared (tied) covariance.
    """
    f = np.asarray(features, np.float64)
    d2 = []
    for m in np.asarray(means, np.float64):
        z = f - m
        d2.append(np.einsum("ij,jk,ik->i", z, precision, z))
    return np.sqrt(np.maximum(np.min(np.stack(d2, 1), axis=1), 0.0))


def sphere_diameter_nm(n_atoms: float, element: str = "Au") -> float:
    """Diameter [nm] of a compact fcc particle of ``n_atoms`` atoms (``π D³/6 = N a³/4``)."""
    a = _LATTICE_A.get(element, 4.078)
    return float((1.5 * n_atoms * a**3 / math.pi) ** (1 / 3)) / 10.0


def domain_from_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The domain of validity implied by a training specification (:mod:`clusterspy.datasets`).

    Image pixel sizes: the simulated range widened by the pixel-size error trained with.
    Particle diameters: from the smallest cluster of the lightest-lattice element to the
    largest of the widest one, capped by what a fixed crop field can hold (≈ 0.85 × field) for
    models without a ``field_factor``.
    """
    elements = list(spec.get("elements", ["Au"]))
    lattices = [_LATTICE_A.get(e, 4.078) for e in elements]
    light = elements[int(np.argmin(lattices))]
    wide = elements[int(np.argmax(lattices))]
    lo_n, hi_n = (float(v) for v in spec.get("size_atoms", [100, 1100]))
    px_lo, px_hi = (float(v) for v in spec.get("image_pixel_size_A", [0.05, 0.5]))
    err = float(spec.get("scale_error") or 0.0)
    d_max = sphere_diameter_nm(hi_n, wide)
    if not spec.get("field_factor"):
        d_max = min(d_max, 0.85 * float(spec["crop_px"]) * float(spec["pixel_size_A"]) / 10.0)
    amorph = spec.get("amorphous_size_atoms")
    return {
        "contrast": "HAADF",
        "elements": elements,
        "image_pixel_size_A": [round(px_lo / (1 + err), 4), round(px_hi * (1 + err), 4)],
        "diameter_nm": [round(0.9 * sphere_diameter_nm(lo_n, light), 2), round(d_max, 2)],
        "amorphous_max_diameter_nm": round(sphere_diameter_nm(float(amorph[1]), wide), 2)
        if amorph else round(d_max, 2),
        "pixel_size_error": err,
    }


def _canonical_sha256(data: Mapping[str, Any]) -> str:
    body = {k: v for k, v in data.items() if k != "card_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


class ModelCard:
    """A model's card: input geometry, calibration, label rule and domain of validity.

    Parameters
    ----------
    data : mapping
        The card's content (``model_card.json``).
    folder : path, optional
        The folder of the card and of the files it names (weights, OOD statistics).
    """

    def __init__(self, data: Mapping[str, Any], folder: str | os.PathLike | None = None) -> None:
        self.data: dict[str, Any] = dict(data)
        self.folder = Path(folder) if folder is not None else None

    # -- reading, checking, writing --------------------------------------------------------------
    @classmethod
    def read(cls, path: str | os.PathLike | None = None) -> ModelCard:
        """Read a card: ``model_card.json``, a model folder, or an ``.onnx`` file beside its card.

        Raises
        ------
        InputFileError
            If there is no card, or it is not valid JSON.
        """
        p = Path(path) if path is not None else DEFAULT_MODEL_DIR
        if p.is_dir():
            candidates = [p / CARD_NAME]
        elif p.suffix == ".json":
            candidates = [p]
        else:
            candidates = [p.with_suffix(".json"), p.with_name(CARD_NAME)]
        for c in candidates:
            if c.is_file():
                try:
                    data = json.loads(c.read_text(encoding="utf-8"))
                except (OSError, ValueError) as exc:
                    raise InputFileError(f"cannot read the model card {c}: {exc}") from None
                if not isinstance(data, dict):
                    raise InputFileError(f"the model card {c} is not a JSON object")
                return cls(data, c.parent)
        raise InputFileError(f"no model card next to {p} (expected {candidates[-1]})")

    def verify(self, weights: str | os.PathLike | None = None) -> None:
        """Check the SHA-256 of the card itself, of the weights and of every file it lists.

        Raises
        ------
        InputFileError
            On any mismatch or missing file — the model was edited or does not belong to this
            card.
        """
        name = self.data.get("name", "model")
        expected_card = self.data.get("card_sha256")
        if not expected_card:
            raise InputFileError(
                f"the model card of {name} is not sealed (no card_sha256), so its temperature, "
                "threshold and domain cannot be verified; re-export the model (clusterspy train)"
            )
        if expected_card != _canonical_sha256(self.data):
            raise InputFileError(
                f"the model card of {name} was edited after export (its card_sha256 does not "
                "match its content); reinstall clusterspy or re-export the model"
            )
        wpath = Path(weights) if weights is not None else self.path(self.weights_file)
        expected = self.data.get("weights_sha256")
        if not expected:
            raise InputFileError(
                f"the model card of {wpath} has no 'weights_sha256'; cannot verify the "
                "weights (re-export the model with clusterspy train)"
            )
        listed = self.data.get("files_sha256", {})
        for ext in onnx_external_data(wpath) if wpath.is_file() else []:
            if ext not in listed:
                raise InputFileError(
                    f"the external data {ext!r} of {wpath.name} is not covered by the model card's "
                    "SHA-256 (files_sha256); re-export the model"
                )
        files = {wpath: expected, **{self.path(k): v for k, v in listed.items()}}
        for f, sha in files.items():
            if not f.is_file():
                raise InputFileError(f"model file not found: {f}")
            actual = sha256_file(f)
            if actual != sha:
                raise InputFileError(
                    f"SHA-256 mismatch for {f}: file is {actual[:12]}…, model card says "
                    f"{sha[:12]}…; the file is corrupt or does not belong to this card — "
                    "reinstall clusterspy or re-export the model"
                )
        if tuple(self.data.get("classes", CLASSES)) != CLASSES:
            raise InputFileError(
                f"model classes {self.data.get('classes')} differ from clusterspy's {list(CLASSES)}"
            )

    def seal(self) -> None:
        """Record the SHA-256 of every file the card names and of the card itself."""
        self.data["weights_sha256"] = sha256_file(self.path(self.weights_file))
        files = {ext: sha256_file(self.path(ext)) for ext in onnx_external_data(self.path(self.weights_file))}
        ood = self.data.get("ood")
        if ood and ood.get("file"):
            files[ood["file"]] = sha256_file(self.path(ood["file"]))
        if files:
            self.data["files_sha256"] = files
        else:
            self.data.pop("files_sha256", None)
        self.data["card_sha256"] = _canonical_sha256(self.data)

    def write(self, path: str | os.PathLike | None = None) -> Path:
        """Write the card as JSON, atomically (a temporary file renamed over the old one)."""
        out = Path(path) if path is not None else self.path(CARD_NAME)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".card-", suffix=".tmp", dir=out.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.data, fh, indent=1, default=_json_default)
                fh.write("\n")
            os.chmod(tmp, 0o644)  # mkstemp makes it private; a card is read by everyone
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return out

    def path(self, name: str) -> Path:
        """A file named by the card, in the card's folder."""
        return (self.folder or DEFAULT_MODEL_DIR) / name

    # -- what the network expects -----------------------------------------------------------------
    @property
    def name(self) -> str:
        """The model's name (``isomernet-v3``)."""
        return str(self.data.get("name", "model"))

    @property
    def id(self) -> str:
        """``name@sha12``: the model's identity in every output."""
        sha = self.data.get("weights_sha256") or ""
        return f"{self.name}@{sha[:12]}" if sha else self.name

    @property
    def weights_file(self) -> str:
        """File name of the ONNX weights."""
        return str(self.data.get("weights_file", "model.onnx"))

    @property
    def pixel_size_A(self) -> float:
        """Finest input pixel size of the network [Å/px] (the only one for fixed-field models)."""
        return float(self.data["pixel_size_A"])

    @property
    def crop_px(self) -> int:
        """Side of the network's input crop [px]."""
        return int(self.data["crop_px"])

    @property
    def field_factor(self) -> float | None:
        """The crop's field over the particle's diameter, or None for a fixed field."""
        f = self.data.get("field_factor")
        return None if f is None else float(f)

    @property
    def normalisation(self) -> dict[str, Any]:
        """Per-crop normalisation (:func:`normalise_crops`)."""
        return {**DEFAULT_NORMALISATION, **(self.data.get("normalisation") or {})}

    @property
    def tta(self) -> bool:
        """Whether logits are averaged over the 8 flips/rotations (``test_time_augmentation``)."""
        return self.data.get("test_time_augmentation") == "dihedral8"

    @property
    def temperature(self) -> float:
        """Temperature of the calibrated softmax."""
        return float(self.data.get("temperature", 1.0))

    @property
    def unknown_threshold(self) -> float:
        """Calibrated confidence below which a prediction is ``"unknown"`` (low confidence)."""
        return float(self.data.get("unknown_threshold", 0.0) or 0.0)

    @property
    def domain(self) -> dict[str, Any]:
        """Domain of validity: contrast, elements, image pixel sizes [Å/px], diameters [nm].

        Cards written before the domain was recorded get the one implied by their training
        specification (:func:`domain_from_spec`).
        """
        if isinstance(self.data.get("domain"), dict):
            return dict(self.data["domain"])
        spec = (self.data.get("training") or {}).get("dataset_spec") or {
            "crop_px": self.crop_px, "pixel_size_A": self.pixel_size_A}
        spec = {"crop_px": self.crop_px, "pixel_size_A": self.pixel_size_A, **spec}
        return domain_from_spec(spec)

    @property
    def ood(self) -> dict[str, Any] | None:
        """Out-of-distribution score settings (``file``, ``threshold``), or None."""
        o = self.data.get("ood")
        return dict(o) if isinstance(o, dict) and o.get("file") else None

    def crop_pixel_size_A(self, diameter_A: float) -> float:
        """Pixel size [Å/px] of the crop of a cluster of ``diameter_A`` [Å].

        :func:`clusterspy.detection.crop_pixel_size_A` with this card's geometry.
        """
        if self.field_factor is None or not np.isfinite(diameter_A) or diameter_A <= 0:
            return self.pixel_size_A
        return max(self.pixel_size_A, self.field_factor * float(diameter_A) / self.crop_px)

    # -- from logits to a label -------------------------------------------------------------------
    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities ``softmax(logits / temperature)``, rows in :data:`CLASSES` order."""
        return softmax(np.atleast_2d(logits), self.temperature)

    def labels(self, probabilities: np.ndarray) -> list[str]:
        """Each row's most probable class, or ``"unknown"`` below :attr:`unknown_threshold`."""
        p = np.atleast_2d(probabilities)
        best = p.argmax(axis=1)
        return [CLASSES[b] if p[i, b] >= self.unknown_threshold else UNKNOWN
                for i, b in enumerate(best)]

    def summary(self) -> dict[str, Any]:
        """The identity recorded with every output (name, SHA-256, geometry, calibration)."""
        return {
            "name": self.name, "id": self.id, "weights_sha256": self.data.get("weights_sha256"),
            "card_sha256": self.data.get("card_sha256"), "pixel_size_A": self.pixel_size_A,
            "crop_px": self.crop_px, "field_factor": self.field_factor,
            "temperature": self.temperature, "unknown_threshold": self.unknown_threshold,
            "domain": self.domain,
        }

    def get(self, key: str, default: Any = None) -> Any:
        """Dict-style access to the card's content (for code that reads ``card.get(...)``)."""
        return self.data.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def keys(self):
        """The card's keys."""
        return self.data.keys()

    def __repr__(self) -> str:
        field = "fixed field" if self.field_factor is None else f"field {self.field_factor}×D"
        return (f"ModelCard({self.id}, {self.crop_px} px ≥ {self.pixel_size_A} Å/px, {field}, "
                f"T={self.temperature:.3f}, unknown<{self.unknown_threshold:.3f})")
