"""predict: ONNX Runtime inference, calibrated probabilities, classify() schema, integrity."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from clusterspy.errors import ImageDataError, InputFileError
from clusterspy.isomers import CLASSES, UNKNOWN
from clusterspy.predict import DEFAULT_MODEL, ClusterResult, load_model, normalise_crops

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason="no shipped weights")

KEYS = {"file", "frame", "cluster", "x_px", "y_px", "diameter_nm", "label", "reason", "confidence",
        "probabilities", "ood_distance", "model", "pixel_size_factor"}


def test_card_and_probabilities():
    model = load_model()
    assert load_model() is model  # cached
    card = model.card
    assert card["classes"] == list(CLASSES)
    for key in ("pixel_size_A", "crop_px", "temperature", "unknown_threshold", "normalisation",
                "weights_sha256", "training", "metrics"):
        assert key in card
    n = model.crop_px
    crops = np.random.default_rng(0).gamma(2.0, 1.0, (6, n, n)).astype(np.float32)
    p = model.predict_crops(crops)
    assert p.shape == (6, 4) and np.all(p >= 0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    # normalisation makes the prediction independent of gain and offset
    np.testing.assert_allclose(model.predict_crops(crops * 7.0 + 3.0), p, atol=1e-5)
    labels = model.labels(p)
    assert all(lab in (*CLASSES, UNKNOWN) for lab in labels)
    with pytest.raises(ImageDataError):
        model.predict_crops(np.zeros((2, n + 1, n)))


def test_normalise_crops_robust():
    x = np.zeros((2, 16, 16), np.float32)
    x[0, 5:9, 5:9] = 10.0
    out = normalise_crops(x)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert np.median(out[0]) == 0.0 and out[0].max() <= 10.0
    with pytest.raises(ImageDataError):
        normalise_crops(np.full((1, 4, 4), np.nan))


def test_sha_mismatch_is_a_clear_error(tmp_path):
    for f in DEFAULT_MODEL.parent.iterdir():
        if f.is_file() and f.suffix in (".onnx", ".json", ".npz"):
            shutil.copy(f, tmp_path / f.name)
    load_model(tmp_path / "model.onnx")  # an intact copy loads
    weights = bytearray((tmp_path / "model.onnx").read_bytes())
    weights[-1] ^= 0xFF  # one flipped byte in the weights
    (tmp_path / "model.onnx").write_bytes(bytes(weights))
    with pytest.raises(InputFileError, match="SHA-256 mismatch"):
        load_model(tmp_path / "model.onnx")
    card = json.loads(DEFAULT_MODEL.with_name("model_card.json").read_text())
    card["weights_sha256"] = "0" * 64  # the card edited to match other weights
    (tmp_path / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(InputFileError, match="edited after export"):
        load_model(tmp_path / "model.onnx")
    with pytest.raises(InputFileError, match="not found"):
        load_model(tmp_path / "missing.onnx")


def _single_cluster_image():
    pytest.importorskip("ase")
    from clusterspy.simulation import Acquisition, Microscope, simulate
    from clusterspy.structures import cluster

    atoms = cluster("icosahedral", 309, "Au", np.random.default_rng(1), orientation="5-fold")
    return simulate(atoms, Microscope(), pixel_size=0.25, extent=60.0, rng=2,
                    acquisition=Acquisition(dose_e_per_A2=1e5))


def test_classify_single_cluster_json_schema():
    from clusterspy.predict import classify

    image = _single_cluster_image()
    results = classify(image, file="sim.npy", frame=3)
    assert len(results) == 1
    r = results[0]
    assert isinstance(r, ClusterResult)
    d = r.to_dict()
    assert set(d) == KEYS and set(d["probabilities"]) == set(CLASSES)
    json.dumps(d)
    assert d["file"] == "sim.npy" and d["frame"] == 3 and d["cluster"] == 0
    assert d["label"] in (*CLASSES, UNKNOWN)
    assert abs(sum(d["probabilities"].values()) - 1) < 1e-6
    assert d["confidence"] == pytest.approx(max(d["probabilities"].values()))
    rows, cols = image.shape
    assert abs(d["x_px"] - cols / 2) < 20 and abs(d["y_px"] - rows / 2) < 20
    # a bare array needs its pixel size
    same = classify(np.asarray(image.data), pixel_size=image.pixel_size_A)
    assert same[0].to_dict()["probabilities"] == pytest.approx(d["probabilities"])


def test_predict_path_imports_no_torch():
    code = (
        "import sys, numpy as np\n"
        "from clusterspy.predict import load_model\n"
        "m = load_model(); m.predict_crops(np.ones((1, m.crop_px, m.crop_px)))\n"
        "bad = [k for k in ('torch', 'abtem', 'ase') if k in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_shipped_models_load_by_name():
    default = load_model()  # isomernet-v2, and isomernet-v5 / isomernet-v3 for the clusters outside its sizes
    assert load_model(default.card.name) is default.primary  # "isomernet-v2" by its name: that model alone
    v3 = load_model("isomernet-v3")
    assert v3.card.name == "isomernet-v3" and v3.card.id != default.card.id
    with pytest.raises(InputFileError, match="not found"):
        load_model("isomernet-v0")


def test_shipped_model_covering_reads_cards_as_load_model_does(tmp_path, monkeypatch):
    """A shipped model whose card predates the recorded domain is offered with the domain implied by
    its training specification (ModelCard.domain, as load_model judges with it); an unreadable card
    is still no offer."""
    from clusterspy import predict
    from clusterspy.weights import ModelCard

    old = tmp_path / "old-net"
    old.mkdir()
    (old / "model.onnx").write_bytes(b"")
    spec = {"crop_px": 64, "pixel_size_A": 0.25, "field_factor": 2.0, "size_atoms": [100, 1100]}
    (old / "model_card.json").write_text(json.dumps({"name": "old-net", "pixel_size_A": 0.25, "crop_px": 64,
                                                     "training": {"dataset_spec": spec}}))
    broken = tmp_path / "broken-net"
    broken.mkdir()
    (broken / "model.onnx").write_bytes(b"")
    (broken / "model_card.json").write_text("[1, 2]")
    monkeypatch.setattr(predict, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(predict, "DEFAULT_MODEL", tmp_path / "none.onnx")
    lo, hi = ModelCard.read(old).domain["diameter_nm"]
    assert predict.shipped_model_covering([lo, hi, 100.0]) == ("old-net", (lo, hi))
    assert predict.shipped_model_covering([100.0]) is None
    assert predict.shipped_model_covering([lo], exclude="old-net") is None


def test_shipped_model_covering_offers_the_model_the_default_routes_large_particles_to():
    """For a particle of 6 nm (v3's and v5's domains both hold it) the offer is v5, the model the
    default judges it with (ROUTE_FROM_NM); for 3 nm, v3 (below v5's route) — not the first found."""
    from clusterspy import predict

    assert predict.shipped_model_covering([6.0, 7.5], exclude="isomernet-v2")[0] == "isomernet-v5"
    assert predict.shipped_model_covering([3.0], exclude="isomernet-v2")[0] == "isomernet-v3"
    assert predict.shipped_model_covering([6.0], exclude="isomernet-v5")[0] == "isomernet-v3"


def test_inference_on_worker_threads_gives_the_same_numbers_to_the_last_bit():
    """What a series runs on its worker threads (one task a test-time view) is ``infer`` exactly."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(3)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for m in load_model().models:
            crops = rng.gamma(2.0, 1.0, (5, m.crop_px, m.crop_px)).astype(np.float32)
            probs, dist = m.infer(crops)
            wait = m.submit_infer(crops, pool)
            probs_t, dist_t = wait()
            assert probs_t.shape == (5, 4) and np.array_equal(probs_t, probs)
            assert dist is not None and np.array_equal(dist_t, dist)
