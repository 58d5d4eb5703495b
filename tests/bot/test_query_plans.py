"""Every query on the per-message path uses an index, so a message costs the same on a new
database and on one with years of conversations (bench/db_age.py measures it).

The statements are the store's own: the test runs the per-message operations (web-chat hello
and resume, an inbound message and its turn, the outbox, handoffs, tickets, the Telegram
offset) against a migrated database file, records every statement the store executes with its
parameters, and asks SQLite for each one's plan (EXPLAIN QUERY PLAN). A plan that reads a table
whole fails: ``SCAN table``, or a scan of a whole (not partial) index. SEARCH, and scans of
partial indexes (they hold only pending work: the outbox, unanswered messages, open tickets),
pass. A query added to one of these operations is checked without touching this file.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bot.model import ConversationState, Inbound, Outbound
from bot.storage import HandoffSpec, SqliteStore, Ticket, open_store

_TX = ("BEGIN", "COMMIT", "ROLLBACK")


class Recorder:
    """Stands in for the store's sqlite3 connection and records each statement with its parameters
    (the trace callback only gives the statement with the values pasted in, which can pick a
    partial index the real, parameterised statement cannot)."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self._con = con
        self.statements: list[tuple[str, tuple[Any, ...]]] = []

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        self.statements.append((sql, tuple(params)))
        return self._con.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"the store used con.{name}: let Recorder record it too")


def full_scans(con: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()) -> list[str]:
    """The steps of ``sql``'s plan that read a table (or a whole index) from start to end."""
    partial = {name for name, text in con.execute("SELECT name, sql FROM sqlite_master WHERE type='index' "
                                                  "AND sql IS NOT NULL") if " WHERE " in text.upper()}
    steps = [row[3] for row in con.execute("EXPLAIN QUERY PLAN " + sql, params)]
    derived = {s.split()[1] for s in steps if s.startswith(("MATERIALIZE ", "CO-ROUTINE "))}
    bad = []
    for step in steps:
        if not step.startswith("SCAN "):
            continue
        target = step.split()[1]
        if target.startswith("(") or target in derived or re.fullmatch(r"SCAN (\d+ )?CONSTANT ROWS?", step):
            continue                                     # a subquery's own rows or a VALUES list: bounded
        index = re.search(r"USING (?:COVERING )?INDEX (\S+)", step)
        if index and index.group(1) in partial:
            continue
        bad.append(step)
    return bad


async def _per_message_operations(store: SqliteStore) -> None:
    """What the web chat, the Telegram channel, the runtime and delivery do per message (and the
    complaint clocks every minute)."""
    def spec(position_seen: list[int]) -> HandoffSpec:
        def message(position: int) -> Outbound:
            position_seen.append(position)
            return Outbound(f"You are number {position}.")
        return HandoffSpec(team="support", reason="asked", priority=1, context={}, message=message)

    # web chat: hello of a new visitor (no conversation yet), then a message and its turn
    assert await store.latest_conversation("webchat", "v_new") is None
    r = await store.record_inbound(Inbound("webchat", "v_ada", "v_ada:1", "when are you open?"))
    assert (await store.record_inbound(Inbound("webchat", "v_ada", "v_ada:1", "again"))).duplicate
    cid = r.conversation.id
    messages, loaded = await store.turn_start(cid)       # what the runtime reads (bot/runtime.py)
    assert loaded is not None and [m.id for m in messages] == [m.id for m in await store.unprocessed_inbound(cid)]
    for msg in messages:
        assert await store.load_turn(cid) is not None
        out = await store.commit_turn(cid, inbound_id=msg.id, replies=[Outbound("9 to 5")],
                                      flow_state={"flow": "faq"})
    # delivery: the heads of the outbox, one conversation's head, in-flight ones left out
    assert [i.message.id for i in await store.due_outbox(1e12, limit=64)] == [out[0].id]
    assert await store.due_outbox(1e12, limit=1, conversation_id=cid)
    assert await store.due_outbox(1e12, limit=64, exclude=[cid]) == []
    assert await store.next_outbox_due() is not None
    await store.mark_retry(out[0].id, next_attempt_at=0.0, error="timeout")
    await store.mark_sent(out[0].id, "webchat-1")
    assert await store.mark_sent_next(out[0].id, "webchat-1", conversation_id=cid, now=1e12) is None
    # a complaint: ticket, handoff in the same turn as the reply, the queue position
    r2 = await store.record_inbound(Inbound("webchat", "v_ada", "v_ada:2", "I want to complain"))
    ref = f"C-{await store.next_sequence('reference', start=1001)}"
    await store.customer_tickets(r.customer.id, category="shipping")
    await store.create_ticket(Ticket(reference=ref, customer_id=r.customer.id, conversation_id=cid,
                                     status="received", category="shipping", severity="normal",
                                     department="care", team="support", priority=1,
                                     created_at=datetime.now(timezone.utc)))
    assert await store.conversation_ticket(cid) is not None
    # the turn's side effects, kept so that a replayed turn does not repeat them
    assert await store.ticket_by_origin(f"turn:{r2.message.id}") is None
    await store.save_effect(f"turn:{r2.message.id}:create_reference", ref)
    assert await store.get_effect(f"turn:{r2.message.id}:create_reference") == ref
    positions: list[int] = []
    await store.commit_turn(cid, inbound_id=r2.message.id, replies=[Outbound("Sorry!")],
                            flow_state={"flow": "complaint"}, handoff=spec(positions))
    assert positions == [1]
    h = await store.active_handoff(cid)
    assert h is not None and await store.queue_position(h.id) == 1
    # while waiting: the message is kept for the agent, the bot silent
    r3 = await store.record_inbound(Inbound("webchat", "v_ada", "v_ada:3", "hello?"))
    await store.commit_turn(cid, inbound_id=r3.message.id, replies=[], flow_state=None, keep_flow_state=True)
    # web chat: resume (a reload) with the token and the last id seen
    conv = await store.latest_conversation("webchat", "v_ada")
    assert conv is not None and conv.state == ConversationState.WAITING
    assert await store.history(conv.id, after_id=out[0].id, limit=500)
    # the agent claims and answers; the ticket's status and the customer's other tickets
    assert await store.transition_handoff(h.id, expected="queued", new="claimed", agent="Anna Smith",
                                          conversation_state=ConversationState.WITH_AGENT,
                                          replies=[Outbound("Anna here.", role="agent", sender_name="Anna")])
    assert await store.get_ticket(ref) is not None and await store.customer_tickets(r.customer.id)
    # the conversation ends; a later message opens a new one at the same address
    await store.set_conversation_state(cid, ConversationState.CLOSED)
    assert (await store.latest_customer_conversation(r.customer.id)) is not None   # closed: looks for an open one
    await store.record_inbound(Inbound("webchat", "v_ada", "v_ada:4", "hi again"))
    assert (await store.latest_conversation("webchat", "v_ada")).id != cid  # type: ignore[union-attr]
    # Telegram: the polling offset, a new customer with attributes from /start, mark failed
    await store.get_meta("telegram:offset")
    await store.set_meta("telegram:offset", "42")
    t = await store.record_inbound(Inbound("telegram", "12345", "12345:1", "/start", sender_name="Bo",
                                           customer_attributes={"start": "campaign42"}))
    [reply] = await store.commit_turn(t.conversation.id, inbound_id=t.message.id, replies=[Outbound("Hi Bo")],
                                      flow_state={})
    await store.mark_failed(reply.id, error="chat not found")
    assert await store.get_conversation(t.conversation.id) is not None
    assert await store.get_customer(t.customer.id) is not None
    # WhatsApp: the 24-hour window with the message, read per reply; the send's record; statuses
    w = await store.record_inbound(Inbound("whatsapp", "491510", "wamid.IN1", "hi", heard_at=1_790_000_000))
    [wr, wr2] = await store.commit_turn(w.conversation.id, inbound_id=w.message.id, flow_state={},
                                        replies=[Outbound("hello"), Outbound("and more")])
    assert await store.whatsapp_last_inbound("491510") == 1_790_000_000
    await store.whatsapp_apply_status("wamid.OUT2", "failed", error="131026")
    assert (await store.whatsapp_mark_sent_next(wr.id, ["wamid.OUT1"], conversation_id=w.conversation.id,
                                                now=1e12))[0] is not None
    assert (await store.whatsapp_mark_sent_next(wr2.id, ["wamid.OUT2a", "wamid.OUT2"],
                                                conversation_id=w.conversation.id, now=1e12))[1] == "131026"
    await store.whatsapp_note_status("wamid.OUT1", "delivered")     # the connector's, for all but failed
    assert (await store.whatsapp_apply_status("wamid.OUT1", "read"))["outcome"] == "recorded"
    # and every minute, beside the messages: the SLA clocks and due follow-ups
    assert [x.reference for x in await store.open_tickets()] == [ref]
    assert await store.due_followups(datetime.now(timezone.utc)) == []


async def test_no_per_message_query_reads_a_whole_table(tmp_path: Path) -> None:
    db = tmp_path / "o.sqlite3"
    store = await open_store(f"sqlite:///{db}")
    assert isinstance(store, SqliteStore)
    traced: list[str] = []
    try:
        await store.db.set_trace_callback(traced.append)
        recorder = Recorder(store._con)
        store._con = recorder  # type: ignore[assignment]
        await _per_message_operations(store)
    finally:
        await store.close()
    # everything the connection ran went through the recorder (none of it bypassed the check)
    ran = [s for s in traced if not s.startswith(_TX)]
    recorded = [(sql, args) for sql, args in recorder.statements if not sql.startswith(_TX)]
    assert len(ran) == len(recorded) > 40
    con = sqlite3.connect(db)
    try:
        scans = {sql: bad for sql, args in dict(recorded).items() if (bad := full_scans(con, sql, args))}
        assert not scans, "\n".join(f"{sql}\n  -> {bad}" for sql, bad in scans.items())
    finally:
        con.close()


async def test_the_check_sees_a_full_scan(tmp_path: Path) -> None:
    """The checker itself can fail: a table scan and a whole-index scan are caught."""
    db = tmp_path / "o.sqlite3"
    await (await open_store(f"sqlite:///{db}")).close()
    con = sqlite3.connect(db)
    try:
        assert full_scans(con, "SELECT * FROM messages WHERE text=?", ("hi",)) == ["SCAN messages"]
        assert full_scans(con, "SELECT conversation_id FROM messages ORDER BY conversation_id") == [
            "SCAN messages USING COVERING INDEX messages_conversation"]
        # what a web-chat hello asked before schema version 9, without the address index
        con.execute("DROP INDEX conversations_address")
        assert full_scans(con, "SELECT * FROM conversations WHERE channel=? AND external_id=? "
                               "ORDER BY state = 'closed', updated_at DESC LIMIT 1", ("webchat", "v")) == [
            "SCAN conversations"]
        assert full_scans(con, "SELECT * FROM messages WHERE conversation_id=? AND direction='in' "
                               "AND status='received' ORDER BY id", ("c",)) == []
    finally:
        con.close()
