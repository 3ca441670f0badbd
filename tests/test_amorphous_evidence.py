"""An "amorphous" label needs the atoms resolved (issue #12, stop 42).

A crystal seen off its zone axis, or blurred, shows no lattice fringes, and the networks call some such
crystals amorphous with confidence. A glassy cluster seen at atomic resolution shows a ring of its atomic
spacings and speckle above the band's median; a cluster whose window spectrum shows neither is
``not_resolved``, as a crystalline call without lattice spots already was.
"""

from __future__ import annotations

import numpy as np
import pytest

from clusterspy.domain import CrystalEvidence, amorphous_evidence_missing, judge_probabilities
from clusterspy.isomers import CLASSES
from clusterspy.predict import classify
from test_astigmatism import _central, _sample

AMORPHOUS = np.array([0.01, 0.01, 0.02, 0.96])
assert CLASSES[int(np.argmax(AMORPHOUS))] == "amorphous"


@pytest.mark.parametrize(("evidence", "label"), [
    (CrystalEvidence(6.6, 9.2, 5.6, 0.8), ("unknown", "not_resolved")),  # speckle, no ring
    (CrystalEvidence(6.6, 9.2, 5.6, 1.5), ("amorphous", None)),  # a ring of atomic spacings
    (CrystalEvidence(20.0, 9.2, 5.6, 0.8), ("amorphous", None)),  # a peaked band
    (CrystalEvidence(float("nan"), 9.2, 5.6, float("nan")), ("amorphous", None)),  # not measured
])
def test_an_amorphous_call_needs_a_resolved_structure(evidence, label):
    assert judge_probabilities(AMORPHOUS, unknown_threshold=0.8, crystal_evidence=evidence,
                               diameter_A=20.0) == label
    assert amorphous_evidence_missing(evidence) == (label[0] == "unknown")
    # without evidence (a model without a domain) nothing is tested
    assert judge_probabilities(AMORPHOUS, unknown_threshold=0.8) == ("amorphous", None)


#: Images of ``benchmarks/astigmatism.py``'s round-probe row: 50 is a Pd₃₁₄ fcc cluster that every
#: default until stop 41 called amorphous (0.98); 3 is a glassy Pt₁₆₆ cluster, rightly amorphous.
CRYSTAL_CALLED_AMORPHOUS, GLASSY = 50, 3


def test_a_crystal_without_resolved_columns_is_not_called_amorphous(monkeypatch, tmp_path):
    import clusterspy.domain as domain
    from clusterspy.image import Image
    from clusterspy.series import classify_series
    from test_cli import run_cli

    image, truth, _ = _sample(0.0, CRYSTAL_CALLED_AMORPHOUS)
    assert CLASSES[truth] == "fcc"
    r = _central(classify(image, pixel_size_A=0.4), image.shape)
    assert (r.label, r.reason) == ("unknown", "not_resolved")
    assert max(r.probabilities, key=r.probabilities.get) == "amorphous"  # the network's call, kept
    res = classify_series([Image(image, 0.4)] * 2, out=tmp_path / "series", n_boot=5)
    cy, cx = (np.asarray(image.shape) - 1) / 2
    near = np.hypot(res.frames["x_px"] - cx, res.frames["y_px"] - cy) < 5
    assert list(res.frames["reason"][near]) == ["not_resolved"] * 2
    np.savez(tmp_path / "crystal.npz", image=image, pixel_size_A=0.4)
    proc = run_cli("classify", str(tmp_path / "crystal.npz"))
    assert proc.returncode == 0, proc.stderr
    assert "not_resolved although the network saw it" in proc.stderr
    assert "an amorphous one a ring of atomic spacings" in " ".join(proc.stderr.split())
    # a glassy cluster at atomic resolution keeps its label
    glassy, k, _ = _sample(0.0, GLASSY)
    assert CLASSES[k] == "amorphous"
    assert _central(classify(glassy, pixel_size_A=0.4), glassy.shape).label == "amorphous"
    # the defect it mends: without the rule the crystal was amorphous, wrong and confident
    monkeypatch.setattr(domain, "amorphous_evidence_missing", lambda evidence: False)
    before = _central(classify(image, pixel_size_A=0.4), image.shape)
    assert before.label == "amorphous" and before.confidence > 0.9
