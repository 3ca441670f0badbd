"""Two overlapping particles found as one: the ``elongated`` reason (issue #12, stop 38).

A newcomer (stop 38) overlapped simulated 2.8 nm particles of different isomers in projection, their
centres 10–18 Å apart: the detector measured each pair as one cluster, and 15 of 25 such pairs got one
isomer with confidence ≥ 0.96. A cluster whose outline is more than
:data:`clusterspy.domain.ELONGATION_MAX` times as long as wide is now ``elongated``. Two parts:

- ``singles``: the elongation (:attr:`clusterspy.detection.Detection.elongation`) of the central
  cluster of every single-cluster image of ``benchmarks/domain.py``'s sets (PRISM, held-out, fresh,
  sizes, large; made by ``python benchmarks/domain_sets.py``, skipped where absent), as
  :func:`clusterspy.classify` detects it (its detections are read by wrapping the detector) at the
  pixel size and at ×0.87 and ×1.15 of it: the rule's cost. Median, 99th percentile, largest, the
  number above ``ELONGATION_MAX`` and the largest five with their clusters;
- ``pairs``: two Au particles of 561 atoms (2.8 nm; random orientations; seeds below) simulated in one
  scene by the fast simulator, the second stacked above the first and shifted 10–20 Å across the beam
  (0.2 Å/px, 10⁴ e⁻/Å²): for every pair of isomers (icosahedral, decahedral, fcc), each classified by
  the default as a user would — how many were found as one cluster, and how many of those got an
  isomer label with the rule and without it (``ELONGATION_MAX`` set to infinity for the second run).

Usage: ``python benchmarks/elongation.py [--parts singles,pairs]``; writes
``benchmarks/results/elongation.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

MOTIFS = ("icosahedral", "decahedral", "fcc")
#: Centre-to-centre offsets across the beam [Å] of the pairs (each particle ~28 Å across).
OFFSETS_A = (10.0, 12.0, 14.0, 16.0, 18.0, 20.0)
SEEDS = (1, 2)
PAIR_PX_A = 0.2


def _central_detection(image: np.ndarray, px_A: float):
    """The detection nearest the image's centre, as :func:`clusterspy.classify` found it (None when
    it found none or refused the image)."""
    import clusterspy.detection as detection
    from clusterspy import classify
    from clusterspy.errors import ClusterSpyError

    seen: list = []
    detect = detection.detect_clusters

    def recording(*args, **kwargs):
        found = detect(*args, **kwargs)
        seen.append(found)
        return found

    detection.detect_clusters = recording
    try:
        classify(image, pixel_size_A=px_A)
    except ClusterSpyError:
        return None
    finally:
        detection.detect_clusters = detect
    if not seen or not seen[-1]:
        return None
    cy, cx = (np.asarray(image.shape) - 1) / 2
    return min(seen[-1], key=lambda d: (d.x_px - cx) ** 2 + (d.y_px - cy) ** 2)


def singles_part() -> dict:
    """Elongation of every single cluster of the domain benchmark's sets (where they are cached)."""
    from clusterspy.datasets import load
    from clusterspy.domain import ELONGATION_MAX
    from domain_sets import fresh_path, heldout_path, large_path, prism_path, sizes_path

    out: dict = {"elongation_max": ELONGATION_MAX, "pixel_size_factors": [1.0, 0.87, 1.15], "sets": {}}
    everything: list[tuple[float, str]] = []
    for name, path in (("prism", prism_path(0, 40)), ("heldout", heldout_path()), ("fresh", fresh_path()),
                       ("sizes", sizes_path()), ("large", large_path())):
        if not (path / "zarr.json").exists():
            out["sets"][name] = "absent (python benchmarks/domain_sets.py)"
            continue
        x, _, metas = load(path, partial=True)
        values = []
        for i, (img, meta) in enumerate(zip(x, metas, strict=True)):
            for factor in out["pixel_size_factors"]:
                px_A = factor * float(meta["image_pixel_size_A"])
                d = _central_detection(np.asarray(img, np.float32), px_A)
                if d is not None:
                    values.append(d.elongation)
                    everything.append((d.elongation, f"{name} {i} ×{factor:g}: {meta['motif']} "
                                                     f"{meta['n_atoms']} atoms"))
        v = np.array(values)
        out["sets"][name] = {"n": len(v), "median": round(float(np.median(v)), 3),
                             "p99": round(float(np.percentile(v, 99)), 3), "max": round(float(v.max()), 3),
                             "above_max": int((v > ELONGATION_MAX).sum())}
        print(f"singles {name:8s} {out['sets'][name]}", flush=True)
    if everything:
        v = np.array([e for e, _ in everything])
        top = sorted(everything, reverse=True)[:5]
        out["all"] = {"n": len(v), "p99_9": round(float(np.percentile(v, 99.9)), 3),
                      "above_max": int((v > ELONGATION_MAX).sum()),
                      "largest": [[round(e, 3), what] for e, what in top]}
        print(f"singles all      {out['all']}", flush=True)
    return out


def _pair_image(first: str, second: str, offset_A: float, seed: int) -> np.ndarray:
    """Two 561-atom Au particles in one scene, the second above the first, shifted ``offset_A``."""
    from ase import Atoms

    from clusterspy.simulation import Acquisition, simulate
    from clusterspy.structures import cluster

    a = cluster(first, 561, "Au", rng=10 * seed + MOTIFS.index(first))
    b = cluster(second, 561, "Au", rng=10 * seed + 5 + MOTIFS.index(second))
    pa, pb = a.get_positions(), b.get_positions()
    pa -= pa.mean(0)
    pb -= pb.mean(0)
    pb[:, 2] += pa[:, 2].max() - pb[:, 2].min() + 3.0  # stacked: no atom of one inside the other
    pb[:, 0] += offset_A
    atoms = Atoms(numbers=np.r_[a.numbers, b.numbers], positions=np.r_[pa, pb])
    return simulate(atoms, pixel_size=PAIR_PX_A, extent=80.0, rng=seed,
                    acquisition=Acquisition(dose_e_per_A2=1e4)).data


def _classify_all(images: list[np.ndarray]) -> list[list]:
    from clusterspy import classify
    from clusterspy.errors import ClusterSpyError

    out = []
    for img in images:
        try:
            out.append(classify(img, pixel_size_A=PAIR_PX_A))
        except ClusterSpyError:
            out.append([])
    return out


def pairs_part() -> dict:
    """Overlapping pairs: found as one cluster, and labelled with and without the rule."""
    import clusterspy.domain as domain

    cases = [(f, s, o, seed) for f, s in itertools.combinations_with_replacement(MOTIFS, 2)
             for o in OFFSETS_A for seed in SEEDS]
    images = [_pair_image(*c) for c in cases]
    with_rule = _classify_all(images)
    kept = domain.ELONGATION_MAX
    domain.ELONGATION_MAX = float("inf")
    try:
        without = _classify_all(images)
    finally:
        domain.ELONGATION_MAX = kept
    rows = []
    tally = {"pairs": len(cases), "found_as_one": 0, "labelled_with_rule": 0, "labelled_without_rule": 0,
             "labelled_with_rule_mixed": 0, "labelled_without_rule_mixed": 0, "reasons_with_rule": {}}
    for (first, second, offset, seed), now, before in zip(cases, with_rule, without, strict=True):
        one = len(now) == 1
        row = {"first": first, "second": second, "offset_A": offset, "seed": seed, "clusters": len(now),
               "label": [r.label for r in now], "reason": [r.reason for r in now],
               "label_without_rule": [r.label for r in before],
               "confidence_without_rule": [None if r.confidence is None else round(float(r.confidence), 3)
                                           for r in before],
               "diameter_nm": [round(float(r.diameter_nm), 2) for r in now]}
        rows.append(row)
        if one:
            tally["found_as_one"] += 1
            mixed = first != second
            if now[0].label != "unknown":
                tally["labelled_with_rule"] += 1
                tally["labelled_with_rule_mixed"] += mixed
            else:
                why = str(now[0].reason)
                tally["reasons_with_rule"][why] = tally["reasons_with_rule"].get(why, 0) + 1
            if len(before) == 1 and before[0].label != "unknown":
                tally["labelled_without_rule"] += 1
                tally["labelled_without_rule_mixed"] += mixed
        print(f"{first:11s} {second:11s} {offset:4.0f} Å s{seed}: {len(now)} cluster(s) "
              f"{row['label']} {row['reason']} | without the rule {row['label_without_rule']} "
              f"{row['confidence_without_rule']}", flush=True)
    print("pairs", tally, flush=True)
    return {"tally": tally, "rows": rows}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="singles,pairs")
    ap.add_argument("--out", default=str(RESULTS / "elongation.json"))
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    parts = args.parts.split(",")
    result: dict = {}
    if "singles" in parts:
        result["singles"] = singles_part()
    if "pairs" in parts:
        result["pairs"] = pairs_part()
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["command"] = "python benchmarks/elongation.py" + ("" if args.parts == "singles,pairs"
                                                            else f" --parts {args.parts}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
