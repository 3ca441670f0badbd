"""Errors a user can cause. The CLI prints their message (no traceback) and exits non-zero.

Every message says what went wrong *and* what to do about it.
"""

from __future__ import annotations

from typing import Any


class ClusterSpyError(Exception):
    """Base class of every error a user can cause (bad file, bad argument, bad data)."""

    exit_code = 2


class InputFileError(ClusterSpyError):
    """A file is missing, unreadable, truncated or of an unsupported format."""


class CalibrationError(ClusterSpyError):
    """The pixel size (Å/px) is missing, non-positive or implausible."""


class ImageDataError(ClusterSpyError):
    """The data are not a usable 2-D image (RGB, 1-D, 4-D, NaN/Inf, constant, too large, ...)."""


class NoClusterFoundError(ClusterSpyError):
    """No cluster could be found in an image."""


class ConfigError(ClusterSpyError):
    """A configuration / specification file or a parameter value is invalid."""


class MissingDependencyError(ClusterSpyError):
    """An optional dependency (extra) is needed for this feature but is not installed."""

    def __init__(self, package: str, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the optional package {package!r}; "
            f"install it with: pip install 'clusterspy[{extra}]'"
        )


def import_optional(package: str, extra: str, feature: str) -> Any:
    """Import the optional ``package``, or raise :class:`MissingDependencyError` naming ``extra``."""
    from importlib import import_module

    try:
        return import_module(package)
    except ImportError:
        raise MissingDependencyError(package, extra, feature) from None


class OutOfDomainError(ClusterSpyError):
    """The whole image is outside what the model can judge (pixel size, field of view, contrast)."""
