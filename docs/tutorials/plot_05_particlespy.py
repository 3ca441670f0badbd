"""
ParticleSpy: an isomer property on every segmented particle
===========================================================

`ParticleSpy <https://particlespy.readthedocs.io>`_ segments particles in HyperSpy signals and
measures them. :func:`clusterspy.integrations.particlespy.classify_particles` adds to every particle
of a ParticleSpy ``particle_list`` the properties ``isomer``, ``isomer_reason``,
``isomer_confidence``, ``diameter_nm`` (with its unit, nm), ``p_<isomer>`` and
``isomer_ood_distance`` — so ParticleSpy's own plots and ``time_series_analysis`` work on them.

Needs ``pip install "clusterspy[particlespy]"`` (and the ``train`` extra to simulate the field).
"""

# %%
# A field of four Au clusters, as a HyperSpy signal calibrated in nm
# ------------------------------------------------------------------
import warnings

import matplotlib.pyplot as plt
import numpy as np
from ase import Atoms
from particlespy.api import parameters, particle_analysis

from clusterspy.integrations.hyperspy import signal_from_image
from clusterspy.integrations.particlespy import classify_particles, results_from_particles
from clusterspy.simulation import Acquisition, Microscope, simulate
from clusterspy.structures import carbon_support, cluster

# ParticleSpy 0.6.3 calls scikit-image functions that newer versions deprecate; not our concern here.
warnings.filterwarnings("ignore", category=FutureWarning, module="particlespy")

rng = np.random.default_rng(3)
atoms = Atoms()
for motif, size, xy in [("icosahedral", 309, (-22, -22)), ("decahedral", 309, (22, -22)),
                        ("fcc", 309, (-22, 22)), ("icosahedral", 147, (22, 22))]:
    one = cluster(motif, size, "Au", rng=rng, orientation="random")
    one.translate((*xy, 0))  # Å
    atoms += one
extent_A = 96.0
image = simulate(atoms, Microscope(source_size_A=0.6), pixel_size=0.3, extent=extent_A, rng=rng,
                 acquisition=Acquisition(dose_e_per_A2=3e4, jitter_px=0.3, background=0.002),
                 support=carbon_support(extent_A + 4, 30.0, rng=rng))
signal = signal_from_image(image)
for axis in signal.axes_manager.signal_axes:  # ParticleSpy measures in the signal's units: nm
    axis.scale, axis.units = axis.scale / 10, "nm"
print(signal)

# %%
# Segment with ParticleSpy, then classify every particle
# ------------------------------------------------------
params = parameters()
params.generate(threshold="otsu", gaussian=2, min_size=200)
particles = particle_analysis(signal, params)
print(len(particles.list), "particles segmented")

classify_particles(particles, signal)
for k, p in enumerate(particles.list):
    props = p.properties
    conf = props["isomer_confidence"]["value"]
    print(f"particle {k}: {props['isomer']['value']:<12} "
          f"confidence {'—' if np.isnan(conf) else f'{conf:.3f}'}  "
          f"diameter {props['diameter_nm']['value']:.2f} {props['diameter_nm']['units']}  "
          f"reason: {props['isomer_reason']['value'] or '—'}")

# %%
# ParticleSpy's own plots work on the new properties
# --------------------------------------------------
particles.plot(["diameter_nm", "isomer_confidence"])
plt.gca().set_title("isomer confidence against diameter, one point per particle", fontsize=9)

# %%
# And the properties read back as ClusterSpy results
# --------------------------------------------------
# :func:`~clusterspy.integrations.particlespy.results_from_particles` turns them into a
# :class:`~clusterspy.predict.ClusterResults` list, with a table (and ``to_dataframe()`` when pandas
# is installed).
back = results_from_particles(particles)
table = back.table()
print({k: table[k] for k in ("cluster", "label", "diameter_nm")})
