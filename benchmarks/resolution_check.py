"""The resolution check's 12 Å tiles (``domain.tiled_lattice_contrast``): noise, large particles.

Prints, and writes to ``benchmarks/results/resolution_check.json``:

- ``noise``: the tiled lattice contrast of Poisson noise alone (150 windows of a 70 Å cluster at
  0.4 Å/px, 5 / 50 / 500 counts a pixel): median, 99th percentile, largest — what
  :data:`~clusterspy.domain.TILED_LATTICE_CONTRAST_MIN` (8) must stay above;
- ``large``: 8 fcc and 8 decahedral Au particles of 9,000 atoms (~7 nm; ``clusterspy simulate --motif M
  --size 9000 --pixel-size 0.4 --extent 130 --dose 1e4 --seed 1…8``, made once into
  ``benchmarks/cache/resolution_check``), each classified by the default at ×0.87, ×1 and ×1.15 its
  pixel size: right / unknown / wrong, the window's and the tiles' lattice contrast at ×1;
- ``smoothed``: unresolved blobs smoothed after the noise (a "denoised" export), which pass the noise
  test (caught since stop 34 by ``domain.crystal_evidence_missing``): the ``sizes`` set's first 30
  clusters under 5 nm, blurred by 1.5 and 2.5 Å (no column left), Poisson noise (2,000 counts at
  the peak), then a Gaussian of 0, 0.5, 1 and 1.5 px — how many get an isomer label, with their
  diameter and fringe peak (needs the ``sizes`` set: ``python benchmarks/domain_sets.py --parts
  sizes``);
- ``smoothed_particles``: a newcomer's (stop 34) Au particles of 1.8–3.5 nm, each simulated twice
  (``clusterspy simulate`` at 10⁴ e⁻/Å²): with a 3–5 Å source blur (columns not resolved) and with the
  default 0.6 Å (resolved), each classified raw and after a Gaussian of 0.5 / 0.7 / 1 px, a median of 3
  px and a box of 3 px — isomer labels on the unresolved ones (all wrong: no label can stand), and
  right / unknown / wrong on the resolved ones;
- ``smoothed_sweep`` (stop 35): 42 Au particles of 147–2,869 atoms (icosahedral, decahedral, fcc; 2 seeds;
  0.25 / 0.3 / 0.4 Å/px and a 3.5 / 4 / 5 Å source blur drawn by a seeded generator), each simulated
  unresolved and resolved (0.6 Å) and classified raw and after a Gaussian of 0.5 / 0.7 / 1 / 1.5 px, a
  median of 3 / 5 px and a box of 3 px: isomer labels on the 336 unresolved inputs, right / unknown / wrong
  on the 336 resolved ones. The lattice-spot and ring tests (``domain.lattice_spots``,
  ``domain.lattice_ring``) were chosen on these and on the project's test sets, so these figures say how
  far the rule goes on what it was made from; ``smoothed_particles`` is a check it was not made from.

Usage::

    python benchmarks/resolution_check.py [--out benchmarks/results/resolution_check.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PX_A = 0.4
FACTORS = (1 / 1.15, 1.0, 1.15)


def noise_part(n: int = 150) -> dict:
    from clusterspy.domain import tiled_lattice_contrast
    from clusterspy.image import Image

    vals = []
    for s in range(n):
        counts = (5.0, 50.0, 500.0)[s % 3]
        img = Image(np.random.default_rng(100 + s).poisson(counts, (120, 120)).astype(np.float32), PX_A)
        vals.append(tiled_lattice_contrast(img, 60, 60, 70.0))
    v = np.array(vals)
    return {"n_windows": n, "median": float(np.median(v)), "p99": float(np.percentile(v, 99)),
            "max": float(v.max())}


def _particle(motif: str, seed: int) -> Path:
    from clusterspy.workflows import simulate_to_file

    path = HERE / "cache" / "resolution_check" / f"{motif}_9000_s{seed}.npz"
    if not path.exists():
        simulate_to_file(motif=motif, size=9000, element="Au", backend="fast", energy_keV=200.0,
                         semiangle_mrad=25.0, pixel_size_A=PX_A, extent_A=130.0, dose_e_per_A2=1e4,
                         seed=seed, out=path)
    return path


def large_part() -> dict:
    from clusterspy.domain import lattice_contrast, tiled_lattice_contrast
    from clusterspy.image import Image
    from clusterspy.predict import classify

    out: dict = {}
    for motif in ("fcc", "decahedral"):
        tally = {"right": 0, "unknown": 0, "wrong": 0, "right_at_true_pixel_size": 0}
        contrast = []
        for seed in range(1, 9):
            with np.load(_particle(motif, seed)) as z:
                img = z["image"].astype(np.float32)
            for f in FACTORS:
                r = max(classify(img, pixel_size_A=PX_A * f), key=lambda r: r.diameter_nm)
                kind = "right" if r.label == motif else ("unknown" if r.label == "unknown" else "wrong")
                tally[kind] += 1
                if f == 1.0:
                    tally["right_at_true_pixel_size"] += kind == "right"
                    im, d_A = Image(img, PX_A), 10.0 * r.diameter_nm
                    contrast.append([round(lattice_contrast(im, r.x_px, r.y_px, d_A), 2),
                                     round(tiled_lattice_contrast(im, r.x_px, r.y_px, d_A), 2)])
        out[motif] = {**tally, "n_particles": 8, "n_classified": 8 * len(FACTORS),
                      "lattice_contrast_window_and_tiles": contrast}
    return out


def smoothed_part(n_particles: int = 30) -> dict:
    from scipy import ndimage as ndi

    from clusterspy.datasets import load
    from clusterspy.domain import fringe_peak
    from clusterspy.image import Image
    from clusterspy.predict import classify

    sys.path.insert(0, str(HERE))
    from domain_sets import sizes_path

    if not (sizes_path() / "zarr.json").exists():
        return {"skipped": "no sizes set: python benchmarks/domain_sets.py --parts sizes"}
    x, _, metas = load(sizes_path(), partial=True)
    small = [k for k, m in enumerate(metas) if m["diameter_A"] < 50][:n_particles]
    rng = np.random.default_rng(7)
    inputs: dict[str, int] = {}
    labelled: list[dict] = []
    for k in small:
        for blur_A in (1.5, 2.5):
            b = ndi.gaussian_filter(x[k].astype(float), blur_A / PX_A)
            noisy = rng.poisson(np.clip(b, 0, None) * 2000.0 / b.max()).astype(np.float32)
            for sigma_px in (0.0, 0.5, 1.0, 1.5):
                data = ndi.gaussian_filter(noisy, sigma_px) if sigma_px else noisy
                key = f"gaussian_{sigma_px:g}px"
                inputs[key] = inputs.get(key, 0) + 1
                for r in classify(Image(data, PX_A)):
                    if r.label != "unknown":
                        labelled.append({"smoothing": key, "blur_A": blur_A, "label": r.label,
                                         "diameter_nm": round(r.diameter_nm, 2),
                                         "fringe_peak": round(fringe_peak(Image(data, PX_A), r.x_px, r.y_px,
                                                                          10 * r.diameter_nm), 1)})
    return {"inputs": inputs, "labelled": labelled, "n_labelled": len(labelled)}


#: ``(motif, atoms, pixel size [Å/px], unresolved source size [Å], seed)`` of ``smoothed_particles``.
SMOOTHED_PARTICLES = (("icosahedral", 923, 0.25, 5.0, 2), ("icosahedral", 923, 0.25, 5.0, 3),
                      ("icosahedral", 923, 0.25, 4.0, 7), ("icosahedral", 923, 0.3, 5.0, 11),
                      ("decahedral", 1000, 0.25, 5.0, 1), ("icosahedral", 147, 0.2, 3.0, 2),
                      ("icosahedral", 561, 0.25, 4.0, 7), ("amorphous", 600, 0.25, 4.0, 2),
                      ("decahedral", 561, 0.25, 4.0, 5), ("decahedral", 309, 0.25, 4.0, 5),
                      ("fcc", 561, 0.25, 4.0, 3), ("fcc", 923, 0.3, 5.0, 4))


CACHE = HERE / "cache" / "resolution_check"
SMOOTHED_FILTERS = ("raw", "gaussian_0.5px", "gaussian_0.7px", "gaussian_1px", "median_3px", "box_3px")
SWEEP_FILTERS = ("raw", "gaussian_0.5px", "gaussian_0.7px", "gaussian_1px", "gaussian_1.5px", "median_3px",
                 "median_5px", "box_3px")


def _smoothed(data: np.ndarray, name: str) -> np.ndarray:
    """``data`` through the filter ``name`` ("raw", "gaussian_Spx", "median_Npx", "box_Npx")."""
    from scipy import ndimage as ndi

    if name == "raw":
        return data
    kind, size = name.removesuffix("px").split("_")
    if kind == "gaussian":
        return ndi.gaussian_filter(data, float(size))
    return (ndi.median_filter if kind == "median" else ndi.uniform_filter)(data, int(size))


def _central(img):
    """The result of the cluster nearest the centre of ``img`` (None when none was found)."""
    from clusterspy.predict import classify

    res = classify(img)
    cy, cx = (np.asarray(img.shape) - 1) / 2
    return min(res, key=lambda r: (r.x_px - cx) ** 2 + (r.y_px - cy) ** 2) if res else None


def _judge_smoothed(particles, filters: tuple[str, ...], prefix: str, extent_A) -> dict:
    """Each of ``particles`` (``(motif, atoms, pixel size [Å], source blur [Å], seed)``) simulated
    unresolved (its blur) and resolved (0.6 Å), made once into :data:`CACHE` as ``prefix…npz`` in a
    field of ``extent_A(atoms)`` Å, and classified through each of ``filters``: the labels on the
    unresolved ones, right / unknown / wrong on the resolved ones."""
    from clusterspy.image import Image
    from clusterspy.workflows import simulate_to_file

    out = {"unresolved": {"inputs": 0, "labelled": []}, "resolved": {"right": 0, "unknown": 0, "wrong": 0}}
    for motif, size, px, blur_A, seed in particles:
        for kind, source_A in (("unresolved", blur_A), ("resolved", 0.6)):
            path = CACHE / f"{prefix}{motif}{size}_px{px}_src{source_A}_s{seed}.npz"
            if not path.exists():
                simulate_to_file(motif=motif, size=size, element="Au", backend="fast", energy_keV=200.0,
                                 semiangle_mrad=25.0, pixel_size_A=px, extent_A=extent_A(size),
                                 dose_e_per_A2=1e4, seed=seed, out=path, source_size_A=source_A)
            with np.load(path) as z:
                data = z["image"].astype(float)
            for name in filters:
                r = _central(Image(np.asarray(_smoothed(data, name), np.float32), px))
                label = "unknown" if r is None else r.label
                if kind == "resolved":
                    verdict = "right" if label == motif else "unknown" if label == "unknown" else "wrong"
                    out[kind][verdict] += 1
                    continue
                out[kind]["inputs"] += 1
                if label != "unknown":
                    out[kind]["labelled"].append({"particle": path.stem, "filter": name, "label": label,
                                                  "confidence": round(float(r.confidence), 3),
                                                  "diameter_nm": round(r.diameter_nm, 2)})
    out["unresolved"]["n_labelled"] = len(out["unresolved"]["labelled"])
    return out


def smoothed_particles_part() -> dict:
    return _judge_smoothed(SMOOTHED_PARTICLES, SMOOTHED_FILTERS, "", lambda n: 40.0 if n < 200 else 60.0)


def _sweep_particles() -> list[tuple[str, int, float, float, int]]:
    """``(motif, atoms, pixel size [Å], source blur [Å], seed)`` of the ``smoothed_sweep`` part."""
    rng = np.random.default_rng(11)
    out = []
    for size in (147, 309, 561, 923, 1415, 2057, 2869):
        for motif in ("icosahedral", "decahedral", "fcc"):
            for seed in (21, 22):
                px, blur_A = float(rng.choice([0.25, 0.3, 0.4])), float(rng.choice([3.5, 4.0, 5.0]))
                out.append((motif, size, px, blur_A, seed))
    return out


def smoothed_sweep_part() -> dict:
    return _judge_smoothed(_sweep_particles(), SWEEP_FILTERS, "sweep_",
                           lambda n: 40.0 if n < 200 else 60.0 if n < 1000 else 80.0)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE / "results" / "resolution_check.json"))
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    result = {"noise": noise_part()}
    print("noise:", result["noise"], flush=True)
    result["large"] = large_part()
    for motif, r in result["large"].items():
        print(f"{motif}: {r['right_at_true_pixel_size']} of 8 right at the true pixel size; over "
              f"×0.87/1/1.15 {r['right']} right, {r['unknown']} unknown, {r['wrong']} wrong", flush=True)
    result["smoothed"] = smoothed_part()
    print("smoothed unresolved blobs labelled:", result["smoothed"].get("n_labelled"),
          result["smoothed"].get("labelled", result["smoothed"].get("skipped")), flush=True)
    result["smoothed_particles"] = sp = smoothed_particles_part()
    print(f"smoothed particles: unresolved {sp['unresolved']['n_labelled']} of {sp['unresolved']['inputs']} "
          f"labelled; resolved {sp['resolved']}", flush=True)
    result["smoothed_sweep"] = sw = smoothed_sweep_part()
    print(f"smoothed sweep: unresolved {sw['unresolved']['n_labelled']} of {sw['unresolved']['inputs']} "
          f"labelled; resolved {sw['resolved']}", flush=True)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["command"] = "python benchmarks/resolution_check.py"
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
