"""``frames.csv``: the per-frame table of a series — its columns, reading, writing and resume point.

One row per frame and cluster. While a run goes, rows are appended batch by batch
(:class:`FramesTable`); a resumed run cuts the file back to the byte where its last checkpoint
ended, so rows of frames classified after that checkpoint are classified again, never twice.
At the end the table is rewritten atomically with the smoothed labels.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from clusterspy.errors import ConfigError
from clusterspy.io import write_text_atomic
from clusterspy.isomers import CLASSES

__all__ = [
    "BAD_FRAME",
    "BLURRED",
    "BRIGHT_FIELD",
    "COLUMN",
    "FRAME_COLUMNS",
    "LOST",
    "MERGED_MESSAGE",
    "MERGED_PATTERN",
    "OK",
    "SPLIT_MESSAGE",
    "SPLIT_PATTERN",
    "FramesTable",
    "new_row",
    "read_frames_csv",
    "rows_to_table",
]

#: Label of a frame where a tracked cluster was not found.
LOST = "lost"
#: Label of a frame too blurred to classify.
BLURRED = "blurred"
#: ``message`` of a track's row (label :data:`LOST`) in the frame its cluster merged with others into
#: a new cluster (:attr:`clusterspy.series.tracking.Tracker.merged`); :data:`MERGED_PATTERN` reads it.
MERGED_MESSAGE = "merged with cluster {others} into cluster {child}"
#: Regular expression of :data:`MERGED_MESSAGE`: groups the other parents ("1" or "1 and 3") and the child.
MERGED_PATTERN = r"merged with cluster (\d+(?: and \d+)*) into cluster (\d+)"
#: ``message`` of a new cluster's first row when it split from a followed one
#: (:attr:`clusterspy.series.tracking.Tracker.split`); :data:`SPLIT_PATTERN` reads it.
SPLIT_MESSAGE = "split from cluster {parent}"
#: Regular expression of :data:`SPLIT_MESSAGE`: groups the parent.
SPLIT_PATTERN = r"split from cluster (\d+)"
#: ``status`` of a row made from a usable frame.
OK = "ok"
#: ``status`` of a row standing for a frame that could not be read or used (its ``message`` says why).
BAD_FRAME = "bad_frame"
#: ``reason`` of every row of a frame whose contrast looks like bright field
#: (:func:`clusterspy.domain.looks_bright_field`): its clusters are not classified (label "unknown").
BRIGHT_FIELD = "bright_field"

#: Columns of ``frames.csv``, in order (``status`` and ``message``, then ``inferred`` — 1 where
#: the HMM gave a smoothed label the network did not, 0 elsewhere, empty until smoothing — then
#: ``model`` — the id of the model that judged the row's crop, empty when none did — were
#: appended last, so a ``frames.csv`` without them is still read).
FRAME_COLUMNS: tuple[str, ...] = (
    "frame", "time_s", "cluster", "x_px", "y_px", "label", "smoothed_label", "confidence",
    *(f"p_{c}" for c in CLASSES), "diameter_nm", "reason", "status", "message", "inferred", "model",
    "pixel_size_factor",
)
#: Position of each column in a row.
COLUMN: dict[str, int] = {c: i for i, c in enumerate(FRAME_COLUMNS)}
_OLD_COLUMNS = FRAME_COLUMNS[:-5]
_NO_INFERRED = FRAME_COLUMNS[:-3]
_NO_MODEL = FRAME_COLUMNS[:-2]
_NO_FACTOR = FRAME_COLUMNS[:-1]
_TEXT = ("label", "smoothed_label", "reason", "status", "message", "model")


def new_row(frame: int, time_s: float | None, cluster: int, label: str = LOST, *,
            status: str = OK, message: str = "") -> list[Any]:
    """A row of :data:`FRAME_COLUMNS` with no position, probabilities or diameter yet."""
    row: list[Any] = [None] * len(FRAME_COLUMNS)
    row[COLUMN["frame"]], row[COLUMN["time_s"]], row[COLUMN["cluster"]] = frame, time_s, cluster
    row[COLUMN["label"]], row[COLUMN["smoothed_label"]] = label, ""
    row[COLUMN["status"]], row[COLUMN["message"]] = status, message
    return row


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float | np.floating):
        return "" if not np.isfinite(v) else f"{float(v):.6g}"
    return str(v)


def read_frames_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``frames.csv`` written by :func:`~clusterspy.series.classify_series` into column arrays.

    Incomplete trailing lines (an interrupted write) are dropped. A file written before the
    ``status`` and ``message`` columns existed is read with ``status`` "ok" and no message; one
    without ``inferred``, ``model`` or ``pixel_size_factor`` with those empty.

    Returns
    -------
    dict of str to numpy.ndarray
        ``frame`` and ``cluster`` as int, ``label``, ``smoothed_label``, ``reason``, ``status``
        and ``message`` as str, the rest float (NaN where empty).
    """
    cols: dict[str, list] = {c: [] for c in FRAME_COLUMNS}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return rows_to_table([])
        if tuple(header) not in (FRAME_COLUMNS, _NO_FACTOR, _NO_MODEL, _NO_INFERRED, _OLD_COLUMNS):
            raise ConfigError(f"{path} is not a ClusterSpy frames.csv (columns {header})")
        width = len(header)
        for row in reader:
            # a run resumed after an upgrade (or two) appends rows of more columns under an older header
            if not width <= len(row) <= len(FRAME_COLUMNS) or row[COLUMN["label"]] == "":
                continue
            if len(row) == len(_OLD_COLUMNS):
                row = [*row, OK, ""]
            row = [*row, *[""] * (len(FRAME_COLUMNS) - len(row))]
            for c, v in zip(FRAME_COLUMNS, row, strict=True):
                cols[c].append(v)
    return _to_arrays(cols)


def rows_to_table(rows: list[list[Any]]) -> dict[str, np.ndarray]:
    """Column arrays (as :func:`read_frames_csv` returns them) from rows of :data:`FRAME_COLUMNS`."""
    cols: dict[str, list] = {c: [] for c in FRAME_COLUMNS}
    for row in rows:
        for c, v in zip(FRAME_COLUMNS, row, strict=True):
            cols[c].append("" if v is None else v)
    return _to_arrays(cols)


def _to_arrays(cols: dict[str, list]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for c, v in cols.items():
        if c in ("frame", "cluster"):
            out[c] = np.array([int(x) for x in v], dtype=np.int64)
        elif c in _TEXT:
            out[c] = np.array(v, dtype=object)
        else:
            out[c] = np.array([float(x) if x not in ("", None) else np.nan for x in v], float)
    return out


def _csv_text(rows: list[list[Any]], header: bool = False) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    if header:
        w.writerow(FRAME_COLUMNS)
    w.writerows([[_fmt(v) for v in row] for row in rows])
    return buf.getvalue()


class FramesTable:
    """The per-frame rows of a run: in ``frames.csv`` when ``path`` is given, else in memory.

    Parameters
    ----------
    path : pathlib.Path, optional
        ``frames.csv`` of the output folder.
    resume_bytes : int, optional
        With ``path``: keep the file's first ``resume_bytes`` bytes (the rows of the frames done
        at the last checkpoint) and append after them; ``None`` starts a new file.
    """

    def __init__(self, path: Path | None = None, resume_bytes: int | None = None) -> None:
        self.path = path
        self._rows: list[list[Any]] = []
        self._fh = None
        if path is None:
            return
        if resume_bytes is None:
            write_text_atomic(path, _csv_text([], header=True))
        else:
            with open(path, "r+b") as fh:
                fh.truncate(resume_bytes)
        self._fh = open(path, "a", newline="", encoding="utf-8")

    def append(self, rows: list[list[Any]]) -> None:
        """Add rows (written and flushed to the file at once when there is one)."""
        if self._fh is None:
            self._rows.extend(rows)
            return
        self._fh.write(_csv_text(rows))
        self._fh.flush()

    def size_bytes(self) -> int | None:
        """Bytes written so far (the resume point to record in a checkpoint), None in memory."""
        return None if self._fh is None else self._fh.tell()

    def close(self) -> None:
        """Close the file (rows appended so far stay)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def table(self) -> dict[str, np.ndarray]:
        """Every row so far as column arrays (from the file when there is one)."""
        if self.path is None:
            return rows_to_table(self._rows)
        self.close()
        return read_frames_csv(self.path)

    def write_final(self, table: dict[str, np.ndarray]) -> None:
        """Rewrite ``frames.csv`` atomically from ``table`` (with its smoothed labels)."""
        if self.path is None:
            return
        self.close()
        rows = [[table[c][i] for c in FRAME_COLUMNS] for i in range(len(table["frame"]))]
        write_text_atomic(self.path, _csv_text(rows, header=True))
