"""Tests of clusterspy.structures: geometry checked from the coordinates, never trusted from the builder."""

from __future__ import annotations

import time
from itertools import combinations

import numpy as np
import pytest
from scipy.spatial import cKDTree

pytest.importorskip("ase")

from clusterspy.errors import ConfigError
from clusterspy.isomers import Isomer
from clusterspy.structures import (
    carbon_support,
    cluster,
    cna_signatures,
    coordination_numbers,
    identify_motif,
    perturb,
    place_on_support,
    random_rotation,
    structure_summary,
)
from clusterspy.structures.analysis import atom_environments
from clusterspy.structures.disorder import add_adatoms, surface_vacancies

MAGIC = (55, 147, 309, 561, 923)


def _nn(pos: np.ndarray) -> float:
    d, _ = cKDTree(pos).query(pos, k=2)
    return float(np.median(d[:, 1]))


def _symmetric_about_z(pos: np.ndarray, order: int, tol_A: float = 0.05) -> bool:
    """True if a rotation by 2π/order about z maps the atom set onto itself."""
    c, s = np.cos(2 * np.pi / order), np.sin(2 * np.pi / order)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    d, _ = cKDTree(pos).query(pos @ rot.T)
    return bool(d.max() < tol_A)


# ------------------------------------------------------------------------------------------ atom counts
@pytest.mark.parametrize("size", MAGIC)
@pytest.mark.parametrize(
    ("motif", "shape"),
    [("icosahedral", None), ("decahedral", None), ("decahedral", "ino"), ("fcc", "cuboctahedron"),
     ("fcc", None)],
)
def test_magic_numbers_are_exact(motif, shape, size):
    atoms = cluster(motif, size, rng=0, shape=shape)
    assert len(atoms) == size


@pytest.mark.parametrize("size", [100, 200, 250, 400, 700, 1200, 2000])
@pytest.mark.parametrize(
    ("motif", "shape", "tolerance"),
    [("icosahedral", None, 0.5), ("decahedral", "ino", 0.25), ("decahedral", "marks", 0.25),
     ("fcc", None, 0.2), ("fcc", "truncated_octahedron", 0.2), ("fcc", "wulff", 0.3),
     ("fcc", "octahedron", 0.5)],
)
def test_nearest_achievable_size(motif, shape, tolerance, size):
    atoms = cluster(motif, size, rng=1, shape=shape)
    assert abs(len(atoms) - size) <= tolerance * size


def test_icosahedron_nearest_is_nearest():
    counts = np.array([(10 * n**3 - 15 * n**2 + 11 * n - 3) // 3 for n in range(2, 12)])
    for size in (60, 100, 200, 240, 400, 800, 1200):
        want = counts[np.argmin(np.abs(counts - size))]
        assert len(cluster("icosahedral", size, rng=0)) == want


def test_explicit_shape_parameters_match_ase():
    from ase.cluster import Decahedron, Octahedron

    atoms = cluster("decahedral", 500, rng=0, shape={"p": 4, "q": 3, "r": 2})
    assert len(atoms) == len(Decahedron("Au", 4, 3, 2))
    assert atoms.info["shape"] == "marks"
    atoms = cluster("fcc", 500, rng=0, shape={"length": 10, "cutoff": 3})
    assert len(atoms) == len(Octahedron("Au", 10, 3))
    assert cluster("icosahedral", 13, rng=0, shape={"shells": 6}).get_global_number_of_atoms() == 561


# ------------------------------------------------------------------------------------------ geometry
@pytest.mark.parametrize("element", ["Au", "Pt", "Ag", "Cu", "Pd", "Ni", "Al", "Pb", "Ir", "Rh"])
def test_lattice_constant_from_ase(element):
    from ase.data import atomic_numbers, reference_states

    atoms = cluster("fcc", 309, element, rng=0, shape="cuboctahedron")
    a = reference_states[atomic_numbers[element]]["a"]
    assert _nn(atoms.positions) == pytest.approx(a / np.sqrt(2), rel=1e-6)
    assert set(atoms.get_chemical_symbols()) == {element}


def test_centred_and_info():
    for motif in ("icosahedral", "decahedral", "fcc"):
        atoms = cluster(motif, 309, rng=3)
        assert np.abs(atoms.get_center_of_mass()).max() < 1e-9
        assert atoms.info["motif"] == motif
        assert atoms.info["orientation"] == "random"
        assert isinstance(atoms.info["shape"], str)
        rot = np.array(atoms.info["rotation"])
        assert np.allclose(rot @ rot.T, np.eye(3))


def test_cuboctahedron_coordination():
    cn = coordination_numbers(cluster("fcc", 309, rng=0, shape="cuboctahedron"))
    # 147 interior atoms; 12 vertices with 5 neighbours; 4·... total bonds = Σcn/2
    assert np.sum(cn == 12) == 147
    assert np.sum(cn == 5) == 12
    assert cn.max() == 12


def test_icosahedron_coordination():
    cn = coordination_numbers(cluster("icosahedral", 309, rng=0))
    assert np.sum(cn == 12) == 147
    assert np.sum(cn == 6) == 12  # the 12 vertices
    assert cn.min() == 6


def test_reproducible_from_rng():
    for motif, shape in (("icosahedral", None), ("fcc", "lamellar"), ("decahedral", "random")):
        a = cluster(motif, 309, rng=np.random.default_rng(7), shape=shape)
        b = cluster(motif, 309, rng=np.random.default_rng(7), shape=shape)
        c = cluster(motif, 309, rng=np.random.default_rng(8), shape=shape)
        assert np.array_equal(a.positions, b.positions)
        assert not np.allclose(a.positions[: len(c)], c.positions[: len(a)])


def test_cache_is_not_mutated():
    a = cluster("icosahedral", 147, rng=0, orientation=np.eye(3))
    a.positions[:] = 0.0
    b = cluster("icosahedral", 147, rng=0, orientation=np.eye(3))
    assert np.abs(b.positions).max() > 5


# ------------------------------------------------------------------------------------------ orientation
@pytest.mark.parametrize(
    ("motif", "shape", "axis", "order"),
    [
        ("icosahedral", None, "5-fold", 5),
        ("icosahedral", None, "3-fold", 3),
        ("icosahedral", None, "2-fold", 2),
        ("decahedral", "ino", "5-fold", 5),
        ("decahedral", "ino", "across", 2),
        ("decahedral", "marks", "2-fold", 2),
        ("fcc", "cuboctahedron", "[001]", 4),
        ("fcc", "cuboctahedron", "[111]", 3),
        ("fcc", "cuboctahedron", "[011]", 2),
        ("fcc", "truncated_octahedron", "[001]", 4),
    ],
)
def test_zone_axis_is_a_symmetry_axis_along_the_beam(motif, shape, axis, order):
    atoms = cluster(motif, 309, rng=5, shape=shape, orientation=axis)
    assert atoms.info["orientation"] in (axis, "across")
    assert _symmetric_about_z(atoms.positions, order)
    if order in (5, 4):  # not an accident: no higher symmetry about another axis is claimed
        assert not _symmetric_about_z(atoms.positions, 7)


def test_random_orientation_breaks_zone_axis_symmetry():
    atoms = cluster("icosahedral", 309, rng=11)
    assert not any(_symmetric_about_z(atoms.positions, n, tol_A=0.05) for n in (2, 3, 5))


def test_zone_axis_columns_in_projection():
    """On a zone axis atoms stack in columns: far fewer distinct (x, y) than atoms; not so at random."""
    def n_columns(atoms):
        xy = np.round(atoms.positions[:, :2] / 0.1).astype(int)
        return len(np.unique(xy, axis=0))

    for motif, shape, axis in [("fcc", "cuboctahedron", "[011]"), ("fcc", "twinned", "[011]"),
                               ("decahedral", None, "5-fold")]:
        za = cluster(motif, 561, rng=2, shape=shape, orientation=axis)
        rnd = cluster(motif, 561, rng=2, shape=shape)
        assert n_columns(za) < 0.4 * len(za), (motif, axis)
        assert n_columns(rnd) > 0.8 * len(rnd)


def test_twinned_edge_on_along_011():
    """For a twinned crystal the twin plane (hcp atoms) contains the beam direction along [011]."""
    atoms = cluster("fcc", 561, rng=0, shape="twinned", orientation="[011]", in_plane_deg=0)
    env = atom_environments(atoms)
    hcp = atoms.positions[env == "hcp"]
    assert len(hcp) > 10
    centred = hcp - hcp.mean(axis=0)
    normal = np.linalg.svd(centred)[2][-1]
    assert abs(normal[2]) < 0.05  # beam (z) lies in the twin plane
    assert np.abs(centred @ normal).max() < 0.05  # all hcp atoms in one plane


def test_uniform_random_rotation():
    rng = np.random.default_rng(0)
    z = np.array([random_rotation(rng)[:, 2] for _ in range(4000)])
    assert np.allclose(np.linalg.norm(z, axis=1), 1)
    assert np.abs(z.mean(axis=0)).max() < 0.05
    assert np.allclose((z**2).mean(axis=0), 1 / 3, atol=0.03)
    # uniform on the sphere: |z_3| is uniform on [0, 1]
    hist, _ = np.histogram(np.abs(z[:, 2]), bins=5, range=(0, 1))
    assert hist.min() > 0.85 * hist.mean()


def test_orientation_matrix_is_applied():
    rot = random_rotation(np.random.default_rng(4))
    a = cluster("decahedral", 147, rng=0, orientation=np.eye(3))
    b = cluster("decahedral", 147, rng=0, orientation=rot)
    assert np.allclose(a.positions @ rot.T, b.positions, atol=1e-9)
    assert b.info["orientation"] == "matrix"


# ------------------------------------------------------------------------------------------ CNA
def _cna_bruteforce(pos, cutoff):
    """Reference CNA written the plain way (sets and graph search) to check the vectorised one."""
    tree = cKDTree(pos)
    nbrs = [set(tree.query_ball_point(p, cutoff)) - {i} for i, p in enumerate(pos)]
    out = {}
    for i in range(len(pos)):
        for j in nbrs[i]:
            if j <= i:
                continue
            common = nbrs[i] & nbrs[j]
            edges = [(a, b) for a, b in combinations(sorted(common), 2) if b in nbrs[a]]
            best = 0
            seen: set = set()
            for e in edges:
                if e in seen:
                    continue
                comp, stack = {e}, [e]
                while stack:
                    a, b = stack.pop()
                    for f in edges:
                        if f not in comp and (set(f) & {a, b}):
                            comp.add(f)
                            stack.append(f)
                seen |= comp
                best = max(best, len(comp))
            out[(i, j)] = (len(common), len(edges), best)
    return out


@pytest.mark.parametrize("motif", ["icosahedral", "decahedral", "fcc", "noisy"])
def test_vectorised_cna_matches_bruteforce(motif):
    if motif == "noisy":
        rng = np.random.default_rng(0)
        pos = rng.uniform(-6, 6, size=(150, 3))
        pos = pos[cKDTree(pos).query(pos, k=2)[0][:, 1] > 1.8]
        cutoff = 3.4
    else:
        atoms = perturb(cluster(motif, 147, rng=1), rng=2, thermal_A=0.1)
        pos, cutoff = atoms.positions, 3.45
    pairs, sig = cna_signatures(pos, cutoff)
    ref = _cna_bruteforce(pos, cutoff)
    assert len(ref) == len(pairs)
    got = {(int(i), int(j)): tuple(int(x) for x in s) for (i, j), s in zip(pairs, sig, strict=True)}
    assert got == ref


def test_cna_signature_counts_icosahedron_309():
    s = structure_summary(cluster("icosahedral", 309, rng=0))
    # 6 five-fold axes through the centre, 4 interior 555 bonds on each side of the centre minus the
    # outermost (vertex atoms have 6 neighbours): 6 axes × 6 = 36
    assert s["five_fold_axes"] == 6
    assert s["n555"] == 36
    assert s["interior_other_fraction"] == 0
    assert s["environments"]["ico"] == 1  # the central atom


def test_cna_signature_counts_decahedron_and_cuboctahedron():
    dec = structure_summary(cluster("decahedral", 309, rng=0))
    assert dec["five_fold_axes"] == 1
    assert dec["n555"] > 0 and dec["n422"] > 0
    cub = structure_summary(cluster("fcc", 309, rng=0, shape="cuboctahedron"))
    assert cub["n555"] == 0 and cub["n422"] == 0
    assert cub["environments"]["fcc"] == 147
    assert set(cub["signatures"]) >= {"421"}


@pytest.mark.parametrize(("shape", "planes"), [("twinned", 1), ("lamellar", 2)])
def test_twin_planes_are_flat_422_layers(shape, planes):
    atoms = cluster("fcc", 923, rng=3, shape=shape, orientation="[111]")
    env = atom_environments(atoms)
    z = np.round(atoms.positions[env == "hcp", 2], 1)
    assert len(np.unique(z)) == planes  # twin-plane atoms lie in `planes` (111) layers ⟂ beam
    assert structure_summary(atoms)["n422"] > 0


SIZES = (147, 309, 561, 923, 2000)
BUILDERS = [
    ("icosahedral", "mackay"), ("decahedral", "ino"), ("decahedral", "marks"),
    ("fcc", "truncated"), ("fcc", "cuboctahedron"), ("fcc", "truncated_octahedron"),
    ("fcc", "octahedron"), ("fcc", "wulff"), ("fcc", "twinned"), ("fcc", "lamellar"),
]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("motif", "shape"), BUILDERS)
def test_identify_motif_recognises_every_builder(motif, shape, size):
    atoms = cluster(motif, size, rng=size, shape=shape)
    assert identify_motif(atoms) is Isomer(motif)


@pytest.mark.parametrize(("motif", "shape"), BUILDERS)
def test_identify_motif_with_disorder(motif, shape):
    atoms = cluster(motif, 561, rng=9, shape=shape,
                    disorder={"thermal_A": 0.08, "vacancies": 5, "adatoms": 5, "strain": 0.01})
    assert identify_motif(atoms) is Isomer(motif)


def test_identify_random_packing_as_amorphous():
    rng = np.random.default_rng(0)
    pos = rng.uniform(-12, 12, size=(3000, 3))
    pos = pos[cKDTree(pos).query(pos, k=2)[0][:, 1] > 2.3][:600]
    assert identify_motif(pos) is Isomer.AMORPHOUS


# ------------------------------------------------------------------------------------------ amorphous
@pytest.fixture(scope="module")
def glassy():
    t = time.perf_counter()
    atoms = cluster("amorphous", 147, "Au", rng=0, shape={"index": 0})
    return atoms, time.perf_counter() - t


def test_amorphous_is_disordered(glassy):
    atoms, _ = glassy
    assert len(atoms) == 147
    assert identify_motif(atoms) is Isomer.AMORPHOUS
    env = atom_environments(atoms)
    assert np.mean(env != "other") < 0.1
    s = structure_summary(atoms)
    assert s["interior_other_fraction"] > 0.3
    d, _ = cKDTree(atoms.positions).query(atoms.positions, k=2)
    assert d[:, 1].min() > 2.3  # relaxed: no overlapping atoms (Au nn = 2.88 Å)
    assert 2.6 < np.median(d[:, 1]) < 2.95
    # compact, not a gas: most atoms well bonded
    assert np.median(coordination_numbers(atoms)) >= 8


def test_amorphous_pool_is_reproducible(glassy):
    atoms, _ = glassy
    again = cluster("amorphous", 147, "Au", rng=123, shape={"index": 0}, orientation=np.eye(3))
    # same pool member up to rotation: identical sorted distances to the centre
    r1 = np.sort(np.linalg.norm(atoms.positions, axis=1))
    r2 = np.sort(np.linalg.norm(again.positions, axis=1))
    assert np.allclose(r1, r2, atol=1e-9)


# ------------------------------------------------------------------------------------------ disorder
def test_thermal_displacement_sigma():
    base = cluster("fcc", 923, rng=0, orientation=np.eye(3), shape="cuboctahedron")
    hot = perturb(base, rng=1, thermal_A=0.1)
    disp = hot.positions - base.positions
    disp -= disp.mean(axis=0)
    assert disp.std() == pytest.approx(0.1, rel=0.05)
    assert hot.info["motif"] == "fcc"


def test_vacancies_and_adatoms():
    base = cluster("icosahedral", 309, rng=0).positions
    cn0 = coordination_numbers(base)
    vac = surface_vacancies(base, 7, np.random.default_rng(1))
    assert len(vac) == 302
    d, _ = cKDTree(vac).query(base)
    assert np.sum(d > 1e-9) == 7  # exactly 7 atoms gone, the others untouched
    assert np.all(cn0[d > 1e-9] < 12)  # and only surface atoms
    ad = add_adatoms(base, 6, np.random.default_rng(2))
    assert len(ad) == 315 and np.array_equal(ad[:309], base)
    dist, _ = cKDTree(base).query(ad[309:], k=4)
    assert np.all(dist[:, 0] > 0.85 * 2.88 - 0.01)
    assert np.all(dist[:, 2] < 1.1 * 2.88)  # every adatom sits in a three-fold hollow
    assert np.linalg.norm(ad[309:], axis=1).min() > np.linalg.norm(base, axis=1).max() - 1.0  # outside
    wrapped = perturb(cluster("icosahedral", 309, rng=0), rng=1, vacancies=3, adatoms=2)
    assert len(wrapped) == 308 and wrapped.info["disorder"]["adatoms"] == 2


def test_strain_changes_bond_lengths():
    base = cluster("fcc", 561, rng=0, shape="cuboctahedron")
    strained = perturb(base, rng=3, strain=0.02)
    d0 = _nn(base.positions)
    pairs = cna_signatures(base)[0]
    l0 = np.linalg.norm(base.positions[pairs[:, 0]] - base.positions[pairs[:, 1]], axis=1)
    l1 = np.linalg.norm(strained.positions[pairs[:, 0]] - strained.positions[pairs[:, 1]], axis=1)
    assert np.allclose(l0, d0)
    assert 0.003 < np.std(l1 / l0) < 0.05


# ------------------------------------------------------------------------------------------ support
def test_carbon_support_density_distance_and_speed():
    t = time.perf_counter()
    slab = carbon_support(40.0, 20.0, rng=0)
    elapsed = time.perf_counter() - t
    assert elapsed < 0.5
    n_expected = 2.0 / (12.011 * 1.66053906660e-24) * 1e-24 * 40 * 40 * 20
    assert len(slab) == round(n_expected)
    assert set(slab.get_chemical_symbols()) == {"C"}
    d, _ = cKDTree(slab.positions).query(slab.positions, k=2)
    assert d[:, 1].min() >= 1.3
    p = slab.positions
    assert p[:, :2].min() >= -20 and p[:, :2].max() <= 20
    assert p[:, 2].min() >= -20 and p[:, 2].max() <= 0
    # amorphous: no Bragg peak stronger than random fluctuations in the structure factor
    q = 2 * np.pi / 2.15
    sq = np.abs(np.exp(1j * q * p[:, 0]).sum()) ** 2 / len(p)
    assert sq < 20


def test_carbon_support_reproducible_and_placed():
    a = carbon_support((30.0, 20.0), 10.0, 1.8, rng=np.random.default_rng(5))
    b = carbon_support((30.0, 20.0), 10.0, 1.8, rng=np.random.default_rng(5))
    assert np.array_equal(a.positions, b.positions)
    both = place_on_support(cluster("icosahedral", 147, rng=0), a, gap_A=2.0)
    metal = both.positions[both.numbers != 6]
    assert metal[:, 2].min() == pytest.approx(a.positions[:, 2].max() + 2.0)


# ------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "kwargs",
    [
        {"motif": "cubic", "size": 309},
        {"motif": "fcc", "size": 309, "element": "Fe"},
        {"motif": "fcc", "size": 309, "element": "Xx"},
        {"motif": "fcc", "size": 5},
        {"motif": "fcc", "size": "many"},
        {"motif": "fcc", "size": 309, "shape": "sphere"},
        {"motif": "fcc", "size": 309, "shape": {"p": 3, "q": 3}},
        {"motif": "icosahedral", "size": 309, "orientation": "[001]"},
        {"motif": "fcc", "size": 309, "orientation": np.ones((3, 3))},
        {"motif": "fcc", "size": 309, "orientation": np.eye(2)},
        {"motif": "fcc", "size": 309, "disorder": {"heat": 1.0}},
        {"motif": "fcc", "size": 309, "shape": {"length": 9, "cutoff": 4, "twins": [30]}},
        {"motif": "amorphous", "size": 147, "orientation": "5-fold"},
    ],
)
def test_bad_arguments_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        cluster(**kwargs)


def test_bad_support_raises_config_error():
    with pytest.raises(ConfigError):
        carbon_support(-1, 10)
    with pytest.raises(ConfigError):
        carbon_support(20, 10, density_g_cm3=50)


# ------------------------------------------------------------------------------------------ speed
def test_crystalline_cluster_is_fast():
    for motif in ("icosahedral", "decahedral", "fcc"):
        cluster(motif, 309, rng=0)  # warm the cache
        t = time.perf_counter()
        for i in range(50):
            cluster(motif, 309, rng=i, disorder={"thermal_A": 0.08})
        assert (time.perf_counter() - t) / 50 < 0.02
