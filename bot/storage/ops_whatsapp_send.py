"""The record of a WhatsApp send, in one transaction with the sent mark (issue 20).

Before, a WhatsApp reply cost two store operations after the Graph API answered: the
connector's ``whatsapp_note_sent`` (now gone; its own transaction: the ``whatsapp:out:<wamid>``
link, then a look for a ``failed`` status that overtook the send) and the outbox's
``mark_sent_next``. :func:`whatsapp_mark_sent_next` does both in ONE transaction.

A ``failed`` status and this record are serialized by a lock on the wamid (PostgreSQL: a
transaction advisory lock, taken with ``BEGIN`` in one round trip; SQLite has one writer), so
either the status comes first (it is kept as ``whatsapp:status:<wamid>``, and this record
finds it and marks the message failed instead of sent) or the record comes first (the status
then finds the message by its wamid and marks it failed). Nothing is left in between.

On PostgreSQL the links, the mark and the next due reply's read are one statement after the
locks (:mod:`bot.storage.ops_pg_whatsapp`); SQLite runs them as several.
"""

from __future__ import annotations

import json
from typing import Any

from bot.model import utcnow

from .base import OutboxItem
from .ops_chat import due_outbox, mark_sent
from .ops_pg_whatsapp import whatsapp_mark_sent_next_pg
from .rows import iso
from .sql import BACKEND, All, Lock, Op, Run, transaction

#: what a failed send looks like when WhatsApp gave no reason
NOT_DELIVERED = "WhatsApp reported the message as not delivered"


@transaction
def whatsapp_mark_sent_next(message_id: int, wamids: list[str], *, conversation_id: str,
                            now: float) -> Op[tuple[OutboxItem | None, str | None]]:
    """Record that outbound message ``message_id`` went out as the WhatsApp messages ``wamids``
    (in order; the last one is its ``platform_message_id``), then read the conversation's next
    due reply (as :func:`~bot.storage.ops_hotpath.mark_sent_next`).

    Returns ``(next due reply or None, failure)``: ``failure`` is the reason when a ``failed``
    status for one of ``wamids`` arrived before this record (the message is then marked
    failed, not sent; tell the desks), else None.
    """
    if not wamids:
        raise ValueError("whatsapp_mark_sent_next needs the message's wamids")
    for wamid in wamids:
        yield Lock(f"wamid:{wamid}")
    if (yield BACKEND) == "postgresql":
        # the links, the usual case's mark and the next due reply in one statement (after the
        # locks: see ops_pg_whatsapp); the statuses found, if any, finish below as on SQLite
        done, values, nxt = yield from whatsapp_mark_sent_next_pg(
            message_id, wamids, sent_at=iso(utcnow()), conversation_id=conversation_id, now=now)
        failure = None if done or not values else (yield from _after_status(message_id, wamids, values))
        return nxt, failure
    # each wamid's link to the message: how a status finds it (by primary key; no index on the
    # wamids of outbound messages), one statement for all of a split message's parts
    yield Run(f"INSERT INTO meta(key, value) VALUES {','.join(['(?, ?)'] * len(wamids))} "
              "ON CONFLICT(key) DO NOTHING",
              tuple(x for w in wamids for x in (f"whatsapp:out:{w}", str(message_id))))
    keys = [f"whatsapp:status:{w}" for w in wamids]
    marks = ",".join("?" * len(keys))
    # the usual case, in one statement: no status of these wamids came before this record
    done = yield Run("UPDATE messages SET status='sent', platform_message_id=?, sent_at=?, attempts=attempts+1, "
                     f"last_error=NULL WHERE id=? AND NOT EXISTS (SELECT 1 FROM meta WHERE key IN ({marks}))",
                     (wamids[-1], iso(utcnow()), message_id, *keys))
    failure: str | None = None
    if not done:
        rows = yield All(f"SELECT value FROM meta WHERE key IN ({marks})", keys)
        failure = yield from _after_status(message_id, wamids, [row["value"] for row in rows])
    due = yield from due_outbox(now, limit=1, conversation_id=conversation_id)
    return (due[0] if due else None), failure


def _after_status(message_id: int, wamids: list[str], values: list[str]) -> Op[str | None]:
    """The record's mark when statuses of ``wamids`` (their JSON ``values``) came before it:
    failed, with the reason, if one is ``failed`` (the reason returned), else sent."""
    failure: str | None = None
    for value in values:
        st: dict[str, Any] = json.loads(value)
        if st.get("status") == "failed":
            failure = st.get("error") or NOT_DELIVERED
    if failure is not None:
        yield Run("UPDATE messages SET status='failed', platform_message_id=?, attempts=attempts+1, "
                  "last_error=? WHERE id=?", (wamids[-1], failure[:500], message_id))
    else:       # a sent, delivered or read status came first: sent, as always
        yield from mark_sent(message_id, wamids[-1])
    return failure

