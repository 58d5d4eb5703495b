"""The record of a WhatsApp send, in one transaction with the sent mark (issue 20).

Before, a WhatsApp reply cost two store operations after the Graph API answered: the
connector's ``whatsapp_note_sent`` (now gone; its own transaction: the ``whatsapp:out:<wamid>`` link,
then a look for a ``failed`` status that overtook the send) and the outbox's
``mark_sent_next``. :func:`whatsapp_mark_sent_next` does both in ONE transaction, so the
link for the message's last (or only) part is not needed: ``messages.platform_message_id``,
written in the same commit, is how a status finds the message.

A ``failed`` status and this record are serialized by a lock on the wamid (PostgreSQL: a
transaction advisory lock, taken with ``BEGIN`` in one round trip; SQLite has one writer), so
either the status comes first (it is kept as ``whatsapp:status:<wamid>``, and this record
finds it and marks the message failed instead of sent) or the record comes first (the status
then finds the message by its wamid and marks it failed). Nothing is left in between.
"""

from __future__ import annotations

import json
from typing import Any

from .base import OutboxItem
from .ops_chat import due_outbox, mark_sent
from .sql import All, Lock, Op, Run, transaction

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
    for wamid in wamids[:-1]:
        # earlier parts of a split message: a status for one of them finds the message by this link
        yield Run("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING",
                  (f"whatsapp:out:{wamid}", str(message_id)))
    keys = [f"whatsapp:status:{w}" for w in wamids]
    rows = yield All(f"SELECT value FROM meta WHERE key IN ({','.join('?' * len(keys))})", keys)
    failure: str | None = None
    for row in rows:
        st: dict[str, Any] = json.loads(row["value"])
        if st.get("status") == "failed":
            failure = st.get("error") or NOT_DELIVERED
    if failure is not None:
        yield Run("UPDATE messages SET status='failed', platform_message_id=?, attempts=attempts+1, last_error=? "
                  "WHERE id=?", (wamids[-1], failure[:500], message_id))
    else:
        yield from mark_sent(message_id, wamids[-1])
    due = yield from due_outbox(now, limit=1, conversation_id=conversation_id)
    return (due[0] if due else None), failure

