"""Exclusive locks on folders: one study per output folder, one committer per store at a time.

A lock is a POSIX record lock (``fcntl.lockf``) on ``<folder>/.matteralign.lock``. The kernel
drops it when the holding process ends, however it ends (a SIGKILL included), so a lock left
by a dead process is never in force: the next process takes it over and overwrites the holder
record. Record locks belong to one process (a forked child does not inherit them), and a
process that asks again for a folder it already holds gets it at once (the lock is counted).

The file holds the holder's pid, host, command, purpose and start time as JSON, so the process
that is refused can say who holds the folder.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .errors import LockedError

__all__ = ["FolderLock", "LOCK_NAME", "holder"]

#: Name of the lock file inside a locked folder.
LOCK_NAME = ".matteralign.lock"

_held: dict[str, list] = {}  # real folder path -> [fd, count, pid of the holder]
_guard = threading.RLock()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_record(fd: int) -> dict[str, Any] | None:
    try:
        raw = os.pread(fd, 65536, 0)
        return json.loads(raw.decode()) if raw.strip() else None
    except (OSError, ValueError):
        return None


def holder(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The record of the process holding ``folder``'s lock, or ``None`` when the folder is free.

    Parameters
    ----------
    folder : path-like

    Returns
    -------
    dict or None
        ``pid``, ``host``, ``command``, ``purpose``, ``started`` of the holder.
    """
    import fcntl

    path = Path(folder) / LOCK_NAME
    if not path.exists():
        return None
    key = os.path.realpath(folder)
    with _guard:
        if key in _held:
            return _read_record(_held[key][0])
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _read_record(fd) or {"pid": None, "host": None, "command": None}
        return None
    finally:
        os.close(fd)  # closing drops the probe's shared lock


def _describe(rec: dict[str, Any] | None) -> str:
    if not rec:
        return "another process (no holder record)"
    since = f", since {rec['started']}" if rec.get("started") else ""
    return (f"process {rec.get('pid')} on host {rec.get('host')!r} running {rec.get('command')!r}"
            f" ({rec.get('purpose', 'lock')}{since})")


class FolderLock:
    """Exclusive lock on a folder, held by this process.

    Parameters
    ----------
    folder : path-like
        The folder to lock (created when missing).
    purpose : str
        What the holder does with it ("study", "store commit"); shown to a refused process.
    timeout : float
        Seconds to wait for a busy folder before giving up (0: refuse at once).
    poll : float
        Seconds between tries while waiting.

    Raises
    ------
    LockedError
        The folder is held by another live process (named in the message) after ``timeout``.

    Attributes
    ----------
    took_over : dict or None
        The record of a dead holder whose lock this one replaced (``None`` when the folder was free).

    Examples
    --------
    >>> with FolderLock("runs/study", purpose="study"):    # doctest: +SKIP
    ...     run_the_study()
    """

    def __init__(self, folder: str | os.PathLike, *, purpose: str = "study", timeout: float = 0.0,
                 poll: float = 0.2):
        self.folder = Path(folder)
        self.purpose = purpose
        self.timeout = float(timeout)
        self.poll = float(poll)
        self.took_over: dict[str, Any] | None = None
        self._key: str | None = None

    def acquire(self) -> FolderLock:
        """Take the lock (waiting up to ``timeout`` seconds); re-entrant within a process."""
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        key = os.path.realpath(self.folder)
        with _guard:
            if key in _held and _held[key][2] != os.getpid():  # a forked child: the lock is its parent's
                os.close(_held.pop(key)[0])
            if key in _held:
                _held[key][1] += 1
                self._key = key
                return self
            fd = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
            deadline = time.monotonic() + self.timeout
            try:
                while True:
                    try:
                        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except OSError:
                        if time.monotonic() >= deadline:
                            rec = _read_record(fd)
                            waited = f" after waiting {self.timeout:g} s" if self.timeout > 0 else ""
                            raise LockedError(
                                f"folder {str(self.folder)!r} is in use by {_describe(rec)}{waited}; wait for it "
                                "to finish, stop it, or choose another folder (--out)") from None
                        time.sleep(self.poll)
                old = _read_record(fd)
                if old and old.get("pid") is not None:
                    same_host = old.get("host") == socket.gethostname()
                    if not (same_host and old.get("pid") == os.getpid()) and not (
                            same_host and _pid_alive(int(old["pid"]))):
                        self.took_over = old  # its process is gone: the kernel dropped its lock
                record = {"pid": os.getpid(), "host": socket.gethostname(),
                          "command": " ".join(sys.argv)[:300] or sys.executable, "purpose": self.purpose,
                          "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(record).encode(), 0)
            except BaseException:
                os.close(fd)
                raise
            _held[key] = [fd, 1, os.getpid()]
            self._key = key
        return self

    def release(self) -> None:
        """Give the lock back (the last release of a re-entrant lock unlocks the folder)."""
        import fcntl

        if self._key is None:
            return
        with _guard:
            entry = _held.get(self._key)
            if entry is not None:
                entry[1] -= 1
                if entry[1] <= 0:
                    fd = entry[0]
                    try:
                        os.ftruncate(fd, 0)  # no stale record for the next holder
                    except OSError:
                        pass
                    try:
                        fcntl.lockf(fd, fcntl.LOCK_UN)
                    finally:
                        os.close(fd)
                        del _held[self._key]
        self._key = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
