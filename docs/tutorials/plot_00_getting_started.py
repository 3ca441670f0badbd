"""
Getting started: the built-in example series
============================================

ClusterSpy ships a short simulated HAADF-STEM "video" of one Au cluster (~309 atoms on 30 Å of
amorphous carbon, 0.3 Å/px, 0.5 s per frame) that changes isomer icosahedral → decahedral → fcc →
icosahedral. ``clusterspy demo`` classifies it; here we do the same from Python and compare the
labels with the truth the simulation recorded.
"""

# %%
# The example: frames, pixel size and the true isomer of every frame
# -------------------------------------------------------------------
import csv
import tempfile
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from clusterspy.workflows import EXAMPLE_SERIES, run_demo

with np.load(EXAMPLE_SERIES, allow_pickle=False) as example:
    frames = example["frames"]
    pixel_size_A = float(example["pixel_size_A"])
    truth = [str(t) for t in example["true_labels"]]
print(f"{frames.shape[0]} frames of {frames.shape[1]}×{frames.shape[2]} px at {pixel_size_A} Å/px")

fig, axes = plt.subplots(1, 4, figsize=(10, 2.9), layout="constrained")
for ax, i in zip(axes, np.linspace(0, len(frames) - 1, 4).astype(int), strict=True):
    extent_nm = np.array([0, frames.shape[2], frames.shape[1], 0]) * pixel_size_A / 10
    ax.imshow(frames[i], cmap="gray", extent=extent_nm)
    ax.set_title(f"frame {i}: {truth[i]}", fontsize=9)
    ax.set_xlabel("x [nm]")
axes[0].set_ylabel("y [nm]")

# %%
# Classify it (what ``clusterspy demo --out DIR`` does)
# -----------------------------------------------------
# :func:`clusterspy.workflows.run_demo` calls :func:`clusterspy.classify_series` and writes
# ``results.csv`` (a label per frame, beside the true label) and ``report.html``.
out = Path(tempfile.mkdtemp()) / "demo_output"
report = run_demo(out)
print("written:", sorted(p.name for p in out.iterdir()))

with open(out / "results.csv", newline="", encoding="utf-8") as fh:
    rows = list(csv.DictReader(fh))
raw = Counter("right" if r["label"] == r["true_label"] else
              ("unknown" if r["label"] in ("unknown", "lost", "blurred") else "wrong") for r in rows)
smooth = Counter(r["smoothed_label"] == r["true_label"] for r in rows)
print(f"per-frame labels: {raw['right']} right, {raw['unknown']} unknown, {raw['wrong']} wrong "
      f"of {len(rows)}")
print(f"HMM-smoothed labels equal to the truth: {smooth[True]} of {len(rows)}")

# %%
# The label of every frame against the truth
# ------------------------------------------
# ``strip.png`` of the report shows the same; here it is drawn from ``results.csv``.
classes = ["icosahedral", "decahedral", "fcc", "amorphous", "unknown"]
code = {c: i for i, c in enumerate(classes)}
t = [float(r["time_s"]) for r in rows]
fig, ax = plt.subplots(figsize=(8, 2.8), layout="constrained")
ax.step(t, [code[r["true_label"]] for r in rows], where="mid", color="0.6", lw=4, label="truth")
ax.plot(t, [code.get(r["label"], 4) for r in rows], "o", color="#0072B2", ms=4, label="per frame")
ax.step(t, [code.get(r["smoothed_label"], 4) for r in rows], where="mid", color="#D55E00",
        label="HMM-smoothed")
ax.set_yticks(range(len(classes)), classes)
ax.set_xlabel("time [s]")
ax.legend(loc="upper right", fontsize=8)
print("report:", report.relative_to(out.parent))
