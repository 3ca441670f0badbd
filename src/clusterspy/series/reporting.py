"""Where the analysis (``series``, ``thermo``) hands its results to a face for figures and HTML.

The core never imports a face (``../shared/DESIGN.md``): :func:`~clusterspy.series.classify_series`
and :func:`~clusterspy.thermo.write_thermo_report` write their data files (``frames.csv``,
``summary.json``, ``thermo.json``) themselves and call a *reporter* for the figures and
``report.html``. A caller may pass its own (``classify_series(..., reporter=...)``); by default the
one registered here under the part's name is used. The package root, ``clusterspy/__init__.py``
(which may import anything), registers :func:`clusterspy.workflows.write_series_report` and
:func:`clusterspy.workflows.write_thermo_figures`, imported only when a report is written.

Reporters:

- ``"series"``: ``reporter(result: SeriesResult, explain_model or None) -> None`` — writes
  ``strip.png`` (``strip_cluster<i>.png``) and ``report.html`` into ``result.out``.
- ``"thermo"``: ``reporter(result: dict, out_dir: Path) -> Path`` — writes the figures and
  ``report.html`` into ``out_dir`` and returns the report's path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Reporter", "get_reporter", "register_reporter"]

Reporter = Callable[..., Any]

_REPORTERS: dict[str, Reporter] = {}


def register_reporter(name: str, reporter: Reporter) -> Reporter | None:
    """Make ``reporter`` the default for ``name`` (``"series"`` or ``"thermo"``); return the previous one."""
    previous = _REPORTERS.get(name)
    _REPORTERS[name] = reporter
    return previous


def get_reporter(name: str) -> Reporter:
    """The reporter registered for ``name``.

    Raises
    ------
    LookupError
        None is registered (``clusterspy/__init__.py`` registers both when the package is imported).
    """
    try:
        return _REPORTERS[name]
    except KeyError:
        raise LookupError(f"no {name!r} reporter is registered; pass reporter= or import clusterspy"
                          ) from None
