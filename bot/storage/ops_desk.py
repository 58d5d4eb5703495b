"""Store operations on handoffs, desk threads, tickets, side effects and link codes
(see :mod:`bot.storage.sql`)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Sequence

from bot.model import ConversationState, Outbound, utcnow

from .base import HandoffRecord, Ticket
from .ops_chat import insert_outbound
from .rows import handoff_of, iso, new_id, ticket_of
from .sql import All, Lock, One, Op, Run, transaction

# -- desks outside the bot (Slack) ----------------------------------------------------


def desk_thread(desk: str, handoff_id: str) -> Op[dict[str, Any] | None]:
    row = yield One("SELECT * FROM desk_threads WHERE desk=? AND handoff_id=?", (desk, handoff_id))
    return dict(row) if row else None


def desk_thread_by_ts(desk: str, channel: str, ts: str) -> Op[dict[str, Any] | None]:
    row = yield One("SELECT * FROM desk_threads WHERE desk=? AND channel=? AND ts=?", (desk, channel, ts))
    return dict(row) if row else None


def save_desk_thread(desk: str, handoff_id: str, *, channel: str, ts: str, team: str,
                     relayed_upto: int) -> Op[None]:
    """Remember (or move) the card of a handoff."""
    yield Run(
        "INSERT INTO desk_threads(desk, handoff_id, channel, ts, team, relayed_upto, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(desk, handoff_id) DO UPDATE SET channel=excluded.channel, "
        "ts=excluded.ts, team=excluded.team, relayed_upto=excluded.relayed_upto, alerted_at=NULL, card_hash=NULL",
        (desk, handoff_id, channel, ts, team, relayed_upto, iso(utcnow())))


@transaction
def update_desk_thread(desk: str, handoff_id: str, *, relayed_upto: int | None = None,
                       alerted_at: datetime | None = None, card_hash: str | None = None,
                       warned: int | None = None) -> Op[None]:
    if card_hash is not None:
        yield Run("UPDATE desk_threads SET card_hash=? WHERE desk=? AND handoff_id=?", (card_hash, desk, handoff_id))
    if warned is not None:
        yield Run("UPDATE desk_threads SET warned=json_insert(warned, '$[#]', ?) WHERE desk=? AND handoff_id=?",
                  (warned, desk, handoff_id))
    if relayed_upto is not None:
        yield Run("UPDATE desk_threads SET relayed_upto=CASE WHEN relayed_upto > ? THEN relayed_upto ELSE ? END "
                  "WHERE desk=? AND handoff_id=?", (relayed_upto, relayed_upto, desk, handoff_id))
    if alerted_at is not None:
        yield Run("UPDATE desk_threads SET alerted_at=? WHERE desk=? AND handoff_id=?",
                  (iso(alerted_at), desk, handoff_id))


def claim_desk_alert(desk: str, handoff_id: str, *, at: datetime, older_than: datetime) -> Op[bool]:
    """Record that the unclaimed-handoff alert fires now; True only if the handoff is still
    queued, was created before ``older_than`` and had no alert yet (one statement, so a
    claim that committed first wins, and the alert fires once, across restarts and instances)."""
    n = yield Run(
        "UPDATE desk_threads SET alerted_at=? WHERE desk=? AND handoff_id=? AND alerted_at IS NULL "
        "AND EXISTS (SELECT 1 FROM handoffs WHERE id=? AND state='queued' AND created_at <= ?)",
        (iso(at), desk, handoff_id, handoff_id, iso(older_than)))
    return n == 1  # type: ignore[no-any-return]


# -- handoffs ---------------------------------------------------------------------------


@transaction
def create_handoff(conversation_id: str, *, team: str, reason: str, priority: int = 0,
                   context: dict[str, Any] | None = None, cause: str | None = None) -> Op[HandoffRecord]:
    """Queue the conversation for a person (the active handoff if it has one already);
    ``cause``: why (bot.model.HANDOFF_CAUSES)."""
    hid = new_id("ho")
    now = iso(utcnow())
    yield Lock(f"conv:{conversation_id}")
    existing = yield One("SELECT * FROM handoffs WHERE conversation_id=? AND state IN ('queued','claimed')",
                         (conversation_id,))
    if existing is not None:
        return handoff_of(existing)
    yield Run("INSERT INTO handoffs(id, conversation_id, state, team, reason, priority, context, created_at, cause) "
              "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
              (hid, conversation_id, team, reason, priority, json.dumps(context or {}), now, cause))
    yield Run("UPDATE conversations SET state='waiting', updated_at=? WHERE id=?", (now, conversation_id))
    row = yield One("SELECT * FROM handoffs WHERE id=?", (hid,))
    return handoff_of(row)


def get_handoff(handoff_id: str) -> Op[HandoffRecord | None]:
    row = yield One("SELECT * FROM handoffs WHERE id=?", (handoff_id,))
    return handoff_of(row) if row else None


def active_handoff(conversation_id: str) -> Op[HandoffRecord | None]:
    row = yield One("SELECT * FROM handoffs WHERE conversation_id=? AND state IN ('queued','claimed')",
                    (conversation_id,))
    return handoff_of(row) if row else None


def latest_handoff(conversation_id: str) -> Op[HandoffRecord | None]:
    row = yield One("SELECT * FROM handoffs WHERE conversation_id=? ORDER BY created_at DESC, rowid DESC LIMIT 1",
                    (conversation_id,))
    return handoff_of(row) if row else None


def list_handoffs(*, states: Sequence[str], team: str | None = None) -> Op[list[HandoffRecord]]:
    q = f"SELECT * FROM handoffs WHERE state IN ({','.join('?' * len(states))})"
    args: list[Any] = list(states)
    if team:
        q += " AND team=?"
        args.append(team)
    q += " ORDER BY priority DESC, created_at, id"
    rows = yield All(q, args)
    return [handoff_of(r) for r in rows]


@transaction
def transition_handoff(handoff_id: str, *, expected: str, new: str, agent: str | None = None,
                       team: str | None = None, conversation_state: ConversationState | None = None,
                       replies: Sequence[Outbound] = (), flow_state: dict[str, Any] | None = None) -> Op[bool]:
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
    crow = yield One("SELECT c.id, c.channel FROM conversations c JOIN handoffs h "
                     "ON h.conversation_id = c.id WHERE h.id=?", (handoff_id,))
    if crow is None:
        return False
    yield Lock(f"conv:{crow['id']}")
    n = yield Run(f"UPDATE handoffs SET {', '.join(sets)} WHERE id=? AND state=?", (*args, handoff_id, expected))
    if n != 1:
        return False
    if conversation_state is not None:
        yield Run("UPDATE conversations SET state=?, updated_at=? WHERE id=?",
                  (conversation_state.value, now, crow["id"]))
    if flow_state is not None:
        yield Run("UPDATE conversations SET flow_state=? WHERE id=?", (json.dumps(flow_state), crow["id"]))
    if replies:
        yield from insert_outbound(crow["id"], crow["channel"], replies, now_dt)
    return True


def queue_position(handoff_id: str) -> Op[int]:
    """1-based place among queued handoffs of the same team (0 if not queued)."""
    return (yield from queue_position_of(handoff_id))


def queue_position_of(handoff_id: str) -> Op[int]:
    me = yield One("SELECT * FROM handoffs WHERE id=?", (handoff_id,))
    if me is None or me["state"] != "queued":
        return 0
    row = yield One(
        "SELECT COUNT(*) AS n FROM handoffs WHERE state='queued' AND team=? AND "
        "(priority > ? OR (priority = ? AND (created_at < ? OR (created_at = ? AND id <= ?))))",
        (me["team"], me["priority"], me["priority"], me["created_at"], me["created_at"], me["id"]))
    return int(row["n"])


# -- tickets ------------------------------------------------------------------------------


@transaction
def create_ticket(ticket: Ticket) -> Op[Ticket]:
    """Store a new ticket; one with the ``origin`` of a stored ticket returns that one instead."""
    if ticket.origin is not None:
        yield Lock(f"origin:{ticket.origin}")
        row = yield One("SELECT * FROM tickets WHERE origin=?", (ticket.origin,))
        if row is not None:
            return ticket_of(row)
    yield Run(
        "INSERT INTO tickets(reference, customer_id, conversation_id, status, category, severity, "
        "department, team, priority, fields, reasons, created_at, updated_at, origin) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (ticket.reference, ticket.customer_id, ticket.conversation_id, ticket.status, ticket.category,
         ticket.severity, ticket.department, ticket.team, ticket.priority,
         json.dumps(ticket.fields, default=str), json.dumps(list(ticket.reasons)),
         iso(ticket.created_at), iso(ticket.created_at), ticket.origin))
    return ticket


def ticket_by_origin(origin: str) -> Op[Ticket | None]:
    row = yield One("SELECT * FROM tickets WHERE origin=?", (origin,))
    return ticket_of(row) if row else None


def get_ticket(reference: str) -> Op[Ticket | None]:
    row = yield One("SELECT * FROM tickets WHERE reference=?", (reference.upper(),))
    return ticket_of(row) if row else None


def customer_tickets(customer_id: str, *, category: str | None = None) -> Op[list[Ticket]]:
    """A customer's tickets, newest first (optionally of one category)."""
    q, args = "SELECT * FROM tickets WHERE customer_id=?", [customer_id]
    if category is not None:
        q += " AND category=?"
        args.append(category)
    rows = yield All(q + " ORDER BY created_at DESC, reference DESC", args)
    return [ticket_of(r) for r in rows]


def conversation_ticket(conversation_id: str) -> Op[Ticket | None]:
    """The newest unresolved ticket opened in this conversation."""
    row = yield One("SELECT * FROM tickets WHERE conversation_id=? AND resolved_at IS NULL "
                    "ORDER BY created_at DESC, reference DESC LIMIT 1", (conversation_id,))
    return ticket_of(row) if row else None


def open_tickets() -> Op[list[Ticket]]:
    rows = yield All("SELECT * FROM tickets WHERE resolved_at IS NULL ORDER BY priority DESC, created_at")
    return [ticket_of(r) for r in rows]


@transaction
def resolve_ticket(reference: str, *, at: datetime, agent: str | None, result: str | None,
                   follow_up_at: datetime | None = None) -> Op[Ticket | None]:
    yield from resolve_open(reference, at=at, agent=agent, result=result, follow_up_at=follow_up_at)
    return (yield from get_ticket(reference))


def resolve_open(reference: str, *, at: datetime, agent: str | None, result: str | None,
                 follow_up_at: datetime | None) -> Op[bool]:
    """Mark an open ticket resolved (inside a transaction); False if it was not open."""
    n = yield Run("UPDATE tickets SET status='resolved', resolved_at=?, resolved_by=?, result=?, "
                  "followup_due_at=?, followed_up_at=NULL, updated_at=? WHERE reference=? AND resolved_at IS NULL",
                  (iso(at), agent, result, iso(follow_up_at), iso(at), reference))
    return n == 1  # type: ignore[no-any-return]


@transaction
def reopen_ticket(reference: str, *, at: datetime) -> Op[Ticket | None]:
    yield Run("UPDATE tickets SET status='reopened', resolved_at=NULL, followup_due_at=NULL, "
              "reopened=reopened+1, updated_at=? WHERE reference=? AND resolved_at IS NOT NULL", (iso(at), reference))
    return (yield from get_ticket(reference))


@transaction
def record_csat(reference: str, *, score: int, comment: str | None, at: datetime) -> Op[Ticket | None]:
    yield Run("UPDATE tickets SET csat=?, csat_comment=?, csat_at=?, updated_at=? WHERE reference=?",
              (score, comment, iso(at), iso(at), reference))
    return (yield from get_ticket(reference))


@transaction
def add_sla_alert(reference: str, alert: str) -> Op[bool]:
    """Record ``alert`` ("resolve:breached", ...) for the ticket; False if it was raised before
    (so each alert fires once, across restarts and instances)."""
    yield Lock(f"ticket:{reference}")
    row = yield One("SELECT sla_alerts FROM tickets WHERE reference=?", (reference,))
    if row is None:
        return False
    alerts = json.loads(row["sla_alerts"] or "[]")
    if alert in alerts:
        return False
    yield Run("UPDATE tickets SET sla_alerts=? WHERE reference=?", (json.dumps(alerts + [alert]), reference))
    return True


def move_ticket(reference: str, *, conversation_id: str) -> Op[None]:
    yield Run("UPDATE tickets SET conversation_id=? WHERE reference=?", (conversation_id, reference))


def due_followups(now: datetime, *, limit: int = 100) -> Op[list[Ticket]]:
    """Resolved tickets whose follow-up question is due and not yet asked, oldest first."""
    rows = yield All("SELECT * FROM tickets WHERE followed_up_at IS NULL AND resolved_at IS NOT NULL "
                     "AND followup_due_at <= ? ORDER BY followup_due_at LIMIT ?", (iso(now), limit))
    return [ticket_of(r) for r in rows]


def mark_followed_up(reference: str, *, at: datetime) -> Op[None]:
    yield Run("UPDATE tickets SET followed_up_at=?, updated_at=? WHERE reference=?", (iso(at), iso(at), reference))


# -- side effects of flow actions ------------------------------------------------------------


def get_effect(key: str) -> Op[Any]:
    """What the side effect keyed ``key`` returned when it ran, or None if it never ran."""
    row = yield One("SELECT value FROM effects WHERE key=?", (key,))
    return json.loads(row["value"]) if row else None


def save_effect(key: str, value: Any) -> Op[None]:
    yield Run("INSERT INTO effects(key, value, created_at) VALUES (?, ?, ?) ON CONFLICT(key) DO NOTHING",
              (key, json.dumps(value, default=str), iso(utcnow())))


# -- linking a customer's identities ----------------------------------------------------------


@transaction
def create_link_code(customer_id: str, code: str, *, at: datetime, expires_at: datetime) -> Op[None]:
    yield Run("DELETE FROM link_codes WHERE customer_id=? AND used_at IS NULL", (customer_id,))
    yield Run("INSERT INTO link_codes(code, customer_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
              (code, customer_id, iso(at), iso(expires_at)))


@transaction
def redeem_link_code(code: str, customer_id: str, *, at: datetime) -> Op[str | None]:
    """Use a valid code (once, before it expires) from another customer record: that record
    (the code's owner) absorbs ``customer_id`` -- identities, conversations, tickets. Returns
    the surviving customer id, or None for an unknown, used or expired code."""
    yield Lock(f"code:{code}")
    row = yield One("SELECT * FROM link_codes WHERE code=? AND used_at IS NULL AND expires_at > ?", (code, iso(at)))
    if row is None:
        return None
    keep = row["customer_id"]
    yield Run("UPDATE link_codes SET used_at=? WHERE code=?", (iso(at), code))
    if keep == customer_id:
        return keep  # type: ignore[no-any-return]
    for table in ("identities", "conversations", "tickets", "link_codes"):
        yield Run(f"UPDATE {table} SET customer_id=? WHERE customer_id=?", (keep, customer_id))
    gone = yield One("SELECT * FROM customers WHERE id=?", (customer_id,))
    if gone is not None:
        yield Run("UPDATE customers SET attributes=json_patch(?, attributes), "
                  "display_name=CASE WHEN display_name='' THEN ? ELSE display_name END WHERE id=?",
                  (gone["attributes"] or "{}", gone["display_name"], keep))
        yield Run("DELETE FROM customers WHERE id=?", (customer_id,))
    return keep  # type: ignore[no-any-return]
