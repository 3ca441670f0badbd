"""PRISM backend (abTEM): same pixel grid as the fast backend, agreement on a small case."""

from __future__ import annotations

import numpy as np
import pytest

from clusterspy.errors import ConfigError
from clusterspy.simulation import Microscope, ncc, simulate

ase = pytest.importorskip("ase")
pytest.importorskip("abtem")

SMALL = {"interpolation": 1, "frozen_phonons": 0}


def test_off_centre_atoms_land_on_same_pixels_in_both_backends():
    atoms = ase.Atoms("Au2", positions=[[0, 0, 0], [2.6, -1.4, 1.0]])
    kw = {"pixel_size": 0.4, "extent": 9.6}
    prism = simulate(atoms, Microscope(), backend="prism", **kw, **SMALL).data
    fast = simulate(atoms, Microscope(), backend="fast", **kw).data
    assert prism.shape == fast.shape == (24, 24)
    peaks_p = {tuple(p) for p in np.argwhere(prism > 0.6 * prism.max())}
    peaks_f = {tuple(p) for p in np.argwhere(fast > 0.6 * fast.max())}
    assert peaks_p == peaks_f == {(10, 15), (14, 9)}
    assert ncc(prism, fast) > 0.99


def test_fast_matches_prism_on_small_cluster():
    from ase.cluster import Icosahedron

    atoms = Icosahedron("Au", 3)  # 55 atoms
    kw = {"pixel_size": 0.4, "extent": 12.8}
    prism = simulate(atoms, Microscope(), backend="prism", rng=0, interpolation=2, frozen_phonons=0, **kw)
    fast = simulate(atoms, Microscope(), backend="fast", **kw)
    assert prism.pixel_size_A == fast.pixel_size_A == 0.4
    assert ncc(prism.data, fast.data) >= 0.95
    # both in fractions of the beam on the detector, within a factor 2
    assert 0.5 < prism.data.sum() / fast.data.sum() < 2.0


def test_detector_beyond_antialiasing_limit_is_refused():
    atoms = ase.Atoms("Au", positions=[[0, 0, 0]])
    with pytest.raises(ConfigError, match="antialiasing limit 167 mrad"):
        simulate(
            atoms,
            Microscope(),
            pixel_size=0.4,
            extent=8,
            backend="prism",
            potential_sampling_A=0.05,
            frozen_phonons=0,
        )


def test_sampling_is_chosen_for_the_detector():
    from clusterspy.simulation.prism import choose_potential_sampling

    s = choose_potential_sampling(Microscope(detector_mrad=(70, 200)))
    assert Microscope().wavelength_A / (3 * s) * 1e3 >= 200
    assert choose_potential_sampling(Microscope(detector_mrad=(40, 100))) == 0.05


def test_prism_window_must_hold_the_drift_through_a_support():
    """PRISM's interpolation window vs the specimen depth (the support-halo artefact)."""
    from clusterspy.simulation.geometry import build_scene
    from clusterspy.simulation.prism import check_interpolation, max_interpolation
    from clusterspy.structures import carbon_support, cluster

    atoms = cluster("icosahedral", 55, "Au", 3, orientation="random")
    mic = Microscope(detector_mrad=(70, 200))
    support = carbon_support(16.0, 20.0, 2.0, np.random.default_rng(4))
    field, bare = build_scene(atoms, 0.4, 16.0)
    _, on_carbon = build_scene(atoms, 0.4, 16.0, support)
    assert max_interpolation(field, bare, mic) >= 4  # Au55 alone: ~10 Å deep
    assert max_interpolation(field, on_carbon, mic) == 1  # + 2 Å gap + 20 Å of carbon
    assert check_interpolation("auto", field, on_carbon, mic) == 1
    with pytest.raises(ConfigError, match="interpolation 4 is too coarse"):
        simulate(atoms, mic, pixel_size=0.4, extent=16.0, backend="prism", support=support,
                 interpolation=4, frozen_phonons=0)
    with pytest.raises(ConfigError, match="integer >= 1 or 'auto'"):
        check_interpolation(2.5, field, bare, mic)
    # window=False lifts only the window limit (to measure the artefact), not the validation
    assert check_interpolation(4, field, on_carbon, mic, window=False) == 4
    with pytest.raises(ConfigError, match="integer >= 1 or 'auto'"):
        check_interpolation(0, field, on_carbon, mic, window=False)


def test_reduction_in_small_batches_gives_the_same_image(monkeypatch):
    """The reduction's memory bound (a few scan positions at a time) changes no pixel."""
    import clusterspy.simulation.prism as prism_mod

    atoms = ase.Atoms("Au2", positions=[[0, 0, 0], [2.6, -1.4, 1.0]])
    kw = {"pixel_size": 0.4, "extent": 9.6, "backend": "prism", **SMALL}
    whole = simulate(atoms, Microscope(), **kw).data
    gpts = 9.6 / prism_mod.choose_potential_sampling(Microscope())
    monkeypatch.setattr(prism_mod, "REDUCTION_BATCH_BYTES", int(8 * gpts**2 * 7))  # ~7 positions
    batched = simulate(atoms, Microscope(), **kw).data
    np.testing.assert_allclose(batched, whole, rtol=1e-5, atol=1e-7 * float(whole.max()))


@pytest.mark.parametrize(("c23_A", "angle_deg"), [(5000.0, 0.0), (10000.0, 70.0)])
def test_three_fold_astigmatism_is_abtems(c23_A, angle_deg):
    """The probe with a three-fold astigmatism C23 is abTEM's (polar convention, azimuth from x towards
    y), three-fold symmetric, and unlike the round probe; PRISM and the fast backend draw it alike."""
    import math

    import abtem
    from scipy import ndimage as ndi

    n, s = 128, 0.1
    mic = Microscope(three_fold_A=c23_A, three_fold_angle_deg=angle_deg)
    ours = np.fft.fftshift(mic.probe_intensity((n, n), s))
    probe = abtem.Probe(energy=mic.energy_keV * 1e3, semiangle_cutoff=mic.semiangle_mrad, C23=c23_A,
                        phi23=math.radians(angle_deg), gpts=(n, n), sampling=s)
    theirs = np.asarray(probe.build(scan=(n * s / 2, n * s / 2)).intensity().compute().array).T
    assert ncc(ours, theirs / theirs.sum()) > 0.999
    assert ncc(ours, np.fft.fftshift(Microscope().probe_intensity((n, n), s))) < 0.9
    c, t = n // 2, np.radians(120.0)  # turned by 120° about the probe's centre, pixel (64, 64)
    yy, xx = np.indices(ours.shape) - c
    turned = ndi.map_coordinates(
        ours, [c + np.cos(t) * yy - np.sin(t) * xx, c + np.sin(t) * yy + np.cos(t) * xx], order=1)
    assert ncc(turned[16:-16, 16:-16], ours[16:-16, 16:-16]) > 0.98
    atoms = ase.Atoms("Au", positions=[[0, 0, 0]])
    kw = {"pixel_size": 0.2, "extent": 12.8}
    prism = simulate(atoms, mic, backend="prism", **kw, **SMALL).data
    fast = simulate(atoms, mic, backend="fast", **kw).data
    assert ncc(prism, fast) > 0.98
    assert ncc(prism, simulate(atoms, Microscope(), backend="prism", **kw, **SMALL).data) < 0.9
