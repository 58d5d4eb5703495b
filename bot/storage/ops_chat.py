"""Store operations on customers, conversations, messages and the outbox (see :mod:`bot.storage.sql`).

Each function is a generator that yields its statements; a backend runs it.
Those marked ``@transaction`` run whole or not at all. ``Lock`` requests
serialize writers of one conversation (or one address) across instances.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Sequence

from bot.errors import AlreadyDone, ClaimLost, StoreError, TurnStale
from bot.model import Conversation, ConversationState, Customer, Inbound, Message, Outbound, outbound_payload, utcnow

from .base import HandoffSpec, InboundResult, OutboxItem, TicketChange, TicketFollowedUp, TicketResolved, TurnBasis
from .ops_whatsapp import saw_inbound
from .rows import conversation_of, customer_of, iso, message_of, new_id, parse_iso
from .sql import BACKEND, All, Lock, One, Op, Run, transaction

# -- meta -----------------------------------------------------------------------


def get_meta(key: str) -> Op[str | None]:
    row = yield One("SELECT value FROM meta WHERE key=?", (key,))
    return row["value"] if row else None


@transaction
def set_meta_if_absent(key: str, value: str) -> Op[str]:
    yield Run("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING", (key, value))
    row = yield One("SELECT value FROM meta WHERE key=?", (key,))
    return row["value"]  # type: ignore[no-any-return]


def set_meta(key: str, value: str) -> Op[None]:
    yield Run("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
              (key, value))


@transaction
def probe() -> Op[None]:
    """A write that needs new pages and the write lock, leaving nothing behind."""
    yield Run("INSERT INTO meta(key, value) VALUES ('probe', ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
              (new_id("probe") * 300,))
    yield Run("DELETE FROM meta WHERE key='probe'")


@transaction
def next_sequence(name: str, start: int = 1000) -> Op[int]:
    key = f"seq:{name}"
    yield Run("INSERT INTO meta(key, value) VALUES (?, ?) "
              "ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(meta.value AS INTEGER) + 1 AS TEXT)",
              (key, str(start)))
    row = yield One("SELECT value FROM meta WHERE key=?", (key,))
    return int(row["value"])


def first_seen(source: str, event_id: str) -> Op[bool]:
    """Record a platform event id; False if it was seen before (a retry)."""
    n = yield Run("INSERT INTO seen_events(source, event_id, created_at) VALUES (?, ?, ?) "
                  "ON CONFLICT DO NOTHING", (source, event_id, iso(utcnow())))
    return n == 1  # type: ignore[no-any-return]


# -- customers and conversations ----------------------------------------------------


@transaction
def record_inbound(inbound: Inbound) -> Op[InboundResult]:
    """Store a customer message once; a repeat returns the stored one with ``duplicate=True``.

    A message not to be answered (``inbound.answer`` False) is stored as processed already,
    so no turn, recovery or sweep ever answers it.
    """
    now = iso(utcnow())
    yield Lock(f"addr:{inbound.channel}:{inbound.external_id}")
    if (yield BACKEND) == "postgresql":
        # the repeat check, the customer, the 24-hour window (heard_at) and (nearly always) the
        # message in one statement
        return (yield from ops_pg.record_inbound_pg(inbound, now))
    if inbound.heard_at is not None:      # in the same transaction: one operation, not two
        yield from saw_inbound(inbound.channel, inbound.external_id, inbound.heard_at)
    # the repeat check and the customer at this address in one statement: always one row; its
    # customer columns are NULL when there is none
    cust_row = yield One(
        "SELECT (SELECT id FROM messages WHERE channel=? AND platform_message_id=? AND direction='in') AS dup_id, "
        "c.* FROM (SELECT 1 AS one) AS x LEFT JOIN identities i ON i.channel=? AND i.external_id=? "
        "LEFT JOIN customers c ON c.id = i.customer_id",
        (inbound.channel, inbound.platform_message_id, inbound.channel, inbound.external_id))
    if cust_row["dup_id"] is not None:
        return (yield from _repeat(cust_row["dup_id"]))
    customer_id, cust_row = yield from _inbound_customer(inbound, cust_row, now)
    crow = yield One("UPDATE conversations SET updated_at=? WHERE channel=? AND external_id=? "
                     "AND state != 'closed' RETURNING *", (now, inbound.channel, inbound.external_id))
    return (yield from _inbound_message(inbound, customer_id, cust_row, crow, now))


def _repeat(message_id: int) -> Op[InboundResult]:
    """:func:`record_inbound`'s answer for a message stored before (``duplicate=True``)."""
    row = yield One("SELECT * FROM messages WHERE id=?", (message_id,))
    conv = yield from _conversation(row["conversation_id"])
    cust = yield from _customer(conv.customer_id)  # type: ignore[union-attr]
    return InboundResult(message_of(row), conv, cust, True)  # type: ignore[arg-type]


def _inbound_customer(inbound: Inbound, cust_row: Any, now: str) -> Op[tuple[str, Any]]:
    """The customer at the inbound's address (``cust_row``: its row, None columns when there is
    none), created or brought up to date (name, attributes): its id and row."""
    if cust_row["id"] is None:
        customer_id = new_id("cus")
        yield Run("INSERT INTO customers(id, display_name, created_at) VALUES (?, ?, ?)",
                  (customer_id, inbound.sender_name, now))
        yield Run("INSERT INTO identities(channel, external_id, customer_id, created_at) VALUES (?, ?, ?, ?)",
                  (inbound.channel, inbound.external_id, customer_id, now))
        changed = True
    else:
        customer_id = cust_row["id"]
        changed = bool(inbound.sender_name and not cust_row["display_name"])
        if changed:
            yield Run("UPDATE customers SET display_name=? WHERE id=?", (inbound.sender_name, customer_id))
    if inbound.customer_attributes and not _has_attributes(cust_row, inbound.customer_attributes):
        yield Run("UPDATE customers SET attributes=json_patch(attributes, ?) WHERE id=?",
                  (json.dumps(dict(inbound.customer_attributes)), customer_id))
        changed = True
    if changed:
        cust_row = yield One("SELECT * FROM customers WHERE id=?", (customer_id,))
    return customer_id, cust_row


def _inbound_message(inbound: Inbound, customer_id: str, cust_row: Any, crow: Any, now: str) -> Op[InboundResult]:
    """The inbound message stored in the open conversation ``crow`` (its row, updated), or in a new
    one when ``crow`` is None; ``cust_row``: the customer's row as stored."""
    if crow is None:
        crow = yield One(
            "INSERT INTO conversations(id, customer_id, channel, external_id, state, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, 'bot', ?, ?) RETURNING *",
            (new_id("conv"), customer_id, inbound.channel, inbound.external_id, now, now))
    conv = conversation_of(crow)
    mrow = yield One(
        "INSERT INTO messages(conversation_id, direction, role, sender_name, text, attachments, "
        "channel, platform_message_id, payload, status, created_at) "
        "VALUES (?, 'in', 'customer', ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
        (conv.id, inbound.sender_name, inbound.text,
         json.dumps([a.to_dict() for a in inbound.attachments]), inbound.channel,
         inbound.platform_message_id, inbound.payload, "received" if inbound.answer else "processed", now))
    return InboundResult(message_of(mrow), conv, customer_of(cust_row), False,
                         turn_basis(mrow["id"], mrow["status"], crow, cust_row))


def turn_basis(message_id: int, status: str, crow: Any, cust_row: Any) -> TurnBasis | None:
    """What the turn of a new message may start from (see :class:`TurnBasis`): the conversation's
    row ``crow`` and the customer's ``cust_row`` as stored with it; None for a message not to answer."""
    if status != "received":
        return None
    return TurnBasis(message_id, crow["state"], crow["language"] or "", crow["flow_state"] or "",
                     crow["customer_id"], cust_row["display_name"], cust_row["attributes"])


def _has_attributes(cust_row: Any, attributes: Any) -> bool:
    """Whether the stored customer (``cust_row``, None columns when there is none) has every one
    of ``attributes`` already, each a plain value: then patching them in would change nothing.
    (A Telegram customer's app language comes with every message: an UPDATE and a re-read of the
    customer per message, two round trips on PostgreSQL, for nothing; issue 20.)"""
    if cust_row["id"] is None:
        return False
    have = json.loads(cust_row["attributes"] or "{}")
    return all(isinstance(v, (str, int, float)) and k in have and type(have[k]) is type(v) and have[k] == v
               for k, v in attributes.items())


def _conversation(conversation_id: str) -> Op[Conversation | None]:
    row = yield One("SELECT * FROM conversations WHERE id=?", (conversation_id,))
    return conversation_of(row) if row else None


def _customer(customer_id: str) -> Op[Customer | None]:
    row = yield One("SELECT * FROM customers WHERE id=?", (customer_id,))
    return customer_of(row) if row else None


def get_conversation(conversation_id: str) -> Op[Conversation | None]:
    return (yield from _conversation(conversation_id))


def get_customer(customer_id: str) -> Op[Customer | None]:
    return (yield from _customer(customer_id))


def latest_conversation(channel: str, external_id: str) -> Op[Conversation | None]:
    """The open conversation at this address, else the most recent closed one."""
    row = yield One("SELECT * FROM conversations WHERE channel=? AND external_id=? "
                    "ORDER BY state = 'closed', updated_at DESC LIMIT 1", (channel, external_id))
    return conversation_of(row) if row else None


def identities(customer_id: str) -> Op[list[tuple[str, str]]]:
    rows = yield All("SELECT channel, external_id FROM identities WHERE customer_id=? ORDER BY created_at",
                     (customer_id,))
    return [(r["channel"], r["external_id"]) for r in rows]


def load_turn(conversation_id: str) -> Op[tuple[Conversation, Customer, dict[str, Any] | None] | None]:
    """What a turn needs, in one read: the conversation, its customer and the flow state."""
    row = yield One("SELECT c.*, u.display_name AS u_name, u.created_at AS u_created, "
                    "u.attributes AS u_attributes FROM conversations c "
                    "JOIN customers u ON u.id = c.customer_id WHERE c.id=?", (conversation_id,))
    if row is None:
        return None
    customer = Customer(row["customer_id"], row["u_name"], parse_iso(row["u_created"]),  # type: ignore[arg-type]
                        json.loads(row["u_attributes"] or "{}"))
    state = json.loads(row["flow_state"]) if row["flow_state"] else None
    return conversation_of(row), customer, state


def open_conversation(channel: str, external_id: str) -> Op[Conversation | None]:
    row = yield One("SELECT * FROM conversations WHERE channel=? AND external_id=? AND state != 'closed'",
                    (channel, external_id))
    return conversation_of(row) if row else None


def customer_conversations(customer_id: str) -> Op[list[Conversation]]:
    rows = yield All("SELECT * FROM conversations WHERE customer_id=? ORDER BY created_at", (customer_id,))
    return [conversation_of(r) for r in rows]


def latest_customer_conversation(customer_id: str) -> Op[Conversation | None]:
    """Where the customer wrote last (an open conversation at that address if there is one)."""
    row = yield One("SELECT * FROM conversations WHERE customer_id=? ORDER BY updated_at DESC, "
                    "created_at DESC LIMIT 1", (customer_id,))
    if row is None:
        return None
    if row["state"] == "closed":
        open_row = yield One("SELECT * FROM conversations WHERE channel=? AND external_id=? "
                             "AND state != 'closed'", (row["channel"], row["external_id"]))
        row = open_row or row
    return conversation_of(row)


@transaction
def set_conversation_state(conversation_id: str, state: ConversationState) -> Op[None]:
    yield Lock(f"conv:{conversation_id}")
    yield Run("UPDATE conversations SET state=?, updated_at=? WHERE id=?",
              (state.value, iso(utcnow()), conversation_id))


# -- messages and turns ----------------------------------------------------------


def history(conversation_id: str, *, after_id: int = 0, limit: int = 200) -> Op[list[Message]]:
    rows = yield All("SELECT * FROM (SELECT * FROM messages WHERE conversation_id=? AND id>? "
                     "ORDER BY id DESC LIMIT ?) AS h ORDER BY id", (conversation_id, after_id, limit))
    return [message_of(r) for r in rows]


def unprocessed_inbound(conversation_id: str) -> Op[list[Message]]:
    rows = yield All("SELECT * FROM messages WHERE conversation_id=? AND direction='in' AND status='received' "
                     "ORDER BY id", (conversation_id,))
    return [message_of(r) for r in rows]


def conversations_with_unprocessed() -> Op[list[str]]:
    rows = yield All("SELECT conversation_id, MIN(id) AS first FROM messages "
                     "WHERE direction='in' AND status='received' GROUP BY conversation_id ORDER BY first")
    return [r["conversation_id"] for r in rows]


def load_flow_state(conversation_id: str) -> Op[dict[str, Any] | None]:
    row = yield One("SELECT flow_state FROM conversations WHERE id=?", (conversation_id,))
    return json.loads(row["flow_state"]) if row and row["flow_state"] else None


@transaction
def commit_turn(conversation_id: str, *, inbound_id: int | None, replies: Sequence[Outbound],
                flow_state: dict[str, Any] | None, state: ConversationState | None = None,
                keep_flow_state: bool = False, handoff: HandoffSpec | None = None,
                ticket: TicketChange | None = None, owner: str | None = None,
                basis: TurnBasis | None = None) -> Op[list[Message]]:
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
        owner: the instance that claimed the conversation (several instances); if another
            instance owns it now, nothing is written and :class:`ClaimLost` is raised.
        basis: what the turn was computed from, when that was not read under the
            conversation's lock (see :class:`TurnBasis`); if the conversation is no longer so,
            nothing is written and :class:`TurnStale` is raised.
    """
    from .ops_desk import queue_position_of, resolve_open

    now = utcnow()
    yield Lock(f"conv:{conversation_id}")
    replies = list(replies)
    hid = None
    if handoff is not None:
        hrow = yield One("SELECT id FROM handoffs WHERE conversation_id=? AND state IN ('queued','claimed')",
                         (conversation_id,))
        if hrow is None:
            hid = new_id("ho")
            state = ConversationState.WAITING
    # the conversation first: it must exist and (several instances) still be this instance's
    sets, args = ["updated_at=?"], [iso(now)]
    if not keep_flow_state:
        sets.append("flow_state=?")
        args.append(json.dumps(flow_state) if flow_state is not None else None)
    if state is not None:
        sets.append("state=?")
        args.append(state.value)
    if handoff is None and ticket is None and (yield BACKEND) == "postgresql":
        # the plain turn (nearly every one) in one statement: one round trip, not 2 + one per reply
        return (yield from ops_pg.commit_turn_pg(conversation_id, sets=sets, args=args, inbound_id=inbound_id,
                                                 replies=replies, now_iso=iso(now), now_ts=now.timestamp(),
                                                 owner=owner, basis=basis))
    where = f"id=? AND {TurnBasis.SQL}" if basis is not None else "id=?"
    crow = yield One(f"UPDATE conversations SET {', '.join(sets)} WHERE {where} RETURNING channel, owner",
                     (*args, conversation_id, *(basis.args(conversation_id) if basis is not None else ())))
    if crow is None:
        yield from _missing_or_stale(conversation_id, basis)
    if owner is not None and crow["owner"] != owner:
        raise ClaimLost(f"{conversation_id} is owned by {crow['owner']}, not {owner}")
    if handoff is not None and hid is not None:
        yield Run("INSERT INTO handoffs(id, conversation_id, state, team, reason, priority, context, "
                  "created_at, cause) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
                  (hid, conversation_id, handoff.team, handoff.reason, handoff.priority,
                   json.dumps(handoff.context), iso(now), handoff.cause))
        position = yield from queue_position_of(hid)
        replies.append(handoff.message(position))
    queued = yield from insert_outbound(conversation_id, crow["channel"], replies, now)
    if inbound_id is not None:
        yield Run("UPDATE messages SET status='processed' WHERE id=? AND direction='in'", (inbound_id,))
    if isinstance(ticket, TicketFollowedUp):
        asked = yield Run("UPDATE tickets SET followed_up_at=?, updated_at=? WHERE reference=? "
                          "AND followed_up_at IS NULL", (iso(now), iso(now), ticket.reference))
        if not asked:
            raise AlreadyDone(f"the follow-up of {ticket.reference} was asked already")
    elif isinstance(ticket, TicketResolved):
        if not (yield from resolve_open(ticket.reference, at=ticket.at, agent=ticket.agent, result=ticket.result,
                                        follow_up_at=ticket.follow_up_at)):
            raise StoreError(f"{ticket.reference} is already resolved")
    return queued


def _missing_or_stale(conversation_id: str, basis: TurnBasis | None) -> Op[None]:
    """Raise why a turn's update of its conversation matched no row: gone, or changed since ``basis``."""
    if basis is not None and (yield One("SELECT id FROM conversations WHERE id=?", (conversation_id,))):
        raise TurnStale(f"{conversation_id} changed since message {basis.message_id} was stored")
    raise StoreError(f"no conversation {conversation_id}")


def insert_outbound(conversation_id: str, channel: str, replies: Sequence[Outbound],
                    now: datetime) -> Op[list[Message]]:
    """Queue replies (inside the caller's transaction, which holds the conversation's lock)."""
    queued: list[Message] = []
    for r in replies:
        row = yield One(
            "INSERT INTO messages(conversation_id, direction, role, sender_name, text, attachments, "
            "buttons, channel, payload, status, next_attempt_at, created_at) "
            "VALUES (?, 'out', ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?) RETURNING *",
            (conversation_id, r.role, r.sender_name, r.text,
             json.dumps([a.to_dict() for a in r.attachments]),
             json.dumps([{"title": b.title, "payload": b.payload} for b in r.buttons]),
             channel, outbound_payload(r), now.timestamp(), iso(now)))
        queued.append(message_of(row))
    return queued


def failed_outbound(conversation_id: str, *, since: datetime) -> Op[list[tuple[int, str]]]:
    """Outbound messages of a conversation created since ``since`` that failed for good:
    (id, reason), oldest first."""
    rows = yield All("SELECT id, last_error FROM messages WHERE conversation_id=? AND created_at >= ? "
                     "AND direction='out' AND status='failed' ORDER BY id", (conversation_id, iso(since)))
    return [(r["id"], r["last_error"] or "") for r in rows]


# -- outbox -------------------------------------------------------------------------


def due_outbox(now: float, *, limit: int = 100, exclude: Sequence[str] = (),
               conversation_id: str | None = None, owner: str | None = None,
               live_since: float = 0.0) -> Op[list[OutboxItem]]:
    """The oldest pending message of each conversation (or of one), if it is due.

    Only the head of each conversation is returned, so a message never
    overtakes an earlier one that is waiting for a retry. With ``owner`` (several
    instances), only conversations that no other live instance (one heard from
    after ``live_since``) holds.
    """
    excl = f"AND m.conversation_id NOT IN ({','.join('?' * len(exclude))})" if exclude else ""
    one = "AND conversation_id = ?" if conversation_id else ""
    mine = ("AND (c.owner IS NULL OR c.owner = ? OR c.owner NOT IN (SELECT id FROM instances WHERE seen_at > ?))"
            if owner else "")
    rows = yield All(
        "SELECT m.*, c.external_id AS c_external_id FROM messages m "
        "JOIN conversations c ON c.id = m.conversation_id "
        "WHERE m.id IN (SELECT MIN(id) FROM messages WHERE direction='out' AND status='pending' "
        f"{one} GROUP BY conversation_id) AND m.next_attempt_at <= ? "
        f"{excl} {mine} ORDER BY m.id LIMIT ?",
        (*([conversation_id] if conversation_id else []), float(now), *exclude,
         *([owner, float(live_since)] if owner else []), limit))
    return [OutboxItem(message_of(r), r["channel"], r["c_external_id"], r["attempts"]) for r in rows]


def outbox_turn(message_id: int) -> Op[list[OutboxItem]]:
    """The pending messages queued together with ``message_id`` (one turn's replies, which
    :func:`commit_turn` writes with one timestamp), oldest first, starting with it.

    For connectors that send a turn as one platform message (see
    :class:`connectors.base.BatchConnector`).
    """
    rows = yield All(
        "SELECT m.*, c.external_id AS c_external_id FROM messages m "
        "JOIN conversations c ON c.id = m.conversation_id "
        "JOIN messages h ON h.id = ? AND m.conversation_id = h.conversation_id AND m.created_at = h.created_at "
        "WHERE m.direction='out' AND m.status='pending' AND m.id >= h.id ORDER BY m.id", (message_id,))
    return [OutboxItem(message_of(r), r["channel"], r["c_external_id"], r["attempts"]) for r in rows]


def next_outbox_due() -> Op[float | None]:
    """When the next head of a conversation's outbox is due (later messages wait for their head)."""
    row = yield One("SELECT MIN(next_attempt_at) AS t FROM messages "
                    "WHERE id IN (SELECT MIN(id) FROM messages WHERE direction='out' "
                    "AND status='pending' GROUP BY conversation_id)")
    return row["t"] if row and row["t"] is not None else None


def mark_sent(message_id: int, platform_message_id: str) -> Op[None]:
    yield Run("UPDATE messages SET status='sent', platform_message_id=?, sent_at=?, "
              "attempts=attempts+1, last_error=NULL WHERE id=?", (platform_message_id, iso(utcnow()), message_id))


def mark_retry(message_id: int, *, next_attempt_at: float, error: str) -> Op[None]:
    yield Run("UPDATE messages SET attempts=attempts+1, next_attempt_at=?, last_error=? WHERE id=?",
              (float(next_attempt_at), error[:500], message_id))


def mark_failed(message_id: int, *, error: str) -> Op[None]:
    yield Run("UPDATE messages SET status='failed', attempts=attempts+1, last_error=? WHERE id=?",
              (error[:500], message_id))


# PostgreSQL's one-statement forms use this module's helpers: imported last (a cycle)
from . import ops_pg  # noqa: E402
