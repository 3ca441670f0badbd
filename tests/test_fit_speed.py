"""What makes the structure fit fast without changing what it finds: the library picks its models
by closed-form counts, the window keeps the fast simulator's images, the simulator folds the
inverse FFT of an oversampled grid and renders coarse templates at a given oversampling."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ase")

from clusterspy.fit.library import FORMS, _decahedron_params, build_model, models_near, shape_for
from clusterspy.isomers import Isomer
from clusterspy.simulation import FastSimulator, Microscope
from clusterspy.structures import cluster, rotation_to_z

CRYSTALS = [f for f, (iso, _, _) in FORMS.items() if iso is not Isomer.AMORPHOUS]


@pytest.mark.parametrize("form", CRYSTALS)
def test_shape_for_is_what_cluster_builds(form: str) -> None:
    isomer, shape, _ = FORMS[form]
    for size in (40, 150, 420, 1000):
        params, n = shape_for(form, size)
        spec = dict(zip("pqr", _decahedron_params(shape, size), strict=True)) if isomer is Isomer.DECAHEDRAL \
            else shape
        atoms = cluster(isomer, size, "Au", 0, shape=spec, orientation=np.eye(3))
        built = tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                             for k, v in atoms.info["shape_params"].items()))
        assert (params, n) == (built, len(atoms))
        assert build_model(form, size, "Au").params == params


def test_models_near_builds_only_the_models_it_returns() -> None:
    build_model.cache_clear()
    models = models_near("truncated_octahedron", 400, "Au", spread=2.0, limit=2)
    assert len(models) == 2 and build_model.cache_info().misses == 2
    assert all(abs(np.log(m.n_atoms / 400)) <= np.log(2.0 * 1.15) for m in models)


def _window():
    from clusterspy.fit.search import Window

    rows = cols = 80
    mask = np.ones((rows, cols), bool)
    data = np.random.default_rng(3).random((rows, cols))
    return Window(data, 0.3, mask, (cols / 2, rows / 2), Microscope(), 79)


def test_window_reuses_the_images_of_a_pose_with_another_blur_or_a_reversed_move(monkeypatch) -> None:
    from clusterspy.fit import render as render_mod
    from clusterspy.fit import search
    from clusterspy.fit.render import Pose
    from clusterspy.fit.symmetry import axis_rotation

    win = _window()
    m = build_model("mackay_icosahedron", 55, "Au")
    pose = Pose(rotation_to_z(np.array([0.2, 0.5, 1.0])), 12.0, 12.0, 1.0, 0.6)
    turn = axis_rotation(np.array([1.0, 0.0, 0.0]), np.radians(3.0))
    moved = pose.moved(rotation=turn @ pose.rotation)
    back = moved.moved(rotation=turn.T @ moved.rotation)  # the reverse move: pose again (to rounding)
    rendered: list[int] = []
    real = search.render_unblurred

    def counting(models, *args, **kw):
        rendered.append(len(models))
        return real(models, *args, **kw)

    monkeypatch.setattr(search, "render_unblurred", counting)
    first = win.score([m.positions] * 2, [pose, moved])
    again = win.score([m.positions] * 3, [back, pose.moved(blur_A=1.0), moved.moved(blur_A=0.2)])
    assert rendered == [2]  # the second batch placed the atoms as the first did
    fresh = render_mod.render([m.positions] * 3, 79, [back, pose.moved(blur_A=1.0), moved.moved(blur_A=0.2)],
                              win.microscope, win.pixel_size_A, win.shape)
    assert np.allclose(again, render_mod.ncc_many(fresh, win.data, win.mask), atol=1e-6)
    assert again[0] == pytest.approx(first[0], abs=1e-6)


def test_folded_inverse_of_an_oversampled_grid_is_the_sampled_fine_image() -> None:
    from clusterspy.fit.render import Pose, placed_positions
    from clusterspy.simulation.geometry import Scene

    mic = Microscope(energy_keV=100.0, semiangle_mrad=25.0)
    coarse = FastSimulator(mic, 0.5, (60, 60))
    fine = FastSimulator(mic, 0.25, (120, 120))
    assert coarse.oversample == 2 and fine.oversample == 1
    assert coarse.render_shape == fine.render_shape == (120, 120)  # one render grid: the fold path
    m = build_model("ino_decahedron", 100, "Au")
    pos = placed_positions(m.positions, Pose(rotation_to_z(np.array([0.3, 0.1, 1.0])), 15.0, 14.0))
    scene = Scene(pos, np.full(len(pos), 79), np.zeros((0, 3)), np.zeros(0, int))
    a = coarse.render([scene])[0]
    b = fine.render([scene])[0][::2, ::2]
    assert np.abs(a - b).max() <= 1e-5 * b.max()


def test_fast_simulator_renders_at_a_given_oversampling() -> None:
    from clusterspy.fit.render import Pose, placed_positions
    from clusterspy.simulation.geometry import Scene

    mic = Microscope(energy_keV=100.0, semiangle_mrad=25.0)
    auto = FastSimulator(mic, 0.4, (70, 70))
    one = FastSimulator(mic, 0.4, (70, 70), oversample=1)
    assert auto.oversample == 2 and one.oversample == 1 and one.render_pixel_A == pytest.approx(0.4)
    m = build_model("mackay_icosahedron", 147, "Au")
    pos = placed_positions(m.positions, Pose(np.eye(3), 14.0, 14.0))
    scene = Scene(pos, np.full(len(pos), 79), np.zeros((0, 3)), np.zeros(0, int))
    a, b = auto.render([scene])[0], one.render([scene])[0]
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95  # the same image, its finest detail aliased


def test_balanced_blocks_share_the_images_evenly_between_cores() -> None:
    from clusterspy.simulation.fast import balanced_block

    for n, most, cores in [(16, 16, 2), (12, 4, 2), (15, 4, 2), (17, 16, 2), (1000, 16, 2), (5, 4, 3)]:
        size = balanced_block(n, most, cores)
        blocks = -(-n // size)
        assert size <= most
        # a batch of a few blocks: every core renders as many; a long one: within one block
        assert blocks % cores == 0 or blocks == n or blocks > 4 * cores
    assert balanced_block(16, 16, 1) == 16 and balanced_block(1, 16, 2) == 1


def test_rendering_in_balanced_blocks_gives_the_images_of_one_block(monkeypatch) -> None:
    from clusterspy.simulation import fast
    from clusterspy.simulation.geometry import Scene

    sim = FastSimulator(Microscope(), 0.3, (64, 64))
    rng = np.random.default_rng(5)
    scenes = [Scene(rng.uniform(5.0, 14.0, (30, 3)), np.full(30, 79), np.zeros((0, 3)), np.zeros(0, int))
              for _ in range(7)]
    parted = sim.render(scenes)
    monkeypatch.setattr(fast, "_cpu_count", lambda: 1)
    monkeypatch.setattr(fast, "RENDER_BLOCK_PIXELS", 10**9)
    whole = sim.render(scenes)
    np.testing.assert_allclose(parted, whole, rtol=0, atol=1e-6 * float(whole.max()))


def _submit_in_child(conn) -> None:  # a module-level target: picklable
    from clusterspy.simulation.fast import thread_pool

    try:
        conn.send(thread_pool().submit(lambda: 42).result(timeout=10))
    except Exception as e:  # the parent reports it
        conn.send(repr(e))


def test_the_thread_pool_works_in_a_forked_child() -> None:
    """A forked child inherits the pool's object but not its threads: its tasks would never run."""
    import multiprocessing as mp

    from clusterspy.simulation.fast import thread_pool

    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork here")
    assert thread_pool().submit(lambda: 1).result(timeout=10) == 1  # the parent's pool has an idle worker
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_submit_in_child, args=(child,))
    p.start()
    got = parent.recv() if parent.poll(30) else "no answer"
    p.join(10)
    assert got == 42


def test_the_models_that_stand_are_scored_at_the_simulators_own_sampling() -> None:
    from clusterspy.fit.render import Pose
    from clusterspy.fit.search import SEARCH_OVERSAMPLE, Candidate, Window, judged

    rows = cols = 96
    m = build_model("mackay_icosahedron", 147, "Au")
    pose = Pose(rotation_to_z(np.array([0.3, 0.1, 1.0])), 14.0, 14.5, 1.0, 0.6)
    mic = Microscope(energy_keV=200.0, semiangle_mrad=25.0)
    native = Window(np.zeros((rows, cols)), 0.3, np.ones((rows, cols), bool), (48.0, 48.0), mic, 79)
    data = native.simulate(m, pose) + np.random.default_rng(0).normal(0, 0.002, (rows, cols))
    win = Window(data, 0.3, np.ones((rows, cols), bool), (48.0, 48.0), mic, 79, oversample=SEARCH_OVERSAMPLE)
    searched = float(win.score([m.positions], [pose])[0])
    win2, out = judged(win, {"icosahedral": Candidate(m, pose, searched)})
    assert win2.oversample is None and win.oversample == SEARCH_OVERSAMPLE
    truth = Window(data, 0.3, np.ones((rows, cols), bool), (48.0, 48.0), mic, 79)
    assert out["icosahedral"].ncc == pytest.approx(float(truth.score([m.positions], [pose])[0]), abs=1e-9)
    assert out["icosahedral"].ncc != pytest.approx(searched, abs=1e-7)  # the search's sampling differs
