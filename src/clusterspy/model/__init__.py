"""The isomer classifier: network, training, calibration and ONNX export (PyTorch lives here only).

Public API (imports are lazy: ``import clusterspy.model`` does not import PyTorch):

- :func:`train` — ``train(config, out_dir, *, resume=True, device="auto") -> Path`` of model.onnx,
  composed of :mod:`~clusterspy.model.data`, :mod:`~clusterspy.model.loop` and
  :func:`~clusterspy.model.export.export_trained`
- :func:`create_model` — build a registered network by name
- :func:`export_onnx`; confidence calibration (:mod:`~clusterspy.model.confidence_calibration`):
  :func:`calibrate_confidence`, :func:`fit_temperature`, :func:`choose_threshold`

Commands: ``clusterspy train``, ``clusterspy model recalibrate`` and ``clusterspy model ood``;
the shipped model was trained with ``clusterspy train --config configs/train_v2.yaml --out runs/v2``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "train": "clusterspy.model.training",
    "load_config": "clusterspy.model.training",
    "DEFAULT_CONFIG": "clusterspy.model.training",
    "create_model": "clusterspy.model.network",
    "IsomerNet": "clusterspy.model.network",
    "export_onnx": "clusterspy.model.export",
    "write_card": "clusterspy.model.export",
    "fit_temperature": "clusterspy.model.confidence_calibration",
    "choose_threshold": "clusterspy.model.confidence_calibration",
    "expected_calibration_error": "clusterspy.model.confidence_calibration",
    "calibrate_confidence": "clusterspy.model.confidence_calibration",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'clusterspy.model' has no attribute {name!r}")
