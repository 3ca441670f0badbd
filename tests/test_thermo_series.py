"""thermo_from_table on series output folders written by classify_series."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from clusterspy.thermo import format_thermo, thermo_from_table
from test_series import ModelDouble, make_frames, run


def test_thermo_reads_series_folders(tmp_path):
    dirs = []
    for n, (t, switches) in enumerate(((300.0, (10,)), (400.0, (25,)))):
        frames, _ = make_frames(40, switches=switches, lost=(), blurred=(), seed=n)
        d = tmp_path / f"T{t:g}"
        res, _ = run(frames, d, batch_size=16, temperature_K=t, report=False)
        assert res.summary["temperature_K"] == t
        assert "cluster 0" in res.describe()
        dirs.append(d)
    out = thermo_from_table(dirs, label_column="smoothed_label", reference="decahedral",
                            n_boot=200)
    assert out["temperatures_K"] == [300.0, 400.0]
    p = {x["temperature_K"]: x["proportions"] for x in out["proportions"]}
    # smoothed labels: ico for frames < switch, dec after
    assert p[300.0]["icosahedral"]["value"] == pytest.approx(10 / 40)
    assert p[400.0]["icosahedral"]["value"] == pytest.approx(25 / 40)
    assert out["van_t_hoff"][0]["isomer"] == "icosahedral"
    assert out["settings"]["kinetics"] is True  # frame times came from summary.json
    assert any("too few" in w or "transitions" in w for w in out["warnings"])
    text = format_thermo(out)
    assert "van 't Hoff icosahedral vs decahedral" in text
    json.dumps(out)
    # a folder without temperature needs one given
    (dirs[0] / "summary.json").write_text(json.dumps({"temperature_K": None}))
    with pytest.raises(Exception, match="temperature"):
        thermo_from_table([dirs[0]], n_boot=10)
    out2 = thermo_from_table([dirs[0], dirs[1]], temperatures_K=[310.0, 400.0], n_boot=50,
                             kinetics=False)
    assert out2["temperatures_K"] == [310.0, 400.0]
    assert np.isfinite(out2["van_t_hoff"][0]["delta_E_eV"])


def _folder(path, t, switch, seed):
    frames, _ = make_frames(30, switches=(switch,), lost=(), blurred=(), seed=seed)
    run(frames, path, batch_size=16, temperature_K=t, report=False)
    return path


def test_series_folders_of_the_same_name_stay_apart(tmp_path):
    a = _folder(tmp_path / "a" / "run", 300.0, 10, 0)
    b = _folder(tmp_path / "b" / "run", 300.0, 20, 1)
    c = _folder(tmp_path / "c" / "run", 400.0, 15, 2)
    out = thermo_from_table([a, b, c], label_column="smoothed_label", reference="decahedral",
                            n_boot=50, kinetics=False)
    p300 = next(p for p in out["proportions"] if p["temperature_K"] == 300.0)
    assert p300["n_series"] == 2 and p300["n_frames"] == 60
    assert p300["proportions"]["icosahedral"]["value"] == pytest.approx(30 / 60)


def test_series_folder_temperature_errors_name_the_series_option(tmp_path):
    from clusterspy.errors import ConfigError, InputFileError

    a = _folder(tmp_path / "a", 300.0, 10, 0)
    b = _folder(tmp_path / "b", 400.0, 20, 1)
    with pytest.raises(ConfigError, match="2 temperatures for 1 inputs"):
        thermo_from_table([a], temperatures_K=[300.0, 400.0], n_boot=10)
    with pytest.raises(ConfigError, match="temperature"):
        thermo_from_table([a, b], temperatures_K=[300.0, -1.0], n_boot=10)
    summ = json.loads((a / "summary.json").read_text())
    summ["temperature_K"] = None
    (a / "summary.json").write_text(json.dumps(summ))
    with pytest.raises(ConfigError, match="--temperature-K") as exc:
        thermo_from_table([a, b], n_boot=10)
    assert "--temperature " not in str(exc.value)
    summ["temperature_K"] = -20.0
    (a / "summary.json").write_text(json.dumps(summ))
    with pytest.raises(InputFileError, match=r"summary\.json"):
        thermo_from_table([a, b], n_boot=10)
    (a / "summary.json").write_text("{not json")
    with pytest.raises(InputFileError, match=r"summary\.json"):
        thermo_from_table([a, b], n_boot=10)


def test_the_advice_to_rerun_a_series_with_its_temperature_works_and_changes_no_row(tmp_path):
    """thermo's advice for a series folder without a temperature — rerun ``clusterspy series`` with
    --temperature-K and the same --out — is taken: the temperature decides no row of frames.csv,
    so the run is not refused as another run (a newcomer's was), and run.json and summary.json
    record it; a setting that does decide rows still refuses."""
    from clusterspy.errors import ConfigError

    frames, _ = make_frames(40, switches=(20,), lost=(), blurred=())
    out = tmp_path / "s"
    run(frames, out)
    rows = (out / "frames.csv").read_bytes()
    with pytest.raises(ConfigError, match="--temperature-K"):
        thermo_from_table([out], n_boot=10)
    res, _ = run(frames, out, temperature_K=573.0)
    assert (out / "frames.csv").read_bytes() == rows
    assert res.summary["temperature_K"] == 573.0
    assert json.loads((out / "summary.json").read_text())["temperature_K"] == 573.0
    assert json.loads((out / "run.json").read_text())["settings"]["temperature_K"] == 573.0
    with pytest.raises(ConfigError, match="holds results of another run"):
        run(frames, out, temperature_K=600.0, stay=0.9)


def test_thermo_says_why_there_is_no_fit_with_one_isomer_and_passes_on_a_series_proportion_warning(tmp_path):
    """Two temperatures at which only one isomer was labelled: thermo says there is no ratio to fit
    (its table said nothing); a series folder's warning that its proportions may be biased is passed
    on to thermo's warnings."""
    from clusterspy.thermo import format_thermo, thermo_from_table

    frames, _ = make_frames(30, switches=(), lost=(), blurred=())
    folders = []
    for t in (600.0, 673.0):
        out = tmp_path / f"t{t:g}"
        run(frames, out, temperature_K=t, model=ModelDouble(err=0.0))
        summ = json.loads((out / "summary.json").read_text())
        summ["warnings"].append("cluster 0: 9 of the 30 frames it was found in gave no evidence "
                                "(scale_mismatch 9)")
        (out / "summary.json").write_text(json.dumps(summ))
        folders.append(out)
    res = thermo_from_table(folders, n_boot=10)
    labelled = {c for p in res["proportions"] for c, n in p["counts"].items() if n > 0}
    assert len(labelled) == 1 and res["van_t_hoff"] == []
    why = res["not_fitted"]["van_t_hoff"]
    assert why.startswith(f"only the reference isomer {res['reference']} was labelled")
    assert f"not fitted ({why})" in format_thermo(res)
    assert sum("gave no evidence (scale_mismatch 9)" in w for w in res["warnings"]) == 2


def test_a_rerun_with_no_report_deletes_the_report_of_another_summary(tmp_path):
    """The rerun thermo advises (a temperature added), made with --no-report, used to leave the first
    run's report.html beside the new summary.json, still naming no temperature: the figures and
    report of a summary that changed are deleted, and said so; an unchanged rerun keeps them."""
    frames, _ = make_frames(40, switches=(20,), lost=(), blurred=())
    out = tmp_path / "s"
    run(frames, out, report=True, explain=False)
    drawn = sorted(p.name for p in out.iterdir() if p.suffix in (".html", ".png"))
    assert "report.html" in drawn and "strip.png" in drawn
    said: list[str] = []
    run(frames, out, report=False, announce=said.append)  # same summary: the report still holds
    assert sorted(p.name for p in out.iterdir() if p.suffix in (".html", ".png")) == drawn
    assert not any("deleted" in line for line in said)
    run(frames, out, report=False, temperature_K=573.0, announce=said.append)
    assert not [p for p in out.iterdir() if p.suffix in (".html", ".png")]
    assert any(line.startswith("deleted report.html, strip.png") and "--no-report" in line for line in said)
    assert json.loads((out / "summary.json").read_text())["temperature_K"] == 573.0
