"""``clusterspy series --verify-sample``: the structure fits are saved one by one, so a rerun after
an interruption keeps those done and redoes only the others; fits of another element are never
mixed in (refused when resuming, cleared with --no-resume)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clusterspy.cli import main

EXAMPLE = Path(__file__).parents[1] / "src" / "clusterspy" / "data" / "example_series.npz"
WEIGHTS = Path(__file__).parents[1] / "src" / "clusterspy" / "weights" / "model_card.json"


@pytest.mark.skipif(not WEIGHTS.exists(), reason="no shipped model")
def test_saved_fits_are_kept_and_only_the_missing_ones_redone(tmp_path, capsys):
    pytest.importorskip("ase")
    out = tmp_path / "run"
    args = ["series", str(EXAMPLE), "--out", str(out), "--verify-sample", "2"]
    assert main(args) == 0
    saved = sorted((out / "verify_sample").glob("*.npz"))
    assert len(saved) == 2
    kept, lost = saved
    lost.unlink()  # as if Ctrl-C stopped the run during the second fit
    inode = kept.stat().st_ino
    first = json.loads((out / "summary.json").read_text())["verify_sample"]
    assert main(args) == 0
    assert kept.stat().st_ino == inode  # read back, not fitted and written again
    assert lost.exists()
    assert json.loads((out / "summary.json").read_text())["verify_sample"] == first
    capsys.readouterr()

    assert main([*args, "--element", "Pt"]) == 2  # fits of Au in the folder: not mixed with Pt's
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--element" in err[0] and "'Au'" in err[0] and "--no-resume" in err[0]
    assert kept.stat().st_ino == inode

    assert main([*args, "--element", "Pt", "--no-resume"]) == 0
    settings = json.loads((out / "verify_sample" / "settings.json").read_text())
    assert settings["element (--element)"] == "Pt" and kept.stat().st_ino != inode


def test_saved_fits_of_another_microscope_are_refused(tmp_path):
    """``series --verify-sample`` fitted at 200 keV and 25 mrad whatever the data; with --energy and
    --semiangle its saved fits record them, and fits of another microscope are refused when resuming
    as fits of another element are (fits saved before they were recorded count as the defaults')."""
    pytest.importorskip("ase")
    from clusterspy.errors import ConfigError
    from clusterspy.simulation import Microscope
    from clusterspy.workflows import fit_sample_store

    beam = Microscope(energy_keV=300.0, semiangle_mrad=30.0)
    store = fit_sample_store(tmp_path, "Au", microscope=beam)
    settings = json.loads((store / "settings.json").read_text())
    assert (settings["energy_keV (--energy)"], settings["semiangle_mrad (--semiangle)"]) == (300.0, 30.0)
    (store / "frame0_cluster0.npz").write_bytes(b"a saved fit")
    with pytest.raises(ConfigError, match=r"--energy\) was 300\.0, now 200\.0.*--no-resume"):
        fit_sample_store(tmp_path, "Au")
    with pytest.raises(ConfigError, match=r"--semiangle\) was 30\.0, now 25\.0"):
        fit_sample_store(tmp_path, "Au", microscope=Microscope(energy_keV=300.0))
    assert fit_sample_store(tmp_path, "Au", microscope=beam) == store
    for key in ("energy_keV (--energy)", "semiangle_mrad (--semiangle)"):
        del settings[key]
    (store / "settings.json").write_text(json.dumps(settings))
    with pytest.raises(ConfigError, match="--energy"):
        fit_sample_store(tmp_path, "Au", microscope=beam)
    assert fit_sample_store(tmp_path, "Au") == store  # the fit's defaults
    assert (store / "frame0_cluster0.npz").exists()


def test_a_sampled_frames_other_clusters_are_left_out_of_its_fit() -> None:
    """``series --verify-sample`` gives the fit the frame's other clusters, as ``classify --verify``
    does (:func:`clusterspy.workflows._others_in_frame`): the same frame's, not the cluster itself,
    nor another frame's, nor one without a measured size."""
    from types import SimpleNamespace

    import numpy as np

    from clusterspy.workflows import _detected_diameter_A, _others_in_frame

    frames = {"frame": np.array([0, 0, 0, 1]), "cluster": np.array([0, 1, 2, 0]),
              "x_px": np.array([10.0, 50.0, 90.0, 11.0]), "y_px": np.array([20.0, 60.0, 5.0, 21.0]),
              "diameter_nm": np.array([2.0, 3.0, np.nan, 2.0])}
    others = _others_in_frame(SimpleNamespace(frames=frames), 0, 0)
    assert others == [(50.0, 60.0, _detected_diameter_A(3.0))]
    assert _others_in_frame(SimpleNamespace(frames=frames), 1, 0) == []
