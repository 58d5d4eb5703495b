"""The test session's PostgreSQL is a real server (tests/pg.py), not a stand-in."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
from pathlib import Path

import asyncpg
import pytest

import pg
from pg import PgServer, create_database, drop_database


async def test_asyncpg_connects_to_a_real_server(pg_server: PgServer, pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        version = conn.get_server_version()
        assert version.major >= 14
        assert await conn.fetchval("SELECT current_database()") == pg_url.rsplit("/", 1)[1]
        assert await conn.fetchval("SHOW listen_addresses") == "127.0.0.1"
        assert await conn.fetchval("SHOW port") == str(pg_server.port)
        assert await conn.fetchval("SHOW fsync") == "off"
    finally:
        await conn.close()


async def test_dsn_format(pg_server: PgServer, pg_url: str) -> None:
    assert pg_url.startswith(f"postgresql://postgres@127.0.0.1:{pg_server.port}/omnibot_test_")
    assert pg_server.admin_dsn == f"postgresql://postgres@127.0.0.1:{pg_server.port}/postgres"


async def test_table_round_trip(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("CREATE TABLE t (id bigserial PRIMARY KEY, body text NOT NULL, at timestamptz)")
        await conn.executemany("INSERT INTO t (body, at) VALUES ($1, now())", [("héllo",), ("wörld",)])
        rows = await conn.fetch("SELECT id, body FROM t ORDER BY id")
        assert [(r["id"], r["body"]) for r in rows] == [(1, "héllo"), (2, "wörld")]
        async with conn.transaction():
            await conn.execute("DELETE FROM t")
        assert await conn.fetchval("SELECT count(*) FROM t") == 0
    finally:
        await conn.close()


async def _user_tables(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return [r["tablename"] for r in rows]
    finally:
        await conn.close()


async def test_each_pg_url_is_a_different_empty_database(pg_server: PgServer, pg_url: str) -> None:
    assert await _user_tables(pg_url) == []
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("CREATE TABLE only_here (x int)")
    finally:
        await conn.close()
    other = create_database(pg_server)
    try:
        other_url = pg_server.dsn(other)
        assert other_url != pg_url
        assert await _user_tables(other_url) == []
        assert await _user_tables(pg_url) == ["only_here"]
    finally:
        drop_database(pg_server, other)
    admin = await asyncpg.connect(pg_server.admin_dsn)
    try:
        assert not await admin.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", other)
    finally:
        await admin.close()


def test_pg_url_works_in_a_sync_test(pg_url: str) -> None:
    """The fixtures need no event loop of the test's (sync tests, asyncio.run inside)."""
    assert asyncio.run(_user_tables(pg_url)) == []


def test_server_runs_as_postgres_when_root(pg_server: PgServer) -> None:
    assert pg_server.pid is not None
    owner = os.stat(f"/proc/{pg_server.pid}").st_uid
    expected = pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else os.geteuid()
    assert owner == expected


def test_missing_postgres_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OMNIBOT_PG_BINDIR", str(tmp_path))
    monkeypatch.setattr(Path, "glob", lambda self, pattern: iter(()))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pg.PostgresMissing, match="run scripts/install-test-deps.sh"):
        pg.find_bindir()
