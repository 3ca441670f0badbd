"""Training figures: loss / accuracy curves and a confusion matrix (matplotlib, Agg)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.isomers import CLASSES


def plot_training(out_dir: str | Path, history: list[dict[str, Any]],
                  confusion: list[list[int]] | None = None) -> list[Path]:
    """Write ``loss_curves.png`` and (if given) ``confusion_prism_val.png`` into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    paths = []
    if history:
        ep = [h["epoch"] for h in history]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
        curves = [("train", "train (fast)", "#0072B2"), ("cal", "held-out (fast)", "#E69F00"),
                  ("val_prism", "validation (PRISM)", "#009E73")]
        for ax, metric in ((a1, "loss"), (a2, "acc")):
            for key, lab, c in curves:
                y = [h.get(f"{key}_{metric}") for h in history]
                if any(v is not None for v in y):
                    ax.plot(ep, [np.nan if v is None else v for v in y], "o-", label=lab, color=c)
        a1.set(xlabel="epoch", ylabel="cross-entropy loss")
        a2.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02))
        a1.legend(fontsize=8)
        a2.legend(fontsize=8)
        fig.tight_layout()
        p = out / "loss_curves.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    if confusion is not None:
        p = out / "confusion_prism_val.png"
        plot_confusion(np.asarray(confusion), p, title="PRISM validation")
        paths.append(p)
    return paths


def plot_confusion(cm: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Save the confusion matrix ``cm[true, predicted]`` (row fractions and counts) as a PNG.

    Drawn here with matplotlib, like :func:`clusterspy.plots.plot_confusion_matrix` (the core
    never imports a face); written atomically (temporary file, then rename).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LinearSegmentedColormap
    from matplotlib.figure import Figure

    m = np.asarray(cm, float)
    classes = list(CLASSES) + (["unknown"] if m.shape[1] > len(CLASSES) else [])
    rows = m.sum(axis=1, keepdims=True)
    frac = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    fig = Figure(figsize=(1.2 + 1.0 * m.shape[1], 1.0 + 0.9 * m.shape[0]), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cmap = LinearSegmentedColormap.from_list("oi_blue", ["#FFFFFF", "#0072B2"])  # Okabe-Ito blue
    im = ax.imshow(frac, cmap=cmap, vmin=0, vmax=1)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{frac[i, j]:.2f}\n({int(m[i, j])})", ha="center", va="center", fontsize=8,
                    color="white" if frac[i, j] > 0.6 else "black")
    ax.set_xticks(range(m.shape[1]), classes[: m.shape[1]], rotation=30, ha="right")
    ax.set_yticks(range(m.shape[0]), classes[: m.shape[0]])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(im, ax=ax, label="fraction of true class (–)")
    if title:
        ax.set_title(title)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", dpi=110)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
