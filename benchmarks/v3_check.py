"""Does the second opinion keep isomernet-v3's right labels and withdraw its wrong ones?

(:data:`clusterspy.predict.SECOND_OPINION_CHECKS`.)

Over the particles of ``benchmarks/domain.py``'s ``sizes`` and ``large`` sets of 2.6–5.2 nm, each image
told ×0.87, ×1 and ×1.15 its pixel size, this runs :func:`clusterspy.classify` with ``isomernet-v3``
alone (the cluster nearest the image centre, kept where v3 measures it 3.0–4.6 nm: the sizes the
default gives v3 above v2's range) and asks ``isomernet-v4``, ``isomernet-v5`` and ``isomernet-v7`` (the
second opinion since stop 40) alone for their most probable isomer of the same cluster. It prints,
for each checker, how many of v3's right labels it agrees with (kept) and how many of its wrong labels
it does not (withdrawn). The set's particles give
v3 no wrong label there; so the newcomer's case is added: Au decahedra of 2,000 / 2,500 / 3,500 atoms,
seeds 11–14 (``clusterspy simulate --motif decahedral --size N --pixel-size 0.25 --extent 120 --dose
1e4 --seed S``), which v3 called fcc with seed 11 (stop 33), made once into ``benchmarks/cache/v3_check``.

Usage::

    python benchmarks/domain_sets.py --parts sizes,large   # once (see domain.py)
    python benchmarks/v3_check.py [--out benchmarks/results/v3_check.json]
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
from route_boundary import central_verdict  # noqa: E402

FACTORS = (1 / 1.15, 1.0, 1.15)


#: The newcomer's decahedra: atoms × seeds.
DECAHEDRA = tuple((n, seed) for n in (2000, 2500, 3500) for seed in (11, 12, 13, 14))


def _decahedron(n: int, seed: int) -> Path:
    from clusterspy.workflows import simulate_to_file

    path = HERE / "cache" / "v3_check" / f"dec{n}_s{seed}.npz"
    if not path.exists():
        simulate_to_file(motif="decahedral", size=n, element="Au", backend="fast", energy_keV=200.0,
                         semiangle_mrad=25.0, pixel_size_A=0.25, extent_A=120.0, dose_e_per_A2=1e4, seed=seed,
                         out=path)
    return path


def _images():
    from clusterspy.datasets import load
    from clusterspy.isomers import CLASSES

    for name, path in (("sizes", sizes_path()), ("large", large_path())):
        if not (path / "zarr.json").exists():
            raise SystemExit(f"no {name} images: run python benchmarks/domain_sets.py --parts {name} first")
        x, y, metas = load(path, partial=True)
        for k, (image, label, meta) in enumerate(zip(x, y, metas, strict=True)):
            if 2.6 <= meta["diameter_A"] / 10 <= 5.2:
                yield name, str(k), image, IMAGE_PX_A, CLASSES[int(label)]
    for n, seed in DECAHEDRA:
        path = _decahedron(n, seed)
        with np.load(path) as z:
            image, px = z["image"].astype(np.float32), float(z["pixel_size_A"])
        yield "newcomer", path.name, image, px, "decahedral"


def main(argv: list[str] | None = None) -> dict:
    from clusterspy.predict import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE / "results" / "v3_check.json"))
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    v3 = load_model("isomernet-v3")
    checkers = {"v4": load_model("isomernet-v4"), "v5": load_model("isomernet-v5"),
                "v7": load_model("isomernet-v7")}
    rows = []
    for name, key, image, px0, truth in _images():
        for f in FACTORS:
            first = central_verdict(image, px0 * f, v3)
            if first is None or not 3.0 <= first["diameter_nm"] < 4.6 or first["label"] == "unknown":
                continue
            row = {"set": name, "image": key, "truth": truth, "factor": round(f, 6), "v3": first}
            for tag, m in checkers.items():
                row[tag] = central_verdict(image, px0 * f, m)
            rows.append(row)
    out: dict[str, Any] = {"n_v3_labels": len(rows),
                           "v3_right": sum(r["v3"]["label"] == r["truth"] for r in rows),
                           "v3_wrong": sum(r["v3"]["label"] != r["truth"] for r in rows)}
    for tag in checkers:
        agree = [r[tag] is not None and r[tag]["most_probable"] == r["v3"]["label"] for r in rows]
        right = [r["v3"]["label"] == r["truth"] for r in rows]
        pairs = list(zip(agree, right, strict=True))
        out[tag] = {"right_labels_kept": sum(a and b for a, b in pairs),
                    "wrong_labels_withdrawn": sum((not a) and (not b) for a, b in pairs)}
        print(f"{tag}: keeps {out[tag]['right_labels_kept']} of v3's {out['v3_right']} right labels, "
              f"withdraws {out[tag]['wrong_labels_withdrawn']} of its {out['v3_wrong']} wrong ones")
    out["wrong"] = [r for r in rows if r["v3"]["label"] != r["truth"]]
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["command"] = "python benchmarks/v3_check.py"
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
