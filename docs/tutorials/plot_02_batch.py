"""
A batch of files: ``clusterspy classify FOLDER --out DIR``
==========================================================

A folder of calibrated images is classified in one command. Each file is one task whose results are
written as soon as it is done (a rerun with the same ``--out`` skips the files already done); the
output folder holds ``results.csv`` / ``results.json`` (a row per cluster), ``files.csv`` (a row per
file, with its pixel size, where that came from, and why a file failed) and an overlay PNG per
image.

The images are made with ``clusterspy simulate`` (fast backend, Poisson noise at 3·10⁴ e⁻/Å²), one
Au₃₀₉ cluster of each crystalline isomer; a PNG without any pixel size is added to show how a bad file is
reported without stopping the batch.
"""

# %%
# Make the images
# ---------------
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from clusterspy.workflows import simulate_to_file


def clusterspy(*args: str) -> subprocess.CompletedProcess:
    """Run the ``clusterspy`` command line (as a user would in a shell)."""
    return subprocess.run([sys.executable, "-m", "clusterspy", *args], capture_output=True, text=True)


folder = Path(tempfile.mkdtemp()) / "images"
folder.mkdir()
# In a shell, each image is ``clusterspy simulate --motif MOTIF --size 309 --pixel-size 0.3
# --extent 40 --dose 3e4 --seed N --out MOTIF.tif``; here the function behind that command is
# called directly, which saves starting Python four times.
# (Amorphous clusters are left out: relaxing a glassy Au309 takes ~20 s of CPU.)
for seed, motif in enumerate(["icosahedral", "decahedral", "fcc"]):
    path = simulate_to_file(motif=motif, size=309, element="Au", backend="fast", energy_keV=200,
                            semiangle_mrad=25, pixel_size_A=0.3, extent_A=40, dose_e_per_A2=3e4,
                            seed=seed + 1, out=folder / f"{motif}.tif")
    print("written:", path.name)

# A PNG has no calibration: ClusterSpy refuses to guess its pixel size.
plt.imsave(folder / "no_pixel_size.png", np.random.default_rng(0).random((64, 64)), cmap="gray")

# %%
# Classify the folder
# -------------------
out = folder.parent / "results"
done = clusterspy("classify", str(folder), "--out", str(out), "--workers", "1")
print(done.stdout)
print(done.stderr.replace(str(folder) + "/", ""))
print("exit status:", done.returncode, "(3: some files failed, the others are written)")
print(sorted(p.name for p in out.iterdir()))

# %%
# One row per file
# ----------------
with open(out / "files.csv", newline="", encoding="utf-8") as fh:
    for row in csv.DictReader(fh):
        px = row["pixel_size_A"] or "—"
        print(f"{Path(row['file']).name:>18}  {row['status']:<7} pixel size {px:>5} Å/px "
              f"({row['pixel_size_source'] or '—'})  {row['message']}")

# %%
# One row per cluster
# -------------------
with open(out / "results.csv", newline="", encoding="utf-8") as fh:
    rows = list(csv.DictReader(fh))
for row in rows:
    conf = f"{float(row['confidence']):.3f}" if row["confidence"] else "—"
    print(f"{Path(row['file']).name:>16}: {row['label']:<12} confidence {conf:<6} "
          f"d = {float(row['diameter_nm']):.2f} nm  reason: {row['reason'] or '—'}")

# %%
# The overlays written beside the results
# ---------------------------------------
overlays = sorted(out.glob("*_overlay.png"))
fig, axes = plt.subplots(1, len(overlays), figsize=(3 * len(overlays), 3.2), layout="constrained")
for ax, png in zip(np.atleast_1d(axes), overlays, strict=True):
    ax.imshow(plt.imread(png))
    ax.set_title(png.name, fontsize=8)
    ax.set_axis_off()
