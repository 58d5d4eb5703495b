"""One omnibot per SQLite database: an exclusive lock on ``<database>.lock``.

SQLite keeps one instance's data safe, but two ``omnibot run`` on one file would
both deliver every reply from the shared outbox. :class:`SingleInstanceLock` takes
``fcntl.flock(LOCK_EX | LOCK_NB)`` on a file next to the database and writes the
holder's pid into it. The kernel drops the lock when the holder closes it or dies
(even by SIGKILL), so a crash never leaves a stale lock behind; the file itself stays.

Usage (from ``SqliteStore.open``/``close``)::

    lock = SingleInstanceLock(path)   # ":memory:" (or "") makes it a no-op
    lock.acquire()                    # raises DatabaseInUse naming the holder's pid
    ...
    lock.release()                    # idempotent

flock locks belong to an open file description, so a second lock on the same
database is refused in the same process too, not only in another one.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from bot.errors import StoreError


class DatabaseInUse(StoreError):
    """Another omnibot holds the database's lock; ``pid`` is its process id when known."""

    def __init__(self, db_path: str, pid: int | None) -> None:
        self.db_path = db_path
        self.pid = pid
        who = f"another omnibot (pid {pid})" if pid is not None else "another omnibot"
        super().__init__(f"{db_path} is in use by {who}. SQLite serves one instance; for several "
                         "instances use PostgreSQL (storage.url: postgresql://...)")


def lock_path(db_path: str | os.PathLike[str]) -> Path:
    """The lock file of a database: ``<database>.lock``, next to the real file (symlinks resolved)."""
    return Path(os.path.realpath(os.fspath(db_path)) + ".lock")


class SingleInstanceLock:
    """An exclusive, non-blocking lock on ``<db_path>.lock`` holding this process's pid.

    Args:
        db_path: the SQLite database file, as configured (it is named so in the error).
            ``:memory:`` and ``""`` need no lock: acquire and release do nothing.
    """

    def __init__(self, db_path: str | os.PathLike[str]) -> None:
        self.db_path = os.fspath(db_path)
        self.path: Path | None = None if self.db_path in ("", ":memory:") else lock_path(self.db_path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`DatabaseInUse` at once (never waits).

        Raises:
            DatabaseInUse: another process, or another lock in this one, holds it.
            OSError: the lock file cannot be created (e.g. a read-only directory).
        """
        if self.path is None or self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)   # not inherited by child processes
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise DatabaseInUse(self.db_path, pid) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)   # closing drops the lock
            raise
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (idempotent). The file stays: removing it would race a new holder."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        os.close(fd)   # closing the descriptor releases the flock

    def __enter__(self) -> SingleInstanceLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
