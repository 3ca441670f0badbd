"""ONNX export of a trained network and the model card that travels with it."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.isomers import CLASSES

#: ONNX opset of the exported graph.
OPSET = 17


def export_onnx(model, path: str | Path, crop_px: int, *, check: bool = True,
                atol: float = 1e-4, output_name: str = "logits") -> Path:
    """Export ``model`` (logits out) to ONNX with a dynamic batch axis (TorchScript exporter).

    Input ``crops``: ``(N, 1, crop_px, crop_px)`` float32, already normalised by
    :func:`clusterspy.weights.normalise_crops`; output ``output_name`` (``logits``: ``(N, 4)``).
    With ``check``, ONNX Runtime outputs are compared with PyTorch's (``atol``).
    """
    import torch

    path = Path(path)
    model = model.eval().cpu()
    dummy = torch.randn(2, 1, crop_px, crop_px, generator=torch.Generator().manual_seed(0))
    torch.onnx.export(
        model, (dummy,), str(path), input_names=["crops"], output_names=[output_name],
        dynamic_axes={"crops": {0: "batch"}, output_name: {0: "batch"}}, opset_version=OPSET,
        dynamo=False,
    )
    if check:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        x = torch.randn(5, 1, crop_px, crop_px, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            ref = model(x).numpy()
        got = sess.run(None, {"crops": x.numpy()})[0]
        err = float(np.abs(ref - got).max())
        if err > atol:
            raise RuntimeError(f"ONNX export differs from PyTorch by {err:.2e} > {atol:.0e}")
    return path


def write_card(onnx_path: str | Path, *, spec: dict[str, Any], temperature: float,
               threshold: float, metrics: dict[str, Any], training: dict[str, Any],
               network: dict[str, Any], unknown_precision: float) -> Path:
    """Write ``model_card.json`` next to ``onnx_path``, sealed (SHA-256 of card and weights), atomically.

    The card records the crop geometry (``pixel_size_A``, ``crop_px``, ``field_factor``) and the
    domain of validity implied by the training specification
    (:func:`clusterspy.weights.card.domain_from_spec`).
    """
    from clusterspy.weights import DEFAULT_NORMALISATION, ModelCard, sha256_file
    from clusterspy.weights.card import _json_default, domain_from_spec

    onnx_path = Path(onnx_path)
    card = {
        "name": training.get("config", {}).get("name", "isomernet"),
        "format": "clusterspy-model-card-1",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "classes": list(CLASSES),
        "pixel_size_A": float(spec["pixel_size_A"]),
        "crop_px": int(spec["crop_px"]),
        "input": {"name": "crops", "shape": ["N", 1, int(spec["crop_px"]), int(spec["crop_px"])],
                  "dtype": "float32", "note": "normalised crops (clusterspy.weights.normalise_crops)"},
        "output": {"name": "logits", "shape": ["N", len(CLASSES)],
                   "note": "calibrated probabilities = softmax(logits / temperature)"},
        "normalisation": dict(DEFAULT_NORMALISATION),
        "temperature": float(temperature),
        "unknown_threshold": float(threshold),
        "unknown_threshold_target": f"precision of accepted predictions >= {unknown_precision}",
        "network": network,
        "metrics": metrics,
        "training": training,
        "weights_file": onnx_path.name,
        "weights_sha256": sha256_file(onnx_path),
    }
    if spec.get("field_factor"):
        card["field_factor"] = float(spec["field_factor"])
    card["domain"] = domain_from_spec(spec)
    sealed = ModelCard(json.loads(json.dumps(card, default=_json_default)), onnx_path.parent)
    sealed.seal()  # card + weights + external data under one hash: an edited card is refused
    return sealed.write(onnx_path.with_name("model_card.json"))


def export_trained(model: Any, data: Any, cfg: dict[str, Any], spec: dict[str, Any], out: Path,
                   device: str, training: dict[str, Any]) -> Path:
    """Calibrate a trained network's confidence, export it to ONNX and write its card and figures.

    Parameters
    ----------
    model : torch.nn.Module
        The trained network.
    data : clusterspy.model.data.TrainingData
        Its data: the held-out calibration split and the validation set calibrate the confidence.
    cfg, spec : dict
        The training config and the training set's specification.
    out : pathlib.Path
        The run's folder: ``model.onnx``, ``model_card.json``, ``loss_curves.png`` ... go there.
    device : str
        Where ``model`` is (``"cpu"``, ``"cuda"``).
    training : dict
        The card's ``training`` record (config, seeds, command, history, times ...).

    Returns
    -------
    pathlib.Path
        Path of ``model.onnx``.
    """
    from clusterspy.model import confidence_calibration as cal
    from clusterspy.model.loop import logits_of

    cal_logits = logits_of(model, data.x[data.cal_idx], device)
    val_logits = logits_of(model, data.val_x, device) if data.val_x is not None else None
    temperature, threshold, metrics = cal.calibrate_confidence(
        cal_logits, data.labels[data.cal_idx], val_logits, data.val_y,
        float(cfg["unknown_precision"]))
    onnx_path = out / "model.onnx"
    export_onnx(model.cpu(), onnx_path, crop_px=int(spec["crop_px"]))
    write_card(onnx_path, spec=spec, temperature=temperature, threshold=threshold,
               metrics=metrics, training=training, network=cfg["network"],
               unknown_precision=float(cfg["unknown_precision"]))
    if cfg.get("test_time_augmentation", True):
        cal.recalibrate(out, tta=True)  # TTA (8 flips/rotations) kept if it helps held-out
    try:
        from clusterspy.model.figures import plot_training

        plot_training(out, training["history"],
                      metrics.get("prism_validation", {}).get("confusion"))
    except Exception as exc:
        print(f"warning: figures not written: {exc}", flush=True)
    return onnx_path
