"""Verification of the network's labels by the structure fit (``classify --verify``): the decision
rule, the fit fields of the results, the CLI's outputs, and the series report's fitted sample."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

pytest.importorskip("ase")

from clusterspy.domain import REASONS, judge_fit
from clusterspy.predict import ClusterResult, classify
from clusterspy.simulation import Acquisition, Microscope, simulate
from clusterspy.structures import cluster, random_rotation
from clusterspy.workflows import fit_verdict, format_results, verify_clusters
from helpers import blob

FEW_FORMS = ("mackay_icosahedron", "ino_decahedron", "cuboctahedron", "glassy")


def _image(motif: str, seed: int):
    """One Au₁₄₇ cluster in a random orientation, 128×128 px at 0.35 Å/px, 3·10⁴ e⁻/Å² (fast simulator)."""
    rng = np.random.default_rng(seed)
    atoms = cluster(motif, 147, "Au", rng, orientation=random_rotation(rng))
    return simulate(atoms, Microscope(defocus_A=4.0, source_size_A=0.5), pixel_size=0.35, extent=44.8,
                    rng=rng, acquisition=Acquisition(dose_e_per_A2=3e4))


@pytest.fixture(scope="module")
def decahedron():
    return _image("decahedral", 3)


@pytest.mark.parametrize(("network", "fit", "expected"), [
    (("decahedral", None), ("decahedral", None), ("decahedral", None)),  # agrees
    (("decahedral", None), ("icosahedral", None), ("unknown", "fit_disagrees")),  # conclusive, other
    (("decahedral", None), ("unknown", "ambiguous_fit"), ("decahedral", None)),  # inconclusive
    (("decahedral", None), ("unknown", "poor_fit"), ("decahedral", None)),
    (("decahedral", None), ("unknown", "too_small"), ("decahedral", None)),
    (("unknown", "low_confidence"), ("icosahedral", None), ("unknown", "low_confidence")),  # not asked
    (("decahedral", None), (None, None), ("decahedral", None)),  # no fit
])
def test_the_fit_overrules_a_label_only_when_conclusive_and_different(network, fit, expected) -> None:
    assert judge_fit(*network, *fit) == expected


def test_a_fit_whose_lattice_lines_up_only_at_a_scale_bound_disagrees_with_any_label() -> None:
    """A crystalline fit at the end of its ±15 % scale range (or the largest blur) says the image is
    not at the pixel size the network was given: the label does not stand, even when the fit's
    isomer is the label's (a wide-field JPEG told 0.4 Å/px: texture labelled fcc 0.96, fitted fcc at
    scale 1.150)."""
    from clusterspy.fit import StructureFit
    from clusterspy.fit.api import lattice_at_bound

    def fit(form, scale, blur=0.5):
        return StructureFit(cluster=0, x_px=0.0, y_px=0.0, isomer="fcc", form=form, scale=scale, blur_A=blur)

    scales = (0.85, 0.855, 0.9, 1.0, 1.13, 1.15)
    assert [lattice_at_bound(fit("truncated_octahedron", s)) for s in scales] == [
        True, True, False, False, False, True]
    assert lattice_at_bound(fit("mackay_icosahedron", 1.0, blur=3.0))  # the largest blur
    assert not lattice_at_bound(fit("glassy", 1.15)) and not lattice_at_bound(fit(None, None))
    assert judge_fit("fcc", None, "fcc", None, True) == ("unknown", "fit_disagrees")
    assert judge_fit("fcc", None, "unknown", "ambiguous_fit", True) == ("unknown", "fit_disagrees")
    assert judge_fit("unknown", "low_confidence", "fcc", None, True) == ("unknown", "low_confidence")
    r = ClusterResult(file="f", frame=0, cluster=0, x_px=10.0, y_px=10.0, label="unknown", confidence=0.96,
                      probabilities={"icosahedral": 0.01, "decahedral": 0.01, "fcc": 0.96, "amorphous": 0.02},
                      diameter_nm=2.0, reason="fit_disagrees",
                      fit={"isomer": "fcc", "form": "twinned_fcc", "ncc": 0.79, "zone_axis": None,
                           "reason": None, "note": "scale 1.150 at the upper bound"})
    assert fit_verdict(r).startswith("fit disagrees: its fcc lattice lines up only at the end of the ±15 %")


def test_fit_disagrees_is_a_reason_of_the_vocabulary() -> None:
    assert "fit_disagrees" in REASONS
    assert REASONS[-1] == "fit_disagrees"  # tested last: after every reason of the network


def test_a_fit_that_agrees_leaves_the_label_and_records_the_fit(decahedron) -> None:
    res = classify(decahedron)
    assert [(r.label, r.reason) for r in res] == [("decahedral", None)]
    fits = verify_clusters(decahedron, res, forms=FEW_FORMS)
    (r,) = res
    assert (r.label, r.reason) == ("decahedral", None)
    assert r.fit["isomer"] == "decahedral" and r.fit["reason"] is None
    assert r.fit["form"] == "ino_decahedron" and r.fit["ncc"] > 0.9
    assert set(fits) == {0} and fits[0].atoms is not None
    d = r.to_dict()
    assert {k: d[k] for k in ("fit_isomer", "fit_form", "fit_reason")} == {
        "fit_isomer": "decahedral", "fit_form": "ino_decahedron", "fit_reason": None}
    assert "fit_zone_axis" in d and d["fit_ncc"] == r.fit["ncc"]
    assert ClusterResult.from_dict(d).to_dict() == d  # the batch's parts round-trip the fit fields
    assert fit_verdict(r) == f"fit agrees: decahedral, NCC {r.fit['ncc']:.2f}"
    rows = list(csv.DictReader(format_results(res, "csv").splitlines()))
    assert rows[0]["fit_isomer"] == "decahedral" and rows[0]["label"] == "decahedral"
    table = format_results(res, "table")
    assert "fit_reason" in table.splitlines()[0] and "decahedral" in table.splitlines()[2]


def test_a_conclusive_fit_of_another_isomer_makes_the_label_unknown() -> None:
    img = _image("icosahedral", 11)
    res = classify(img)
    assert [(r.label, r.reason) for r in res] == [("icosahedral", None)]
    probs = dict(res[0].probabilities)
    verify_clusters(img, res, forms=("ino_decahedron",))  # only a decahedron to fit: it must win
    (r,) = res
    assert (r.label, r.reason) == ("unknown", "fit_disagrees")
    assert r.fit["isomer"] == "decahedral" and r.fit["reason"] is None
    assert r.probabilities == probs  # the network's view is kept
    assert fit_verdict(r).startswith("fit disagrees: decahedral") and fit_verdict(r).endswith("→ unknown")


def test_clusters_with_a_reason_are_not_fitted_and_unverified_results_are_unchanged() -> None:
    r = ClusterResult(file="f", frame=0, cluster=0, x_px=10.0, y_px=10.0, label="unknown", confidence=None,
                      probabilities=None, diameter_nm=0.5, reason="too_small")
    plain = ClusterResult(**{**r.__dict__})
    assert verify_clusters(blob(64), [r], pixel_size_A=0.3) == {}
    assert r.fit == dict.fromkeys(("isomer", "form", "ncc", "zone_axis", "reason", "note"))
    assert (r.label, r.reason, fit_verdict(r)) == ("unknown", "too_small", "")
    assert not any(k.startswith("fit_") for k in plain.to_dict())
    assert "fit_" not in format_results([plain], "csv") + format_results([plain], "table")


def test_cli_verify_writes_the_fit_fields_the_figure_and_the_setting(decahedron, tmp_path, capsys) -> None:
    from clusterspy.cli import main

    path = tmp_path / "deca.npz"
    np.savez(path, image=decahedron.data, pixel_size_A=decahedron.pixel_size_A)
    out = tmp_path / "out"
    assert main(["classify", str(path), "--verify", "--out", str(out), "--format", "json"]) == 0
    (d,) = json.loads(capsys.readouterr().out)
    assert (d["label"], d["reason"]) == ("decahedral", None)
    assert (d["fit_isomer"], d["fit_reason"]) == ("decahedral", None)
    assert d["fit_form"] in ("ino_decahedron", "marks_decahedron") and d["fit_ncc"] > 0.9
    assert (out / "deca_c0_fit.png").stat().st_size > 10_000
    assert (out / "deca_overlay.png").is_file()
    settings = json.loads((out / "settings.json").read_text())
    assert (settings["verify"], settings["element"]) == (True, "Au")
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert header[-6:] == ["fit_isomer", "fit_form", "fit_ncc", "fit_zone_axis", "fit_reason", "fit_note"]
    assert json.loads((out / "results.json").read_text())[0]["fit_isomer"] == "decahedral"
    # the folder's results were verified: a rerun without --verify is refused, in one line
    assert main(["classify", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--verify True → default" in err and len(err.strip().splitlines()) == 1


def test_cli_element_without_verify_is_refused(tmp_path, capsys) -> None:
    from clusterspy.cli import main

    assert main(["classify", str(tmp_path / "x.npz"), "--element", "Pt"]) == 2
    assert "--verify or --calibrate: add one of them" in capsys.readouterr().err


def test_cli_energy_and_semiangle_without_a_fit_are_refused(tmp_path, capsys) -> None:
    from clusterspy.cli import main

    assert main(["classify", str(tmp_path / "x.npz"), "--energy", "300"]) == 2
    assert "--energy is for the microscope of the structure fit of --verify or --calibrate: add --verify " \
           "or --calibrate" in \
        capsys.readouterr().err
    assert main(["series", str(tmp_path / "x.npy"), "--semiangle", "30", "--out", str(tmp_path / "o")]) == 2
    assert "add --verify-sample K" in capsys.readouterr().err


def test_cli_verify_fits_with_the_microscope_given_and_records_it(tmp_path, capsys, monkeypatch) -> None:
    """``classify --verify`` fitted at 200 keV and 25 mrad whatever the data; --energy and --semiangle
    now reach the fit's Microscope, settings.json records them, and a rerun with others is refused
    (a folder verified before they were recorded counts as verified with the defaults)."""
    import clusterspy.workflows as wf
    from clusterspy.cli import main

    seen = []

    def verify(image, results, pixel_size_A=None, *, element="Au", microscope=None, forms=None):
        seen.append(microscope)
        return {}

    monkeypatch.setattr(wf, "verify_clusters", verify)
    with np.load(wf.EXAMPLE_SERIES) as ex:
        np.savez(tmp_path / "frame.npz", image=ex["frames"][0], pixel_size_A=ex["pixel_size_A"])
    out = tmp_path / "out"
    args = ["classify", str(tmp_path / "frame.npz"), "--verify", "--out", str(out)]
    assert main([*args, "--energy", "300", "--semiangle", "30"]) == 0
    assert [(m.energy_keV, m.semiangle_mrad) for m in seen] == [(300.0, 30.0)]
    settings = json.loads((out / "settings.json").read_text())
    assert (settings["energy_keV"], settings["semiangle_mrad"]) == (300.0, 30.0)
    capsys.readouterr()
    assert main(args) == 2  # the folder's labels were checked at 300 keV, 30 mrad
    err = capsys.readouterr().err
    assert "--energy 300.0 → 200.0" in err and "--semiangle 30.0 → 25.0" in err
    for key in ("energy_keV", "semiangle_mrad"):  # as written before the microscope was recorded
        del settings[key], settings["fingerprint"][key]
    (out / "settings.json").write_text(json.dumps(settings))
    assert main(args) == 0


def test_series_report_shows_fits_of_sampled_frames_and_leaves_frames_csv_alone(tmp_path) -> None:
    from clusterspy.workflows import (
        EXAMPLE_SERIES,
        _run_starts,
        classify_series,
        series_fit_sample,
        write_series_report,
    )

    out = tmp_path / "series"
    result = classify_series(EXAMPLE_SERIES, out=out, report=False)
    frames_csv = (out / "frames.csv").read_bytes()
    runs = _run_starts(result, 10)  # the example: icosahedral → decahedral → fcc → icosahedral
    assert [r["label"] for r in runs] == ["icosahedral", "decahedral", "fcc", "icosahedral"]
    assert runs[0]["frame"] == 0 and runs[1]["frame"] in range(10, 15)
    assert [r["frame"] for r in _run_starts(result, 2)] == [runs[0]["frame"], runs[3]["frame"]]
    sample = series_fit_sample(result, EXAMPLE_SERIES, k=1, forms=FEW_FORMS)
    assert [(s["frame"], s["label"], s["fit"].isomer) for s in sample] == [(0, "icosahedral", "icosahedral")]
    html = write_series_report(result, None, fit_sample=sample).read_text()
    assert "Structure fit of sampled frames" in html and "fit agrees" in html
    assert (out / "frames.csv").read_bytes() == frames_csv  # a report feature only


def test_cli_verify_sample_refuses_a_negative_count(tmp_path, capsys) -> None:
    from clusterspy.cli import main

    assert main(["series", str(tmp_path / "x.npy"), "--verify-sample", "-1", "--out", str(tmp_path)]) == 2
    assert "--verify-sample -1" in capsys.readouterr().err


def test_classify_verify_says_when_no_cluster_was_fitted() -> None:
    """A newcomer's finding: ``classify --verify`` on a file whose only cluster has no label that
    stands (e.g. ``too_large``) fitted nothing and said nothing; now one note says so."""
    from clusterspy.cli import _fit_notes

    r = ClusterResult(file="f", frame=0, cluster=0, x_px=10.0, y_px=10.0, label="unknown", confidence=None,
                      probabilities=None, diameter_nm=9.0, reason="too_large",
                      fit=dict.fromkeys(("isomer", "form", "ncc", "zone_axis", "reason", "note")))
    (note,) = _fit_notes([r])
    assert note.startswith("--verify fitted no cluster")
    fitted = ClusterResult(**{**r.__dict__, "label": "fcc", "reason": None,
                              "fit": {"isomer": "fcc", "form": "cuboctahedron", "ncc": 0.9, "zone_axis": None,
                                      "reason": None, "note": "scale 1.100"}})
    assert _fit_notes([fitted]) == ["f cluster 0: fit: scale 1.100"]
