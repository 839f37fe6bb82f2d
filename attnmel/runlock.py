"""One run folder, one writer: an exclusive lock held for as long as a process writes into a folder.

Two trainings started into the same run folder used to both "succeed" and leave a mix of their files (the
second's ``config.json`` and ``latest.pt`` beside the first's ``best.pt``). Now ``fit`` and ``evaluate`` take
:class:`RunLock` on their output folder first; a second writer is refused with :class:`RunFolderLocked`, which
names the holder (pid, host, start time, command).

The lock is ``<folder>/.attnmel.lock`` held with ``flock``: the kernel drops it when the holder exits, however it
exits (kill -9 included), so a lock can never outlive its process on the same host. The file also records who
holds it; a record left behind by a killed holder is a *stale* lock, reported in :attr:`RunLock.stale` and
replaced. Release empties the record but keeps the file (unlinking a flock'ed file lets two processes lock two
different inodes).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["LOCK_NAME", "RunFolderLocked", "RunLock", "remove_stale_temporaries"]

LOCK_NAME = ".attnmel.lock"


class RunFolderLocked(RuntimeError):
    """Another process is writing into this folder."""


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "an unknown process"
    command = holder.get("command") or "?"
    return (
        f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started {holder.get('started', '?')} "
        f"({command})"
    )


def _read_record(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = b""
    while chunk := os.read(fd, 65536):
        raw += chunk
    if not raw.strip():
        return {}
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"command": f"unreadable lock record of {len(raw)} bytes"}
    return record if isinstance(record, dict) else {}


class RunLock:
    """Exclusive writer lock on ``folder``; use as a context manager or with ``acquire()`` / ``release()``.

    ``purpose`` (e.g. "train", "evaluate") goes into the record so a refused writer learns what holds the folder.
    """

    def __init__(self, folder: str | os.PathLike, purpose: str = "write") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.purpose = purpose
        self.stale: dict[str, Any] | None = None  # the record a killed holder left, if any
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: this RunLock is already held")
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_record(fd)
            os.close(fd)
            raise RunFolderLocked(
                f"{self.folder} is in use by {_describe(holder)}; one run folder has one writer: wait for it "
                "to finish, or choose another run folder"
            ) from None
        except OSError:
            os.close(fd)
            raise
        previous = _read_record(fd)
        self.stale = previous or None  # a record survives only if its holder died without releasing
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "purpose": self.purpose,
            "command": " ".join(sys.argv)[:500],
        }
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(record) + "\n").encode("utf-8"))
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):  # a vanished or read-only folder must not mask the real error
            os.ftruncate(fd, 0)
        os.close(fd)  # closing drops the flock

    def describe_stale(self) -> str | None:
        """One line about the stale record this lock replaced, or None."""
        if not self.stale:
            return None
        return (
            f"{self.path}: replaced a stale lock left by {_describe(self.stale)}, which is no longer running"
        )

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def remove_stale_temporaries(folder: str | os.PathLike) -> list[tuple[Path, int]]:
    """Delete the ``.<name>.<random>.tmp`` files that :mod:`attnmel.io` leaves when a writer is killed mid-write.

    Call this only while holding the folder's :class:`RunLock`: then no live writer owns any of them. Returns
    ``[(path, bytes)]`` of what was removed.
    """
    removed: list[tuple[Path, int]] = []
    root = Path(folder)
    if not root.is_dir():
        return removed
    for path in root.rglob(".*.tmp"):
        if not path.is_file() or path.name.count(".") < 3:  # ".<name>.<random>.tmp" has at least three dots
            continue
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append((path, size))
    return removed
