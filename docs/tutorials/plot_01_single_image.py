"""
One image: classify every cluster, and read why a label is "unknown"
====================================================================

We simulate a HAADF-STEM image of a Au decahedron with ClusterSpy's fast simulator (an incoherent
model whose parameters were fitted to abTEM's PRISM), classify it, and look at what the result says.
Then we degrade the same image until the model can no longer judge it — and it says so instead of
guessing.

Simulating needs the ``train`` extra (ASE); classifying needs only the light install.
"""

# %%
# Simulate a cluster on amorphous carbon
# --------------------------------------
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Circle
from scipy import ndimage

import clusterspy
from clusterspy.simulation import Acquisition, Microscope, simulate
from clusterspy.structures import carbon_support, cluster

rng = np.random.default_rng(7)
pixel_size_A = 0.3  # Å/px
extent_A = 60.0  # field of view [Å]
atoms = cluster("decahedral", 309, "Au", rng=rng, orientation="5-fold")
microscope = Microscope(energy_keV=200, semiangle_mrad=25, detector_mrad=(70, 200), source_size_A=0.6)
image = simulate(atoms, microscope, pixel_size=pixel_size_A, extent=extent_A, rng=rng,
                 acquisition=Acquisition(dose_e_per_A2=3e4, jitter_px=0.3, background=0.002),
                 support=carbon_support(extent_A + 4, 30.0, rng=rng))
print(image.shape, "px at", image.pixel_size_A, "Å/px;", len(atoms), "Au atoms")

# %%
# Classify it
# -----------
# :func:`clusterspy.classify` takes a file, a HyperSpy signal, an :class:`~clusterspy.image.Image`
# (which carries its pixel size) or a bare array with ``pixel_size_A``.
results = clusterspy.classify(image)
for r in results:
    probs = ", ".join(f"{k} {v:.3f}" for k, v in (r.probabilities or {}).items())
    print(f"cluster {r.cluster}: {r.label} (reason {r.reason}), d = {r.diameter_nm:.2f} nm, "
          f"confidence {r.confidence}, p = [{probs}]")


def show(ax, img, results, title):
    """The image in nm with each cluster circled and labelled."""
    ext = np.array([0, img.shape[1], img.shape[0], 0]) * img.pixel_size_A / 10
    ax.imshow(img.data, cmap="gray", extent=ext)
    for r in results:
        x, y = r.x_px * img.pixel_size_A / 10, r.y_px * img.pixel_size_A / 10
        colour = "#009E73" if r.reason is None else "#D55E00"
        ax.add_patch(Circle((x, y), r.diameter_nm / 2, fill=False, color=colour, lw=1.5))
        ax.text(x, y - r.diameter_nm / 2 - 0.1, r.label if r.reason is None else f"unknown: {r.reason}",
                color=colour, ha="center", va="bottom", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x [nm]")


fig, ax = plt.subplots(figsize=(4.5, 4.5), layout="constrained")
ax.set_ylabel("y [nm]")
show(ax, image, results, "simulated Au309 decahedron")

# %%
# When the model cannot see the atomic columns
# --------------------------------------------
# Blur the same image by 2.5 Å: the lattice fringes are gone and the cluster is a blob. A
# network would still output probabilities for it, but ClusterSpy's domain checks
# (:mod:`clusterspy.domain`) find no atomic-column contrast and say ``not_resolved`` instead.
blurred = clusterspy.Image(ndimage.gaussian_filter(image.data, 2.5 / pixel_size_A), pixel_size_A)
results_blurred = clusterspy.classify(blurred)
for r in results_blurred:
    print(f"blurred: {r.label}, reason {r.reason}, confidence {r.confidence}")
fig, ax = plt.subplots(figsize=(4.5, 4.5), layout="constrained")
ax.set_ylabel("y [nm]")
show(ax, blurred, results_blurred, "blurred by 2.5 Å")

# %%
# When the pixel size is wrong
# ----------------------------
# Claim a pixel size 25× too large (7.5 Å/px instead of 0.3): the image is refused as a whole with
# one line that says what to do — the CLI prints it and exits with status 2.
try:
    clusterspy.classify(image.data, pixel_size_A=7.5)
except clusterspy.ClusterSpyError as err:
    print(f"{type(err).__name__}: {err}")
