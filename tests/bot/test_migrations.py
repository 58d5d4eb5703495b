"""Upgrading a SQLite database from every earlier schema version.

For each version k < SCHEMA_VERSION: a database is built at version k by applying
MIGRATIONS[:k] by hand, filled with the rows an omnibot of that version wrote (only
the tables and columns that existed then), and opened with SqliteStore, which
migrates it. The old rows must read back through the store API, with the columns
added since at their defaults, and new writes must work.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from bot.errors import StoreError
from bot.model import Button, ConversationState, Inbound, Outbound
from bot.storage import SqliteStore
from bot.storage.sqlite_schema import MIGRATIONS, SCHEMA_VERSION, split_sql

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


# Which migration (1-based: the version it produces) created each table, and each column
# added to a table after it was created. Rows below set a column only from that version on.
TABLE_SINCE = {"meta": 1, "customers": 1, "identities": 1, "conversations": 1, "messages": 1, "handoffs": 1,
               "desk_threads": 2, "seen_events": 2, "tickets": 5, "link_codes": 6, "effects": 8,
               "instances": 11, "leases": 11, "rate_limits": 11, "media": 11,
               "agents": 12, "notes": 13, "desk_reads": 13, "compensations": 13, "audit": 13,
               "flow_versions": 15}
COLUMN_SINCE = {("customers", "attributes"): 3, ("tickets", "sla_alerts"): 7, ("tickets", "origin"): 8,
                ("desk_threads", "card_hash"): 10, ("desk_threads", "warned"): 10,
                ("conversations", "owner"): 11,
                **{("tickets", c): 13 for c in ("review_state", "proposed_result", "proposed_by", "proposed_at",
                                                 "reviewed_by", "reviewed_at", "review_note", "communicated_at")},
                ("handoffs", "cause"): 13, ("conversations", "language"): 14}

# What an omnibot wrote: one customer on Telegram with a conversation in human handoff,
# a processed inbound message, a sent and a pending reply, the Slack card of the handoff,
# a complaint ticket, an unused link code and a flow action's result.
ROWS: list[tuple[str, dict[str, Any]]] = [
    ("meta", {"key": "app_secret", "value": "s3cret"}),
    ("customers", {"id": "cus_1", "display_name": "Ann Lee", "created_at": at(0),
                   "attributes": json.dumps({"start": "campaign42"})}),
    ("identities", {"channel": "telegram", "external_id": "42", "customer_id": "cus_1", "created_at": at(0)}),
    ("conversations", {"id": "conv_1", "customer_id": "cus_1", "channel": "telegram", "external_id": "42",
                       "state": "waiting", "flow_state": json.dumps({"flow": "complaint", "step": 3}),
                       "created_at": at(0), "updated_at": at(2)}),
    ("messages", {"id": 1, "conversation_id": "conv_1", "direction": "in", "role": "customer",
                  "sender_name": "Ann Lee", "text": "my parcel never arrived", "channel": "telegram",
                  "platform_message_id": "tg-1001", "status": "processed", "created_at": at(0)}),
    ("messages", {"id": 2, "conversation_id": "conv_1", "direction": "out", "role": "bot",
                  "text": "Sorry to hear that. Your reference is C-1042.", "channel": "telegram",
                  "platform_message_id": "tg-1002", "status": "sent", "attempts": 1,
                  "buttons": json.dumps([{"title": "Talk to a human", "payload": "/human"}]),
                  "created_at": at(1), "sent_at": at(1)}),
    ("messages", {"id": 3, "conversation_id": "conv_1", "direction": "out", "role": "bot",
                  "text": "You are number 1 in the queue.", "channel": "telegram", "status": "pending",
                  "next_attempt_at": T0.timestamp(), "created_at": at(2)}),
    ("handoffs", {"id": "ho_1", "conversation_id": "conv_1", "state": "queued", "team": "support",
                  "reason": "complaint", "priority": 2, "context": json.dumps({"slots": {"order": "A-77"}}),
                  "created_at": at(2)}),
    ("desk_threads", {"desk": "slack", "handoff_id": "ho_1", "channel": "C01", "ts": "1700000000.000100",
                      "team": "support", "relayed_upto": 2, "created_at": at(2), "card_hash": "abc123",
                      "warned": "[]"}),
    ("seen_events", {"source": "slack", "event_id": "Ev01", "created_at": at(2)}),
    ("tickets", {"reference": "C-1042", "customer_id": "cus_1", "conversation_id": "conv_1",
                 "status": "received", "category": "shipping", "severity": "high", "department": "logistics",
                 "team": "support", "priority": 2, "fields": json.dumps({"order": "A-77"}),
                 "reasons": json.dumps(["rule 2: category shipping"]), "created_at": at(1), "updated_at": at(1),
                 "sla_alerts": json.dumps(["acknowledge:near"]), "origin": "conv_1:1:create_ticket"}),
    ("link_codes", {"code": "LINK-9", "customer_id": "cus_1", "created_at": at(1), "expires_at": at(60 * 24 * 365)}),
    ("effects", {"key": "conv_1:1:lookup_order", "value": json.dumps({"status": "shipped"}), "created_at": at(1)}),
]


def build(path: Path, version: int) -> None:
    """A database at schema ``version``, as the omnibot of that version left it."""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        for script in MIGRATIONS[:version]:
            for stmt in split_sql(script):
                con.execute(stmt)
        con.execute(f"PRAGMA user_version={version}")
        for table, row in ROWS:
            if TABLE_SINCE[table] > version:
                continue
            cols = [c for c in row if COLUMN_SINCE.get((table, c), 0) <= version]
            con.execute(f"INSERT INTO {table}({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                        [row[c] for c in cols])
    finally:
        con.close()


VERSIONS = [pytest.param(k, id=f"from-v{k}") for k in range(SCHEMA_VERSION)]


def test_the_fixture_knows_every_table_and_column() -> None:
    """TABLE_SINCE and COLUMN_SINCE agree with MIGRATIONS (a new migration must extend them)."""
    con = sqlite3.connect(":memory:")
    seen: dict[str, set[str]] = {}
    for version, script in enumerate(MIGRATIONS, start=1):
        for stmt in split_sql(script):
            con.execute(stmt)
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"):
            cols = {r[1] for r in con.execute(f"PRAGMA table_info({table})")}
            if table not in seen:
                assert TABLE_SINCE.get(table) == version, (table, version)
            for col in cols - seen.get(table, cols):
                assert COLUMN_SINCE.get((table, col)) == version, (table, col, version)
            seen[table] = cols
    assert set(seen) == set(TABLE_SINCE)
    # the tables of migrations 11 and 12 start empty on an upgrade (nothing older wrote to them)
    assert {t for t, _ in ROWS} == {t for t, v in TABLE_SINCE.items() if v < 11}


@pytest.mark.parametrize("version", VERSIONS)
async def test_upgrade_keeps_the_data_and_accepts_new_writes(tmp_path: Path, version: int) -> None:
    db = tmp_path / "omnibot.sqlite3"
    build(db, version)
    store = SqliteStore(db)
    await store.open()
    try:
        assert await store.schema_version() == SCHEMA_VERSION
        if version >= 1:
            await _old_rows_read_back(store, version)
        await _new_writes_work(store, version)
    finally:
        await store.close()
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        con.close()


async def _old_rows_read_back(store: SqliteStore, version: int) -> None:
    assert await store.get_meta("app_secret") == "s3cret"

    customer = await store.get_customer("cus_1")
    assert customer is not None
    assert (customer.display_name, customer.created_at) == ("Ann Lee", T0)
    assert customer.attributes == ({"start": "campaign42"} if version >= 3 else {})
    assert await store.identities("cus_1") == [("telegram", "42")]

    conv = await store.get_conversation("conv_1")
    assert conv is not None
    assert (conv.customer_id, conv.channel, conv.external_id, conv.state) == (
        "cus_1", "telegram", "42", ConversationState.WAITING)
    assert (conv.created_at, conv.updated_at) == (T0, T0 + timedelta(minutes=2))
    assert await store.open_conversation("telegram", "42") == conv
    assert await store.latest_conversation("telegram", "42") == conv
    assert await store.load_flow_state("conv_1") == {"flow": "complaint", "step": 3}

    history = await store.history("conv_1")
    assert [(m.id, m.direction, m.role, m.text, m.status) for m in history] == [
        (1, "in", "customer", "my parcel never arrived", "processed"),
        (2, "out", "bot", "Sorry to hear that. Your reference is C-1042.", "sent"),
        (3, "out", "bot", "You are number 1 in the queue.", "pending")]
    assert history[0].sender_name == "Ann Lee" and history[0].platform_message_id == "tg-1001"
    assert history[1].buttons == (Button("Talk to a human", "/human"),)
    assert await store.unprocessed_inbound("conv_1") == []
    outbox = await store.due_outbox(T0.timestamp() + 1)
    assert [(o.message.id, o.channel, o.external_id, o.attempts) for o in outbox] == [(3, "telegram", "42", 0)]

    handoff = await store.get_handoff("ho_1")
    assert handoff is not None
    assert (handoff.state, handoff.team, handoff.reason, handoff.priority, handoff.agent) == (
        "queued", "support", "complaint", 2, None)
    assert handoff.context == {"slots": {"order": "A-77"}}
    assert await store.active_handoff("conv_1") == handoff
    assert await store.queue_position("ho_1") == 1

    if version >= 2:
        thread = await store.desk_thread("slack", "ho_1")
        assert thread is not None
        assert (thread["channel"], thread["ts"], thread["relayed_upto"]) == ("C01", "1700000000.000100", 2)
        assert (thread["card_hash"], thread["warned"]) == (("abc123", "[]") if version >= 10 else (None, "[]"))
        assert await store.desk_thread_by_ts("slack", "C01", "1700000000.000100") == thread
        assert await store.first_seen("slack", "Ev01") is False   # a retry of an event handled before

    if version >= 5:
        ticket = await store.get_ticket("c-1042")
        assert ticket is not None
        assert (ticket.customer_id, ticket.conversation_id, ticket.status, ticket.category, ticket.severity,
                ticket.department, ticket.team, ticket.priority) == (
            "cus_1", "conv_1", "received", "shipping", "high", "logistics", "support", 2)
        assert ticket.fields == {"order": "A-77"} and ticket.reasons == ("rule 2: category shipping",)
        assert ticket.created_at == T0 + timedelta(minutes=1) and ticket.resolved_at is None
        assert ticket.sla_alerts == (("acknowledge:near",) if version >= 7 else ())
        assert ticket.origin == ("conv_1:1:create_ticket" if version >= 8 else None)
        assert await store.conversation_ticket("conv_1") == ticket
        assert [t.reference for t in await store.open_tickets()] == ["C-1042"]
        assert await store.add_sla_alert("C-1042", "resolve:near") is True

    if version >= 6:
        assert await store.redeem_link_code("LINK-9", "cus_1", at=T0 + timedelta(hours=1)) == "cus_1"
        assert await store.redeem_link_code("LINK-9", "cus_1", at=T0 + timedelta(hours=1)) is None  # used once

    if version >= 8:
        assert await store.get_effect("conv_1:1:lookup_order") == {"status": "shipped"}
        assert (await store.ticket_by_origin("conv_1:1:create_ticket")).reference == "C-1042"  # type: ignore[union-attr]


async def _new_writes_work(store: SqliteStore, version: int) -> None:
    old = version >= 1
    res = await store.record_inbound(Inbound(channel="telegram", external_id="42", platform_message_id="tg-2001",
                                             text="any news?", sender_name="Ann Lee",
                                             customer_attributes={"lang": "en"}))
    assert not res.duplicate
    if old:   # the same customer and open conversation as before the upgrade
        assert (res.customer.id, res.conversation.id) == ("cus_1", "conv_1")
        assert res.message.id == 4
        assert res.customer.attributes == ({"start": "campaign42", "lang": "en"} if version >= 3 else {"lang": "en"})
        again = await store.record_inbound(Inbound(channel="telegram", external_id="42",
                                                   platform_message_id="tg-1001", text="my parcel never arrived"))
        assert again.duplicate and again.message.id == 1   # dedupe covers messages stored before it
    assert [m.id for m in await store.unprocessed_inbound(res.conversation.id)] == [res.message.id]

    sent = await store.commit_turn(res.conversation.id, inbound_id=res.message.id,
                                   replies=[Outbound("An agent will answer shortly.")],
                                   flow_state={"flow": "complaint", "step": 4}, keep_flow_state=False)
    assert [m.text for m in sent] == ["An agent will answer shortly."]
    assert await store.unprocessed_inbound(res.conversation.id) == []
    assert await store.load_flow_state(res.conversation.id) == {"flow": "complaint", "step": 4}
    texts = [m.text for m in await store.history(res.conversation.id)]
    assert texts[-2:] == ["any news?", "An agent will answer shortly."]
    assert len(texts) == (5 if old else 2)
    await store.mark_sent(sent[0].id, "tg-2002")
    assert await store.first_seen("slack", "Ev02") is True
    assert await store.next_sequence("ticket") == 1000
    await store.save_effect("conv_1:4:lookup_order", {"status": "delivered"})
    assert await store.get_effect("conv_1:4:lookup_order") == {"status": "delivered"}


async def test_a_newer_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "omnibot.sqlite3"
    build(db, SCHEMA_VERSION)
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    con.execute("CREATE TABLE from_the_future (x INTEGER)")
    con.commit()
    con.close()

    store = SqliteStore(db)
    with pytest.raises(StoreError) as err:
        await store.open()
    assert str(err.value) == (f"database {db} has schema version {SCHEMA_VERSION + 1}, newer than this "
                              f"omnibot ({SCHEMA_VERSION}); upgrade omnibot")
    with pytest.raises(StoreError, match="not open"):
        await store.get_customer("cus_1")   # the refused open left nothing behind

    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION + 1,)
        assert con.execute("SELECT display_name FROM customers").fetchall() == [("Ann Lee",)]
    finally:
        con.close()
