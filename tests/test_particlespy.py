"""ParticleSpy round trip (real ParticleSpy) and HyperSpy Signal2D → Image."""

from __future__ import annotations

from importlib.resources import files

import numpy as np
import pytest

from clusterspy.errors import CalibrationError, ImageDataError
from clusterspy.isomers import CLASSES, UNKNOWN

hs = pytest.importorskip("hyperspy.api")


def _weights_present() -> bool:
    try:
        folder = files("clusterspy") / "weights"
        return any(p.name.endswith(".onnx") for p in folder.iterdir())
    except (FileNotFoundError, ModuleNotFoundError):
        return False


def _field_signal(seed: int = 0, pixel_A: float = 0.25, n: int = 256):
    """A simulated HAADF field of 4 separate clusters (discs of 2.33 Å lattice fringes) with noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n] * pixel_A
    img = np.full((n, n), 50.0)
    fringes = 0.6 + 0.4 * np.clip(np.cos(2 * np.pi * xx / 3.3) * np.cos(2 * np.pi * yy / 3.3), 0, None) ** 2
    for cx, cy in [(16, 16), (48, 16), (16, 48), (46, 46)]:
        r = np.hypot(xx - cx, yy - cy)
        img += 600.0 * fringes / (1.0 + np.exp((r - 10.0) / 0.8))
    img = rng.poisson(img).astype(np.float32)
    s = hs.signals.Signal2D(img)
    for ax in s.axes_manager.signal_axes:
        ax.scale, ax.units = pixel_A / 10.0, "nm"
    return s


def test_image_from_signal_calibration():
    from clusterspy.integrations.hyperspy import image_from_signal

    im = image_from_signal(_field_signal())
    assert im.pixel_size_A == pytest.approx(0.25)
    assert im.shape == (256, 256)
    assert image_from_signal(_field_signal(), pixel_size_A=0.3).metadata["pixel_size_source"] == "user"
    s = hs.signals.Signal2D(np.random.default_rng(0).random((32, 32)))
    with pytest.raises(CalibrationError):
        image_from_signal(s)
    with pytest.raises(ImageDataError):
        image_from_signal(hs.signals.Signal2D(np.random.default_rng(0).random((3, 32, 32))))


def _segment():
    from particlespy.api import parameters, particle_analysis

    signal = _field_signal()
    params = parameters()
    params.generate(threshold="otsu", gaussian=2, min_size=50)
    particles = particle_analysis(signal, params)
    return signal, particles


def test_particlespy_segments_the_field():
    _, particles = _segment()
    assert len(particles.list) == 4


@pytest.mark.skipif(not _weights_present(), reason="no shipped weights in clusterspy/weights yet")
def test_classify_particles_roundtrip():
    from particlespy.api import time_series_analysis

    from clusterspy.integrations.particlespy import classify_particles

    signal, particles = _segment()
    out = classify_particles(particles, signal)
    assert out is particles
    shown = 0
    for p in particles.list:
        label = p.properties["isomer"]["value"]
        reason = p.properties["isomer_reason"]["value"]
        assert label in (*CLASSES, UNKNOWN)
        assert (reason == "") == (label != UNKNOWN)
        size = p.properties["diameter_nm"]
        assert size["units"] == "nm" and 0.5 < size["value"] < 20
        probs = [p.properties[f"p_{c}"]["value"] for c in CLASSES]
        if reason in ("", "low_confidence", "out_of_distribution"):  # shown to the network
            shown += 1
            assert sum(probs) == pytest.approx(1.0, abs=1e-4)
            assert p.properties["isomer_confidence"]["value"] == pytest.approx(max(probs))
        else:  # out of the model's domain before inference: no probabilities claimed
            assert np.all(np.isnan(probs)) and np.isnan(p.properties["isomer_confidence"]["value"])
        p.set_property("frame", 0, None)
    assert shown >= 1
    pytest.importorskip("trackpy")
    tracks = time_series_analysis(particles, properties=["isomer"])
    assert list(tracks["isomer"]) == [p.properties["isomer"]["value"] for p in particles.list]
