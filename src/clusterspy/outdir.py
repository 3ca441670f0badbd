"""One owner per output folder: a lock file made with ``O_EXCL``, taken over when stale.

``lock_folder(out)`` creates ``out/.clusterspy.lock`` holding the owner's pid, host, start time
(UTC) and command. A second run on the same folder is refused with one line naming the owner.
A lock left by a run that was killed (its pid no longer runs on this host, or is a zombie not
yet reaped by its parent) is taken over with a logged warning; a lock held from another host
cannot be checked, so the message says to delete the lock file when no run is using the folder.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clusterspy.errors import ConfigError

#: Name of the lock file inside an output folder.
LOCK_NAME = ".clusterspy.lock"

log = logging.getLogger(__name__)


def _alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (a zombie, dead but not yet reaped, does not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return _proc_state(pid) not in ("Z", "X")


def _proc_state(pid: int) -> str | None:
    """The state letter of a process in ``/proc/PID/stat`` (``R``, ``S``, ``Z`` …); None off Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 1:].split()  # the command name in (…) may hold spaces
    return fields[0] if fields else None


def _owner(lock: Path) -> dict | None:
    try:
        return json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _try_create(lock: Path, record: dict) -> bool:
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(record, fh)
        fh.flush()
        os.fsync(fh.fileno())
    return True


def acquire(out: str | os.PathLike, command: str = "clusterspy") -> Path:
    """Take the lock of folder ``out`` (created if missing) and return the lock file's path.

    Parameters
    ----------
    out : path-like
        The output folder.
    command : str
        What holds the lock (shown to a run that is refused).

    Raises
    ------
    ConfigError
        When another live run holds the folder, or a lock from another host is present.
    """
    folder = make_folder(out)
    lock = folder / LOCK_NAME
    host = socket.gethostname()
    record = {"pid": os.getpid(), "host": host, "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                             time.gmtime()),
              "command": command}
    for _ in range(5):
        try:
            if _try_create(lock, record):
                return lock
        except OSError as exc:
            raise ConfigError(f"cannot write in --out {folder}: {exc.strerror}") from None
        owner = _owner(lock)
        if owner is None:  # being written right now, or a torn record from a crash
            time.sleep(0.2)
            owner = _owner(lock)
            if owner is None:
                lock.unlink(missing_ok=True)
                continue
        if owner.get("host") == host and not _alive(int(owner.get("pid", -1))):
            log.warning("clusterspy: warning: taking over %s: its run (pid %s, since %s) no longer runs",
                        lock, owner.get("pid"), owner.get("started_utc"))
            lock.unlink(missing_ok=True)  # stale: its run was killed; take it over
            continue
        where = "" if owner.get("host") == host else f" on host {owner.get('host')}"
        raise ConfigError(
            f"--out {folder} is in use by {owner.get('command', 'another run')} (pid {owner.get('pid')}"
            f"{where}, since {owner.get('started_utc')}); wait for it to finish or use another --out "
            f"(if no run uses it, delete {lock})")
    raise ConfigError(f"cannot take the lock {lock}; if no run uses --out {folder}, delete it")


def release(lock: Path) -> None:
    """Remove a lock file taken by :func:`acquire` (only if this process still owns it)."""
    owner = _owner(lock)
    if owner is not None and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
        lock.unlink(missing_ok=True)


@contextmanager
def lock_folder(out: str | os.PathLike, command: str = "clusterspy") -> Iterator[Path]:
    """Hold the lock of ``out`` for the duration of a ``with`` block (see :func:`acquire`)."""
    lock = acquire(out, command)
    try:
        yield lock
    finally:
        release(lock)


def make_folder(out: str | os.PathLike) -> Path:
    """The output folder ``out``, created if missing (parents too).

    Raises
    ------
    ConfigError
        In one line, when ``out`` is a file or cannot be created (before any work is done).
    """
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        if blocker != folder:  # a parent is the file: name it, not the folder asked for
            raise ConfigError(f"cannot create --out {folder}: {blocker} is a file") from None
        raise ConfigError(f"--out {folder} is a file; give a folder (it is created if missing)") from None
    except OSError as exc:
        raise ConfigError(f"cannot create --out {folder}: {exc.strerror}") from None
    return folder


def check_folder(out: str | os.PathLike) -> Path:
    """``out`` checked as an output folder without creating it: an existing folder, or a path whose
    nearest existing parent is a writable folder (:func:`make_folder` creates it when there is
    something to write).

    Raises
    ------
    ConfigError
        In one line, when ``out`` is a file or could not be created.
    """
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--out {folder} is a file; give a folder (it is created if missing)")
    parent = folder
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"cannot create --out {folder}: {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot create --out {folder}: {parent} is not writable")
    return folder
