"""The isomer HMM against brute-force enumeration on tiny cases, and on simulated series."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from clusterspy.series.hmm import (
    baum_welch,
    emission_log_likelihoods,
    forward_backward,
    smooth,
    sticky_transition_matrix,
    viterbi,
)


def _brute(le: np.ndarray, a: np.ndarray, pi: np.ndarray):
    t_len, k = le.shape
    paths = list(itertools.product(range(k), repeat=t_len))
    logp = []
    for s in paths:
        lp = np.log(pi[s[0]]) + le[0, s[0]]
        for t in range(1, t_len):
            lp += np.log(a[s[t - 1], s[t]]) + le[t, s[t]]
        logp.append(lp)
    logp = np.array(logp)
    loglik = np.log(np.sum(np.exp(logp)))
    w = np.exp(logp - loglik)
    post = np.zeros((t_len, k))
    xi = np.zeros((k, k))
    for s, wi in zip(paths, w, strict=True):
        for t in range(t_len):
            post[t, s[t]] += wi
        for t in range(t_len - 1):
            xi[s[t], s[t + 1]] += wi
    return post, loglik, xi, np.array(paths[int(np.argmax(logp))])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forward_backward_and_viterbi_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    k, t_len = 3, 6
    a = rng.dirichlet(np.ones(k), size=k)
    pi = rng.dirichlet(np.ones(k))
    probs = rng.dirichlet(np.ones(k) * 0.7, size=t_len)
    probs[2] = np.nan  # a lost frame
    le = emission_log_likelihoods(probs, floor=0.01)
    post, loglik, xi = forward_backward(le, a, pi)
    bpost, bll, bxi, bpath = _brute(le, a, pi)
    np.testing.assert_allclose(post, bpost, atol=1e-10)
    np.testing.assert_allclose(loglik, bll, rtol=1e-10)
    np.testing.assert_allclose(xi, bxi, atol=1e-10)
    np.testing.assert_array_equal(viterbi(le, a, pi), bpath)


def test_missing_frames_are_uninformative():
    probs = np.full((5, 4), np.nan)
    le = emission_log_likelihoods(probs)
    assert np.all(le == 0)
    post, loglik, _ = forward_backward(le, sticky_transition_matrix(4, 0.9))
    np.testing.assert_allclose(post, 0.25)
    assert loglik == pytest.approx(0.0, abs=1e-12)


def test_long_series_does_not_underflow():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(4) * 0.3, size=20000)
    res = smooth(probs)
    assert np.all(np.isfinite(res.posterior))
    assert np.isfinite(res.log_likelihood)
    np.testing.assert_allclose(res.posterior.sum(axis=1), 1.0)


def _simulate(rng, a, t_len, acc):
    k = a.shape[0]
    s = np.empty(t_len, int)
    s[0] = rng.integers(k)
    for t in range(1, t_len):
        s[t] = rng.choice(k, p=a[s[t - 1]])
    # a noisy classifier: right with probability acc, confident but sometimes wrong
    lab = np.where(rng.random(t_len) < acc, s, rng.integers(0, k, t_len))
    probs = np.full((t_len, k), 0.1 / (k - 1))
    probs[np.arange(t_len), lab] = 0.9
    return s, lab, probs


def test_smoothing_beats_raw_labels_and_em_learns_transitions():
    rng = np.random.default_rng(7)
    true_a = sticky_transition_matrix(4, 0.97)
    s, raw, probs = _simulate(rng, true_a, 4000, acc=0.75)
    res = smooth(probs, stay=0.9, learn=True)
    raw_acc = np.mean(raw == s)
    smooth_acc = np.mean(res.path == s)
    assert smooth_acc > raw_acc + 0.15
    assert smooth_acc > 0.95
    # EM recovers the stay probability (truth 0.97) from the noisy series
    assert np.mean(np.diag(res.transition)) == pytest.approx(0.97, abs=0.01)
    assert res.n_iter > 1


def test_baum_welch_increases_likelihood():
    rng = np.random.default_rng(11)
    _, _, probs = _simulate(rng, sticky_transition_matrix(3, 0.9), 500, acc=0.8)
    le = emission_log_likelihoods(probs)
    a0 = sticky_transition_matrix(3, 0.5)
    _, ll0, _ = forward_backward(le, a0)
    a1, _, ll1, _ = baum_welch(le, a0, pseudo_count=0.0, max_iter=50)
    assert ll1 > ll0
    np.testing.assert_allclose(a1.sum(axis=1), 1.0)


def test_inferred_mask_marks_what_the_network_did_not_say():
    from clusterspy.isomers import CLASSES
    from clusterspy.series.hmm import inferred_mask

    raw = np.array(["fcc", "unknown", "decahedral", "lost", "unknown", "fcc"], object)
    sm = np.array(["fcc", "fcc", "fcc", "lost", "unknown", "fcc"], object)
    np.testing.assert_array_equal(inferred_mask(raw, sm, CLASSES),
                                  [False, True, True, False, False, False])


def test_series_marks_inferred_labels_and_states_its_intervals(tmp_path):
    """End to end (test doubles of detection and network): every smoothed label the network did
    not give is flagged in frames.csv, counted in summary.json and the report, and the proportions'
    intervals name their method."""
    import csv
    import json
    import sys
    from pathlib import Path

    from clusterspy.isomers import CLASSES

    sys.path.insert(0, str(Path(__file__).parent))
    from test_series import ModelDouble, make_frames, run

    class Unsure(ModelDouble):
        """Like the double, but every 9th crop is a near tie: "unknown" (low confidence)."""

        def predict_crops(self, crops):
            p = super().predict_crops(crops)
            p[::9] = 0.25
            return p

    frames, _ = make_frames(90, switches=(45,), lost=(20,), blurred=())
    res, _ = run(frames, tmp_path, model=Unsure(), batch_size=16, report=True)
    with open(tmp_path / "frames.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[-3:] == ["inferred", "model", "pixel_size_factor"]
    raw = np.array([r["label"] for r in rows], object)
    sm = np.array([r["smoothed_label"] for r in rows], object)
    inf = np.array([r["inferred"] == "1" for r in rows])
    assert {r["inferred"] for r in rows} <= {"0", "1"}
    expected = np.isin(sm, CLASSES) & (sm != raw)
    np.testing.assert_array_equal(inf, expected)
    from_unknown = int(np.sum(inf & (raw == "unknown")))
    from_other = int(np.sum(inf & np.isin(raw, CLASSES)))
    assert from_unknown >= 5 and from_other >= 5  # both kinds happen here
    assert not inf[raw == "lost"].any()
    summary = json.loads((tmp_path / "summary.json").read_text())
    cl = summary["clusters"][0]
    assert cl["n_inferred"] == summary["n_inferred"] == int(inf.sum())
    assert cl["n_inferred_from_unknown"] == from_unknown
    assert cl["n_inferred_from_other_label"] == from_other
    assert cl["n_smoothed_labels"] == summary["n_smoothed_labels"] == int(np.isin(sm, CLASSES).sum())
    assert summary["interval_method"] == "jeffreys_neff"
    assert "Jeffreys" in summary["interval_method_description"]
    for kind in ("raw", "smoothed"):
        st = cl[kind]
        assert st["interval_method"] == "jeffreys_neff" and 0 < st["n_eff"] <= st["n_labelled"]
        for c in CLASSES:
            lo, hi = st["proportions"][c]["ci95"]
            assert lo <= st["proportions"][c]["value"] <= hi and hi > lo
    # one switch ico → dec in the smoothed labels: its branching ratio, with an interval
    br = cl["smoothed"]["branching"]
    assert br["icosahedral"]["n_departures"] == 1
    assert br["icosahedral"]["to"]["decahedral"]["ratio"] == 1.0
    assert br["icosahedral"]["to"]["decahedral"]["ci95"][0] < 0.6
    html = (tmp_path / "report.html").read_text()
    assert (f"{summary['n_inferred']} of {summary['n_smoothed_labels']} smoothed labels were "
            "inferred by the HMM") in html
    assert "Jeffreys intervals on n_eff" in html
    assert "branching ratio" in html
    # thumbnails carry the frame and cluster they were cut from
    for c, where in res.thumbnail_frames.items():
        assert len(where) == len(res.thumbnails[c])
        for f, k in where:
            row = next(r for r in rows if int(r["frame"]) == f and int(r["cluster"]) == k)
            assert row["label"] == c
            assert f"frame {f} · cluster {k}</span>" in html
    assert "inferred" in res.describe()


def test_frames_csv_of_an_older_version_is_read_with_rows_appended_after_an_upgrade(tmp_path):
    from clusterspy.series.frames import FRAME_COLUMNS, read_frames_csv

    old = [c for c in FRAME_COLUMNS if c not in ("inferred", "model", "pixel_size_factor")]
    row = ["3", "0.3", "0", "10", "11", "fcc", "", "0.9", "0.03", "0.03", "0.9", "0.04", "2.1",
           "", "ok", ""]
    path = tmp_path / "frames.csv"
    lines = [",".join(old), ",".join(row), ",".join(["4", *row[1:], ""]), "5,0.5,0,1"]
    path.write_text("\n".join(lines) + "\n")
    t = read_frames_csv(path)
    assert t["frame"].tolist() == [3, 4]  # the cut line (an interrupted write) is left out
    assert np.all(np.isnan(t["inferred"])) and t["status"].tolist() == ["ok", "ok"]
    assert t["model"].tolist() == ["", ""] and np.all(np.isnan(t["pixel_size_factor"]))


def test_the_hmm_never_labels_a_track_with_an_isomer_the_network_never_gave():
    """Every frame leans fcc below the confidence threshold ("unknown"): the HMM would call the whole
    track fcc; it stays unknown. Frames of a track the network labelled fcc elsewhere may be bridged."""
    from clusterspy.isomers import CLASSES, UNKNOWN
    from clusterspy.series.frames import COLUMN, new_row, rows_to_table
    from clusterspy.series.summary import smooth_and_summarise

    def table(raw: list[str]) -> dict:
        rows = []
        for f, lab in enumerate(raw):
            row = new_row(f, None, 0, lab)
            p = [0.1, 0.1, 0.7, 0.1]  # leans fcc
            for c, v in zip(CLASSES, p, strict=True):
                row[COLUMN[f"p_{c}"]] = v
            row[COLUMN["reason"]] = "low_confidence" if lab == UNKNOWN else ""
            rows.append(row)
        return rows_to_table(rows)

    t = table([UNKNOWN] * 20)
    out = smooth_and_summarise(t, None, n_boot=10, seed=0, stay=0.95, transition=None, learn=False)
    assert list(t["smoothed_label"]) == [UNKNOWN] * 20
    assert out["n_smoothed_labels"] == 0 and out["n_inferred"] == 0
    t = table(["fcc"] * 5 + [UNKNOWN] * 3 + ["fcc"] * 5)
    smooth_and_summarise(t, None, n_boot=10, seed=0, stay=0.95, transition=None, learn=False)
    assert list(t["smoothed_label"]) == ["fcc"] * 13
    assert int(np.sum(t["inferred"])) == 3


def test_a_cluster_labelled_on_few_of_its_judged_frames_gets_a_warning_when_the_hmm_fills_them():
    from clusterspy.series.summary import _few_labels_warning

    lab = np.array(["fcc"] * 3 + ["unknown"] * 7, dtype=object)
    reason = np.array([None] * 3 + ["low_confidence"] * 7, dtype=object)
    filled = np.array([0] * 3 + [1] * 7)
    msg = _few_labels_warning(4, lab, reason, filled)
    assert msg is not None and "cluster 4" in msg and "3 of the 10 frames" in msg and "filled 7" in msg
    assert _few_labels_warning(4, lab, reason, np.zeros(10)) is None  # nothing filled: nothing claimed
    not_judged = np.array([None] * 3 + ["not_resolved"] * 7, dtype=object)  # the network never ran there
    assert _few_labels_warning(4, lab, not_judged, filled) is None
    mostly = np.array(["fcc"] * 6 + ["unknown"] * 4, dtype=object)
    assert _few_labels_warning(4, mostly, np.array([None] * 6 + ["low_confidence"] * 4, dtype=object),
                               np.array([0] * 6 + [1] * 4)) is None


def test_frames_the_second_opinion_disputed_are_no_evidence_for_the_hmm():
    """A newcomer's example series told a pixel size 20 % too large: v2's fcc, withdrawn as
    ``models_disagree`` on 21 of 40 frames, came back as their smoothed label. The disputed frames stay
    unknown, and their (v2's) probabilities pull no neighbour: a low-confidence frame among them that
    leans icosahedral is bridged from the icosahedral frames around, not turned fcc."""
    from clusterspy.isomers import CLASSES, UNKNOWN
    from clusterspy.series.frames import COLUMN, new_row, rows_to_table
    from clusterspy.series.summary import smooth_and_summarise

    rows = []
    plan = (["icosahedral"] * 4 + [("models_disagree", "fcc")] * 3 + [("low_confidence", "icosahedral")]
            + [("models_disagree", "fcc")] * 3 + ["icosahedral"] * 4)
    for f, what in enumerate(plan):
        lab, (reason, lean) = (what, ("", what)) if isinstance(what, str) else (UNKNOWN, what)
        row = new_row(f, None, 0, lab)
        for c in CLASSES:
            row[COLUMN[f"p_{c}"]] = 0.97 if c == lean else 0.01
        if reason == "low_confidence":
            row[COLUMN[f"p_{lean}"]], row[COLUMN["p_fcc"]] = 0.55, 0.43
        row[COLUMN["reason"]] = reason
        rows.append(row)
    t = rows_to_table(rows)
    smooth_and_summarise(t, None, n_boot=10, seed=0, stay=0.95, transition=None, learn=False)
    sm = list(t["smoothed_label"])
    disputed = [i for i, w in enumerate(plan) if isinstance(w, tuple) and w[0] == "models_disagree"]
    assert [sm[i] for i in disputed] == [UNKNOWN] * 6
    assert sm[7] == "icosahedral" and "fcc" not in sm
