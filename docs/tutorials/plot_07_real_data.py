"""
Real microscope files
=====================

Two real HAADF-STEM images: a Pt/Ir nanoparticle that is a single fcc crystal (StatSTEM example
data, 0.1211 Å/px) — a classifier that calls it anything else with confidence is wrong — and a Velox
``.emd`` of a ~3 nm Au particle (temul-toolkit example data, 300 kV, 7.5 pm/px) whose isomer is not
known, with larger out-of-focus particles around it.

These files carry their own licences (GPL-3.0) and are not shipped with ClusterSpy: this tutorial
runs where the project's reference data lie in ``../shared/data`` beside the repository, and says
so and stops where they do not.
"""

# %%
# Find the data
# -------------
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Circle


def shared_data() -> Path | None:
    """``../shared/data`` beside the repository holding this tutorial, if it is there."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file():
            data = folder.parent / "shared" / "data"
            return data if (data / "real_atomic").is_dir() else None
    return None


DATA = shared_data()
if DATA is None:
    print("../shared/data is not here: this tutorial needs the project's real reference files "
          "(StatSTEM PtIr, TEMUL Au .emd), which are not shipped with ClusterSpy. Skipped.")
else:
    print("real data from ../shared/data:", sorted(p.name for p in (DATA / "real_atomic").iterdir()))

# %%
# The fcc Pt/Ir particle
# ----------------------
# The npz holds the image and its pixel size; a bare array needs ``pixel_size_A``.
if DATA is not None:
    import clusterspy

    with np.load(DATA / "real_atomic" / "PtIr_fcc_statstem.npz") as f:
        ptir, ptir_px = f["image"], float(f["pixel_size_A"])
    # None: the default, each cluster judged by the shipped model that covers its size (r.model says
    # which); a name: that model alone
    for model in (None, "isomernet-v2", "isomernet-v3"):
        for r in clusterspy.classify(ptir, pixel_size_A=ptir_px, model=model):
            print(f"{model or 'default'}: {r.label} (confidence {r.confidence and round(r.confidence, 3)}, "
                  f"reason {r.reason}), d = {r.diameter_nm:.2f} nm, judged by {r.model}")

# %%
# The Au particle in a Velox ``.emd``
# -----------------------------------
# The pixel size comes from the file's own metadata.
if DATA is not None:
    emd = DATA / "real_atomic" / "Au_nanoparticle_temul.emd"
    img = clusterspy.read_image(emd)
    print(f"{emd.name}: {img.shape} px at {img.pixel_size_A:.4f} Å/px "
          f"({img.metadata.get('pixel_size_source')})")
    results = clusterspy.classify(img, file=emd.name)
    for r in results:
        print(f"cluster {r.cluster}: {r.label:<12} reason {r.reason!s:<18} d = {r.diameter_nm:.2f} nm")
    fig, ax = plt.subplots(figsize=(6, 6), layout="constrained")
    nm = img.pixel_size_A / 10
    ax.imshow(img.data, cmap="gray", extent=[0, img.shape[1] * nm, img.shape[0] * nm, 0])
    for r in results:
        colour = "#009E73" if r.reason is None else "#D55E00"
        ax.add_patch(Circle((r.x_px * nm, r.y_px * nm), r.diameter_nm / 2, fill=False, color=colour))
        ax.text(r.x_px * nm, (r.y_px * nm) - r.diameter_nm / 2, r.label if r.reason is None else r.reason,
                color=colour, ha="center", va="bottom", fontsize=8, clip_on=True)
    ax.set_xlabel("x [nm]")
    ax.set_ylabel("y [nm]")
