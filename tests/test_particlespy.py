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


def _shifted_stack():
    """Two frames of the 4-cluster field, the second shifted by 2 px (for tracking)."""
    s0 = _field_signal(seed=0)
    s1 = _field_signal(seed=1)
    s1.data = np.roll(s1.data, 2, axis=1)
    stack = hs.stack([s0, s1])
    for ax in stack.axes_manager.signal_axes:
        ax.scale, ax.units = 0.025, "nm"
    return stack


@pytest.mark.skipif(not _weights_present(), reason="no shipped weights in clusterspy/weights yet")
def test_properties_round_trip_equal_what_was_judged():
    from clusterspy import predict
    from clusterspy.integrations.particlespy import (
        _particle_detection,
        classify_particles,
        results_from_particles,
    )

    signal, particles = _segment()
    classify_particles(particles, signal)
    back = results_from_particles(particles)
    img = predict._as_image(signal, None)[0]
    judged = predict.judge(img, [_particle_detection(p, img) for p in particles.list], predict.load_model())
    assert len(back) == len(judged) == 4
    for b, j in zip(back, judged, strict=True):
        assert (b.label, b.reason, b.confidence, b.probabilities, b.diameter_nm, b.ood_distance) == (
            j.label, j.reason, j.confidence, j.probabilities, j.diameter_nm, j.ood_distance)
        assert (b.x_px, b.y_px) == (j.x_px, j.y_px)
    # the centres are the simulated clusters' (16, 16), (48, 16), ... Å at 0.25 Å/px
    assert sorted(round(r.x_px * 0.25) for r in back) == [16, 16, 46, 48]


@pytest.mark.skipif(not _weights_present(), reason="no shipped weights in clusterspy/weights yet")
@pytest.mark.filterwarnings("ignore:FigureCanvasAgg is non-interactive")
def test_particlespy_plots_and_tracks_the_properties():
    import matplotlib.pyplot as plt
    from particlespy.api import parameters, particle_analysis_series, time_series_analysis

    from clusterspy.integrations.particlespy import classify_particles

    pytest.importorskip("trackpy")
    plt.switch_backend("Agg")  # ParticleSpy's plot calls plt.show(): never block on a display
    stack = _shifted_stack()
    params = parameters()
    params.generate(threshold="otsu", gaussian=2, min_size=50)
    particles = particle_analysis_series(stack, params)
    assert [p.properties["frame"]["value"] for p in particles.list] == [0] * 4 + [1] * 4
    classify_particles(particles, stack)
    plt.close("all")
    particles.plot("diameter_nm", bins=5)
    assert plt.gca().get_xlabel() == "Diameter_nm (nm)"
    particles.plot("isomer_confidence", range=(0, 1))
    particles.plot(["diameter_nm", "isomer_confidence"])
    plt.close("all")
    tracks = time_series_analysis(particles, max_dist=5, properties=["isomer", "diameter_nm"])
    assert tracks["particle"].nunique() == 4  # each cluster is one track over both frames
    assert list(tracks["diameter_nm"]) == [p.properties["diameter_nm"]["value"] for p in particles.list]
    for _, track in tracks.groupby("particle"):
        assert sorted(track["frame"]) == [0, 1]


@pytest.mark.skipif(not _weights_present(), reason="no shipped weights in clusterspy/weights yet")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # ParticleSpy's circularity of a 1-px piece
def test_a_segmentation_into_pieces_is_said_to_be_one():
    """ParticleSpy's defaults cut an atomic-resolution field into pieces; a newcomer's (stop 39) real
    particles were then all neighbour_in_view of the pieces, with nothing naming the segmentation."""
    from particlespy.api import parameters, particle_analysis

    from clusterspy.integrations.particlespy import classify_particles

    signal = _field_signal()
    params = parameters()
    params.generate()  # ParticleSpy's defaults: no smoothing, no least size
    pieces = particle_analysis(signal, params)
    with pytest.warns(UserWarning, match=r"of the \d+ particles are too small for the models: ParticleSpy's "
                                         r"segmentation has likely split the clusters"):
        classify_particles(pieces, signal)
    signal, whole = _segment()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        classify_particles(whole, signal)  # 4 particles, none too small: no warning
