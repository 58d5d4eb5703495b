"""PostgreSQL backend (asyncpg): one database shared by several omnibot instances.

Every operation (see :mod:`bot.storage.sql`) runs on a connection from a small
pool, inside a transaction when it is marked so. Writers of one conversation
queue on a transaction-scoped advisory lock (``Lock`` requests), so order holds
across instances; nothing here depends on a session outliving one operation,
which also keeps the store usable behind PgBouncer in transaction mode.

Operations asked for together (in one event-loop iteration, or while every pooled
connection is busy) go to one connection together, one after another: one pool
acquire for all of them. When two or more of them write, they share one transaction
(a group commit, as on SQLite: one COMMIT instead of one each) and each caller is
answered only after that COMMIT. If any of them fails inside the shared transaction,
it is rolled back and they run again one by one, each as it would alone, so a
failing operation fails alone.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

import asyncpg

from bot.aio import stop_tasks, wait_for
from bot.errors import StorageUnavailable, StoreConflict, StoreError

from . import ops_chat
from .admin import mask_url
from .health import StorageHealth
from .operations import WRITES, Operations
from .postgres_schema import BASELINE, BASELINE_SQL, FUNCTIONS_SQL, MIGRATIONS, byte_order
from .sql import Lock, Op, Request, _drive_async, lock_key, run_async
from .sqlite_schema import SCHEMA_VERSION

log = logging.getLogger(__name__)

# A fixed key for the migration lock (any bigint; this one spells "omnibot").
_MIGRATION_LOCK = 0x6F6D6E69626F74

# SQLSTATE classes that mean "the database can't do it now", not "this operation is wrong":
# 08 connection exception, 53 insufficient resources (disk full, out of memory, too many
# connections), 57 operator intervention (shutdown, cancelled), 58 system error (I/O);
# and 25006 read-only transaction (a replica, or default_transaction_read_only).
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")
# Conflicts that a new attempt resolves: serialization failure, deadlock.
_RETRY_STATES = ("40001", "40P01")


Call = tuple[Callable[..., Op[Any]], tuple[Any, ...], dict[str, Any]]
Waiting = tuple[Callable[..., Op[Any]], tuple[Any, ...], dict[str, Any], "asyncio.Future[Any]"]
#: At most this many operations share one transaction (their advisory locks are held until its COMMIT).
GROUP_MAX = 32
#: How long a statement of a shared transaction waits for a lock before the group gives up.
GROUP_LOCK_WAIT_MS = 100
_GROUP_BEGIN = f"BEGIN; SET LOCAL lock_timeout = {GROUP_LOCK_WAIT_MS}"
#: A close waits this many ``timeout`` periods for the operations asked for before it.
CLOSE_WAITS = 3


class _GroupFailed(Exception):
    """The shared transaction was rolled back before its COMMIT: nothing of it was written."""


def _unavailable(exc: BaseException) -> bool:
    if isinstance(exc, (OSError, asyncio.TimeoutError, asyncpg.InterfaceError)):
        return True
    state = getattr(exc, "sqlstate", None) or ""
    return state.startswith(_UNAVAILABLE_CLASSES) or state == "25006"


async def _reset(con: asyncpg.Connection) -> None:
    """What a connection needs before it goes back to the pool: nothing but ending a transaction.

    asyncpg's default reset sends four statements (unlock all advisory locks, close cursors,
    UNLISTEN *, RESET ALL) on every release: measured, 4 of every 10 round trips per message.
    Pooled connections hold none of that state here: advisory locks are transaction-scoped,
    LISTEN and the migration lock have connections of their own, and nothing SETs a session.
    """
    if con.is_in_transaction():
        await con.execute("ROLLBACK")


class PostgresStore(Operations):
    """The store for several instances.

    Args:
        url: ``postgresql://user:password@host:port/database``.
        pool_size: connections per instance. A few suffice: each operation holds one
            for a few statements; N instances need N x (pool_size + 2) connections
            (the event listener and the migration lock take one each).
        timeout: seconds before a statement counts as storage being unavailable.
    """

    shared = True

    def __init__(self, url: str, *, pool_size: int = 4, timeout: float = 10.0) -> None:
        self.url = url
        self.pool_size = pool_size
        self.timeout = timeout
        self._pool: asyncpg.Pool | None = None
        self.health = StorageHealth()
        self._waiting: list[Waiting] = []
        self._runners = 0          # tasks running waiting operations, one pooled connection each
        self._pickup = False       # a runner is about to take the waiting operations
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"PostgresStore({mask_url(self.url)!r})"

    # -- life cycle ---------------------------------------------------------

    async def open(self) -> None:
        try:
            await self.migrate()
            # the time limit is the server's statement_timeout, not asyncpg's command_timeout,
            # which arms (and cancels) a timer in the event loop for every statement (measured:
            # ~30 timers per message); for the same reason idle connections are not timed out
            # (another timer per release): the pool is small and stays open
            self._pool = await asyncpg.create_pool(
                self.url, min_size=1, max_size=self.pool_size, max_inactive_connection_lifetime=0,
                reset=_reset, server_settings={"statement_timeout": str(int(self.timeout * 1000)),
                                               "application_name": "omnibot"})
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"cannot open {mask_url(self.url)}: {exc}") from exc

    async def close(self) -> None:
        """Finish what was asked for, then close the pool: in bounded time.

        Each statement ends within ``timeout`` (the server's statement_timeout), so the wait is
        long only if operations keep coming or a connection never answers. After
        ``CLOSE_WAITS x timeout`` seconds the connections are cut (logged as an error): an
        operation not committed by then is rolled back by the server and its caller gets an
        error, so nothing is half-written, and a message accepted before stays in the database
        for this instance's next start, or another instance, to answer.
        """
        if self._pool is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_WAITS * self.timeout
        stuck: set[asyncio.Task[None]] = set()
        # what was asked for before the close still runs (a runner that ends may start the next)
        while not stuck and (running := [t for t in self._tasks if not t.done() and t.get_loop() is loop]):
            _, stuck = await asyncio.wait(running, timeout=max(0.0, deadline - loop.time()))
        pool, self._pool = self._pool, None      # no new runner from here on
        if stuck:
            log.error("closing %s: %d connection(s) still busy and %d operation(s) waiting after %.0f s; "
                      "cutting the connections (what was not committed is rolled back)", mask_url(self.url),
                      len(stuck), len(self._waiting), CLOSE_WAITS * self.timeout)
            pool.terminate()       # their statements fail now (connection closed), and their callers with them
            _, stuck = await asyncio.wait(stuck, timeout=1.0)
            await stop_tasks(stuck, "storage operations", timeout=1.0)
            return
        try:
            await wait_for(pool.close(), self.timeout)
        except TimeoutError:
            log.error("closing %s: connections not given back within %.0f s; cutting them",
                      mask_url(self.url), self.timeout)
            pool.terminate()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("store is not open")
        return self._pool

    async def schema_version(self) -> int:
        con = await asyncpg.connect(self.url, timeout=self.timeout)
        try:
            return await self._version(con)
        finally:
            await con.close()

    @staticmethod
    async def _version(con: asyncpg.Connection) -> int:
        exists = await con.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
        if not exists:
            return 0
        return int(await con.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))

    async def migrate(self) -> None:
        """Bring the schema up to date, each step in its own transaction.

        Instances starting together queue on a session advisory lock held on a
        connection of its own (never a pooled one), so exactly one migrates.
        """
        con = await asyncpg.connect(self.url, timeout=self.timeout)
        try:
            await con.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
            try:
                current = await self._version(con)
                if current > SCHEMA_VERSION:
                    raise StoreError(f"database {mask_url(self.url)} has schema version {current}, newer than "
                                     f"this omnibot ({SCHEMA_VERSION}); upgrade omnibot")
                if current == 0:
                    log.info("creating the omnibot schema (version %d) in %s", BASELINE, mask_url(self.url))
                    async with con.transaction():
                        await con.execute(byte_order(BASELINE_SQL) + FUNCTIONS_SQL)
                        await con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                                          "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
                        await con.execute("INSERT INTO schema_version(version) VALUES ($1)", BASELINE)
                    current = BASELINE
                for version in range(current + 1, SCHEMA_VERSION + 1):
                    log.info("migrating %s to schema version %d", mask_url(self.url), version)
                    async with con.transaction():
                        await con.execute(byte_order(MIGRATIONS[version]))
                        await con.execute("INSERT INTO schema_version(version) VALUES ($1)", version)
            finally:
                await con.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        finally:
            await con.close()

    # -- running operations ---------------------------------------------------

    async def _call(self, op: Callable[..., Op[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._pool is None:
            raise StoreError("store is not open")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((op, args, kwargs, fut))
        if not self._pickup and self._runners < self.pool_size:
            # nobody is about to take the waiting operations: a runner (and connection) more
            self._runners += 1
            self._pickup = True
            task = loop.create_task(self._run_waiting())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            result = await fut
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise StoreConflict(f"{op.__name__}: {exc}") from exc
        except asyncpg.PostgresError as exc:
            if _unavailable(exc):
                self._failed(op, exc)
            raise
        except (OSError, asyncio.TimeoutError, asyncpg.InterfaceError) as exc:
            self._failed(op, exc)
        if self.health.failing and op.__name__ in WRITES:
            self.health.succeeded()
        return result

    async def _run_waiting(self) -> None:
        """Take what waits, run it on one pooled connection, and again until nothing waits."""
        batch: list[Waiting] = []       # taken, not yet answered
        try:
            async with self.pool.acquire() as con:
                while self._waiting:
                    self._pickup = False
                    batch, self._waiting = self._waiting[:GROUP_MAX], self._waiting[GROUP_MAX:]
                    outcomes = await self._run_batch(con, [(op, a, kw) for op, a, kw, _ in batch])
                    for (*_, fut), (ok, value) in zip(batch, outcomes):
                        if fut.done():
                            continue     # its caller gave up; the operation ran all the same
                        if ok:
                            fut.set_result(value)
                        else:
                            fut.set_exception(value)
                    batch = []
        except BaseException as exc:
            # no connection (or the loop is ending, or a close cut it off): what was taken and
            # what waits fail with it, or are cancelled; none of their callers is left waiting
            left, self._waiting = batch + self._waiting, []
            for *_, fut in left:
                if not fut.done():
                    if isinstance(exc, Exception):
                        fut.set_exception(exc)
                    else:
                        fut.cancel()
            if not isinstance(exc, Exception):
                raise
        finally:
            self._runners -= 1
            self._pickup = False
            if self._waiting and self._runners < self.pool_size and self._pool is not None:
                # asked for while this runner was leaving: take it now
                self._runners += 1
                self._pickup = True
                task = asyncio.get_running_loop().create_task(self._run_waiting())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _run_batch(self, con: asyncpg.Connection, calls: list[Call]) -> list[tuple[bool, Any]]:
        """(True, result) or (False, exception) for each operation, in order."""
        if len(calls) > 1 and sum(1 for op, _, _ in calls if op.__name__ in WRITES) > 1:
            try:
                return await _run_grouped(con, calls)
            except _GroupFailed:
                pass
        out: list[tuple[bool, Any]] = []
        for op, args, kwargs in calls:
            try:
                out.append((True, await self._run_one(con, op, args, kwargs)))
            except Exception as exc:  # noqa: BLE001 - handed to that operation's caller
                out.append((False, exc))
        return out

    @staticmethod
    async def _run_one(con: asyncpg.Connection, op: Callable[..., Op[Any]], args: tuple[Any, ...],
                       kwargs: dict[str, Any]) -> Any:
        """One operation alone, again after a serialization failure or a deadlock."""
        for attempt in range(4):
            try:
                return await run_async(con, op, args, kwargs)
            except asyncpg.PostgresError as exc:
                if getattr(exc, "sqlstate", "") in _RETRY_STATES and attempt < 3:
                    await asyncio.sleep(0.01 * (attempt + 1))
                    continue
                raise
        raise AssertionError("unreachable")

    def _failed(self, op: Callable[..., Any], exc: BaseException) -> None:
        self.health.failed(op.__name__, exc)  # type: ignore[arg-type]
        raise StorageUnavailable(f"{op.__name__}: {exc}") from exc

    async def probe(self) -> bool:
        """Try one small write; True if it went through (see :meth:`SqliteStore.probe`)."""
        try:
            await self._call(ops_chat.probe, (), {})
        except StorageUnavailable:
            return False
        return True


async def _run_grouped(con: asyncpg.Connection, calls: list[Call]) -> list[tuple[bool, Any]]:
    """Run operations in one transaction; their results once it has committed.

    Every operation is started first, to its first request; the advisory locks that the
    transactional ones start with are all taken in the round trip that begins the transaction
    (``BEGIN; SET LOCAL ...; SELECT pg_advisory_xact_lock(k1); SELECT pg_advisory_xact_lock(k2)
    ...``), in key order, instead of one round trip per operation: they are held until the
    shared COMMIT either way, so each operation still runs under its lock (issue 20: one round
    trip fewer per operation after the first).

    Raises:
        _GroupFailed: one of them failed (or a deadlock, or the server refused): the
            transaction is rolled back, nothing was written; run them again one by one.
    """
    out: list[tuple[bool, Any] | None] = [None] * len(calls)
    started: list[tuple[int, Op[Any], Request]] = []
    begun = False
    try:
        for i, (op, args, kwargs) in enumerate(calls):
            gen = op(*args, **kwargs)
            try:
                started.append((i, gen, next(gen)))
            except StopIteration as stop:
                out[i] = (True, stop.value)
        if started:
            begun = True
            # A lock wait longer than GROUP_LOCK_WAIT gives up (and the operations run one by
            # one): locks are held until the shared COMMIT, so two groups could otherwise wait
            # on each other until the server's deadlock check (1 s); in key order, two groups
            # wanting the same keys queue instead of deadlocking
            keys = sorted({lock_key(first.key) for _, _, first in started if isinstance(first, Lock)})
            await con.execute("; ".join([_GROUP_BEGIN, *(f"SELECT pg_advisory_xact_lock({k})" for k in keys)]))
        for i, gen, first in started:
            if isinstance(first, Lock):
                out[i] = (True, await _drive_async(con, gen))      # its lock is held already
            else:
                out[i] = (True, await _drive_async(con, gen, first))
    except Exception as exc:
        if begun and con.is_in_transaction() and not con.is_closed():
            try:
                await con.execute("ROLLBACK")
            except Exception:  # noqa: BLE001 - the pool drops a broken connection
                pass
        raise _GroupFailed from exc
    if begun:
        try:
            await con.execute("COMMIT")
        except asyncpg.PostgresError as exc:
            if not con.is_closed() and not con.is_in_transaction():
                raise _GroupFailed from exc    # refused and rolled back: nothing written
            raise
    return out  # type: ignore[return-value]
