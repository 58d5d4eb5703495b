"""PostgreSQL backend (asyncpg): one database shared by several omnibot instances.

Every operation (see :mod:`bot.storage.sql`) runs on a connection from a small
pool, inside a transaction when it is marked so. Writers of one conversation
queue on a transaction-scoped advisory lock (``Lock`` requests), so order holds
across instances; nothing here depends on a session outliving one operation,
which also keeps the store usable behind PgBouncer in transaction mode.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

import asyncpg

from bot.errors import StorageUnavailable, StoreConflict, StoreError

from . import ops_chat
from .admin import mask_url
from .health import StorageHealth
from .operations import WRITES, Operations
from .postgres_schema import BASELINE, BASELINE_SQL, FUNCTIONS_SQL, MIGRATIONS, byte_order
from .sql import Op, run_async
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
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

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
        pool = self.pool
        for attempt in range(4):
            try:
                async with pool.acquire() as con:
                    result = await run_async(con, op, args, kwargs)
                break
            except asyncpg.IntegrityConstraintViolationError as exc:
                raise StoreConflict(f"{op.__name__}: {exc}") from exc
            except asyncpg.PostgresError as exc:
                if getattr(exc, "sqlstate", "") in _RETRY_STATES and attempt < 3:
                    await asyncio.sleep(0.01 * (attempt + 1))
                    continue
                if _unavailable(exc):
                    self._failed(op, exc)
                raise
            except (OSError, asyncio.TimeoutError, asyncpg.InterfaceError) as exc:
                self._failed(op, exc)
        if self.health.failing and op.__name__ in WRITES:
            self.health.succeeded()
        return result

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
