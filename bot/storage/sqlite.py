"""SQLite backend (aiosqlite, WAL, versioned migrations).

One connection, and one asyncio lock around every use of it: aiosqlite runs
statements on a single thread, and a lock keeps one coroutine's transaction
from interleaving with another's statements.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Concatenate, Coroutine, Iterator, Literal, ParamSpec, Sequence, TypeVar

import aiosqlite

from bot.errors import StorageUnavailable, StoreError
from bot.model import Conversation, ConversationState, Customer, Inbound, Message, Outbound, utcnow

from .base import (HandoffRecord, HandoffSpec, InboundResult, OutboxItem, Ticket, TicketChange, TicketFollowedUp,
                   TicketResolved)
from .health import StorageHealth
from .sqlite_rows import (conversation_of, customer_of, handoff_of, iso, message_of, new_id, parse_iso,
                          ticket_of)
from .sqlite_schema import MIGRATIONS, SCHEMA_VERSION, split_sql

log = logging.getLogger(__name__)


# sqlite3 errors that mean "storage can't do it now" rather than "this operation is wrong":
# the primary result codes SQLITE_BUSY, LOCKED, NOMEM, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL.
_UNAVAILABLE_CODES = {5, 6, 7, 8, 10, 13, 14, 15}


# Operations that write: one of them going through means storage works again.
_WRITES = frozenset({
    "probe", "set_meta", "set_meta_if_absent", "next_sequence", "record_inbound", "commit_turn", "mark_sent",
    "mark_retry", "mark_failed", "save_desk_thread", "update_desk_thread", "claim_desk_alert", "first_seen", "set_conversation_state",
    "create_handoff", "transition_handoff", "create_ticket", "resolve_ticket", "record_csat", "reopen_ticket",
    "mark_followed_up", "move_ticket", "create_link_code", "redeem_link_code", "add_sla_alert", "save_effect"})


def _unavailable(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _UNAVAILABLE_CODES
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and any(
        w in text for w in ("locked", "full", "disk i/o", "readonly", "unable to open"))


class _Ops:
    """The store's operations as plain sqlite3 code.

    Each public method runs whole, as one call on aiosqlite's connection thread
    (see :meth:`SqliteStore._run`): one hop per operation instead of one per
    statement, and no interleaving with other operations, since that thread
    runs one call at a time.
    """

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con

    def _one(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Row | None:
        return self.con.execute(sql, args).fetchone()

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self.con.execute(sql, args).fetchall()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self.con.execute("BEGIN IMMEDIATE")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    # -- meta ---------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key=?", (key,))
        return row["value"] if row else None

    def set_meta_if_absent(self, key: str, value: str) -> str:
        with self._tx() as db:
            db.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING",
                             (key, value))
            row = self._one("SELECT value FROM meta WHERE key=?", (key,))
        return row["value"]  # type: ignore[index]

    def set_meta(self, key: str, value: str) -> None:
        self.con.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                         (key, value))

    def probe(self) -> None:
        """A write that needs new pages and the write lock, leaving nothing behind."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('probe', hex(randomblob(8192)))")
            db.execute("DELETE FROM meta WHERE key='probe'")

    def next_sequence(self, name: str, start: int = 1000) -> int:
        key = f"seq:{name}"
        with self._tx() as db:
            db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
                (key, str(start)))
            row = self._one("SELECT value FROM meta WHERE key=?", (key,))
        return int(row["value"])  # type: ignore[index]

    # -- customers and conversations ------------------------------------------

    def record_inbound(self, inbound: Inbound) -> InboundResult:
        """Store a customer message once; a repeat returns the stored one with ``duplicate=True``."""
        now = iso(utcnow())
        with self._tx() as db:
            row = self._one(
                "SELECT * FROM messages WHERE channel=? AND platform_message_id=? AND direction='in'",
                (inbound.channel, inbound.platform_message_id))
            if row is not None:
                conv = self._conversation_row(row["conversation_id"])
                cust = self._customer_row(conv.customer_id)  # type: ignore[union-attr]
                return InboundResult(message_of(row), conv, cust, True)  # type: ignore[arg-type]

            cust_row = self._one(
                "SELECT c.* FROM identities i JOIN customers c ON c.id = i.customer_id "
                "WHERE i.channel=? AND i.external_id=?", (inbound.channel, inbound.external_id))
            if cust_row is None:
                customer_id = new_id("cus")
                db.execute("INSERT INTO customers(id, display_name, created_at) VALUES (?, ?, ?)",
                                 (customer_id, inbound.sender_name, now))
                db.execute("INSERT INTO identities(channel, external_id, customer_id, created_at) "
                                 "VALUES (?, ?, ?, ?)",
                                 (inbound.channel, inbound.external_id, customer_id, now))
                cust_row = self._one("SELECT * FROM customers WHERE id=?", (customer_id,))
            else:
                customer_id = cust_row["id"]
                if inbound.sender_name and not cust_row["display_name"]:
                    db.execute("UPDATE customers SET display_name=? WHERE id=?",
                               (inbound.sender_name, customer_id))
            if inbound.customer_attributes:
                db.execute("UPDATE customers SET attributes=json_patch(attributes, ?) WHERE id=?",
                           (json.dumps(dict(inbound.customer_attributes)), customer_id))
            cust = customer_of(self._one("SELECT * FROM customers WHERE id=?", (customer_id,)))  # type: ignore[arg-type]
            crow = self._one(
                "SELECT * FROM conversations WHERE channel=? AND external_id=? AND state != 'closed'",
                (inbound.channel, inbound.external_id))
            if crow is None:
                crow = self._one(
                    "INSERT INTO conversations(id, customer_id, channel, external_id, state, created_at, "
                    "updated_at) VALUES (?, ?, ?, ?, 'bot', ?, ?) RETURNING *",
                    (new_id("conv"), customer_id, inbound.channel, inbound.external_id, now, now))
            else:
                db.execute("UPDATE conversations SET updated_at=? WHERE id=?", (now, crow["id"]))
            conv = conversation_of(crow)  # type: ignore[arg-type]
            mrow = self._one(
                "INSERT INTO messages(conversation_id, direction, role, sender_name, text, attachments, "
                "channel, platform_message_id, payload, status, created_at) "
                "VALUES (?, 'in', 'customer', ?, ?, ?, ?, ?, ?, 'received', ?) RETURNING *",
                (conv.id, inbound.sender_name, inbound.text,
                 json.dumps([a.to_dict() for a in inbound.attachments]), inbound.channel,
                 inbound.platform_message_id, inbound.payload, now))
        return InboundResult(message_of(mrow), conv, cust, False)  # type: ignore[arg-type]

    def _conversation_row(self, conversation_id: str) -> Conversation | None:
        row = self._one("SELECT * FROM conversations WHERE id=?", (conversation_id,))
        return conversation_of(row) if row else None

    def _customer_row(self, customer_id: str) -> Customer | None:
        row = self._one("SELECT * FROM customers WHERE id=?", (customer_id,))
        return customer_of(row) if row else None

    def latest_conversation(self, channel: str, external_id: str) -> Conversation | None:
        """The open conversation at this address, else the most recent closed one."""
        row = self._one(
            "SELECT * FROM conversations WHERE channel=? AND external_id=? "
            "ORDER BY state = 'closed', updated_at DESC LIMIT 1", (channel, external_id))
        return conversation_of(row) if row else None

    def identities(self, customer_id: str) -> list[tuple[str, str]]:
        rows = self._all("SELECT channel, external_id FROM identities WHERE customer_id=? "
                               "ORDER BY created_at", (customer_id,))
        return [(r["channel"], r["external_id"]) for r in rows]

    def load_turn(self, conversation_id: str) -> tuple[Conversation, Customer, dict[str, Any] | None] | None:
        """What a turn needs, in one read: the conversation, its customer and the flow state."""
        row = self._one("SELECT c.*, u.display_name AS u_name, u.created_at AS u_created, "
                        "u.attributes AS u_attributes FROM conversations c "
                        "JOIN customers u ON u.id = c.customer_id WHERE c.id=?", (conversation_id,))
        if row is None:
            return None
        customer = Customer(row["customer_id"], row["u_name"], parse_iso(row["u_created"]),  # type: ignore[arg-type]
                            json.loads(row["u_attributes"] or "{}"))
        state = json.loads(row["flow_state"]) if row["flow_state"] else None
        return conversation_of(row), customer, state

    # -- desks outside the bot (Slack) ----------------------------------------

    def desk_thread(self, desk: str, handoff_id: str) -> dict[str, Any] | None:
        row = self._one("SELECT * FROM desk_threads WHERE desk=? AND handoff_id=?", (desk, handoff_id))
        return dict(row) if row else None

    def desk_thread_by_ts(self, desk: str, channel: str, ts: str) -> dict[str, Any] | None:
        row = self._one("SELECT * FROM desk_threads WHERE desk=? AND channel=? AND ts=?", (desk, channel, ts))
        return dict(row) if row else None

    def save_desk_thread(self, desk: str, handoff_id: str, *, channel: str, ts: str, team: str,
                         relayed_upto: int) -> None:
        """Remember (or move) the card of a handoff."""
        self.con.execute(
            "INSERT INTO desk_threads(desk, handoff_id, channel, ts, team, relayed_upto, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(desk, handoff_id) DO UPDATE SET channel=excluded.channel, "
            "ts=excluded.ts, team=excluded.team, relayed_upto=excluded.relayed_upto, alerted_at=NULL, card_hash=NULL",
            (desk, handoff_id, channel, ts, team, relayed_upto, iso(utcnow())))

    def update_desk_thread(self, desk: str, handoff_id: str, *, relayed_upto: int | None = None,
                           alerted_at: datetime | None = None, card_hash: str | None = None,
                           warned: int | None = None) -> None:
        if card_hash is not None:
            self.con.execute("UPDATE desk_threads SET card_hash=? WHERE desk=? AND handoff_id=?",
                             (card_hash, desk, handoff_id))
        if warned is not None:
            self.con.execute("UPDATE desk_threads SET warned=json_insert(warned, '$[#]', ?) "
                             "WHERE desk=? AND handoff_id=?", (warned, desk, handoff_id))
        if relayed_upto is not None:
            self.con.execute("UPDATE desk_threads SET relayed_upto=MAX(relayed_upto, ?) WHERE desk=? AND handoff_id=?",
                             (relayed_upto, desk, handoff_id))
        if alerted_at is not None:
            self.con.execute("UPDATE desk_threads SET alerted_at=? WHERE desk=? AND handoff_id=?",
                             (iso(alerted_at), desk, handoff_id))

    def claim_desk_alert(self, desk: str, handoff_id: str, *, at: datetime, older_than: datetime) -> bool:
        """Record that the unclaimed-handoff alert fires now; True only if the handoff is still
        queued, was created before ``older_than`` and had no alert yet (one statement, so a
        claim that committed first wins, and the alert fires once, across restarts)."""
        cur = self.con.execute(
            "UPDATE desk_threads SET alerted_at=? WHERE desk=? AND handoff_id=? AND alerted_at IS NULL "
            "AND EXISTS (SELECT 1 FROM handoffs WHERE id=? AND state='queued' AND created_at <= ?)",
            (iso(at), desk, handoff_id, handoff_id, iso(older_than)))
        return cur.rowcount == 1

    def failed_outbound(self, conversation_id: str, *, since: datetime) -> list[tuple[int, str]]:
        """Outbound messages of a conversation created since ``since`` that failed for good:
        (id, reason), oldest first."""
        rows = self._all("SELECT id, last_error FROM messages WHERE conversation_id=? AND created_at >= ? "
                         "AND direction='out' AND status='failed' ORDER BY id", (conversation_id, iso(since)))
        return [(r["id"], r["last_error"] or "") for r in rows]

    def first_seen(self, source: str, event_id: str) -> bool:
        """Record a platform event id; False if it was seen before (a retry)."""
        cur = self.con.execute("INSERT INTO seen_events(source, event_id, created_at) VALUES (?, ?, ?) "
                               "ON CONFLICT DO NOTHING", (source, event_id, iso(utcnow())))
        return cur.rowcount == 1

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        return self._conversation_row(conversation_id)

    def get_customer(self, customer_id: str) -> Customer | None:
        return self._customer_row(customer_id)

    def open_conversation(self, channel: str, external_id: str) -> Conversation | None:
        row = self._one(
            "SELECT * FROM conversations WHERE channel=? AND external_id=? AND state != 'closed'",
            (channel, external_id))
        return conversation_of(row) if row else None

    def customer_conversations(self, customer_id: str) -> list[Conversation]:
        rows = self._all("SELECT * FROM conversations WHERE customer_id=? ORDER BY created_at",
                               (customer_id,))
        return [conversation_of(r) for r in rows]

    def set_conversation_state(self, conversation_id: str, state: ConversationState) -> None:
        db = self.con
        db.execute("UPDATE conversations SET state=?, updated_at=? WHERE id=?",
                         (state.value, iso(utcnow()), conversation_id))

    # -- messages -----------------------------------------------------------

    def history(self, conversation_id: str, *, after_id: int = 0, limit: int = 200) -> list[Message]:
        rows = self._all(
            "SELECT * FROM (SELECT * FROM messages WHERE conversation_id=? AND id>? "
            "ORDER BY id DESC LIMIT ?) ORDER BY id", (conversation_id, after_id, limit))
        return [message_of(r) for r in rows]

    def unprocessed_inbound(self, conversation_id: str) -> list[Message]:
        rows = self._all(
            "SELECT * FROM messages WHERE conversation_id=? AND direction='in' AND status='received' "
            "ORDER BY id", (conversation_id,))
        return [message_of(r) for r in rows]

    def conversations_with_unprocessed(self) -> list[str]:
        rows = self._all(
            "SELECT conversation_id, MIN(id) AS first FROM messages "
            "WHERE direction='in' AND status='received' GROUP BY conversation_id ORDER BY first")
        return [r["conversation_id"] for r in rows]

    def load_flow_state(self, conversation_id: str) -> dict[str, Any] | None:
        row = self._one("SELECT flow_state FROM conversations WHERE id=?", (conversation_id,))
        return json.loads(row["flow_state"]) if row and row["flow_state"] else None

    def commit_turn(self, conversation_id: str, *, inbound_id: int | None,
                          replies: Sequence[Outbound], flow_state: dict[str, Any] | None,
                          state: ConversationState | None = None,
                          keep_flow_state: bool = False,
                          handoff: HandoffSpec | None = None,
                          ticket: TicketChange | None = None) -> list[Message]:
        """Write a turn atomically: replies into the outbox, the flow state, the inbound marked processed.

        Args:
            conversation_id: the conversation.
            inbound_id: the inbound message this turn answers (marked processed), or None.
            replies: messages to queue for sending, in order.
            flow_state: the engine's new state (ignored when ``keep_flow_state``).
            state: a new conversation state, if it changes.
            keep_flow_state: leave the stored flow state as it is.
            handoff: queue the conversation for a human in the same transaction;
                ``handoff.message(position)`` makes the reply that tells the customer.
            ticket: a change to a ticket that these replies tell the customer about (its
                follow-up asked, or its resolution), written in the same transaction, so the
                customer is told exactly once; see :class:`TicketResolved`.
        """
        now = utcnow()
        ids: list[int] = []
        with self._tx() as db:
            crow = self._one("SELECT channel FROM conversations WHERE id=?", (conversation_id,))
            if crow is None:
                raise StoreError(f"no conversation {conversation_id}")
            replies = list(replies)
            if handoff is not None:
                hrow = self._one("SELECT * FROM handoffs WHERE conversation_id=? "
                                       "AND state IN ('queued','claimed')", (conversation_id,))
                if hrow is None:
                    hid = new_id("ho")
                    db.execute(
                        "INSERT INTO handoffs(id, conversation_id, state, team, reason, priority, context, "
                        "created_at) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?)",
                        (hid, conversation_id, handoff.team, handoff.reason, handoff.priority,
                         json.dumps(handoff.context), iso(now)))
                    state = ConversationState.WAITING
                    position = self._position(hid)
                    replies.append(handoff.message(position))
            ids = self._insert_outbound(db, conversation_id, crow["channel"], replies, now)
            if inbound_id is not None:
                db.execute("UPDATE messages SET status='processed' WHERE id=? AND direction='in'",
                                 (inbound_id,))
            sets, args = ["updated_at=?"], [iso(now)]
            if not keep_flow_state:
                sets.append("flow_state=?")
                args.append(json.dumps(flow_state) if flow_state is not None else None)
            if state is not None:
                sets.append("state=?")
                args.append(state.value)
            db.execute(f"UPDATE conversations SET {', '.join(sets)} WHERE id=?",
                             (*args, conversation_id))
            if isinstance(ticket, TicketFollowedUp):
                db.execute("UPDATE tickets SET followed_up_at=?, updated_at=? WHERE reference=?",
                           (iso(now), iso(now), ticket.reference))
            elif isinstance(ticket, TicketResolved):
                if not self._resolve(ticket.reference, at=ticket.at, agent=ticket.agent, result=ticket.result,
                                     follow_up_at=ticket.follow_up_at):
                    raise StoreError(f"{ticket.reference} is already resolved")
            return self._messages_by_id(ids)

    def _insert_outbound(self, db: sqlite3.Connection, conversation_id: str, channel: str,
                               replies: Sequence[Outbound], now: datetime) -> list[int]:
        ids: list[int] = []
        for r in replies:
            cur = db.execute(
                "INSERT INTO messages(conversation_id, direction, role, sender_name, text, attachments, "
                "buttons, channel, status, next_attempt_at, created_at) "
                "VALUES (?, 'out', ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                (conversation_id, r.role, r.sender_name, r.text,
                 json.dumps([a.to_dict() for a in r.attachments]),
                 json.dumps([{"title": b.title, "payload": b.payload} for b in r.buttons]),
                 channel, now.timestamp(), iso(now)))
            ids.append(cur.lastrowid)  # type: ignore[arg-type]
        return ids

    def _messages_by_id(self, ids: Sequence[int]) -> list[Message]:
        if not ids:
            return []
        rows = self._all(f"SELECT * FROM messages WHERE id IN ({','.join('?' * len(ids))}) ORDER BY id",
                               list(ids))
        return [message_of(r) for r in rows]

    # -- outbox -------------------------------------------------------------

    def due_outbox(self, now: float, *, limit: int = 100, exclude: Sequence[str] = (),
                   conversation_id: str | None = None) -> list[OutboxItem]:
        """The oldest pending message of each conversation (or of one), if it is due.

        Only the head of each conversation is returned, so a message never
        overtakes an earlier one that is waiting for a retry.
        """
        excl = f"AND m.conversation_id NOT IN ({','.join('?' * len(exclude))})" if exclude else ""
        one = "AND conversation_id = ?" if conversation_id else ""
        rows = self._all(
            "SELECT m.*, c.external_id AS c_external_id FROM messages m "
            "JOIN conversations c ON c.id = m.conversation_id "
            "WHERE m.id IN (SELECT MIN(id) FROM messages WHERE direction='out' AND status='pending' "
            f"{one} GROUP BY conversation_id) AND m.next_attempt_at <= ? "
            f"{excl} ORDER BY m.id LIMIT ?",
            (*([conversation_id] if conversation_id else []), now, *exclude, limit))
        return [OutboxItem(message_of(r), r["channel"], r["c_external_id"], r["attempts"]) for r in rows]

    def next_outbox_due(self) -> float | None:
        """When the next head of a conversation's outbox is due (later messages wait for their head)."""
        row = self._one("SELECT MIN(next_attempt_at) AS t FROM messages "
                              "WHERE id IN (SELECT MIN(id) FROM messages WHERE direction='out' "
                              "AND status='pending' GROUP BY conversation_id)")
        return row["t"] if row and row["t"] is not None else None

    def mark_sent(self, message_id: int, platform_message_id: str) -> None:
        db = self.con
        db.execute("UPDATE messages SET status='sent', platform_message_id=?, sent_at=?, "
                         "attempts=attempts+1, last_error=NULL WHERE id=?",
                         (platform_message_id, iso(utcnow()), message_id))

    def mark_retry(self, message_id: int, *, next_attempt_at: float, error: str) -> None:
        db = self.con
        db.execute("UPDATE messages SET attempts=attempts+1, next_attempt_at=?, last_error=? "
                         "WHERE id=?", (next_attempt_at, error[:500], message_id))

    def mark_failed(self, message_id: int, *, error: str) -> None:
        db = self.con
        db.execute("UPDATE messages SET status='failed', attempts=attempts+1, last_error=? "
                         "WHERE id=?", (error[:500], message_id))

    # -- tickets ------------------------------------------------------------

    def create_ticket(self, ticket: Ticket) -> Ticket:
        """Store a new ticket; one with the ``origin`` of a stored ticket returns that one instead."""
        with self._tx() as db:
            if ticket.origin is not None:
                row = self._one("SELECT * FROM tickets WHERE origin=?", (ticket.origin,))
                if row is not None:
                    return ticket_of(row)
            db.execute(
                "INSERT INTO tickets(reference, customer_id, conversation_id, status, category, severity, "
                "department, team, priority, fields, reasons, created_at, updated_at, origin) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (ticket.reference, ticket.customer_id, ticket.conversation_id, ticket.status, ticket.category,
                 ticket.severity, ticket.department, ticket.team, ticket.priority,
                 json.dumps(ticket.fields, default=str), json.dumps(list(ticket.reasons)),
                 iso(ticket.created_at), iso(ticket.created_at), ticket.origin))
        return ticket

    def ticket_by_origin(self, origin: str) -> Ticket | None:
        row = self._one("SELECT * FROM tickets WHERE origin=?", (origin,))
        return ticket_of(row) if row else None

    def get_effect(self, key: str) -> Any:
        """What the side effect keyed ``key`` returned when it ran, or None if it never ran."""
        row = self._one("SELECT value FROM effects WHERE key=?", (key,))
        return json.loads(row["value"]) if row else None

    def save_effect(self, key: str, value: Any) -> None:
        self.con.execute("INSERT INTO effects(key, value, created_at) VALUES (?, ?, ?) "
                         "ON CONFLICT(key) DO NOTHING", (key, json.dumps(value, default=str), iso(utcnow())))

    def get_ticket(self, reference: str) -> Ticket | None:
        row = self._one("SELECT * FROM tickets WHERE reference=?", (reference.upper(),))
        return ticket_of(row) if row else None

    def customer_tickets(self, customer_id: str, *, category: str | None = None) -> list[Ticket]:
        """A customer's tickets, newest first (optionally of one category)."""
        q, args = "SELECT * FROM tickets WHERE customer_id=?", [customer_id]
        if category is not None:
            q += " AND category=?"
            args.append(category)
        return [ticket_of(r) for r in self._all(q + " ORDER BY created_at DESC, reference DESC", args)]

    def resolve_ticket(self, reference: str, *, at: datetime, agent: str | None,
                       result: str | None, follow_up_at: datetime | None = None) -> Ticket | None:
        with self._tx():
            self._resolve(reference, at=at, agent=agent, result=result, follow_up_at=follow_up_at)
        return self.get_ticket(reference)

    def _resolve(self, reference: str, *, at: datetime, agent: str | None, result: str | None,
                 follow_up_at: datetime | None) -> bool:
        """Mark an open ticket resolved (inside a transaction); False if it was not open."""
        cur = self.con.execute("UPDATE tickets SET status='resolved', resolved_at=?, resolved_by=?, result=?, "
                               "followup_due_at=?, followed_up_at=NULL, updated_at=? "
                               "WHERE reference=? AND resolved_at IS NULL",
                               (iso(at), agent, result, iso(follow_up_at), iso(at), reference))
        return cur.rowcount == 1

    def reopen_ticket(self, reference: str, *, at: datetime) -> Ticket | None:
        with self._tx() as db:
            db.execute("UPDATE tickets SET status='reopened', resolved_at=NULL, followup_due_at=NULL, "
                       "reopened=reopened+1, updated_at=? WHERE reference=? AND resolved_at IS NOT NULL",
                       (iso(at), reference))
        return self.get_ticket(reference)

    def open_tickets(self) -> list[Ticket]:
        return [ticket_of(r) for r in self._all("SELECT * FROM tickets WHERE resolved_at IS NULL "
                                              "ORDER BY priority DESC, created_at")]

    def add_sla_alert(self, reference: str, alert: str) -> bool:
        """Record ``alert`` ("resolve:breached", ...) for the ticket; False if it was raised before."""
        with self._tx() as db:
            row = self._one("SELECT sla_alerts FROM tickets WHERE reference=?", (reference,))
            if row is None:
                return False
            alerts = json.loads(row["sla_alerts"] or "[]")
            if alert in alerts:
                return False
            db.execute("UPDATE tickets SET sla_alerts=? WHERE reference=?", (json.dumps(alerts + [alert]), reference))
        return True

    def move_ticket(self, reference: str, *, conversation_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE tickets SET conversation_id=? WHERE reference=?", (conversation_id, reference))

    def due_followups(self, now: datetime, *, limit: int = 100) -> list[Ticket]:
        """Resolved tickets whose follow-up question is due and not yet asked, oldest first."""
        rows = self._all("SELECT * FROM tickets WHERE followed_up_at IS NULL AND resolved_at IS NOT NULL "
                         "AND followup_due_at <= ? ORDER BY followup_due_at LIMIT ?", (iso(now), limit))
        return [ticket_of(r) for r in rows]

    def mark_followed_up(self, reference: str, *, at: datetime) -> None:
        with self._tx() as db:
            db.execute("UPDATE tickets SET followed_up_at=?, updated_at=? WHERE reference=?",
                       (iso(at), iso(at), reference))

    def latest_customer_conversation(self, customer_id: str) -> Conversation | None:
        """Where the customer wrote last (an open conversation at that address if there is one)."""
        row = self._one("SELECT * FROM conversations WHERE customer_id=? ORDER BY updated_at DESC, "
                        "created_at DESC LIMIT 1", (customer_id,))
        if row is None:
            return None
        if row["state"] == "closed":
            open_row = self._one("SELECT * FROM conversations WHERE channel=? AND external_id=? "
                                 "AND state != 'closed'", (row["channel"], row["external_id"]))
            row = open_row or row
        return conversation_of(row)

    def record_csat(self, reference: str, *, score: int, comment: str | None, at: datetime) -> Ticket | None:
        with self._tx() as db:
            db.execute("UPDATE tickets SET csat=?, csat_comment=?, csat_at=?, updated_at=? WHERE reference=?",
                       (score, comment, iso(at), iso(at), reference))
        return self.get_ticket(reference)

    def conversation_ticket(self, conversation_id: str) -> Ticket | None:
        """The newest unresolved ticket opened in this conversation."""
        row = self._one("SELECT * FROM tickets WHERE conversation_id=? AND resolved_at IS NULL "
                        "ORDER BY created_at DESC, reference DESC LIMIT 1", (conversation_id,))
        return ticket_of(row) if row else None

    # -- linking a customer's identities -------------------------------------

    def create_link_code(self, customer_id: str, code: str, *, at: datetime, expires_at: datetime) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM link_codes WHERE customer_id=? AND used_at IS NULL", (customer_id,))
            db.execute("INSERT INTO link_codes(code, customer_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
                       (code, customer_id, iso(at), iso(expires_at)))

    def redeem_link_code(self, code: str, customer_id: str, *, at: datetime) -> str | None:
        """Use a valid code (once, before it expires) from another customer record: that record
        (the code's owner) absorbs ``customer_id`` -- identities, conversations, tickets. Returns
        the surviving customer id, or None for an unknown, used or expired code."""
        with self._tx() as db:
            row = self._one("SELECT * FROM link_codes WHERE code=? AND used_at IS NULL AND expires_at > ?",
                            (code, iso(at)))
            if row is None:
                return None
            keep = row["customer_id"]
            db.execute("UPDATE link_codes SET used_at=? WHERE code=?", (iso(at), code))
            if keep == customer_id:
                return keep
            for table in ("identities", "conversations", "tickets", "link_codes"):
                db.execute(f"UPDATE {table} SET customer_id=? WHERE customer_id=?", (keep, customer_id))
            gone = self._one("SELECT * FROM customers WHERE id=?", (customer_id,))
            if gone is not None:
                db.execute("UPDATE customers SET attributes=json_patch(?, attributes), "
                           "display_name=CASE WHEN display_name='' THEN ? ELSE display_name END WHERE id=?",
                           (gone["attributes"] or "{}", gone["display_name"], keep))
                db.execute("DELETE FROM customers WHERE id=?", (customer_id,))
            return keep

    # -- handoffs -----------------------------------------------------------

    def create_handoff(self, conversation_id: str, *, team: str, reason: str,
                             priority: int = 0, context: dict[str, Any] | None = None) -> HandoffRecord:
        hid = new_id("ho")
        now = iso(utcnow())
        with self._tx() as db:
            existing = self._one(
                "SELECT * FROM handoffs WHERE conversation_id=? AND state IN ('queued','claimed')",
                (conversation_id,))
            if existing is not None:
                return handoff_of(existing)
            db.execute(
                "INSERT INTO handoffs(id, conversation_id, state, team, reason, priority, context, created_at) "
                "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?)",
                (hid, conversation_id, team, reason, priority, json.dumps(context or {}), now))
            db.execute("UPDATE conversations SET state='waiting', updated_at=? WHERE id=?",
                             (now, conversation_id))
            row = self._one("SELECT * FROM handoffs WHERE id=?", (hid,))
        return handoff_of(row)  # type: ignore[arg-type]

    def get_handoff(self, handoff_id: str) -> HandoffRecord | None:
        row = self._one("SELECT * FROM handoffs WHERE id=?", (handoff_id,))
        return handoff_of(row) if row else None

    def active_handoff(self, conversation_id: str) -> HandoffRecord | None:
        row = self._one("SELECT * FROM handoffs WHERE conversation_id=? "
                              "AND state IN ('queued','claimed')", (conversation_id,))
        return handoff_of(row) if row else None

    def latest_handoff(self, conversation_id: str) -> HandoffRecord | None:
        row = self._one("SELECT * FROM handoffs WHERE conversation_id=? ORDER BY created_at DESC, rowid DESC "
                        "LIMIT 1", (conversation_id,))
        return handoff_of(row) if row else None

    def list_handoffs(self, *, states: Sequence[str], team: str | None = None) -> list[HandoffRecord]:
        q = f"SELECT * FROM handoffs WHERE state IN ({','.join('?' * len(states))})"
        args: list[Any] = list(states)
        if team:
            q += " AND team=?"
            args.append(team)
        q += " ORDER BY priority DESC, created_at, id"
        rows = self._all(q, args)
        return [handoff_of(r) for r in rows]

    def transition_handoff(self, handoff_id: str, *, expected: str, new: str,
                                 agent: str | None = None, team: str | None = None,
                                 conversation_state: ConversationState | None = None,
                                 replies: Sequence[Outbound] = (),
                                 flow_state: dict[str, Any] | None = None) -> bool:
        """Compare-and-set the handoff's state; False if it was no longer ``expected``.

        ``replies`` (what the customer is told) and ``flow_state`` are written in
        the same transaction, so the state and the message never disagree.
        """
        now_dt = utcnow()
        now = iso(now_dt)
        sets = ["state=?"]
        args: list[Any] = [new]
        if new == "claimed":
            sets += ["agent=?", "claimed_at=?"]
            args += [agent, now]
        elif new == "queued":
            sets += ["agent=NULL", "claimed_at=NULL"]
        elif new in ("resolved", "returned"):
            sets += ["closed_at=?"]
            args += [now]
        if team:
            sets.append("team=?")
            args.append(team)
        with self._tx() as db:
            cur = db.execute(f"UPDATE handoffs SET {', '.join(sets)} WHERE id=? AND state=?",
                                   (*args, handoff_id, expected))
            if cur.rowcount != 1:
                return False
            crow = self._one("SELECT c.id, c.channel FROM conversations c JOIN handoffs h "
                                   "ON h.conversation_id = c.id WHERE h.id=?", (handoff_id,))
            if conversation_state is not None:
                db.execute("UPDATE conversations SET state=?, updated_at=? WHERE id=?",
                                 (conversation_state.value, now, crow["id"]))
            if flow_state is not None:
                db.execute("UPDATE conversations SET flow_state=? WHERE id=?",
                                 (json.dumps(flow_state), crow["id"]))
            if replies:
                self._insert_outbound(db, crow["id"], crow["channel"], replies, now_dt)
        return True

    def queue_position(self, handoff_id: str) -> int:
        """1-based place among queued handoffs of the same team (0 if not queued)."""
        return self._position(handoff_id)

    def _position(self, handoff_id: str) -> int:
        me = self._one("SELECT * FROM handoffs WHERE id=?", (handoff_id,))
        if me is None or me["state"] != "queued":
            return 0
        row = self._one(
            "SELECT COUNT(*) AS n FROM handoffs WHERE state='queued' AND team=? AND "
            "(priority > ? OR (priority = ? AND (created_at < ? OR (created_at = ? AND id <= ?))))",
            (me["team"], me["priority"], me["priority"], me["created_at"], me["created_at"], me["id"]))
        return int(row["n"])  # type: ignore[index]


P = ParamSpec("P")
R = TypeVar("R")


def _on_db_thread(op: Callable[Concatenate[_Ops, P], R]) -> Callable[Concatenate[SqliteStore, P], Coroutine[Any, Any, R]]:
    """The store's async method for ``op``: run it whole on aiosqlite's thread (see ``_run``)."""
    name = op.__name__

    async def call(self: SqliteStore, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._run(name, *args, **kwargs)  # type: ignore[no-any-return]

    call.__name__ = call.__qualname__ = name
    call.__doc__ = op.__doc__
    return call


class SqliteStore:
    """The embedded default store.

    Args:
        path: database file, or ``:memory:``.
        synchronous: SQLite ``synchronous`` pragma. ``normal`` (default) keeps
            every committed transaction across a process crash; ``full`` also
            across a power loss, at the cost of an fsync per commit.
    """

    def __init__(self, path: str | os.PathLike[str], *,
                 synchronous: Literal["normal", "full"] = "normal") -> None:
        self.path = str(path)
        self.synchronous = synchronous
        self._db: aiosqlite.Connection | None = None
        self._ops: _Ops | None = None
        self.health = StorageHealth()

    # -- life cycle ---------------------------------------------------------

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        self._db.row_factory = aiosqlite.Row
        try:
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            await self._db.execute("PRAGMA foreign_keys=ON")
            await self._db.execute("PRAGMA busy_timeout=5000")
            await self.migrate()
            self._ops = _Ops(self._db._conn)
        except BaseException:
            # A refused or failed open must not leave the connection (and its thread) behind.
            db, self._db = self._db, None
            await db.close()
            raise

    async def close(self) -> None:
        if self._db is not None:
            db, self._db, self._ops = self._db, None, None
            await db.close()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("store is not open")
        return self._db

    async def schema_version(self) -> int:
        async with self.db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0])

    async def migrate(self) -> None:
        """Apply every migration past the database's ``user_version``, each in its own transaction."""
        current = await self.schema_version()
        if current > SCHEMA_VERSION:
            raise StoreError(f"database {self.path} has schema version {current}, newer than this "
                             f"omnibot ({SCHEMA_VERSION}); upgrade omnibot")
        for version in range(current, SCHEMA_VERSION):
            log.info("migrating %s to schema version %d", self.path, version + 1)
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                for stmt in split_sql(MIGRATIONS[version]):
                    await self.db.execute(stmt)
                await self.db.execute(f"PRAGMA user_version={version + 1}")
                await self.db.execute("COMMIT")
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise

    # -- helpers ------------------------------------------------------------

    async def _run(self, operation: str, *args: Any, **kwargs: Any) -> Any:
        db = self.db   # raises StoreError when closed
        # aiosqlite's own way to run a callable on its connection thread. It is not
        # public API (hence the version pin in pyproject.toml); the storage tests
        # exercise every operation through it.
        try:
            result = await db._execute(getattr(self._ops, operation), *args, **kwargs)
        except sqlite3.Error as exc:
            if _unavailable(exc):
                self.health.failed(operation, exc)
                raise StorageUnavailable(f"{operation}: {exc}") from exc
            raise
        if self.health.failing and operation in _WRITES:
            self.health.succeeded()
        return result

    async def probe(self) -> bool:
        """Try one small write that needs free space and the write lock; True if it went through.

        The runtime's recovery sweep calls it while storage is failing and nothing else is
        waiting to be written, so that ``/readyz`` turns back to ``ok`` on its own.
        """
        try:
            await self._run("probe")
        except StorageUnavailable:
            return False
        return True

    # -- the operations (each runs whole on the connection's thread; see _Ops) --------

    set_meta = _on_db_thread(_Ops.set_meta)
    desk_thread = _on_db_thread(_Ops.desk_thread)
    desk_thread_by_ts = _on_db_thread(_Ops.desk_thread_by_ts)
    save_desk_thread = _on_db_thread(_Ops.save_desk_thread)
    update_desk_thread = _on_db_thread(_Ops.update_desk_thread)
    first_seen = _on_db_thread(_Ops.first_seen)
    claim_desk_alert = _on_db_thread(_Ops.claim_desk_alert)
    failed_outbound = _on_db_thread(_Ops.failed_outbound)
    load_turn = _on_db_thread(_Ops.load_turn)
    get_meta = _on_db_thread(_Ops.get_meta)
    set_meta_if_absent = _on_db_thread(_Ops.set_meta_if_absent)
    next_sequence = _on_db_thread(_Ops.next_sequence)
    record_inbound = _on_db_thread(_Ops.record_inbound)
    latest_conversation = _on_db_thread(_Ops.latest_conversation)
    identities = _on_db_thread(_Ops.identities)
    get_conversation = _on_db_thread(_Ops.get_conversation)
    get_customer = _on_db_thread(_Ops.get_customer)
    open_conversation = _on_db_thread(_Ops.open_conversation)
    customer_conversations = _on_db_thread(_Ops.customer_conversations)
    set_conversation_state = _on_db_thread(_Ops.set_conversation_state)
    history = _on_db_thread(_Ops.history)
    unprocessed_inbound = _on_db_thread(_Ops.unprocessed_inbound)
    conversations_with_unprocessed = _on_db_thread(_Ops.conversations_with_unprocessed)
    load_flow_state = _on_db_thread(_Ops.load_flow_state)
    commit_turn = _on_db_thread(_Ops.commit_turn)
    due_outbox = _on_db_thread(_Ops.due_outbox)
    next_outbox_due = _on_db_thread(_Ops.next_outbox_due)
    mark_sent = _on_db_thread(_Ops.mark_sent)
    mark_retry = _on_db_thread(_Ops.mark_retry)
    mark_failed = _on_db_thread(_Ops.mark_failed)
    create_handoff = _on_db_thread(_Ops.create_handoff)
    get_handoff = _on_db_thread(_Ops.get_handoff)
    active_handoff = _on_db_thread(_Ops.active_handoff)
    latest_handoff = _on_db_thread(_Ops.latest_handoff)
    list_handoffs = _on_db_thread(_Ops.list_handoffs)
    transition_handoff = _on_db_thread(_Ops.transition_handoff)
    queue_position = _on_db_thread(_Ops.queue_position)
    create_ticket = _on_db_thread(_Ops.create_ticket)
    get_ticket = _on_db_thread(_Ops.get_ticket)
    customer_tickets = _on_db_thread(_Ops.customer_tickets)
    conversation_ticket = _on_db_thread(_Ops.conversation_ticket)
    resolve_ticket = _on_db_thread(_Ops.resolve_ticket)
    record_csat = _on_db_thread(_Ops.record_csat)
    reopen_ticket = _on_db_thread(_Ops.reopen_ticket)
    due_followups = _on_db_thread(_Ops.due_followups)
    mark_followed_up = _on_db_thread(_Ops.mark_followed_up)
    latest_customer_conversation = _on_db_thread(_Ops.latest_customer_conversation)
    move_ticket = _on_db_thread(_Ops.move_ticket)
    create_link_code = _on_db_thread(_Ops.create_link_code)
    redeem_link_code = _on_db_thread(_Ops.redeem_link_code)
    open_tickets = _on_db_thread(_Ops.open_tickets)
    add_sla_alert = _on_db_thread(_Ops.add_sla_alert)
    ticket_by_origin = _on_db_thread(_Ops.ticket_by_origin)
    get_effect = _on_db_thread(_Ops.get_effect)
    save_effect = _on_db_thread(_Ops.save_effect)
