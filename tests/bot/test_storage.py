"""The store contract, on both backends (SQLite and a real throwaway PostgreSQL): inbound
dedupe, atomic turns, outbox, handoffs; and SQLite's own migrations and files."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest

from bot.errors import StoreError
from bot.model import Attachment, Button, ConversationState, Inbound, Outbound
from bot.storage import HandoffSpec, SqliteStore, Store, open_store
from bot.storage.sqlite import SCHEMA_VERSION

TABLES = {"meta", "customers", "identities", "conversations", "messages", "handoffs"}


def inbound(pid: str, text: str = "hello", *, channel: str = "webchat", ext: str = "visitor-1",
            name: str = "", **kw: object) -> Inbound:
    return Inbound(channel=channel, external_id=ext, platform_message_id=pid, text=text, sender_name=name,
                   **kw)  # type: ignore[arg-type]


def spec(team: str = "support", priority: int = 0, seen: list[int] | None = None) -> HandoffSpec:
    def message(position: int) -> Outbound:
        if seen is not None:
            seen.append(position)
        return Outbound(f"You are number {position} for {team}.")

    return HandoffSpec(team=team, reason="asked", priority=priority, context={"slots": {"a": 1}},
                       message=message)


def raw(path: Path, sql: str, args: tuple = ()) -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


# -- migrations ---------------------------------------------------------------


async def test_migration_from_empty_file(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "o.sqlite3"
    s = await open_store(f"sqlite:///{db}")
    try:
        assert isinstance(s, SqliteStore)
        assert await s.schema_version() == SCHEMA_VERSION == 16
    finally:
        await s.close()
    assert raw(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    tables = {r[0] for r in raw(db, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert TABLES <= tables


async def test_migration_from_version_1_keeps_data(tmp_path: Path) -> None:
    import sqlite3

    from bot.storage.sqlite_schema import MIGRATIONS, split_sql

    db = tmp_path / "v1.sqlite3"
    con = sqlite3.connect(db)
    for stmt in split_sql(MIGRATIONS[0]):
        con.execute(stmt)
    con.execute("INSERT INTO customers(id, display_name, created_at) VALUES ('cus_1', 'Ann', '2026-01-01T00:00:00+00:00')")
    con.execute("PRAGMA user_version=1")
    con.commit()
    con.close()
    s = await open_store(str(db))
    try:
        assert await s.schema_version() == SCHEMA_VERSION
        assert (await s.get_customer("cus_1")).display_name == "Ann"
        assert (await s.get_customer("cus_1")).attributes == {}
        assert await s.first_seen("slack", "Ev1") is True
        assert await s.first_seen("slack", "Ev1") is False
    finally:
        await s.close()


async def test_wal_journal_mode_on_file_db(tmp_path: Path) -> None:
    db = tmp_path / "o.sqlite3"
    s = await open_store(str(db))  # a plain path works too
    try:
        async with s.db.execute("PRAGMA journal_mode") as cur:  # type: ignore[attr-defined]
            assert (await cur.fetchone())[0] == "wal"
        async with s.db.execute("PRAGMA foreign_keys") as cur:  # type: ignore[attr-defined]
            assert (await cur.fetchone())[0] == 1
    finally:
        await s.close()
    assert raw(db, "PRAGMA journal_mode") == [("wal",)]  # persistent in the file


async def test_reopen_runs_no_migration_and_keeps_data(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "o.sqlite3"
    s = await open_store(f"sqlite:///{db}")
    res = await s.record_inbound(inbound("p1", "keep me"))
    await s.set_meta_if_absent("app_secret", "abc")
    await s.close()

    caplog.set_level("INFO", logger="bot.storage.sqlite")
    caplog.clear()                  # only what the reopening logs
    s = await open_store(f"sqlite:///{db}")
    try:
        assert not [r for r in caplog.records if "migrating" in r.getMessage()]
        assert await s.schema_version() == SCHEMA_VERSION
        assert [m.text for m in await s.history(res.conversation.id)] == ["keep me"]
        assert await s.get_meta("app_secret") == "abc"
        assert await s.set_meta_if_absent("app_secret", "other") == "abc"
    finally:
        await s.close()


async def test_migration_logs_once_for_a_new_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="bot.storage.sqlite")
    s = await open_store(str(tmp_path / "o.db"))
    await s.close()
    assert len([r for r in caplog.records if "migrating" in r.getMessage()]) == SCHEMA_VERSION


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "o.sqlite3"
    raw(db, f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match=rf"schema version {SCHEMA_VERSION + 1}, newer than this omnibot \({SCHEMA_VERSION}\)"):
        await open_store(f"sqlite:///{db}")
    # nothing was created in the refused database
    assert raw(db, "SELECT name FROM sqlite_master WHERE type='table'") == []


async def test_refused_store_closes_its_connection(tmp_path: Path) -> None:
    db = tmp_path / "o.sqlite3"
    raw(db, f"PRAGMA user_version={SCHEMA_VERSION + 5}")
    s = SqliteStore(db)
    with pytest.raises(StoreError):
        await s.open()
    # A failed open must not leave a connection (and its worker thread) behind.
    assert s._db is None
    with pytest.raises(StoreError, match="not open"):
        await s.get_meta("x")


async def test_unknown_url_scheme() -> None:
    from bot.errors import ConfigError

    with pytest.raises(ConfigError) as ei:
        await open_store("mysql://localhost/x")
    assert ei.value.key == "storage.url"


# -- meta ---------------------------------------------------------------------


async def test_next_sequence_increments(store: Store) -> None:
    assert await store.next_sequence("reference", start=1001) == 1001
    assert await store.next_sequence("reference", start=1001) == 1002
    assert await store.next_sequence("reference") == 1003
    assert await store.next_sequence("other") == 1000
    assert await store.get_meta("seq:reference") == "1003"


async def test_next_sequence_concurrent_values_are_unique(store: Store) -> None:
    values = await asyncio.gather(*(store.next_sequence("n", start=1) for _ in range(20)))
    assert sorted(values) == list(range(1, 21))


# -- inbound ------------------------------------------------------------------


async def test_record_inbound_creates_customer_identity_conversation(store: Store) -> None:
    res = await store.record_inbound(inbound("p1", "hi", name="Maria Lopez",
                                             attachments=(Attachment("image", "/m/1.png", "1.png"),),
                                             payload="intent:greet"))
    assert res.duplicate is False
    assert res.customer.display_name == "Maria Lopez"
    assert res.conversation.customer_id == res.customer.id
    assert res.conversation.state is ConversationState.BOT
    assert (res.conversation.channel, res.conversation.external_id) == ("webchat", "visitor-1")
    m = res.message
    assert (m.direction, m.role, m.text, m.status, m.platform_message_id, m.payload) == (
        "in", "customer", "hi", "received", "p1", "intent:greet")
    assert m.attachments == (Attachment("image", "/m/1.png", "1.png"),)
    assert await store.identities(res.customer.id) == [("webchat", "visitor-1")]
    assert await store.get_customer(res.customer.id) == res.customer
    assert await store.get_conversation(res.conversation.id) is not None
    assert await store.open_conversation("webchat", "visitor-1") == await store.get_conversation(
        res.conversation.id)


async def test_second_message_same_conversation(store: Store) -> None:
    a = await store.record_inbound(inbound("p1", "one"))
    b = await store.record_inbound(inbound("p2", "two", name="Late Name"))
    assert b.duplicate is False
    assert b.conversation.id == a.conversation.id
    assert b.customer.id == a.customer.id
    assert b.message.id > a.message.id
    # an empty display name is filled in later, once
    assert b.customer.display_name == "Late Name"
    c = await store.record_inbound(inbound("p3", "three", name="Other"))
    assert c.customer.display_name == "Late Name"
    assert [m.text for m in await store.history(a.conversation.id)] == ["one", "two", "three"]


async def test_record_inbound_dedupes_on_channel_and_platform_id(store: Store) -> None:
    a = await store.record_inbound(inbound("p1", "first"))
    b = await store.record_inbound(inbound("p1", "first (redelivered)"))
    assert b.duplicate is True
    assert b.message.id == a.message.id
    assert b.message.text == "first"
    assert b.conversation.id == a.conversation.id
    assert len(await store.history(a.conversation.id)) == 1


async def test_same_platform_id_on_another_channel_is_not_a_duplicate(store: Store) -> None:
    a = await store.record_inbound(inbound("42", "web", channel="webchat"))
    b = await store.record_inbound(inbound("42", "tg", channel="telegram"))
    assert b.duplicate is False
    assert b.message.id != a.message.id
    assert b.conversation.id != a.conversation.id
    assert b.customer.id != a.customer.id


async def test_concurrent_duplicates_store_one_message(store: Store) -> None:
    results = await asyncio.gather(*(store.record_inbound(inbound("same", "x")) for _ in range(5)))
    assert sorted(r.duplicate for r in results) == [False, True, True, True, True]
    assert len({r.message.id for r in results}) == 1


async def test_closed_conversation_means_next_inbound_opens_a_new_one(store: Store) -> None:
    a = await store.record_inbound(inbound("p1"))
    await store.set_conversation_state(a.conversation.id, ConversationState.CLOSED)
    assert await store.open_conversation("webchat", "visitor-1") is None
    closed = await store.latest_conversation("webchat", "visitor-1")
    assert closed is not None and closed.id == a.conversation.id and closed.state is ConversationState.CLOSED

    b = await store.record_inbound(inbound("p2"))
    assert b.duplicate is False
    assert b.conversation.id != a.conversation.id
    assert b.customer.id == a.customer.id
    assert b.conversation.state is ConversationState.BOT
    assert [c.id for c in await store.customer_conversations(a.customer.id)] == [a.conversation.id,
                                                                                  b.conversation.id]
    latest = await store.latest_conversation("webchat", "visitor-1")
    assert latest is not None and latest.id == b.conversation.id


async def test_latest_conversation(store: Store) -> None:
    assert await store.latest_conversation("webchat", "nobody") is None
    a = await store.record_inbound(inbound("p1"))
    await store.set_conversation_state(a.conversation.id, ConversationState.CLOSED)
    b = await store.record_inbound(inbound("p2"))
    await store.set_conversation_state(b.conversation.id, ConversationState.CLOSED)
    # with only closed ones, the most recent closed one
    latest = await store.latest_conversation("webchat", "visitor-1")
    assert latest is not None and latest.id == b.conversation.id
    # an open one wins over a more recently updated closed one
    c = await store.record_inbound(inbound("p3"))
    await store.set_conversation_state(a.conversation.id, ConversationState.CLOSED)  # touches updated_at
    latest = await store.latest_conversation("webchat", "visitor-1")
    assert latest is not None and latest.id == c.conversation.id
    assert await store.latest_conversation("telegram", "visitor-1") is None


async def test_unprocessed_inbound_and_conversations_with_unprocessed(store: Store) -> None:
    a1 = await store.record_inbound(inbound("a1", "a-one", ext="A"))
    b1 = await store.record_inbound(inbound("b1", "b-one", ext="B"))
    a2 = await store.record_inbound(inbound("a2", "a-two", ext="A"))
    ca, cb = a1.conversation.id, b1.conversation.id
    assert await store.conversations_with_unprocessed() == [ca, cb]   # by oldest waiting message
    assert [m.id for m in await store.unprocessed_inbound(ca)] == [a1.message.id, a2.message.id]

    await store.commit_turn(ca, inbound_id=a1.message.id, replies=[Outbound("r")], flow_state=None)
    assert [m.id for m in await store.unprocessed_inbound(ca)] == [a2.message.id]
    assert await store.conversations_with_unprocessed() == [cb, ca]

    await store.commit_turn(ca, inbound_id=a2.message.id, replies=[], flow_state=None)
    await store.commit_turn(cb, inbound_id=b1.message.id, replies=[], flow_state=None)
    assert await store.unprocessed_inbound(ca) == []
    assert await store.conversations_with_unprocessed() == []


# -- turns --------------------------------------------------------------------


async def test_commit_turn_writes_outbox_marks_processed_saves_flow_state(store: Store) -> None:
    r = await store.record_inbound(inbound("p1"))
    cid = r.conversation.id
    out = await store.commit_turn(
        cid, inbound_id=r.message.id, flow_state={"flow": "faq", "slots": {"x": "ü"}},
        replies=[Outbound("one", buttons=(Button("Yes", "y"),)),
                 Outbound("two", role="system"),
                 Outbound("three", role="agent", sender_name="Anna",
                          attachments=(Attachment("file", "/m/a.pdf", "a.pdf"),))])
    assert [m.text for m in out] == ["one", "two", "three"]
    assert [m.role for m in out] == ["bot", "system", "agent"]
    assert all(m.direction == "out" and m.status == "pending" for m in out)
    assert out[0].buttons == (Button("Yes", "y"),)
    assert out[2].sender_name == "Anna"
    assert out[2].attachments == (Attachment("file", "/m/a.pdf", "a.pdf"),)
    assert out[0].id < out[1].id < out[2].id

    hist = await store.history(cid)
    assert [(m.direction, m.status) for m in hist] == [("in", "processed")] + [("out", "pending")] * 3
    assert await store.load_flow_state(cid) == {"flow": "faq", "slots": {"x": "ü"}}
    assert await store.unprocessed_inbound(cid) == []


async def test_commit_turn_keep_flow_state_and_state_change(store: Store) -> None:
    r = await store.record_inbound(inbound("p1"))
    cid = r.conversation.id
    await store.commit_turn(cid, inbound_id=None, replies=[], flow_state={"flow": "a"})
    await store.commit_turn(cid, inbound_id=None, replies=[], flow_state={"flow": "IGNORED"},
                            keep_flow_state=True, state=ConversationState.WITH_AGENT)
    assert await store.load_flow_state(cid) == {"flow": "a"}
    conv = await store.get_conversation(cid)
    assert conv is not None and conv.state is ConversationState.WITH_AGENT
    await store.commit_turn(cid, inbound_id=None, replies=[], flow_state=None)
    assert await store.load_flow_state(cid) is None
    # an inbound that was not part of the turn stays unprocessed
    assert [m.id for m in await store.unprocessed_inbound(cid)] == [r.message.id]


async def test_commit_turn_on_missing_conversation_writes_nothing(store: Store) -> None:
    r = await store.record_inbound(inbound("p1"))
    with pytest.raises(StoreError, match="no conversation"):
        await store.commit_turn("conv_missing", inbound_id=r.message.id, replies=[Outbound("x")],
                                flow_state={"a": 1}, handoff=spec())
    assert [m.status for m in await store.unprocessed_inbound(r.conversation.id)] == ["received"]
    assert await store.due_outbox(time.time() + 10) == []
    assert await store.list_handoffs(states=["queued", "claimed"]) == []
    # the store is still usable (the failed transaction was rolled back, the lock released)
    await store.commit_turn(r.conversation.id, inbound_id=r.message.id, replies=[], flow_state=None)


async def test_commit_turn_is_atomic_when_the_handoff_message_fails(store: Store) -> None:
    r = await store.record_inbound(inbound("p1"))
    cid = r.conversation.id

    def boom(position: int) -> Outbound:
        raise RuntimeError("template broke")

    bad = HandoffSpec(team="support", reason="r", priority=0, context={}, message=boom)
    with pytest.raises(RuntimeError):
        await store.commit_turn(cid, inbound_id=r.message.id, replies=[Outbound("before")],
                                flow_state={"flow": "x"}, handoff=bad)
    assert await store.active_handoff(cid) is None
    assert [(m.direction, m.status) for m in await store.history(cid)] == [("in", "received")]
    assert await store.load_flow_state(cid) is None
    conv = await store.get_conversation(cid)
    assert conv is not None and conv.state is ConversationState.BOT


# -- outbox -------------------------------------------------------------------


async def _two_conversations(store: Store) -> tuple[str, str, list[int], list[int]]:
    a = await store.record_inbound(inbound("a", ext="A"))
    b = await store.record_inbound(inbound("b", ext="B"))
    ma = [m.id for m in await store.commit_turn(a.conversation.id, inbound_id=None, flow_state=None,
                                                 replies=[Outbound("a1"), Outbound("a2")])]
    mb = [m.id for m in await store.commit_turn(b.conversation.id, inbound_id=None, flow_state=None,
                                                 replies=[Outbound("b1"), Outbound("b2")])]
    return a.conversation.id, b.conversation.id, ma, mb


async def test_due_outbox_returns_only_heads(store: Store) -> None:
    ca, cb, ma, mb = await _two_conversations(store)
    now = time.time() + 1
    items = await store.due_outbox(now)
    assert [i.message.id for i in items] == [ma[0], mb[0]]
    assert [(i.channel, i.external_id, i.attempts) for i in items] == [("webchat", "A", 0), ("webchat", "B", 0)]
    assert [i.message.id for i in await store.due_outbox(now, exclude=[ca])] == [mb[0]]
    assert [i.message.id for i in await store.due_outbox(now, limit=1)] == [ma[0]]


async def test_due_outbox_respects_next_attempt_at(store: Store) -> None:
    await _two_conversations(store)
    assert await store.due_outbox(time.time() - 3600) == []


async def test_head_waiting_for_retry_is_never_overtaken(store: Store) -> None:
    ca, cb, ma, mb = await _two_conversations(store)
    now = time.time() + 1
    await store.mark_retry(ma[0], next_attempt_at=now + 60, error="429 slow down")
    # conversation A yields nothing (a2 must not overtake a1); B is unaffected
    assert [i.message.id for i in await store.due_outbox(now)] == [mb[0]]
    items = await store.due_outbox(now + 61)
    assert [(i.message.id, i.attempts) for i in items] == [(ma[0], 1), (mb[0], 0)]


async def test_next_outbox_due_is_the_earliest_sendable_head(store: Store) -> None:
    assert await store.next_outbox_due() is None
    a = await store.record_inbound(inbound("a"))
    ids = [m.id for m in await store.commit_turn(a.conversation.id, inbound_id=None, flow_state=None,
                                                  replies=[Outbound("1"), Outbound("2")])]
    t = time.time() + 500
    await store.mark_retry(ids[0], next_attempt_at=t, error="e")
    # "2" cannot go before "1", so nothing is due before t
    assert await store.next_outbox_due() == pytest.approx(t, abs=1e-3)


async def test_mark_sent_and_failed(store: Store) -> None:
    ca, cb, ma, mb = await _two_conversations(store)
    now = time.time() + 1
    await store.mark_sent(ma[0], "tg-1")
    await store.mark_failed(mb[0], error="blocked by user")
    items = await store.due_outbox(now)
    assert [i.message.id for i in items] == [ma[1], mb[1]]   # the next message still goes
    hist_a = {m.id: m for m in await store.history(ca)}
    hist_b = {m.id: m for m in await store.history(cb)}
    assert (hist_a[ma[0]].status, hist_a[ma[0]].platform_message_id) == ("sent", "tg-1")
    assert hist_b[mb[0]].status == "failed"
    assert hist_b[mb[1]].status == "pending"
    await store.mark_sent(ma[1], "tg-2")
    await store.mark_sent(mb[1], "tg-3")
    assert await store.due_outbox(now) == []
    assert await store.next_outbox_due() is None


async def test_history_after_id_and_limit(store: Store) -> None:
    r = await store.record_inbound(inbound("p"))
    out = await store.commit_turn(r.conversation.id, inbound_id=None, flow_state=None,
                                  replies=[Outbound(str(i)) for i in range(5)])
    cid = r.conversation.id
    assert [m.text for m in await store.history(cid, limit=2)] == ["3", "4"]   # the latest, in order
    assert [m.text for m in await store.history(cid, after_id=out[2].id)] == ["3", "4"]


# -- handoffs -----------------------------------------------------------------


async def test_commit_turn_with_handoff_spec(store: Store) -> None:
    r = await store.record_inbound(inbound("p1"))
    cid = r.conversation.id
    seen: list[int] = []
    out = await store.commit_turn(cid, inbound_id=r.message.id, replies=[Outbound("Let me check.")],
                                  flow_state={"slots": {"a": 1}}, handoff=spec(seen=seen))
    assert seen == [1]
    assert [m.text for m in out] == ["Let me check.", "You are number 1 for support."]
    conv = await store.get_conversation(cid)
    assert conv is not None and conv.state is ConversationState.WAITING
    h = await store.active_handoff(cid)
    assert h is not None
    assert (h.state, h.team, h.reason, h.priority, h.agent) == ("queued", "support", "asked", 0, None)
    assert h.context == {"slots": {"a": 1}}
    assert await store.queue_position(h.id) == 1
    assert await store.get_handoff(h.id) == h


async def test_handoff_message_gets_the_queue_position(store: Store) -> None:
    seen: list[int] = []
    for ext in ("A", "B", "C"):
        r = await store.record_inbound(inbound(ext, ext=ext))
        await store.commit_turn(r.conversation.id, inbound_id=r.message.id, replies=[], flow_state=None,
                                handoff=spec(seen=seen))
    r = await store.record_inbound(inbound("D", ext="D"))
    await store.commit_turn(r.conversation.id, inbound_id=r.message.id, replies=[], flow_state=None,
                            handoff=spec(team="complaints", seen=seen))
    assert seen == [1, 2, 3, 1]   # positions count per team


async def test_second_handoff_spec_while_active_creates_nothing(store: Store) -> None:
    r = await store.record_inbound(inbound("p1"))
    cid = r.conversation.id
    await store.commit_turn(cid, inbound_id=r.message.id, replies=[], flow_state=None, handoff=spec())
    first = await store.active_handoff(cid)
    r2 = await store.record_inbound(inbound("p2"))
    seen: list[int] = []
    out = await store.commit_turn(cid, inbound_id=r2.message.id, replies=[Outbound("ok")], flow_state=None,
                                  handoff=spec(seen=seen))
    assert seen == []
    assert [m.text for m in out] == ["ok"]
    assert await store.list_handoffs(states=["queued", "claimed", "resolved", "returned"]) == [first]
    # the same for create_handoff: it returns the active one
    again = await store.create_handoff(cid, team="complaints", reason="x")
    assert again == first


async def test_create_handoff_sets_waiting(store: Store) -> None:
    r = await store.record_inbound(inbound("p1"))
    h = await store.create_handoff(r.conversation.id, team="support", reason="r", priority=2, context={"k": "v"})
    assert (h.state, h.priority, h.context) == ("queued", 2, {"k": "v"})
    conv = await store.get_conversation(r.conversation.id)
    assert conv is not None and conv.state is ConversationState.WAITING


async def test_transition_handoff_compare_and_set(store: Store) -> None:
    r = await store.record_inbound(inbound("p1"))
    cid = r.conversation.id
    h = await store.create_handoff(cid, team="support", reason="r")
    ok = await store.transition_handoff(h.id, expected="queued", new="claimed", agent="Anna",
                                        conversation_state=ConversationState.WITH_AGENT,
                                        replies=[Outbound("Anna joined", role="system")])
    assert ok is True
    assert await store.transition_handoff(h.id, expected="queued", new="claimed", agent="Bob",
                                          replies=[Outbound("Bob joined")]) is False
    h2 = await store.get_handoff(h.id)
    assert h2 is not None and (h2.state, h2.agent) == ("claimed", "Anna") and h2.claimed_at is not None
    conv = await store.get_conversation(cid)
    assert conv is not None and conv.state is ConversationState.WITH_AGENT
    # only the winner's message was queued
    assert [m.text for m in await store.history(cid) if m.direction == "out"] == ["Anna joined"]

    # release clears the agent; resolve sets closed_at
    assert await store.transition_handoff(h.id, expected="claimed", new="queued",
                                          conversation_state=ConversationState.WAITING)
    h3 = await store.get_handoff(h.id)
    assert h3 is not None and (h3.state, h3.agent, h3.claimed_at) == ("queued", None, None)
    assert await store.transition_handoff(h.id, expected="queued", new="resolved",
                                          conversation_state=ConversationState.CLOSED,
                                          flow_state={"slots": {}, "flow": None})
    h4 = await store.get_handoff(h.id)
    assert h4 is not None and h4.state == "resolved" and h4.closed_at is not None
    assert await store.active_handoff(cid) is None
    assert await store.load_flow_state(cid) == {"slots": {}, "flow": None}
    assert await store.queue_position(h.id) == 0


async def test_concurrent_claims_exactly_one_wins(store: Store) -> None:
    r = await store.record_inbound(inbound("p1"))
    h = await store.create_handoff(r.conversation.id, team="support", reason="r")
    agents = [f"agent-{i}" for i in range(6)]
    results = await asyncio.gather(*(
        store.transition_handoff(h.id, expected="queued", new="claimed", agent=a,
                                 replies=[Outbound(f"{a} joined")]) for a in agents))
    assert sorted(results) == [False] * 5 + [True]
    winner = agents[results.index(True)]
    got = await store.get_handoff(h.id)
    assert got is not None and got.agent == winner
    assert [m.text for m in await store.history(r.conversation.id) if m.direction == "out"] == [
        f"{winner} joined"]


async def test_desk_alert_fires_once_and_only_while_queued(tmp_path: Path) -> None:
    from datetime import timedelta

    from bot.model import utcnow

    s = await open_store(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    try:
        r = await s.record_inbound(inbound("p1"))
        h = await s.create_handoff(r.conversation.id, team="support", reason="r")
        r2 = await s.record_inbound(inbound("p2", ext="visitor-2"))
        h2 = await s.create_handoff(r2.conversation.id, team="support", reason="r")
        for x in (h, h2):
            await s.save_desk_thread("slack", x.id, channel="C1", ts=f"1.{x.id}", team="support", relayed_upto=0)
        now = utcnow()
        # not due yet: created after the cut-off
        assert await s.claim_desk_alert("slack", h.id, at=now, older_than=now - timedelta(hours=1)) is False
        assert await s.claim_desk_alert("slack", h.id, at=now, older_than=now) is True
        assert await s.claim_desk_alert("slack", h.id, at=now, older_than=now) is False      # once
        # a claim that committed first wins over the timer
        assert await s.transition_handoff(h2.id, expected="queued", new="claimed", agent="Anna")
        assert await s.claim_desk_alert("slack", h2.id, at=now, older_than=now) is False
        assert (await s.desk_thread("slack", h2.id))["alerted_at"] is None
    finally:
        await s.close()
    s = await open_store(f"sqlite:///{tmp_path / 'db.sqlite3'}")       # and across a restart
    try:
        assert await s.claim_desk_alert("slack", h.id, at=utcnow(), older_than=utcnow()) is False
    finally:
        await s.close()


async def test_failed_outbound_and_desk_thread_bookkeeping(store: Store) -> None:
    from datetime import timedelta

    r = await store.record_inbound(inbound("p1"))
    cid = r.conversation.id
    out = await store.commit_turn(cid, inbound_id=r.message.id, replies=[Outbound("a"), Outbound("b")],
                                  flow_state=None)
    await store.mark_failed(out[1].id, error="403 Forbidden: bot was blocked by the user")
    assert await store.failed_outbound(cid, since=out[0].created_at) == [
        (out[1].id, "403 Forbidden: bot was blocked by the user")]
    assert await store.failed_outbound(cid, since=out[1].created_at + timedelta(seconds=1)) == []
    h = await store.create_handoff(cid, team="support", reason="r")
    await store.save_desk_thread("slack", h.id, channel="C1", ts="1.0", team="support", relayed_upto=0)
    await store.update_desk_thread("slack", h.id, card_hash="abc", warned=out[1].id)
    await store.update_desk_thread("slack", h.id, warned=7)
    link = await store.desk_thread("slack", h.id)
    assert link["card_hash"] == "abc" and json.loads(link["warned"]) == [out[1].id, 7]


async def test_queue_position_priority_then_age(store: Store) -> None:
    hs = {}
    for ext, prio in (("old-low", 0), ("mid-high", 5), ("new-low", 0), ("new-high", 5)):
        r = await store.record_inbound(inbound(ext, ext=ext))
        hs[ext] = await store.create_handoff(r.conversation.id, team="support", reason="r", priority=prio)
    r = await store.record_inbound(inbound("other-team", ext="other-team"))
    other = await store.create_handoff(r.conversation.id, team="complaints", reason="r", priority=9)

    positions = {k: await store.queue_position(h.id) for k, h in hs.items()}
    assert positions == {"mid-high": 1, "new-high": 2, "old-low": 3, "new-low": 4}
    assert await store.queue_position(other.id) == 1
    listed = await store.list_handoffs(states=["queued"])
    assert [h.id for h in listed] == [other.id, hs["mid-high"].id, hs["new-high"].id, hs["old-low"].id,
                                      hs["new-low"].id]
    assert [h.id for h in await store.list_handoffs(states=["queued"], team="complaints")] == [other.id]

    # claiming one moves the ones behind it up
    assert await store.transition_handoff(hs["mid-high"].id, expected="queued", new="claimed", agent="A")
    assert await store.queue_position(hs["mid-high"].id) == 0
    assert await store.queue_position(hs["new-high"].id) == 1
    assert await store.queue_position(hs["new-low"].id) == 3
    assert await store.queue_position("ho_missing") == 0


async def test_closed_store_raises_store_error() -> None:
    s = await open_store("sqlite:///:memory:")
    await s.close()
    await s.close()  # idempotent
    with pytest.raises(StoreError):
        await s.get_meta("x")
