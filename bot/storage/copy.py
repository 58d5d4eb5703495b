"""``omnibot db copy``: every row of one store into another, empty one (SQLite <-> PostgreSQL).

Both databases carry the same schema (see :mod:`bot.storage.postgres_schema`: same
columns, same types as far as the two databases have them), so rows move unchanged.

* The source is only read: SQLite opened read-only (``mode=ro``, no lock file taken, so
  a running bot may keep using it), PostgreSQL in a read-only repeatable-read
  transaction; either way one consistent snapshot, so the counts compared at the end
  are the counts of that snapshot. The source must be at this omnibot's schema version
  already (``omnibot db migrate`` it first): a copy never writes to its source.
* The target is migrated to the latest schema (as ``omnibot db migrate`` does), must
  then be empty, and is written in ONE transaction: a copy that fails leaves it empty.
  A SQLite target's one-instance lock is held meanwhile, so no bot starts on it mid-copy.
* Rows go in batches (:data:`BATCH`), tables in an order that satisfies the foreign
  keys (:data:`TABLES`); the ephemeral tables (:data:`SKIPPED`: live instances, leases,
  rate-limit counters) are not copied. Identity values are kept (``messages.id``, the
  handoffs' insertion order, ``handoffs.rowid``) and, on PostgreSQL, the identity
  sequences are moved past them; ticket sequences live in ``meta`` and move with it.
* At the end, rows per table are counted on both sides (:class:`TableCount`).

Errors are :class:`bot.errors.StoreError` with URLs masked (:func:`bot.storage.admin.mask_url`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Protocol, Sequence
from urllib.parse import quote

from bot.errors import StoreError

from .admin import backend_for, mask_url, schema_info, sqlite_path
from .filelock import SingleInstanceLock

#: Tables copied, parents before children.
TABLES: tuple[str, ...] = ("meta", "customers", "identities", "conversations", "messages", "handoffs",
                           "desk_threads", "seen_events", "tickets", "link_codes", "effects", "media",
                           "agents", "notes", "desk_reads", "compensations", "audit", "flow_versions")
#: Tables that only mean something to running instances: never copied.
SKIPPED: tuple[str, ...] = ("instances", "leases", "rate_limits")
#: Bookkeeping of the databases themselves.
_INTERNAL = ("schema_version", "sqlite_sequence", "sqlite_stat1")
#: A stable order to read each table in (handoffs in insertion order: ``rowid``).
_ORDER = {"meta": "key", "customers": "id", "identities": "channel, external_id", "conversations": "id",
          "messages": "id", "handoffs": "rowid", "desk_threads": "desk, handoff_id",
          "seen_events": "source, event_id", "tickets": "reference", "link_codes": "code", "effects": "key",
          "media": "id", "agents": "id", "notes": "id",
          "desk_reads": "agent, conversation_id", "compensations": "id", "audit": "id",
          "flow_versions": "number"}
#: Rows per batch.
BATCH = 1000

Progress = Callable[[str, int, int], None]   # (table, rows copied so far, rows in the table)


@dataclass(frozen=True)
class TableCount:
    """Rows of one table in the source (its snapshot) and in the target after the copy."""

    table: str
    source: int
    target: int

    @property
    def ok(self) -> bool:
        return self.source == self.target

    def __str__(self) -> str:
        return f"{self.table}: {self.source} -> {self.target} {'ok' if self.ok else 'MISMATCH'}"


# -- readers ---------------------------------------------------------------------------

class Reader(Protocol):
    async def tables(self) -> set[str]: ...
    async def columns(self, table: str) -> list[str]: ...
    async def count(self, table: str) -> int: ...
    def batches(self, table: str, columns: Sequence[str], size: int) -> AsyncIterator[list[tuple[Any, ...]]]: ...
    async def close(self) -> None: ...


class SqliteReader:
    """A SQLite file, read-only, in one read transaction (a snapshot; a live bot may go on writing)."""

    def __init__(self, url: str) -> None:
        path = sqlite_path(url)
        if path == ":memory:" or not Path(path).is_file():
            raise StoreError(f"{mask_url(url)}: no such database")
        try:
            self.con = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, isolation_level=None)
            self.con.execute("BEGIN")
            self.con.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()   # the snapshot starts here
        except sqlite3.Error as exc:
            raise StoreError(f"{mask_url(url)}: cannot read the database: {exc}") from exc

    async def tables(self) -> set[str]:
        return {r[0] for r in self.con.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    async def columns(self, table: str) -> list[str]:
        cols = [r[1] for r in self.con.execute(f'PRAGMA table_info("{table}")')]
        return ["rowid", *cols] if table == "handoffs" else cols   # PostgreSQL has it as a column

    async def count(self, table: str) -> int:
        return int(self.con.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])

    async def batches(self, table: str, columns: Sequence[str], size: int) -> AsyncIterator[list[tuple[Any, ...]]]:
        cur = self.con.execute(f'SELECT {_cols(columns)} FROM "{table}" ORDER BY {_ORDER[table]}')
        while rows := cur.fetchmany(size):
            yield [tuple(r) for r in rows]

    async def close(self) -> None:
        self.con.close()


class PostgresReader:
    """A PostgreSQL database in a read-only, repeatable-read transaction (one snapshot)."""

    def __init__(self, con: Any, tx: Any) -> None:
        self.con, self.tx = con, tx

    @classmethod
    async def open(cls, url: str) -> PostgresReader:
        import asyncpg

        try:
            con = await asyncpg.connect(url, timeout=10)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"{mask_url(url)}: cannot read the database: {exc}") from exc
        tx = con.transaction(isolation="repeatable_read", readonly=True)
        await tx.start()
        return cls(con, tx)

    async def tables(self) -> set[str]:
        return {r["tablename"] for r in await self.con.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}

    async def columns(self, table: str) -> list[str]:
        return [r["column_name"] for r in await self.con.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = $1 ORDER BY ordinal_position", table)]

    async def count(self, table: str) -> int:
        return int(await self.con.fetchval(f'SELECT COUNT(*) FROM "{table}"'))

    async def batches(self, table: str, columns: Sequence[str], size: int) -> AsyncIterator[list[tuple[Any, ...]]]:
        cur = await self.con.cursor(f'SELECT {_cols(columns)} FROM "{table}" ORDER BY {_ORDER[table]}')
        while rows := await cur.fetch(size):
            yield [tuple(r) for r in rows]

    async def close(self) -> None:
        try:
            await self.tx.rollback()
        finally:
            await self.con.close()


# -- writers ---------------------------------------------------------------------------

class Writer(Protocol):
    async def columns(self, table: str) -> list[str]: ...
    async def nonempty(self, tables: Sequence[str]) -> list[str]: ...
    async def begin(self) -> None: ...
    async def insert(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None: ...
    async def commit(self) -> None: ...
    async def count(self, table: str) -> int: ...
    async def close(self) -> None: ...


class SqliteWriter:
    """A SQLite file (migrated already), under its one-instance lock, written in one transaction."""

    def __init__(self, url: str) -> None:
        path = sqlite_path(url)
        self.lock = SingleInstanceLock(path)
        self.lock.acquire()           # DatabaseInUse when a bot runs on it
        try:
            self.con = sqlite3.connect(path, isolation_level=None)
            self.con.execute("PRAGMA foreign_keys=ON")
            self.con.execute("PRAGMA busy_timeout=5000")
        except BaseException:
            self.lock.release()
            raise

    async def columns(self, table: str) -> list[str]:
        cols = [r[1] for r in self.con.execute(f'PRAGMA table_info("{table}")')]
        return ["rowid", *cols] if table == "handoffs" else cols

    async def nonempty(self, tables: Sequence[str]) -> list[str]:
        return [t for t in tables if self.con.execute(f'SELECT 1 FROM "{t}" LIMIT 1').fetchone()]

    async def begin(self) -> None:
        self.con.execute("BEGIN IMMEDIATE")

    async def insert(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        marks = ", ".join("?" * len(columns))
        self.con.executemany(f'INSERT INTO "{table}" ({_cols(columns)}) VALUES ({marks})', rows)

    async def commit(self) -> None:
        self.con.execute("COMMIT")

    async def count(self, table: str) -> int:
        return int(self.con.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])

    async def close(self) -> None:
        try:
            if self.con.in_transaction:
                self.con.execute("ROLLBACK")
            self.con.close()
        finally:
            self.lock.release()


# PostgreSQL's strict binary types, from what SQLite's loose ones may hold.
_CONVERT: dict[str, Callable[[Any], Any]] = {
    "text": lambda v: v if isinstance(v, str) else str(v),
    "integer": lambda v: v if type(v) is int else int(v),
    "bigint": lambda v: v if type(v) is int else int(v),
    "double precision": lambda v: v if type(v) is float else float(v),
    "bytea": lambda v: v if type(v) is bytes else bytes(v),
}


class PostgresWriter:
    """A PostgreSQL database (migrated already), written in one transaction."""

    def __init__(self, con: Any) -> None:
        self.con = con
        self.tx: Any = None
        self.types: dict[str, dict[str, str]] = {}

    @classmethod
    async def open(cls, url: str) -> PostgresWriter:
        import asyncpg

        try:
            con = await asyncpg.connect(url, timeout=10)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"{mask_url(url)}: cannot open the database: {exc}") from exc
        return cls(con)

    async def columns(self, table: str) -> list[str]:
        rows = await self.con.fetch(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = $1 ORDER BY ordinal_position", table)
        self.types[table] = {r["column_name"]: r["data_type"] for r in rows}
        return [r["column_name"] for r in rows]

    async def nonempty(self, tables: Sequence[str]) -> list[str]:
        return [t for t in tables if await self.con.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{t}")')]

    async def begin(self) -> None:
        self.tx = self.con.transaction()
        await self.tx.start()

    async def insert(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        types = self.types.get(table) or {}
        convert = [_CONVERT.get(types.get(c, ""), lambda v: v) for c in columns]
        rows = [tuple(None if v is None else f(v) for f, v in zip(convert, row)) for row in rows]
        marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
        # handoffs.rowid is GENERATED ALWAYS: keep the source's values (the handoffs' order)
        overriding = " OVERRIDING SYSTEM VALUE" if table == "handoffs" else ""
        await self.con.executemany(f'INSERT INTO "{table}" ({_cols(columns)}){overriding} VALUES ({marks})', rows)

    async def commit(self) -> None:
        # new ids continue after the copied ones
        await self.con.execute("SELECT setval(pg_get_serial_sequence('messages', 'id'), MAX(id)) FROM messages")
        await self.con.execute("SELECT setval(pg_get_serial_sequence('handoffs', 'rowid'), MAX(rowid)) FROM handoffs")
        await self.tx.commit()
        self.tx = None

    async def count(self, table: str) -> int:
        return int(await self.con.fetchval(f'SELECT COUNT(*) FROM "{table}"'))

    async def close(self) -> None:
        try:
            if self.tx is not None:
                await self.tx.rollback()
        finally:
            await self.con.close()


def _cols(columns: Sequence[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


async def open_reader(url: str) -> Reader:
    """The source, read-only, as of now."""
    if backend_for(url).name == "sqlite":
        return SqliteReader(url)
    return await PostgresReader.open(url)


async def _open_writer(url: str) -> Writer:
    if backend_for(url).name == "sqlite":
        try:
            return SqliteWriter(url)
        except sqlite3.Error as exc:
            raise StoreError(f"{mask_url(url)}: cannot open the database: {exc}") from exc
    return await PostgresWriter.open(url)


async def _migrate(url: str) -> None:
    from . import open_store

    store = await open_store(url)
    await store.close()


# -- the copy ---------------------------------------------------------------------------

async def copy_database(source: str, target: str, *, batch: int = BATCH,
                        progress: Progress | None = None) -> list[TableCount]:
    """Copy every table of :data:`TABLES` from ``source`` into the empty ``target``.

    Returns the rows per table on both sides after the copy (check :attr:`TableCount.ok`).

    Raises:
        StoreError: the source is not at the latest schema, the target is not empty (or is
            in use, or newer), the two have different columns, or a database fails.
        ConfigError: an unknown URL scheme.
    """
    backend_for(source), backend_for(target)
    if _same(source, target):
        raise StoreError("the source and the target are the same database")
    version, latest = await schema_info(source)
    if version == 0:
        raise StoreError(f"{mask_url(source)}: no omnibot database there")
    if version != latest:
        raise StoreError(f"{mask_url(source)} is at schema version {version}, this omnibot at {latest}; "
                         f"run `omnibot db migrate --url SOURCE` first (a copy never writes to its source)"
                         if version < latest else
                         f"{mask_url(source)} has schema version {version}, newer than this omnibot ({latest}); "
                         "upgrade omnibot")
    await _migrate(target)
    import asyncpg

    try:
        reader = await open_reader(source)
        try:
            writer = await _open_writer(target)
            try:
                return await _copy(reader, writer, source, target, batch, progress)
            finally:
                await writer.close()
        finally:
            await reader.close()
    except (sqlite3.Error, asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError) as exc:
        raise StoreError(f"copy {mask_url(source)} -> {mask_url(target)} failed (the target is left as it was): "
                         f"{type(exc).__name__}: {exc}") from exc


async def _copy(reader: Reader, writer: Writer, source: str, target: str, batch: int,
                progress: Progress | None) -> list[TableCount]:
    unknown = await reader.tables() - set(TABLES) - set(SKIPPED) - set(_INTERNAL)
    if unknown:
        raise StoreError(f"{mask_url(source)} has tables this copy does not know: {', '.join(sorted(unknown))}")
    full = await writer.nonempty(TABLES)
    if full:
        raise StoreError(f"{mask_url(target)} is not empty ({', '.join(full)} hold rows): "
                         "copy only into a new, empty database")
    columns: dict[str, list[str]] = {}
    for table in TABLES:
        src, dst = await reader.columns(table), await writer.columns(table)
        if set(src) != set(dst):
            raise StoreError(f"{table}: the columns differ between source ({', '.join(src)}) and "
                             f"target ({', '.join(dst)})")
        columns[table] = src
    counts: dict[str, int] = {}
    await writer.begin()
    for table in TABLES:
        total = await reader.count(table)
        done = 0
        if progress:
            progress(table, done, total)
        async for rows in reader.batches(table, columns[table], batch):
            await writer.insert(table, columns[table], rows)
            done += len(rows)
            if progress:
                progress(table, done, total)
        counts[table] = total      # the snapshot's rows; the target's count shows what arrived
    await writer.commit()
    return [TableCount(t, counts[t], await writer.count(t)) for t in TABLES]


def _same(a: str, b: str) -> bool:
    if backend_for(a).name == "sqlite" and backend_for(b).name == "sqlite":
        pa, pb = sqlite_path(a), sqlite_path(b)
        return pa != ":memory:" and Path(pa).resolve() == Path(pb).resolve()
    return a == b


async def dump(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every copied table's rows, as dicts in a stable order (for checks and tests)."""
    reader = await open_reader(url)
    try:
        out: dict[str, list[dict[str, Any]]] = {}
        for table in TABLES:
            cols = await reader.columns(table)
            out[table] = [dict(zip(cols, row)) async for rows in reader.batches(table, cols, BATCH) for row in rows]
        return out
    finally:
        await reader.close()
