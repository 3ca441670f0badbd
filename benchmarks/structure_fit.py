"""Benchmark of the structure fit (``clusterspy.fit_structure``): PRISM images of known clusters,
a held-out fast-simulated set, and the real particles of ``../shared/data/real_atomic``.

Parts (each printed and written to ``benchmarks/results/structure_fit.json``):

- ``prism``: the PRISM images of ``structure_fit_set.py`` finished so far (true atoms and rotation
  kept; settings never used to fit the fast simulator's parameters). The fit sees the noisy image
  and the microscope's energy, aperture and detector — not its defocus or source size (the fitted blur
  absorbs them). Figures: isomer accuracy of the fit alone, atom count within ±10 %, symmetry-aware
  orientation error (crystalline clusters whose isomer was found), NCC of the fitted model's
  simulation against the noise-free PRISM image (on the fit's window), time per cluster, and the
  agreement of ``classify`` (shipped model) with the fit.
- ``fast``: the same on images of the fast simulator with other seeds, defocus, source size, dose,
  pixel size and 0.08 Å thermal displacements. The fit's own simulator made these images, so this
  part is optimistic; it is reported beside, never instead of, the PRISM part.
- ``real``: StatSTEM's PtIr and Pb particles (fcc; their npz carry StatSTEM's atom counts and column
  positions) and the TEMUL Au particle: isomer, form, atom count, zone axis, median distance [Å]
  from each StatSTEM column to the nearest fitted projected column, and ``clusterspy fit`` on each
  StatSTEM file in its own process (wall time, peak memory: the CLI path users run); skipped without
  ``../shared``.

Clusters are detected as ``clusterspy fit`` detects them (:func:`clusterspy.fit_structure`:
``classify``'s size range for the shipped model, :func:`clusterspy.predict.detection_range_A`).

Run (one process, niced)::

    nice -n 10 .venv/bin/python benchmarks/structure_fit.py [--fast 24] [--skip-real]
    .venv/bin/python benchmarks/structure_fit.py --parts prism --cases 0-9,64-70 --out fit_subset.json
    .venv/bin/python benchmarks/structure_fit.py --parts prism --cases 0-119:3 --pixel-size-error 0.15 \
        --out structure_fit_px+15.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
REAL = HERE.parent.parent / "shared" / "data" / "real_atomic"
sys.path.insert(0, str(HERE))

import structure_fit_set as sset  # noqa: E402


def _truth_group(form: str) -> str | None:
    from clusterspy.fit.library import FORM_OF_SHAPE, FORMS

    return FORMS[FORM_OF_SHAPE[form]][2]


def _score(fit, truth: dict, clean: np.ndarray | None) -> dict:
    """Per-cluster figures of one fit against the truth."""
    from clusterspy.fit import misorientation_deg
    from clusterspy.simulation import ncc

    row = {"true_isomer": truth["isomer"], "true_form": truth["form"], "true_n_atoms": truth["n_atoms"],
           "isomer": fit.isomer, "form": fit.form, "n_atoms": fit.n_atoms, "ncc_data": fit.ncc,
           "reason": fit.reason, "seconds": round(fit.seconds, 2), "zone_axis": fit.zone_axis,
           "scale": fit.scale, "blur_A": fit.blur_A,
           "true_zone_axis": truth.get("zone_axis")}
    row["isomer_ok"] = fit.isomer == truth["isomer"]
    # NCC margin over the best other isomer: how clearly the fit chose
    row["margin"] = None if fit.ncc is None or not fit.alternatives else round(
        fit.ncc - max(v["ncc"] for v in fit.alternatives.values()), 4)
    row["atoms_within_10pct"] = bool(fit.n_atoms is not None
                                     and abs(fit.n_atoms - truth["n_atoms"]) <= 0.1 * truth["n_atoms"])
    group = _truth_group(truth["form"])
    row["orientation_error_deg"] = None
    if row["isomer_ok"] and group is not None and fit.rotation is not None:
        from clusterspy.fit.library import FORMS

        fit_group = FORMS[fit.form][2]
        # twinned and untwinned fcc have different model frames: compare only like with like
        if fit_group == group:
            err = misorientation_deg(fit.rotation, truth["rotation"], group)
            row["orientation_error_deg"] = round(err, 3)
    if clean is not None and fit.simulated is not None:
        r0, c0, r1, c1 = fit.window
        row["ncc_clean"] = round(ncc(fit.simulated.data, clean[r0:r1, c0:c1]), 4)
    return row


def _classify(img) -> tuple[str, str | None]:
    from clusterspy.errors import ClusterSpyError
    from clusterspy.predict import classify

    try:
        res = classify(img)
    except ClusterSpyError as exc:
        return "refused", type(exc).__name__
    best = max(res, key=lambda r: r.diameter_nm or 0.0)
    return best.label, best.reason


def _indices(spec: str) -> set[int]:
    """``"0-9,64,70-72"`` → the case indices it names; ``"0-119:3"``: every third of 0–119."""
    out: set[int] = set()
    for part in filter(None, spec.split(",")):
        part, _, step = part.partition(":")
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1, int(step or 1)))
    return out


def prism_files(limit: int | None, cases: str | None = None) -> list[Path]:
    """The finished PRISM images (``case_*.npz``, not ``*.tmp.npz``), of ``cases`` only, ≤ ``limit``."""
    files = [f for f in sorted(sset.CACHE.glob("case_*.npz")) if not f.name.endswith(".tmp.npz")]
    if cases:
        wanted = _indices(cases)
        files = [f for f in files if int(f.stem.split("_")[1]) in wanted]
    return files[:limit]


def skipped_cases(cases: str | None = None) -> list[dict]:
    """The planned PRISM images the generator left out (``case_*.skipped.json``: index, motif, why)."""
    out = []
    for f in sorted(sset.CACHE.glob("case_*.skipped.json")):
        rec = json.loads(f.read_text())
        if cases and rec["case"]["index"] not in _indices(cases):
            continue
        out.append({"index": rec["case"]["index"], "motif": rec["case"]["motif"],
                    "form": rec["case"]["form"], "size": rec["case"]["size"], "reason": rec["reason"]})
    return out


def run_prism(limit: int | None, cases: str | None = None, pixel_size_error: float = 0.0) -> list[dict]:
    """The PRISM part; ``pixel_size_error``: the fit is given the pixel size × (1 + this) (a
    calibration error; the truth and the ``clean`` image stay as simulated)."""
    from clusterspy import fit_structure  # classify's detection, as the CLI
    from clusterspy.image import Image
    from clusterspy.simulation import Microscope

    rows = []
    for path in prism_files(limit, cases):
        with np.load(path) as d:
            case = json.loads(str(d["case"]))
            img = Image(d["noisy"], float(d["pixel_size_A"]) * (1.0 + pixel_size_error))
            truth = {"isomer": case["motif"], "form": str(d["form"]), "n_atoms": int(d["n_atoms"]),
                     "rotation": d["rotation"], "zone_axis": case["zone_axis"]}
            clean = np.array(d["clean"])
        known = Microscope(energy_keV=sset.ENERGY_KEV, semiangle_mrad=25.0,
                           detector_mrad=(sset.INNER_MRAD, sset.OUTER_MRAD))
        cpu0 = time.process_time()
        fits = fit_structure(img, element=sset.ELEMENT, microscope=known)
        cpu = time.process_time() - cpu0
        fit = max(fits, key=lambda f: -1.0 if f.ncc is None else f.ncc)
        row = {"case": path.stem, **_score(fit, truth, clean), "n_detected": len(fits),
               "cpu_seconds": round(cpu / len(fits), 2), "load_average": round(os.getloadavg()[0], 2)}
        row["classify_label"], row["classify_reason"] = _classify(img)
        rows.append(row)
        print(f"{path.stem}: {truth['form']} {truth['n_atoms']} -> {fit.isomer} {fit.form} {fit.n_atoms} "
              f"err {row['orientation_error_deg']} ncc_clean {row.get('ncc_clean')} {fit.seconds:.1f} s "
              f"classify {row['classify_label']}", flush=True)
    return rows


def run_fast(n: int) -> list[dict]:
    from clusterspy import fit_structure  # classify's detection, as the CLI
    from clusterspy.image import Image
    from clusterspy.simulation import Acquisition, Microscope, simulate
    from clusterspy.structures import perturb

    rows = []
    for i in range(n):
        c = sset.case(10_000 + i)
        atoms = sset.build(c)
        shaken = perturb(atoms, np.random.default_rng(c["seed"] + 2), thermal_A=0.08)
        micro = sset.microscope(c)
        rng = np.random.default_rng(c["seed"] + 3)
        clean = simulate(shaken, micro, pixel_size=c["pixel_size_A"], extent=56.0, rng=rng)
        noisy = Acquisition(dose_e_per_A2=c["dose_e_per_A2"]).apply(clean.data, clean.pixel_size_A, rng)
        img = Image(np.asarray(noisy, dtype=np.float32), clean.pixel_size_A)
        truth = {"isomer": c["motif"], "form": atoms.info["shape"], "n_atoms": len(atoms),
                 "rotation": np.asarray(atoms.info["rotation"]), "zone_axis": c["zone_axis"]}
        known = Microscope(energy_keV=micro.energy_keV, semiangle_mrad=micro.semiangle_mrad,
                           detector_mrad=micro.detector_mrad)
        fits = fit_structure(img, element=sset.ELEMENT, microscope=known)
        fit = max(fits, key=lambda f: -1.0 if f.ncc is None else f.ncc)
        row = {"case": i, **_score(fit, truth, clean.data), "n_detected": len(fits)}
        row["classify_label"], row["classify_reason"] = _classify(img)
        rows.append(row)
        print(f"fast {i}: {truth['form']} {truth['n_atoms']} -> {fit.isomer} {fit.form} {fit.n_atoms} "
              f"err {row['orientation_error_deg']} ncc_clean {row.get('ncc_clean')} {fit.seconds:.1f} s "
              f"classify {row['classify_label']}", flush=True)
    return rows


def summarise(rows: list[dict]) -> dict:
    """The figures of a part."""
    if not rows:
        return {"n": 0}
    err = [r["orientation_error_deg"] for r in rows if r["orientation_error_deg"] is not None]
    nccs = [r["ncc_clean"] for r in rows if r.get("ncc_clean") is not None]
    labelled = [r for r in rows if r["classify_label"] not in ("unknown", "refused")]
    return {
        "n": len(rows),
        "isomer_accuracy": round(float(np.mean([r["isomer_ok"] for r in rows])), 3),
        "atoms_within_10pct": round(float(np.mean([r["atoms_within_10pct"] for r in rows])), 3),
        "orientation_error_median_deg": None if not err else round(float(np.median(err)), 2),
        "orientation_error_n": len(err),
        "orientation_within_3deg": None if not err else round(float(np.mean(np.array(err) <= 3.0)), 3),
        "ncc_clean_median": None if not nccs else round(float(np.median(nccs)), 4),
        "seconds_per_cluster_median": round(float(np.median([r["seconds"] for r in rows])), 2),
        "seconds_per_cluster_max": round(float(np.max([r["seconds"] for r in rows])), 2),
        "cpu_seconds_per_cluster_median": None if "cpu_seconds" not in rows[0] else round(float(np.median(
            [r["cpu_seconds"] for r in rows])), 2),
        "classify_labelled": len(labelled),
        "classify_agrees_with_fit": None if not labelled else round(float(np.mean(
            [r["classify_label"] == r["isomer"] for r in labelled])), 3),
        "classify_right": None if not labelled else round(float(np.mean(
            [r["classify_label"] == r["true_isomer"] for r in labelled])), 3),
    }


def _columns(xy: np.ndarray, radius_A: float = 0.6) -> np.ndarray:
    """Projected columns: atoms within ``radius_A`` [Å] of each other in x, y (single linkage), averaged."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    pairs = cKDTree(xy).query_pairs(radius_A, output_type="ndarray")
    g = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(xy), len(xy)))
    n, lab = connected_components(g, directed=False)
    return np.array([xy[lab == k].mean(axis=0) for k in range(n)])


def cli_fit(path: Path, element: str, energy_keV: float, semiangle_mrad: float) -> dict:
    """``clusterspy fit FILE`` as a user runs it (a new process, its start-up included): wall time [s],
    the process's peak resident memory [GB] (``os.wait4``'s ``ru_maxrss``) and its exit status."""
    import subprocess

    cmd = [sys.executable, "-m", "clusterspy", "fit", str(path), "--element", element, "--energy",
           str(energy_keV), "--semiangle", str(semiangle_mrad), "--format", "json"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"command": " ".join(["clusterspy", *cmd[3:]]), "wall_s": round(time.perf_counter() - t0, 1),
            "peak_rss_GB": round(usage.ru_maxrss / 2**20, 3), "exit": proc.returncode}


def run_real(out_figures: bool) -> list[dict]:
    from clusterspy import fit_structure  # classify's detection, as the CLI
    from clusterspy.image import Image
    from clusterspy.simulation import Microscope

    rows = []
    for name, element in (("PtIr", "Pt"), ("Pb", "Pb")):
        path = REAL / f"{name}_fcc_statstem.npz"
        if not path.exists():
            continue
        with np.load(path) as d:
            px = float(d["pixel_size_A"])
            img = Image(np.asarray(d["image"], dtype=np.float32), px)
            # StatSTEM (MATLAB) coordinates count pixels from 1: the image frame's x = col × px is 1 px less
            cols_ref = np.asarray(d["column_xy_A"]) - px
            n_ref = int(np.sum(d["atom_counts"]))
        t0 = time.perf_counter()
        known = Microscope(energy_keV=300.0, semiangle_mrad=21.0)  # not in the npz: a typical setting
        fits = fit_structure(img, element=element, microscope=known)
        fit = max(fits, key=lambda f: -1.0 if f.n_atoms is None else f.n_atoms)
        row = {"particle": name, "element": element, "statstem_atoms": n_ref, "isomer": fit.isomer,
               "form": fit.form, "n_atoms": fit.n_atoms, "zone_axis": fit.zone_axis, "ncc_data": fit.ncc,
               "reason": fit.reason, "seconds": round(time.perf_counter() - t0, 1),
               "clusters_found": len(fits), "cli": cli_fit(path, element, 300.0, 21.0)}
        if fit.atoms is not None:
            cols = _columns(fit.atoms.positions[:, :2])
            from scipy.spatial import cKDTree

            dist, _ = cKDTree(cols).query(cols_ref)
            row["atoms_vs_statstem"] = round(fit.n_atoms / n_ref, 3)
            row["column_distance_median_A"] = round(float(np.median(dist)), 3)
            row["fitted_columns"], row["statstem_columns"] = len(cols), len(cols_ref)
        row["classify_label"], row["classify_reason"] = _classify(img)
        rows.append(row)
        print(row, flush=True)
    emd = REAL / "Au_nanoparticle_temul.emd"
    if emd.exists():
        from clusterspy.io import as_image

        img = as_image(emd)
        t0 = time.perf_counter()
        fits = fit_structure(img, element="Au", microscope=Microscope(energy_keV=300.0))
        done = [f for f in fits if f.atoms is not None]
        for f in fits:
            rows.append({"particle": "Au_temul", "cluster": f.cluster, "isomer": f.isomer, "form": f.form,
                         "n_atoms": f.n_atoms, "zone_axis": f.zone_axis, "ncc_data": f.ncc,
                         "reason": f.reason, "alternatives": f.alternatives, "seconds": round(f.seconds, 1)})
        took = time.perf_counter() - t0
        print(f"TEMUL Au: {len(fits)} clusters, {len(done)} fitted, {took:.0f} s", flush=True)
        for r in rows[-len(fits):]:
            print(r, flush=True)
        if out_figures and done:
            from clusterspy.plots import plot_structure_fit, save_figure

            best = max(done, key=lambda f: f.ncc)
            save_figure(plot_structure_fit(img, best), HERE.parent / "docs" / "fit_au_temul.png")
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prism", type=int, default=None, help="at most this many PRISM images (default: all)")
    ap.add_argument("--cases", default=None, help="PRISM case indices only, e.g. 0-9,64-70 (default: all)")
    ap.add_argument("--out", default="structure_fit.json", help="results file name in benchmarks/results/")
    ap.add_argument("--fast", type=int, default=24, help="fast-simulated images")
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--parts", default="prism,fast,real",
                    help="parts to run; the others are kept from the existing results file")
    ap.add_argument("--figures", action="store_true", help="write docs/fit_au_temul.png")
    ap.add_argument("--pixel-size-error", type=float, default=0.0,
                    help="PRISM part: give the fit the pixel size × (1 + this), e.g. 0.15 or -0.15")
    a = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    parts = set(a.parts.split(","))
    old = RESULTS / a.out
    result: dict = json.loads(old.read_text()) if old.exists() and parts != {"prism", "fast", "real"} else {}
    load = {"load_average_at_start": os.getloadavg()[0]}
    if "prism" in parts:
        prism = run_prism(a.prism, a.cases, a.pixel_size_error)
        result["prism"] = {"summary": summarise(prism), "rows": prism, "skipped": skipped_cases(a.cases),
                           "pixel_size_error": a.pixel_size_error, **load}
    if "fast" in parts:
        fast = run_fast(a.fast)
        result["fast"] = {"summary": summarise(fast), "rows": fast, **load}
    if "real" in parts and not a.skip_real:
        result["real"] = run_real(a.figures)
    result["load_average_at_end"] = os.getloadavg()[0]
    for part in ("prism", "fast"):
        if part in result:
            print(part, json.dumps(result[part]["summary"]))
    if "prism" in parts:
        print("PRISM cases the generator skipped:", json.dumps(result["prism"]["skipped"]))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / a.out).write_text(json.dumps(result, indent=1, default=str))
    return result


if __name__ == "__main__":
    main()
