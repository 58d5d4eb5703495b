"""Helpers for the bad-input and storage-outage tests: what was stored, what was logged, a failing store."""

from __future__ import annotations

import asyncio
import logging
import sqlite3

import pytest

from conftest import Running


def stored_messages(r: Running) -> int:
    """Customer messages stored, read through a second SQLite connection (committed data only)."""
    db = r.services.config.storage_url().removeprefix("sqlite:///")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT count(*) FROM messages WHERE direction = 'in'").fetchone()[0]
    finally:
        con.close()


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """ERROR/CRITICAL records and records with a traceback: a bad request must cause none."""
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records
            if r.levelno >= logging.ERROR or r.exc_info is not None]


def warnings(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == logger]


class StoreOutage:
    """Storage that cannot write, for real: another connection holds SQLite's write lock and the
    app's connection waits only 30 ms for it (the product waits 5 s), which is what "database
    locked past its timeout" looks like. Every write then raises StorageUnavailable."""

    def __init__(self, r: Running) -> None:
        self.r = r
        self.con: sqlite3.Connection | None = None

    async def start(self) -> None:
        await self.r.services.store.db.execute("PRAGMA busy_timeout=30")
        path = self.r.services.config.storage_url().removeprefix("sqlite:///")
        self.con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.con.execute("BEGIN IMMEDIATE")

    async def end(self) -> None:
        if self.con is not None:
            self.con.execute("ROLLBACK")
            self.con.close()
            self.con = None
        await self.r.services.store.db.execute("PRAGMA busy_timeout=5000")


async def post_cut_off(r: Running, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """POST that promises 500 bytes more than ``body`` and then stops sending (half-close), as a
    client that dies mid-request does. Returns whatever the server answered (maybe nothing:
    aiohttp drops a connection whose body ended early)."""
    host, port = r.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write((f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{head}Content-Length: {len(body) + 500}\r\n\r\n").encode()
                 + body)
    await writer.drain()
    writer.write_eof()
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
