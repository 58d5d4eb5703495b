"""The outbox worker with a real store and a scripted in-memory connector."""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Sequence

import pytest

from bot.config import DeliveryConfig
from bot.delivery import Delivery
from bot.errors import PermanentSendError, TransientSendError
from bot.events import Event, EventBus
from bot.model import Inbound, Outbound
from bot.storage import OutboxItem, SqliteStore
from conftest import until

FAST = DeliveryConfig(base_delay=0.01, max_delay=0.05)


class CountingStore(SqliteStore):
    """The real SQLite store, counting how often the worker polls it."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.polls = 0

    async def due_outbox(self, now: float, **kw: Any) -> list[OutboxItem]:
        self.polls += 1
        return await super().due_outbox(now, **kw)


class FakeConnector:
    """A connector that records sends and follows a per-message script.

    ``fail[text]`` is a list of exceptions raised by the first sends of that
    text; ``gates[text]`` holds its send until the event is set.
    """

    name = "webchat"

    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []
        self.sent: list[str] = []
        self.fail: dict[str, list[Exception]] = {}
        self.gates: dict[str, asyncio.Event] = {}
        self.items: list[OutboxItem] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    @property
    def called(self) -> list[str]:
        return [t for t, _ in self.calls]

    async def send(self, item: OutboxItem) -> str:
        text = item.message.text
        self.calls.append((text, time.monotonic()))
        self.items.append(item)
        gate = self.gates.get(text)
        if gate is not None:
            await gate.wait()
        script = self.fail.get(text)
        if script:
            raise script.pop(0)
        self.sent.append(text)
        return f"pm-{item.message.id}"


@pytest.fixture
async def store() -> AsyncIterator[CountingStore]:
    s = CountingStore(":memory:")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def connector() -> FakeConnector:
    return FakeConnector()


@pytest.fixture
async def workers() -> AsyncIterator[list[Delivery]]:
    started: list[Delivery] = []
    yield started
    for d in started:
        await d.stop()


async def start(workers: list[Delivery], store: SqliteStore, connector: FakeConnector,
                config: DeliveryConfig = FAST, **kw: Any) -> Delivery:
    d = Delivery(store, {"webchat": connector}, config, **kw)
    workers.append(d)
    await d.start()
    return d


async def queue(store: SqliteStore, ext: str, texts: Sequence[str], *, channel: str = "webchat") -> list[int]:
    r = await store.record_inbound(Inbound(channel, ext, f"{ext}-{time.monotonic_ns()}", "hi"))
    msgs = await store.commit_turn(r.conversation.id, inbound_id=r.message.id, flow_state=None,
                                   replies=[Outbound(t) for t in texts])
    return [m.id for m in msgs]


async def row(store: SqliteStore, message_id: int) -> dict[str, Any]:
    async with store.db.execute("SELECT status, attempts, next_attempt_at, last_error, platform_message_id "
                                "FROM messages WHERE id=?", (message_id,)) as cur:
        r = await cur.fetchone()
    return dict(r)


async def statuses(store: SqliteStore, ids: Sequence[int]) -> list[str]:
    return [(await row(store, i))["status"] for i in ids]


async def test_sends_in_order_and_marks_sent(store: CountingStore, connector: FakeConnector,
                                             workers: list[Delivery]) -> None:
    ids = await queue(store, "A", ["one", "two", "three"])
    d = await start(workers, store, connector)
    await until(lambda: len(connector.sent) == 3)
    assert connector.sent == ["one", "two", "three"]
    await until(lambda: _all_sent(store, ids))
    for i in ids:
        r = await row(store, i)
        assert (r["status"], r["attempts"], r["platform_message_id"]) == ("sent", 1, f"pm-{i}")
    assert (d.sent, d.failed) == (3, 0)
    assert [(it.channel, it.external_id) for it in connector.items] == [("webchat", "A")] * 3


async def _all_sent(store: SqliteStore, ids: Sequence[int]) -> bool:
    return await statuses(store, ids) == ["sent"] * len(ids)


async def test_wake_picks_up_new_messages(store: CountingStore, connector: FakeConnector,
                                          workers: list[Delivery]) -> None:
    d = await start(workers, store, connector)
    await asyncio.sleep(0.02)
    ids = await queue(store, "A", ["late"])
    d.wake()
    await until(lambda: connector.sent == ["late"])
    await until(lambda: _all_sent(store, ids))


async def test_transient_error_then_success_delivers_once_in_order(
        store: CountingStore, connector: FakeConnector, workers: list[Delivery]) -> None:
    connector.fail["one"] = [TransientSendError("503 from platform", retry_after=0.3)]
    ids = await queue(store, "A", ["one", "two", "three"])
    await start(workers, store, connector)
    await until(lambda: len(connector.calls) == 1)
    await asyncio.sleep(0.1)
    # "two" and "three" are held back while "one" waits for its retry
    assert connector.called == ["one"]
    r = await row(store, ids[0])
    assert (r["status"], r["attempts"], r["last_error"]) == ("pending", 1, "503 from platform")
    assert await statuses(store, ids[1:]) == ["pending", "pending"]

    await until(lambda: _all_sent(store, ids))
    assert connector.called == ["one", "one", "two", "three"]
    assert connector.sent == ["one", "two", "three"]
    assert (await row(store, ids[0]))["attempts"] == 2
    assert (await row(store, ids[0]))["last_error"] is None
    # the retry honoured retry_after
    assert connector.calls[1][1] - connector.calls[0][1] >= 0.25


async def test_a_waiting_head_does_not_make_the_worker_spin(
        store: CountingStore, connector: FakeConnector, workers: list[Delivery]) -> None:
    connector.fail["one"] = [TransientSendError("429", retry_after=0.4)]
    ids = await queue(store, "A", ["one", "two"])
    await start(workers, store, connector)
    await until(lambda: len(connector.calls) == 1)
    polls = store.polls
    await asyncio.sleep(0.25)
    # "two" is past its next_attempt_at but cannot go before "one": nothing to do until 0.4 s
    assert store.polls - polls <= 5
    await until(lambda: _all_sent(store, ids))
    assert connector.sent == ["one", "two"]


async def test_retry_after_schedules_next_attempt_with_the_injected_clock(
        store: CountingStore, connector: FakeConnector, workers: list[Delivery]) -> None:
    now = [time.time() + 1000.0]
    connector.fail["one"] = [TransientSendError("rate limited", retry_after=30)]
    ids = await queue(store, "A", ["one", "two"])
    d = await start(workers, store, connector, clock=lambda: now[0])
    await until(lambda: _row_attempts(store, ids[0], 1))
    r = await row(store, ids[0])
    assert r["status"] == "pending"
    assert r["next_attempt_at"] == pytest.approx(now[0] + 30, abs=1e-6)
    assert await store.next_outbox_due() == pytest.approx(now[0] + 30, abs=1e-6)
    await asyncio.sleep(0.1)
    assert connector.called == ["one"]  # not due yet by the clock

    now[0] += 31
    d.wake()
    await until(lambda: _all_sent(store, ids))
    assert connector.called == ["one", "one", "two"]


async def _row_attempts(store: SqliteStore, message_id: int, n: int) -> bool:
    return (await row(store, message_id))["attempts"] == n


async def test_backoff_without_retry_after_uses_config(store: CountingStore, connector: FakeConnector,
                                                       workers: list[Delivery]) -> None:
    now = [time.time() + 1000.0]
    connector.fail["one"] = [TransientSendError("timeout")]
    ids = await queue(store, "A", ["one"])
    await start(workers, store, connector, DeliveryConfig(base_delay=2.0, max_delay=3.0),
                clock=lambda: now[0])
    await until(lambda: _row_attempts(store, ids[0], 1))
    delay = (await row(store, ids[0]))["next_attempt_at"] - now[0]
    assert 1.0 - 1e-6 <= delay <= 2.0 + 1e-6   # full jitter in [cap/2, cap], cap = base_delay * 2**0


def test_backoff_is_capped() -> None:
    d = Delivery.__new__(Delivery)
    d.config = DeliveryConfig(base_delay=1.0, max_delay=5.0)
    for attempts in range(12):
        cap = min(5.0, 2.0 ** attempts)
        for _ in range(20):
            assert cap / 2 <= d.backoff(attempts) <= cap


async def failures_seen(store: SqliteStore, bus: EventBus) -> list[tuple[Event, str]]:
    """Collect ``delivery_failed`` events, each with the message's stored status at that moment."""
    seen: list[tuple[Event, str]] = []
    q = bus.subscribe()

    async def watch() -> None:
        while True:
            ev = await q.get()
            if ev.kind == "delivery_failed":
                seen.append((ev, (await row(store, ev.data["message_id"]))["status"]))

    task = asyncio.create_task(watch())
    seen_task.append(task)
    return seen


seen_task: list[asyncio.Task[None]] = []


@pytest.fixture(autouse=True)
async def _stop_watchers() -> AsyncIterator[None]:
    yield
    while seen_task:
        t = seen_task.pop()
        t.cancel()
        await asyncio.gather(t, return_exceptions=True)


async def test_permanent_error_marks_failed_and_next_message_goes(
        store: CountingStore, connector: FakeConnector, workers: list[Delivery]) -> None:
    connector.fail["one"] = [PermanentSendError("the customer blocked the bot")]
    ids = await queue(store, "A", ["one", "two"])
    bus = EventBus()
    seen = await failures_seen(store, bus)
    d = await start(workers, store, connector, events=bus)
    await until(lambda: _statuses_are(store, ids, ["failed", "sent"]))
    assert connector.called == ["one", "two"]
    r = await row(store, ids[0])
    assert (r["attempts"], r["last_error"]) == (1, "the customer blocked the bot")
    assert (d.sent, d.failed) == (1, 1)
    # announced once, after the failure was recorded (the listener reads "failed" already)
    await until(lambda: len(seen) == 1, what="delivery_failed event")
    [(ev, status_then)] = seen
    assert status_then == "failed"
    assert ev.data == {"message_id": ids[0], "reason": "the customer blocked the bot", "channel": "webchat",
                       "role": "bot", "sender": ""}
    conv = await store.open_conversation("webchat", "A")
    assert (ev.conversation_id, ev.handoff_id) == (conv.id, None)    # no handoff in this conversation


async def _statuses_are(store: SqliteStore, ids: Sequence[int], expected: list[str]) -> bool:
    return await statuses(store, ids) == expected


async def test_max_attempts_gives_up(store: CountingStore, connector: FakeConnector,
                                     workers: list[Delivery]) -> None:
    connector.fail["one"] = [TransientSendError(f"down {i}") for i in range(10)]
    ids = await queue(store, "A", ["one", "two"])
    bus = EventBus()
    seen = await failures_seen(store, bus)
    d = await start(workers, store, connector,
                    DeliveryConfig(max_attempts=3, base_delay=0.01, max_delay=0.05), events=bus)
    await until(lambda: _statuses_are(store, ids, ["failed", "sent"]))
    assert connector.called == ["one", "one", "one", "two"]
    r = await row(store, ids[0])
    assert (r["attempts"], r["last_error"]) == (3, "not delivered after 3 attempts: down 2")
    assert (d.sent, d.failed) == (1, 1)
    # retries exhausted is announced like a permanent error: once, after it is recorded
    await until(lambda: len(seen) == 1, what="delivery_failed event")
    [(ev, status_then)] = seen
    assert status_then == "failed"
    assert ev.data["message_id"] == ids[0] and ev.data["reason"] == r["last_error"]


async def test_connection_error_is_retried(store: CountingStore, connector: FakeConnector,
                                           workers: list[Delivery]) -> None:
    connector.fail["one"] = [ConnectionResetError("reset by peer")]
    ids = await queue(store, "A", ["one"])
    await start(workers, store, connector)
    await until(lambda: _all_sent(store, ids))
    assert connector.called == ["one", "one"]


async def test_missing_connector_retries_then_fails(store: CountingStore, connector: FakeConnector,
                                                    workers: list[Delivery]) -> None:
    ids = await queue(store, "T", ["to telegram"], channel="telegram")
    await start(workers, store, connector, DeliveryConfig(max_attempts=2, base_delay=0.01, max_delay=0.05))
    await until(lambda: _statuses_are(store, ids, ["failed"]))
    r = await row(store, ids[0])
    assert r["attempts"] == 2
    assert "no connector for channel 'telegram'" in r["last_error"]
    assert connector.calls == []


async def test_conversations_are_sent_in_parallel(store: CountingStore, connector: FakeConnector,
                                                  workers: list[Delivery]) -> None:
    gate = asyncio.Event()
    connector.gates["a1"] = gate
    a = await queue(store, "A", ["a1", "a2"])
    b = await queue(store, "B", ["b1", "b2"])
    await start(workers, store, connector)
    # A's first send hangs; B's messages go out meanwhile, A's second waits for its first
    await until(lambda: _all_sent(store, b))
    assert "a1" in connector.called
    assert "a2" not in connector.called
    assert await statuses(store, a) == ["pending", "pending"]

    gate.set()
    await until(lambda: _all_sent(store, a))
    assert connector.sent.index("a1") < connector.sent.index("a2")
    assert connector.sent[:2] == ["b1", "b2"]


async def test_stop_cancels_an_inflight_send_and_it_stays_pending(
        store: CountingStore, connector: FakeConnector, workers: list[Delivery]) -> None:
    connector.gates["stuck"] = asyncio.Event()
    ids = await queue(store, "A", ["stuck"])
    d = await start(workers, store, connector)
    await until(lambda: connector.called == ["stuck"])
    await d.stop()
    workers.remove(d)
    # not lost: it is sent again when a worker starts
    r = await row(store, ids[0])
    assert (r["status"], r["attempts"]) == ("pending", 0)
    connector.gates.clear()
    await start(workers, store, connector)
    await until(lambda: _all_sent(store, ids))
    assert connector.called == ["stuck", "stuck"]


class BatchFake(FakeConnector):
    """A connector that sends a turn's replies as one platform message (like e-mail)."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    async def send_batch(self, items: list[OutboxItem]) -> str:
        texts = [i.message.text for i in items]
        self.calls.append(("+".join(texts), time.monotonic()))
        script = self.fail.get(texts[0])
        if script:
            raise script.pop(0)
        self.batches.append(texts)
        return f"mail-{items[0].message.id}"


async def test_a_batch_connector_gets_each_turn_as_one_send(store: CountingStore, workers: list[Delivery]) -> None:
    """One send per turn, retried whole; every message of it is marked with the one platform id.
    Another turn of the same conversation is another send; a failure for good fails the turn."""
    conn = BatchFake()
    conn.fail["one"] = [TransientSendError("busy")]
    first = await queue(store, "A", ["one", "two", "three"])
    await asyncio.sleep(0.002)
    conv = await store.latest_conversation("webchat", "A")
    assert conv is not None
    second = [m.id for m in await store.commit_turn(conv.id, inbound_id=None, flow_state=None,
                                                    replies=[Outbound("four")])]
    conn.fail["bad"] = [PermanentSendError("refused")]
    failed = await queue(store, "B", ["bad", "worse"])
    conn.fail["down"] = [TransientSendError("unreachable")] * 3
    gave_up = await queue(store, "C", ["down", "still down"])
    await start(workers, store, conn, DeliveryConfig(base_delay=0.01, max_delay=0.05, max_attempts=3))
    await until(lambda: len(conn.batches) == 2)
    assert conn.batches == [["one", "two", "three"], ["four"]]
    assert conn.sent == []                                   # send() was never used
    await until(lambda: _all_sent(store, first + second))
    assert {(await row(store, i))["platform_message_id"] for i in first} == {f"mail-{first[0]}"}
    await until(lambda: statuses_are(store, failed, "failed"))
    await until(lambda: statuses_are(store, gave_up, "failed"))     # given up on together
    assert conn.called.count("down+still down") == 3


async def statuses_are(store: SqliteStore, ids: Sequence[int], status: str) -> bool:
    return all(s == status for s in await statuses(store, ids))


class RecordingConnector(FakeConnector):
    """A connector with its own record of a send (as WhatsApp's ``record_sent``): the text
    ``"late failure"`` comes back failed, as a platform status that overtook the send would."""

    def __init__(self, store: SqliteStore) -> None:
        super().__init__()
        self.store = store
        self.recorded: list[tuple[int, str]] = []

    async def record_sent(self, item: OutboxItem, platform_id: str, *, now: float) -> tuple[Any, str | None]:
        self.recorded.append((item.message.id, platform_id))
        if item.message.text == "late failure":
            await self.store.mark_failed(item.message.id, error="reported failed")
            due = await self.store.due_outbox(now, limit=1, conversation_id=item.message.conversation_id)
            return (due[0] if due else None), "reported failed"
        return (await self.store.mark_sent_next(item.message.id, platform_id,
                                                conversation_id=item.message.conversation_id, now=now), None)


async def test_a_connector_records_its_own_sends(store: CountingStore, workers: list[Delivery]) -> None:
    connector = RecordingConnector(store)
    ids = await queue(store, "A", ["one", "late failure", "three"])
    bus = EventBus()
    seen = await failures_seen(store, bus)
    d = await start(workers, store, connector, events=bus)
    await until(lambda: _statuses_are(store, ids, ["sent", "failed", "sent"]))
    # every send recorded through the connector, in order; the next reply read by that record
    assert connector.recorded == [(i, f"pm-{i}") for i in ids]
    assert (d.sent, d.failed) == (2, 1)
    await until(lambda: len(seen) == 1, what="delivery_failed event")
    [(ev, status_then)] = seen
    assert status_then == "failed" and ev.data["message_id"] == ids[1] and ev.data["reason"] == "reported failed"
