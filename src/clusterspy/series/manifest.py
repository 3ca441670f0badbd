"""``run.json``: what a series run was made from — its input and the settings that decide its
results — checked before a run resumes in the same output folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clusterspy.errors import ConfigError
from clusterspy.io import write_text_atomic

__all__ = ["MANIFEST_NAME", "check_or_write_manifest", "clean_temporary_files"]

#: File name of the run manifest inside the output folder.
MANIFEST_NAME = "run.json"
SCHEMA = "clusterspy.series-run/1"


def _first_difference(old: dict, new: dict, prefix: str = "") -> str | None:
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = _first_difference(a, b, f"{prefix}{key}.")
            if found:
                return found
        elif a != b:
            return f"{prefix}{key} was {a!r}, now {b!r}"
    return None


def _holds_frames(frames_csv: Path) -> bool:
    """Whether ``frames.csv`` holds a frame's row (more than its header)."""
    with open(frames_csv, encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip()) > 1


def check_or_write_manifest(folder: Path, manifest: dict[str, Any], resume: bool) -> bool:
    """Compare ``manifest`` with the folder's ``run.json``, or write it for a fresh run.

    Parameters
    ----------
    folder : pathlib.Path
        The output folder (exists).
    manifest : dict
        ``{"input": {...}, "settings": {...}}`` of this run (JSON values).
    resume : bool
        Whether results already in the folder may be continued.

    Returns
    -------
    bool
        True when the folder holds a run of the same input and settings to continue.

    Raises
    ------
    ConfigError
        ``resume`` and the folder holds results (a row of ``frames.csv``) of another input or other
        settings; a run that wrote no frame (its first frame refused) is simply started afresh.
    """
    doc = {"schema": SCHEMA, **manifest}
    path = folder / MANIFEST_NAME
    if resume and path.exists() and (folder / "frames.csv").exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        diff = _first_difference(old, json.loads(json.dumps(doc)))
        if diff is None:
            return True
        if not _holds_frames(folder / "frames.csv"):  # e.g. a refused first frame: nothing to lose
            write_text_atomic(path, json.dumps(doc, indent=2) + "\n")
            return False
        raise ConfigError(f"{folder} holds results of another run ({diff}); start afresh with "
                          "--no-resume (resume=False) or choose another output folder")
    write_text_atomic(path, json.dumps(doc, indent=2) + "\n")
    return False


def clean_temporary_files(folder: Path) -> list[Path]:
    """Delete the ``.*.tmp`` files an interrupted atomic write left in ``folder``; return them."""
    left = sorted(folder.glob(".*.tmp"))
    for p in left:
        p.unlink(missing_ok=True)
    return left
