"""
A video: ``clusterspy series`` → labels per frame, statistics and a report
==========================================================================

A series (a multi-frame file: .emd, .dm4 stacks, multi-page TIFF, .npy, ...) is read frame by
frame, the clusters are tracked, every frame classified in batches, and the labels smoothed with an
isomer hidden Markov model (a cluster rarely changes isomer between two frames). The output folder
holds ``frames.csv`` (a row per frame and cluster), ``summary.json`` (isomer proportions with
95 % intervals, transitions, dwell times), ``strip.png`` and ``report.html``.

Here the "video" is the built-in example series written as a calibrated ImageJ TIFF stack, as a
microscope's software would export it.
"""

# %%
# Write the video
# ---------------
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import tifffile

from clusterspy.workflows import EXAMPLE_SERIES

with np.load(EXAMPLE_SERIES, allow_pickle=False) as example:
    frames = example["frames"]
    pixel_size_A = float(example["pixel_size_A"])  # Å/px
    frame_time_s = float(example["frame_time_s"])  # s
    truth = [str(t) for t in example["true_labels"]]

work = Path(tempfile.mkdtemp())
video = work / "video.tif"
# ImageJ convention: resolution in pixels per unit, the unit Å.
tifffile.imwrite(video, frames, imagej=True, resolution=(1 / pixel_size_A, 1 / pixel_size_A),
                 metadata={"unit": "angstrom", "axes": "TYX"})
print(f"{video.name}: {frames.shape[0]} frames, {pixel_size_A} Å/px, {frame_time_s} s per frame")

# %%
# Classify the series
# -------------------
# ``--frame-time`` gives the time axis (s) when the file does not record it.
out = work / "run1"
done = subprocess.run([sys.executable, "-m", "clusterspy", "series", str(video),
                       "--frame-time", str(frame_time_s), "--out", str(out)],
                      capture_output=True, text=True)
print(done.stdout.replace(str(work) + "/", ""))
print("exit status:", done.returncode)
print(sorted(p.name for p in out.iterdir()))

# %%
# The statistics of ``summary.json``
# ----------------------------------
summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
cluster = summary["clusters"][0]
method = summary.get("interval_method_description") or cluster["smoothed"].get("interval_method_description")
print("smoothed isomer proportions with 95 % intervals;", method or "")
for isomer, p in cluster["smoothed"]["proportions"].items():
    lo, hi = p["ci95"]
    print(f"  {isomer:<12} {p['value']:.2f}  [{lo:.2f}, {hi:.2f}]  ({p['count']} frames)")
true_share = {c: truth.count(c) / len(truth) for c in dict.fromkeys(truth)}
print("true shares of the simulation:", {k: round(v, 2) for k, v in true_share.items()})
print("transition counts (rows: from, cols: to, smoothed):",
      cluster["smoothed"]["transition_counts"])

# %%
# The label of every frame, and the truth
# ---------------------------------------
# ``strip.png`` is the figure the report shows: raw labels (with their confidence) and the
# HMM-smoothed path along the time axis.
fig, ax = plt.subplots(figsize=(9, 3.2), layout="constrained")
ax.imshow(plt.imread(out / "strip.png"))
ax.set_axis_off()
with open(out / "frames.csv", newline="", encoding="utf-8") as fh:
    smoothed = [row["smoothed_label"] for row in csv.DictReader(fh)]
print("frames whose smoothed label equals the truth:",
      sum(a == b for a, b in zip(smoothed, truth, strict=True)), "of", len(truth))
print("report:", (out / "report.html").relative_to(work))
