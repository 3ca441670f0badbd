"""Can a cluster's own lattice tell a wrong pixel size? Three figures the README quotes.

1. ``prism``: the dominant fringe spacing [Å] of each cluster of the domain benchmark's PRISM test
   images (``benchmarks/domain_sets.py``; 40 images, 55–923 atoms) read at the true pixel size and at
   one told 15 % too large or too small: the peak of the window spectrum's radial profile at
   1.8–3.4 Å (the window of :func:`clusterspy.domain.spectrum_scores`). If the ranges overlap, no
   per-cluster lattice check can flag a 15 % calibration error.
2. ``fine``: ``fine_over_lattice`` of :func:`clusterspy.domain.spectrum_scores` (the rule behind
   ``scale_mismatch``: > 1 says the pixel size given is too small) on fcc Au₃₀₉ made as a user
   makes them (``clusterspy simulate --motif fcc --size 309 --dose 2e4 --pixel-size 0.15
   --extent 50 --seed 1…5``, the true pixel size) and on StatSTEM's real particles told a pixel
   size 2–3× too small (skipped without ``../shared``).

3. ``lattice``: what ``classify --calibrate`` measures on StatSTEM's PtIr and Pb particles told a
   pixel size off by −15…+15 % (:func:`lattice_part`; skipped without ``../shared``).
4. ``coarse``: a pixel size told too large (:func:`coarse_part`). 72 particles of 2–10 nm (Au / Pt /
   Cu icosahedra, decahedra and fcc of 923–6,525 atoms, two seeds; ``clusterspy simulate
   --pixel-size 0.2 --dose 5e4``) and StatSTEM's PtIr and Pb are classified told ×0.87…×2 their
   pixel size: labels right / wrong, reasons, and the largest :func:`clusterspy.domain.strongest_spot`
   spacing of the clusters of 3.5 nm and more — the figures behind
   :data:`clusterspy.domain.COARSE_SPOT_FROM_A`.

Run: ``python benchmarks/scale_cues.py [--parts prism,fine,lattice,coarse]`` →
``benchmarks/results/scale_cues.json`` (the parts not run are kept; ``lattice`` takes a few minutes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
REAL = HERE.parent.parent / "shared" / "data" / "real_atomic"
sys.path.insert(0, str(HERE))

SCALES = (1.0, 1.15, 0.85)


def _largest(img):
    """The largest cluster classify's detector finds in an image."""
    from clusterspy.detection import detect_clusters
    from clusterspy.predict import detection_range_A

    lo, hi = detection_range_A()
    found = detect_clusters(img, min_diameter_A=lo, max_diameter_A=hi, exclude_border=False,
                            polarity="bright")
    return max(found, key=lambda d: d.diameter_A) if found else None


def dominant_spacing_A(img) -> float | None:
    """The spacing [Å] at the peak of the radial power profile (1.8–3.4 Å) of the largest cluster's
    window spectrum, or None."""
    from clusterspy.domain import _window_spectrum, particle_diameter_A

    d = _largest(img)
    spec = None if d is None else _window_spectrum(img, d.x_px, d.y_px, particle_diameter_A(d.diameter_A))
    if spec is None:
        return None
    power, f = spec[0], spec[1]
    edges = np.linspace(1 / 3.4, 1 / 1.8, 40)
    which = np.digitize(f.ravel(), edges)
    p = power.ravel()
    profile = [p[which == i].mean() if (which == i).any() else 0.0 for i in range(1, len(edges))]
    centres = 0.5 * (edges[1:] + edges[:-1])
    return float(1.0 / centres[int(np.argmax(profile))])


def fine_over_lattice(img) -> float | None:
    """:func:`clusterspy.domain.spectrum_scores`' third score for the largest cluster, or None."""
    from clusterspy.domain import particle_diameter_A, spectrum_scores

    d = _largest(img)
    if d is None:
        return None
    return float(spectrum_scores(img, d.x_px, d.y_px, particle_diameter_A(d.diameter_A))[2])


def prism_part() -> dict:
    import domain as bench
    from clusterspy.image import Image

    x, _, _ = bench._load_sets(40, 2)
    out = {}
    for s in SCALES:
        d = [v for img in x if (v := dominant_spacing_A(Image(img, bench.IMAGE_PX_A * s))) is not None]
        out[f"{s:.2f}"] = {"n": len(d), "min_A": round(min(d), 2), "median_A": round(float(np.median(d)), 2),
                           "max_A": round(max(d), 2)}
        print(f"pixel size × {s:.2f}: dominant spacing {min(d):.2f}–{max(d):.2f} Å "
              f"(median {np.median(d):.2f}, n = {len(d)})", flush=True)
    return out


def fine_part() -> dict:
    from clusterspy.cli import main as cli
    from clusterspy.image import Image
    from clusterspy.io import read_image

    out: dict = {"simulated_fcc_Au309_0.15A": {}, "real_told_too_small": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(1, 6):
            path = Path(tmp) / f"fcc_{seed}.npz"
            cli(["simulate", "--motif", "fcc", "--size", "309", "--dose", "2e4", "--seed", str(seed),
                 "--pixel-size", "0.15", "--extent", "50", "--source-size", "0",  # the ideal probe of
                 "--out", str(path)])  # the figure quoted (simulate's default since stop 27: 0.6 Å)
            v = fine_over_lattice(read_image(path))
            out["simulated_fcc_Au309_0.15A"][str(seed)] = None if v is None else round(v, 2)
    for name, px in (("PtIr", 0.05), ("PtIr", 0.0605), ("Pb", 0.075)):
        path = REAL / f"{name}_fcc_statstem.npz"
        if path.exists():
            img = read_image(path)
            v = fine_over_lattice(Image(img.data, px))
            out["real_told_too_small"][f"{name}@{px:g}"] = None if v is None else round(v, 2)
    print("fine_over_lattice:", json.dumps(out), flush=True)
    return out


#: StatSTEM's particles, their element, and the pixel sizes [× the file's] they are told in ``lattice``.
LATTICE_CASES = (("PtIr", "Pt", (0.85, 0.95, 1.0, 1.15)), ("Pb", "Pb", (0.85, 0.885, 1.0, 1.15)))


def lattice_part() -> dict:
    """What ``classify --calibrate`` measures on StatSTEM's real particles told a pixel size off by
    −15…+15 % (Pb's ×0.885 is the pixel size its own lattice gives at the file's 0.22 Å/px): each
    cluster's scale, lattice NCC and reason (:func:`clusterspy.workflows.calibrate_pixel_size`, the
    function the CLI calls, after :func:`clusterspy.classify`)."""
    import time

    from clusterspy.image import Image
    from clusterspy.io import read_image
    from clusterspy.predict import classify
    from clusterspy.workflows import calibrate_pixel_size

    out: dict = {}
    for name, element, factors in LATTICE_CASES:
        path = REAL / f"{name}_fcc_statstem.npz"
        if not path.exists():
            continue
        img = read_image(path)
        for f in factors:
            told = Image(img.data, img.pixel_size_A * f)
            t = time.perf_counter()
            cal = calibrate_pixel_size(told, classify(told), element=element)
            row = {"told_A": round(told.pixel_size_A, 5), **cal.to_dict(),
                   "seconds": round(time.perf_counter() - t, 1)}
            out[f"{name}@x{f:g}"] = row
            print(name, f, json.dumps(row), flush=True)
    return out


#: The factors on the true pixel size at which ``coarse`` tells its particles' pixel size.
COARSE_FACTORS = (0.87, 1.0, 1.15, 1.3, 1.5, 1.75, 2.0)
#: ``coarse``'s particles: (motif, atoms, element, seed), simulated at 0.2 Å/px.
COARSE_CASES = tuple((motif, size, element, seed)
                     for motif in ("icosahedral", "decahedral", "fcc") for size in (923, 2057, 3871, 6525)
                     for element in ("Au", "Pt", "Cu") for seed in (1, 2))
COARSE_EXTENT_A = {923: 50, 2057: 64, 3871: 80, 6525: 96}
CACHE = HERE / "cache" / "scale_cues"


def _coarse_row(image, factor: float, model) -> tuple[str, str | None, float | None, float]:
    """``(label, reason, strongest-spot spacing [Å] or None, diameter [nm])`` of the cluster nearest
    the centre of ``image`` told ``factor`` × its pixel size."""
    from clusterspy.domain import LATTICE_FRINGES_MIN, strongest_spot
    from clusterspy.errors import ClusterSpyError
    from clusterspy.image import Image
    from clusterspy.predict import classify
    from domain import _central

    told = Image(image.data, image.pixel_size_A * factor)
    try:
        r = _central(classify(told, model=model), told.shape)
    except ClusterSpyError as exc:
        return "unknown", type(exc).__name__, None, float("nan")
    if r is None:
        return "unknown", "no_cluster", None, float("nan")
    spacing, peak = strongest_spot(told, r.x_px, r.y_px, 10.0 * r.diameter_nm)
    return r.label, r.reason, (spacing if peak >= LATTICE_FRINGES_MIN else None), float(r.diameter_nm)


def coarse_part() -> dict:
    from clusterspy.cli import main as cli
    from clusterspy.io import read_image
    from clusterspy.predict import load_model

    model = load_model()
    CACHE.mkdir(parents=True, exist_ok=True)
    tally = {f"{f:g}": {"right": 0, "wrong": 0, "reasons": {}, "spacings_A": []} for f in COARSE_FACTORS}
    for motif, size, element, seed in COARSE_CASES:
        path = CACHE / f"{motif}_{size}_{element}_{seed}.npz"
        if not path.exists():
            cli(["simulate", "--motif", motif, "--size", str(size), "--element", element, "--pixel-size",
                 "0.2", "--extent", str(COARSE_EXTENT_A[size]), "--dose", "5e4", "--seed", str(seed),
                 "--out", str(path)])
        img = read_image(path)
        for f in COARSE_FACTORS:
            label, reason, spacing, d_nm = _coarse_row(img, f, model)
            t = tally[f"{f:g}"]
            if label != "unknown":
                t["right" if label == motif else "wrong"] += 1
            else:
                t["reasons"][reason] = t["reasons"].get(reason, 0) + 1
            if spacing is not None and d_nm >= 3.5:
                t["spacings_A"].append(spacing)
    out: dict = {"n_particles": len(COARSE_CASES), "simulated": {}, "real": {}}
    for f, t in tally.items():
        sp = t.pop("spacings_A")
        t["strongest_spot_A_max"] = round(max(sp), 2) if sp else None  # clusters of 3.5 nm and more
        t["n_spots"] = len(sp)
        out["simulated"][f] = t
        print(f"×{f}: right {t['right']}, wrong {t['wrong']}, unknown {t['reasons']}; strongest spot of "
              f"{len(sp)} clusters ≥ 3.5 nm at most {t['strongest_spot_A_max']} Å", flush=True)
    for name in ("PtIr", "Pb"):
        path = REAL / f"{name}_fcc_statstem.npz"
        if not path.exists():
            continue
        img = read_image(path)
        for f in COARSE_FACTORS:
            label, reason, spacing, d_nm = _coarse_row(img, f, model)
            out["real"][f"{name}@x{f:g}"] = {
                "label": label, "reason": reason, "diameter_nm": round(d_nm, 2),
                "strongest_spot_A": None if spacing is None else round(spacing, 2)}
            print(name, f, out["real"][f"{name}@x{f:g}"], flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="prism,fine,lattice,coarse")
    a = ap.parse_args(argv)
    parts = set(a.parts.split(","))
    path = RESULTS / "scale_cues.json"
    result = json.loads(path.read_text()) if path.exists() else {}  # the parts not rerun are kept
    if "prism" in parts:
        result["prism_dominant_spacing"] = prism_part()
    if "fine" in parts:
        result["fine_over_lattice"] = fine_part()
    if "lattice" in parts:
        result["lattice_calibration"] = lattice_part()
    if "coarse" in parts:
        result["coarse"] = coarse_part()
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
