"""Training figures: loss / accuracy curves and a confusion matrix (matplotlib, Agg)."""

from __future__ import annotations

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
    """Save :func:`clusterspy.plots.plot_confusion_matrix` of ``cm[true, predicted]`` as a PNG."""
    from clusterspy.plots import plot_confusion_matrix, save_figure

    cm = np.asarray(cm)
    classes = list(CLASSES) + (["unknown"] if cm.shape[1] > len(CLASSES) else [])
    return save_figure(plot_confusion_matrix(cm, classes, title=title or None), path, dpi=110)
