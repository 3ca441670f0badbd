"""Wide fields claimed at a wrong, in-range pixel size: how many of their blobs get an isomer label?

The 33 ArdaGen low-magnification images of ``../shared/data/widefield/ardagen`` (about 2 Å/px: no
atomic columns) are classified as a user who typed a wrong pixel size would: at 0.5, 0.4, 0.3 and
0.2 Å/px, all inside the model's domain. Every label given is a claim the model cannot make (a
newcomer found 83 at 0.5 Å/px before ``clusterspy.domain.lattice_over_surroundings``). Prints, per
pixel size, the clusters found, the clusters labelled and the reasons; writes
``benchmarks/results/widefield_wrong_scale.json``. Skips cleanly without ``../shared``::

    python benchmarks/widefield_wrong_scale.py [--model isomernet-v3]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
IMAGES = HERE.parent.parent / "shared" / "data" / "widefield" / "ardagen" / "images"
PIXEL_SIZES_A = (0.5, 0.4, 0.3, 0.2)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model folder, .onnx or shipped name (default: shipped)")
    a = ap.parse_args(argv)
    files = sorted(IMAGES.glob("*.jpg"))
    if not files:
        print(f"skipped: no images in {IMAGES}")
        return {}
    from clusterspy.errors import ClusterSpyError
    from clusterspy.io import read_image
    from clusterspy.predict import classify, load_model

    model = load_model(a.model)
    out: dict = {"model": model.id, "files": len(files), "by_pixel_size_A": {}}  # name@sha256 (each, by size)
    for px in PIXEL_SIZES_A:
        t0, outcome, labelled = time.perf_counter(), Counter(), []
        for f in files:
            try:
                results = classify(read_image(f, pixel_size_A=px), model=model)
            except ClusterSpyError as exc:
                outcome[type(exc).__name__] += 1
                continue
            for r in results:
                outcome[r.label if r.label != "unknown" else r.reason] += 1
                if r.label != "unknown":
                    labelled.append({"file": f.name, "cluster": r.cluster, "label": r.label,
                                     "confidence": round(float(r.confidence), 3)})
        found = sum(v for k, v in outcome.items() if not k.endswith("Error"))
        out["by_pixel_size_A"][f"{px:g}"] = {"clusters_found": found, "clusters_labelled": len(labelled),
                                             "outcomes": dict(outcome), "labelled": labelled,
                                             "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{px:g} Å/px: {len(labelled)} of {found} clusters labelled; {dict(outcome)}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    suffix = "" if a.model is None else f"_{Path(a.model).name}"
    name = f"widefield_wrong_scale{suffix}.json"
    (RESULTS / name).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
