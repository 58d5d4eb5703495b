"""SQLite backend (aiosqlite, WAL, versioned migrations): the embedded default, for one instance.

One connection; each operation (see :mod:`bot.storage.sql`) runs whole on
aiosqlite's connection thread, which runs one call at a time, so operations
never interleave. Operations asked for while the thread is busy (or in the same
event-loop iteration) go over together, in order, as ONE call: one hand-off and
one wake-up of the loop for all of them instead of one each. When several of
them write, they also share one transaction (a group commit, see :func:`_run_each`):
each all-or-nothing one inside its own savepoint, still all or nothing on its own, and
all answered only after the COMMIT.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any, Callable, Literal
from urllib.parse import quote

import aiosqlite

from bot.errors import StorageUnavailable, StoreConflict, StoreError

from . import ops_chat
from .filelock import SingleInstanceLock
from .health import StorageHealth
from .operations import WRITES, Operations
from .sql import Op, _drive_sync, is_transactional, run_sync
from .sqlite_schema import MIGRATIONS, SCHEMA_VERSION, split_sql

log = logging.getLogger(__name__)


# sqlite3 errors that mean "storage can't do it now" rather than "this operation is wrong":
# the primary result codes SQLITE_BUSY, LOCKED, NOMEM, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL.
_UNAVAILABLE_CODES = {5, 6, 7, 8, 10, 13, 14, 15}



Call = tuple[Callable[..., Op[Any]], tuple[Any, ...], dict[str, Any]]


class _GroupFailed(Exception):
    """The shared transaction could not be had or kept; it is rolled back, nothing was written."""


def _run_each(con: sqlite3.Connection, calls: list[Call]) -> list[tuple[bool, Any]]:
    """Run operations one after another on the connection thread: (True, result) or
    (False, exception) for each; one failing does not stop the others.

    Several that write share one transaction (a group commit): each transactional one runs
    inside a savepoint, so it is still all or nothing on its own, and its result is handed back only after the COMMIT,
    so what a caller is told is stored is stored. If the shared transaction cannot be had
    (the write lock is held elsewhere) or storage fails inside it, it is rolled back and the
    operations run again one by one, each in its own transaction, exactly as without grouping.
    """
    if len(calls) > 1 and sum(1 for op, _, _ in calls if op.__name__ in WRITES) > 1:
        try:
            return _run_grouped(con, calls)
        except _GroupFailed:
            pass
    out: list[tuple[bool, Any]] = []
    for op, args, kwargs in calls:
        try:
            out.append((True, run_sync(con, op, args, kwargs)))
        except Exception as exc:  # noqa: BLE001 - handed to that operation's caller
            out.append((False, exc))
    return out


def _run_grouped(con: sqlite3.Connection, calls: list[Call]) -> list[tuple[bool, Any]]:
    try:
        con.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise _GroupFailed from exc
    out: list[tuple[bool, Any]] = []
    try:
        for op, args, kwargs in calls:
            # only an operation that is all or nothing needs a savepoint: one that is not keeps
            # what it did before failing (as in autocommit), so a savepoint would change nothing
            # for it (and reads have nothing to undo): two statements fewer for each of those
            tx = is_transactional(op)
            if tx:
                con.execute("SAVEPOINT op")
            try:
                result = _drive_sync(con, op(*args, **kwargs))
            except sqlite3.Error as exc:
                if _unavailable(exc):
                    raise _GroupFailed from exc
                if tx:
                    _undo(con)
                out.append((False, exc))
                continue
            except Exception as exc:  # noqa: BLE001 - handed to that operation's caller
                if tx:
                    _undo(con)
                out.append((False, exc))
                continue
            if tx:
                con.execute("RELEASE op")
            out.append((True, result))
        con.execute("COMMIT")
    except BaseException as exc:
        try:
            if con.in_transaction:
                con.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        if isinstance(exc, Exception):
            raise _GroupFailed from exc
        raise
    return out


def _undo(con: sqlite3.Connection) -> None:
    """A failed transactional operation leaves nothing (another keeps what it did before
    failing, as in autocommit: it runs without a savepoint)."""
    con.execute("ROLLBACK TO op")
    con.execute("RELEASE op")


def _unavailable(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _UNAVAILABLE_CODES
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and any(
        w in text for w in ("locked", "full", "disk i/o", "readonly", "unable to open"))



class SqliteStore(Operations):
    """The embedded default store.

    Args:
        path: database file, or ``:memory:``.
        synchronous: SQLite ``synchronous`` pragma. ``normal`` (default) keeps
            every committed transaction across a process crash; ``full`` also
            across a power loss, at the cost of an fsync per commit.
        readonly: open an existing database read-only (``file:...?mode=ro``) for
            ``omnibot report`` beside a running omnibot: no instance lock, no
            migrations (the schema must be this omnibot's), and any operation that
            writes is refused with :class:`StoreError`. WAL lets it read while the
            bot writes.
    """

    def __init__(self, path: str | os.PathLike[str], *,
                 synchronous: Literal["normal", "full"] = "normal", readonly: bool = False) -> None:
        self.path = str(path)
        self.synchronous = synchronous
        self.readonly = readonly
        self._db: aiosqlite.Connection | None = None
        self.health = StorageHealth()
        self._lock = SingleInstanceLock(self.path)
        self._waiting: list[tuple[Callable[..., Op[Any]], tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None   # hands the waiting operations over

    # -- life cycle ---------------------------------------------------------

    async def open(self) -> None:
        if self.readonly:
            await self._open_readonly()
            return
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # one omnibot per SQLite file: a second one would send every reply again
        self._lock.acquire()
        try:
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
        except BaseException:
            self._lock.release()
            raise
        self._db.row_factory = aiosqlite.Row
        try:
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            await self._db.execute("PRAGMA foreign_keys=ON")
            await self._db.execute("PRAGMA busy_timeout=5000")
            await self.migrate()
            self._con: sqlite3.Connection = self._db._conn  # what the operations run on
        except BaseException:
            # A refused or failed open must not leave the connection (and its thread) behind.
            db, self._db = self._db, None
            await db.close()
            self._lock.release()
            raise

    async def _open_readonly(self) -> None:
        """Connect read-only, without the instance lock (a running omnibot holds it) or migrations."""
        if self.path == ":memory:":
            raise StoreError("a read-only store needs a database file, not :memory:")
        if not Path(self.path).is_file():
            raise FileNotFoundError(f"{self.path}: no such database (is storage.url right?)")
        self._db = await aiosqlite.connect(f"file:{quote(os.path.abspath(self.path))}?mode=ro", uri=True,
                                           isolation_level=None)
        self._db.row_factory = aiosqlite.Row
        try:
            await self._db.execute("PRAGMA busy_timeout=5000")
            current = await self.schema_version()
            if current != SCHEMA_VERSION:
                raise StoreError(
                    f"database {self.path} has schema version {current}, this omnibot reads {SCHEMA_VERSION}; "
                    + ("upgrade omnibot" if current > SCHEMA_VERSION else
                       "start omnibot once (or run omnibot db migrate) to upgrade it"))
            self._con = self._db._conn
        except BaseException:
            db, self._db = self._db, None
            await db.close()
            raise

    async def close(self) -> None:
        if self._db is not None:
            sender = self._sender
            if sender is not None and not sender.done() and sender.get_loop() is asyncio.get_running_loop():
                await asyncio.wait([sender])   # what was asked for before the close still runs
            db, self._db = self._db, None
            await db.close()
            if not self.readonly:
                self._lock.release()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("store is not open")
        return self._db

    async def schema_version(self) -> int:
        async with self.db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0])

    async def migrate(self) -> None:
        """Apply every migration past the database's ``user_version``, each in its own transaction."""
        current = await self.schema_version()
        if current > SCHEMA_VERSION:
            raise StoreError(f"database {self.path} has schema version {current}, newer than this "
                             f"omnibot ({SCHEMA_VERSION}); upgrade omnibot")
        for version in range(current, SCHEMA_VERSION):
            log.info("migrating %s to schema version %d", self.path, version + 1)
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                for stmt in split_sql(MIGRATIONS[version]):
                    await self.db.execute(stmt)
                await self.db.execute(f"PRAGMA user_version={version + 1}")
                await self.db.execute("COMMIT")
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise

    # -- helpers ------------------------------------------------------------

    async def _call(self, op: Callable[..., Op[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        db = self.db   # raises StoreError when closed
        if self.readonly and op.__name__ in WRITES:
            raise StoreError(f"{op.__name__}: the store is open read-only")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        if self._sender is not None and self._sender.get_loop() is not loop:
            # a new event loop (another test, a restarted app): what the old one left is void
            self._waiting, self._sender = [w for w in self._waiting if w[3].get_loop() is loop], None
        self._waiting.append((op, args, kwargs, fut))
        if self._sender is None or self._sender.done():
            self._sender = loop.create_task(self._send_waiting(db))
        try:
            result = await fut
        except sqlite3.IntegrityError as exc:
            raise StoreConflict(f"{op.__name__}: {exc}") from exc
        except sqlite3.Error as exc:
            if _unavailable(exc):
                self.health.failed(op.__name__, exc)
                raise StorageUnavailable(f"{op.__name__}: {exc}") from exc
            raise
        if self.health.failing and op.__name__ in WRITES:
            self.health.succeeded()
        return result

    async def _send_waiting(self, db: aiosqlite.Connection) -> None:
        """Hand the waiting operations to the connection thread, all together, until none wait."""
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                # aiosqlite's own way to run a callable on its connection thread. It is not
                # public API (hence the version pin in pyproject.toml); the storage tests
                # exercise every operation through it.
                outcomes = await db._execute(_run_each, self._con, [(op, a, kw) for op, a, kw, _ in batch])
            except asyncio.CancelledError:   # the loop is ending
                for *_, fut in batch + self._waiting:
                    fut.cancel()
                self._waiting = []
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. the connection closed under them
                for *_, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (*_, fut), (ok, value) in zip(batch, outcomes):
                if fut.done():
                    continue      # its caller gave up; the operation ran all the same, as before
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)

    async def probe(self) -> bool:
        """Try one small write that needs free space and the write lock; True if it went through.

        The runtime's recovery sweep calls it while storage is failing and nothing else is
        waiting to be written, so that ``/readyz`` turns back to ``ok`` on its own.
        """
        try:
            await self._call(ops_chat.probe, (), {})
        except StorageUnavailable:
            return False
        return True
