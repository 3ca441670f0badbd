"""Figures: standalone Figures (no pyplot state), Okabe–Ito colours, labelled axes."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_hex

from clusterspy import plots
from clusterspy.isomers import CLASSES


@pytest.fixture(autouse=True)
def _no_pyplot_leak():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before


def _check_axes(fig):
    from matplotlib.figure import Figure

    assert isinstance(fig, Figure)
    axes = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    for ax in axes:
        assert ax.get_xlabel() or ax.get_shared_x_axes().get_siblings(ax) != [ax]
        assert ax.get_ylabel()
    png = plots.figure_to_png(fig) if hasattr(plots, "figure_to_png") else None
    if png is None:
        from clusterspy.report import figure_to_png

        png = figure_to_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_strip_plot_rows_and_colours():
    frames = np.arange(30)
    raw = np.array(["icosahedral"] * 10 + ["unknown"] + ["decahedral"] * 9 + ["lost"] * 2
                   + ["fcc"] * 8, dtype=object)
    sm = raw.copy()
    sm[10] = "icosahedral"
    fig = plots.plot_strip(frames, raw, sm, title="t")
    _check_axes(fig)
    top, bottom = fig.axes[:2]
    assert [t.get_text() for t in top.get_yticklabels()] == ["ico", "dec", "fcc", "amo", "unk"]
    assert bottom.get_xlabel() == "frame number"
    colours = {to_hex(c.get_facecolor()[0]) for c in top.collections}
    assert plots.ISOMER_COLOURS["icosahedral"].lower() in colours
    assert set(plots.ISOMER_COLOURS.values()) <= {v for v in plots.OKABE_ITO.values()}
    # the smoothed panel's line joins isomer labels only: it never runs down to the "unk" row at the
    # lost frames (a newcomer read such drops as transitions)
    (line,) = bottom.get_lines()
    y = np.asarray(line.get_ydata(), float)
    assert np.isnan(y).sum() > 0 and np.nanmin(y) > 0  # row 0 is "unk"


def test_proportions_and_temperature_plots():
    fig = plots.plot_proportions({c: 0.25 for c in CLASSES},
                                 {c: (0.2, 0.3) for c in CLASSES})
    _check_axes(fig)
    assert "proportion" in fig.axes[0].get_ylabel()
    fig = plots.plot_proportions_vs_temperature([300, 400], {"fcc": [0.7, 0.6]},
                                                {"fcc": [(0.6, 0.8), (0.5, 0.7)]})
    _check_axes(fig)
    assert "(K)" in fig.axes[0].get_xlabel()


def test_van_t_hoff_and_arrhenius_plots_draw_fits():
    t = [300.0, 400.0, 500.0]
    fig = plots.plot_van_t_hoff([{
        "isomer": "decahedral", "reference": "fcc", "temperatures_K": t,
        "ln_ratio": [-1.5, -1.1, -0.9], "ln_ratio_ci95": [(-1.7, -1.3)] * 3,
        "delta_E_eV": 0.04, "delta_S_kB": 0.0}])
    _check_axes(fig)
    assert "eV" in fig.axes[0].get_xlabel()
    assert len(fig.axes[0].lines) >= 1  # the fitted line
    fig = plots.plot_arrhenius([{
        "from": "fcc", "to": "decahedral", "temperatures_K": t, "rate_per_s": [0.1, 1.0, 5.0],
        "rate_ci95_per_s": [(0.05, 0.2), (0.8, 1.2), (4, 6)], "barrier_eV": 0.3,
        "prefactor_per_s": 1e4}])
    _check_axes(fig)
    assert "s⁻¹" in fig.axes[0].get_ylabel()


def test_confusion_matrix_and_accuracy_curve():
    cm = np.array([[9, 1, 0, 0], [0, 8, 2, 0], [0, 0, 10, 0], [1, 0, 0, 9]])
    fig = plots.plot_confusion_matrix(cm, CLASSES)
    _check_axes(fig)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    texts = [t.get_text() for t in ax.texts]
    assert "0.80\n(8)" in texts
    fig = plots.plot_accuracy_curve([10, 100, 1000], {"raw": [0.5, 0.8, 0.95],
                                                      "smoothed": [0.6, 0.9, 0.99]},
                                    xlabel="dose (e⁻/Å²)", logx=True)
    _check_axes(fig)
    assert fig.axes[0].get_xscale() == "log"


def test_reliability_diagram_shows_accuracy_per_confidence_bin():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 500)
    probs = np.full((500, 4), 0.1)
    probs[np.arange(500), labels] = 0.7  # 70 % confident ...
    wrong = rng.random(500) < 0.5  # ... but right only half the time
    probs[wrong] = np.roll(probs[wrong], 1, axis=1)
    fig = plots.plot_reliability(probs, labels, n_bins=10)
    _check_axes(fig)
    ax = fig.axes[0]
    heights = [b.get_height() for b in ax.patches]
    assert len(heights) == 10 and abs(heights[6] - 0.5) < 0.06  # the 0.6-0.7 bin
    assert "ECE 0.2" in ax.get_title()  # |0.7 - ~0.5|
    with pytest.raises(ValueError):
        plots.plot_reliability(probs[:3], labels)


def test_saliency_panels_are_titled_with_the_top_class():
    rng = np.random.default_rng(2)
    crops = rng.random((2, 16, 16))
    sal = np.zeros((2, 16, 16))
    sal[:, 4:8, 4:8] = 1.0
    probs = np.array([[0.1, 0.7, 0.1, 0.1], [0.05, 0.05, 0.05, 0.85]])
    fig = plots.plot_saliency(crops, sal, probs)
    assert [ax.get_title() for ax in fig.axes[:2]] == ["0: decahedral 0.70", "1: amorphous 0.85"]
    assert fig.axes[2].get_ylabel() == "saliency (0–1)"  # the colour bar
    assert any("Occlusion saliency" in t.get_text() for t in fig.texts)  # the caption
    titled = plots.plot_saliency(crops, sal, probs, titles=["cluster 7: unknown", "cluster 9: fcc 0.95"])
    assert [ax.get_title() for ax in titled.axes[:2]] == ["cluster 7: unknown", "cluster 9: fcc 0.95"]
    with pytest.raises(ValueError):
        plots.plot_saliency(crops, sal[:1], probs)
