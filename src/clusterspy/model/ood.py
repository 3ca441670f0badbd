"""Out-of-distribution statistics and the domain of validity of an exported model.

``clusterspy model ood MODEL_DIR --data TRAIN.zarr --spec SPEC.yaml`` (:func:`finalise`) finishes an
exported model (``model.onnx`` + ``model_card.json``) for :mod:`clusterspy.domain`:

1. the ONNX graph gains a second output, ``features``: the globally pooled activations that
   feed the linear head (the weights are untouched; the logits are bit-identical);
2. on the training set's *held-out* examples (never trained on; the calibration split), the
   features' class means and shared covariance (Ledoit–Wolf-style shrinkage) are fitted on one
   half, and the out-of-distribution threshold is the ``quantile`` of the Mahalanobis distances
   of the other half — so ``1 − quantile`` of in-domain images are flagged by construction;
3. the card gains ``field_factor`` (whole-particle crops), ``domain`` (from the specification,
   :func:`clusterspy.weights.card.domain_from_spec`) and ``ood``, and is sealed (SHA-256 of the
   card, the weights and ``ood_stats.npz``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.weights import ModelCard

#: File of the feature statistics beside the weights.
OOD_FILE = "ood_stats.npz"


def add_feature_output(onnx_path: str | Path, name: str = "features") -> bool:
    """Expose the pooled features feeding the last ``Gemm`` (the linear head) as an output.

    Returns False when the graph already has that output.
    """
    import onnx

    path = Path(onnx_path)
    m = onnx.load(str(path))
    g = m.graph
    if any(o.name == name for o in g.output):
        return False
    gemms = [n for n in g.node if n.op_type in ("Gemm", "MatMul")]
    if not gemms:
        raise ValueError(f"{path}: no linear head (Gemm/MatMul) found")
    src = gemms[-1].input[0]
    g.node.append(onnx.helper.make_node("Identity", [src], [name], name="features_out"))
    width = None
    for init in g.initializer:
        if init.name == gemms[-1].input[1]:
            dims = list(init.dims)
            trans_b = any(a.name == "transB" and a.i == 1 for a in gemms[-1].attribute)
            width = dims[1] if trans_b else dims[0]
    g.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["batch", width]))
    onnx.checker.check_model(m)
    tmp = path.with_suffix(".onnx.tmp")
    onnx.save(m, str(tmp))
    tmp.replace(path)
    return True


def fit_ood(features: np.ndarray, labels: np.ndarray, n_classes: int = 4,
            shrinkage: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Class means ``(K, F)`` and precision ``(F, F)`` of the shared, shrunk covariance."""
    f = np.asarray(features, np.float64)
    means = np.stack([f[labels == k].mean(0) for k in range(n_classes)])
    centred = f - means[labels]
    cov = centred.T @ centred / max(len(f) - n_classes, 1)
    target = np.eye(cov.shape[0]) * np.trace(cov) / cov.shape[0]
    cov = (1 - shrinkage) * cov + shrinkage * target
    return means, np.linalg.inv(cov)


def finalise(model_dir: str | Path, data: str | Path | None, spec: Any, *, quantile: float = 0.995,
             calibration_every: int = 10, n_examples: int = 2000) -> dict[str, Any]:
    """Add the features output, fit the OOD statistics, write the domain; returns the card's ``ood``."""
    from clusterspy.datasets import load, load_spec
    from clusterspy.weights import OnnxNetwork
    from clusterspy.weights.card import mahalanobis_distance

    model_dir = Path(model_dir)
    onnx_path = model_dir / "model.onnx"
    add_feature_output(onnx_path)
    full_spec = load_spec(spec)
    card = ModelCard.read(model_dir)
    if full_spec.get("field_factor"):
        card.data["field_factor"] = float(full_spec["field_factor"])
    card.data["domain"] = card.data.get("domain") or _domain(full_spec)
    card.data.pop("ood", None)
    card.data.pop("files_sha256", None)
    card.data.pop("card_sha256", None)
    card.seal()
    card.write()

    k = int(calibration_every)
    if data is not None:
        x, y, _ = load(data)
        idx = np.arange(len(y))
        held = idx[(idx // 4) % k == k - 1]
    else:  # remake the held-out examples from the specification (bit-identical: seed and index)
        x, y, held = _held_out_from_spec(full_spec, k, n_examples)
    net = OnnxNetwork(onnx_path, ModelCard.read(model_dir))
    _, feats = net.run(x[held], features=True)
    if feats is None:
        raise RuntimeError("the model has no features output")
    rng = np.random.default_rng(0)
    half = rng.permutation(len(held))
    a, b = half[: len(half) // 2], half[len(half) // 2:]
    means, precision = fit_ood(feats[a], y[held][a])
    dist_b = mahalanobis_distance(feats[b], means, precision)
    threshold = float(np.quantile(dist_b, quantile))
    np.savez(model_dir / OOD_FILE, means=means.astype(np.float32), precision=precision.astype(np.float32))
    ood = {"file": OOD_FILE, "method": "mahalanobis_tied_covariance", "threshold": threshold,
           "quantile": quantile, "n_fit": len(a), "n_threshold": len(b),
           "fitted_on": "held-out fast-simulated training examples ((index // 4) % "
                        f"{k} == {k - 1}), half for the statistics, half for the threshold",
           "distance_median_in_domain": float(np.median(dist_b))}
    card = ModelCard.read(model_dir)
    card.data["ood"] = ood
    card.seal()
    card.write()
    return ood


def _held_out_from_spec(spec: dict[str, Any], k: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``n`` held-out examples ``(index // 4) % k == k - 1`` of a specification, made
    with :func:`clusterspy.datasets.make_sample` (identical to those of its dataset)."""
    from clusterspy.datasets import make_sample

    idx = np.arange(int(spec["n_images"]))
    held = idx[(idx // 4) % k == k - 1][:n]
    made = [make_sample(spec, int(i)) for i in held]
    x = np.stack([m[0] for m in made])
    y = np.array([m[1] for m in made])
    return x, y, np.arange(len(held))


def _domain(spec: dict[str, Any]) -> dict[str, Any]:
    from clusterspy.weights.card import domain_from_spec

    return domain_from_spec(spec)
