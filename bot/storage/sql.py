"""The store's operations, written once for every backend.

An operation (see :mod:`bot.storage.ops`) is a generator: it *yields* each
statement as a small request (:class:`One`, :class:`All`, :class:`Run`,
:class:`Lock`) and is *sent* the result. It never touches a driver, so the same
logic runs on SQLite, whole on aiosqlite's connection thread with no hop per
statement (:func:`run_sync`), and on PostgreSQL, one awaited asyncpg call per
statement (:func:`run_async`). The SQL is the portable subset both databases
share, written with ``?`` placeholders; :func:`pg_sql` numbers them for
PostgreSQL. The few functions SQLite has and PostgreSQL lacks (``json_patch``,
``json_insert``) are created by the PostgreSQL schema. A few hot operations ask which
backend runs them (:class:`Backend`) to do in one PostgreSQL statement what takes SQLite
several.

Why not SQLAlchemy Core: measured here, it costs about 5x the client CPU of
raw asyncpg per statement (and 4.4x raw aiosqlite), and a turn is several
statements; see README, "Architecture".
"""

from __future__ import annotations

import functools
import hashlib
import re
import sqlite3
from dataclasses import dataclass
from typing import Any, Callable, Generator, ParamSpec, Sequence, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

#: A row from either driver (sqlite3.Row or asyncpg.Record): ``row["column"]`` and ``dict(row)`` work on both.
Row = Any


@dataclass(frozen=True, slots=True)
class One:
    """The first row of a query, or None."""
    sql: str
    args: Sequence[Any] = ()


@dataclass(frozen=True, slots=True)
class All:
    """Every row of a query."""
    sql: str
    args: Sequence[Any] = ()


@dataclass(frozen=True, slots=True)
class Run:
    """A statement; its result is the number of rows it changed."""
    sql: str
    args: Sequence[Any] = ()


@dataclass(frozen=True, slots=True)
class Lock:
    """Serialize this transaction with every other one that locks ``key``.

    PostgreSQL takes a transaction-scoped advisory lock (freed at commit or
    rollback), so writers on several instances queue per conversation or per
    address. SQLite needs none: ``BEGIN IMMEDIATE`` already admits one writer.
    """
    key: str


@dataclass(frozen=True, slots=True)
class Backend:
    """Which database runs the operation: the reply is ``"sqlite"`` or ``"postgresql"``; no statement.

    For the few hot operations where PostgreSQL does in one statement (a data-modifying
    ``WITH``) what SQLite, which has no such statements, does in several: on PostgreSQL each
    statement is a network round trip, on SQLite a call into the library (issue 20). Both
    forms must read and write the same rows; the store contract runs them on both backends.
    """


#: the one instance an operation yields (the class carries no data)
BACKEND = Backend()

Request = One | All | Run | Lock | Backend
Op = Generator[Request, Any, R]


def transaction(op: Callable[P, Op[R]]) -> Callable[P, Op[R]]:
    """Mark an operation that must run as one transaction (all of it, or none)."""
    op.transactional = True  # type: ignore[attr-defined]
    return op


def is_transactional(op: Callable[..., Any]) -> bool:
    return getattr(op, "transactional", False)


# -- SQLite ------------------------------------------------------------------------

def run_sync(con: sqlite3.Connection, op: Callable[..., Op[R]], args: Sequence[Any],
             kwargs: dict[str, Any]) -> R:
    """Run an operation to its end on a sqlite3 connection (in autocommit mode)."""
    tx = is_transactional(op)
    if tx:
        con.execute("BEGIN IMMEDIATE")
    try:
        result = _drive_sync(con, op(*args, **kwargs))
    except BaseException:
        if tx:
            con.execute("ROLLBACK")
        raise
    if tx:
        con.execute("COMMIT")
    return result


def _drive_sync(con: sqlite3.Connection, gen: Op[R]) -> R:
    reply: Any = None
    while True:
        try:
            req = gen.send(reply)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        if isinstance(req, One):
            reply = con.execute(req.sql, req.args).fetchone()
        elif isinstance(req, All):
            reply = con.execute(req.sql, req.args).fetchall()
        elif isinstance(req, Run):
            reply = con.execute(req.sql, req.args).rowcount
        elif isinstance(req, Backend):
            reply = "sqlite"
        else:
            reply = None


# -- PostgreSQL --------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\?")


@functools.lru_cache(maxsize=1024)
def pg_sql(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2, ...`` (our SQL has no ``?`` inside literals)."""
    n = 0

    def number(_: re.Match[str]) -> str:
        nonlocal n
        n += 1
        return f"${n}"

    return _PLACEHOLDER.sub(number, sql)


def rowcount(status: str) -> int:
    """Rows changed, from asyncpg's command status (``UPDATE 1``, ``INSERT 0 1``)."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def lock_key(key: str) -> int:
    """The advisory lock's 64-bit key for ``key`` (computed here: a literal, no server-side hash)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


async def run_async(con: Any, op: Callable[..., Op[R]], args: Sequence[Any], kwargs: dict[str, Any]) -> R:
    """Run an operation to its end on an asyncpg connection.

    A transaction's ``BEGIN`` travels with its first lock in one round trip (both are plain
    statements with no parameters); a failure rolls the transaction back.
    """
    gen = op(*args, **kwargs)
    if not is_transactional(op):
        return await _drive_async(con, gen)
    try:
        first = next(gen)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    try:
        if isinstance(first, Lock):
            await con.execute(f"BEGIN; SELECT pg_advisory_xact_lock({lock_key(first.key)})")
            result = await _drive_async(con, gen)
        else:
            await con.execute("BEGIN")
            result = await _drive_async(con, gen, first)
    except Exception:
        # (a cancelled statement leaves the connection to the pool, which rolls back or drops it)
        if con.is_in_transaction() and not con.is_closed():
            await con.execute("ROLLBACK")
        raise
    await con.execute("COMMIT")
    return result


async def _drive_async(con: Any, gen: Op[R], req: Request | None = None) -> R:
    reply: Any = None
    while True:
        if req is None:
            try:
                req = gen.send(reply)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
        if isinstance(req, One):
            reply = await con.fetchrow(pg_sql(req.sql), *req.args)
        elif isinstance(req, All):
            reply = await con.fetch(pg_sql(req.sql), *req.args)
        elif isinstance(req, Run):
            reply = rowcount(await con.execute(pg_sql(req.sql), *req.args))
        elif isinstance(req, Backend):
            reply = "postgresql"
        else:
            await con.execute("SELECT pg_advisory_xact_lock($1)", lock_key(req.key))
            reply = None
        req = None
