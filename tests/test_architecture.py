"""The module table of ``../shared/DESIGN.md``, enforced on every import of ``src/clusterspy``.

Every ``import`` / ``from … import`` (module level, inside functions, under ``TYPE_CHECKING``,
relative ``from . import`` forms) and every ``import_module("clusterspy.…")`` / lazy-table string
is mapped to its *part* (the top-level module or package of ``clusterspy``) and checked against the
table: a part may import what its row lists and, transitively, what those may import; ``errors``
and ``isomers`` may be imported by everyone. The core (everything above ``plots``) never imports a
face, and no two parts import each other, however indirectly.

Run as a script (``python tests/test_architecture.py``) to print the offending imports.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "clusterspy"
PACKAGE = "clusterspy"

CORE = (
    "isomers", "errors", "image", "structures", "simulation", "datasets", "model", "weights", "io",
    "detection", "domain", "predict", "fit", "series", "thermo", "outdir",
)
FACES = ("plots", "report", "explain", "workflows", "batch", "cli", "integrations")
#: the package's own ``__init__`` / ``__main__``: they may import anything (the lazy public API)
ROOT = ("__init__", "__main__")
PARTS = (*CORE, *FACES)
EVERYONE_MAY_IMPORT = frozenset({"errors", "isomers"})

#: The "may import" column of DESIGN.md's module table (direct permissions; closed transitively below).
DESIGN_TABLE: dict[str, frozenset[str]] = {
    "isomers": frozenset(),  # "nothing of ours"
    "errors": frozenset(),  # "nothing of ours"
    "image": frozenset({"errors"}),
    "structures": frozenset({"isomers"}),
    "simulation": frozenset({"structures"}),
    "datasets": frozenset({"simulation", "structures"}),
    "model": frozenset({"datasets", "weights"}),
    "weights": frozenset({"isomers"}),
    "io": frozenset({"image"}),
    "detection": frozenset({"image"}),
    "domain": frozenset({"image", "weights"}),
    "predict": frozenset({"weights", "detection", "domain"}),
    "fit": frozenset({"simulation", "structures", "detection", "domain"}),  # the same domain as classify
    "series": frozenset({"predict", "detection", "io"}),
    "thermo": frozenset({"series"}),
    "outdir": frozenset({"errors"}),  # the lock of an output folder
    # "plots, report, explain | the core": one row, so they may also use one another.
    "plots": frozenset({*CORE, "report", "explain"}),
    "report": frozenset({*CORE, "plots", "explain"}),
    "explain": frozenset({*CORE, "plots", "report"}),
    "workflows": frozenset({*PARTS, "__init__"}),  # "anything"
    "batch": frozenset({*PARTS, "__init__"}),  # "anything" (the classify batch engine, a workflow)
    "cli": frozenset({*PARTS, "__init__"}),  # "anything"
    # "the core", and explain: the napari widget shows the saliency as report does (amended in README)
    "integrations": frozenset({*CORE, "explain"}),
    "__init__": frozenset({*PARTS, "__init__"}),
    "__main__": frozenset({*PARTS, "__init__"}),
}

#: Imports that break the table today, each with the reason it is tolerated and what ends it:
#: ``(file relative to src/clusterspy, imported part) -> why``. An entry that no longer matches
#: an import fails :func:`test_known_exceptions_are_still_needed`, so the list only shrinks.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {
    # TODO (owner of predict): predict may import weights, detection, domain — not io; as_image
    # (path / array / Signal2D → Image) belongs to the caller, or the table should list io for predict.
    ("predict.py", "io"): "classify() turns its input into an Image with io.as_image",
    # The table, not the code, is wrong here (to amend in README's Architecture, as a whole):
    # simulate() returns a calibrated Image ("every image that crosses a module boundary carries its
    # pixel size"), so simulation needs image; a training crop must be cut exactly as detection cuts
    # it at inference, so datasets needs detection (crop_cluster, crop_pixel_size_A) and image.
    ("simulation/__init__.py", "image"): "simulate() returns an Image",
    ("simulation/geometry.py", "image"): "check_pixel_size",
    ("datasets/sampling.py", "detection"): "training crops cut by detection.crop_cluster",
    ("datasets/sampling.py", "image"): "the simulated field as an Image, for crop_cluster",
}


def _closure(table: dict[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    allowed: dict[str, frozenset[str]] = {}
    for part in table:
        seen: set[str] = set()
        todo = list(table[part])
        while todo:
            p = todo.pop()
            if p not in seen:
                seen.add(p)
                todo.extend(table.get(p, ()))
        allowed[part] = frozenset(seen | EVERYONE_MAY_IMPORT | {part})
    return allowed


ALLOWED = _closure(DESIGN_TABLE)


@dataclass(frozen=True)
class Import:
    file: str  # relative to src/clusterspy, POSIX
    line: int
    module: str  # the absolute dotted name imported, e.g. "clusterspy.plots"
    importer: str  # the importing part
    imported: str  # the imported part

    def __str__(self) -> str:
        return f"src/clusterspy/{self.file}:{self.line} imports {self.module}"


def part_of_file(rel: Path) -> str:
    """The part a file under ``src/clusterspy`` belongs to (``plots.py`` → ``plots``)."""
    first = rel.parts[0]
    return first[:-3] if first.endswith(".py") else first


def part_of_module(name: str) -> str | None:
    """The part of a dotted module name, ``None`` when it is not ours; ``clusterspy`` → ``__init__``."""
    pieces = name.split(".")
    if pieces[0] != PACKAGE:
        return None
    return pieces[1] if len(pieces) > 1 else "__init__"


def _package_of(rel: Path) -> list[str]:
    """The dotted package a file lives in, for resolving relative imports."""
    return [PACKAGE, *rel.with_suffix("").parts][:-1]  # a module's (and an __init__'s) folder


def _imported_names(tree: ast.AST, rel: Path) -> Iterator[tuple[int, str]]:
    package = _package_of(rel)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                if not base:
                    continue
                prefix = ".".join(base)
            else:
                prefix = ""
            if node.module:
                yield from _from_names(node, f"{prefix}.{node.module}" if prefix else node.module)
            else:  # ``from . import x`` / ``from .. import x``
                yield from _from_names(node, prefix)
        elif isinstance(node, ast.Call):  # import_module("clusterspy.x")
            func = node.func
            name = getattr(func, "id", None) or getattr(func, "attr", "")
            if name in {"import_module", "__import__"} and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    yield node.lineno, arg.value
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict) and any(
                isinstance(t, ast.Name) and "LAZY" in t.id for t in node.targets):
            # lazy tables {"name": "clusterspy.module"}, resolved by import_module at run time
            for value in node.value.values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    yield value.lineno, value.value


def _from_names(node: ast.ImportFrom, mod: str) -> Iterator[tuple[int, str]]:
    if mod == PACKAGE:  # ``from clusterspy import plots`` imports the part, ``… import __version__`` the root
        for alias in node.names:
            yield node.lineno, f"{PACKAGE}.{alias.name}" if alias.name in PARTS else PACKAGE
    else:
        yield node.lineno, mod


def collect_imports(src: Path = SRC) -> list[Import]:
    """Every import of one of our modules by a file under ``src``, with both parts."""
    found: set[Import] = set()
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        importer = part_of_file(rel)
        for line, module in _imported_names(tree, rel):
            imported = part_of_module(module)
            if imported is not None:
                found.add(Import(rel.as_posix(), line, module, importer, imported))
    return sorted(found, key=lambda i: (i.file, i.line, i.module))


def violations(imports: list[Import] | None = None) -> list[Import]:
    """Imports the table does not allow (known exceptions included)."""
    imports = collect_imports() if imports is None else imports
    return [i for i in imports if i.imported not in ALLOWED.get(i.importer, frozenset())]


def unexcused(found: list[Import]) -> list[Import]:
    return [i for i in found if (i.file, i.imported) not in KNOWN_EXCEPTIONS]


def part_graph(imports: list[Import]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for i in imports:
        if i.importer in ROOT or i.imported in ROOT or i.importer == i.imported:
            continue
        graph.setdefault(i.importer, set()).add(i.imported)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one part (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def cycle_imports(imports: list[Import]) -> list[Import]:
    """The imports that make up the import cycles between parts."""
    comps = cycles(part_graph(imports))
    return [i for i in imports for c in comps
            if i.importer in c and i.imported in c and i.importer != i.imported]


def report(imports: list[Import] | None = None) -> str:
    imports = collect_imports() if imports is None else imports
    bad = violations(imports)
    lines = [f"{len(bad)} import(s) the DESIGN.md table does not allow:"]
    for i in bad:
        why = KNOWN_EXCEPTIONS.get((i.file, i.imported))
        lines.append(f"  {i}  ({i.importer} → {i.imported})" + (f"  [known: {why}]" if why else ""))
    comps = cycles(part_graph(imports))
    lines.append(f"{len(comps)} import cycle(s) between parts:")
    for c in comps:
        lines.append("  " + " ↔ ".join(c))
        lines.extend(f"    {i}" for i in cycle_imports(imports) if i.importer in c and i.imported in c)
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- tests


def test_every_file_belongs_to_a_part() -> None:
    parts = {part_of_file(p.relative_to(SRC)) for p in SRC.rglob("*.py")}
    assert parts <= set(DESIGN_TABLE), f"parts missing from the table: {sorted(parts - set(DESIGN_TABLE))}"


def test_the_analysis_sees_every_kind_of_import(tmp_path: Path) -> None:
    pkg = tmp_path / "clusterspy"
    (pkg / "series").mkdir(parents=True)
    (pkg / "series" / "__init__.py").write_text('_LAZY = {"x": "clusterspy.series.classify"}\n')
    (pkg / "series" / "classify.py").write_text(
        "import clusterspy.io\n"
        "from .. import plots\n"
        "from ..report import HtmlReport\n"
        "from . import hmm\n"
        "def f():\n"
        "    from clusterspy import explain, __version__\n"
        "    import importlib\n"
        "    importlib.import_module('clusterspy.cli')\n"
    )
    got = {(i.file, i.line, i.module) for i in collect_imports(pkg)}
    assert got == {
        ("series/__init__.py", 1, "clusterspy.series.classify"),
        ("series/classify.py", 1, "clusterspy.io"),
        ("series/classify.py", 2, "clusterspy.plots"),
        ("series/classify.py", 3, "clusterspy.report"),
        ("series/classify.py", 4, "clusterspy.series"),
        ("series/classify.py", 6, "clusterspy.explain"),
        ("series/classify.py", 6, "clusterspy"),
        ("series/classify.py", 8, "clusterspy.cli"),
    }
    bad = {i.imported for i in violations(collect_imports(pkg))}
    assert bad == {"plots", "report", "explain", "__init__", "cli"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_core_never_imports_a_face() -> None:
    bad = [i for i in collect_imports() if i.importer in CORE and i.imported in (*FACES, *ROOT)]
    print(report())
    assert not bad, "the core imports a face (no exception allowed):\n" + "\n".join(map(str, bad))


def test_imports_follow_the_design_table() -> None:
    bad = unexcused(violations())
    print(report())
    assert not bad, "imports the DESIGN.md table does not allow:\n" + "\n".join(
        f"{i}  ({i.importer} may not import {i.imported})" for i in bad)


def test_no_import_cycle_between_parts() -> None:
    imports = collect_imports()
    comps = cycles(part_graph(imports))
    assert not comps, "import cycles between parts:\n" + "\n".join(
        " ↔ ".join(c) + "\n" + "\n".join(f"  {i}" for i in cycle_imports(imports)
                                           if i.importer in c and i.imported in c)
        for c in comps)


def test_known_exceptions_are_still_needed() -> None:
    live = {(i.file, i.imported) for i in violations()}
    stale = sorted(set(KNOWN_EXCEPTIONS) - live)
    assert not stale, f"these known exceptions are fixed, remove them from KNOWN_EXCEPTIONS: {stale}"


if __name__ == "__main__":
    print(report())
    sys.exit(1 if unexcused(violations()) or cycles(part_graph(collect_imports())) else 0)
