"""The structure fit (clusterspy.fit): point groups, misorientation, a fit with known truth, outputs,
refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("ase")

from clusterspy.errors import NoClusterFoundError
from clusterspy.fit import fit_structure, misorientation_deg, point_group, reduce_rotation, zone_axis
from clusterspy.fit.api import MIN_MARGIN
from clusterspy.fit.library import FORMS, beam_directions
from clusterspy.fit.symmetry import axis_rotation, rotation_angle_deg
from clusterspy.image import Image
from clusterspy.simulation import Acquisition, Microscope, simulate
from clusterspy.structures import cluster, random_rotation
from helpers import SHARED, blob

ORDERS = {"Ih": (120, 60), "D5h": (20, 10), "Oh": (48, 24), "Cs": (2, 1)}


@pytest.mark.parametrize("name", list(ORDERS))
def test_point_groups_are_groups_of_the_right_order(name: str) -> None:
    g = point_group(name)
    proper = point_group(name, proper=True)
    assert (len(g), len(proper)) == ORDERS[name]
    assert np.allclose(np.einsum("nij,nkj->nik", g, g), np.eye(3), atol=1e-9)  # orthogonal
    keys = {tuple(np.round(m, 6).ravel() + 0.0) for m in g}
    assert len(keys) == len(g)  # distinct
    products = np.einsum("aij,bjk->abik", g, g).reshape(-1, 3, 3)
    assert all(tuple(np.round(m, 6).ravel() + 0.0) in keys for m in products)  # closed


@pytest.mark.parametrize(("motif", "shape", "size", "form"), [
    ("icosahedral", "mackay", 147, "mackay_icosahedron"),
    ("decahedral", {"p": 4, "q": 4, "r": 0}, 0, "ino_decahedron"),
    ("decahedral", {"p": 4, "q": 4, "r": 1}, 0, "marks_decahedron"),
    ("fcc", "cuboctahedron", 147, "cuboctahedron"),
    ("fcc", "truncated_octahedron", 405, "truncated_octahedron"),
    ("fcc", "octahedron", 146, "octahedron"), ("fcc", "twinned", 405, "twinned_fcc"),
])
def test_every_group_element_maps_the_built_motif_onto_itself(motif: str, shape: str | dict, size: int,
                                                               form: str) -> None:
    from scipy.spatial import cKDTree

    atoms = cluster(motif, max(size, 13), "Au", 0, shape=shape, orientation=np.eye(3))
    p = atoms.positions - atoms.positions.mean(axis=0)
    tree = cKDTree(p)
    group = FORMS[form][2]
    worst = max(tree.query(p @ g.T)[0].max() for g in point_group(group))
    assert worst < 0.05  # Å
    # and a rotation that is not a symmetry does not
    assert tree.query(p @ axis_rotation([0.3, 0.5, 0.8], 0.4).T)[0].max() > 0.3


@pytest.mark.parametrize("name", list(ORDERS))
def test_misorientation_is_symmetry_invariant(name: str) -> None:
    rng = np.random.default_rng(3)
    for _ in range(5):
        r = random_rotation(rng)
        for g in point_group(name, proper=True):
            assert misorientation_deg(r, r @ g, name) < 1e-5
        # a real turn is measured as such (small enough to be the shortest way)
        turn = axis_rotation(rng.normal(size=3), np.radians(2.5))
        assert misorientation_deg(turn @ r, r, name, projection=False) == pytest.approx(2.5, abs=1e-6)
        # the reduced representative is equivalent to the rotation and nearest the identity
        red = reduce_rotation(r, name)
        assert misorientation_deg(red, r, name, projection=False) < 1e-5
        assert rotation_angle_deg(red) <= rotation_angle_deg(r) + 1e-9


def test_beam_flip_is_equivalent_in_projection_only() -> None:
    r = random_rotation(np.random.default_rng(5))
    flip = np.diag([1.0, 1.0, -1.0]) @ r @ (-np.eye(3))  # M_z R (−I): proper, same projection
    assert misorientation_deg(r, flip, "Oh") < 1e-6
    assert misorientation_deg(r, flip, "Oh", projection=False) > 1.0


def test_zone_axis_is_named_within_five_degrees() -> None:
    from clusterspy.fit.symmetry import zone_axes
    from clusterspy.structures.orientation import rotation_to_z

    for name, axis in zone_axes("Ih"):
        assert zone_axis(axis_rotation([0, 0, 1], 0.7) @ rotation_to_z(axis), "Ih")[0] == name
    assert zone_axis(rotation_to_z([1.0, 1.0, 0.0]), "Oh")[0] == "[110]"
    tilted = axis_rotation([1, 0, 0], np.radians(4.0)) @ rotation_to_z([0, 0, 1.0])
    assert zone_axis(tilted, "Oh")[0] == "[100]"
    assert zone_axis(axis_rotation([1, 0, 0], np.radians(12.0)), "Oh")[0] is None


def test_direction_grid_covers_the_sphere_up_to_symmetry() -> None:
    dirs = beam_directions("Oh")
    probe = random_rotation(np.random.default_rng(0)) @ np.array([0, 0, 1.0])
    orbit = np.einsum("gij,j->gi", point_group("Oh", proper=True), probe)
    nearest = np.degrees(np.arccos(np.clip((orbit @ dirs.T).max(), -1, 1)))
    assert nearest < 9.0


def _image(motif: str, size: int, rng: np.random.Generator, orientation: str | np.ndarray, **kw):
    atoms = cluster(motif, size, "Au", rng, orientation=orientation, **kw)
    img = simulate(atoms, Microscope(defocus_A=4.0, source_size_A=0.5), pixel_size=0.35, extent=44.8, rng=rng,
                   acquisition=Acquisition(dose_e_per_A2=3e4))
    return atoms, img


FEW_FORMS = ("mackay_icosahedron", "ino_decahedron", "cuboctahedron", "glassy")


def test_fit_recovers_isomer_size_and_orientation_of_a_simulated_cluster() -> None:
    rng = np.random.default_rng(11)
    rot = random_rotation(rng)
    atoms, img = _image("icosahedral", 147, rng, rot)
    fits = fit_structure(img, element="Au", forms=FEW_FORMS)
    assert len(fits) == 1
    f = fits[0]
    assert f.reason is None
    assert f.isomer == "icosahedral" and f.form == "mackay_icosahedron"
    assert abs(f.n_atoms - 147) <= 15
    assert misorientation_deg(f.rotation, np.asarray(atoms.info["rotation"]), "Ih") < 3.0
    assert f.ncc > max(v["ncc"] for v in f.alternatives.values())
    assert set(f.alternatives) == {"decahedral", "fcc", "amorphous"}
    # the model sits where the cluster is: its projected centre on the image's centre pixel
    centre = f.atoms.positions[:, :2].mean(axis=0) / img.pixel_size_A
    assert np.allclose(centre, [img.shape[1] // 2, img.shape[0] // 2], atol=1.0)
    assert f.simulated.pixel_size_A == img.pixel_size_A


def test_a_blurred_cluster_gets_no_isomer_when_every_motif_fits_alike() -> None:
    # Columns smeared away (Gaussian σ = 2.5 Å): all motifs' simulations match about equally well,
    # so the best one's isomer is not a claim.
    from scipy import ndimage

    rng = np.random.default_rng(11)
    _, img = _image("icosahedral", 147, rng, random_rotation(rng))
    blurred = Image(ndimage.gaussian_filter(img.data, 2.5 / img.pixel_size_A), img.pixel_size_A)
    (f,) = fit_structure(blurred, element="Au", forms=FEW_FORMS)
    assert (f.isomer, f.reason, f.atoms) == ("unknown", "not_resolved", None)  # the domain's rule first
    (f,) = fit_structure(blurred, element="Au", forms=FEW_FORMS, check_resolution=False)
    assert f.isomer == "unknown" and f.reason in ("ambiguous_fit", "poor_fit"), (f.reason, f.ncc,
                                                                                 f.alternatives)
    if f.reason == "ambiguous_fit" and f.form != "glassy":  # (a glassy best model needs no margin)
        assert f.ncc - max(v["ncc"] for v in f.alternatives.values()) < MIN_MARGIN


def test_extended_xyz_round_trip(tmp_path) -> None:
    from ase.io import read

    rng = np.random.default_rng(2)
    _, img = _image("fcc", 147, rng, "[011]", shape="cuboctahedron", in_plane_deg=20.0)
    f = fit_structure(img, element="Au", forms=("cuboctahedron", "mackay_icosahedron"))[0]
    assert f.isomer == "fcc" and f.zone_axis == "[110]"
    back = read(f.write_xyz(tmp_path / "c0.xyz"), format="extxyz")
    assert np.allclose(back.positions, f.atoms.positions, atol=1e-5)
    assert back.get_chemical_symbols() == ["Au"] * f.n_atoms
    assert back.info["form"] == "cuboctahedron" and back.info["zone_axis"] == "[110]"
    assert np.allclose(np.reshape(back.info["rotation"], (3, 3)), f.rotation, atol=1e-6)
    assert back.info["scale"] == pytest.approx(f.scale, abs=1e-4) and "fitted scale" in back.info["frame"]


def test_noise_gives_no_fit_and_an_edge_cluster_a_reason() -> None:
    rng = np.random.default_rng(4)
    noise = rng.poisson(50.0, size=(128, 128)).astype(np.float32)
    with pytest.raises(NoClusterFoundError):
        fit_structure(noise, 0.35)
    _, img = _image("icosahedral", 147, rng, "random")
    cut = img.data[:, img.shape[1] // 2 + 2:]  # the cluster's left part is gone
    fits = fit_structure(cut, img.pixel_size_A)
    assert fits and all(f.isomer == "unknown" and f.reason == "cut_by_edge" and f.atoms is None for f in fits)


def test_cli_fit_writes_model_figure_and_json(tmp_path) -> None:
    from clusterspy.cli import main

    rng = np.random.default_rng(8)
    _, img = _image("icosahedral", 55, rng, "random")
    path = tmp_path / "ico.npy"
    np.save(path, img.data)
    out = tmp_path / "out"
    assert main(["fit", str(path), "--pixel-size", str(img.pixel_size_A), "--out", str(out)]) == 0
    record = json.loads((out / "ico_c0.json").read_text())
    assert record["isomer"] in ("icosahedral", "decahedral", "fcc", "amorphous")
    assert record["n_atoms"] > 0 and record["pixel_size_A"] == pytest.approx(img.pixel_size_A)
    assert (out / "ico_c0.xyz").stat().st_size > 0
    assert (out / "ico_c0.png").read_bytes()[:4] == b"\x89PNG"


def _two_fits() -> list:
    from clusterspy.fit import StructureFit

    alternatives = {"decahedral": {"form": "ino_decahedron", "n_atoms": 146, "ncc": 0.8321},
                    "fcc": {"form": "cuboctahedron", "n_atoms": 147, "ncc": 0.80}}
    return [StructureFit(cluster=0, x_px=20.0, y_px=22.5, isomer="icosahedral", form="mackay_icosahedron",
                         n_atoms=147, rotation=np.eye(3), zone_axis="5-fold", zone_axis_off_deg=1.2,
                         ncc=0.9121, alternatives=alternatives, scale=1.01, blur_A=0.9, aspect=1.0,
                         shear=0.0, window=(0, 0, 40, 40), seconds=3.0),
            StructureFit(cluster=1, x_px=50.0, y_px=40.0, isomer="unknown", form="cuboctahedron", n_atoms=309,
                         ncc=0.61, alternatives={"icosahedral": {"form": "mackay_icosahedron", "n_atoms": 309,
                                                                 "ncc": 0.60}},
                         reason="ambiguous_fit", note="the best crystalline model's fitted scale 0.850 says")]


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_cli_fit_prints_a_table_json_or_csv_of_its_fits(tmp_path, capsys, monkeypatch, fmt: str) -> None:
    """``clusterspy fit`` printed one JSON object per line whatever the user wanted; it now prints a
    table by default (one line per cluster, with the NCC margin over the best other isomer), and with
    --format json / csv the fields of the JSON it writes under --out, but the arrays."""
    import csv

    import clusterspy.fit
    from clusterspy.cli import main

    monkeypatch.setattr(clusterspy.fit, "fit_structure", lambda *a, **k: _two_fits())
    path = tmp_path / "two.npy"
    np.save(path, blob())
    out = tmp_path / "out"
    args = ["fit", str(path), "--pixel-size", "0.3", "--out", str(out)]
    assert main(args if fmt == "table" else [*args, "--format", fmt]) == 0
    printed = capsys.readouterr().out
    written = [json.loads((out / f"two_c{k}.json").read_text()) for k in (0, 1)]
    assert written[0]["rotation"] == np.eye(3).tolist() and written[0]["pixel_size_A"] == 0.3  # --out as ever
    # the microscope the fit assumed is recorded with it (the fit depends on it: StatSTEM's Pb)
    assert (written[0]["energy_keV"], written[0]["semiangle_mrad"]) == (200.0, 25.0)
    assert written[0]["clusterspy_version"]
    if fmt == "table":
        assert main([*args, "--energy", "300", "--semiangle", "21", "--out", str(tmp_path / "o3")]) == 0
        capsys.readouterr()
        third = json.loads((tmp_path / "o3" / "two_c0.json").read_text())
        assert (third["energy_keV"], third["semiangle_mrad"]) == (300.0, 21.0)
    expected = [{k: v for k, v in w.items() if k not in ("rotation", "window")} for w in written]
    if fmt == "json":
        assert json.loads(printed) == expected
    elif fmt == "csv":
        rows = list(csv.DictReader(printed.splitlines()))
        assert [list(r) for r in rows] == [list(e) for e in expected]
        assert [json.loads(r["alternatives"]) for r in rows] == [e["alternatives"] for e in expected]
        assert (rows[0]["isomer"], rows[0]["ncc"], rows[1]["reason"]) == ("icosahedral", "0.9121",
                                                                           "ambiguous_fit")
    else:
        header, _, *lines = printed.splitlines()
        assert header.split() == ["file", "cl", "isomer", "form", "n_atoms", "zone_axis", "ncc", "margin",
                                  "reason", "note"]
        assert lines[0].split() == ["two.npy", "0", "icosahedral", "mackay_icosahedron", "147", "5-fold",
                                    "0.912", "+0.080"]
        assert lines[1].split()[:8] == ["two.npy", "1", "unknown", "cuboctahedron", "309", "0.610", "+0.010",
                                        "ambiguous_fit"]
        assert lines[1].endswith("the best crystalline model's fitted scale 0.850 says")


def test_cli_fit_refuses_a_bad_element_with_one_line(tmp_path, capsys) -> None:
    from clusterspy.cli import main

    path = tmp_path / "x.npy"
    np.save(path, np.zeros((64, 64), dtype=np.float32) + 1.0)
    assert main(["fit", str(path), "--pixel-size", "0.3", "--element", "Xx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("clusterspy: error:")


@pytest.mark.parametrize(("pixel_size", "words"), [("1.05", "cannot resolve atomic columns"),
                                                     ("12.1", "12.1 pm")])
def test_cli_fit_refuses_a_pixel_size_that_cannot_resolve_columns(tmp_path, capsys, pixel_size: str,
                                                                   words: str) -> None:
    """A newcomer's finding: the fit took a frame at 10× its pixel size (StatSTEM's PtIr at 1.211 Å/px)
    for 46 clusters, its atomic columns, and claimed an isomer for ten; at 12.1 (pm typed as Å) it
    ran for minutes. It now refuses both at once, in one line, as classify does."""
    from clusterspy.cli import main

    rng = np.random.default_rng(8)
    _, img = _image("icosahedral", 55, rng, "random")
    path = tmp_path / "ico.npy"
    np.save(path, img.data)
    assert main(["fit", str(path), "--pixel-size", pixel_size]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("clusterspy: error:") and words in err[0]


def test_vectorised_emt_gives_ases_energy_and_forces() -> None:
    from ase import Atoms
    from ase.calculators.emt import EMT

    from clusterspy.structures.amorphous import random_packing
    from clusterspy.structures.emt import emt_energy_forces

    pos = random_packing(40, 2.88, np.random.default_rng(3))
    pos[0] += 20.0  # an atom without neighbours
    atoms = Atoms("Au40", positions=pos)
    atoms.calc = EMT()
    energy, forces = emt_energy_forces(pos, "Au")
    assert energy == pytest.approx(atoms.get_potential_energy(), abs=1e-8)
    assert np.abs(forces - atoms.get_forces()).max() < 1e-8


def _radii_A(pos: np.ndarray) -> np.ndarray:
    return np.sort(np.linalg.norm(pos - pos.mean(axis=0), axis=1))


def test_glassy_templates_are_relaxed_cached_and_not_the_packages_own(tmp_path, monkeypatch) -> None:
    from scipy.spatial import cKDTree

    from clusterspy.fit import library
    from clusterspy.structures import amorphous
    from clusterspy.structures.emt import emt_energy_forces, relax_emt_fast

    monkeypatch.setenv("CLUSTERSPY_CACHE", str(tmp_path))
    pos = library.glassy_template(30, "Au", 0)
    assert (tmp_path / "fit_glassy" / "Au_30_0.npy").exists()
    assert np.array_equal(library.glassy_template(30, "Au", 0), pos)  # read back from the cache
    assert np.abs(emt_energy_forces(pos, "Au")[1]).max() < 0.06  # relaxed (FIRE to 0.05 eV/Å)
    nn_A = cKDTree(pos).query(pos, k=2)[0][:, 1]
    assert 2.55 < np.median(nn_A) < 2.85  # Au–Au bonds, not the packing's 2.36 Å minimum distance
    # not any structure of the pool the structures package draws glassy clusters from
    monkeypatch.setattr(amorphous, "relax_emt", relax_emt_fast)  # the same FIRE run, faster
    monkeypatch.delenv("CLUSTERSPY_CACHE")
    amorphous.glassy_positions.cache_clear()
    for k in range(amorphous.POOL_SIZE):
        assert np.abs(_radii_A(amorphous.glassy_positions("Au", 30, k)) - _radii_A(pos)).max() > 0.05
    amorphous.glassy_positions.cache_clear()


def test_a_crystal_is_claimed_only_when_it_beats_the_glassy_model() -> None:
    from clusterspy.fit.api import claimed_model
    from clusterspy.fit.library import build_model
    from clusterspy.fit.render import Pose
    from clusterspy.fit.search import Candidate

    pose = Pose(np.eye(3), 0.0, 0.0)
    ico = Candidate(build_model("mackay_icosahedron", 55, "Au"), pose, 0.85)
    glassy = Candidate(build_model("glassy", 55, "Au"), pose, 0.84)
    best_of = {"icosahedral": ico, "amorphous": glassy}
    assert claimed_model(ico, best_of, disordered=True) == (glassy, None)
    assert claimed_model(ico, best_of, disordered=False) == (ico, "ambiguous_fit")
    glassy.ncc = 0.85 - MIN_MARGIN - 0.01
    assert claimed_model(ico, best_of, disordered=True) == (ico, None)
    # a glassy best model is no claim while the spectrum shows lattice fringes
    glassy.ncc = 0.85 + MIN_MARGIN + 0.01
    assert claimed_model(glassy, best_of, disordered=False) == (glassy, "ambiguous_fit")
    assert claimed_model(glassy, best_of, disordered=True) == (glassy, None)


def test_fringe_peak_tells_a_crystal_from_a_glassy_cluster(tmp_path, monkeypatch) -> None:
    from ase import Atoms

    from clusterspy.detection import detect_clusters
    from clusterspy.domain import fringe_peak, particle_diameter_A
    from clusterspy.fit.api import FRINGE_PEAK_MAX
    from clusterspy.fit.library import glassy_template

    monkeypatch.setenv("CLUSTERSPY_CACHE", str(tmp_path))
    rng = np.random.default_rng(12)
    glassy = Atoms("Au80", positions=np.asarray(glassy_template(80, "Au", 9)) @ random_rotation(rng).T)
    peaks = []
    for atoms in (glassy, cluster("fcc", 147, "Au", rng, shape="cuboctahedron", orientation="random")):
        img = simulate(atoms, Microscope(defocus_A=4.0, source_size_A=0.5), pixel_size=0.35, extent=44.8,
                       rng=rng, acquisition=Acquisition(dose_e_per_A2=3e4))
        (d,) = detect_clusters(img, min_diameter_A=5.0, exclude_border=False)
        peaks.append(fringe_peak(img, d.x_px, d.y_px, particle_diameter_A(d.diameter_A)))
    assert peaks[0] < FRINGE_PEAK_MAX < peaks[1], peaks


@pytest.mark.parametrize("pqr", [(2, 1, 0), (3, 4, 0), (4, 2, 1), (6, 8, 3), (12, 10, 0)])
def test_decahedron_count_in_closed_form_is_ases(pqr: tuple[int, int, int]) -> None:
    from ase.cluster import Decahedron

    from clusterspy.fit.library import decahedron_count

    assert decahedron_count(*pqr) == len(Decahedron("Au", *pqr))


def test_size_refinement_finds_the_decahedron_between_the_coarse_sizes() -> None:
    # A Marks decahedron (p, q, r) = (4, 2, 1), 247 atoms, that no coarse form's size grid holds:
    # from the 192-atom Marks model in the right pose, the refinement finds it.
    from clusterspy.fit.api import make_window
    from clusterspy.fit.library import build_model, family
    from clusterspy.fit.render import Pose
    from clusterspy.fit.search import Candidate, refine, try_neighbours

    rng = np.random.default_rng(21)
    atoms, img = _image("decahedral", 247, rng, random_rotation(rng), shape={"p": 4, "q": 2, "r": 1})
    win, _ = make_window(img, img.shape[1] / 2, img.shape[0] / 2, 26.0, Microscope(), 79)
    start = build_model("marks_decahedron", 192, "Au")
    assert start.n_atoms == 192 and len(atoms) == 247
    cx, cy = (c * win.pixel_size_A for c in win.centre_px)
    cand = refine(win, Candidate(start, Pose(np.asarray(atoms.info["rotation"]), cx, cy, 1.0, 0.6), 0.0))
    found = try_neighbours(win, cand, family(start))
    assert found.model.n_atoms == 247 and dict(found.model.params) == {"p": 4, "q": 2, "r": 1}
    assert found.ncc > cand.ncc


@pytest.mark.xfail(strict=True, reason="known defect: a glassy cluster's fitted atom count hangs on the "
                   "detected diameter: this Au80 measures 12.54 Å with the frame-wide threshold (fitted "
                   "80 atoms) and 12.19 Å with the per-cluster one (fitted 54: glassy templates of other "
                   "sizes match about as well, so NCC does not fix the size)")
def test_a_glassy_cluster_is_fitted_as_amorphous_with_its_atom_count(tmp_path, monkeypatch) -> None:
    from clusterspy.structures import amorphous
    from clusterspy.structures.emt import relax_emt_fast

    monkeypatch.setenv("CLUSTERSPY_CACHE", str(tmp_path))
    monkeypatch.setattr(amorphous, "relax_emt", relax_emt_fast)  # the same FIRE run, faster
    amorphous.glassy_positions.cache_clear()
    rng = np.random.default_rng(31)
    atoms, img = _image("amorphous", 80, rng, "random", shape="glassy")
    amorphous.glassy_positions.cache_clear()
    (f,) = fit_structure(img, element="Au", forms=FEW_FORMS)
    assert f.isomer == "amorphous" and f.form == "glassy", (f.reason, f.ncc, f.alternatives)
    assert abs(f.n_atoms - len(atoms)) <= 0.1 * len(atoms)


def test_a_resolved_lattice_takes_the_zone_axis_pose_a_random_one_keeps_its_own() -> None:
    """The zone-axis prior (:func:`clusterspy.fit.api.zone_prior`): a fit that drifted off the zone
    axis of a cluster imaged on it is replaced by the best pose on a named axis; a cluster in a
    random orientation keeps its free pose (every axis-locked pose matches far worse)."""
    from clusterspy.fit.api import ZONE_NCC_TOLERANCE, make_window, zone_prior
    from clusterspy.fit.library import models_near
    from clusterspy.fit.search import Candidate, refine

    rng = np.random.default_rng(5)
    forms = ("truncated_octahedron",)
    micro = Microscope(defocus_A=4.0, source_size_A=0.5)
    for orientation in ("[011]", "random"):
        atoms, img = _image("fcc", 201, rng, orientation, shape="truncated_octahedron")
        truth = np.asarray(atoms.info["rotation"])
        model = models_near("truncated_octahedron", 201, "Au", spread=1.2, limit=1)[0]
        win, _ = make_window(img, img.shape[1] / 2, img.shape[0] / 2, 24.0, micro, 79)
        pose = refine(win, Candidate(model, _pose(win, truth), 0.0)).pose
        if orientation == "[011]":  # the free fit drifted 9° off the axis
            pose = pose.moved(rotation=axis_rotation([1.0, 0.0, 0.0], np.radians(9.0)) @ pose.rotation)
        free = Candidate(model, pose, float(win.score([model.positions], [pose])[0]))
        assert zone_axis(free.pose.rotation, "Oh")[0] is None or orientation == "random"
        out = zone_prior(win, free, 201, "Au", forms)
        if orientation == "[011]":
            assert out is not free and out.ncc >= free.ncc - ZONE_NCC_TOLERANCE
            assert zone_axis(out.pose.rotation, "Oh") == ("[110]", pytest.approx(0.0, abs=1e-6))
            assert misorientation_deg(out.pose.rotation, truth, "Oh") < 3.0
        else:
            assert zone_axis(truth, "Oh")[0] is None
            assert out is free


@pytest.mark.parametrize("truth", ["truncated_octahedron", "twinned"])
def test_a_twin_stands_only_where_the_columns_show_it(truth: str) -> None:
    """:func:`clusterspy.fit.api.twin_shown`: a twinned model fitted to a single crystal seen on
    [011] gives way to the single-crystal model whose columns match; a twin seen edge-on on [011]
    (its columns mirrored across the boundary) stays twinned."""
    from clusterspy.fit.api import fit_window, make_window, twin_shown
    from clusterspy.fit.search import lattice_ncc

    rng = np.random.default_rng(17)
    micro = Microscope(defocus_A=4.0, source_size_A=0.5)
    _, img = _image("fcc", 201, rng, "[011]", shape=truth)
    win, _ = make_window(img, img.shape[1] / 2, img.shape[0] / 2, 24.0, micro, 79)
    twinned, _ = fit_window(win, 201, "Au", forms=("twinned_fcc",))
    assert twinned.model.form == "twinned_fcc"
    out = twin_shown(win, twinned, 201, "Au", forms=("truncated_octahedron", "twinned_fcc"))
    if truth == "twinned":
        assert out is twinned
    else:
        assert out.model.form == "truncated_octahedron"
        assert zone_axis(out.pose.rotation, "Oh")[0] == "[110]"
        assert lattice_ncc(win, out) > lattice_ncc(win, twinned)


def _pose(win, rotation: np.ndarray):
    from clusterspy.fit.render import Pose

    cx, cy = win.centre_px
    return Pose(rotation, cx * win.pixel_size_A, cy * win.pixel_size_A, 1.0, 0.6)


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data")
def test_wide_field_blobs_at_a_wrong_pixel_size_are_not_fitted():
    """An ArdaGen wide field (2 Å/px, no atomic columns) claimed at 0.5 Å/px: one blob was fitted as
    a conclusive 'amorphous' glassy cluster (its speckle has no fringes); by classify's rules its
    "columns" are no stronger than the frame's texture around it (not_resolved), so no fit claims it."""
    from clusterspy.io import read_image

    img = read_image(SHARED / "widefield" / "ardagen" / "images" / "Cu4.jpg", pixel_size_A=0.5)
    fits = fit_structure(img, element="Cu")
    assert fits and all(f.isomer == "unknown" for f in fits)
    assert "not_resolved" in {f.reason for f in fits}


def test_ncc_with_tail_is_the_correlation_of_the_best_non_negative_mix() -> None:
    from clusterspy.fit.render import intensity_fit_tail, ncc_many, ncc_with_tail

    rng = np.random.default_rng(2)
    a, b = rng.random((2, 1, 30, 30))
    noise = rng.normal(size=(30, 30))
    exact = 2.0 * a[0] + 3.0 * b[0] + 1.0
    assert ncc_with_tail(a, b, exact)[0] == pytest.approx(1.0, abs=1e-9)
    assert intensity_fit_tail(a[0], b[0], exact) == pytest.approx((2.0, 3.0, 1.0), abs=1e-6)
    # a tail the data do not want (negative weight) falls back to the template alone
    minus = 2.0 * a[0] - 3.0 * b[0] + 0.01 * noise
    plain = ncc_many(a, minus)[0]
    assert ncc_with_tail(a, b, minus)[0] == pytest.approx(plain, abs=1e-12)
    # never below the template's own NCC, never above 1
    mixed = a[0] + 0.5 * b[0] + noise
    r = ncc_with_tail(a, b, mixed)[0]
    assert ncc_many(a, mixed)[0] <= r <= 1.0


def test_fit_recovers_a_pixel_size_error_and_a_scan_distortion() -> None:
    """A [110] truncated octahedron whose image is given 12 % too large a pixel size and stretched by a
    linear scan distortion (x × 1.04, y ÷ 1.04): the coarse search's zoomed data
    (:data:`clusterspy.fit.search.COARSE_SCALES`) with the model sizes each scale implies
    (:func:`clusterspy.fit.api.coarse_models`) and the refined aspect recover both. With the zoomed
    data but the sizes of scale 1 only, the fit took a 490-atom model at scale 1.10, 11° off the
    axis (NCC 0.76; this one: 0.997)."""
    from scipy import ndimage

    rng = np.random.default_rng(8)
    _, img = _image("fcc", 405, rng, "[011]", shape="truncated_octahedron")
    aspect = 1.04
    c = (np.array(img.shape) - 1) / 2.0
    m = np.diag([aspect, 1.0 / aspect])  # (row, col): y ÷ aspect, x × aspect in the output
    data = ndimage.affine_transform(img.data, m, offset=c - m @ c, order=1, mode="nearest")
    claimed = Image(data.astype(np.float32), img.pixel_size_A * 1.12)
    (f,) = fit_structure(claimed, element="Au", forms=("truncated_octahedron", "ino_decahedron",
                                                      "mackay_icosahedron"),
                         microscope=Microscope(defocus_A=4.0, source_size_A=0.5))
    assert f.isomer == "fcc" and f.reason is None
    assert f.scale == pytest.approx(1.12, abs=0.03)
    assert f.aspect == pytest.approx(aspect, abs=0.015)
    assert f.zone_axis == "[110]"
    assert abs(f.n_atoms - 405) <= 0.15 * 405


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data")
def test_statstems_pb_particle_is_fitted_as_fcc_on_110() -> None:
    """StatSTEM's Pb particle: its lattice is 13 % larger than Pb's at the file's pixel size and 9 %
    larger along x than along y (scan distortion), and it sits in a diffuse halo brighter than its
    columns' contrast. Before the coarse scale search, the scan-distortion refinement and the
    diffuse tail, it was an ambiguous Marks decahedron of 2,012 atoms seen off every zone axis. (The
    NCC changes by < 0.01 between 970 and 1,504 atoms, truncated or not: a twinned model of 1,504
    atoms, its lower half off the zone, led by 0.0015 until the twin had to show in the columns
    (:func:`clusterspy.fit.api.twin_shown`). StatSTEM counted 1,189 atoms; the goal is ±15 %.)"""
    with np.load(SHARED / "real_atomic" / "Pb_fcc_statstem.npz") as z:
        img = Image(np.asarray(z["image"], dtype=np.float32), float(z["pixel_size_A"]))
        n_statstem = int(z["atom_counts"].sum())
    fits = fit_structure(img, element="Pb", microscope=Microscope(energy_keV=300.0, semiangle_mrad=21.0))
    f = max(fits, key=lambda f: f.n_atoms or 0)
    assert f.isomer == "fcc" and f.reason is None
    assert f.zone_axis == "[110]" and f.form != "twinned_fcc"  # a single crystal
    assert abs(f.n_atoms / n_statstem - 1.0) <= 0.15
    assert f.scale == pytest.approx(1.13, abs=0.03)  # the FFT's lattice: 1.13 × Pb's
    assert f.aspect == pytest.approx(1.045, abs=0.02)


def test_a_saved_fit_reads_back_with_every_field(tmp_path) -> None:
    """``series --verify-sample`` reads saved fits back (:meth:`StructureFit.to_npz_bytes` /
    :meth:`~StructureFit.from_npz`): every field must survive, the scan distortion's too (a fixed
    list of fields had left ``aspect`` and ``shear`` out)."""
    from ase import Atoms

    from clusterspy.fit.result import StructureFit

    fit = StructureFit(cluster=2, x_px=10.5, y_px=20.25, isomer="fcc", form="truncated_octahedron",
                       n_atoms=2, rotation=np.eye(3), zone_axis="[110]", zone_axis_off_deg=0.5,
                       atoms=Atoms("Au2", positions=[[0, 0, 0], [2.9, 0, 0]]),
                       simulated=Image(np.ones((4, 4), np.float32), 0.3, {"window": [0, 0, 4, 4]}),
                       ncc=0.93,
                       alternatives={"decahedral": {"form": "ino_decahedron", "n_atoms": 3, "ncc": 0.9}},
                       scale=1.13, blur_A=1.0, aspect=1.05, shear=-0.01, window=(0, 0, 4, 4),
                       reason=None, note="a note", seconds=3.5)
    path = tmp_path / "fit.npz"
    path.write_bytes(fit.to_npz_bytes(extra={"frame": 1}))
    back = StructureFit.from_npz(path)
    assert back.to_dict() == fit.to_dict()
    assert StructureFit.npz_extra(path) == {"frame": 1}
    assert np.allclose(back.atoms.positions, fit.atoms.positions) and np.allclose(back.rotation, np.eye(3))


def test_a_neighbour_in_the_window_is_left_out_of_the_fit() -> None:
    """Another cluster 22 Å away lies in the window of a 147-atom icosahedron: its intensity is no
    part of any model of this cluster, so the fit leaves its disc out (before: NCC 0.894 against
    0.990 alone)."""
    rng = np.random.default_rng(11)
    micro = Microscope(defocus_A=4.0, source_size_A=0.5)
    atoms = cluster("icosahedral", 147, "Au", rng, orientation=random_rotation(rng))
    dose = Acquisition(dose_e_per_A2=3e4)
    alone = simulate(atoms, micro, pixel_size=0.35, extent=80.0, rng=rng, acquisition=dose)
    other = cluster("fcc", 309, "Au", rng, orientation=random_rotation(rng), shape="cuboctahedron")
    img2 = simulate(other, micro, pixel_size=0.35, extent=80.0, rng=rng, acquisition=dose)
    shift = round(22.0 / 0.35)
    both = alone.data + np.roll(img2.data, shift, axis=1) - np.median(img2.data)
    (a,) = fit_structure(alone, element="Au", forms=FEW_FORMS)
    fits = fit_structure(Image(both.astype(np.float32), 0.35), element="Au", forms=FEW_FORMS)
    assert len(fits) == 2
    (f,) = [f for f in fits if abs(f.x_px - a.x_px) < 3 and abs(f.y_px - a.y_px) < 3]
    assert (f.isomer, f.form, f.n_atoms) == (a.isomer, a.form, a.n_atoms)
    assert (a.isomer, a.form, a.n_atoms) == ("icosahedral", "mackay_icosahedron", 147)
    assert f.ncc == pytest.approx(a.ncc, abs=0.005)
    # the figure's residual leaves the neighbour blank rather than call it a misfit
    from clusterspy.plots import plot_structure_fit

    assert f.simulated.metadata["left_out_px"] and not a.simulated.metadata["left_out_px"]
    fig = plot_structure_fit(Image(both.astype(np.float32), 0.35), f)
    residual = np.asarray(fig.axes[2].images[0].get_array(), dtype=float)
    assert 0.02 < np.mean(~np.isfinite(residual)) < 0.4
    assert "not fitted" in fig.axes[2].get_title()


def test_a_neighbours_disc_leaves_the_clusters_own_rim_to_it() -> None:
    from clusterspy.fit.api import left_out_pixels

    # the cluster at (20, 20), radius 10 px; a neighbour at (38, 20), radius 10, its margin disc 13
    out = left_out_pixels((40, 60), [(38.0, 20.0, 10.0, 13.0), (20.0, 20.0, 10.0)])
    assert not out[20, 20] and not out[20, 28]  # the cluster's own rim: within the margin disc, kept
    assert out[20, 30] and out[20, 38] and out[20, 50]  # the neighbour's side of the power bisector
    assert not out[20, 52]  # beyond its margin disc
    # a larger neighbour moves the bisector towards the cluster
    big = left_out_pixels((40, 60), [(38.0, 20.0, 14.0, 17.0), (20.0, 20.0, 10.0)])
    assert big[20, 27] and not out[20, 27]
    assert not left_out_pixels((40, 60), [(20.0, 20.0, 10.0)]).any()


def test_cli_fit_refuses_an_out_file_and_a_lower_case_element_before_fitting(tmp_path, capsys) -> None:
    """A newcomer's findings: --out naming an existing file gave a 46-line traceback after a 22 s fit;
    --element pt was refused without naming Pt."""
    import time

    from clusterspy.cli import main

    rng = np.random.default_rng(8)
    _, img = _image("icosahedral", 55, rng, "random")
    path = tmp_path / "ico.npy"
    np.save(path, img.data)
    afile = tmp_path / "afile"
    afile.write_text("x")
    t0 = time.perf_counter()
    assert main(["fit", str(path), "--pixel-size", str(img.pixel_size_A), "--out", str(afile)]) == 2
    assert time.perf_counter() - t0 < 5.0  # refused before the fit
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a file; give a folder" in err[0]
    assert main(["fit", str(path), "--pixel-size", str(img.pixel_size_A), "--element", "pt"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean Pt?" in err[0]


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data")
def test_fit_detects_and_judges_the_edge_as_classify_does() -> None:
    """A newcomer's finding: StatSTEM's PtIr cropped close and padded by 30 px of zeros was cut_by_edge
    for classify but fitted (fcc, 807 atoms) by the fit, whose detector ran with another size range
    and found no fill boundary; both now detect alike."""
    import clusterspy
    from clusterspy.predict import detection_range_A

    with np.load(SHARED / "real_atomic" / "PtIr_fcc_statstem.npz") as z:
        crop = np.asarray(z["image"], dtype=np.float32)[21:342, 43:398]
        px = float(z["pixel_size_A"])
    padded = Image(np.pad(crop, 30), px)
    (c,) = clusterspy.classify(padded)
    assert c.reason == "cut_by_edge"
    fits = clusterspy.fit_structure(padded, element="Pt")
    assert [(f.cluster, f.reason) for f in fits] == [(0, "cut_by_edge")]
    assert np.hypot(fits[0].x_px - c.x_px, fits[0].y_px - c.y_px) < 1.0
    lo, hi = detection_range_A()
    assert 5.0 < lo < hi < 200.0
