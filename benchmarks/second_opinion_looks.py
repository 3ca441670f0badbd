"""Do the second opinion's looks change a verdict? (:func:`clusterspy.predict.second_opinion_of`)

The default's second opinion (``isomernet-v7``) looks at a crop's test-time views in turns
(:data:`~clusterspy.predict.SECOND_OPINION_LOOKS`: 2 views, then 4) and judges on a look where its
views make the first model's label the most probable isomer by that look's margin or more; the crops
no look decides are judged on all 8, as it always did. This runs :func:`clusterspy.classify` over the
images of ``benchmarks/domain.py`` — its PRISM set under every rotation (15° steps) and ±15 % pixel-size
error, its held-out and fresh sets at ×0.85, 1 and 1.15 — and the built-in example series (every frame
at the same three pixel sizes), and for every crop the second opinion is shown it records the 8 views'
logits, then prints:

- how many verdicts the looks changed (the looks' verdict against the all-8 one; the goal is 0);
- the share judged on each look, and the views a crop costs on average (8 without looks);
- for each look, how far its views' lead of their most probable isomer fell with all 8 (median, 99th
  percentile, largest), and the smallest all-8 lead among the crops it judged — the margin's safety;
- single first looks (views) at other margins: what another rule would give (``by_first_look``, and
  ``by_margin`` for the 4-view look alone, the rule until stop 42).

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
#: Other first looks (views) compared at :data:`LOOK_MARGINS` [logits] (a smaller look saves more).
FIRST_LOOKS = ((0, 1), (0, 2), (0, 3), (0, 1, 2, 3))
LOOK_MARGINS = (2.5, 3.0, 3.5, 4.0, 5.0)


def _record(model: Any, log: list[dict], tag: list[str]) -> None:
    """Wrap :func:`clusterspy.predict.second_opinion_of` so each call also records, per crop, the
    8 views' logits, the label and the verdict the looks gave."""
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
    log: list[dict] = []
    tag = [""]
    _record(model, log, tag)
    classify_sets(model, log, tag)
    return log


def classify_sets(model: Any, log: list[dict], tag: list[str]) -> None:
    """:func:`clusterspy.classify` over ``benchmarks/domain.py``'s PRISM set (every 15° rotation, ±15 %
    pixel size), its held-out and fresh sets (±15 %) and the example series (every frame at the same three
    pixel sizes), ``tag[0]`` naming the set being run (what a spy writes beside each record in ``log``).
    Shared with ``astigmatism_looks.py``."""
    from clusterspy.datasets import load

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
        print(f"{name}: {sum(r['set'] == name for r in log)} crops seen", flush=True)
    tag[0] = "example_series"
    with np.load(EXAMPLE) as z:
        frames = z["frames"]
    for f in frames:
        for s in D.SCALES:
            D._run(np.asarray(f, np.float32), 0.3 * s, model)
    print(f"example_series: {sum(r['set'] == 'example_series' for r in log)} crops", flush=True)


def analyse(log: list[dict]) -> dict:
    from clusterspy.isomers import CLASSES
    from clusterspy.predict import SECOND_OPINION_LOOKS

    views = np.array([r["views"] for r in log], dtype=np.float64)  # (N, 8, 4)
    full = views.mean(1)
    label = np.array([CLASSES.index(r["label"]) for r in log])
    rows = np.arange(len(log))

    def lead(x: np.ndarray, k: np.ndarray) -> np.ndarray:
        others = x.copy()
        others[rows, k] = -np.inf
        return x[rows, k] - others.max(1)

    label_lead8 = lead(full, label)
    all8_disagree = full.argmax(1) != label
    looked = np.array([r["two_looks_disagree"] for r in log])  # the verdict the looks gave
    sets = sorted({r["set"] for r in log})
    decided_by = np.full(len(log), -1)  # the look that judged each crop (-1: all 8 views)
    cost = np.zeros(len(log))
    looks = []
    for k, (look_views, margin) in enumerate(SECOND_OPINION_LOOKS):
        mean = views[:, list(look_views)].mean(1)
        top = mean.argmax(1)
        fall = lead(mean, top) - lead(full, top)
        here = (decided_by < 0) & (lead(mean, label) >= margin)
        decided_by[here] = k
        cost[here] = len(look_views)
        looks.append({"views": list(look_views), "margin_logits": margin,
                      "judged": float(here.mean()) if len(log) else None,
                      "judged_by_set": {s: float(here[[r["set"] == s for r in log]].mean()) for s in sets},
                      "verdicts_changed": int((here & all8_disagree).sum()),
                      "smallest_all8_lead_among_judged":
                          float(label_lead8[here].min()) if here.any() else None,
                      "lead_fall_logits": {"median": float(np.median(fall)),
                                           "p99": float(np.percentile(fall, 99)),
                                           "max": float(fall.max())} if len(log) else None})
    cost[decided_by < 0] = 8
    by_margin = {}  # the 4-view look alone (the rule until stop 42) at other margins
    lead4 = lead(views[:, [0, 1, 2, 3]].mean(1), label)
    for m in MARGINS:
        at_m = lead4 >= m
        by_margin[f"{m:g}"] = {
            "judged_on_first_look": float(at_m.mean()) if len(log) else None,
            "verdicts_changed": int((at_m & all8_disagree).sum()),
            "smallest_all8_lead_among_first_look": float(label_lead8[at_m].min()) if at_m.any() else None}
    by_look = {}  # other single first looks: the share judged on them, and the verdicts they would change
    for first_views in FIRST_LOOKS:
        at = {}
        lead_first = lead(views[:, list(first_views)].mean(1), label)
        for m in LOOK_MARGINS:
            early_m = lead_first >= m
            at[f"{m:g}"] = {"judged_on_first_look": float(early_m.mean()) if len(log) else None,
                            "verdicts_changed": int((early_m & all8_disagree).sum()),
                            "smallest_all8_lead_among_first_look":
                                float(label_lead8[early_m].min()) if early_m.any() else None}
        by_look[",".join(map(str, first_views))] = at
    return {
        "crops": len(log), "crops_by_set": {s: sum(r["set"] == s for r in log) for s in sets},
        "looks": looks,
        "verdicts_changed": int((looked != all8_disagree).sum()),
        "withdrawn": int(looked.sum()),
        "judged_on_all_8": float((decided_by < 0).mean()) if len(log) else None,
        "views_per_crop": float(cost.mean()) if len(log) else None,
        "by_first_look": by_look,
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
    out.update({"benchmark": "second_opinion_looks"})
    return write_result(out, a.out, t, "second_opinion_looks.py", argv)


def write_result(out: dict, path: str, started: float, script: str, argv: list[str] | None) -> dict:
    """Add the seconds since ``started`` and the command to ``out``, print it and write it to ``path``
    (JSON). Shared with ``astigmatism_looks.py``."""
    out.update({"seconds": round(time.time() - started, 1),
                "command": f"python benchmarks/{script} " + " ".join(argv or sys.argv[1:])})
    print(json.dumps(out, indent=1))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
