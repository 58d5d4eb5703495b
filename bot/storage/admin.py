"""What ``omnibot db`` needs to know about a database without opening it as a store.

Opening a store migrates it, and (SQLite) takes the one-instance lock; these read
a database as it is, read-only, so that ``omnibot db status`` is safe beside a
running bot and ``omnibot db migrate`` can say which version it started from.

Each backend has its own functions, chosen by the URL's scheme (see ``_BACKENDS``):

* ``schema_info(url) -> (current, latest)``: the database's schema version (0 for a
  database that does not exist yet) and the newest one this omnibot knows.
* ``table_counts(url) -> {table: rows}``: rows per table, sorted by table name.

Errors: :class:`bot.errors.StoreError` with a message fit for a user (the URL in it
masked with :func:`mask_url`), :class:`bot.errors.ConfigError` for an unknown scheme.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path
from typing import Awaitable, Callable, NamedTuple
from urllib.parse import quote

from bot.errors import ConfigError, StoreError

from .sqlite_schema import SCHEMA_VERSION

# -- URLs ------------------------------------------------------------------------

_PASSWORD_PARAM = re.compile(r"(?i)\b(password|passwd)=[^&\s#]*")


def scheme_of(url: str) -> str:
    """``sqlite`` for ``sqlite://...`` and plain paths, else the URL's scheme (``postgresql``, ...)."""
    return url.split("://", 1)[0].lower() if "://" in url else "sqlite"


def sqlite_path(url: str) -> str:
    """The file of a SQLite URL, as :func:`bot.storage.open_store` reads it (``:memory:`` included)."""
    if url.startswith("sqlite://"):
        path = url[len("sqlite://"):]
        path = path[1:] if path.startswith("/") else path
        return path or ":memory:"
    return url


def _password(url: str) -> str | None:
    if "://" not in url:
        return None
    rest = url.split("://", 1)[1]
    end = rest.find("?")
    at = rest.rfind("@", 0, end if end >= 0 else len(rest))   # a raw '@' in a password: the last one wins
    if at < 0 or ":" not in rest[:at]:
        return None
    return rest[:at].split(":", 1)[1]


def mask_url(url: str) -> str:
    """``url`` safe to print: ``postgresql://user:***@host/db`` (also ``?password=...``)."""
    password = _password(url)
    if password is not None:
        scheme, rest = url.split("://", 1)
        user = rest.split(":", 1)[0]
        url = f"{scheme}://{user}:***{rest[len(user) + 1 + len(password):]}"
    return _PASSWORD_PARAM.sub(r"\1=***", url)


def redact(text: str, url: str) -> str:
    """``text`` (an error message) with ``url`` masked and its password nowhere in it."""
    text = text.replace(url, mask_url(url))
    password = _password(url)
    if password:
        text = text.replace(password, "***")
    return _PASSWORD_PARAM.sub(r"\1=***", text)


# -- SQLite ----------------------------------------------------------------------

def _sqlite_connect(path: str) -> sqlite3.Connection | None:
    """A read-only connection, or None when the database does not exist yet."""
    if path == ":memory:" or not Path(path).exists():
        return None
    try:
        con = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True)
        con.execute("PRAGMA schema_version").fetchone()   # reads the header: fails now on a non-database
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot read the database: {exc}") from exc
    return con


def _sqlite_schema_info_sync(path: str) -> tuple[int, int]:
    con = _sqlite_connect(path)
    if con is None:
        return 0, SCHEMA_VERSION
    try:
        return int(con.execute("PRAGMA user_version").fetchone()[0]), SCHEMA_VERSION
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot read the database: {exc}") from exc
    finally:
        con.close()


def _sqlite_table_counts_sync(path: str) -> dict[str, int]:
    con = _sqlite_connect(path)
    if con is None:
        return {}
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                            "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        return {t: int(con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]) for t in tables}
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot read the database: {exc}") from exc
    finally:
        con.close()


async def _sqlite_schema_info(url: str) -> tuple[int, int]:
    return await asyncio.to_thread(_sqlite_schema_info_sync, sqlite_path(url))


async def _sqlite_table_counts(url: str) -> dict[str, int]:
    return await asyncio.to_thread(_sqlite_table_counts_sync, sqlite_path(url))


# -- PostgreSQL -------------------------------------------------------------------------

async def _postgresql_schema_info(url: str) -> tuple[int, int]:
    import asyncpg

    from .postgres import PostgresStore

    try:
        return await PostgresStore(url).schema_version(), SCHEMA_VERSION
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StoreError(f"{mask_url(url)}: cannot read the database: {exc}") from exc


async def _postgresql_table_counts(url: str) -> dict[str, int]:
    import asyncpg

    try:
        con = await asyncpg.connect(url, timeout=10)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StoreError(f"{mask_url(url)}: cannot read the database: {exc}") from exc
    try:
        names = [r["tablename"] for r in await con.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename != 'schema_version' "
            "ORDER BY tablename")]
        return {n: int(await con.fetchval(f'SELECT COUNT(*) FROM "{n}"')) for n in names}
    finally:
        await con.close()


# -- by scheme -------------------------------------------------------------------

class Backend(NamedTuple):
    name: str
    schema_info: Callable[[str], Awaitable[tuple[int, int]]]
    table_counts: Callable[[str], Awaitable[dict[str, int]]]


_SQLITE = Backend("sqlite", _sqlite_schema_info, _sqlite_table_counts)
_POSTGRESQL = Backend("postgresql", _postgresql_schema_info, _postgresql_table_counts)
_BACKENDS = {"sqlite": _SQLITE, "postgresql": _POSTGRESQL, "postgres": _POSTGRESQL}


def backend_for(url: str) -> Backend:
    """The backend a storage URL names.

    Raises:
        ConfigError: for an unknown scheme.
    """
    scheme = scheme_of(url)
    try:
        return _BACKENDS[scheme]
    except KeyError:
        raise ConfigError(f"unsupported storage url {scheme}://; use sqlite:///path or postgresql://...",
                          key="storage.url") from None


async def schema_info(url: str) -> tuple[int, int]:
    """(the database's schema version, the newest this omnibot knows), read without migrating.

    A database that does not exist yet is at version 0.
    """
    return await backend_for(url).schema_info(url)


async def table_counts(url: str) -> dict[str, int]:
    """Rows per table, by table name, read without migrating ({} when there is no database yet)."""
    return await backend_for(url).table_counts(url)
