"""Does the second opinion's first look change a verdict? (:func:`clusterspy.predict.second_opinion_of`)

The default's second opinion (``isomernet-v4``) first looks at 4 of its 8 test-time views of a
crop (:data:`~clusterspy.predict.SECOND_OPINION_FIRST_VIEWS`) and judges on those where they make the
first model's label its most probable isomer by
:data:`~clusterspy.predict.SECOND_OPINION_MARGIN_LOGITS` or more; else on all 8, as it always did.
This runs :func:`clusterspy.classify` over the images of ``benchmarks/domain.py`` — its PRISM set
under every rotation (15° steps) and ±15 % pixel-size error, its held-out and fresh sets at ×0.85, 1
and 1.15 — and the built-in example series (every frame at the same three pixel sizes), and for
every crop the second opinion is shown it records the 8 views' logits, then prints:

- how many verdicts the first look changed (the two-look verdict against the all-8 one; the goal is 0);
- the share judged on the first look (the views saved: half of theirs);
- how far the 4 views' lead of their most probable isomer fell with all 8 (median, 99th percentile,
  largest), and the smallest all-8 lead among those judged on the first look — the margin's safety;
- the same at other margins (what a different :data:`SECOND_OPINION_MARGIN_LOGITS` would give).

Usage::

    python benchmarks/domain_sets.py --parts prism,heldout,fresh   # once (see domain.py)
    python benchmarks/second_opinion_looks.py [--out benchmarks/results/second_opinion_looks.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import domain as D  # noqa: E402

EXAMPLE = HERE.parent / "src" / "clusterspy" / "data" / "example_series.npz"
MARGINS = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0)


def _record(model: Any, log: list[dict], tag: list[str]) -> None:
    """Wrap :func:`clusterspy.predict.second_opinion_of` so each call also records, per crop, the
    8 views' logits, the label and the verdict the two looks gave."""
    import clusterspy.predict as P

    real = P.second_opinion_of

    def spy(second, crops, labels, pool=None):
        wait = real(second, crops, labels, pool)
        views = np.stack([v[0] for v in second.run_views(crops, range(second.n_views))], axis=1)

        def verdict():
            disagrees, probs = wait()
            for k, lab in enumerate(labels):
                log.append({"set": tag[0], "label": lab, "views": views[k].tolist(),
                            "two_looks_disagree": bool(disagrees[k])})
            return disagrees, probs

        return verdict

    P.second_opinion_of = spy


def collect(model: Any) -> list[dict]:
    from clusterspy.datasets import load

    log: list[dict] = []
    tag = [""]
    _record(model, log, tag)
    sets = [("prism", *D._load_sets(40, 1), D.ROTATIONS_DEG)]
    for name, path in (("heldout", D.heldout_path()), ("fresh", D.fresh_path())):
        if (path / "zarr.json").exists():
            sets.append((name, *load(path, partial=True), [0]))
        else:
            print(f"{name}: no images ({path}); run benchmarks/domain_sets.py --parts {name}", flush=True)
    for name, x, _, metas, rots in sets:
        tag[0] = name
        for deg in rots:
            for s in D.SCALES:
                if deg and s != 1.0:
                    continue
                for img, m in zip(x, metas, strict=True):
                    D._run(D._rotate(img, deg), D.IMAGE_PX_A * s, model, m["element"])
        print(f"{name}: {sum(r['set'] == name for r in log)} crops seen by the second opinion", flush=True)
    tag[0] = "example_series"
    with np.load(EXAMPLE) as z:
        frames = z["frames"]
    for f in frames:
        for s in D.SCALES:
            D._run(np.asarray(f, np.float32), 0.3 * s, model)
    print(f"example_series: {sum(r['set'] == 'example_series' for r in log)} crops", flush=True)
    return log


def analyse(log: list[dict]) -> dict:
    from clusterspy.isomers import CLASSES
    from clusterspy.predict import SECOND_OPINION_FIRST_VIEWS, SECOND_OPINION_MARGIN_LOGITS

    views = np.array([r["views"] for r in log], dtype=np.float64)  # (N, 8, 4)
    first = views[:, list(SECOND_OPINION_FIRST_VIEWS)].mean(1)
    full = views.mean(1)
    label = np.array([CLASSES.index(r["label"]) for r in log])
    rows = np.arange(len(log))

    def lead(x: np.ndarray, k: np.ndarray) -> np.ndarray:
        others = x.copy()
        others[rows, k] = -np.inf
        return x[rows, k] - others.max(1)

    top4 = first.argmax(1)
    fall = lead(first, top4) - lead(full, top4)
    label_lead4, label_lead8 = lead(first, label), lead(full, label)
    all8_disagree = full.argmax(1) != label
    two = np.array([r["two_looks_disagree"] for r in log])
    early = label_lead4 >= SECOND_OPINION_MARGIN_LOGITS
    sets = sorted({r["set"] for r in log})
    by_margin = {}
    for m in MARGINS:
        at_m = label_lead4 >= m
        by_margin[f"{m:g}"] = {
            "judged_on_first_look": float(at_m.mean()) if len(log) else None,
            "verdicts_changed": int((at_m & all8_disagree).sum()),
            "smallest_all8_lead_among_first_look": float(label_lead8[at_m].min()) if at_m.any() else None}
    return {
        "crops": len(log), "crops_by_set": {s: sum(r["set"] == s for r in log) for s in sets},
        "margin_logits": SECOND_OPINION_MARGIN_LOGITS, "first_views": list(SECOND_OPINION_FIRST_VIEWS),
        "verdicts_changed": int((two != all8_disagree).sum()),
        "withdrawn": int(two.sum()),
        "judged_on_first_look": float(early.mean()) if len(log) else None,
        "judged_on_first_look_by_set": {s: float(early[[r["set"] == s for r in log]].mean()) for s in sets},
        "lead_fall_logits": {"median": float(np.median(fall)), "p99": float(np.percentile(fall, 99)),
                             "max": float(fall.max())} if len(log) else None,
        "by_margin": by_margin,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(HERE / "results" / "second_opinion_looks.json"))
    a = ap.parse_args(argv)
    from clusterspy.predict import load_model

    t = time.time()
    model = load_model()
    out = analyse(collect(model))
    out.update({"benchmark": "second_opinion_looks", "seconds": round(time.time() - t, 1),
                "command": "python benchmarks/second_opinion_looks.py " + " ".join(argv or sys.argv[1:])})
    print(json.dumps(out, indent=1))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
