"""The shipped configuration files (``configs/``): each one loads, and names what exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from clusterspy.datasets import load_spec
from clusterspy.datasets.spec import read_config, user_spec
from clusterspy.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def _is_training(path: Path) -> bool:
    return "network" in read_config(path)


def test_there_are_configs():
    assert any(_is_training(p) for p in CONFIGS)
    assert any(not _is_training(p) for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_loads(path, monkeypatch):
    """Dataset specifications and training configs load (paths inside are taken from the repo root)."""
    monkeypatch.chdir(ROOT)
    if not _is_training(path):
        spec = load_spec(path)
        assert spec["n_images"] > 0 and spec["crop_px"] > 0 and spec["seed"] > 0
        return
    from clusterspy.model.training import load_config

    cfg = load_config(path)
    train = load_spec(cfg["dataset"])
    assert train["backend"] == "fast" and train["seed"] > 0
    if isinstance(cfg["dataset"], str):
        assert user_spec(cfg["dataset"])["seed"] == train["seed"]
    if cfg["init_from"]:  # fine-tuning starts from weights the repository holds
        assert (ROOT / cfg["init_from"]).is_file()
    if cfg["validation"] is not None:
        val = load_spec(cfg["validation"])
        assert val["seed"] != train["seed"]


def test_user_spec_reads_a_file_or_the_dataset_section_of_a_training_config(tmp_path):
    """What training uses to tell whether a dataset file (or config section) sets its own seed."""
    (tmp_path / "ds.yaml").write_text("seed: 5\nn_images: 64\n", encoding="utf-8")
    (tmp_path / "cfg.yaml").write_text("dataset: {seed: 6, n_images: 8}\n", encoding="utf-8")
    assert user_spec(tmp_path / "ds.yaml") == {"seed": 5, "n_images": 64}
    assert user_spec(tmp_path / "cfg.yaml") == {"seed": 6, "n_images": 8}
    assert load_spec(tmp_path / "ds.yaml")["n_images"] == 64
    with pytest.raises(ConfigError):
        user_spec(tmp_path / "missing.yaml")
