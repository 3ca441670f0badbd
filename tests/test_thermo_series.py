"""thermo_from_table on series output folders written by classify_series."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from clusterspy.thermo import format_thermo, thermo_from_table
from test_series import make_frames, run


def test_thermo_reads_series_folders(tmp_path):
    dirs = []
    for n, (t, switches) in enumerate(((300.0, (10,)), (400.0, (25,)))):
        frames, _ = make_frames(40, switches=switches, lost=(), blurred=(), seed=n)
        d = tmp_path / f"T{t:g}"
        res, _ = run(frames, d, batch_size=16, temperature_K=t, report=False)
        assert res.summary["temperature_K"] == t
        assert "cluster 0" in res.describe()
        dirs.append(d)
    out = thermo_from_table(dirs, label_column="smoothed_label", reference="decahedral",
                            n_boot=200)
    assert out["temperatures_K"] == [300.0, 400.0]
    p = {x["temperature_K"]: x["proportions"] for x in out["proportions"]}
    # smoothed labels: ico for frames < switch, dec after
    assert p[300.0]["icosahedral"]["value"] == pytest.approx(10 / 40)
    assert p[400.0]["icosahedral"]["value"] == pytest.approx(25 / 40)
    assert out["van_t_hoff"][0]["isomer"] == "icosahedral"
    assert out["settings"]["kinetics"] is True  # frame times came from summary.json
    assert any("too few" in w or "transitions" in w for w in out["warnings"])
    text = format_thermo(out)
    assert "van 't Hoff icosahedral vs decahedral" in text
    json.dumps(out)
    # a folder without temperature needs one given
    (dirs[0] / "summary.json").write_text(json.dumps({"temperature_K": None}))
    with pytest.raises(Exception, match="temperature"):
        thermo_from_table([dirs[0]], n_boot=10)
    out2 = thermo_from_table([dirs[0], dirs[1]], temperatures_K=[310.0, 400.0], n_boot=50,
                             kinetics=False)
    assert out2["temperatures_K"] == [310.0, 400.0]
    assert np.isfinite(out2["van_t_hoff"][0]["delta_E_eV"])
