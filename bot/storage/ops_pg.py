"""PostgreSQL's one-statement forms of steps of the path every message takes (issue 20).

On PostgreSQL every statement is a network round trip plus the server's work on a message of
the protocol; a data-modifying ``WITH`` does in one statement what SQLite, which has no such
statements, does in several (there each is a call into the library, no round trip). The
operations in :mod:`bot.storage.ops_chat` and :mod:`bot.storage.ops_hotpath` ask which backend
runs them (:class:`~bot.storage.sql.Backend`) and use these forms on PostgreSQL; each reads and
writes the same rows as the statements it replaces, which the store contract checks on both
backends.

All sub-statements of one ``WITH`` see the same snapshot (the one from before any of them
wrote), and they must not write the same row twice: each form below writes different rows
in each of its parts, and none reads back what another part writes, except through
``RETURNING``.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from bot.errors import ClaimLost
from bot.model import Conversation, ConversationState, Inbound, Message, Outbound, outbound_payload

from . import ops_chat as chat
from .base import InboundResult, OutboxItem, TurnBasis
from .ops_whatsapp import SAW_INBOUND, saw_inbound_args
from .rows import customer_of, message_of, parse_iso
from .sql import All, One, Op

#: the columns of an outbound message :func:`commit_turn_pg` writes from each reply, in order
_REPLY_COLUMNS = "n, role, sender_name, text, attachments, buttons, payload"
#: the first row of the replies' VALUES names their types (the rest follow it)
_FIRST_REPLY = "(?::int, ?::text, ?::text, ?::text, ?::text, ?::text, ?::text)"
_NEXT_REPLY = "(?, ?, ?, ?, ?, ?, ?)"


def commit_turn_pg(conversation_id: str, *, sets: Sequence[str], args: Sequence[Any], inbound_id: int | None,
                   replies: Sequence[Outbound], now_iso: str, now_ts: float,
                   owner: str | None, basis: TurnBasis | None = None) -> Op[list[Message]]:
    """The plain turn of :func:`~bot.storage.ops_chat.commit_turn` (no handoff, no ticket) in ONE
    statement, inside its transaction (which holds the conversation's lock): the conversation
    updated (``sets``/``args``, as there), the replies queued in order, the inbound message marked
    processed. A missing conversation or another owner raises before the transaction commits, so
    nothing of it is written, as there.
    """
    params: list[Any] = [*args, conversation_id]
    where = "id=?"
    if basis is not None:
        where += f" AND {TurnBasis.SQL}"
        params += basis.args(conversation_id)
    sql = f"WITH c AS (UPDATE conversations SET {', '.join(sets)} WHERE {where} RETURNING id, channel, owner)"
    if inbound_id is not None:
        sql += ", p AS (UPDATE messages SET status='processed' WHERE id=? AND direction='in')"
        params.append(inbound_id)
    if replies:
        values = []
        for n, r in enumerate(replies):
            values.append(_FIRST_REPLY if n == 0 else _NEXT_REPLY)
            params += [n, r.role, r.sender_name, r.text, json.dumps([a.to_dict() for a in r.attachments]),
                       json.dumps([{"title": b.title, "payload": b.payload} for b in r.buttons]),
                       outbound_payload(r)]
        # ORDER BY v.n: the ids (the outbox's order) are given in the order of the replies.
        # ?::text (created_at): an untyped parameter in an INSERT ... SELECT's list gets its type
        # inferred when the server first parses the statement, and the parse tree (so
        # pg_stat_statements' query id) differs from the one the server makes when it analyses the
        # statement again after an invalidation (an ANALYZE): one statement under two query ids,
        # each with its own figures. Typed, it has one.
        sql += (", q AS (INSERT INTO messages(conversation_id, direction, role, sender_name, text, attachments, "
                "buttons, channel, payload, status, next_attempt_at, created_at) "
                "SELECT c.id, 'out', v.role, v.sender_name, v.text, v.attachments, v.buttons, c.channel, v.payload, "
                f"'pending', ?::double precision, ?::text FROM c, (VALUES {', '.join(values)}) AS v({_REPLY_COLUMNS}) "
                "ORDER BY v.n RETURNING *) "
                "SELECT q.*, c.owner AS c_owner FROM c LEFT JOIN q ON true ORDER BY q.id")
        # the two parameters of the SELECT come before the VALUES' in the text
        at = len(params) - 7 * len(replies)
        params[at:at] = [now_ts, now_iso]
    else:
        sql += " SELECT c.owner AS c_owner FROM c"
    rows = yield All(sql, params)
    if not rows:        # (the message's mark, if made, is rolled back with the transaction)
        yield from chat._missing_or_stale(conversation_id, basis)
    if owner is not None and rows[0]["c_owner"] != owner:
        raise ClaimLost(f"{conversation_id} is owned by {rows[0]['c_owner']}, not {owner}")
    return [message_of(r) for r in rows] if replies else []


def record_inbound_pg(inbound: Inbound, now_iso: str) -> Op[InboundResult]:
    """:func:`~bot.storage.ops_chat.record_inbound` after its lock, with the repeat check, the
    customer at the address and, when that customer and an open conversation exist and the
    message is new (nearly always), the conversation's ``updated_at`` and the message itself in
    ONE statement. Otherwise that statement writes nothing (its writes are conditional on it), and
    the rest goes as on SQLite: the repeat answered, the customer created, the conversation
    created. A customer to bring up to date (a name, attributes) is updated after the message, in
    the same transaction: the same rows in the end.

    With ``inbound.heard_at`` (WhatsApp's 24-hour window) the window's upsert
    (:data:`~bot.storage.ops_whatsapp.SAW_INBOUND`, the same statement SQLite runs before) is a
    part of this statement too: a data-modifying ``WITH`` part runs whether or not the rest reads
    it, and it writes a ``meta`` row, which no other part reads or writes.
    """
    window = ""
    window_args: tuple[str, ...] = ()
    if inbound.heard_at is not None:
        window = f"w AS ({SAW_INBOUND}), "
        window_args = saw_inbound_args(inbound.channel, inbound.external_id, inbound.heard_at)
    # ?::text in m's SELECT: typed, as in commit_turn_pg, so the statement has one query id
    row = (yield All(
        f"WITH {window}d AS (SELECT id FROM messages WHERE channel=? AND platform_message_id=? AND direction='in'), "
        "u AS (SELECT c.* FROM identities i JOIN customers c ON c.id = i.customer_id "
        "WHERE i.channel=? AND i.external_id=?), "
        "c AS (UPDATE conversations SET updated_at=? WHERE channel=? AND external_id=? AND state != 'closed' "
        "AND NOT EXISTS (SELECT 1 FROM d) AND EXISTS (SELECT 1 FROM u) RETURNING *), "
        "m AS (INSERT INTO messages(conversation_id, direction, role, sender_name, text, attachments, "
        "channel, platform_message_id, payload, status, created_at) "
        "SELECT c.id, 'in', 'customer', ?::text, ?::text, ?::text, ?::text, ?::text, ?::text, ?::text, ?::text "
        "FROM c RETURNING *) "
        "SELECT (SELECT id FROM d) AS dup_id, u.id AS u_id, u.display_name AS u_display_name, "
        "u.created_at AS u_created_at, u.attributes AS u_attributes, m.*, c.customer_id AS c_customer_id, "
        "c.external_id AS c_external_id, c.state AS c_state, c.created_at AS c_created_at, "
        "c.updated_at AS c_updated_at, c.language AS c_language, c.flow_state AS c_flow_state "
        "FROM (SELECT 1 AS one) AS x LEFT JOIN u ON true LEFT JOIN (c JOIN m ON true) ON true",
        (*window_args, inbound.channel, inbound.platform_message_id, inbound.channel, inbound.external_id,
         now_iso, inbound.channel, inbound.external_id,
         inbound.sender_name, inbound.text, json.dumps([a.to_dict() for a in inbound.attachments]),
         inbound.channel, inbound.platform_message_id, inbound.payload,
         "received" if inbound.answer else "processed", now_iso)))[0]
    if row["dup_id"] is not None:
        return (yield from chat._repeat(row["dup_id"]))
    cust_row = {"id": row["u_id"], "display_name": row["u_display_name"], "created_at": row["u_created_at"],
                "attributes": row["u_attributes"]}
    if row["id"] is None:       # nothing written: a new customer, or no open conversation
        customer_id, cust_row = yield from chat._inbound_customer(inbound, cust_row, now_iso)
        crow = None     # a customer was there: so no open conversation (the statement found none)
        if cust_row["id"] is None:    # a new customer: an open conversation is unlikely, but looked for
            crow = yield One("UPDATE conversations SET updated_at=? WHERE channel=? AND external_id=? "
                             "AND state != 'closed' RETURNING *", (now_iso, inbound.channel, inbound.external_id))
        return (yield from chat._inbound_message(inbound, customer_id, cust_row, crow, now_iso))
    if (inbound.sender_name and not cust_row["display_name"]) or (
            inbound.customer_attributes and not chat._has_attributes(cust_row, inbound.customer_attributes)):
        _, cust_row = yield from chat._inbound_customer(inbound, cust_row, now_iso)
    conv = Conversation(id=row["conversation_id"], customer_id=row["c_customer_id"], channel=inbound.channel,
                        external_id=row["c_external_id"], state=ConversationState(row["c_state"]),
                        created_at=parse_iso(row["c_created_at"]),  # type: ignore[arg-type]
                        updated_at=parse_iso(row["c_updated_at"]),  # type: ignore[arg-type]
                        language=row["c_language"])
    basis = None
    if row["status"] == "received":
        basis = TurnBasis(row["id"], row["c_state"], row["c_language"] or "", row["c_flow_state"] or "",
                          row["c_customer_id"], cust_row["display_name"], cust_row["attributes"])
    return InboundResult(message_of(row), conv, customer_of(cust_row), False, basis)


def mark_sent_next_pg(message_id: int, platform_message_id: str, *, conversation_id: str, sent_at: str,
                      now: float) -> Op[OutboxItem | None]:
    """:func:`~bot.storage.ops_hotpath.mark_sent_next` in one statement: the mark, and the
    conversation's next due reply. The query's snapshot is from before the mark, where
    ``message_id`` may still be pending: it is left out, which gives what a query after the
    mark finds (the mark changes no other row)."""
    rows = yield All(
        "WITH s AS (UPDATE messages SET status='sent', platform_message_id=?, sent_at=?, attempts=attempts+1, "
        "last_error=NULL WHERE id=?) "
        "SELECT m.*, c.external_id AS c_external_id FROM messages m JOIN conversations c ON c.id = m.conversation_id "
        "WHERE m.id IN (SELECT MIN(id) FROM messages WHERE direction='out' AND status='pending' "
        "AND conversation_id = ? AND id <> ?) AND m.next_attempt_at <= ? ORDER BY m.id LIMIT 1",
        (platform_message_id, sent_at, message_id, conversation_id, message_id, float(now)))
    return OutboxItem(message_of(rows[0]), rows[0]["channel"], rows[0]["c_external_id"],
                      rows[0]["attempts"]) if rows else None

