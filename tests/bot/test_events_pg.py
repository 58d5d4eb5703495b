"""PgEventBus: live events between two instances over a real PostgreSQL (LISTEN/NOTIFY)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import AsyncIterator

import asyncpg
import pytest

from bot.events import Event
from bot.events_pg import PAYLOAD_LIMIT, PgEventBus
from conftest import until
from pg import PgServer


async def next_event(q: asyncio.Queue[Event], timeout: float = 1.0) -> Event:
    return await asyncio.wait_for(q.get(), timeout)


async def next_of_kind(q: asyncio.Queue[Event], kind: str, timeout: float = 5.0) -> Event:
    """The next event of ``kind``, skipping others."""
    async def find() -> Event:
        while (e := await q.get()).kind != kind:
            pass
        return e
    return await asyncio.wait_for(find(), timeout)


@pytest.fixture
async def buses(pg_url: str) -> AsyncIterator[tuple[PgEventBus, PgEventBus]]:
    """Two instances' buses on one database."""
    a = PgEventBus(retry_delay=0.05, max_retry_delay=0.2)
    b = PgEventBus(retry_delay=0.05, max_retry_delay=0.2)
    await a.start(pg_url)
    await b.start(pg_url)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


@pytest.fixture
async def admin(pg_server: PgServer) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(pg_server.admin_dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def test_event_reaches_the_other_instance_once(buses: tuple[PgEventBus, PgEventBus]) -> None:
    a, b = buses
    qa, qb = a.subscribe(), b.subscribe()
    a.publish(Event("queued", "c1", "h1", {"team": "support"}))
    assert await next_event(qa, 0.01) == Event("queued", "c1", "h1", {"team": "support"})  # local, at once
    got = await next_event(qb)
    assert got == Event("queued", "c1", "h1", {"team": "support"}) and got.remote
    # A marker from B reaches A after A's own notification would have (one commit order),
    # so A's queue holding only the marker proves A skipped its own event.
    b.publish(Event("claimed", "c1", "h1"))
    assert await next_event(qa) == Event("claimed", "c1", "h1")
    assert qa.empty()
    assert await next_event(qb, 0.01) == Event("claimed", "c1", "h1")
    await asyncio.sleep(0.1)
    assert qb.empty()


async def test_order_is_kept(buses: tuple[PgEventBus, PgEventBus]) -> None:
    a, b = buses
    qb = b.subscribe()
    sent = [Event("message", f"c{i % 3}", None, {"message_id": f"m{i}"}) for i in range(250)]
    for e in sent[:7]:
        a.publish(e)
    await asyncio.sleep(0)  # the sender may take the first few on their own
    for e in sent[7:]:
        a.publish(e)
    got = [await next_event(qb) for _ in sent]
    assert got == sent


async def test_huge_data_is_trimmed_not_fatal(buses: tuple[PgEventBus, PgEventBus],
                                              caplog: pytest.LogCaptureFixture) -> None:
    a, b = buses
    qa, qb = a.subscribe(), b.subscribe()
    caplog.set_level(logging.DEBUG, logger="bot.events_pg")
    big = Event("message", "c1", "h1", {"message_id": "m1", "text": "é" * 20_000,
                                          "at": datetime(2026, 1, 2, tzinfo=timezone.utc)})
    a.publish(big)
    assert await next_event(qa, 0.01) is big  # local subscribers get it whole
    got = await next_event(qb)
    assert (got.kind, got.conversation_id, got.handoff_id) == ("message", "c1", "h1")
    assert got.data == {"message_id": "m1", "at": "2026-01-02 00:00:00+00:00"}
    assert any("dropped data fields ['text']" in r.getMessage() for r in caplog.records)
    # Just under and just over the cap.
    for size in range(PAYLOAD_LIMIT - 200, PAYLOAD_LIMIT + 10):
        a.publish(Event("state", "c2", None, {"blob": "x" * size}))
    for _ in range(PAYLOAD_LIMIT - 200, PAYLOAD_LIMIT + 10):
        e = await next_event(qb)
        assert e.kind == "state" and (not e.data or len(e.data["blob"]) < PAYLOAD_LIMIT)
    # Too big even without data: local only, and nothing breaks; B sees the gap and resyncs.
    a.publish(Event("state", "c" * 10_000))
    a.publish(Event("state", "c3"))
    assert await next_event(qb) == Event("resync", "")
    assert await next_event(qb) == Event("state", "c3")
    assert a.connected and b.connected


async def test_listener_killed_reconnects_and_resyncs(
        buses: tuple[PgEventBus, PgEventBus], admin: asyncpg.Connection, pg_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    a, b = buses
    qa, qb = a.subscribe(), b.subscribe()
    caplog.set_level(logging.DEBUG, logger="bot.events_pg")
    dbname = pg_url.rsplit("/", 1)[1]
    b_pid = b._conn.get_server_pid()  # type: ignore[union-attr]

    # The database refuses new connections for a while: several failed attempts, one outage.
    await admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
    assert await admin.fetchval("SELECT pg_terminate_backend($1)", b_pid)
    await until(lambda: not b.connected, timeout=5, what="B noticing the lost connection")
    b.publish(Event("resolved", "c9", "h9"))  # during the outage: sent once B is back
    await until(lambda: sum("reconnection attempt" in r.getMessage() for r in caplog.records) >= 3,
                timeout=5, what="a few failed reconnection attempts")
    assert qb.get_nowait() == Event("resolved", "c9", "h9")  # local delivery never waits
    await admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')

    assert await next_of_kind(qb, "resync") == Event("resync", "")
    assert b._conn.get_server_pid() != b_pid  # type: ignore[union-attr]
    assert await next_event(qa, 3) == Event("resolved", "c9", "h9")
    a.publish(Event("message", "c1", None, {"message_id": "m2"}))
    assert qa.get_nowait() == Event("message", "c1", None, {"message_id": "m2"})  # local
    assert await next_event(qb) == Event("message", "c1", None, {"message_id": "m2"})
    b.publish(Event("message", "c1", None, {"message_id": "m3"}))
    assert await next_event(qa) == Event("message", "c1", None, {"message_id": "m3"})
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("lost the PostgreSQL connection" in m for m in warnings) == 1, warnings
    assert sum("reconnected to PostgreSQL" in m for m in warnings) == 1, warnings
    assert qa.empty()  # A never lost its connection: no resync there


async def test_liveness_check_notices_a_dead_connection(pg_url: str, admin: asyncpg.Connection) -> None:
    """Without the termination callback, the periodic SELECT 1 finds the dead connection."""
    b = PgEventBus(check_interval=0.2, retry_delay=0.05)
    await b.start(pg_url)
    try:
        qb = b.subscribe()
        conn = b._conn
        assert conn is not None
        conn.remove_termination_listener(b._on_terminated)
        await admin.fetchval("SELECT pg_terminate_backend($1)", conn.get_server_pid())
        assert await next_of_kind(qb, "resync", timeout=5) == Event("resync", "")
        assert b.connected and b._conn is not conn
    finally:
        await b.close()


async def test_close_leaves_no_tasks_or_connections(pg_url: str, admin: asyncpg.Connection) -> None:
    before = asyncio.all_tasks()
    a, b = PgEventBus(), PgEventBus()
    await a.start(pg_url)
    await b.start(pg_url)
    qb = b.subscribe()
    for i in range(20):
        a.publish(Event("message", "c1", None, {"message_id": f"m{i}"}))
    await a.close()  # flushes what was queued first
    await until(lambda: qb.qsize() == 20, timeout=2, what="B receiving what A flushed at close")
    await b.close()
    assert asyncio.all_tasks() - before == set()
    assert [qb.get_nowait().data["message_id"] for _ in range(qb.qsize())] == [f"m{i}" for i in range(20)]
    assert not a.connected and not b.connected
    a.publish(Event("message", "c1"))  # after close: local only, no error
    await a.close()  # idempotent

    async def sessions_gone() -> bool:
        return not await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'omnibot-events' "
            "AND datname = $1", pg_url.rsplit("/", 1)[1])
    await until(lambda: sessions_gone(), timeout=3, what="the bus sessions ending on the server")


async def test_not_started_is_a_local_bus() -> None:
    bus = PgEventBus()
    q = bus.subscribe()
    bus.publish(Event("queued", "c1", "h1"))
    assert q.get_nowait() == Event("queued", "c1", "h1")
    assert not bus.connected
    await bus.close()


async def test_start_fails_loudly_when_unreachable(pg_server: PgServer) -> None:
    before = asyncio.all_tasks()
    bus = PgEventBus()
    with pytest.raises((OSError, asyncpg.PostgresError)):
        await bus.start(pg_server.dsn("no_such_database"))
    assert asyncio.all_tasks() - before == set()
    assert not bus.connected
