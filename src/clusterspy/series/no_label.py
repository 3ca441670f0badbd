"""Why a series has no labelled frame at all, and what to try instead (the series report and summary).

A series in which every frame is ``unknown`` (e.g. a 3.45 nm Au particle, larger than the model
was trained on) has nothing to plot; :func:`no_label_note` says so in one line, with the commonest
reason, the median particle diameter [nm] of those frames and advice for that reason. For a size
outside the model's range, the advice names another shipped model only when its model card's
diameter range [nm] covers the particle.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from clusterspy.isomers import CLASSES

__all__ = ["ADVICE", "NO_CLUSTER_NOTE", "no_label_note"]

#: Advice per reason a frame got no label (the keys of :data:`clusterspy.domain.REASONS`, and the
#: tracking states ``lost`` / ``blurred`` / ``bad_frame``).
ADVICE: dict[str, str] = {
    "too_small": "smaller than the model was trained on",
    "too_large": "larger than the model was trained on",
    "cut_by_edge": "the particle touches the image edge: centre it in the field of view",
    "neighbour_in_view": "another particle lies within its crop: image it on its own",
    "elongated": "its outline is more elongated than any single cluster's in training: two overlapping "
                 "or coalescing particles measured as one (or a rod); wait for them to separate or to "
                 "become one particle",
    "saturated": "its brightest columns are clipped at the image's maximum (a saturated detector, or an "
                 "export that clipped the highlights): give the raw frames, or lower the detector gain",
    "scale_mismatch": "its lattice spacing does not match the pixel size: check the calibration "
                      "(--pixel-size, Å/px)",
    "pixel_size_too_large": "its lattice fringes look coarser than any metal's: the pixel size given is "
                            "likely 1.5× or more too large (--pixel-size, Å/px)",
    "not_resolved": "atomic columns not resolved: check focus, drift and the pixel size (Å/px), "
                    "and give raw frames, not smoothed or denoised ones",
    "out_of_distribution": "the crops look unlike the training images: check the contrast (HAADF), "
                           "the dose and the pixel size",
    "low_confidence": "the model is unsure between isomers: the particle may be none of "
                      f"{', '.join(CLASSES)}, or the frames too noisy (sum frames for dose)",
    "models_disagree": "the model trained with pixel-size errors finds another isomer most probable: "
                       "check the calibration (--pixel-size, Å/px; series --calibrate --element)",
    "astigmatic": "the probe looks astigmatic (atomic columns drawn out along one direction), and the "
                  "models that judge were trained on round, sharp probes: correct the astigmatism "
                  "(stigmators) and the focus, and record again",
    "fit_disagrees": "the structure fit found another isomer than the network: compare the fit "
                     "figures (classify --verify)",
    "bright_field": "the frames look like bright field (dark particles on a bright background): "
                    "ClusterSpy judges HAADF frames only; pass --contrast haadf if they are HAADF",
    "lost": "the tracker lost the particle: check drift and the field of view",
    "blurred": "the frames are blurred: check drift and the frame time",
    "bad_frame": "the frames could not be used: see the message column of frames.csv",
}


#: The note of a series in which no frame held a cluster (``{n}``: the frames read): a series
#: printed "0 cluster(s)" and nothing else, where ``classify`` names the likely causes.
NO_CLUSTER_NOTE = ("no cluster found in any of the {n} frames: check the pixel size (Å/px; a wrong one "
                   "puts clusters outside the size range looked for) and that the frames are HAADF "
                   "(bright clusters on a dark background)")


def _reason(label: str, reason: Any, status: Any) -> str:
    for r in (reason, status, label):
        if isinstance(r, str) and r and r not in ("ok", "unknown", "nan"):
            return r
    return "low_confidence"


def _other_model(diameter_nm: float, current_id: str | None) -> tuple[str, float] | None:
    """A shipped model (name, largest diameter [nm]) whose card's diameter range covers the particle
    (:func:`clusterspy.predict.shipped_model_covering`)."""
    from clusterspy.predict import shipped_model_covering

    other = shipped_model_covering([diameter_nm], exclude=(current_id or "").split("@")[0] or None)
    return None if other is None else (other[0], other[1][1])


def _advice(reason: str, diameter_nm: float | None, model_id: str | None) -> str:
    text = ADVICE.get(reason, f"reason {reason!r}: see the reason column of frames.csv")
    if reason in ("too_large", "too_small") and diameter_nm is not None:
        other = _other_model(diameter_nm, model_id)
        if other is None:
            text += ("; no shipped model covers this size — if the particle is not that "
                     f"{'large' if reason == 'too_large' else 'small'}, check the pixel size (Å/px)")
        else:
            text += f"; try --model {other[0]} (to {other[1]:.3g} nm)"
    return text


def no_label_note(frames: Mapping[str, np.ndarray], model_id: str | None = None) -> str | None:
    """One line saying why no frame of a series is labelled, or None when some frame is (raw or
    smoothed label).

    Parameters
    ----------
    frames : mapping of str to numpy.ndarray
        The per-frame table of a series (``label``, and when present ``reason``, ``status``,
        ``diameter_nm`` [nm]); one row per frame and cluster.
    model_id : str, optional
        The model the series was classified with (``name`` or ``name@hash``); another shipped
        model is suggested only when it covers the particle's size.

    Returns
    -------
    str or None
        ``"no frame labelled: 20 of 20 too_large (3.45 nm median diameter) — larger than the model
        was trained on; try --model isomernet-v3 (to 8.05 nm)"``.
    """
    labels = np.asarray(frames.get("label", []), dtype=str)
    n = len(labels)
    smoothed = np.asarray(frames.get("smoothed_label", []), dtype=str)
    if n == 0 or np.isin(labels, CLASSES).any() or np.isin(smoothed, CLASSES).any():
        return None  # something to show (a smoothed label inferred by the HMM counts)
    col = {k: np.asarray(frames[k], dtype=object) if k in frames else np.full(n, None, object)
           for k in ("reason", "status")}
    reasons = np.array([_reason(lab, r, s) for lab, r, s in zip(labels, col["reason"], col["status"],
                                                                  strict=True)])
    diam = np.asarray(frames["diameter_nm"], dtype=float) if "diameter_nm" in frames else np.full(n, np.nan)
    clusters = np.asarray(frames.get("cluster", np.zeros(n)))
    main = _main_cluster(clusters, diam)
    rows = clusters == main
    top, count = Counter(reasons[rows]).most_common(1)[0]
    d = diam[rows & (reasons == top)]
    d = d[np.isfinite(d)]
    diameter = float(np.median(d)) if len(d) else None
    size = "" if diameter is None else f" ({diameter:.2f} nm median diameter)"
    if rows.all():
        return f"no frame labelled: {count} of {n} {top}{size} — {_advice(top, diameter, model_id)}"
    others = len(set(clusters[~rows].tolist()))
    other_top = Counter(reasons[~rows]).most_common(1)[0][0]
    return (f"no frame labelled: cluster {main} (the largest seen in most frames): {count} of its "
            f"{int(rows.sum())} frames "
            f"{top}{size} — {_advice(top, diameter, model_id)}; {others} other cluster(s), "
            f"{int((~rows).sum())} rows, mostly {other_top}")


def _main_cluster(clusters: np.ndarray, diameter_nm: np.ndarray) -> Any:
    """The cluster a series' headline is about: the largest (median diameter [nm]) of those seen in at
    least half as many frames as the most often seen one — the particle imaged, not the fragments cut
    by the edge or the small neighbours beside it (a newcomer's 200 frames around the 3 nm Au particle
    were headlined by two edge fragments' ``cut_by_edge``)."""
    ids, counts = np.unique(clusters, return_counts=True)
    if len(ids) == 1:
        return ids[0]
    seen = ids[counts >= 0.5 * counts.max()]

    def size(c: Any) -> float:
        d = diameter_nm[(clusters == c) & np.isfinite(diameter_nm)]
        return float(np.median(d)) if len(d) else -1.0

    return max(seen, key=lambda c: (size(c), -int(np.flatnonzero(clusters == c)[0])))
