"""Labels of a series summarised: HMM smoothing per cluster, proportions, transitions, dwell times.

:func:`smooth_and_summarise` smooths each cluster's labels with the isomer HMM
(:mod:`clusterspy.series.hmm`) and summarises raw and smoothed labels with
:func:`summarize_labels` (statistics of :mod:`clusterspy.series.stats`).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from clusterspy.isomers import CLASSES, UNKNOWN
from clusterspy.series.frames import BAD_FRAME, BLURRED, BRIGHT_FIELD, LOST, MERGED_PATTERN, SPLIT_PATTERN

__all__ = ["NO_EVIDENCE", "smooth_and_summarise", "summarize_labels"]

log = logging.getLogger(__name__)

#: Reasons decided before inference (:mod:`clusterspy.domain`), and the network's own that mean it
#: could not see the cluster: such a frame carries no evidence, and its smoothed label stays
#: "unknown" — the HMM never labels what the model could not see.
NO_EVIDENCE = ("too_small", "too_large", "cut_by_edge", "neighbour_in_view", "elongated", "saturated",
               "scale_mismatch",
               "pixel_size_too_large", "not_resolved", "out_of_distribution", "models_disagree", "astigmatic",
               BRIGHT_FIELD)
#: Reasons whose frames' probabilities are withdrawn evidence: the HMM does not see them at all (a
#: label the second opinion disputed would otherwise return as its neighbours' smoothed label).
WITHDRAWN = ("models_disagree",)


def _reason_counts(reasons: np.ndarray) -> dict[str, int]:
    """How many frames gave each reason, most frequent first (a newcomer's summary said "2 unknown"
    and not why: they were ``saturated``)."""
    from collections import Counter

    return dict(Counter(r if isinstance(r, str) and r else "none" for r in reasons).most_common())


def _codes(labels: np.ndarray) -> np.ndarray:
    index = {c: i for i, c in enumerate(CLASSES)}
    return np.array([index.get(str(x), -1) for x in labels], dtype=int)


def summarize_labels(
    frames: np.ndarray,
    labels: np.ndarray,
    *,
    frame_time_s: float | None = None,
    n_boot: int = 2000,
    rng: np.random.Generator | int | None = None,
) -> dict:
    """Proportions with 95 % intervals, transitions, branching ratios, rates and dwell times of one
    label series.

    Parameters
    ----------
    frames : numpy.ndarray
        ``(T,)`` frame indices (increasing; gaps are treated as unlabelled frames).
    labels : numpy.ndarray
        ``(T,)`` labels: isomer names; anything else (unknown, lost, blurred) is unlabelled.
    frame_time_s : float, optional
        Time between frames [s]; rates and dwell times in seconds need it.
    n_boot : int
        Bootstrap replicates (only for ``interval_method="block_bootstrap"``).
    rng : numpy.random.Generator or int, optional
        Random generator or seed (likewise).

    Returns
    -------
    dict
        ``proportions`` ({isomer: {value, ci95, count}}: share of the labelled frames; the interval
        by :func:`~clusterspy.series.stats.proportions_ci`, Jeffreys on ``n_eff``),
        ``interval_method``, ``n_eff`` (effective independent frames), ``n_labelled``,
        ``n_excluded`` (unknown, lost, blurred: left out), ``branching`` ({from: {n_departures,
        to: {isomer: {ratio, ci95}}}} for isomers left at least once),
        ``transition_counts`` (K×K, rows = from, order of ``classes``),
        ``transition_rates_per_s`` (K×K CTMC maximum-likelihood generator, or None),
        ``dwell_times`` ({isomer: {...}}).
    """
    from clusterspy.series.stats import (
        branching_ratios,
        ctmc_rates,
        dwell_times,
        proportions_ci,
        transition_counts,
    )

    frames = np.asarray(frames, dtype=int)
    k = len(CLASSES)
    if len(frames):
        full = np.full(int(frames.max() - frames.min() + 1), -1)
        full[frames - frames.min()] = _codes(labels)
    else:
        full = np.zeros(0, int)
    pr = proportions_ci(full, k, n_boot=n_boot, rng=rng)
    tc = transition_counts(full, k)
    rates = None
    if frame_time_s and tc.sum() > 0:
        rates = ctmc_rates(tc, frame_time_s).tolist()
    dw = dwell_times(full, k)
    dwell = {}
    for c, d in zip(CLASSES, dw, strict=True):
        e = {
            "n_runs": d["n_runs"], "n_complete": d["n_complete"], "n_exits": d["n_exits"],
            "mean_complete_frames": _nan_none(d["mean_complete_frames"]),
            "mle_mean_frames": _nan_none(d["mle_mean_frames"]),
            "complete_frames": d["complete_frames"],
        }
        if frame_time_s:
            e["mean_complete_s"] = _nan_none(d["mean_complete_frames"] * frame_time_s)
            e["mle_mean_s"] = _nan_none(d["mle_mean_frames"] * frame_time_s)
        dwell[c] = e
    return {
        "proportions": {
            c: {"value": _nan_none(pr["proportion"][i]),
                "ci95": [_nan_none(pr["ci"][i, 0]), _nan_none(pr["ci"][i, 1])],
                "count": int(pr["counts"][i])}
            for i, c in enumerate(CLASSES)
        },
        "interval_method": pr["interval_method"],
        "n_eff": _nan_none(pr["n_eff"]),
        "n_labelled": pr["n_labelled"],
        "n_excluded": pr["n_excluded"],
        "transition_counts": tc.tolist(),
        "branching": _branching(branching_ratios(tc)),
        "transition_rates_per_s": rates,
        "dwell_times": dwell,
    }


#: A cluster whose labelled share of the frames the network judged is below this gets a warning
#: when the HMM filled its unknown frames (:func:`_few_labels_warning`).
FEW_LABELS_SHARE = 0.5


def _few_labels_warning(cid: int, lab: np.ndarray, reason: np.ndarray, inferred: np.ndarray) -> str | None:
    """The warning for a cluster the network labelled on fewer than :data:`FEW_LABELS_SHARE` of the
    (≥ 5) frames it judged, whose smoothed labels the HMM then filled from those few: its
    proportions rest on a minority of frames. A newcomer's series told a pixel size 15–20 % too
    large had 23–30 of 40 smoothed labels inferred so, many of them wrong, with no word of it."""
    labelled = np.isin(lab, CLASSES)
    judged = labelled | np.isin(reason, ["low_confidence", "models_disagree", "out_of_distribution",
                                         "astigmatic"])
    n_judged, n_lab = int(judged.sum()), int(labelled.sum())
    n_filled = int(np.sum(inferred.astype(bool) & (lab == UNKNOWN)))
    if n_judged < 5 or n_lab >= FEW_LABELS_SHARE * n_judged or n_filled == 0:
        return None
    return (f"cluster {cid}: the network labelled only {n_lab} of the {n_judged} frames it judged (the "
            f"others low confidence, unlike training or disputed by the second model); the HMM filled "
            f"{n_filled} unknown frames from those few, and the proportions rest on them — check the pixel "
            "size (15 % off costs most labels; "
            "--calibrate --element <metal> checks it against the lattice) and read the raw labels in "
            "frames.csv")


#: Share of the frames a cluster was found in that got no label before the network could judge
#: them (:data:`NO_EVIDENCE`) from which the summary warns that its proportions may be biased
#: (:func:`_unseen_frames_warning`).
UNSEEN_SHARE = 0.2
#: Share of a cluster's frames found ``not_resolved`` from which :func:`_unseen_frames_warning` says its
#: labelled frames may rest on chance: a newcomer's smoothed 25-frame series of unresolved particles
#: (stop 35) had 1–10 frames labelled fcc 0.88–0.99 beside 15–24 ``not_resolved``, and the summary said
#: "fcc 1.00".
UNRESOLVED_SHARE = 0.5


def _unseen_frames_warning(cid: int, lab: np.ndarray, reason: np.ndarray) -> str | None:
    """The warning for a cluster of which at least :data:`UNSEEN_SHARE` of the (≥ 5) frames it was
    found in carry no evidence (:data:`NO_EVIDENCE`: a domain check stopped them, or the network
    found them unlike training): proportions count the other frames only, so an isomer that these
    checks stop more often than the others is under-counted, and a change of isomer inside those
    frames is missed by the transitions, rates and dwell times. A newcomer's series of 24
    icosahedral then 24 fcc frames, whose fcc frames a check stopped (``scale_mismatch``), came
    out "icosahedral 1.00, 0 transitions" with no word of it; another's (the example told ×0.85)
    counted 10 transitions of 30, with a warning of proportions only and no word of ``--calibrate``."""
    found = lab != LOST
    unseen = found & np.isin(reason, NO_EVIDENCE)
    n_found, n_unseen = int(found.sum()), int(unseen.sum())
    if n_found < 5 or n_unseen == 0 or n_unseen < UNSEEN_SHARE * n_found:
        return None
    kinds, counts = np.unique(reason[unseen].astype(str), return_counts=True)
    order = sorted(zip(counts.tolist(), kinds.tolist(), strict=True), reverse=True)
    why = ", ".join(f"{k} {n}" for n, k in order)
    scale = ("; scale_mismatch says the pixel size looks too small (15 % can do it): --calibrate --element "
             "<metal> measures it against the lattice" if "scale_mismatch" in kinds else "")
    if "pixel_size_too_large" in kinds:
        scale += ("; pixel_size_too_large says it looks 1.5× or more too large: check the calibration "
                  "(--pixel-size, Å/px)")
    if scale:  # a newcomer's 10 frames told 2×: 9 stopped, the tenth "decahedral 1.00" at twice its size
        scale += (" — one pixel size holds for the whole series, so the frames labelled were judged at it "
                  "too, and their diameters are off by as much")
    n_labelled = int(np.isin(lab, CLASSES).sum())
    unresolved = ""
    if n_labelled and int((found & (reason == "not_resolved")).sum()) >= UNRESOLVED_SHARE * n_found:
        frames = "frame" if n_labelled == 1 else "frames"
        unresolved = (f"; at least half its frames show no lattice (not_resolved), so its {n_labelled} "
                      f"labelled {frames} of the same particle may rest on chance, not on resolved columns "
                      "(a smoothed or denoised series of an unresolved particle does this): check them, or "
                      "give the raw frames")
    return (f"cluster {cid}: {n_unseen} of the {n_found} frames it was found in gave no evidence "
            f"({why}); its proportions count the other frames only, and are biased if one isomer is "
            "stopped more often than the others, and its transitions, rates and dwell times miss every "
            f"change of isomer hidden in those frames{scale}{unresolved} — read reason in frames.csv (the "
            "README's 'When to trust a label' says what each means)")


def _searched(lab: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """Which of a cluster's labels the pixel-size search found (``pixel_size_factor`` not 1)."""
    f = np.asarray(factor, float)
    return np.isin(lab, CLASSES) & np.isfinite(f) & (np.abs(f - 1.0) > 1e-9)


def _searched_warning(cid: int, lab: np.ndarray, searched: np.ndarray, factor: np.ndarray) -> str | None:
    """The warning for a cluster whose labels were found only at a pixel size 15 % from the one given
    (:func:`clusterspy.predict.search_pixel_size`): the calibration may be that far off, and which way."""
    from clusterspy.predict import searched_at

    n, labelled = int(searched.sum()), int(np.isin(lab, CLASSES).sum())
    if n == 0:
        return None
    tried, at = searched_at(np.asarray(factor, float)[searched].tolist())
    return (f"cluster {cid}: {n} of its {labelled} labels {'was' if n == 1 else 'were'} found only with the "
            f"pixel size given times {tried} ({at}; pixel_size_factor in frames.csv): the calibration "
            "may be off by as much — series --calibrate --element <metal> measures it where the clusters' "
            "lattice can be fitted")


def _models_warning(cid: int, judged: np.ndarray, models: np.ndarray, diameter_nm: np.ndarray
                    ) -> str | None:
    """The warning for a cluster whose frames were judged by more than one model (``judged``: the
    frames the network was shown; the size-routed default chooses each frame's model by the size
    measured in it): near the size where one model hands over to the next, a change of label — or a
    label in some frames and none in others — may be the models', not the cluster's. A newcomer's
    40-frame series of one 5.15 nm decahedron told a pixel size 15 % too small measured 4.33–4.36 nm:
    isomernet-v3 said fcc in 32 frames and isomernet-v5 decahedral in 4, and the smoothed labels
    were fcc throughout, with nothing said."""
    judged = np.asarray(judged, dtype=bool)
    names = np.array([str(m).split("@")[0] for m in models], dtype=object)
    used = [m for m in dict.fromkeys(names[judged]) if m and m != "nan"]
    if len(used) < 2:
        return None
    counts = ", ".join(f"{m} in {int(np.sum(judged & (names == m)))}" for m in used)
    d = np.asarray(diameter_nm, dtype=float)[judged]
    d = d[np.isfinite(d)]
    size = f" (measured {d.min():.2f}–{d.max():.2f} nm)" if d.size else ""
    return (f"cluster {cid}: its frames were judged by {len(used)} models ({counts} frames){size}, each "
            "frame's chosen by the size measured in it: near the size where one hands over to the next "
            "(the model column of frames.csv), a change of label, or labels in some frames and none in "
            "others, may be the models', not the cluster's — check the pixel size, or run again with one "
            "--model")


#: Relative change of a cluster's diameter between two consecutive frames where it was measured
#: (larger / smaller − 1) from which :func:`_diameter_jump_warning` warns. A steady cluster's changes
#: are far smaller: on a newcomer's low-dose series of one Au309 cluster at 0.25 Å/px (E_single2e3,
#: 2·10³ e⁻/Å²: 40 frames) they were at most 3.1 % (95th percentile 2.1 %), and 5.0 % (95th
#: percentile 3.9 %) where the dose fell to 4·10² e⁻/Å² (E_dose_drift_low); at most 2 % on 12 other
#: steady tracks. A ×1.5 magnification change stored with the same pixel size reads +50 %.
DIAMETER_JUMP = 0.30


def _diameter_jump_warning(cid: int, frames: np.ndarray, diameter_nm: np.ndarray, reason: np.ndarray
                           ) -> str | None:
    """The warning for a cluster whose diameter changes by more than :data:`DIAMETER_JUMP` between two
    consecutive frames where it was measured whole (``cut_by_edge`` frames measure the visible part
    only): the magnification or the pixel size changed mid-series, or the track was linked to
    another cluster. A newcomer's series zoomed ×1.5 from frame 20 with the same pixel size stored
    read 2.30 then 3.45 nm with no word of it."""
    d = np.asarray(diameter_nm, dtype=float)
    ok = np.isfinite(d) & (d > 0) & ~np.isin(reason, ["cut_by_edge"])
    fr, d = np.asarray(frames, dtype=int)[ok], d[ok]
    if len(d) < 2:
        return None
    change = np.maximum(d[1:], d[:-1]) / np.minimum(d[1:], d[:-1]) - 1.0
    jumps = np.flatnonzero(change > DIAMETER_JUMP)
    if not len(jumps):
        return None
    k = int(jumps[0])
    more = f" ({len(jumps)} such changes)" if len(jumps) > 1 else ""
    return (f"cluster {cid}: its diameter changed from {d[k]:.2f} to {d[k + 1]:.2f} nm "
            f"({100 * (d[k + 1] / d[k] - 1):+.0f} %) between frames {int(fr[k])} and {int(fr[k + 1])}{more}, "
            f"far beyond a steady cluster's frame-to-frame scatter (a few %): a change of magnification or "
            "pixel size mid-series (the labels, sizes and model choice rest on one pixel size for every "
            "frame), or a wrong link to another cluster — check those frames")


def _merger_warnings(table: dict[str, np.ndarray]) -> list[str]:
    """One warning per merger the tracker found (the ``message`` of the parents' last rows,
    :data:`~clusterspy.series.frames.MERGED_PATTERN`): "clusters 0 and 1 merged into cluster 2 at
    frame 20" — their proportions are summarised apart, never pooled."""
    import re

    if "message" not in table:
        return []
    found: dict[tuple[int, int], set[int]] = {}
    for frame, cid, msg in zip(table["frame"], table["cluster"], table["message"], strict=True):
        m = re.search(MERGED_PATTERN, msg) if isinstance(msg, str) and msg else None
        if m:
            found.setdefault((int(m.group(2)), int(frame)), set()).add(int(cid))
    out = []
    for (child, frame), parents in sorted(found.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        ids = sorted(parents)
        names = ", ".join(str(p) for p in ids[:-1]) + f" and {ids[-1]}" if len(ids) > 1 else str(ids[0])
        out.append(f"clusters {names} merged into cluster {child} at frame {frame} (their blobs overlap): "
                   f"each is summarised apart — the merged cluster's labels are not theirs")
    return out


def _split_warnings(table: dict[str, np.ndarray]) -> list[str]:
    """One warning per split the tracker reported (the ``message`` of the new cluster's first row,
    :data:`~clusterspy.series.frames.SPLIT_PATTERN`): the cluster goes on as the part nearest its
    track, so its labels before and after may be of different particles. A newcomer's (stop 38) blob
    of two particles that came apart read "icosahedral 0.50, decahedral 0.50, 0 transitions" without a
    word: the blob's frames and one daughter's, pooled."""
    import re

    if "message" not in table:
        return []
    out = []
    for frame, cid, msg in zip(table["frame"], table["cluster"], table["message"], strict=True):
        m = re.search(SPLIT_PATTERN, msg) if isinstance(msg, str) and msg else None
        if m:
            out.append(f"cluster {int(cid)} split from cluster {m.group(1)} at frame {int(frame)} (a part "
                       f"at least half its size came out of it): cluster {m.group(1)} goes on as the part "
                       "nearest its track, so its labels before and after may be of different particles "
                       "— compare its frames on either side")
    return out


#: Words that mark the two warnings above — a cluster's proportions rest on few labels, or leave out
#: the frames that gave no evidence — in ``summary.json``: ``clusterspy thermo`` passes these on.
PROPORTION_WARNING_MARKS = ("the network labelled only", "gave no evidence")


def _branching(br: dict) -> dict:
    """:func:`~clusterspy.series.stats.branching_ratios` as JSON: isomers left at least once."""
    out = {}
    for i, a in enumerate(CLASSES):
        if br["n_departures"][i] > 0:
            out[a] = {"n_departures": int(br["n_departures"][i]),
                      "to": {b: {"ratio": float(br["ratio"][i, j]),
                                 "ci95": [float(br["ci"][i, j, 0]), float(br["ci"][i, j, 1])]}
                             for j, b in enumerate(CLASSES) if j != i}}
    return out


def _nan_none(x: Any) -> Any:
    try:
        xf = float(x)
    except (TypeError, ValueError):
        return x
    return None if not np.isfinite(xf) else xf


def smooth_and_summarise(
    table: dict[str, np.ndarray], frame_time_s: float | None, n_boot: int, seed: int,
    stay: float, transition: np.ndarray | None, learn: bool,
) -> dict:
    """Smooth each cluster's labels (fills ``table["smoothed_label"]``) and summarise them.

    Parameters
    ----------
    table : dict of str to numpy.ndarray
        The per-frame table (:data:`~clusterspy.series.frames.FRAME_COLUMNS`); its
        ``smoothed_label`` column is replaced.
    frame_time_s : float, optional
        Time between frames [s].
    n_boot : int
        Bootstrap replicates of the proportions' CIs.
    seed : int
        Seed of the bootstrap.
    stay : float
        Per-frame probability of staying in the same isomer (HMM's sticky prior).
    transition : numpy.ndarray, optional
        ``(4, 4)`` HMM transition matrix (overrides ``stay``).
    learn : bool
        Learn each cluster's transition matrix with Baum–Welch.

    Returns
    -------
    dict
        ``clusters`` (one summary per cluster), ``n_clusters``, ``warnings`` and
        ``n_bad_frames`` (frames that could not be read or used).
    """
    from clusterspy.series.hmm import inferred_mask, smooth
    from clusterspy.series.stats import INTERVAL_METHODS

    rng = np.random.default_rng(seed)
    smoothed = np.array(table["label"], dtype=object)
    inferred = np.zeros(len(smoothed))
    clusters = []
    warnings: list[str] = []
    pcols = [f"p_{c}" for c in CLASSES]
    for cid in np.unique(table["cluster"][table["cluster"] >= 0]):  # -1: a bad frame, no track yet
        idx = np.where(table["cluster"] == cid)[0]
        idx = idx[np.argsort(table["frame"][idx], kind="stable")]
        fr = table["frame"][idx]
        f0 = int(fr.min())
        t_len = int(fr.max()) - f0 + 1
        probs = np.full((t_len, len(CLASSES)), np.nan)
        p_rows = np.column_stack([table[c][idx] for c in pcols]).astype(float)
        shown = np.isfinite(p_rows).any(axis=1)  # the frames the network judged
        p_rows[np.isin(table["reason"][idx], WITHDRAWN)] = np.nan
        probs[fr - f0] = p_rows
        res = smooth(probs, transition=transition, stay=stay, learn=learn)
        lab = table["label"][idx]
        gap = np.isin(lab, [LOST, BLURRED]) | np.isin(table["reason"][idx], NO_EVIDENCE)
        sm = np.array([CLASSES[s] for s in res.path[fr - f0]], dtype=object)
        sm[gap] = lab[gap]
        # The HMM may bridge frames only with isomers the network itself gave this cluster: a track
        # the network never labelled (e.g. every frame low_confidence) stays unknown.
        unclaimed = np.isin(sm, CLASSES) & ~np.isin(sm, [c for c in CLASSES if np.any(lab == c)])
        sm[unclaimed] = lab[unclaimed]
        smoothed[idx] = sm
        inf = inferred_mask(lab, sm, CLASSES)  # the HMM said what the network did not
        inferred[idx] = inf
        raw_stats = summarize_labels(fr, lab, frame_time_s=frame_time_s, n_boot=n_boot, rng=rng)
        sm_stats = summarize_labels(fr, sm, frame_time_s=frame_time_s, n_boot=n_boot, rng=rng)
        n_tr = int(np.sum(np.array(sm_stats["transition_counts"])) - np.trace(
            np.array(sm_stats["transition_counts"])))
        if frame_time_s and n_tr < 10 and np.isin(sm, CLASSES).any():  # none labelled: said elsewhere
            msg = (f"cluster {int(cid)}: {f'only {n_tr}' if n_tr else 'no'} transitions in the smoothed "
                   "labels; rates per second are not meaningful")
            warnings.append(msg)
            log.warning(msg)
        msg = (_few_labels_warning(int(cid), lab, table["reason"][idx], inf)
               or _unseen_frames_warning(int(cid), lab, table["reason"][idx]))
        factor = table.get("pixel_size_factor", np.full(len(table["label"]), np.nan))[idx]
        searched = _searched(lab, factor)
        models = table.get("model", np.full(len(table["label"]), "", dtype=object))[idx]
        diam = table.get("diameter_nm", np.full(len(table["label"]), np.nan))[idx]
        for m in (msg, _searched_warning(int(cid), lab, searched, factor),
                  _models_warning(int(cid), shown, models, diam),
                  _diameter_jump_warning(int(cid), fr, diam, table["reason"][idx])):
            if m:
                warnings.append(m)
                log.warning(m)
        clusters.append({
            "cluster": int(cid),
            "first_frame": f0,
            "last_frame": int(fr.max()),
            "n_rows": len(idx),
            "n_lost": int(np.sum(lab == LOST)),
            "n_blurred": int(np.sum(lab == BLURRED)),
            "n_unknown": int(np.sum(lab == UNKNOWN)),
            "unknown_reasons": _reason_counts(table["reason"][idx][lab == UNKNOWN]),
            "n_smoothed_labels": int(np.sum(np.isin(sm, CLASSES))),
            "n_inferred": int(inf.sum()),
            "n_inferred_from_unknown": int(np.sum(inf & (lab == UNKNOWN))),
            "n_inferred_from_other_label": int(np.sum(inf & np.isin(lab, CLASSES))),
            "n_labels_from_pixel_size_search": int(searched.sum()),
            "raw": raw_stats,
            "smoothed": sm_stats,
            "n_transitions_smoothed": n_tr,
            "hmm": {"transition": res.transition.tolist(), "log_likelihood": res.log_likelihood,
                    "em_iterations": res.n_iter, "learned": bool(learn)},
        })
    for msg in [*_merger_warnings(table), *_split_warnings(table)]:
        warnings.append(msg)
        log.warning(msg)
    table["smoothed_label"] = smoothed
    table["inferred"] = inferred
    bad = np.unique(table["frame"][table["status"] == BAD_FRAME])
    if len(bad):
        msg = f"{len(bad)} frame(s) could not be used (first: frame {int(bad[0])}); see frames.csv"
        warnings.append(msg)
        log.warning(msg)
    return {"clusters": clusters, "n_clusters": len(clusters), "warnings": warnings,
            "n_bad_frames": len(bad),
            "n_smoothed_labels": int(sum(c["n_smoothed_labels"] for c in clusters)),
            "n_inferred": int(sum(c["n_inferred"] for c in clusters)),
            "interval_method": "jeffreys_neff",
            "interval_method_description": INTERVAL_METHODS["jeffreys_neff"]}
