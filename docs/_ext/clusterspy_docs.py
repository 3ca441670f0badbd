"""Pages of the ClusterSpy documentation generated at build time (a Sphinx extension).

Nothing here is written by hand into the pages: the CLI reference is the ``--help`` of every
command of the Typer app, the API reference has one page per module found in the package, and
the tables of measured figures are read from ``benchmarks/results/*.json``. The generated
reStructuredText goes to ``docs/_generated/`` (ignored by git) before Sphinx reads the sources.

The functions are plain (no Sphinx object needed) so that ``tests/test_docs.py`` checks them.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import os
import pkgutil
import re
import types
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[1]
ROOT = DOCS.parent
RESULTS = ROOT / "benchmarks" / "results"
GENERATED = DOCS / "_generated"

#: What each per-cluster reason of :data:`clusterspy.domain.REASONS` means. A reason added to the
#: code without a line here makes the build warn (an error under ``-W``).
REASON_MEANING: dict[str, str] = {
    "too_small": "the projected diameter is below the smallest size the model was trained on",
    "too_large": "the projected diameter is above the largest trained size (glassy clusters were "
                 "trained on smaller sizes than crystalline ones: an amorphous call above that is "
                 "``too_large`` too)",
    "cut_by_edge": "the cluster touches the image edge (``--border skip`` leaves such clusters out)",
    "neighbour_in_view": "another cluster touches it, or covers more than 10 % of its field of view",
    "elongated": "its outline is more elongated than the single clusters of the test sets (long over "
                 "short axis > 1.5; 1 of 1,455 there): two overlapping or coalescing particles measured as "
                 "one, or a rod",
    "saturated": "5 % or more of its box is a plateau of the image's maximum (pixels at the maximum "
                 "with a neighbour at it): its brightest columns are clipped — a saturated detector, or "
                 "an export that stretched the contrast and clipped the highlights",
    "scale_mismatch": "its strongest lattice fringes are finer than any metal's (< 1.25 Å at the pixel "
                      "size given): the pixel size is too small (pm read as Å, or a value 2–3× too small)",
    "pixel_size_too_large": "a resolved cluster of 3.5 nm or more whose strongest lattice spot lies "
                            "beyond 3.5 Å, coarser than any metal's strongest fringe at a pixel size 20 % "
                            "too large: the pixel size is too large (a value typed 1.5–2× too large)",
    "not_resolved": "no atomic-column contrast: lattice fringes of 1.25–3.2 Å are too weak against "
                    "the window's own white noise, against the particle's shape spectrum, or "
                    "against the same band around the cluster (out of focus, too coarse a pixel, "
                    "smeared, a blob at a wrong pixel size, the texture of a wide field); after "
                    "inference, a crystalline call without lattice spots, or an amorphous call whose "
                    "spectrum is speckle with no ring of atomic spacings (a crystal blurred or off "
                    "its zone axis)",
    "out_of_distribution": "the network's pooled features are farther (Mahalanobis distance) from "
                           "every class than 99.5 % of held-out simulated training images",
    "low_confidence": "the calibrated confidence is below the model card's threshold (chosen for "
                      "≥ 99 % precision on held-out images)",
    "models_disagree": "the default only: ``isomernet-v2`` (trained with exact calibrations) labelled "
                       "it, but ``isomernet-v7`` (trained with ±20 % pixel-size errors and astigmatic "
                       "probes), shown its own crop of the cluster, finds another isomer most probable — "
                       "most often a pixel size told far too small, or an astigmatic probe; the "
                       "probabilities are v2's",
    "astigmatic": "the default only: the probe looks astigmatic — ``astigmatism-v1`` (isomernet-v7's "
                  "network regressing the source's extra FWHM along its long axis, trained on 22,000 "
                  "simulated crops) estimates the atomic columns drawn out along one direction by its "
                  "card's ``threshold_A`` or more, on the second opinion's crop; the models that judge "
                  "were trained on round probes only and gave confident wrong labels there. A strong "
                  "round blur (σ ≥ 0.5 Å) is sometimes flagged too. Correct the probe (stigmators, "
                  "focus) and take the image again; the probabilities are kept",
    "fit_disagrees": "only with ``classify --verify``: the 3D atomic model whose simulated image "
                     "matches the cluster best (a conclusive structure fit, as ``clusterspy fit``) "
                     "is of another isomer than the network's label; the probabilities are kept, "
                     "and the fit's isomer and NCC are in the ``fit_*`` columns",
}

#: Order of the parts of the package in the API reference (DESIGN.md's table, core first); a part
#: not named here is appended, so new modules appear without editing this file.
PART_ORDER = ("isomers", "errors", "image", "structures", "simulation", "datasets", "model",
              "weights", "io", "detection", "domain", "predict", "fit", "series", "thermo", "plots",
              "report", "explain", "workflows", "cli", "integrations")

#: Public entry points listed first on the API index (besides ``clusterspy.__all__``).
ENTRY_POINTS = (
    "clusterspy.predict.load_model",
    "clusterspy.simulation.simulate",
    "clusterspy.thermo.table.thermo_from_table",
    "clusterspy.workflows.run_demo",
    "clusterspy.integrations.hyperspy.signal_from_image",
    "clusterspy.integrations.particlespy.classify_particles",
)


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------
def _write(path: Path, text: str) -> Path:
    """Write ``text`` only when it changed (Sphinx then rebuilds only what changed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


def _title(text: str, char: str = "=") -> str:
    return f"{text}\n{char * len(text)}\n"


def _indent(text: str, n: int = 3) -> str:
    pad = " " * n
    return "\n".join(pad + line if line.strip() else "" for line in text.splitlines())


def list_table(header: Iterable[str], rows: Iterable[Iterable[Any]], widths: str | None = None) -> str:
    """A reStructuredText ``list-table`` of ``rows`` (cells converted with ``str``)."""
    header = list(header)
    lines = [".. list-table::", "   :header-rows: 1"]
    if widths:
        lines.append(f"   :widths: {widths}")
    lines.append("")
    for row in [header, *rows]:
        cells = [str(c).replace("\n", " ") or " " for c in row]
        lines.append(f"   * - {cells[0]}")
        lines.extend(f"     - {c}" for c in cells[1:])
    return "\n".join(lines) + "\n"


def get_path(data: Any, path: str) -> Any:
    """``data["a"]["b"]`` for ``path = "a/b"``; None when any key is missing."""
    for key in path.split("/"):
        if not isinstance(data, Mapping) or key not in data:
            return None
        data = data[key]
    return data


def fmt_value(value: Any) -> str:
    """A figure as text: floats to 4 significant digits, None as an em dash, lists joined."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(fmt_value(v) for v in value) + "]"
    return str(value)


def fmt_share(value: Any) -> str:
    """A share (0–1) as a percentage with one decimal; missing as an em dash."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "—"
    return f"{100 * value:.1f} %"


def _rst_literal(text: str) -> str:
    text = text.replace("`", "'").strip()
    return "``" + text + "``" if text else "—"


# ---------------------------------------------------------------------------------------------
# CLI reference
# ---------------------------------------------------------------------------------------------
def cli_help_texts() -> dict[str, str]:
    """``{command: its --help text}`` of every command of ``clusterspy`` ("" = the group itself)."""
    import typer.main
    from typer.testing import CliRunner

    from clusterspy.cli import app

    group = typer.main.get_command(app)
    runner = CliRunner()
    env = {"COLUMNS": "100", "TERMINAL_WIDTH": "100", "NO_COLOR": "1", "_TYPER_FORCE_DISABLE_TERMINAL": "1"}
    texts: dict[str, str] = {}
    for name in ["", *sorted(getattr(group, "commands", {}))]:
        args = [name, "--help"] if name else ["--help"]
        res = runner.invoke(app, args, env=env, prog_name="clusterspy", terminal_width=100)
        if res.exit_code != 0:
            raise RuntimeError(f"clusterspy {' '.join(args)} exited {res.exit_code}: {res.output}")
        texts[name] = res.output.rstrip()
    return texts


def cli_page(texts: Mapping[str, str]) -> str:
    """The CLI reference page from :func:`cli_help_texts`."""
    out = [_title("Command-line reference"),
           "Generated at build time from ``clusterspy [COMMAND] --help`` (the Typer app in "
           ":mod:`clusterspy.cli`). A user mistake prints one line on stderr and exits with "
           "status 2; a batch in which some files failed exits with status 3.\n"]
    for name, text in texts.items():
        out.append(_title(f"clusterspy {name}".strip(), "-"))
        out.append(".. code-block:: text\n\n" + _indent(text) + "\n")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# API reference
# ---------------------------------------------------------------------------------------------
def package_modules(package: str = "clusterspy") -> list[str]:
    """Every importable module of ``package`` (private ``_x`` and ``__main__`` modules left out)."""
    pkg = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(pkg.__path__, prefix=package + "."):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts[1:]):
            continue
        names.append(info.name)
    return sorted(names)


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def api_pages(modules: Iterable[str]) -> dict[str, str]:
    """``{relative path: page}``: one page per module and the index ``api/index.rst``."""
    modules = list(modules)

    def rank(part: str) -> tuple[int, str]:
        if not part:
            return -1, part
        return (PART_ORDER.index(part) if part in PART_ORDER else len(PART_ORDER)), part

    parts = sorted({_part(m) for m in modules}, key=rank)
    pages: dict[str, str] = {}
    for mod in modules:
        pages[f"api/{mod}.rst"] = (
            _title(f"``{mod}``")
            + f"\n.. automodule:: {mod}\n   :members:\n   :ignore-module-all:\n   :show-inheritance:\n"
        )
    import clusterspy

    lazy = getattr(clusterspy, "_LAZY", {})
    entries = [f"{lazy[n]}.{n}" for n in clusterspy.__all__ if n in lazy]
    entries += [e for e in ENTRY_POINTS if e not in entries]
    index = [
        _title("API reference"),
        "Generated from the numpydoc docstrings: one page per module of ``src/clusterspy`` "
        "(found at build time, so a new module or function appears here by itself). Lengths in Å, "
        "angles in mrad, energies in keV (isomer energies in eV), temperatures in K, times in s, "
        "particle sizes in nm.\n",
        _title("Entry points", "-"),
        ".. autosummary::\n\n" + "\n".join(f"   ~{e}" for e in entries) + "\n",
    ]
    for part in parts:
        index.append(_title(f"``{part}``" if part else "The package", "-"))
        mods = [m for m in modules if _part(m) == part]
        index.append(".. toctree::\n   :maxdepth: 1\n\n" + "\n".join(f"   {m}" for m in mods) + "\n")
    pages["api/index.rst"] = "\n".join(index)
    return pages


# ---------------------------------------------------------------------------------------------
# measured figures
# ---------------------------------------------------------------------------------------------
def load_results(results: Path = RESULTS) -> dict[str, dict]:
    """``{stem: parsed JSON}`` of every ``benchmarks/results/*.json``."""
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(results.glob("*.json"))}


def flatten(data: Any, prefix: str = "", depth: int = 3) -> Iterator[tuple[str, Any]]:
    """``(key path, value)`` of the scalar leaves of a JSON object, ``depth`` levels deep.

    Short lists of numbers or strings count as leaves; long lists and deeper objects are left out
    (they are per-image or per-case detail, in the JSON file).
    """
    if isinstance(data, Mapping):
        if depth == 0:
            return
        for key, value in data.items():
            yield from flatten(value, f"{prefix}/{key}" if prefix else str(key), depth - 1)
    elif isinstance(data, list):
        if len(data) <= 6 and all(isinstance(v, int | float | str | None) for v in data):
            yield prefix, data
    else:
        yield prefix, data


def trust_rows(domains: Mapping[str, dict]) -> list[list[str]]:
    """The rows of the "when to trust a label" table: one column per model's domain benchmark."""
    rows: list[list[str]] = []

    def row(what: str, get) -> None:
        rows.append([what, *(get(d) for d in domains.values())])

    row("model", lambda d: _rst_literal(str(get_path(d, "model/id") or "")))
    row("trained projected diameters [nm]", lambda d: fmt_value(get_path(d, "model/domain/diameter_nm")))
    row("image pixel sizes accepted [Å/px]",
        lambda d: fmt_value(get_path(d, "model/domain/image_pixel_size_A")))
    row("PRISM test images: clusters accepted", lambda d: fmt_share(get_path(d, "prism/accepted_share")))
    row("PRISM test images: accuracy on accepted",
        lambda d: fmt_share(get_path(d, "prism/accuracy_on_accepted")))
    row("rotations every 15°, 'unknown' counted wrong: worst / mean",
        lambda d: f"{fmt_share(get_path(d, 'prism/rotation_accuracy_min'))} / "
                  f"{fmt_share(get_path(d, 'prism/rotation_accuracy_mean'))}")
    row("pixel-size error −15 % / +15 %, 'unknown' counted wrong",
        lambda d: f"{fmt_share(get_path(d, 'prism/pixel_size_error_accuracy/0.85'))} / "
                  f"{fmt_share(get_path(d, 'prism/pixel_size_error_accuracy/1.15'))}")
    row("wrong labels over all conditions",
        lambda d: f"{fmt_value(get_path(d, 'prism/wrong_labels_total'))} of "
                  f"{fmt_value(get_path(d, 'prism/labels_given_total'))}")
    row("held-out fast-simulated images (160, PRISM settings): accepted / accuracy on accepted",
        lambda d: f"{fmt_share(get_path(d, 'heldout/accepted_share'))} / "
                  f"{fmt_share(get_path(d, 'heldout/accuracy_on_accepted'))}")
    row("held-out: pixel-size error −15 % / +15 %, 'unknown' counted wrong",
        lambda d: f"{fmt_share(get_path(d, 'heldout/pixel_size_error_accuracy/0.85'))} / "
                  f"{fmt_share(get_path(d, 'heldout/pixel_size_error_accuracy/1.15'))}")
    row("held-out: wrong labels over the three pixel sizes",
        lambda d: f"{fmt_value(get_path(d, 'heldout/wrong_labels_total'))} of "
                  f"{fmt_value(get_path(d, 'heldout/labels_given_total'))}")
    row("a second held-out set (160, seed 929292, made to check the pixel-size search): accepted / accuracy "
        "on accepted; wrong labels over the three pixel sizes",
        lambda d: f"{fmt_share(get_path(d, 'fresh/accepted_share'))} / "
                  f"{fmt_share(get_path(d, 'fresh/accuracy_on_accepted'))}; "
                  f"{fmt_value(get_path(d, 'fresh/wrong_labels_total'))} of "
                  f"{fmt_value(get_path(d, 'fresh/labels_given_total'))}")
    row("held-out told a pixel size ×0.7 / 0.6 / 0.55 / 1.3 / 1.45 (far outside the domain): wrong labels",
        lambda d: " / ".join(fmt_share(get_path(d, f"wrong_scale/px{s}/wrong_share"))
                             for s in ("0.70", "0.60", "0.55", "1.30", "1.45")))
    row("out-of-distribution inputs given no isomer label",
        lambda d: f"{fmt_share(get_path(d, 'ood/no_label_share'))} of "
                  f"{fmt_value(get_path(d, 'ood/n_inputs'))}")
    for part, what, figure in (("sizes", "fast-simulated particles {}: accepted", "accepted"),
                               ("large", "large fast-simulated particles {}: right ('unknown' counted wrong)",
                                "accuracy_unknown_wrong")):
        bins: list[str] = []
        for d in domains.values():
            bins += [b for b in (get_path(d, f"{part}/by_diameter") or {}) if b not in bins]
        for b in bins:
            row(what.format(b), lambda d, b=b, part=part, figure=figure: fmt_share(
                get_path(d, f"{part}/by_diameter/{b}/{figure}")))
    row("reported / true diameter (median)",
        lambda d: fmt_value(get_path(d, "sizes/reported_over_true_diameter/median")))
    row("2048² wide field at 2 Å/px refused in [s]",
        lambda d: fmt_value(get_path(d, "time/widefield_2048_at_2A_s")))
    return rows


def trust_page(results: Mapping[str, dict], reasons: Iterable[str]) -> tuple[str, list[str]]:
    """The generated part of "When to trust a label" and the reasons that lack a meaning."""
    reasons = list(reasons)
    missing = [r for r in reasons if r not in REASON_MEANING]
    out = [_title("Reasons, in the order they are tested", "-"),
           "From :data:`clusterspy.domain.REASONS` (read at build time):\n",
           list_table(["reason", "meaning"],
                      [[f"``{r}``", REASON_MEANING.get(r, "(not yet described)")] for r in reasons],
                      widths="25 75")]
    domains = {k: v for k, v in results.items() if k == "domain" or k.startswith("domain_")}
    out.append(_title("Measured", "-"))
    if not domains:
        out.append("No ``benchmarks/results/domain*.json`` found: run ``python benchmarks/domain.py``.\n")
        return "\n".join(out), missing
    commands = "; ".join(_rst_literal(str(d.get("command", ""))) for d in domains.values())
    out.append(f"Read at build time from {', '.join(f'``{k}.json``' for k in domains)} "
               f"(made by {commands}, on the 2-core development machine).\n")
    out.append(list_table(["figure", *(f"``{k}``" for k in domains)], trust_rows(domains)))
    return "\n".join(out), missing


def figures_page(results: Mapping[str, dict], pngs: Iterable[Path] | None = None) -> str:
    """Every benchmark's scalar figures, one section per ``benchmarks/results/<name>.json``.

    ``pngs``: figures the benchmarks drew; each is shown under the JSON whose name it starts with.
    """
    out = [_title("Measured figures"),
           "Every figure below is read at build time from ``benchmarks/results/*.json``, written "
           "by the scripts in ``benchmarks/`` on the 2-core development machine (the command is "
           "recorded in each file). Lists longer than six values and per-case detail are left in "
           "the JSON files.\n"]
    for name, data in results.items():
        out.append(_title(name, "-"))
        command = data.get("command") or get_path(data, "summary/command") if isinstance(data, dict) else None
        what = data.get("what") or data.get("benchmark") if isinstance(data, dict) else None
        if what:
            out.append(f"{what}\n")
        if command:
            out.append(f"Command: {_rst_literal(str(command))}\n")
        rows = []
        for key, value in flatten(data):
            if key in ("command", "what", "benchmark"):
                continue
            text = fmt_value(value)
            text = text[:160] + ("…" if len(text) > 160 else "")
            rows.append([f"``{key}``", _rst_literal(text) if isinstance(value, str) else text])
        out.append(list_table(["figure", "value"], rows, widths="45 55"))
        for png in sorted(pngs or []):
            if png.stem == name or png.stem.startswith(name + "_"):
                out.append(f".. figure:: /../benchmarks/results/{png.name}\n   :width: 70%\n\n"
                           f"   ``benchmarks/results/{png.name}``\n")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# tutorial timings
# ---------------------------------------------------------------------------------------------
_TIME = re.compile(r"\*\*Total running time of the script:\*\*\s*\((?:(\d+) minutes )?([\d.]+) seconds\)")


def tutorial_times(gallery: Path) -> dict[str, float]:
    """``{tutorial: seconds}`` read from the pages sphinx-gallery wrote into ``gallery``."""
    times: dict[str, float] = {}
    for page in sorted(gallery.glob("*.rst")):
        m = _TIME.search(page.read_text(encoding="utf-8"))
        if m:
            times[page.stem] = 60 * float(m.group(1) or 0) + float(m.group(2))
    return times


# ---------------------------------------------------------------------------------------------
# Sphinx hooks
# ---------------------------------------------------------------------------------------------
def generate(app: Any) -> None:
    """``builder-inited``: write every generated page under ``docs/_generated``."""
    from sphinx.util import logging

    log = logging.getLogger(__name__)
    from clusterspy.domain import REASONS

    results = load_results()
    _write(GENERATED / "cli.rst", cli_page(cli_help_texts()))
    pages = api_pages(package_modules())
    for rel, text in pages.items():
        _write(DOCS / rel, text)
    for stale in (DOCS / "api").glob("*.rst"):  # a module removed since the last build
        if f"api/{stale.name}" not in pages:
            stale.unlink()
    trust, missing = trust_page(results, REASONS)
    for reason in missing:
        log.warning("clusterspy_docs: reason %r of clusterspy.domain.REASONS has no meaning in "
                    "docs/_ext/clusterspy_docs.py REASON_MEANING", reason)
    _write(GENERATED / "trust.rst", trust)
    _write(GENERATED / "figures.rst", figures_page(results, RESULTS.glob("*.png")))


def check_times(app: Any, exception: Exception | None) -> None:
    """``build-finished``: print each tutorial's time and warn past ``clusterspy_tutorial_max_s``."""
    if exception is not None:
        return
    from sphinx.util import logging

    log = logging.getLogger(__name__)
    # the limit is for a 2-core machine running nothing else (CI); a loaded one may raise it
    limit = float(os.environ.get("CLUSTERSPY_DOCS_TUTORIAL_MAX_S", app.config.clusterspy_tutorial_max_s))
    times = tutorial_times(Path(app.srcdir) / "auto_tutorials")
    for name, seconds in times.items():
        log.info("tutorial %s: %.1f s", name, seconds)
        if seconds > limit:
            log.warning("clusterspy_docs: tutorial %s took %.1f s (limit %.0f s)", name, seconds, limit)
    if times:
        log.info("tutorials: %d executed in %.1f s in all", len(times), sum(times.values()))


def skip_foreign(app: Any, what: str, name: str, obj: Any, skip: bool, options: Any) -> bool | None:
    """``autodoc-skip-member``: leave out, on module pages, what a module only imports or aliases.

    Classes and functions defined outside ClusterSpy (``scipy.spatial.cKDTree`` imported at module
    level) and type aliases (``Thumbs = dict[str, ...]``) are not part of the documented API.
    """
    if what != "module":
        return None
    if isinstance(obj, types.GenericAlias | types.UnionType):
        return True
    module = getattr(obj, "__module__", None)
    if (inspect.isclass(obj) or inspect.isroutine(obj)) and isinstance(module, str) \
            and not module.startswith("clusterspy"):
        return True
    return None


def hide_build_paths(app: Any, doctree: Any) -> None:
    """``doctree-read``: show paths of the package (``WEIGHTS_DIR = PosixPath(...)``) without the
    folder the docs were built in (``…/clusterspy/weights``): it is not where a user's install is."""
    from docutils import nodes
    from sphinx import addnodes

    prefix = str(ROOT / "src")
    for sig in doctree.findall(addnodes.desc_signature):
        for text in list(sig.findall(nodes.Text)):
            if prefix in text:
                text.parent.replace(text, nodes.Text(str(text).replace(prefix, "…")))


def setup(app: Any) -> dict[str, Any]:
    """Register the generators with Sphinx."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    app.add_config_value("clusterspy_tutorial_max_s", 60.0, "env")
    app.connect("builder-inited", generate, priority=100)
    app.connect("build-finished", check_times)
    app.connect("autodoc-skip-member", skip_foreign)
    app.connect("doctree-read", hide_build_paths)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
