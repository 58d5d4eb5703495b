"""Shared fixtures: a no-network guard, configs, and a running app on 127.0.0.1."""

from __future__ import annotations

import socket
from datetime import datetime
from pathlib import Path
from typing import Any, AsyncIterator

import dataclasses

import pytest
from argon2 import PasswordHasher, profiles

from bot import agents
from bot.config import Config, parse_config
from bot.logs import reset_logging
from bot.storage import Store, open_store
from serving import Running, serving, start_app, stop_app  # noqa: F401 - tests import them from here

ROOT = Path(__file__).resolve().parent.parent
DEMO_FLOWS = ROOT / "flows" / "demo"
# A frozen copy of the demo flows (tests/fixtures/README.md): for tests that count flows, quote exact
# lines or texts, or measure the matcher, so adding a flow to flows/demo breaks none of them.
SHOP_FLOWS = ROOT / "tests" / "fixtures" / "flows" / "shop"
AGENT_TOKEN = "test-agent-token"

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _loopback_only(addr: Any) -> None:
    if isinstance(addr, tuple) and addr:
        host = str(addr[0])
        if not (host.startswith("127.") or host in ("::1", "localhost", "::ffff:127.0.0.1")):
            pytest.fail(f"network access outside loopback attempted: {addr!r}")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that tries to connect beyond 127.0.0.0/8 (like PTB's OfflineRequest)."""

    def connect(self: socket.socket, addr: Any) -> Any:
        _loopback_only(addr)
        return _real_connect(self, addr)

    def connect_ex(self: socket.socket, addr: Any) -> Any:
        _loopback_only(addr)
        return _real_connect_ex(self, addr)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


# Agent passwords in tests: Argon2id with the cheapest cost (8 KiB, one pass, one lane), as Django's
# docs advise for test runs. argon2-cffi's defaults (the product's, RFC 9106 low-memory: 64 MiB, 3
# passes, 4 lanes) took 0.1-0.4 s a hash or check, and the suite makes hundreds of them (agents
# added and logged in by every desk test): over a minute of the suite on 2 cores. The hashes keep
# the product's format (salt and hash lengths); verifying reads the cost from the hash itself, so
# hashes made here and by `omnibot` processes the tests start (which keep the defaults) check
# either way. tests/bot/test_agents.py pins the product's own parameters (``real_password_hashes``).
REAL_HASHER = agents._hasher
CHEAP_HASHER = PasswordHasher.from_parameters(dataclasses.replace(
    profiles.RFC_9106_LOW_MEMORY, time_cost=1, memory_cost=8, parallelism=1))


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agents, "_hasher", CHEAP_HASHER)
    monkeypatch.setattr(agents, "_DUMMY", [])


@pytest.fixture
def real_password_hashes(cheap_password_hashes: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The product's password hasher, for the tests of it."""
    monkeypatch.setattr(agents, "_hasher", REAL_HASHER)


@pytest.fixture(autouse=True)
def undo_logging_setup() -> Any:
    """Tests that run `omnibot run`/`shell` in-process set logging up; no later test inherits it."""
    yield
    reset_logging()


def make_config(tmp_path: Path, extra: str = "") -> Config:
    """A config on a temp database with the demo flows and a known agent token."""
    text = f"""
server: {{host: 127.0.0.1, port: 0}}
storage: {{url: "sqlite:///{tmp_path / 'omnibot.sqlite3'}", media_dir: "{tmp_path / 'media'}"}}
flows: {{path: "{DEMO_FLOWS}"}}
agent_desk: {{token: {AGENT_TOKEN}}}
handoff:
  default_team: support
  teams: {{support: {{name: Customer Care}}, complaints: {{name: Complaints}}}}
delivery: {{base_delay: 0.05, max_delay: 0.2}}
logging: {{level: DEBUG}}
{extra}
"""
    return parse_config(text, path=str(tmp_path / "config.yaml"))


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
async def running(config: Config) -> AsyncIterator[Running]:
    async with serving(config) as r:
        yield r


def agent_headers(name: str = "Anna Smith") -> dict[str, str]:
    return {"Authorization": f"Bearer {AGENT_TOKEN}", "X-Omnibot-Agent": name}


class FakeClock:
    """A clock the test moves by hand (``clock.now = ...``); nothing ever sleeps."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def agent_queue(r: Running, agent: str = "Anna Smith") -> list[dict]:
    """The agent desk's queue, as an agent sees it."""
    async with r.http.get(r.url + "/agent/api/queue", headers=agent_headers(agent)) as resp:
        assert resp.status == 200
        return (await resp.json())["handoffs"]


@pytest.fixture
async def memory_store() -> AsyncIterator[Store]:
    """A real SQLite store in memory."""
    s = await open_store("sqlite:///:memory:")
    try:
        yield s
    finally:
        await s.close()


async def until(pred: Any, timeout: float = 3.0, what: str = "condition") -> None:
    """Poll ``pred`` (sync or async) until it is true; fail after ``timeout`` seconds."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if asyncio.iscoroutine(v):
            v = await v
        if v:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached in {timeout} s")
        await asyncio.sleep(0.01)


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """The store contract: every test that takes ``store`` runs on both backends."""
    url = "sqlite:///:memory:" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = await open_store(url)
    try:
        yield s
    finally:
        await s.close()

# PostgreSQL (tests/pg.py): `pg_server`, the session's throwaway cluster, started
# only when a test asks for it; `pg_url`, a fresh empty database per test.
from pg import pg_server, pg_url  # noqa: E402,F401


@pytest.fixture
async def pg(pg_url: str) -> AsyncIterator[Store]:  # noqa: F811 - the fixture imported above
    """An open PostgreSQL store on a fresh database (the tests of PostgreSQL-only behaviour)."""
    from bot.storage.postgres import PostgresStore

    s = PostgresStore(pg_url)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement (or simple-protocol string) sent on an asyncpg connection from now on: one
    round trip each."""
    import asyncpg

    sent: list[str] = []
    for name in ("execute", "fetch", "fetchrow", "fetchval"):
        real = getattr(asyncpg.connection.Connection, name)

        def call(con: Any, query: str, *args: Any, _real: Any = real, **kw: Any) -> Any:
            sent.append(query)
            return _real(con, query, *args, **kw)
        monkeypatch.setattr(asyncpg.connection.Connection, name, call)
    return sent


# Mail (tests/mailserver.py): `mail_server`, the session's throwaway dovecot (IMAP), started only
# when a test asks for it; `mailbox`, that mailbox emptied; `smtp_sink`, an SMTP server per test.
from mailserver import mail_server, mailbox, smtp_sink  # noqa: E402,F401
