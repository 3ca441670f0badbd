"""Atomic writers: a temporary file in the same folder, then a rename (never a half-written file)."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.errors import InputFileError


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file in the same folder and a rename.

    A reader never sees a half-written file, and an interrupted write leaves the old file (or
    none) in place. The folder must exist. Returns the path.
    """
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise InputFileError(f"cannot write {target}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_json(obj: Any, path: str | os.PathLike, *, indent: int = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (nothing half-written on failure).

    NumPy scalars/arrays and objects with ``to_dict()`` are converted. Returns the path.
    """
    text = json.dumps(obj, indent=indent, default=_jsonable, ensure_ascii=False, allow_nan=False)
    return write_text_atomic(path, text + "\n")


def write_csv(
    rows: Sequence[Mapping[str, Any]], path: str | os.PathLike,
    *, fieldnames: Sequence[str] | None = None,
) -> Path:
    """Write ``rows`` (one mapping each) as CSV with a header, atomically. Returns the path.

    Nested mappings (e.g. ``probabilities``) are flattened to ``key_subkey`` columns.
    """
    flat = []
    for row in rows:
        out: dict[str, Any] = {}
        for k, v in (row.to_dict() if hasattr(row, "to_dict") else row).items():
            if isinstance(v, Mapping):
                for k2, v2 in v.items():
                    out[f"{k}_{k2}"] = _jsonable(v2) if isinstance(v2, np.generic) else v2
            else:
                out[k] = _jsonable(v) if isinstance(v, (np.generic, Path)) else v
        flat.append(out)
    if fieldnames is None:
        fieldnames = []
        for row in flat:
            fieldnames += [k for k in row if k not in fieldnames]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return write_text_atomic(path, buf.getvalue())
