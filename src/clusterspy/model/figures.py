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
        for key, lab, c in [("train_loss", "train (fast)", "#0072B2"),
                            ("cal_loss", "held-out (fast)", "#E69F00"),
                            ("val_prism_loss", "validation (PRISM)", "#009E73")]:
            y = [h.get(key) for h in history]
            if any(v is not None for v in y):
                a1.plot(ep, [np.nan if v is None else v for v in y], "o-", label=lab, color=c)
        for key, lab, c in [("train_acc", "train (fast)", "#0072B2"),
                            ("cal_acc", "held-out (fast)", "#E69F00"),
                            ("val_prism_acc", "validation (PRISM)", "#009E73")]:
            y = [h.get(key) for h in history]
            if any(v is not None for v in y):
                a2.plot(ep, [np.nan if v is None else v for v in y], "o-", label=lab, color=c)
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
    """Confusion matrix ``cm[true, predicted]`` as a labelled heat map (counts)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    labels = list(CLASSES)[: cm.shape[1]] + (["unknown"] if cm.shape[1] > len(CLASSES) else [])
    fig, ax = plt.subplots(figsize=(4.6, 4))
    im = ax.imshow(cm, cmap="viridis")
    ax.set_xticks(range(cm.shape[1]), labels, rotation=35, ha="right")
    ax.set_yticks(range(cm.shape[0]), list(CLASSES)[: cm.shape[0]])
    ax.set(xlabel="predicted", ylabel="true", title=title)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] < cm.max() / 2 else "black", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
