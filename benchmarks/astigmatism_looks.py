"""Can the probe-shape check look at fewer views first? (:meth:`clusterspy.weights.AstigmatismNetwork.judge`)

The default withholds a checked label where ``astigmatism-v1``'s estimate of the probe's extra FWHM
(mean of 4 test-time views, :data:`~clusterspy.weights.astigmatism.ASTIGMATISM_VIEWS`) reaches its
card's threshold (1.5 Å). In a series where a cluster is labelled in every frame that network's 4 views
are a quarter of the network's work. Like the second opinion's (``second_opinion_looks.py``), its
check can look first at :data:`~clusterspy.weights.astigmatism.ASTIGMATISM_FIRST_VIEWS` and judge on
those where the estimate lies far below the threshold (by
:data:`~clusterspy.weights.astigmatism.ASTIGMATISM_FIRST_LOOK_MARGIN` of it), else on all 4 as before.

This runs :func:`clusterspy.classify` over the images of ``benchmarks/domain.py`` (its PRISM set
under every 15° rotation and ±15 % pixel-size error, its held-out and fresh sets at ×0.85, 1 and
1.15), the built-in example series (every frame at those three pixel sizes) and every row of
``benchmarks/astigmatism.py`` (round, elongated and three-fold-astigmatic probes: the crops near the
threshold). For every crop the probe-shape network is shown it records the 4 views' estimates, then
prints, for each candidate first look (views) and margin:

- how many verdicts the first look would change (against the all-4 verdict; the goal is 0);
- the share judged on the first look (the views saved: 3 of 4 with one view first);
- the highest all-4 estimate among the crops judged on the first look, against the threshold.

Usage::

    python benchmarks/domain_sets.py --parts prism,heldout,fresh   # once (see domain.py)
    python benchmarks/astigmatism.py                             # once (its rows' images)
    python benchmarks/astigmatism_looks.py [--out benchmarks/results/astigmatism_looks.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import domain as D  # noqa: E402
from second_opinion_looks import classify_sets, write_result  # noqa: E402

EXAMPLE = HERE.parent / "src" / "clusterspy" / "data" / "example_series.npz"
#: Candidate first looks (views) and margins (fractions of the threshold) the analysis compares.
FIRST_LOOKS = ((0,), (0, 1), (0, 2))
MARGINS = (0.1, 0.2, 0.3, 0.4, 0.5)


def _record(log: list[dict], tag: list[str]) -> Callable[[], None]:
    """Wrap :meth:`AstigmatismNetwork.judge` so each call also records, per crop, the 4 views'
    estimates and the verdict the looks gave; returns what unwraps it."""
    from clusterspy.weights.astigmatism import ASTIGMATISM_VIEWS, AstigmatismNetwork

    real = AstigmatismNetwork.judge

    def spy(self, crops, pool=None):
        wait = real(self, crops, pool)
        views = np.stack([np.asarray(v[0], np.float64).reshape(len(crops), -1)
                          for v in self.run_views(np.asarray(crops), ASTIGMATISM_VIEWS)], axis=1)

        def verdict():
            drawn = wait()
            for k in range(len(crops)):
                log.append({"set": tag[0], "views": views[k].tolist(), "drawn": bool(drawn[k])})
            return drawn

        return verdict

    AstigmatismNetwork.judge = spy

    def undo() -> None:
        AstigmatismNetwork.judge = real

    return undo


def collect(model: Any) -> list[dict]:
    import astigmatism as A
    from clusterspy.datasets import load

    log: list[dict] = []
    tag = [""]
    undo = _record(log, tag)
    classify_sets(model, log, tag)  # the domain sets and the example series, as the second opinion's
    rows = [("small", v) for v in A.ELONGATIONS_A] + [("large", v) for v in A.LARGE_ELONGATIONS_A] + [
        ("three_fold", v) for v in A.THREE_FOLD_A]
    for part, value in rows:
        path = A.row_path(value, part)
        if not (path / "zarr.json").exists():
            print(f"astigmatism {part} {value:g}: no images ({path}); run benchmarks/astigmatism.py",
                  flush=True)
            continue
        tag[0] = f"astigmatism_{part}_{value:g}"
        x, _, metas = load(path)
        for img, m in zip(x, metas, strict=True):
            D._run(img, D.IMAGE_PX_A, model, m["element"])
        print(f"{tag[0]}: {sum(r['set'] == tag[0] for r in log)} crops", flush=True)
    undo()
    return log


def collect_holdout(network: Any, path: Path, n: int = 2000) -> list[dict]:
    """The per-view estimates of the ``n`` crops astigmatism-v1 held out from training (the last of
    ``path``, its last training set: round and elongated probes of 0.3–2.5 Å), every one — not only
    those whose label stands. Empty where the set is not on this machine (``runs/`` is not in git)."""
    from clusterspy.datasets import load
    from clusterspy.weights.astigmatism import ASTIGMATISM_VIEWS

    if not (path / "zarr.json").exists():
        print(f"holdout: no images ({path}); skipped", flush=True)
        return []
    x, _, _ = load(path)
    x = np.asarray(x[-n:], np.float32)
    drawn = network.judge(x)()
    views = np.stack([np.asarray(v[0], np.float64).reshape(len(x), -1)
                      for v in network.run_views(x, ASTIGMATISM_VIEWS)], axis=1)
    print(f"holdout: {len(x)} crops", flush=True)
    return [{"set": "astigmatism_v1_holdout", "views": views[k].tolist(), "drawn": bool(drawn[k])}
            for k in range(len(x))]


def analyse(log: list[dict], thresholds: np.ndarray) -> dict:
    from clusterspy.weights.astigmatism import ASTIGMATISM_FIRST_LOOK_MARGIN, ASTIGMATISM_FIRST_VIEWS

    views = np.array([r["views"] for r in log], dtype=np.float64)  # (N, 4, outputs)
    t = thresholds[: views.shape[2]]
    full = views.mean(1)
    drawn_all4 = np.any(full >= t, axis=1)
    looks = np.array([r["drawn"] for r in log])
    sets = sorted({r["set"] for r in log})
    by_look: dict[str, dict] = {}
    for first in FIRST_LOOKS:
        est = views[:, list(first)].mean(1)
        by_margin = {}
        for m in MARGINS:
            early = np.all(est < (1.0 - m) * t, axis=1)
            by_margin[f"{m:g}"] = {
                "judged_on_first_look": float(early.mean()) if len(log) else None,
                "verdicts_changed": int((early & drawn_all4).sum()),
                "highest_all4_over_threshold_among_first_look":
                    float((full[early] / t).max()) if early.any() else None}
        by_look[",".join(map(str, first))] = by_margin
    early = np.all(views[:, list(ASTIGMATISM_FIRST_VIEWS)].mean(1)
                   < (1.0 - ASTIGMATISM_FIRST_LOOK_MARGIN) * t, axis=1)
    first_est = views[:, list(ASTIGMATISM_FIRST_VIEWS)].mean(1)
    rise = ((full - first_est) / t).max(axis=1)  # how far all 4 views rose above the first look
    return {
        "crops": len(log),
        "rise_over_threshold": {"median": float(np.median(rise)), "p99": float(np.percentile(rise, 99)),
                                "max": float(rise.max())} if len(log) else None,
        "crops_by_set": {s: sum(r["set"] == s for r in log) for s in sets},
        "thresholds": t.tolist(), "first_views": list(ASTIGMATISM_FIRST_VIEWS),
        "margin_of_threshold": ASTIGMATISM_FIRST_LOOK_MARGIN,
        "verdicts_changed": int((looks != drawn_all4).sum()),
        "drawn": int(looks.sum()),
        "judged_on_first_look": float(early.mean()) if len(log) else None,
        "judged_on_first_look_by_set": {s: float(early[[r["set"] == s for r in log]].mean()) for s in sets},
        "drawn_by_set": {s: int(looks[[r["set"] == s for r in log]].sum()) for s in sets},
        "by_first_look": by_look,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(HERE / "results" / "astigmatism_looks.json"))
    ap.add_argument("--holdout", default=str(HERE.parent / "runs" / "data" / "train_v6.zarr"),
                    help="astigmatism-v1's last training set (its last 2,000 crops were held out)")
    a = ap.parse_args(argv)
    from clusterspy.predict import load_model

    t = time.time()
    model = load_model()
    log = collect(model) + collect_holdout(model.astigmatism, Path(a.holdout))
    out = analyse(log, model.astigmatism.thresholds)
    out.update({"benchmark": "astigmatism_looks", "network": model.astigmatism.card.id})
    return write_result(out, a.out, t, "astigmatism_looks.py", argv)


if __name__ == "__main__":
    main()
