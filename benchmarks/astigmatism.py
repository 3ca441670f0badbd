"""An astigmatic probe: labels of clusters imaged with an elliptical probe (issue #12, stop 40).

A newcomer (stop 39) blurred simulated clusters with elliptical Gaussians (σ 0.2 Å across, σ_long
along: uncorrected two-fold astigmatism to first order) and got confident wrong labels from every
shipped model: 3 / 25 / 39 of 120 at σ_long 0.5 / 0.7 / 1.0 Å. This benchmark makes that a figure.

The set is the held-out set's recipe (``domain_sets.HELDOUT_SPEC``: the PRISM test's settings, the fast
simulator, 64 Å images at 0.4 Å/px, 55–923 atoms of Au, Pt, Pd) with its own seed, made once per row
with the same clusters, noise and orientations, and the source drawn out along a random direction by
:data:`ELONGATIONS_A` more (FWHM, in quadrature: ``Microscope.source_elongation_A``; 1.18, 1.65 and
2.35 Å are the newcomer's σ_long 0.5, 0.7 and 1.0 Å). Row 0 is the round probe (a control). Each image
is classified by the default (or ``--model``) as a user would, told the true pixel size; the central
cluster's label is scored. The figure that matters is ``wrong``: a label given, not the true isomer.

The ``large`` part (:data:`LARGE_SPEC`) does the same for particles of 1,500–5,000 atoms, judged by
isomernet-v3 and v5, at 0 and 2.35 Å.

The ``three_fold`` part (stop 42) gives the ``small`` part's clusters a three-fold astigmatism C23 of
the probe (:data:`THREE_FOLD_A`, a coherent aberration as abTEM models it, at a random azimuth) instead.

Usage: ``python benchmarks/astigmatism.py [--model M] [--parts small,large,three_fold]
[--out astigmatism.json]``;
``--second-opinion isomernet-v4 --checks isomernet-v3 --astigmatism none`` measures the default as it was
until stop 39, ``--astigmatism none`` as it was at stop 40 (before the probe-shape network, stop 41).
Images are made once (resumable) into ``benchmarks/cache/`` (git-ignored); writes
``benchmarks/results/astigmatism.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CACHE = HERE / "cache"
sys.path.insert(0, str(HERE))

from domain_sets import HELDOUT_SPEC, IMAGE_PX_A, SIZES_SPEC  # noqa: E402

#: Extra FWHM [Å] of the source along its long axis, one row each (0: a round probe).
ELONGATIONS_A = (0.0, 1.18, 1.65, 2.35)
#: The set's recipe: the held-out set's, its own seed (never trained on; nothing was tuned on it).
ASTIGMATISM_SPEC = {**HELDOUT_SPEC, "seed": 949494, "n_images": 120, "chunk_size": 40}
#: The ``large`` part (stop 40): the ``sizes`` set's recipe (``domain_sets.SIZES_SPEC``: 115 Å images,
#: 300 kV) with particles of 1,500–5,000 atoms (≈ 3.5–5.5 nm: isomernet-v3's and v5's sizes) and
#: small glassy ones (147–400 atoms: relaxing larger ones takes minutes each), its own seed.
LARGE_SPEC = {**SIZES_SPEC, "seed": 959595, "n_images": 40, "chunk_size": 20, "size_atoms": [1500, 5000],
              "amorphous_size_atoms": [147, 400]}
#: Rows of the ``large`` part (extra FWHM [Å]).
LARGE_ELONGATIONS_A = (0.0, 2.35)
#: Rows of the ``three_fold`` part (stop 42): the ``small`` part's clusters with a three-fold astigmatism
#: C23 [Å] of the probe (``Microscope.three_fold_A``, a coherent aberration, at a random azimuth) and a
#: round source; its control is the ``small`` part's round row. At 28 / 18 mrad, 2000 Å leaves 38 / 65 %
#: of the probe within 0.5 Å (86 / 71 % with none), 6000 Å 11 / 32 %.
THREE_FOLD_A = (2000.0, 4000.0, 6000.0)


def row_spec(elongation_A: float, base: dict | None = None, three_fold_A: float = 0.0) -> dict:
    """The set of one row: the same clusters, noise and directions; the source drawn out by
    ``elongation_A`` [Å] (FWHM), or the probe given a three-fold astigmatism ``three_fold_A`` [Å]."""
    base = dict(ASTIGMATISM_SPEC if base is None else base)
    if three_fold_A > 0:
        base.update({"three_fold_probability": 1.0, "three_fold_A": [three_fold_A, three_fold_A]})
    if elongation_A <= 0:
        return base
    return {**base, "source_elongation_probability": 1.0, "source_elongation_A": elongation_A}


def row_path(value: float, part: str = "small") -> Path:
    """The cache of one row: ``value`` is the extra FWHM [Å] (``small``, ``large``) or C23 [Å]
    (``three_fold``)."""
    if part == "large":
        return CACHE / f"astigmatism_large_n{LARGE_SPEC['n_images']}_e{value:.2f}.zarr"
    if part == "three_fold":
        return CACHE / f"astigmatism_n{ASTIGMATISM_SPEC['n_images']}_a2_{value:.0f}.zarr"
    return CACHE / f"astigmatism_n{ASTIGMATISM_SPEC['n_images']}_e{value:.2f}.zarr"


def score_row(model: Any, value: float, part: str = "small") -> dict:
    """Right, wrong and unknown labels of one row's central clusters (``value``: see :func:`row_path`)."""
    from clusterspy.datasets import generate, load
    from clusterspy.isomers import CLASSES
    from domain import _central, _run

    path = row_path(value, part)
    spec = (row_spec(0.0, None, value) if part == "three_fold"
            else row_spec(value, LARGE_SPEC if part == "large" else None))
    elongation_A = 0.0 if part == "three_fold" else value
    generate(spec, path, num_workers=1)
    x, y, metas = load(path)
    tally = {"right": 0, "wrong": 0, "unknown": 0}
    reasons: dict[str, int] = {}
    wrong: list[dict] = []
    for i, (img, k, meta) in enumerate(zip(x, y, metas, strict=True)):
        truth = CLASSES[int(k)]
        res, refused = _run(img, IMAGE_PX_A, model, meta["element"])
        r = _central(res, img.shape)
        label = r.label if r is not None else "unknown"
        key = "unknown" if label == "unknown" else ("right" if label == truth else "wrong")
        tally[key] += 1
        if key == "unknown":
            why = refused or (r.reason if r is not None else "no_cluster")
            reasons[why] = reasons.get(why, 0) + 1
        if key == "wrong":
            wrong.append({"image": i, "truth": truth, "label": label,
                          "confidence": round(float(r.confidence), 3),
                          "n_atoms": int(meta["n_atoms"]), "element": meta["element"],
                          "model": r.model,
                          "angle_deg": round(float(meta.get("source_angle_deg", 0.0)), 1)})
    n = len(y)
    return {"part": part, "elongation_A": elongation_A,
            **({"three_fold_A": value} if part == "three_fold" else {}), "n_images": n, **tally,
            "accepted_share": round((tally["right"] + tally["wrong"]) / n, 4),
            "accuracy_unknown_wrong": round(tally["right"] / n, 4), "unknown_reasons": reasons,
            "wrong_labels": wrong}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model folder, shipped name or .onnx (default: auto)")
    ap.add_argument("--out", default="astigmatism.json", help="results file name in benchmarks/results/")
    ap.add_argument("--parts", default="small,large,three_fold",
                    help="small (55–923 atoms), large (1,500–5,000), three_fold (the small clusters, a "
                    "three-fold astigmatism)")
    ap.add_argument("--second-opinion", default=None, metavar="NAME",
                    help="the default's second opinion instead of predict.SECOND_OPINION (isomernet-v4: "
                    "the default until stop 39)")
    ap.add_argument("--checks", default=None, metavar="NAMES",
                    help="comma-separated models whose labels it checks besides the first, instead of "
                    "predict.SECOND_OPINION_CHECKS (isomernet-v3: until stop 39)")
    ap.add_argument("--astigmatism", default=None, metavar="NAME",
                    help="the probe-shape network instead of predict.ASTIGMATISM, or none (until stop 40)")
    a = ap.parse_args(argv)
    import clusterspy.predict as predict
    from clusterspy.predict import load_model, model_summary

    if a.second_opinion:
        predict.SECOND_OPINION = a.second_opinion
    if a.checks is not None:
        predict.SECOND_OPINION_CHECKS = tuple(n for n in a.checks.split(",") if n)
    if a.astigmatism is not None:
        predict.ASTIGMATISM = None if a.astigmatism == "none" else a.astigmatism
    model = load_model(a.model)
    out: dict[str, Any] = {"model": model_summary(model), "spec": {k: v for k, v in ASTIGMATISM_SPEC.items()
                                                                   if k != "backend_options"},
                           "command": "python benchmarks/astigmatism.py "
                           + " ".join(argv if argv is not None else sys.argv[1:]), "rows": []}
    t0 = time.time()
    rows = [(p, e) for p, es in (("small", ELONGATIONS_A), ("large", LARGE_ELONGATIONS_A),
                                 ("three_fold", THREE_FOLD_A))
            if p in a.parts.split(",") for e in es]
    for part, e in rows:
        row = score_row(model, e, part)
        out["rows"].append(row)
        what = f"C23 {e:6.0f} Å" if part == "three_fold" else f"elongation {e:4.2f} Å FWHM"
        print(f"{part:5s} {what}: right {row['right']:3d}  wrong {row['wrong']:3d}  "
              f"unknown {row['unknown']:3d} of {row['n_images']}  {row['unknown_reasons']}", flush=True)
    out["seconds"] = round(time.time() - t0, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / a.out).write_text(json.dumps(out, indent=1, default=str) + "\n")
    return out


if __name__ == "__main__":
    main()
