"""Tests of clusterspy.simulation (fast backend, acquisition, geometry; PRISM in test_simulation_prism)."""

from __future__ import annotations

import numpy as np
import pytest

from clusterspy.errors import ConfigError
from clusterspy.image import Image
from clusterspy.simulation import (
    Acquisition,
    Microscope,
    antialias_limit_mrad,
    ncc,
    simulate,
    simulate_batch,
)

ase = pytest.importorskip("ase")


def _single_atom(x: float = 0.0, y: float = 0.0, z: float = 0.0, symbol: str = "Au"):
    return ase.Atoms(symbol, positions=[[x, y, z]])


def _icosahedron(shells: int = 3):
    from ase.cluster import Icosahedron

    return Icosahedron("Au", shells)


def _carbon_slab(extent_A: float, thickness_A: float, rng: np.random.Generator):
    """An amorphous carbon slab (2 g/cm³) from clusterspy.structures."""
    from clusterspy.structures import carbon_support

    return carbon_support(extent_A, thickness_A, 2.0, rng)


def _au309(seed: int):
    """A randomly oriented Au309 icosahedron as (positions [Å], numbers)."""
    from scipy.spatial.transform import Rotation

    a = _icosahedron(5)
    pos = a.get_positions() - a.get_positions().mean(0)
    return pos @ Rotation.random(random_state=seed).as_matrix().T, a.get_atomic_numbers()


def test_wavelength_and_antialias_limit():
    m = Microscope()
    assert m.wavelength_A == pytest.approx(0.02508, abs=1e-5)
    assert antialias_limit_mrad(200, 0.05) == pytest.approx(167.2, abs=0.5)


def test_fast_image_is_calibrated_and_centred():
    im = simulate(_icosahedron(), Microscope(), pixel_size=0.25, extent=16.0)
    assert isinstance(im, Image)
    assert im.shape == (64, 64)
    assert im.pixel_size_A == 0.25
    assert im.data.dtype == np.float32
    assert np.all(np.isfinite(im.data)) and im.data.min() > -1e-6
    rows, cols = np.nonzero(im.data > 0.2 * im.data.max())
    assert abs(rows.mean() - 32) < 1.5 and abs(cols.mean() - 32) < 1.5
    assert im.metadata["simulation"]["backend"] == "fast"


def test_array_convention_off_centre_atom():
    """An atom at +x, +y of the field centre lands at a larger column and row."""
    atoms = ase.Atoms("Au2", positions=[[0, 0, 0], [3.0, -2.0, 0]])
    # field centre = mean (1.5, -1.0): the atom at (3, -2) is +1.5 Å in x, -1 Å in y
    im = simulate(atoms, Microscope(), pixel_size=0.25, extent=12.0)
    rr, cc = np.nonzero(im.data > 0.5 * im.data.max())
    right = cc > 24
    assert np.allclose(cc[right].mean(), 24 + 6, atol=0.6)
    assert np.allclose(rr[right].mean(), 24 - 4, atol=0.6)


def test_single_atom_lands_on_predicted_pixel():
    atoms = ase.Atoms("AuC", positions=[[0, 0, 0], [2.5, 1.0, 0]])
    im = simulate(atoms, Microscope(), pixel_size=0.25, extent=8.0)
    # metal centre = the Au atom -> pixel (16, 16)
    assert np.unravel_index(np.argmax(im.data), im.shape) == (16, 16)


def test_batch_equals_single():
    rng = np.random.default_rng(1)
    clusters = [_icosahedron(3), _icosahedron(4)]
    clusters[1].rotate(30, "x")
    supports = [None, _carbon_slab(20, 10, rng)]
    batch = simulate_batch(clusters, Microscope(), pixel_size=0.3, extent=19.2, support=supports)
    for a, s, im in zip(clusters, supports, batch, strict=True):
        one = simulate(a, Microscope(), pixel_size=0.3, extent=19.2, support=s)
        np.testing.assert_allclose(im.data, one.data, rtol=1e-4, atol=1e-6)


def test_oversampling_matches_fine_rendering():
    """Coarse pixels are point samples of the same continuous image (not box averages)."""
    atoms = _icosahedron(3)
    fine = simulate(atoms, Microscope(), pixel_size=0.1, extent=16.0).data
    coarse = simulate(atoms, Microscope(), pixel_size=0.4, extent=16.0).data
    # coarse pixel (r, c) sits at fine pixel (r, c) * 4 (both have the cluster centre at n // 2)
    assert ncc(coarse, fine[::4, ::4]) > 0.99


def test_defocus_blurs():
    atoms = _icosahedron(3)
    sharp = simulate(atoms, Microscope(), pixel_size=0.2, extent=16.0).data
    blurred = simulate(atoms, Microscope(defocus_A=-60), pixel_size=0.2, extent=16.0).data
    assert blurred.max() < 0.8 * sharp.max()


def test_z_contrast():
    au = simulate(_single_atom(symbol="Au"), pixel_size=0.2, extent=8.0).data.max()
    pt = simulate(_single_atom(symbol="Ag"), pixel_size=0.2, extent=8.0).data.max()
    assert au / pt == pytest.approx((79 / 47) ** 1.7, rel=0.25)


def test_source_size_blurs_and_conserves():
    atoms = _single_atom()
    a = simulate(atoms, Microscope(), pixel_size=0.1, extent=12.8).data
    b = simulate(atoms, Microscope(source_size_A=1.0), pixel_size=0.1, extent=12.8).data
    assert b.max() < 0.7 * a.max()
    assert b.sum() == pytest.approx(a.sum(), rel=1e-2)


def _widths_A(img: np.ndarray, px_A: float) -> tuple[float, float, float]:
    """FWHM [Å] along the long and the short axis of a spot (Gaussian from its second moments), and
    the long axis' angle [°] from x towards y (rows)."""
    w = img / img.sum()
    yy, xx = np.indices(img.shape) * px_A
    my, mx = (w * yy).sum(), (w * xx).sum()
    c = np.array([[(w * (xx - mx) ** 2).sum(), (w * (xx - mx) * (yy - my)).sum()],
                  [(w * (xx - mx) * (yy - my)).sum(), (w * (yy - my) ** 2).sum()]])
    values, vectors = np.linalg.eigh(c)
    fwhm = 2.0 * np.sqrt(2.0 * np.log(2.0)) * np.sqrt(values)
    return float(fwhm[1]), float(fwhm[0]), float(np.degrees(np.arctan2(vectors[1, 1], vectors[0, 1])) % 180)


@pytest.mark.parametrize("angle_deg", [0.0, 30.0, 90.0, 135.0])
def test_an_elongated_source_draws_a_column_out_along_its_direction(angle_deg):
    """An astigmatic (elliptical) source: the atom's image is wider along the direction by the
    elongation, in quadrature; as wide as a round source's across it; its sum unchanged."""
    atoms = _single_atom()
    round_ = simulate(atoms, Microscope(source_size_A=0.6), pixel_size=0.1, extent=16.0).data
    astigmatic = Microscope(source_size_A=0.6, source_elongation_A=2.0, source_angle_deg=angle_deg)
    drawn = simulate(atoms, astigmatic, pixel_size=0.1, extent=16.0).data
    long0, short0, _ = _widths_A(round_, 0.1)
    long1, short1, angle = _widths_A(drawn, 0.1)
    assert long1 == pytest.approx(np.hypot(long0, 2.0), rel=0.05)
    assert short1 == pytest.approx(short0, rel=0.05)
    assert min(abs(angle - angle_deg), 180 - abs(angle - angle_deg)) < 2.0
    assert drawn.sum() == pytest.approx(round_.sum(), rel=1e-2)


def test_the_prism_path_draws_the_source_out_too():
    """``prism.finish`` (abTEM's measurement → image) applies the same elliptical source."""
    from types import SimpleNamespace

    from clusterspy.simulation.prism import finish

    delta = np.zeros((160, 160))
    delta[80, 80] = 1.0  # abTEM's [x, y] scan order: the transpose is the same spot
    mic = Microscope(source_size_A=0.6, source_elongation_A=2.0, source_angle_deg=60.0)
    img = finish(SimpleNamespace(array=delta), SimpleNamespace(pixel_size_A=0.1), mic)
    long_A, short_A, angle = _widths_A(np.asarray(img, float), 0.1)
    assert long_A == pytest.approx(np.hypot(0.6, 2.0), rel=0.03) and short_A == pytest.approx(0.6, rel=0.05)
    assert abs(angle - 60.0) < 2.0


def test_an_elongated_source_is_checked():
    with pytest.raises(ConfigError, match="source_elongation_A"):
        Microscope(source_elongation_A=-1.0)
    with pytest.raises(ConfigError, match="source_angle_deg"):
        Microscope(source_elongation_A=1.0, source_angle_deg=float("nan"))


def test_a_three_fold_astigmatism_is_checked():
    with pytest.raises(ConfigError, match="three_fold_A"):
        Microscope(three_fold_A=-1.0)
    with pytest.raises(ConfigError, match="three_fold_angle_deg"):
        Microscope(three_fold_A=1000.0, three_fold_angle_deg=float("inf"))
    # the phase at the aperture's edge its docstring quotes: 1 µm at 25 mrad and 200 kV gives 13 rad
    assert Microscope(three_fold_A=1e4).three_fold_phase_rad == pytest.approx(13.0, rel=0.01)
    assert Microscope().three_fold_phase_rad == 0.0


def test_poisson_noise_statistics():
    rng = np.random.default_rng(0)
    flat = np.full((64, 64), 0.01, dtype=np.float32)
    acq = Acquisition(dose_e_per_A2=1e5, gain=2.0, offset=10.0)
    out = acq.apply(flat, 0.2, rng)
    lam = 0.01 * 1e5 * 0.04  # 40 counts
    counts = (out - 10.0) / 2.0
    assert counts.mean() == pytest.approx(lam, rel=0.02)
    assert counts.var() == pytest.approx(lam, rel=0.1)
    assert np.allclose(counts, np.round(counts))


def test_acquisition_reproducible_and_jitter():
    atoms = _icosahedron(3)
    acq = Acquisition(dose_e_per_A2=5e4, jitter_px=0.5)
    a = simulate(atoms, pixel_size=0.25, extent=16, rng=3, acquisition=acq).data
    b = simulate(atoms, pixel_size=0.25, extent=16, rng=3, acquisition=acq).data
    c = simulate(atoms, pixel_size=0.25, extent=16, rng=4, acquisition=acq).data
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_drift_shear_flyback_move_content():
    img = np.zeros((32, 32), np.float32)
    img[:, 16] = 1.0
    shifted = Acquisition(shear=0.25).apply(img, 0.2)
    # the probe sees x + shift: the line appears at smaller columns on later rows
    assert np.argmax(shifted[0]) == 16 and np.argmax(shifted[-1]) < 16
    fly = Acquisition(flyback=(2.0, 3.0)).apply(img, 0.2)
    assert fly.shape == img.shape and np.isfinite(fly).all()
    drift = Acquisition(drift_A_per_line=(0.0, 0.02)).apply(img.T.copy(), 0.2)
    assert drift.shape == img.shape


def test_support_adds_background():
    rng = np.random.default_rng(0)
    atoms = _icosahedron(3)
    bare = simulate(atoms, pixel_size=0.25, extent=16).data
    on_c = simulate(atoms, pixel_size=0.25, extent=16, support=_carbon_slab(16, 20, rng)).data
    assert on_c[:4, :4].mean() > bare[:4, :4].mean() + 1e-5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"backend": "nope"},
        {"pixel_size": -1},
        {"extent": 0.1},
    ],
)
def test_bad_arguments_raise_config_error(kwargs):
    from clusterspy.errors import ClusterSpyError

    args = {"pixel_size": 0.2, "extent": 10.0, **kwargs}
    with pytest.raises(ClusterSpyError):
        simulate(_single_atom(), Microscope(), **args)


def test_bad_microscope_and_acquisition():
    with pytest.raises(ConfigError, match="mrad"):
        Microscope(detector_mrad=(200, 70))
    with pytest.raises(ConfigError, match="keV"):
        Microscope(energy_keV=200000)
    with pytest.raises(ConfigError, match="e⁻/Å²"):
        Acquisition(dose_e_per_A2=-5)
    with pytest.raises(ConfigError, match="rng"):
        Acquisition(dose_e_per_A2=10).apply(np.ones((4, 4)), 0.2, None)


def test_fast_path_does_not_import_abtem():
    import subprocess
    import sys

    code = (
        "import sys; from ase.cluster import Icosahedron; "
        "from clusterspy.simulation import simulate; "
        "simulate(Icosahedron('Au', 2), pixel_size=0.3, extent=10); "
        "assert 'abtem' not in sys.modules, 'abtem imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "microscope",
    [Microscope(), Microscope(semiangle_mrad=30, defocus_A=10), Microscope(semiangle_mrad=35, defocus_A=-20)],
)
def test_depth_planes_match_fine_spacing(microscope):
    """The automatic depth-plane spacing (0.4 λ/α²) changes the image little (NCC >= 0.999) from the
    former fixed 8 Å spacing and from a 2 Å spacing."""
    from dataclasses import replace

    from clusterspy.simulation import FastSimulator, build_scene, default_parameters
    from clusterspy.simulation.fast import DEPTH_STEP_DOF_FRACTION

    params = default_parameters()
    auto = FastSimulator(microscope, 0.2, (160, 160), params)
    alpha = microscope.semiangle_mrad * 1e-3
    assert auto.depth_step_A == pytest.approx(DEPTH_STEP_DOF_FRACTION * microscope.wavelength_A / alpha**2)
    scenes = [build_scene(_au309(seed), 0.2, 32.0)[1] for seed in range(3)]
    got = auto.render(scenes)
    for step in (8.0, 2.0):
        fine = replace(params, depth_step_A=step, max_depth_planes=40)
        ref = FastSimulator(microscope, 0.2, (160, 160), fine).render(scenes)
        for a, b in zip(got, ref, strict=True):
            assert ncc(a, b) >= 0.999


def test_cached_support_matches_atoms_rendered_one_by_one():
    """The support's cached spectrum (at its mean depth) gives the image of its atoms splatted like
    metal atoms, each at its own depth; a copy hits the cache, another slab does not."""
    from dataclasses import replace

    from clusterspy.simulation import FastSimulator, Scene, build_scene, default_parameters

    rng = np.random.default_rng(5)
    slab, other = _carbon_slab(16.0, 10.0, rng), _carbon_slab(16.0, 10.0, rng)
    # carbon rendered "as metal" below must not get the metal's channelling correction or spread
    no_channelling = replace(default_parameters(), channelling_a=0.0, channelling_c=0.0, spread_blur_A=0.0)
    sim = FastSimulator(Microscope(), 0.25, (64, 64), no_channelling)
    _, scene = build_scene(_single_atom(symbol="Au"), 0.25, 16.0, slab)
    with_support = sim.render([scene])[0]
    bare = sim.render(
        [Scene(scene.metal_positions, scene.metal_numbers, np.zeros((0, 3)), np.zeros(0, int))]
    )[0]
    only = sim.render(
        [Scene(np.zeros((0, 3)), np.zeros(0, int), scene.support_positions, scene.support_numbers)]
    )[0]
    flat = scene.support_positions.copy()
    flat[:, 2] = flat[:, 2].mean()
    as_metal = sim.render([Scene(flat, scene.support_numbers, np.zeros((0, 3)), np.zeros(0, int))])[0]
    own_depths = sim.render(
        [Scene(scene.support_positions, scene.support_numbers, np.zeros((0, 3)), np.zeros(0, int))]
    )[0]
    # the same incoherent sum (the cached path interpolates the probe at the mean depth like
    # the metal path does); each atom at its own depth differs little across a 10 Å slab
    np.testing.assert_allclose(only, as_metal, rtol=0, atol=1e-3 * as_metal.max())
    assert ncc(only, as_metal) >= 0.9999 and with_support.mean() > bare.mean() + 0.9 * only.mean()
    assert ncc(as_metal, own_depths) >= 0.99
    assert len(sim._support_cache) == 1
    copy = simulate(_single_atom(symbol="Au"), pixel_size=0.25, extent=16.0, support=slab.copy()).data
    differ = simulate(_single_atom(symbol="Au"), pixel_size=0.25, extent=16.0, support=other).data
    np.testing.assert_allclose(copy, with_support, rtol=1e-5, atol=1e-9)
    assert ncc(differ - bare, as_metal) < 0.5


def test_batch_noise_reproducible_and_unbiased():
    """simulate_batch: threads do not change the result; the counts average to the ideal image."""
    clusters = [_au309(s) for s in range(12)]
    slab = _carbon_slab(16.0, 10.0, np.random.default_rng(0))
    acq = Acquisition(dose_e_per_A2=2e4, jitter_px=0.2)
    kw = {"pixel_size": 0.25, "extent": 16.0, "support": [slab] * 12}
    a = np.stack([im.data for im in simulate_batch(clusters, rng=7, acquisition=acq, **kw)])
    b = np.stack([im.data for im in simulate_batch(clusters, rng=7, acquisition=acq, **kw)])
    c = np.stack([im.data for im in simulate_batch(clusters, rng=8, acquisition=acq, **kw)])
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    ideal = np.stack([im.data for im in simulate_batch(clusters, **kw)])
    expected = ideal.astype(float) * 2e4 * 0.25**2
    noisy = np.stack(
        [im.data for im in simulate_batch(clusters, rng=9, acquisition=Acquisition(dose_e_per_A2=2e4), **kw)]
    )
    assert np.allclose(noisy, np.round(noisy))
    assert noisy.mean() == pytest.approx(expected.mean(), rel=0.01)
    # per-pixel Poisson: the variance of (counts - mean) averages to the mean
    assert (noisy - expected).var() == pytest.approx(expected.mean(), rel=0.03)


def test_column_occupancy_counts_projected_neighbours():
    """The sweep over cell rows counts exactly the atoms within the radius (scipy's KD-tree and
    brute force agree), per group, also for atoms exactly one radius apart on a lattice."""
    from scipy.spatial import cKDTree

    from clusterspy.simulation.fast import column_occupancy

    rng = np.random.default_rng(2)
    for lattice in (False, True):
        xy = rng.uniform(-4.0, 6.0, (400, 2))
        xy[::4] = xy[1::4]  # whole columns: atoms on top of each other
        if lattice:
            xy = np.round(xy / 0.6) * 0.6
        group = rng.integers(0, 3, len(xy))
        d2 = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)
        brute = ((d2 <= 0.36) & (group[:, None] == group[None, :])).sum(1)
        np.testing.assert_array_equal(column_occupancy(xy, 0.6, group=group), brute)
        np.testing.assert_array_equal(column_occupancy(xy, 0.6), (d2 <= 0.36).sum(1))
        if not lattice:
            tree = cKDTree(xy).query_ball_point(xy, 0.6, return_length=True)
            np.testing.assert_array_equal(column_occupancy(xy, 0.6), tree)
    assert column_occupancy(np.zeros((0, 2)), 0.6).shape == (0,)


def test_column_occupancy_counts_atoms_above():
    """With depths, column_occupancy also counts each atom's neighbours at a smaller depth
    (brute force), per group."""
    from clusterspy.simulation.fast import column_occupancy

    rng = np.random.default_rng(3)
    xy = rng.uniform(-4.0, 6.0, (300, 2))
    xy[::3] = xy[1::3] + rng.normal(0.0, 0.05, (100, 2))
    z = rng.uniform(0.0, 20.0, len(xy))
    group = rng.integers(0, 2, len(xy))
    d2 = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)
    near = (d2 <= 0.25) & (group[:, None] == group[None, :])
    counts, above = column_occupancy(xy, 0.5, group=group, depth=z)
    np.testing.assert_array_equal(counts, near.sum(1))
    np.testing.assert_array_equal(above, (near & (z[None, :] < z[:, None])).sum(1))
    assert all(a.shape == (0,) for a in column_occupancy(np.zeros((0, 2)), 0.5, depth=np.zeros(0)))


def test_spread_along_columns():
    """The spread term: off (``spread_blur_A=0``) it is the plain incoherent sum; on, an isolated
    atom is unchanged, a column's integrated intensity is kept (m atoms, m times one atom's),
    and its peak grows sub-linearly with the occupancy (saturates), with or without batching."""
    from dataclasses import replace

    from clusterspy.simulation import FastParameters, FastSimulator, Scene

    plain = FastParameters(extra_blur_A=0.2)
    spread = replace(plain, column_radius_A=0.3, spread_atoms=2.0, spread_blur_A=0.8)
    mic = Microscope()

    def column(m: int) -> Scene:
        pos = np.tile([8.0, 8.0, 0.0], (m, 1))
        pos[:, 2] = 2.88 * np.arange(m)
        return Scene(pos, np.full(m, 79), np.zeros((0, 3)), np.zeros(0, int))

    lengths = (1, 2, 4, 8, 12)
    scenes = [column(m) for m in lengths]
    off = FastSimulator(mic, 0.2, (80, 80), replace(spread, spread_blur_A=0.0)).render(scenes)
    np.testing.assert_array_equal(off, FastSimulator(mic, 0.2, (80, 80), plain).render(scenes))
    sim = FastSimulator(mic, 0.2, (80, 80), spread)
    on = sim.render(scenes)
    np.testing.assert_allclose(on[0], off[0], rtol=0, atol=1e-6 * off[0].max())
    np.testing.assert_allclose(on.sum((1, 2)), off.sum((1, 2)), rtol=2e-3)
    peak_on = on.max((1, 2)) / on[0].max()
    peak_off = off.max((1, 2)) / off[0].max()
    assert np.all(np.diff(peak_on) > 0) and np.all(np.diff(peak_on / np.array(lengths)) < 0)
    assert peak_on[-1] < 0.8 * peak_off[-1]
    for i, sc in enumerate(scenes):
        np.testing.assert_allclose(sim.render([sc])[0], on[i], rtol=0, atol=1e-6 * on[i].max())


def test_line_shifts_in_the_inverse_fft_match_acquisition():
    """simulate_batch shifts the scan lines (jitter, x drift, shear) inside the rendering's
    inverse FFT: the same image as shifting the rendered lines afterwards (Acquisition.apply),
    with the same random draws."""
    from clusterspy.simulation import FastSimulator, build_scene

    clusters = [_au309(s) for s in range(3)]
    slab = _carbon_slab(16.0, 10.0, np.random.default_rng(0))
    sim = FastSimulator(Microscope(), 0.25, (64, 64))
    assert sim.shifts_lines_in_fourier_space
    scenes = [build_scene(c, 0.25, 16.0, slab)[1] for c in clusters]
    acq = Acquisition(jitter_px=0.4, shear=0.01, drift_A_per_line=(0.005, 0.0))
    after = acq.apply(sim._render_block(scenes), 0.25, np.random.default_rng(4))
    shifts = acq.line_shifts_px(3, 64, 0.25, np.random.default_rng(4))
    fused = sim._render_block(scenes, line_shifts_px=shifts)
    fused = acq.apply(fused, 0.25, np.random.default_rng(99), lines_shifted=True)
    assert not np.allclose(after, sim._render_block(scenes), atol=1e-3 * after.max())  # it moved
    for a, b in zip(after, fused, strict=True):
        # the two differ only where the ringing is clipped at 0 before / after the shift
        assert ncc(a, b) >= 0.99999
        np.testing.assert_allclose(a, b, rtol=0, atol=3e-3 * a.max())
    with pytest.raises(ValueError, match="y drift"):
        Acquisition(drift_A_per_line=(0.0, 0.01)).apply(fused, 0.25, lines_shifted=True)


def test_parameters_as_mapping_pin_the_fast_model():
    """A dataset specification can pin the fast model's parameters (backend_options)."""
    from ase.cluster import Icosahedron

    from clusterspy.simulation import FastParameters, simulate

    atoms = Icosahedron("Au", 3)
    params = {"z_exponent": 1.5, "column_radius_A": 0.5, "extra_blur_A": 0.3}
    a = simulate(atoms, pixel_size=0.3, extent=16.0, parameters=params).data
    b = simulate(atoms, pixel_size=0.3, extent=16.0, parameters=FastParameters(**params)).data
    c = simulate(atoms, pixel_size=0.3, extent=16.0, parameters=FastParameters()).data
    assert np.array_equal(a, b) and not np.allclose(a, c)
    with pytest.raises(ConfigError, match="unknown fast-simulator parameter"):
        simulate(atoms, pixel_size=0.3, extent=16.0, parameters={"z_exp": 1.5})
    # what a dataset records: the pinned parameters, or the shipped ones with their provenance
    from clusterspy.simulation import default_parameters, parameters_record

    pinned = parameters_record(params)
    assert pinned["parameters"] == FastParameters(**params).to_dict()
    assert pinned["source"].startswith("given")
    shipped = parameters_record()
    assert shipped["parameters"] == default_parameters().to_dict() and "fitted_on" in shipped
    assert shipped["source"] == "shipped fast_parameters.json"


def test_calibration_names_still_work_warn_and_give_identical_images():
    """The names before issue #17 ("calibration" for the fast model's fitted parameters) are
    deprecated aliases: they warn, and give bit-identical images and the same records."""
    from ase.cluster import Icosahedron

    import clusterspy.simulation as sim_pkg
    from clusterspy.simulation import (
        FastParameters,
        FastSimulator,
        as_parameters,
        build_scene,
        default_parameters,
        parameters_record,
        simulate,
        simulate_batch,
    )
    from clusterspy.simulation import fast as fast_mod

    for module in (sim_pkg, fast_mod):
        for old, new in (("FastCalibration", FastParameters), ("as_calibration", as_parameters),
                         ("default_calibration", default_parameters),
                         ("calibration_record", parameters_record)):
            with pytest.deprecated_call(match=old):
                assert getattr(module, old) is new
    with pytest.deprecated_call():
        from clusterspy.simulation import FastCalibration  # noqa: F401
    with pytest.raises(AttributeError):
        sim_pkg.no_such_name  # noqa: B018
    assert "FastCalibration" not in sim_pkg.__all__ and "FastParameters" in sim_pkg.__all__

    atoms = Icosahedron("Au", 3)
    params = {"z_exponent": 1.5, "column_radius_A": 0.5, "extra_blur_A": 0.3}
    for pinned in (params, None):
        new = simulate(atoms, pixel_size=0.3, extent=16.0, parameters=pinned).data
        with pytest.deprecated_call(match="calibration"):
            old = simulate(atoms, pixel_size=0.3, extent=16.0, calibration=pinned).data
        assert np.array_equal(new, old)
        new_b = simulate_batch([atoms] * 2, pixel_size=0.3, extent=16.0, rng=3,
                               acquisition=Acquisition(dose_e_per_A2=1e4), parameters=pinned)
        with pytest.deprecated_call(match="calibration"):
            old_b = simulate_batch([atoms] * 2, pixel_size=0.3, extent=16.0, rng=3,
                                   acquisition=Acquisition(dose_e_per_A2=1e4), calibration=pinned)
        for x, y in zip(new_b, old_b, strict=True):
            assert np.array_equal(x.data, y.data)
        with pytest.deprecated_call():
            old_s = FastSimulator(Microscope(), 0.3, (54, 54), calibration=as_parameters(pinned))
        new_s = FastSimulator(Microscope(), 0.3, (54, 54), as_parameters(pinned))
        scene = build_scene(atoms, 0.3, 16.2)[1]
        assert np.array_equal(old_s.render([scene]), new_s.render([scene]))
        with pytest.deprecated_call():
            assert old_s.calibration is old_s.parameters
    with pytest.deprecated_call():
        assert fast_mod.calibration_record(params) == parameters_record(params)
    # one name at a time
    with pytest.raises(ConfigError, match="once"), pytest.deprecated_call():
        simulate(atoms, pixel_size=0.3, extent=16.0, parameters=params, calibration=params)


def test_row_band_splat_matches_the_full_grid(monkeypatch):
    """The metal planes hold only the rows the atoms touch (their FFT skips the empty rows along
    x and a phase ramp moves the spectrum back): the same image as the full grid."""
    from clusterspy.simulation import FastSimulator, build_scene

    clusters = [_au309(s) for s in range(4)]
    slab = _carbon_slab(32.0, 10.0, np.random.default_rng(0))
    sim = FastSimulator(Microscope(), 0.25, (128, 128))
    scenes = [build_scene(c, 0.25, 32.0, slab)[1] for c in clusters]
    pos = np.concatenate([sc.metal_positions for sc in scenes])
    band = sim._row_band(pos)
    assert band is not None and band[0] > 0 and band[1] < 128
    banded = sim._render_block(scenes)
    monkeypatch.setattr(FastSimulator, "_row_band", lambda self, p: None)
    full = sim._render_block(scenes)
    for a, b in zip(banded, full, strict=True):
        assert ncc(a, b) >= 0.999999
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * b.max())


def test_allocator_keeps_freed_memory():
    """The fast simulator asks glibc to keep freed memory (block temporaries are reused, not
    page-faulted in again); a no-op elsewhere or when the environment tunes malloc."""
    import platform

    from clusterspy.simulation._memory import keep_freed_memory

    # once per process: a test that started a Dask LocalCluster before may have set MALLOC_TRIM_THRESHOLD_
    # (distributed's pre-spawn environment) after an earlier simulation cached the answer
    keep_freed_memory.cache_clear()
    result = keep_freed_memory()
    assert isinstance(result, bool)
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        import os

        tuned = bool(
            "GLIBC_TUNABLES" in os.environ
            or os.environ.get("CLUSTERSPY_NO_MALLOPT")
            or any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ)
        )
        assert result == (not tuned)
