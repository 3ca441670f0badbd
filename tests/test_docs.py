"""The generated pages of the documentation (docs/_ext/clusterspy_docs.py) and the tutorials' guard.

The full Sphinx build (every tutorial executed) runs in CI (``make docs``); these tests check, in
seconds, that what the generators write comes from the code and the benchmark results.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("clusterspy_docs", DOCS / "_ext" / "clusterspy_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_has_every_command(gen):
    import typer.main

    from clusterspy.cli import app

    commands = set(typer.main.get_command(app).commands)
    texts = gen.cli_help_texts()
    assert set(texts) == commands | {""}
    for name in commands:
        assert re.search(rf"Usage: clusterspy {name}\b", texts[name]), texts[name][:200]
    page = gen.cli_page(texts)
    for name in commands:
        assert f"clusterspy {name}\n" in page


def test_api_reference_has_a_page_per_module(gen):
    src = ROOT / "src" / "clusterspy"
    on_disk = set()
    for path in src.rglob("*.py"):
        rel = path.relative_to(src.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(p.startswith("_") for p in parts[1:]):
            continue
        on_disk.add(".".join(parts))
    modules = gen.package_modules()
    assert set(modules) == on_disk
    pages = gen.api_pages(modules)
    assert set(pages) == {f"api/{m}.rst" for m in modules} | {"api/index.rst"}
    assert ".. automodule:: clusterspy.predict\n" in pages["api/clusterspy.predict.rst"]
    index = pages["api/index.rst"]
    for m in modules:
        assert f"   {m}\n" in index
    assert "~clusterspy.predict.classify" in index and "~clusterspy.simulation.simulate" in index


def test_every_reason_has_a_meaning(gen):
    from clusterspy.domain import REASONS

    _, missing = gen.trust_page({}, REASONS)
    assert missing == []
    _, missing = gen.trust_page({}, [*REASONS, "a_new_reason"])
    assert missing == ["a_new_reason"]


def test_trust_table_reads_the_benchmark_json(gen, tmp_path):
    domain = {"command": "python benchmarks/domain.py",
              "model": {"id": "m@1", "domain": {"diameter_nm": [1.2, 3.3]}},
              "prism": {"accepted_share": 0.875, "accuracy_on_accepted": 1.0, "wrong_labels_total": 3,
                        "labels_given_total": 977, "pixel_size_error_accuracy": {"0.85": 0.5, "1.15": 0.25}},
              "ood": {"no_label_share": 0.9523809523809523, "n_inputs": 126},
              "sizes": {"by_diameter": {"1-2 nm": {"accepted": 0.3}}}}
    (tmp_path / "domain.json").write_text(json.dumps(domain), encoding="utf-8")
    (tmp_path / "other.json").write_text(json.dumps({"x": 1}), encoding="utf-8")
    results = gen.load_results(tmp_path)
    assert set(results) == {"domain", "other"}
    page, _ = gen.trust_page(results, ["too_small"])
    assert "87.5 %" in page and "100.0 %" in page and "3 of 977" in page and "95.2 % of 126" in page
    assert "50.0 % / 25.0 %" in page and "30.0 %" in page and "[1.2, 3.3]" in page
    assert "``domain.json``" in page and "other" not in page
    page, _ = gen.trust_page({"other": {}}, ["too_small"])
    assert "No ``benchmarks/results/domain*.json`` found" in page


def test_figures_page_has_every_result_file(gen):
    results = gen.load_results()
    assert results, "benchmarks/results/*.json"
    page = gen.figures_page(results)
    for name, data in results.items():
        assert f"\n{name}\n" in page
        leaves = [(k, v) for k, v in gen.flatten(data)
                  if isinstance(v, int | float) and not isinstance(v, bool)]
        if leaves:
            key, value = leaves[0]
            assert f"``{key}``\n     - {gen.fmt_value(value)}" in page
    name = next(iter(results))
    page = gen.figures_page(results, [Path(f"{name}_curve.png"), Path("unrelated.png")])
    assert f".. figure:: /../benchmarks/results/{name}_curve.png" in page and "unrelated.png" not in page
    assert gen.fmt_value(0.98512) == "0.9851" and gen.fmt_value(None) == "—"
    assert gen.fmt_share(0.955) == "95.5 %" and gen.fmt_share(None) == "—"


def test_tutorial_times_are_read_from_the_gallery(gen, tmp_path):
    (tmp_path / "plot_a.rst").write_text(
        "text\n**Total running time of the script:** (1 minutes 2.500 seconds)\n", encoding="utf-8")
    (tmp_path / "plot_b.rst").write_text(
        "**Total running time of the script:** (0 minutes 7.25 seconds)\n", encoding="utf-8")
    (tmp_path / "index.rst").write_text("no time here\n", encoding="utf-8")
    assert gen.tutorial_times(tmp_path) == {"plot_a": 62.5, "plot_b": 7.25}


def test_real_data_tutorial_skips_cleanly_without_shared_data(tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, str(DOCS / "tutorials" / "plot_07_real_data.py")], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "../shared/data is not here" in done.stdout and "Skipped." in done.stdout


def test_every_tutorial_has_a_title_and_runs_under_sphinx_gallery_rules():
    tutorials = sorted((DOCS / "tutorials").glob("*.py"))
    assert len(tutorials) >= 8
    for path in tutorials:
        text = path.read_text(encoding="utf-8")
        assert text.startswith('"""\n'), path.name
        title, underline = text.split("\n")[1:3]
        assert title and set(underline) == {"="} and len(underline) >= len(title), path.name
