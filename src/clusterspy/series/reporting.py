"""Where the ``thermo`` analysis hands its results to a face for figures and HTML.

The core never imports a face (``../shared/DESIGN.md``): :func:`~clusterspy.thermo.write_thermo_report`
writes ``thermo.json`` itself and calls the *reporter* registered here under ``"thermo"`` for the
figures and ``report.html``; the package root, ``clusterspy/__init__.py`` (which may import
anything), registers :func:`clusterspy.workflows.write_thermo_figures`, imported only when a
report is written. (``series`` no longer uses this hook: :func:`clusterspy.workflows.classify_series`
runs the core's :func:`~clusterspy.series.classify_series` and then draws its report.)

Reporters:

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
    """Make ``reporter`` the default for ``name`` (``"thermo"``); return the previous one."""
    previous = _REPORTERS.get(name)
    _REPORTERS[name] = reporter
    return previous


def get_reporter(name: str) -> Reporter:
    """The reporter registered for ``name``.

    Raises
    ------
    LookupError
        None is registered (``clusterspy/__init__.py`` registers it when the package is imported).
    """
    try:
        return _REPORTERS[name]
    except KeyError:
        raise LookupError(f"no {name!r} reporter is registered; pass reporter= or import clusterspy"
                          ) from None
