"""``run.json``: what a series run was made from — its input and the settings that decide its
results — checked before a run resumes in the same output folder."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clusterspy.errors import ConfigError
from clusterspy.io import write_text_atomic

__all__ = ["MANIFEST_NAME", "check_or_write_manifest", "clean_temporary_files", "record_progress"]

#: File name of the run manifest inside the output folder.
MANIFEST_NAME = "run.json"
SCHEMA = "clusterspy.series-run/1"


#: Settings of ``run.json`` that a ``clusterspy series`` option sets: their words in a refusal, with
#: the Python keyword and the flag (the other settings are keywords of classify_series only).
_SETTING_NAMES = {
    "pixel_size_A": "pixel size (pixel_size_A / --pixel-size)",
    "frame_time_s": "frame time (frame_time_s / --frame-time)",
    "contrast": "contrast (contrast / --contrast)",
    "temperature_K": "temperature (temperature_K / --temperature-K)",
    "model_id": "model (model / --model)",
    "model_sha256": "model (model / --model)",
    "source": "input",
}


#: Settings that decide no row of ``frames.csv``, only the summary (made again from ``frames.csv``
#: whenever a run ends): a rerun on the same folder may change them, and ``run.json`` then records
#: the new value. ``clusterspy thermo`` asks for a series' temperature this way.
SUMMARY_ONLY_SETTINGS = ("temperature_K",)


#: ``run.json``'s key saying how far the run got (:func:`record_progress`); not a setting.
PROGRESS_KEY = "progress"


def _rows_settings(doc: dict) -> dict:
    """``doc`` without the :data:`SUMMARY_ONLY_SETTINGS` and its :data:`PROGRESS_KEY`."""
    settings = {k: v for k, v in (doc.get("settings") or {}).items() if k not in SUMMARY_ONLY_SETTINGS}
    return {**{k: v for k, v in doc.items() if k != PROGRESS_KEY}, "settings": settings}


def _differences_in_words(old: dict, new: dict, prefix: str = "") -> str | None:
    """The differences of two manifests, in words (:func:`_differences`), joined by ``"; "``: every
    one, not the first alone (a newcomer who changed the pixel size and left out the frame time was
    told of the frame time only); None when they agree."""
    found = _differences(old, new, prefix)
    return "; ".join(found) if found else None


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Each difference of two manifests, in words: ``"frame time (frame_time_s / --frame-time) was
    0.1, now 0.2"``; a setting no option sets by its key (``settings.stay was …``); another input
    alone when the inputs differ."""
    if prefix == "" and old.get("input") != new.get("input"):
        return [_input_difference(old.get("input") or {}, new.get("input") or {})]
    found: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            name = _SETTING_NAMES.get(key) if prefix == "settings." else None
            found.append(f"{name or prefix + key} was {_shown(a)}, now {_shown(b)}")
    return found


def _shown(value: Any) -> str:
    """A manifest value in a refusal: its repr, or ``not given`` for None."""
    return "not given" if value is None else repr(value)


def _input_difference(old: dict, new: dict) -> str:
    """How the input differs: another file (or signal), or the same file (array) with other contents."""
    if old.get("path") != new.get("path"):
        was, now = (repr(d["path"]) if d.get("path") else "an array" for d in (old, new))
        return f"input was {was}, now {now}"
    if old.get("signal") != new.get("signal"):
        return f"signal (signal / --signal) was {old.get('signal')!r}, now {new.get('signal')!r}"
    what = "another array" if new.get("path") is None else f"{new['path']!r} changed since"
    return f"input: {what} (size, modification time or contents differ)"


def _holds_frames(frames_csv: Path) -> bool:
    """Whether ``frames.csv`` holds a frame's row (more than its header)."""
    with open(frames_csv, encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip()) > 1


def check_or_write_manifest(folder: Path, manifest: dict[str, Any], resume: bool,
                            announce: Callable[[str], None] | None = None) -> bool:
    """Compare ``manifest`` with the folder's ``run.json``, or write it for a fresh run.

    Parameters
    ----------
    folder : pathlib.Path
        The output folder (exists).
    manifest : dict
        ``{"input": {...}, "settings": {...}}`` of this run (JSON values).
    resume : bool
        Whether results already in the folder may be continued.
    announce : callable, optional
        Called with one line when the folder held another run that wrote no frame's row (no
        cluster found, or its first frame refused), which this run replaces.

    Returns
    -------
    bool
        True when the folder holds a run of the same input and settings to continue (settings of
        :data:`SUMMARY_ONLY_SETTINGS` may differ).

    Raises
    ------
    ConfigError
        ``resume`` and the folder holds results (a row of ``frames.csv``) of another input or other
        settings; a run that wrote no frame (its first frame refused) is simply started afresh.
    """
    doc = {"schema": SCHEMA, **manifest}
    path = folder / MANIFEST_NAME
    if resume and path.exists() and (folder / "frames.csv").exists():
        old, now = json.loads(path.read_text(encoding="utf-8")), json.loads(json.dumps(doc))
        diff = _differences_in_words(_rows_settings(old), _rows_settings(now))
        if diff is None:
            if PROGRESS_KEY in old:
                now[PROGRESS_KEY] = old[PROGRESS_KEY]
            if old != now:  # a summary-only setting changed: recorded for the summary made now
                write_text_atomic(path, json.dumps(now, indent=2) + "\n")
            return True
        if not _holds_frames(folder / "frames.csv"):  # e.g. a refused first frame: nothing to lose
            if announce is not None:
                announce(f"{folder} held another run that wrote no frame's row ({diff}): this one "
                         "replaces it")
            write_text_atomic(path, json.dumps(doc, indent=2) + "\n")
            return False
        raise ConfigError(f"{folder} holds results of another run ({diff}); start afresh with "
                          "--no-resume (resume=False) or choose another output folder")
    write_text_atomic(path, json.dumps(doc, indent=2) + "\n")
    return False


def record_progress(folder: Path, frames_classified: int, n_frames: int | None, finished: bool) -> None:
    """Say in ``folder``'s ``run.json`` how far its run got, so that a ``frames.csv`` left by an
    interrupted or killed run is not taken for a whole one.

    ``run.json`` gains ``"progress": {"frames_classified", "n_frames", "finished"}``: ``finished``
    is true once ``summary.json`` and the smoothed ``frames.csv`` are written. A run sets it false
    when it starts, updates ``frames_classified`` with every checkpoint (after its rows are in
    ``frames.csv``) and sets it true when it ends, so a run interrupted or killed on the way is
    left marked unfinished with the frames its ``frames.csv`` holds.

    Parameters
    ----------
    folder : pathlib.Path
        The output folder (holding ``run.json``).
    frames_classified : int
        Frames whose rows ``frames.csv`` holds.
    n_frames : int or None
        Frames of the input (None when unknown, e.g. an iterator).
    finished : bool
        Whether the run ended with its summary written.
    """
    path = folder / MANIFEST_NAME
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc[PROGRESS_KEY] = {"frames_classified": int(frames_classified),
                         "n_frames": None if n_frames is None else int(n_frames), "finished": bool(finished)}
    write_text_atomic(path, json.dumps(doc, indent=2) + "\n")


def clean_temporary_files(folder: Path) -> list[Path]:
    """Delete the ``.*.tmp`` files an interrupted atomic write left in ``folder``; return them."""
    left = sorted(folder.glob(".*.tmp"))
    for p in left:
        p.unlink(missing_ok=True)
    return left
