"""Clusters on crystalline oxide supports (issue #12, stop 38): the networks saw amorphous carbon only.

Catalysts are mostly metal particles on oxides (CeO₂, TiO₂, MgO), whose lattices show in HAADF beside or
under the particle. Au icosahedra, decahedra and fcc particles of 309 and 561 atoms (zone axes and random
orientations; 18 clusters) are fast-simulated (0.25 Å/px, 64 Å fields, 10⁴ e⁻/Å², Poisson) on five
supports, each in two geometries:

- ``plan``: a 30 Å slab under the whole field (the beam through both);
- ``profile``: a 60 Å-thick grain filling the field's top rows up to 1 Å from the particle's rim (the
  particle on a facet seen edge-on, the usual way to image it on an oxide).

Supports: CeO₂ (fluorite, a = 5.411 Å) along [110], [100] and [123]; rutile TiO₂ along [001]; MgO (rocksalt)
along [100]. The support's atoms are rendered as the cluster's are (their columns channel too), each slab
once, at an in-plane angle drawn from a seeded generator. Every image is classified by the default; the
figures are right / wrong / unknown (by reason) per support and geometry.

Usage: ``python benchmarks/supports.py``; writes ``benchmarks/results/supports.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PX_A = 0.25
FIELD_PX = 256
DOSE = 1e4
CLUSTERS = tuple((motif, orientation, size)
                 for motif, orientation in (("icosahedral", "5-fold"), ("icosahedral", "2-fold"),
                                            ("decahedral", "5-fold"), ("decahedral", "across"),
                                            ("fcc", "[011]"), ("fcc", "[001]"), ("icosahedral", "random"),
                                            ("decahedral", "random"), ("fcc", "random"))
                 for size in (309, 561))
SUPPORTS = (("CeO2", (1, 1, 0)), ("CeO2", (1, 0, 0)), ("CeO2", (1, 2, 3)), ("TiO2", (0, 0, 1)),
            ("MgO", (1, 0, 0)))


def _bulk(name: str):
    from ase.build import bulk
    from ase.spacegroup import crystal

    if name == "CeO2":
        return bulk("CeO2", "fluorite", a=5.411)
    if name == "MgO":
        return bulk("MgO", "rocksalt", a=4.212)
    return crystal(["Ti", "O"], basis=[(0, 0, 0), (0.3053, 0.3053, 0)], spacegroup=136,
                   cellpar=[4.594, 4.594, 2.959, 90, 90, 90])


def _onto_beam(axis: tuple[int, int, int], in_plane_deg: float) -> np.ndarray:
    """Rotation bringing the crystal direction ``axis`` onto the beam (+z), then ``in_plane_deg`` about it."""
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    v = np.cross(a, [0.0, 0.0, 1.0])
    s, c = np.linalg.norm(v), a[2]
    r = np.eye(3)
    if s > 1e-9:
        vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
        r = np.eye(3) + vx + vx @ vx * ((1 - c) / s ** 2)
    t = np.radians(in_plane_deg)
    rz = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    return rz @ r


def _slab(name: str, axis: tuple[int, int, int], size_A: tuple[float, float], thick_A: float,
          in_plane_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """A block of the crystal, ``size_A`` (x, y) by ``thick_A`` (z), centred on the origin."""
    cell = _bulk(name)
    reach = 0.5 * float(np.sqrt(size_A[0] ** 2 + size_A[1] ** 2 + thick_A ** 2)) + 6.0
    n = int(np.ceil(2 * reach / min(cell.cell.lengths()))) + 1
    big = cell.repeat((n, n, n))
    pos = (big.get_positions() - big.cell.sum(0) / 2) @ _onto_beam(axis, in_plane_deg).T
    keep = ((np.abs(pos[:, 0]) <= size_A[0] / 2) & (np.abs(pos[:, 1]) <= size_A[1] / 2)
            & (np.abs(pos[:, 2]) <= thick_A / 2))
    return pos[keep], big.numbers[keep]


def images() -> tuple[list[np.ndarray], list[dict]]:
    """Every cluster on every support in both geometries."""
    from clusterspy.simulation import Acquisition, Microscope
    from clusterspy.simulation.fast import FastSimulator, default_parameters
    from clusterspy.simulation.geometry import Scene
    from clusterspy.structures import cluster

    rng = np.random.default_rng(38)
    sim = FastSimulator(Microscope(), PX_A, (FIELD_PX, FIELD_PX), default_parameters())
    width = FIELD_PX * PX_A
    clusters = []
    for k, (motif, orientation, size) in enumerate(CLUSTERS):
        atoms = cluster(motif, size, "Au", rng=100 + k, orientation=orientation)
        p = atoms.get_positions()
        p = p - np.r_[p[:, :2].mean(0), p[:, 2].min()]
        clusters.append((p, atoms.numbers, float(np.percentile(np.hypot(p[:, 0], p[:, 1]), 99))))
    largest_rim = max(c[2] for c in clusters)
    out, meta = [], []
    for name, axis in SUPPORTS:
        angle = float(rng.uniform(0, 90))
        plan = _slab(name, axis, (width, width), 30.0, angle)
        grain_h = width / 2 - largest_rim - 1.0
        grain = _slab(name, axis, (width, 2 * grain_h), 60.0, angle)
        for geometry in ("plan", "profile"):
            sp, sn = (plan if geometry == "plan" else grain)
            for (motif, orientation, size), (p, numbers, rim) in zip(CLUSTERS, clusters, strict=True):
                s, numbers_s = sp.copy(), sn
                s[:, 0] += width / 2
                if geometry == "plan":  # under the particle, along the beam
                    s[:, 1] += width / 2
                    s[:, 2] += -s[:, 2].min() + p[:, 2].max() + 1.0
                else:  # beside it: the grain's top edge 1 Å from the particle's rim, cut at the frame
                    s[:, 1] += width / 2 - rim - 1.0 - s[:, 1].max()
                    s[:, 2] += -s[:, 2].min()
                    inside = s[:, 1] >= 0
                    s, numbers_s = s[inside], sn[inside]
                m = p.copy()
                m[:, :2] += width / 2
                scene = Scene(np.vstack([m, s]), np.concatenate([numbers, numbers_s]), np.zeros((0, 3)),
                              np.zeros(0, int))
                clean = sim.render([scene])[0]
                img = Acquisition(dose_e_per_A2=DOSE).apply(clean, PX_A, np.random.default_rng(len(out)))
                out.append(np.asarray(img, np.float32))
                meta.append({"motif": motif, "orientation": orientation, "atoms": size, "support": name,
                             "axis": list(axis), "geometry": geometry})
    return out, meta


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(RESULTS / "supports.json"))
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    from clusterspy import classify
    from clusterspy.errors import ClusterSpyError

    t0 = time.perf_counter()
    imgs, metas = images()
    t_sim = time.perf_counter() - t0
    tally: dict = {}
    rows = []
    for img, m in zip(imgs, metas, strict=True):
        try:
            res = classify(img, pixel_size_A=PX_A)
        except ClusterSpyError as exc:
            res, refused = [], type(exc).__name__
        else:
            refused = None
        centre = (FIELD_PX - 1) / 2
        r = min(res, key=lambda q: (q.x_px - centre) ** 2 + (q.y_px - centre) ** 2) if res else None
        label = "unknown" if r is None else r.label
        why = refused or ("no_cluster" if r is None else r.reason)
        verdict = "right" if label == m["motif"] else "unknown" if label == "unknown" else "wrong"
        key = f"{m['support']}[{''.join(str(v) for v in m['axis'])}] {m['geometry']}"
        t = tally.setdefault(key, {"right": 0, "wrong": 0, "unknown": {}})
        if verdict == "unknown":
            t["unknown"][str(why)] = t["unknown"].get(str(why), 0) + 1
        else:
            t[verdict] += 1
        conf = None if r is None or r.confidence is None else round(float(r.confidence), 3)
        rows.append({**m, "label": label, "reason": why, "confidence": conf})
        print(f"{key:22s} {m['motif']:11s} {m['orientation']:7s} {m['atoms']:4d}: {label:11s} {why or ''} "
              f"{'' if conf is None else conf}", flush=True)
    total = {v: sum(t[v] for t in tally.values()) for v in ("right", "wrong")}
    total["unknown"] = len(rows) - total["right"] - total["wrong"]
    result = {"total": total, "by_support": tally, "rows": rows, "simulation_seconds": round(t_sim, 1),
              "seconds": round(time.perf_counter() - t0, 1), "command": "python benchmarks/supports.py"}
    print("total", total)
    for key, t in tally.items():
        print(f"  {key:22s} right {t['right']:2d}  wrong {t['wrong']}  unknown {t['unknown']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
