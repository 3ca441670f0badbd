"""Figures: label strips, proportions, van 't Hoff and Arrhenius plots, confusion matrices.

Every function builds a standalone :class:`matplotlib.figure.Figure` (Agg canvas, no ``pyplot``
state: nothing is registered with ``plt``, nothing leaks between calls) and returns it; the same
function serves the HTML reports and the notebook user (a Figure displays itself in Jupyter).
Colours are the Okabe–Ito colour-blind-safe palette; axes carry units.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clusterspy.isomers import CLASSES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "ISOMER_COLOURS",
    "OKABE_ITO",
    "plot_accuracy_curve",
    "plot_arrhenius",
    "plot_confusion_matrix",
    "plot_overlay",
    "plot_proportions",
    "plot_proportions_vs_temperature",
    "plot_reliability",
    "plot_saliency",
    "plot_strip",
    "plot_structure_fit",
    "plot_van_t_hoff",
    "save_figure",
]

#: Okabe & Ito (2008) colour-blind-safe palette.
OKABE_ITO: dict[str, str] = {
    "orange": "#E69F00", "sky_blue": "#56B4E9", "bluish_green": "#009E73", "yellow": "#F0E442",
    "blue": "#0072B2", "vermillion": "#D55E00", "reddish_purple": "#CC79A7", "black": "#000000",
    "grey": "#999999",
}
#: Colour of each isomer (and of frames without an isomer label).
ISOMER_COLOURS: dict[str, str] = {
    "icosahedral": OKABE_ITO["orange"], "decahedral": OKABE_ITO["blue"],
    "fcc": OKABE_ITO["bluish_green"], "amorphous": OKABE_ITO["reddish_purple"],
    "unknown": OKABE_ITO["grey"], "lost": OKABE_ITO["black"], "blurred": OKABE_ITO["vermillion"],
}
_SHORT = {"icosahedral": "ico", "decahedral": "dec", "fcc": "fcc", "amorphous": "amo"}
K_B_EV = 8.617333262e-5


def _figure(figsize: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _colour(name: str) -> str:
    return ISOMER_COLOURS.get(name, OKABE_ITO["grey"])


def plot_strip(
    frames: Sequence[int] | np.ndarray,
    labels: Sequence[str] | np.ndarray,
    smoothed: Sequence[str] | np.ndarray | None = None,
    *,
    time_s: Sequence[float] | None = None,
    frame_time_s: float | None = None,
    inferred: Sequence[bool] | np.ndarray | None = None,
    title: str | None = None,
) -> Figure:
    """Isomer label against time (the seed's Figure 2): rows ico / dec / fcc / amo / unk.

    Parameters
    ----------
    frames : array-like of int
        Frame numbers.
    labels : array-like of str
        Raw label per frame (isomer, ``unknown``, ``lost``, ``blurred``; the last three share
        the ``unk`` row, lost and blurred with their own markers).
    smoothed : array-like of str, optional
        HMM-smoothed labels: drawn in a second panel as a step line.
    time_s : array-like of float, optional
        Time of each frame [s]; with finite values the x axis is time in s.
    frame_time_s : float, optional
        Time between frames [s]: the x axis is ``frame × frame_time_s`` in s (overrides
        ``time_s``). With a time axis, frame numbers are on a secondary axis on top.
    inferred : array-like of bool, optional
        Smoothed labels the network did not give (raw unknown or another label): drawn as open
        markers in the smoothed panel, so an inferred label is never mistaken for a seen one.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    rows = [*CLASSES, "unknown"]
    names = [_SHORT[c] for c in CLASSES] + ["unk"]
    ypos = {c: len(rows) - 1 - i for i, c in enumerate(rows)}
    panels = [("raw", labels)] + ([("HMM-smoothed", smoothed)] if smoothed is not None else [])
    fig = _figure((8.0, 1.9 + 1.7 * len(panels)))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    fr = np.asarray(frames, dtype=float)
    x, t0, dt = _strip_time_axis(fr, time_s, frame_time_s)
    inf = np.zeros(len(fr), bool) if inferred is None else np.asarray(inferred, dtype=bool)
    for ax, (name, lab) in zip(axes, panels, strict=True):
        lab = np.asarray(lab, dtype=object).astype(str)
        for cat in [*CLASSES, "unknown", "lost", "blurred"]:
            m = lab == cat
            if not m.any():
                continue
            row = ypos.get(cat, ypos["unknown"])
            marker = {"lost": "x", "blurred": "v"}.get(cat, "s")
            seen = m & ~inf if name != "raw" else m
            if seen.any():
                ax.scatter(x[seen], np.full(seen.sum(), row), s=9, marker=marker,
                           color=_colour(cat), label=cat, linewidths=0.8)
            if name != "raw" and (m & inf).any():
                ax.scatter(x[m & inf], np.full((m & inf).sum(), row), s=14, marker=marker,
                           facecolors="none", edgecolors=_colour(cat), linewidths=0.8,
                           label="inferred by the HMM")
        if name != "raw":
            # the line joins isomer labels only: it breaks at lost, blurred and unknown frames, which
            # drawn down to the "unk" row looked like transitions
            y = np.array([ypos[v] if v in CLASSES else np.nan for v in lab], float)
            order = np.argsort(x)
            ax.step(x[order], y[order], where="mid", color=OKABE_ITO["black"], lw=0.6, alpha=0.6)
        ax.set_yticks([ypos[c] for c in rows], names)
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.set_ylabel(f"isomer ({name})")
        ax.grid(axis="x", alpha=0.3)
    from matplotlib.ticker import MaxNLocator

    if dt is None:
        axes[-1].set_xlabel("frame number")
        axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))  # frames are whole numbers
    else:
        axes[-1].set_xlabel("time (s)")
        top = axes[0].secondary_xaxis(
            "top", functions=(lambda t: (t - t0) / dt, lambda f: t0 + f * dt))
        top.xaxis.set_major_locator(MaxNLocator(integer=True))
        top.set_xlabel("frame number", fontsize=8)
        top.tick_params(labelsize=7)
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, lab_name in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab_name, h)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", fontsize=7,
                   ncol=min(len(handles), 8), frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def _strip_time_axis(
    frames: np.ndarray, time_s: Sequence[float] | None, frame_time_s: float | None
) -> tuple[np.ndarray, float, float | None]:
    """x values of a strip plot: (x, time of frame 0 [s], frame time [s]); frame numbers when the
    frame time is unknown (then the frame time is ``None``)."""
    if frame_time_s is not None and np.isfinite(frame_time_s) and frame_time_s > 0:
        return frames * float(frame_time_s), 0.0, float(frame_time_s)
    if time_s is not None:
        t = np.asarray(time_s, dtype=float)
        ok = np.isfinite(t)
        if ok.sum() >= 2 and np.ptp(frames[ok]) > 0:
            dt, t0 = np.polyfit(frames[ok], t[ok], 1)
            if dt > 0:
                return t0 + frames * dt, float(t0), float(dt)
    return frames, 0.0, None


def plot_proportions(
    proportions: Mapping[str, float | None],
    ci95: Mapping[str, Sequence[float | None]] | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """Bar chart of isomer proportions with 95 % confidence intervals.

    Parameters
    ----------
    proportions : mapping
        ``{isomer: proportion}`` (0–1; ``None`` plotted as 0).
    ci95 : mapping, optional
        ``{isomer: (low, high)}``.
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    names = list(proportions)
    vals = np.array([proportions[n] if proportions[n] is not None else np.nan for n in names],
                    float)
    fig = _figure((5.0, 3.2))
    ax = fig.add_subplot()
    x = np.arange(len(names))
    ax.bar(x, np.nan_to_num(vals), color=[_colour(n) for n in names], edgecolor="black", lw=0.5)
    if ci95 is not None:
        lo = np.array([ci95[n][0] if ci95[n][0] is not None else np.nan for n in names], float)
        hi = np.array([ci95[n][1] if ci95[n][1] is not None else np.nan for n in names], float)
        err = np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)])
        ax.errorbar(x, vals, yerr=np.nan_to_num(err), fmt="none", ecolor="black", capsize=4)
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1)
    ax.set_ylabel("proportion of frames (–)")
    ax.set_xlabel("isomer")
    if title:
        ax.set_title(title)
    return fig


def plot_proportions_vs_temperature(
    temperatures_K: Sequence[float],
    proportions: Mapping[str, Sequence[float]],
    ci95: Mapping[str, Sequence[Sequence[float]]] | None = None,
    *,
    model: Mapping[str, Sequence[float]] | None = None,
) -> Figure:
    """Isomer proportions against temperature, with error bars and optional fitted curves.

    Parameters
    ----------
    temperatures_K : sequence of float
        Temperatures [K].
    proportions : mapping
        ``{isomer: proportion at each temperature}``.
    ci95 : mapping, optional
        ``{isomer: [(low, high) at each temperature]}``.
    model : mapping, optional
        ``{isomer: fitted proportion at each temperature}`` drawn as lines.

    Returns
    -------
    matplotlib.figure.Figure
    """
    t = np.asarray(temperatures_K, float)
    fig = _figure((5.5, 3.6))
    ax = fig.add_subplot()
    for name, p in proportions.items():
        p = np.asarray(p, float)
        yerr = None
        if ci95 is not None and name in ci95:
            c = np.asarray(ci95[name], float)
            yerr = np.vstack([np.clip(p - c[:, 0], 0, None), np.clip(c[:, 1] - p, 0, None)])
        ax.errorbar(t, p, yerr=yerr, fmt="o", color=_colour(name), label=name, capsize=3)
        if model is not None and name in model:
            order = np.argsort(t)
            ax.plot(t[order], np.asarray(model[name], float)[order], "-", color=_colour(name),
                    lw=1)
    ax.set_xlabel("temperature T (K)")
    ax.set_ylabel("proportion (–)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, frameon=False)
    return fig


def _fit_line_plot(
    ax: Any, x: np.ndarray, y: np.ndarray, yerr: np.ndarray | None, slope: float | None,
    intercept: float | None, colour: str, label: str,
) -> None:
    ax.errorbar(x, y, yerr=yerr, fmt="o", color=colour, capsize=3, label=label)
    if slope is not None and intercept is not None and len(x):
        xx = np.linspace(np.min(x), np.max(x), 50)
        ax.plot(xx, intercept + slope * xx, "-", color=colour, lw=1)


def plot_van_t_hoff(series: Sequence[Mapping[str, Any]]) -> Figure:
    """Van 't Hoff plot: ln(p_i / p_ref) against 1/(k_B T) with error bars and fitted lines.

    Parameters
    ----------
    series : sequence of mapping
        One per isomer: ``isomer``, ``reference``, ``temperatures_K``, ``ln_ratio``, optional
        ``ln_ratio_ci95`` ([(low, high)] per temperature), ``delta_E_eV`` and ``delta_S_kB``
        (the fit: ln ratio = −ΔE·x + ΔS/k_B).

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = _figure((5.5, 3.8))
    ax = fig.add_subplot()
    for s in series:
        x = 1.0 / (K_B_EV * np.asarray(s["temperatures_K"], float))
        y = np.asarray(s["ln_ratio"], float)
        yerr = None
        if s.get("ln_ratio_ci95") is not None:
            c = np.asarray(s["ln_ratio_ci95"], float)
            yerr = np.vstack([np.clip(y - c[:, 0], 0, None), np.clip(c[:, 1] - y, 0, None)])
        de = s.get("delta_E_eV")
        ds = s.get("delta_S_kB")
        lab = f"{s['isomer']} / {s['reference']}"
        if de is not None:
            lab += f": ΔE = {de:.3f} eV"
        _fit_line_plot(ax, x, y, yerr, None if de is None else -de, ds, _colour(s["isomer"]), lab)
    ax.set_xlabel("1 / (k_B T) (eV⁻¹)")
    ax.set_ylabel("ln(p_i / p_ref) (–)")
    ax.legend(fontsize=8, frameon=False)
    return fig


def plot_arrhenius(series: Sequence[Mapping[str, Any]]) -> Figure:
    """Arrhenius plot: ln k against 1/(k_B T) with error bars and fitted lines.

    Parameters
    ----------
    series : sequence of mapping
        One per transition: ``from``, ``to``, ``temperatures_K``, ``rate_per_s``, optional
        ``rate_ci95_per_s`` ([(low, high)] per temperature), ``barrier_eV``,
        ``prefactor_per_s`` (the fit: ln k = ln A − E_a·x).

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = _figure((5.5, 3.8))
    ax = fig.add_subplot()
    palette = list(OKABE_ITO.values())
    for n, s in enumerate(series):
        x = 1.0 / (K_B_EV * np.asarray(s["temperatures_K"], float))
        k = np.asarray(s["rate_per_s"], float)
        ok = k > 0
        y = np.log(np.where(ok, k, np.nan))
        yerr = None
        if s.get("rate_ci95_per_s") is not None:
            c = np.log(np.clip(np.asarray(s["rate_ci95_per_s"], float), 1e-300, None))
            yerr = np.nan_to_num(np.vstack([np.clip(y - c[:, 0], 0, None),
                                            np.clip(c[:, 1] - y, 0, None)]))
        ea = s.get("barrier_eV")
        a = s.get("prefactor_per_s")
        lab = f"{s['from']} → {s['to']}"
        if ea is not None:
            lab += f": E_a = {ea:.3f} eV"
        _fit_line_plot(ax, x, y, yerr, None if ea is None else -ea,
                       None if not a else float(np.log(a)), palette[n % len(palette)], lab)
    ax.set_xlabel("1 / (k_B T) (eV⁻¹)")
    ax.set_ylabel("ln(k / s⁻¹)")
    ax.legend(fontsize=8, frameon=False)
    return fig


def plot_confusion_matrix(
    cm: np.ndarray | Sequence[Sequence[float]],
    classes: Sequence[str] = CLASSES,
    *,
    normalize: bool = True,
    title: str | None = None,
) -> Figure:
    """Confusion matrix (rows = true class, columns = predicted class).

    Parameters
    ----------
    cm : array-like
        ``(K, K)`` counts; extra columns beyond K (e.g. ``unknown``) are allowed if ``classes``
        names them.
    classes : sequence of str
        Class names (rows, then columns).
    normalize : bool
        Show row-normalised fractions (counts are printed too).
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.colors import LinearSegmentedColormap

    m = np.asarray(cm, float)
    rows = m.sum(axis=1, keepdims=True)
    frac = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    cmap = LinearSegmentedColormap.from_list("oi_blue", ["#FFFFFF", OKABE_ITO["blue"]])
    fig = _figure((1.2 + 1.0 * m.shape[1], 1.0 + 0.9 * m.shape[0]))
    ax = fig.add_subplot()
    im = ax.imshow(frac if normalize else m, cmap=cmap, vmin=0, vmax=1 if normalize else None)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            v = frac[i, j]
            txt = f"{v:.2f}\n({int(m[i, j])})" if normalize else f"{int(m[i, j])}"
            ax.text(j, i, txt, ha="center", va="center", fontsize=8,
                    color="white" if v > 0.6 else "black")
    ax.set_xticks(range(m.shape[1]), list(classes)[: m.shape[1]], rotation=30, ha="right")
    ax.set_yticks(range(m.shape[0]), list(classes)[: m.shape[0]])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(im, ax=ax, label="fraction of true class (–)" if normalize else "count")
    if title:
        ax.set_title(title)
    return fig


def plot_reliability(
    probs: np.ndarray,
    labels: np.ndarray,
    *,
    n_bins: int = 10,
    title: str | None = None,
) -> Figure:
    """Reliability diagram: accuracy vs confidence of the top class, with the bins' counts.

    Parameters
    ----------
    probs : ndarray
        ``(N, K)`` predicted class probabilities.
    labels : ndarray
        ``(N,)`` true class indices.
    n_bins : int
        Equal-width confidence bins on [0, 1].
    title : str, optional
        Axes title (the expected calibration error is appended).

    Returns
    -------
    matplotlib.figure.Figure
        Bars on the diagonal mean calibrated probabilities; below it, over-confidence.
    """
    p = np.asarray(probs, float)
    y = np.asarray(labels)
    if p.ndim != 2 or len(p) != len(y) or len(y) == 0:
        raise ValueError("probs must be (N, K) and labels (N,), N > 0")
    conf = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    n = np.bincount(idx, minlength=n_bins)
    acc = np.divide(np.bincount(idx, weights=correct, minlength=n_bins), n,
                    out=np.full(n_bins, np.nan), where=n > 0)
    from clusterspy.model.calibration import expected_calibration_error

    ece = expected_calibration_error(p, y, n_bins)  # the same bins as drawn
    fig = _figure((3.6, 3.4))
    ax = fig.add_subplot()
    centres = 0.5 * (edges[1:] + edges[:-1])
    ax.bar(centres, np.nan_to_num(acc), width=1.0 / n_bins, edgecolor="white",
           color=OKABE_ITO["blue"], label="accuracy")
    ax.plot([0, 1], [0, 1], "--", color=OKABE_ITO["grey"], label="calibrated")
    for c, k, a in zip(centres, n, acc, strict=True):
        if k:  # the bin's count, at the foot of its bar
            ax.text(c, 0.02, str(int(k)), ha="center", va="bottom", fontsize=6, rotation=90,
                    color="white" if a > 0.15 else "black")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="confidence of the top class (–)",
           ylabel="accuracy (–)")
    ax.set_title(f"{title + ': ' if title else ''}ECE {ece:.3f}, n = {len(y)}", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    return fig


def plot_saliency(
    crops: np.ndarray,
    saliency: np.ndarray,
    probabilities: np.ndarray,
    classes: Sequence[str] = CLASSES,
    *,
    titles: Sequence[str] | None = None,
) -> Figure:
    """Each cluster's crop with its saliency map laid over it, a colour bar and a caption.

    Parameters
    ----------
    crops : ndarray
        ``(N, H, W)`` model-input crops.
    saliency : ndarray
        ``(N, H, W)`` saliency in [0, 1] (e.g. :func:`clusterspy.explain.occlusion_saliency`).
    probabilities : ndarray
        ``(N, K)`` class probabilities of the crops.
    classes : sequence of str
        Class names of the K columns.
    titles : sequence of str, optional
        One title per panel (e.g. ``"cluster 7: unknown (low confidence)"`` — the result's final
        label and reason); default ``"k: class p"`` from ``probabilities``.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per crop (magma: how much the top class's probability drops when that patch is
        hidden), a colour bar, and a caption saying so.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    from clusterspy.explain import saliency_overlay

    crops, saliency, probabilities = map(np.asarray, (crops, saliency, probabilities))
    if not (len(crops) == len(saliency) == len(probabilities) > 0):
        raise ValueError("crops, saliency and probabilities need the same number (> 0) of clusters")
    n = len(crops)
    fig = _figure((max(6.5, 2.6 * n + 1.2), 3.6))
    fig.set_layout_engine("none")  # axes are placed by hand (colour bar, caption)
    axes = [fig.add_axes((0.02 + k * 0.84 / n, 0.22, 0.82 / n, 0.64)) for k in range(n)]
    for k, (ax, crop, sal) in enumerate(zip(axes, crops, saliency, strict=True)):
        ax.imshow(saliency_overlay(crop, sal))
        best = int(np.argmax(probabilities[k]))
        title = titles[k] if titles is not None else f"{k}: {classes[best]} {probabilities[k, best]:.2f}"
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    cax = fig.add_axes((0.88, 0.22, 0.018, 0.64))
    fig.colorbar(ScalarMappable(Normalize(0, 1), "magma"), cax=cax, label="saliency (0–1)")
    fig.text(0.02, 0.03, "Occlusion saliency: how much the most probable class's probability drops\n"
             "when a patch of the crop (as the network saw it) is hidden; bright = relied on.",
             fontsize=7, va="bottom")
    return fig


def plot_accuracy_curve(
    x: Sequence[float],
    accuracy: Sequence[float] | Mapping[str, Sequence[float]],
    *,
    xlabel: str,
    ci95: Sequence[Sequence[float]] | Mapping[str, Sequence[Sequence[float]]] | None = None,
    logx: bool = False,
    title: str | None = None,
) -> Figure:
    """Accuracy against a parameter (dose, size, defocus, ...), one or several curves.

    Parameters
    ----------
    x : sequence of float
        Parameter values.
    accuracy : sequence of float or mapping
        Accuracy (0–1) at each x, or ``{curve name: accuracies}``.
    xlabel : str
        x-axis label *with its unit*, e.g. ``"dose (e⁻/Å²)"``.
    ci95 : optional
        ``[(low, high)]`` per x (or a mapping of them per curve).
    logx : bool
        Logarithmic x axis.
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    curves = dict(accuracy) if isinstance(accuracy, Mapping) else {"accuracy": accuracy}
    cis = (dict(ci95) if isinstance(ci95, Mapping) else {"accuracy": ci95}) if ci95 is not None \
        else {}
    fig = _figure((5.5, 3.6))
    ax = fig.add_subplot()
    xs = np.asarray(x, float)
    palette = [OKABE_ITO[k] for k in ("blue", "orange", "bluish_green", "vermillion",
                                      "reddish_purple", "sky_blue", "black")]
    for n, (name, acc) in enumerate(curves.items()):
        a = np.asarray(acc, float)
        yerr = None
        if cis.get(name) is not None:
            c = np.asarray(cis[name], float)
            yerr = np.vstack([np.clip(a - c[:, 0], 0, None), np.clip(c[:, 1] - a, 0, None)])
        ax.errorbar(xs, a, yerr=yerr, fmt="o-", color=palette[n % len(palette)], label=name,
                    capsize=3, ms=4)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (–)")
    ax.set_ylim(0, 1.02)
    if len(curves) > 1:
        ax.legend(fontsize=8, frameon=False)
    if title:
        ax.set_title(title)
    return fig


#: Longest side [px] of the image drawn in an overlay: larger frames are block-averaged down to it,
#: so a 16384² frame costs a few MB of figure, not GB (clusters get zoom panels instead).
OVERLAY_MAX_PX = 2048
#: At most this many zoom panels (the first clusters by number) below an overlay.
OVERLAY_MAX_ZOOMS = 8


def display_binned(data: Any, max_px: int = OVERLAY_MAX_PX) -> tuple[np.ndarray, int]:
    """Block-mean ``data`` down to at most ``max_px`` on its long side, a strip at a time.

    Parameters
    ----------
    data : array-like (rows, cols)
        The frame (a NumPy array or a memory map; read one strip of rows at a time).
    max_px : int
        Longest side of the result [px].

    Returns
    -------
    binned : numpy.ndarray of float32
        ``(rows // f, cols // f)``; the last ``rows % f`` rows and ``cols % f`` columns are left out.
    f : int
        Binning factor (input pixels per output pixel along each axis).
    """
    rows, cols = np.shape(data)
    f = max(1, -(-max(rows, cols) // max_px))
    r2, c2 = rows // f, cols // f
    out = np.empty((r2, c2), np.float32)
    step = max(1, (1 << 24) // max(1, f * f * c2))  # output rows per strip: ~16 M input pixels
    for i in range(0, r2, step):
        j = min(r2, i + step)
        block = np.asarray(data[i * f:j * f, :c2 * f], dtype=np.float32)
        out[i:j] = block.reshape(j - i, f, c2, f).mean(axis=(1, 3))
    return out, f


def _label_text(r: Any, crowded: bool) -> str:
    reason = getattr(r, "reason", None)
    if reason is None:
        return f"{r.cluster}: {r.label} {r.confidence:.2f}"
    return f"{r.cluster}" if crowded else f"{r.cluster}: unknown ({reason.replace('_', ' ')})"


def _draw_clusters(ax: Any, results: Sequence[Any], px: float, side_px: float, fontsize: float,
                   crowded: bool, labels: bool = True) -> None:
    from matplotlib.patches import Circle, Rectangle

    for r in results:
        colour = _colour(r.label)
        d_nm = getattr(r, "diameter_nm", None)
        if d_nm:
            half = 0.5 * d_nm * 10.0 / px  # the particle's equivalent circle, from detection
            ax.add_patch(Circle((r.x_px, r.y_px), half, fill=False, lw=1.5, ec=colour))
        else:
            half = side_px / 2
            ax.add_patch(Rectangle((r.x_px - half, r.y_px - half), 2 * half, 2 * half,
                                   fill=False, lw=1.5, ec=colour))
        if not labels:
            continue
        ax.text(r.x_px - half, r.y_px - half, _label_text(r, crowded), color="white" if
                r.label != "unknown" else "black", fontsize=fontsize, va="bottom", ha="left", clip_on=True,
                bbox={"facecolor": colour, "alpha": 0.9, "pad": 1.5, "lw": 0})


def _scale_bar(ax: Any, x0: float, y0: float, width_px: float, px: float, fontsize: float) -> None:
    """A white bar of a round number of nm (about a fifth of ``width_px``) with its length."""
    bar_A = _round_length(0.2 * width_px * px)
    ax.plot([x0, x0 + bar_A / px], [y0, y0], color="white", lw=3, solid_capstyle="butt")
    ax.annotate(f"{bar_A / 10:g} nm", (x0, y0), xytext=(0, 4), textcoords="offset points", color="white",
                fontsize=fontsize, va="bottom", bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "lw": 0})


def plot_overlay(
    image: Any,
    results: Sequence[Any],
    *,
    box_A: float | None = None,
    title: str | None = None,
    max_px: int = OVERLAY_MAX_PX,
    max_zooms: int = OVERLAY_MAX_ZOOMS,
) -> Figure:
    """The frame with every cluster's outline, number, label and confidence; zoom panels when small.

    The frame is drawn block-averaged to at most ``max_px`` on its long side (memory stays a
    few MB whatever the frame's size). Each cluster gets its equivalent circle from detection
    (``diameter_nm``) in its label's Okabe–Ito colour and a label on a filled background; a
    scale bar in nm and a legend of the colours. When a cluster is drawn smaller than ~40 screen
    pixels, the first ``max_zooms`` clusters also get a panel at full resolution.

    Parameters
    ----------
    image : clusterspy.Image
        The frame the results belong to (its pixel size [Å/px] sets the scale bars).
    results : sequence of ClusterResult
        Results of :func:`clusterspy.classify` for this frame.
    box_A : float, optional
        Side [Å] of the box drawn for a result without a diameter; default: a quarter of the
        frame.
    title : str, optional
        Title of the figure.
    max_px : int
        Longest side [px] of the frame as drawn.
    max_zooms : int
        At most this many zoom panels.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.patches import Patch

    px = float(image.pixel_size_A)
    rows, cols = np.shape(image.data)
    small, f = display_binned(image.data, max_px)
    lo, hi = np.percentile(small, [0.5, 99.8])
    width_in = float(np.clip(max(rows, cols) / 110.0, 6.0, 14.0))
    screen_per_px = width_in * 110.0 / max(rows, cols)  # figure pixels per image pixel (dpi 110)
    diam_px = [float(r.diameter_nm) * 10.0 / px for r in results if getattr(r, "diameter_nm", None)]
    zooms = list(results)[:max_zooms] if diam_px and min(diam_px) * screen_per_px < 40 else []
    n_z = len(zooms)
    zoom_cols = min(n_z, 4)
    zoom_rows = -(-n_z // 4) if n_z else 0
    panel_in = width_in / 4
    height_in = width_in * rows / cols + 0.45 + zoom_rows * (panel_in + 0.3)
    fig = _figure((width_in + 0.2, height_in))
    fig.set_layout_engine("none")  # fixed margins: the constrained layout took 2/3 of the drawing time
    title_in, gap_in = 0.4, 0.3  # room for the figure title and each zoom panel's title [inch]
    heights = [width_in * rows / cols, *[panel_in] * zoom_rows]
    grid = fig.add_gridspec(1 + zoom_rows, max(1, zoom_cols) if n_z else 1, height_ratios=heights,
                            left=0.1 / (width_in + 0.2), right=1 - 0.1 / (width_in + 0.2),
                            bottom=0.05 / height_in, top=1 - title_in / height_in,
                            hspace=gap_in / (sum(heights) / len(heights)), wspace=0.05)
    ax = fig.add_subplot(grid[0, :])
    ax.imshow(small, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest",
              extent=(-0.5, small.shape[1] * f - 0.5, small.shape[0] * f - 0.5, -0.5))
    fs = 8.0 if width_in < 9 else 10.0
    side_px = (box_A / px) if box_A else 0.25 * min(rows, cols)
    _draw_clusters(ax, results, px, side_px, fs, crowded=len(results) > 12)
    _scale_bar(ax, cols * 0.04, rows * 0.95, cols, px, fs)
    labels = [c for c in (*CLASSES, "unknown") if any(r.label == c for r in results)]
    handles = [Patch(facecolor=_colour(c), label=c) for c in labels]
    if handles:
        ax.legend(handles=handles, loc="best", fontsize=fs, framealpha=0.85,
                  title="circle: particle outline\n(detection, equiv. diameter)", title_fontsize=fs - 1)
    ax.set_axis_off()
    title = (title or "").replace("$", r"\$")  # a file name is text, not mathtext
    ax.set_title(f"{title + ' — ' if title else ''}{len(results)} cluster(s), {cols}×{rows} px at "
                 f"{px:g} Å/px" + (f" (drawn binned {f}×{f})" if f > 1 else ""), fontsize=fs + 1)
    for k, r in enumerate(zooms):
        _zoom_panel(fig.add_subplot(grid[1 + k // 4, k % 4]), image, r, px, side_px)
    return fig


def _zoom_panel(ax: Any, image: Any, r: Any, px: float, side_px: float) -> None:
    """One cluster at full resolution: a window of 3 diameters (≥ 64 px) around its centre."""
    rows, cols = np.shape(image.data)
    d_px = float(r.diameter_nm) * 10.0 / px if getattr(r, "diameter_nm", None) else side_px
    half = int(max(32, 1.5 * d_px))
    r0, r1 = max(0, int(r.y_px) - half), min(rows, int(r.y_px) + half)
    c0, c1 = max(0, int(r.x_px) - half), min(cols, int(r.x_px) + half)
    crop = np.asarray(image.data[r0:r1, c0:c1], dtype=np.float32)
    lo, hi = np.percentile(crop, [0.5, 99.8])
    ax.imshow(crop, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest",
              extent=(c0 - 0.5, c1 - 0.5, r1 - 0.5, r0 - 0.5))
    _draw_clusters(ax, [r], px, side_px, 7.0, crowded=True, labels=False)  # the title says it
    _scale_bar(ax, c0 + 0.05 * (c1 - c0), r0 + 0.93 * (r1 - r0), c1 - c0, px, 7.0)
    reason = getattr(r, "reason", None)
    text = (f"{r.label} {r.confidence:.2f}" if reason is None
            else f"unknown: {reason.replace('_', ' ')}")
    ax.set_title(f"cluster {r.cluster}: {text}", fontsize=8, color=_colour(r.label) if reason is None
                 else "black")
    ax.set_axis_off()


def _round_length(length_A: float) -> float:
    """The largest 1-2-5 × 10ⁿ length [Å] not above ``length_A``."""
    exponent = np.floor(np.log10(length_A))
    for mantissa in (5, 2, 1):
        if mantissa * 10**exponent <= length_A:
            return float(mantissa * 10**exponent)
    return float(10**exponent)


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = 120) -> Path:
    """Save ``fig`` as a PNG at ``path`` atomically (:func:`clusterspy.io.write_bytes_atomic`)."""
    import io

    from clusterspy.io import write_bytes_atomic

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return write_bytes_atomic(target, buf.getvalue())


def plot_structure_fit(image: Any, fit: Any, note: str | None = None) -> Figure:
    """Data | best model simulated | residual | the 3D model along and across the beam.

    Parameters
    ----------
    image : Image
        The fitted image (``fit.window`` selects the cluster's window of it).
    fit : clusterspy.fit.StructureFit
        A fit with a model (``fit.atoms`` and ``fit.simulated`` set).
    note : str, optional
        A second title line, e.g. what the fit says of the network's label ("network:
        decahedral 0.99 · fit agrees").
    """
    r0, c0, r1, c1 = fit.window
    px = image.pixel_size_A
    data = np.asarray(image.data[r0:r1, c0:c1], dtype=float)
    sim = np.asarray(fit.simulated.data, dtype=float)
    f = round(fit.simulated.pixel_size_A / px)  # the fit bins fine data by f
    if f > 1:
        data = data.reshape(data.shape[0] // f, f, data.shape[1] // f, f).mean(axis=(1, 3))
    extent = (c0 * px, c1 * px, r1 * px, r0 * px)  # Å, rows downwards
    fig = _figure((15.0, 3.6))
    axes = fig.subplots(1, 5)
    lo, hi = np.percentile(data, [0.5, 99.5])
    for ax, img, title in ((axes[0], data, "data"), (axes[1], sim, "best model, simulated")):
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, extent=extent)
        ax.set_title(title, fontsize=9)
    res = data - sim
    spec = (fit.simulated.metadata or {}).get("left_out_px", [])
    if spec:
        from clusterspy.fit.api import left_out_pixels

        res[left_out_pixels(res.shape, spec)] = np.nan  # other clusters: not fitted
    lim = float(np.nanpercentile(np.abs(res), 99.5)) if np.isfinite(res).any() else 1.0
    lim = lim or 1.0
    im = axes[2].imshow(res, cmap="RdBu_r", vmin=-lim, vmax=lim, extent=extent)
    axes[2].set_title("residual (data − model)" + ("\nblank: other clusters, not fitted" if spec else ""),
                      fontsize=9)
    fig.colorbar(im, ax=axes[2], shrink=0.8)
    pos = fit.atoms.positions
    z = pos[:, 2]
    order = np.argsort(z)[::-1]  # the entrance surface (small z) drawn last, on top
    sc = axes[3].scatter(pos[order, 0], pos[order, 1], c=z[order], s=9, cmap="viridis",
                         edgecolors="k", linewidths=0.2)
    axes[3].set_xlim(extent[0], extent[1])
    axes[3].set_ylim(extent[2], extent[3])
    axes[3].set_title(f"model along the beam ({fit.zone_axis or 'no zone axis'})", fontsize=9)
    fig.colorbar(sc, ax=axes[3], shrink=0.8, label="z (Å)")
    side = np.argsort(pos[:, 1])
    axes[4].scatter(pos[side, 0], z[side], c=pos[side, 1], s=9, cmap="cividis", edgecolors="k",
                    linewidths=0.2)
    axes[4].set_xlim(extent[0], extent[1])
    axes[4].invert_yaxis()
    axes[4].set_title("model across the beam (beam ↓)", fontsize=9)
    axes[4].set_ylabel("z (Å)")
    for ax in axes:
        ax.set_xlabel("x (Å)")
        ax.set_aspect("equal")
    for ax in axes[:4]:
        ax.set_ylabel("y (Å)")
    others = sorted(fit.alternatives.items(), key=lambda kv: -kv[1]["ncc"])
    why = (" (no lattice fringes, and no crystal fits better by ≥ 0.03)"
           if fit.isomer == "amorphous" else f" ({fit.reason})" if fit.reason else "")
    fig.suptitle(f"cluster {fit.cluster}: {fit.isomer}{why} — {fit.form}, {fit.n_atoms} atoms, "
                 f"zone axis {fit.zone_axis or 'none (> 5° from any)'}, NCC {fit.ncc:.3f}; others: "
                 + ", ".join(f"{k} {v['ncc']:.3f}" for k, v in others)
                 + ("" if note is None else f"\n{note}"), fontsize=10)
    return fig
