"""
Temperatures → ΔE and barriers: ``clusterspy thermo``
=====================================================

Labels counted at several temperatures give the free-energy difference of two isomers at each
temperature, ΔG(T) = −k_B T ln(p_i / p_ref), and a van 't Hoff fit of ΔG(T) gives ΔE and ΔS. When the
frames are a time series, the rates of switching between isomers at each temperature follow from a
continuous-time Markov chain fitted to the labels (with label errors), and an Arrhenius fit gives the
barrier E_a and prefactor A.

Real series at five temperatures are not shipped with ClusterSpy, so the labels here are drawn from
a *known* energy landscape (:mod:`clusterspy.thermo.synthetic`) with 5 % of labels wrong — as a
classifier's would be — and the fits are compared with the truth. With your own data the input is a
CSV (``temperature_K``, ``label`` and, for rates, ``time_s`` or ``frame``) or the output folders of
``clusterspy series``: ``clusterspy thermo labels.csv --format json --out thermo/``.
"""

# %%
# The truth: fcc is 0.04 eV below the decahedron
# ----------------------------------------------
import matplotlib.pyplot as plt
import numpy as np

from clusterspy.thermo import (
    K_B_EV,
    Landscape,
    frames_for_transitions,
    synthetic_labels,
    thermo_from_table,
)

truth = Landscape(energies_eV={"fcc": 0.0, "decahedral": 0.04},
                  barriers_eV={("fcc", "decahedral"): 0.5}, prefactor_per_s=1e5)
temperatures_K = [400.0, 430.8, 466.7, 509.1, 560.0]
print("true decahedral share:", {T: round(float(truth.proportions(T)[1]), 3) for T in temperatures_K})

# %%
# Equilibrium: 500 independent frames per temperature
# ---------------------------------------------------
# Frames far apart in time are independent draws. ``misclassification=0.05`` tells the analysis the
# label error rate (e.g. from the model card's test confusion matrix) so that the proportions are
# corrected for it.
labels = synthetic_labels(truth, temperatures_K, 500, misclassification=0.05, rng=1)
eq = thermo_from_table(labels, reference="fcc", isomers=["decahedral"], misclassification=0.05,
                       n_boot=500, seed=0)
vh = eq["van_t_hoff"][0]
lo, hi = vh["ci95_eV"]
print(f"ΔE = {vh['delta_E_eV']:.3f} eV, 95 % CI [{lo:.3f}, {hi:.3f}] (truth 0.040 eV); "
      f"ΔS = {vh['delta_S_kB']:.2f} k_B (truth 0)")

fig, ax1 = plt.subplots(figsize=(5.5, 4), layout="constrained")
inv_T = 1000 / np.array(vh["temperatures_K"])
ci = np.array(vh["ln_ratio_ci95"]).T
ax1.errorbar(inv_T, vh["ln_ratio"], yerr=[vh["ln_ratio"] - ci[0], ci[1] - vh["ln_ratio"]], fmt="o",
             color="#0072B2", label="labels (95 % CI)")
grid = np.linspace(inv_T.min(), inv_T.max(), 50)
ax1.plot(grid, -vh["delta_E_eV"] / (K_B_EV * 1000 / grid) + vh["delta_S_kB"], color="#0072B2",
         label="van 't Hoff fit")
ax1.plot(grid, -0.04 / (K_B_EV * 1000 / grid), "--", color="0.4", label="truth")
ax1.set_xlabel("1000 / T [1/K]")
ax1.set_ylabel("ln(p_decahedral / p_fcc)")
ax1.set_title("van 't Hoff (dashed: truth)", fontsize=9)
ax1.legend(fontsize=8)

# %%
# Kinetics: one continuous series per temperature
# -----------------------------------------------
# A frame every 0.05 s, and as many frames as hold about 100 transitions at each temperature.
frame_time_s = 0.05
n_frames = [frames_for_transitions(truth, T, frame_time_s, 100) for T in temperatures_K]
print("frames per temperature:", n_frames)
series = synthetic_labels(truth, temperatures_K, n_frames, frame_time_s=frame_time_s,
                          misclassification=0.05, rng=2)
kin = thermo_from_table(series, reference="fcc", isomers=["decahedral"], misclassification=0.05,
                        n_boot=200, seed=0)
colours = {"fcc": "#D55E00", "decahedral": "#009E73"}
fig, ax2 = plt.subplots(figsize=(5.5, 4), layout="constrained")
for fit in kin["arrhenius"]:
    true_Ea, true_A = truth.barrier(fit["from"], fit["to"])
    lo, hi = fit["ci95_eV"]
    inside = "inside" if lo <= true_Ea <= hi else "OUTSIDE"
    print(f"{fit['from']} → {fit['to']}: E_a = {fit['barrier_eV']:.3f} eV [{lo:.3f}, {hi:.3f}] "
          f"(truth {true_Ea:.3f} eV, {inside} the CI); A = {fit['prefactor_per_s']:.3g} /s "
          f"(truth {true_A:.3g} /s)")
    inv = 1000 / np.array(fit["temperatures_K"])
    rate = np.array(fit["rate_per_s"])
    rci = np.array(fit["rate_ci95_per_s"]).T
    c = colours[fit["from"]]
    ax2.errorbar(inv, rate, yerr=[rate - rci[0], rci[1] - rate], fmt="o", color=c,
                 label=f"{fit['from']} → {fit['to']}")
    ax2.plot(grid, fit["prefactor_per_s"] * np.exp(-fit["barrier_eV"] / (K_B_EV * 1000 / grid)), color=c)
    ax2.plot(grid, true_A * np.exp(-true_Ea / (K_B_EV * 1000 / grid)), "--", color=c, alpha=0.6)
ax2.set_yscale("log")
ax2.set_xlabel("1000 / T [1/K]")
ax2.set_ylabel("rate [1/s]")
ax2.set_title("Arrhenius (dashed: truth)", fontsize=9)
ax2.legend(fontsize=8)
for warning in kin["warnings"]:
    print("warning:", warning)
