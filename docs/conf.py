"""Sphinx configuration of the ClusterSpy documentation.

Build (from the repository root, with the ``docs`` extra installed)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

The tutorials in ``docs/tutorials/`` are executed by sphinx-gallery on every build; the CLI
reference, the API pages and the tables of measured figures are generated at build time by
``docs/_ext/clusterspy_docs.py`` (from the Typer app, the package's modules and
``benchmarks/results/*.json``), so nothing in them is copied by hand.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import clusterspy  # noqa: E402

project = "ClusterSpy"
author = "ClusterSpy developers"
copyright = "ClusterSpy developers, BSD-3-Clause"
release = version = clusterspy.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "clusterspy_docs",
]

exclude_patterns = ["_build", "_generated", "screenshots", "**.ipynb_checkpoints", "tutorials/README.rst",
                    "auto_tutorials/*.ipynb", "auto_tutorials/*.py", "auto_tutorials/*.zip"]
templates_path: list[str] = []
source_suffix = {".rst": "restructuredtext"}
root_doc = "index"

# API reference: autodoc + numpydoc (the library's docstrings are numpydoc).
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the numpydoc "Parameters" sections carry types and units
autosummary_generate = False
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# Executed tutorials.
sphinx_gallery_conf = {
    "examples_dirs": "tutorials",
    "gallery_dirs": "auto_tutorials",
    "filename_pattern": r"/",  # execute every tutorial, not only plot_*.py
    "abort_on_example_error": True,
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "min_reported_time": 0,
    "write_computation_times": True,
    "capture_repr": (),  # print() shows what matters; no stray reprs of the last expression
}
#: Longest a tutorial may run on the 2-core machine [s]; ``clusterspy_docs`` warns past it.
clusterspy_tutorial_max_s = 60.0

html_theme = "pydata_sphinx_theme"
html_title = f"ClusterSpy {release}"
html_static_path: list[str] = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_show_sourcelink = False
# Pages without sub-pages get the full width (no empty "Section Navigation" column).
html_sidebars = {page: [] for page in ("index", "getting_started", "napari", "trust", "figures", "cli",
                                       "model", "contracts")}
