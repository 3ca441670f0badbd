"""Thermodynamics and kinetics: recover a known landscape from synthetic labelled series."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from clusterspy.errors import ConfigError, InputFileError
from clusterspy.isomers import CLASSES
from clusterspy.thermo import (
    K_B_EV,
    Landscape,
    arrhenius_fit,
    correct_misclassification,
    fit_rates,
    frames_for_transitions,
    synthetic_labels,
    thermo_from_table,
    thermo_json,
    write_thermo_json,
)
from clusterspy.workflows import write_thermo_report

FOSTER_T = [293.15, 398.15, 523.15, 648.15, 773.15]  # 20–500 °C


def test_landscape_detailed_balance_and_proportions():
    land = Landscape({"decahedral": 0.04, "fcc": 0.0, "icosahedral": 0.1},
                     degeneracies={"decahedral": 2.0},
                     barriers_eV={("fcc", "decahedral"): 0.5, ("decahedral", "icosahedral"): 0.3},
                     prefactor_per_s=1e6)
    t = 500.0
    p = land.proportions(t)
    q = land.generator(t)
    np.testing.assert_allclose(p @ q, 0, atol=1e-12)  # p is stationary
    flux = p[:, None] * q
    np.testing.assert_allclose(flux, flux.T, atol=1e-12)  # detailed balance
    i, f = CLASSES.index("decahedral"), CLASSES.index("fcc")
    assert p[i] / p[f] == pytest.approx(2.0 * np.exp(-0.04 / (K_B_EV * t)))
    assert land.barrier("decahedral", "fcc")[0] == pytest.approx(0.46)


def test_misclassification_correction_inverts_confusion():
    true = np.array([10.0, 300.0, 690.0, 0.0])
    eps = 0.05
    c = np.full((4, 4), eps / 3)
    np.fill_diagonal(c, 1 - eps)
    np.testing.assert_allclose(correct_misclassification(c.T @ true, eps), true, atol=1e-9)


def test_van_t_hoff_recovers_energy_and_entropy_with_misclassification():
    land = Landscape({"decahedral": 0.04, "fcc": 0.0}, degeneracies={"decahedral": 3.0})
    tab = synthetic_labels(land, FOSTER_T, 3000, misclassification=0.05, unknown_fraction=0.05,
                           rng=1)
    res = thermo_from_table(tab, reference="fcc", isomers=["decahedral"], misclassification=0.05,
                            n_boot=500)
    v = res["van_t_hoff"][0]
    assert v["isomer"] == "decahedral" and v["reference"] == "fcc"
    assert v["delta_E_eV"] == pytest.approx(0.04, abs=0.006)
    assert v["ci95_eV"][0] < 0.04 < v["ci95_eV"][1]
    assert v["ci95_eV"][1] - v["ci95_eV"][0] < 0.03
    assert v["delta_S_kB"] == pytest.approx(np.log(3.0), abs=0.25)
    p0 = res["proportions"][0]
    assert p0["n_unknown"] > 100 and p0["n_excluded"] == p0["n_unknown"]
    assert p0["n_labelled"] == 3000 - p0["n_unknown"]
    dg = next(d for d in res["delta_G"] if d["temperature_K"] == FOSTER_T[0])
    expected = 0.04 - K_B_EV * FOSTER_T[0] * np.log(3.0)
    assert dg["delta_G_eV"] == pytest.approx(expected, abs=0.01)
    assert dg["ci95_eV"][0] < dg["delta_G_eV"] < dg["ci95_eV"][1]


def test_foster_ferrando_palmer_check():
    # proportions consistent with ΔE = 0.040 eV (Au561 decahedron above fcc), 20–500 °C,
    # a few hundred clusters per temperature as in Foster, Ferrando & Palmer (2018)
    land = Landscape({"decahedral": 0.040, "fcc": 0.0})
    rows = {"temperature_K": [], "label": []}
    for t in FOSTER_T:
        p = land.proportions(t)
        n_dec = round(300 * p[CLASSES.index("decahedral")])
        rows["temperature_K"] += [t] * 300
        rows["label"] += ["decahedral"] * n_dec + ["fcc"] * (300 - n_dec)
    res = thermo_from_table({k: np.array(v) for k, v in rows.items()}, n_boot=1000)
    v = res["van_t_hoff"][0]
    assert v["delta_E_eV"] == pytest.approx(0.040, abs=0.003)
    assert v["ci95_eV"][0] < 0.040 < v["ci95_eV"][1]
    assert res["arrhenius"] == [] and res["settings"]["kinetics"] is False


def test_ctmc_hmm_rates_ignore_misclassification_flicker():
    land = Landscape({"decahedral": 0.02, "fcc": 0.0},
                     barriers_eV={("fcc", "decahedral"): 0.5}, prefactor_per_s=2e5)
    t, dt = 500.0, 0.05
    n = frames_for_transitions(land, t, dt, 300)
    tab = synthetic_labels(land, [t], n, frame_time_s=dt, misclassification=0.05, rng=3)
    codes = np.array([CLASSES.index(x) for x in tab["label"]])
    q_true = land.generator(t)
    fit = fit_rates([codes], dt)
    naive = fit_rates([codes], dt, misclassification=0.0)
    i, f = CLASSES.index("decahedral"), CLASSES.index("fcc")
    assert fit["Q"][f, i] == pytest.approx(q_true[f, i], rel=0.2)
    assert fit["Q"][i, f] == pytest.approx(q_true[i, f], rel=0.2)
    realised = np.mean(tab["label"] != tab["true_label"])
    assert fit["misclassification"] == pytest.approx(realised, abs=0.01)
    assert fit["states"] == ["decahedral", "fcc"]
    # taking labels at face value counts every flicker as a transition
    assert naive["n_label_changes"] > 1.3 * (fit["expected_transitions"].sum())
    absent = [CLASSES.index("icosahedral"), CLASSES.index("amorphous")]
    assert naive["Q"][np.ix_([i, f], absent)].sum() > 0.5  # spurious visits to absent isomers
    assert fit["Q"][np.ix_([i, f], absent)].sum() == 0


def test_arrhenius_fit_exact_and_ci():
    t = np.array([400.0, 450.0, 500.0, 550.0])
    k = 1e7 * np.exp(-0.6 / (K_B_EV * t))
    r = arrhenius_fit(t, k, [100, 100, 100, 100], rng=0)
    assert r["barrier_eV"] == pytest.approx(0.6, rel=1e-9)
    assert r["prefactor_per_s"] == pytest.approx(1e7, rel=1e-6)
    assert r["ci95_eV"][0] < 0.6 < r["ci95_eV"][1]
    r2 = arrhenius_fit(t, k, [10000] * 4, rng=0)
    assert np.diff(r2["ci95_eV"])[0] < np.diff(r["ci95_eV"])[0] / 5


def test_kinetics_end_to_end_recovers_barrier_and_warns(tmp_path):
    land = Landscape({"decahedral": 0.03, "fcc": 0.0},
                     barriers_eV={("fcc", "decahedral"): 0.45}, prefactor_per_s=1e5)
    temps = [420.0, 470.0, 530.0]
    dt = 0.05
    nf = [frames_for_transitions(land, t, dt, 160) for t in temps]
    tab = synthetic_labels(land, temps, nf, frame_time_s=dt, misclassification=0.05, rng=5)
    path = tmp_path / "labels.csv"
    _write_labels(path, tab)
    res = thermo_from_table(path, isomers=["dec"], n_boot=300, min_transitions=100)
    a = {(x["from"], x["to"]): x for x in res["arrhenius"]}
    fd = a[("fcc", "decahedral")]
    assert fd["barrier_eV"] == pytest.approx(0.45, rel=0.15)
    assert fd["ci95_eV"][0] < fd["barrier_eV"] < fd["ci95_eV"][1]
    assert a[("decahedral", "fcc")]["barrier_eV"] == pytest.approx(0.42, rel=0.15)
    assert any("transitions" in w for w in res["warnings"])  # 80 per direction < 100
    json.dumps(res)  # JSON-ready
    html = write_thermo_report(res, tmp_path / "out")
    assert html.exists() and (tmp_path / "out" / "arrhenius.png").exists()
    assert "data:image/png;base64," in html.read_text()
    saved = json.loads((tmp_path / "out" / "thermo.json").read_text())
    assert saved["arrhenius"][0]["barrier_eV"] == res["arrhenius"][0]["barrier_eV"]


def test_errors_are_user_errors(tmp_path):
    with pytest.raises(ConfigError, match="temperature_K"):
        thermo_from_table({"label": np.array(["fcc", "decahedral"])})
    tab = {"temperature_K": np.array([300.0, 300.0]), "label": np.array(["fcc", "fcc"])}
    with pytest.raises(ConfigError, match="never occurs"):
        thermo_from_table(tab, reference="icosahedral")


@pytest.mark.parametrize("bad", ["abc", "nan", "NaN", "inf", "0", "-5", ""])
def test_bad_temperatures_in_a_csv_are_user_errors(tmp_path, bad):
    path = tmp_path / "t.csv"
    path.write_text(f"temperature_K,label\n300,fcc\n{bad},decahedral\n")
    with pytest.raises(InputFileError, match="row 2 of temperature_K"):
        thermo_from_table(path, n_boot=10)
    with pytest.raises(ConfigError, match="temperature"):
        thermo_from_table({"temperature_K": np.array([300.0, float("nan")]),
                           "label": np.array(["fcc", "fcc"])}, n_boot=10)


def test_bad_reference_and_bad_columns_are_user_errors(tmp_path):
    tab = {"temperature_K": np.array([300.0, 400.0]), "label": np.array(["fcc", "decahedral"])}
    with pytest.raises(ConfigError, match="'foo' is not an isomer"):
        thermo_from_table(tab, reference="foo", n_boot=10)
    with pytest.raises(ConfigError, match=r"never occurs.*decahedral, fcc"):
        thermo_from_table(tab, reference="ico", n_boot=10)
    with pytest.raises(ConfigError, match="'bar' is not an isomer"):
        thermo_from_table(tab, isomers=["bar"], n_boot=10)
    path = tmp_path / "t.csv"
    path.write_text("temperature_K,frame,label\n300,0,fcc\n300,x,fcc\n")
    with pytest.raises(InputFileError, match="frame 'x'"):
        thermo_from_table(path, n_boot=10)
    path.write_bytes(b"\xff\xfe\x00\x00garbage\x00\x81")
    with pytest.raises(InputFileError, match="not a readable CSV"):
        thermo_from_table(path, n_boot=10)
    path.write_text("temperature_K,label\n300,unknown\n400,lost\n")
    with pytest.raises(InputFileError, match="no frame carries an isomer label"):
        thermo_from_table(path, n_boot=10)


def test_thermo_json_writes_null_for_nan_and_infinity(tmp_path):
    tab = {"temperature_K": np.repeat([300.0, 400.0], 20),
           "label": np.array((["fcc"] * 12 + ["decahedral"] * 8) * 2)}
    res = thermo_from_table(tab, n_boot=50)
    res["van_t_hoff"][0]["delta_E_eV"] = float("nan")
    res["delta_G"][0]["ci95_eV"] = [float("-inf"), np.float64("inf")]
    res["extra"] = np.array([1.0, np.nan])

    def strict(text: str) -> dict:
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))

    out = strict(thermo_json(res))
    assert out["van_t_hoff"][0]["delta_E_eV"] is None
    assert out["delta_G"][0]["ci95_eV"] == [None, None]
    assert out["extra"] == [1.0, None]
    assert out["delta_G"][1]["delta_G_eV"] == res["delta_G"][1]["delta_G_eV"]
    html = write_thermo_report(res, tmp_path / "out")
    saved = strict((tmp_path / "out" / "thermo.json").read_text())
    assert saved["van_t_hoff"][0]["delta_E_eV"] is None
    assert "NaN" not in html.read_text() and "Infinity" not in html.read_text()
    # The core writes the JSON alone; figures and HTML are the face's (write_thermo_report).
    core = write_thermo_json(res, tmp_path / "core")
    assert sorted(x.name for x in (tmp_path / "core").iterdir()) == ["thermo.json"]
    assert strict(core.read_text()) == saved


def test_thermo_branching_ratios_match_the_landscape():
    """Where an isomer goes when it leaves: ico splits between dec and fcc as the barriers say."""
    land = Landscape({"icosahedral": 0.0, "decahedral": 0.0, "fcc": 0.0},
                     barriers_eV={("icosahedral", "decahedral"): 0.40,
                                  ("icosahedral", "fcc"): 0.44,
                                  ("decahedral", "fcc"): 0.42}, prefactor_per_s=1e5)
    t, dt = 450.0, 0.05
    n = frames_for_transitions(land, t, dt, 400)
    tab = synthetic_labels(land, [t], n, frame_time_s=dt, misclassification=0.03, rng=7)
    res = thermo_from_table(tab, n_boot=50)
    q = land.generator(t)
    br = {(b["from"], b["to"]): b for b in res["branching"]}
    assert {b["source"] for b in res["branching"]} == {"expected transitions (rate fit)"}
    inside = 0
    for (a, b), entry in br.items():
        i, j = CLASSES.index(a), CLASSES.index(b)
        off = [x for x in range(4) if x != i]
        truth = q[i, j] / q[i, off].sum()
        assert entry["ratio"] == pytest.approx(truth, abs=0.08), (a, b)
        assert entry["ci95"][0] <= entry["ratio"] <= entry["ci95"][1]
        inside += entry["ci95"][0] <= truth <= entry["ci95"][1]
    assert inside >= len(br) - 1
    assert ("icosahedral", "decahedral") in br and br[("icosahedral", "decahedral")]["ratio"] > 0.6
    # without a frame time the ratios come from the observed label changes
    plain = thermo_from_table({k: v for k, v in tab.items() if k != "time_s"}, n_boot=20,
                              kinetics=False)
    assert {b["source"] for b in plain["branching"]} == {"observed label changes"}


def test_thermo_proportions_of_few_frames_have_wide_intervals():
    """Two 5-frame series that never change label: the shares are not known to be 1 and 0."""
    tab = {"temperature_K": [300.0] * 5 + [400.0] * 5, "series": ["a"] * 5 + ["b"] * 5,
           "frame": list(range(5)) * 2, "label": ["fcc"] * 5 + ["decahedral"] * 5}
    res = thermo_from_table(tab, n_boot=50, kinetics=False)
    p300 = next(p for p in res["proportions"] if p["temperature_K"] == 300.0)
    assert p300["interval_method"] == "jeffreys_neff" and p300["n_eff"] < 2
    lo, hi = p300["proportions"]["fcc"]["ci95"]
    assert p300["proportions"]["fcc"]["value"] == 1.0 and hi == 1.0 and lo < 0.5
    assert p300["proportions"]["decahedral"]["ci95"][1] > 0.5
    # 400 frames drawn independently (no frame order): narrow
    rng = np.random.default_rng(0)
    iid = {"temperature_K": [300.0] * 400, "label": rng.choice(["fcc", "decahedral"], 400)}
    p = thermo_from_table(iid, n_boot=50, kinetics=False)["proportions"][0]
    assert p["n_eff"] == 400
    lo, hi = p["proportions"]["fcc"]["ci95"]
    assert hi - lo < 0.11 and lo <= p["proportions"]["fcc"]["value"] <= hi


def test_delta_g_interval_on_n_eff_contains_the_estimate_and_widens_with_autocorrelation():
    from clusterspy.thermo.equilibrium import delta_g

    rng = np.random.default_rng(2)
    widths = []
    for _ in range(300):
        c = rng.integers(0, 30, 4).astype(float)
        c[1] += 1
        n_eff = float(rng.uniform(0.5, c.sum()))
        g, (lo, hi) = delta_g(400.0, c, np.zeros((1, 4)), 0, 1, n_eff=n_eff)
        assert lo <= g <= hi
        if c[0] == 0:
            assert hi == np.inf  # never seen: no upper bound on how unfavourable it is
    c = np.array([80.0, 40.0, 0.0, 0.0])
    for n_eff in (120.0, 30.0, 3.0):
        _, (lo, hi) = delta_g(400.0, c, np.zeros((1, 4)), 0, 1, n_eff=n_eff)
        widths.append(hi - lo)
    assert widths[0] < widths[1] < widths[2]
    # i.i.d. frames: about the binomial standard error of ln(p_i/p_ref), ±1.96·√(1/80 + 1/40)·kT
    kt = K_B_EV * 400.0
    assert widths[0] == pytest.approx(2 * 1.96 * np.sqrt(1 / 80 + 1 / 40) * kt, rel=0.1)


def _write_labels(path, tab: dict, extra: list[list] = ()) -> None:
    """A label table CSV (temperature_K, series, frame, time_s, label) of ``tab``, then ``extra`` rows."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["temperature_K", "series", "frame", "time_s", "label"])
        w.writerows(zip(tab["temperature_K"], tab["series"], tab["frame"], tab["time_s"],
                        tab["label"], strict=True))
        w.writerows(extra)


def _labels_with_an_empty_temperature(temps: list[float], path) -> None:
    """A label table of ``temps`` (synthetic, time-ordered) plus 20 unknown frames at 300 K."""
    land = Landscape({"decahedral": 0.03, "fcc": 0.0},
                     barriers_eV={("fcc", "decahedral"): 0.45}, prefactor_per_s=1e5)
    dt = 0.05
    nf = [frames_for_transitions(land, t, dt, 40) for t in temps]
    tab = synthetic_labels(land, temps, nf, frame_time_s=dt, misclassification=0.02, rng=3)
    _write_labels(path, tab, extra=[[300.0, "cold", f, f * dt, "unknown"] for f in range(20)])


def test_a_temperature_without_labelled_frames_is_left_out_of_the_fits(tmp_path):
    """P4: 300 K with 0 labelled frames gives no branching, no Arrhenius point, one warning."""
    import warnings

    path = tmp_path / "labels.csv"
    _labels_with_an_empty_temperature([470.0, 530.0], path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = thermo_from_table(path, isomers=["dec"], n_boot=200)
    left_out = [w for w in res["warnings"] if "T = 300 K" in w]
    assert len(left_out) == 1 and "0 labelled" in left_out[0] and "left out" in left_out[0]
    assert res["proportions"][0]["temperature_K"] == 300.0  # still listed
    assert not [b for b in res["branching"] if b["temperature_K"] == 300.0]
    assert not [r for r in res["rates"] if r["temperature_K"] == 300.0]
    assert not [d for d in res["delta_G"] if d["temperature_K"] == 300.0]
    assert res["arrhenius"] and all(a["temperatures_K"] == [470.0, 530.0] for a in res["arrhenius"])
    assert res["van_t_hoff"] and res["not_fitted"] == {}


def test_fits_on_fewer_than_two_usable_temperatures_are_null_with_the_reason(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "labels.csv"
    _labels_with_an_empty_temperature([500.0], path)
    res = thermo_from_table(path, n_boot=100)
    assert res["van_t_hoff"] is None and res["arrhenius"] is None
    assert "fewer than 2 temperatures" in res["not_fitted"]["arrhenius"]
    assert json.loads(thermo_json(res))["arrhenius"] is None
    html = write_thermo_report(res, tmp_path / "out")
    assert html.exists() and not (tmp_path / "out" / "arrhenius.png").exists()
    proc = subprocess.run([sys.executable, "-m", "clusterspy", "thermo", str(path)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no numpy warning, and each warning printed once (on stdout)
    assert proc.stdout.count("T = 300 K: 0 labelled frame(s)") == 1
    assert "Arrhenius: not fitted (fewer than 2 temperatures" in proc.stdout
    assert "E_a =" not in proc.stdout and "of 0.0 departures" not in proc.stdout


def test_a_temperature_where_no_transition_was_seen_is_no_arrhenius_point(tmp_path):
    """A newcomer's (stop 38) 'E_a = 2.02 eV' came from a 573 K rate resting on 1.3e-5 expected
    transitions (none seen) and one transition at 773 K: a barrier from nothing."""
    path = tmp_path / "labels.csv"
    rows = []
    for f in range(40):  # 573 K: 20 icosahedral then 20 decahedral frames — one transition, ico → dec
        rows.append([573.0, "a", f, 0.5 * f, "icosahedral" if f < 20 else "decahedral"])
    for f in range(40):  # 773 K: two clusters, neither ever changes
        rows.append([773.0, "b", f, 0.5 * f, "icosahedral"])
        rows.append([773.0, "c", f, 0.5 * f, "decahedral"])
    _write_labels(path, {"temperature_K": [], "series": [], "frame": [], "time_s": [], "label": []},
                  extra=rows)
    res = thermo_from_table(path, n_boot=100)
    fitted = [a for a in (res["arrhenius"] or []) if a["barrier_eV"] is not None]
    assert fitted == []
    assert any("T = 773 K: icosahedral → decahedral rests on less than 1" in w and "left out" in w
               for w in res["warnings"])


def test_branching_with_no_departures_is_null():
    from clusterspy.thermo.kinetics import branching_by_temperature

    k = len(CLASSES)
    counts = np.zeros((1, k, k))
    counts[0, 0, 1] = 0.01  # a fraction of a transition: the ratios would be the prior's 1/(K-1)
    counts[0, 1, 0] = 8.0
    out = branching_by_temperature([300.0], counts, ["expected transitions (rate fit)"])
    from_0 = [b for b in out if b["from"] == CLASSES[0]]
    assert from_0 and all(b["ratio"] is None and b["ci95"] == [None, None] for b in from_0)
    from_1 = {b["to"]: b["ratio"] for b in out if b["from"] == CLASSES[1]}
    assert from_1[CLASSES[0]] > 0.8
