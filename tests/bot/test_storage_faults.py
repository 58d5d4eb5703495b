"""Storage faults for real: SQLite's own write lock held by another connection (what "database
is locked past its timeout" looks like), and SQLite's page limit (what a full disk looks like).

An accepted message must still be answered, once, when storage works again: without a restart
and without the customer writing again. Delivery must not loop while it cannot record a send.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from bot.config import DeliveryConfig
from bot.delivery import Delivery
from bot.errors import StorageUnavailable
from bot.model import Inbound, Outbound
from bot.storage import OutboxItem, SqliteStore
from conftest import make_config, start_app, stop_app
from e2e.chat import ChatClient


async def until(pred: Callable[[], Any], timeout: float = 8.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if asyncio.iscoroutine(v):
            v = await v
        if v:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class WriteLock:
    """Another process's connection holding SQLite's write lock, as a long batch job would."""

    def __init__(self, path: Path) -> None:
        self.con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def take(self) -> None:
        self.con.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.con.execute("ROLLBACK")
        self.con.close()


async def short_busy_timeout(store: Any) -> None:
    # The product waits 5 s for a lock; the test makes "past its timeout" come sooner.
    await store.db.execute("PRAGMA busy_timeout=30")


async def readyz(r: Any) -> tuple[int, dict[str, Any]]:
    async with r.http.get(r.url + "/readyz") as resp:
        return resp.status, await resp.json()


async def test_turn_that_cannot_be_stored_is_answered_once_storage_works(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    r = await start_app(make_config(tmp_path, "nlu: {matcher: lexical}"))
    lock = WriteLock(tmp_path / "omnibot.sqlite3")
    try:
        s = r.services
        s.runtime.max_retry_delay = 0.5
        await short_busy_timeout(s.store)
        assert (await readyz(r))[0] == 200
        chat = ChatClient(r.http, r.ws_url)
        await chat.connect()
        s.runtime._fault_delay = 0.3          # the turn starts after the ack ...
        ack = await chat.send("when are you open?")
        assert ack["type"] == "ack"
        lock.take()                           # ... and finds the database locked when it commits
        await until(lambda: s.store.health.failing, what="storage failing")
        status, body = await readyz(r)
        assert status == 503 and body["storage"] == "failing" and not body["ready"]
        await asyncio.sleep(1.5)              # several sweep rounds while the lock is held
        assert chat.inbox.empty()
        rows = sqlite3.connect(tmp_path / "omnibot.sqlite3").execute(
            "SELECT status FROM messages WHERE direction='in'").fetchall()
        assert rows == [("received",)]        # kept, not apologised for, not lost
        s.runtime._fault_delay = 0
        lock.release()
        reply = await chat.reply(timeout=8)   # no new customer message, no restart
        assert "open" in reply["text"].lower()
        await asyncio.sleep(0.5)
        assert chat.inbox.empty()             # answered once: no second answer, no apology
        assert not any("went wrong" in m["text"] for m in chat.messages.values())
        await until(lambda: not s.store.health.failing, what="storage healthy")
        assert (await readyz(r))[0] == 200
        # Logged once (and once more when it recovers), not once per attempt; no traceback.
        storage_warnings = [rec for rec in caplog.records if rec.name == "bot.storage"
                            and rec.levelno == logging.WARNING]
        assert len(storage_warnings) == 2, [rec.getMessage() for rec in storage_warnings]
        assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
        await chat.close()
    finally:
        await stop_app(r)


async def test_full_disk_refuses_ingress_and_readiness_recovers_by_itself(tmp_path: Path) -> None:
    r = await start_app(make_config(tmp_path, "nlu: {matcher: lexical}"))
    try:
        s = r.services
        s.runtime.max_retry_delay = 0.3
        pages = (await (await s.store.db.execute("PRAGMA page_count")).fetchone())[0]
        await s.store.db.execute(f"PRAGMA max_page_count={pages}")   # no room to grow: SQLITE_FULL
        with pytest.raises(StorageUnavailable):
            await s.runtime.accept(Inbound(channel="webchat", external_id="v1", platform_message_id="m1",
                                           text="x" * 20000))
        status, body = await readyz(r)
        assert status == 503 and body["storage"] == "failing"
        assert "full" in body["storage_detail"]["error"]
        await asyncio.sleep(0.8)
        assert (await readyz(r))[0] == 503    # the sweep's probe write fails too while it is full
        await s.store.db.execute(f"PRAGMA max_page_count={pages * 100}")
        await until(lambda: not s.store.health.failing, what="probe to see storage writable")
        status, body = await readyz(r)
        assert status == 200 and body["storage"] == "ok" and body["connectors"] == {"webchat": "ok"}
        async with r.http.get(r.url + "/healthz") as resp:
            assert resp.status == 200 and (await resp.json())["ok"] is True
    finally:
        await stop_app(r)


class GatedConnector:
    """Sends succeed on the platform; the first is held until the test opens the gate."""

    name = "webchat"

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    async def send(self, item: OutboxItem) -> str:
        self.entered.set()
        await self.gate.wait()
        self.sent.append(item.message.text)
        return f"pm-{len(self.sent)}"


async def test_send_that_cannot_be_recorded_is_not_sent_again_in_a_loop(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = SqliteStore(path)
    await store.open()
    await short_busy_timeout(store)
    conn = GatedConnector()
    delivery = Delivery(store, {"webchat": conn}, DeliveryConfig(base_delay=0.05, max_delay=0.2))
    lock = WriteLock(path)
    try:
        res = await store.record_inbound(Inbound(channel="webchat", external_id="v1", platform_message_id="m1",
                                                 text="hi"))
        cid = res.conversation.id
        await store.commit_turn(cid, inbound_id=res.message.id, replies=[Outbound("one"), Outbound("two")],
                                flow_state=None)
        await delivery.start()
        await asyncio.wait_for(conn.entered.wait(), 5)
        lock.take()                 # the platform takes "one", then recording it fails
        conn.gate.set()
        await asyncio.sleep(2.0)
        assert conn.sent == ["one"]  # not re-sent while the record keeps failing (was: hundreds)
        assert store.health.failing
        lock.release()
        await until(lambda: conn.sent == ["one", "two"], what="the rest of the outbox")
        await asyncio.sleep(0.3)
        assert conn.sent == ["one", "two"]
        rows = [m.status for m in await store.history(cid)]
        assert rows == ["processed", "sent", "sent"]
        assert not store.health.failing
    finally:
        await delivery.stop()
        await store.close()


async def test_outbox_rounds_back_off_while_storage_cannot_be_read(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = SqliteStore(path)
    await store.open()
    calls = 0

    async def failing_due_outbox(now: float, **kw: Any) -> list[OutboxItem]:
        # what SqliteStore raises when a read finds the database locked past its timeout
        nonlocal calls
        calls += 1
        raise StorageUnavailable("due_outbox: database is locked")

    store.due_outbox = failing_due_outbox  # type: ignore[method-assign]
    delivery = Delivery(store, {}, DeliveryConfig(base_delay=0.05, max_delay=0.4))
    try:
        await delivery.start()
        await asyncio.sleep(1.5)
        # backoff 0.05 .. 0.4 s: a handful of rounds, not a tight loop
        assert 0 < calls <= 15, calls
    finally:
        await delivery.stop()
        await store.close()
