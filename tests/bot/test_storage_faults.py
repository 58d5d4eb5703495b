"""Storage faults for real: SQLite's own write lock held by another connection (what "database
is locked past its timeout" looks like), and SQLite's page limit (what a full disk looks like).

An accepted message must still be answered, once, when storage works again: without a restart
and without the customer writing again. Delivery must not loop while it cannot record a send.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bot.config import DeliveryConfig
from bot.delivery import Delivery
from bot.errors import StorageUnavailable
from bot.model import Inbound, Outbound
from bot.storage import OutboxItem, SqliteStore
from conftest import make_config, start_app, stop_app, until
from e2e.chat import ChatClient


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
        await until(lambda: s.store.health.failing, timeout=8, what="storage failing")
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
        await until(lambda: not s.store.health.failing, timeout=8, what="storage healthy")
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
        await until(lambda: not s.store.health.failing, timeout=8, what="probe to see storage writable")
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
        await until(lambda: conn.sent == ["one", "two"], timeout=8, what="the rest of the outbox")
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


# -- a replayed turn never repeats its side effects ----------------------------------------------

async def test_replayed_complaint_turn_gives_the_same_ticket_and_reference(tmp_path: Path) -> None:
    from e2e.test_tickets_e2e import _file_complaint

    r = await start_app(make_config(tmp_path))
    lock = WriteLock(tmp_path / "omnibot.sqlite3")
    try:
        s = r.services
        s.runtime.max_retry_delay = 0.3
        await short_busy_timeout(s.store)
        assert s.tickets is not None
        real_open = s.tickets.open
        opened: list[str] = []

        async def open_then_storage_fails(ctx: Any) -> Any:
            ticket = await real_open(ctx)
            opened.append(ticket.reference)
            if len(opened) == 1:
                lock.take()          # the ticket is written; the turn's commit will not be
                asyncio.get_running_loop().call_later(0.6, lock.release)
            return ticket

        s.tickets.open = open_then_storage_fails  # type: ignore[method-assign]
        chat = ChatClient(r.http, r.ws_url)
        await chat.connect()
        ref = await _file_complaint(chat, "shipping", "AB123456", "The parcel never came.")
        assert ref == "C-1001"
        assert opened == ["C-1001", "C-1001"]             # the turn ran twice ...
        tickets = sqlite3.connect(tmp_path / "omnibot.sqlite3").execute(
            "SELECT reference FROM tickets").fetchall()
        assert tickets == [("C-1001",)]                   # ... and opened one ticket
        said = [m["text"] for m in chat.messages.values() if "reference number" in m["text"]]
        assert len(said) == 1                             # told once
        # the reference counter moved once: the next complaint is C-1002
        other = ChatClient(r.http, r.ws_url)
        await other.connect()
        assert await _file_complaint(other, "product", "CD654321", "The lid cracked.") == "C-1002"
        await chat.close()
        await other.close()
    finally:
        await stop_app(r)


class FailingWrite:
    """The real store, except that write number ``n`` (counting from 1) raises StorageUnavailable
    before it reaches SQLite, as a full disk would."""

    WRITES = {"commit_turn", "mark_followed_up", "save_effect", "create_ticket", "reopen_ticket",
              "resolve_ticket", "record_csat", "next_sequence"}

    def __init__(self, store: Any, n: int) -> None:
        self._store, self._n, self.writes = store, n, 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name not in self.WRITES:
            return attr

        async def write(*args: Any, **kwargs: Any) -> Any:
            self.writes += 1
            if self.writes == self._n:
                raise StorageUnavailable(f"{name}: database or disk is full")
            return await attr(*args, **kwargs)
        return write


@pytest.mark.parametrize("failing_write", [1, 2])
async def test_follow_up_is_asked_once_whatever_write_fails(tmp_path: Path, failing_write: int) -> None:
    from datetime import timedelta

    from conftest import FakeClock
    from e2e.test_followup_e2e import T0, _resolved_complaint, _use_clock
    from handoff.followups import FollowUps

    r = await start_app(make_config(tmp_path))
    try:
        s = r.services
        clock = FakeClock(T0)
        _use_clock(r, clock)
        chat = ChatClient(r.http, r.ws_url)
        await chat.connect()
        ref = await _resolved_complaint(r, chat)
        clock.now = T0 + timedelta(days=3, minutes=1)
        faulty = FollowUps(store=FailingWrite(s.store, failing_write), engine=s.engine, locks=s.locks,
                           clock=clock, wake_delivery=s.delivery.wake)
        for _ in range(3):          # the periodic job runs again after the failure
            try:
                await faulty.run_due()
            except StorageUnavailable:
                pass
        await chat.reply()
        await asyncio.sleep(0.3)
        asked = [m for m in chat.messages.values() if "Has the problem stayed solved?" in m["text"]]
        assert len(asked) == 1, [m["text"] for m in asked]
        t = await s.store.get_ticket(ref)
        assert t is not None
        assert await s.store.due_followups(clock.now) == []
        await chat.close()
    finally:
        await stop_app(r)


async def test_agent_call_that_cannot_be_stored_gets_503_then_works(tmp_path: Path) -> None:
    from conftest import agent_headers, agent_queue

    r = await start_app(make_config(tmp_path, "nlu: {matcher: lexical}"))
    lock = WriteLock(tmp_path / "omnibot.sqlite3")
    try:
        await short_busy_timeout(r.services.store)
        chat = ChatClient(r.http, r.ws_url)
        await chat.connect()
        await chat.say("talk to a person", expect_text="queue")
        [h] = await agent_queue(r)
        lock.take()
        async with r.http.post(f"{r.url}/agent/api/handoffs/{h['id']}/claim", headers=agent_headers()) as resp:
            assert resp.status == 503 and resp.headers["Retry-After"] == "5"
            assert "try again" in (await resp.json())["error"]
        lock.release()
        async with r.http.post(f"{r.url}/agent/api/handoffs/{h['id']}/claim", headers=agent_headers()) as resp:
            assert resp.status == 200
        await chat.close()
    finally:
        await stop_app(r)


async def test_resolving_from_the_ticket_list_is_all_or_nothing(tmp_path: Path) -> None:
    """Resolved and told in one transaction: when storage fails, the complaint stays open and the
    agent's retry tells the customer once (before: resolved, customer never told, retry refused)."""
    from conftest import agent_headers
    from e2e.test_tickets_e2e import _file_complaint

    r = await start_app(make_config(tmp_path))
    lock = WriteLock(tmp_path / "omnibot.sqlite3")
    try:
        s = r.services
        await short_busy_timeout(s.store)
        chat = ChatClient(r.http, r.ws_url)
        await chat.connect()
        ref = await _file_complaint(chat, "product", "JK555555", "The zip broke the first time I used it.")
        await chat.say("No, that's all", payload="no")
        real_commit = s.store.commit_turn

        async def locked_commit(*args: Any, **kwargs: Any) -> Any:
            lock.take()                       # the ticket write and the message go in one commit
            try:
                return await real_commit(*args, **kwargs)
            finally:
                lock.release()

        s.store.commit_turn = locked_commit  # type: ignore[method-assign]
        url = f"{r.url}/agent/api/tickets/{ref}/resolve"
        async with r.http.post(url, headers=agent_headers(), json={"result": "a new zip is on its way"}) as resp:
            assert resp.status == 503, await resp.text()
        del s.store.commit_turn
        t = await s.store.get_ticket(ref)
        assert t is not None and t.resolved_at is None      # still open: nothing half done
        async with r.http.post(url, headers=agent_headers(), json={"result": "a new zip is on its way"}) as resp:
            assert resp.status == 200
        msgs = await chat.replies_until(lambda m: "How satisfied" in m["text"])
        assert [m["text"] for m in msgs].count(f"Anna resolved your complaint {ref}: a new zip is on its way") == 1
        await asyncio.sleep(0.3)
        told = [m for m in chat.messages.values() if "resolved your complaint" in m["text"]]
        assert len(told) == 1
        await chat.close()
    finally:
        await stop_app(r)


async def test_a_colliding_write_answers_409_not_500() -> None:
    """The app's middleware: a write that collided with another writer's is 409 with a reason."""
    import aiohttp
    from aiohttp import web

    from bot.app import _storage_unavailable
    from bot.errors import StoreConflict

    async def handler(request: web.Request) -> web.Response:
        raise StoreConflict("create_handoff: UNIQUE constraint failed")

    app = web.Application(middlewares=[_storage_unavailable])
    app.router.add_post("/x", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http, http.post(f"http://127.0.0.1:{port}/x") as resp:
            assert resp.status == 409
            body = await resp.json()
            assert "changed at the same moment" in body["error"] and "UNIQUE" not in body["error"]
    finally:
        await runner.cleanup()
