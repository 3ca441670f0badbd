"""
HyperSpy: classify a signal, draw the results on it, keep them in its metadata
==============================================================================

:func:`clusterspy.classify` takes a HyperSpy ``Signal2D`` directly (its axes give the pixel size);
:func:`~clusterspy.integrations.hyperspy.add_to_signal` puts the results on the signal as permanent
markers — circles of the projected diameter coloured by isomer, with the label and confidence, or
``unknown: reason`` — and as a table in ``signal.metadata.ClusterSpy``, which is saved with the
signal (``.hspy``) and read back by :func:`~clusterspy.integrations.hyperspy.results_from_signal`.

Needs ``pip install "clusterspy[hyperspy]"`` (and the ``train`` extra to simulate the field).
"""

# %%
# A HyperSpy signal of three Au clusters
# --------------------------------------
import tempfile
from pathlib import Path

import hyperspy.api as hs
import numpy as np
from ase import Atoms

import clusterspy
from clusterspy.integrations.hyperspy import add_to_signal, results_from_signal, signal_from_image
from clusterspy.simulation import Acquisition, Microscope, simulate
from clusterspy.structures import carbon_support, cluster

rng = np.random.default_rng(11)
atoms = Atoms()
for motif, xy in [("decahedral", (-20, -15)), ("fcc", (20, -15)), ("icosahedral", (0, 20))]:
    one = cluster(motif, 309, "Au", rng=rng, orientation="random")
    one.translate((*xy, 0))  # Å
    atoms += one
extent_A = (84.0, 80.0)
image = simulate(atoms, Microscope(source_size_A=0.6), pixel_size=0.3, extent=extent_A, rng=rng,
                 acquisition=Acquisition(dose_e_per_A2=3e4, jitter_px=0.3, background=0.002),
                 support=carbon_support((88.0, 84.0), 30.0, rng=rng))
signal = signal_from_image(image)  # axes x, y in Å
signal.metadata.General.title = "simulated Au clusters"
print(signal, signal.axes_manager.signal_axes[0].scale, signal.axes_manager.signal_axes[0].units)

# %%
# Classify the signal and put the results on it
# ---------------------------------------------
results = clusterspy.classify(signal)
for r in results:
    print(f"cluster {r.cluster}: {r.label:<12} reason {r.reason}, d = {r.diameter_nm:.2f} nm")
add_to_signal(signal, results)
signal.plot(colorbar=False)

# %%
# The table travels with the signal
# ---------------------------------
path = Path(tempfile.mkdtemp()) / "clusters.hspy"
signal.save(path)
loaded = hs.load(path)
back = results_from_signal(loaded)
print("read back from", path.name, "→", [(r.label, r.reason) for r in back])
print("labels equal after the round trip:", [r.label for r in back] == [r.label for r in results])
print("units:", loaded.metadata.ClusterSpy.units.as_dictionary())
