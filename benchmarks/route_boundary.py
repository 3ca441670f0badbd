"""Where the default hands particles from isomernet-v3 to isomernet-v5 (``predict.ROUTE_FROM_NM``).

Over the particles of ``benchmarks/domain.py``'s ``sizes`` and ``large`` sets whose true projected
diameter is 3.5–7 nm, each image told ×0.87, ×1 and ×1.15 its pixel size (the ±15 % calibration error
the domain promises to bear), this runs :func:`clusterspy.classify` with ``isomernet-v3`` alone,
``isomernet-v5`` alone and the default, takes the cluster nearest the image centre, and prints, in
bins of the diameter the default *measures* (the one it routes by):

- right / unknown / wrong of each (``unknown`` counted apart, not wrong);
- which model the default used.

A model that is confidently wrong in a bin the default routes to it is what this looks for: at stop 32
(v5 from 5 nm) a 5.15 nm decahedron told 2.6 % too small measured 4.99 nm and v3 called it fcc 0.966.
It takes ~20 min on 2 cores.

Usage::

    python benchmarks/domain_sets.py --parts sizes,large   # once (see domain.py)
    python benchmarks/route_boundary.py [--out benchmarks/results/route_boundary.json]
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

from domain_sets import IMAGE_PX_A, large_path, sizes_path  # noqa: E402

#: Bins [nm] of the diameter the default measures.
BINS: tuple[tuple[float, float], ...] = ((3.0, 3.8), (3.8, 4.35), (4.35, 5.0), (5.0, 5.75), (5.75, 7.5))
#: Factors on the pixel size the images are told.
FACTORS: tuple[float, ...] = (1 / 1.15, 1.0, 1.15)
#: True projected diameters [nm] of the particles looked at.
TRUE_RANGE_NM = (3.5, 7.0)


def central_verdict(image: np.ndarray, px: float, model: Any) -> dict | None:
    """:func:`clusterspy.classify` of ``image`` told ``px`` [Å/px]: the verdict on the cluster nearest
    its centre (``label``, ``reason``, ``diameter_nm``, ``model``, ``most_probable``), or None."""
    from clusterspy.errors import ClusterSpyError
    from clusterspy.predict import classify

    try:
        res = classify(image, pixel_size_A=px, model=model)
    except ClusterSpyError:
        return None
    if not res:
        return None
    cy, cx = (image.shape[0] - 1) / 2, (image.shape[1] - 1) / 2
    r = min(res, key=lambda r: (r.x_px - cx) ** 2 + (r.y_px - cy) ** 2)
    top = max(r.probabilities, key=r.probabilities.get) if r.probabilities else None
    return {"label": r.label, "reason": r.reason, "diameter_nm": r.diameter_nm,
            "model": str(r.model).split("@")[0], "most_probable": top}


def main(argv: list[str] | None = None) -> dict:
    from clusterspy.datasets import load
    from clusterspy.isomers import CLASSES
    from clusterspy.predict import ROUTE_FROM_NM, load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE / "results" / "route_boundary.json"))
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    models = {"v3": load_model("isomernet-v3"), "v5": load_model("isomernet-v5"), "default": load_model()}
    rows = []
    for name, path in (("sizes", sizes_path()), ("large", large_path())):
        if not (path / "zarr.json").exists():
            raise SystemExit(f"no {name} images: run python benchmarks/domain_sets.py --parts {name} first")
        x, y, metas = load(path, partial=True)
        for k, (image, label, meta) in enumerate(zip(x, y, metas, strict=True)):
            d_nm = meta["diameter_A"] / 10.0
            if not TRUE_RANGE_NM[0] <= d_nm <= TRUE_RANGE_NM[1]:
                continue
            for f in FACTORS:
                row = {"set": name, "index": k, "true": CLASSES[int(label)], "true_diameter_nm": d_nm,
                       "factor": f}
                for tag, m in models.items():
                    row[tag] = central_verdict(image, IMAGE_PX_A * f, m)
                rows.append(row)
    table: dict[str, Any] = {}
    for lo, hi in BINS:
        inside = [r for r in rows if r["default"] is not None and lo <= r["default"]["diameter_nm"] < hi]
        entry: dict[str, Any] = {"n": len(inside)}
        for tag in models:
            pairs = [(r[tag], r["true"]) for r in inside]
            entry[tag] = {
                "right": sum(v is not None and v["label"] == t for v, t in pairs),
                "unknown": sum(v is None or v["label"] == "unknown" for v, _ in pairs),
                "wrong": sum(v is not None and v["label"] not in ("unknown", t) for v, t in pairs),
            }
        entry["default_judged_by"] = {m: sum(r["default"]["model"] == m for r in inside)
                                      for m in sorted({r["default"]["model"] for r in inside})}
        table[f"{lo}-{hi} nm"] = entry
        print(f"{lo}-{hi} nm (n={len(inside)}): " + "; ".join(
            f"{tag} {e['right']} right / {e['unknown']} unknown / {e['wrong']} wrong"
            for tag, e in ((t, entry[t]) for t in models)) + f"; default used {entry['default_judged_by']}")
    out = {"route_from_nm": dict(ROUTE_FROM_NM), "factors": [round(f, 6) for f in FACTORS],
           "true_diameter_nm": list(TRUE_RANGE_NM), "by_measured_diameter": table, "n_rows": len(rows),
           "seconds": round(time.perf_counter() - t0, 1),
           "command": "python benchmarks/route_boundary.py"}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
