"""From isomer labels to energies: ΔG(T), van 't Hoff (ΔE, ΔS) and Arrhenius (E_a, A) with CIs.

- :func:`thermo_from_table` — the whole analysis (behind ``clusterspy thermo``);
  :func:`thermo_json` / :func:`write_thermo_json` — its result as strict JSON (NaN → null). The
  figures and HTML report are drawn by the face, :func:`clusterspy.write_thermo_report`.
- :mod:`~clusterspy.thermo.equilibrium` — proportions, ΔG, van 't Hoff fit, misclassification
  correction.
- :mod:`~clusterspy.thermo.kinetics` — CTMC rates by maximum likelihood (an HMM with label
  errors), Arrhenius fit.
- :mod:`~clusterspy.thermo.synthetic` — labelled series from a known landscape.

Energies in eV, temperatures in K, times in s, entropies in units of k_B.
"""

from __future__ import annotations

from clusterspy.thermo.equilibrium import correct_misclassification, delta_g, van_t_hoff_fit
from clusterspy.thermo.kinetics import arrhenius_fit, fit_rates
from clusterspy.thermo.synthetic import K_B_EV, Landscape, frames_for_transitions, synthetic_labels
from clusterspy.thermo.table import (
    format_thermo,
    read_label_table,
    thermo_from_table,
    thermo_json,
    write_thermo_json,
)

__all__ = [
    "K_B_EV",
    "Landscape",
    "arrhenius_fit",
    "correct_misclassification",
    "delta_g",
    "fit_rates",
    "format_thermo",
    "frames_for_transitions",
    "read_label_table",
    "synthetic_labels",
    "thermo_from_table",
    "thermo_json",
    "van_t_hoff_fit",
    "write_thermo_json",
]
