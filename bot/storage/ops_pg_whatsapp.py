"""PostgreSQL's one-statement form of the record of a WhatsApp send (issue 20).

:func:`~bot.storage.ops_whatsapp_send.whatsapp_mark_sent_next` on SQLite runs, after its locks,
the links' INSERT, the conditional sent mark and the next due reply's read as three statements
(more when a status came first); on PostgreSQL :func:`whatsapp_mark_sent_next_pg` does them in
ONE data-modifying ``WITH`` and hands back the statuses found, so the rare case (a status of
these wamids recorded before this record) finishes as on SQLite, in the same transaction.

Why the result is the same:

- The parts write different rows (``meta`` links; the one message) and read, through the
  statement's one snapshot, only rows no part writes: the ``whatsapp:status:`` keys are not
  the ``whatsapp:out:`` links, and the next due reply's read leaves ``message_id`` out, which
  after any of the marks (sent, or failed in the rare case) is no longer pending (the marks
  change no other message), as :func:`~bot.storage.ops_pg.mark_sent_next_pg` argues.
- The wamids' locks are NOT in this statement: a statement's snapshot is taken when it starts,
  so a status committed while it waited for a lock would not be seen. They stay separate
  requests before it (the first one travels with ``BEGIN``, alone or in a group commit).
"""

from __future__ import annotations

from typing import Any

from .base import OutboxItem
from .rows import message_of
from .sql import All, Op


def whatsapp_mark_sent_next_pg(message_id: int, wamids: list[str], *, sent_at: str, conversation_id: str,
                               now: float) -> Op[tuple[bool, list[str], OutboxItem | None]]:
    """The links, the sent mark unless a status of ``wamids`` is recorded, and the conversation's
    next due reply, in one statement (run it under the wamids' locks, in a transaction).

    Returns ``(marked sent, the recorded statuses' JSON values when not, next due reply or None)``.
    """
    keys = [f"whatsapp:status:{w}" for w in wamids]
    marks = ",".join("?" * len(keys))
    rows = yield All(
        f"WITH l AS (INSERT INTO meta(key, value) VALUES {','.join(['(?, ?)'] * len(wamids))} "
        "ON CONFLICT(key) DO NOTHING), "
        "s AS (UPDATE messages SET status='sent', platform_message_id=?, sent_at=?, attempts=attempts+1, "
        f"last_error=NULL WHERE id=? AND NOT EXISTS (SELECT 1 FROM meta WHERE key IN ({marks})) RETURNING id) "
        "SELECT (SELECT count(*) FROM s) AS s_done, "
        f"(SELECT array_agg(value) FROM meta WHERE key IN ({marks})) AS s_statuses, n.* "
        "FROM (SELECT 1 AS one) AS x LEFT JOIN ("
        "SELECT m.*, c.external_id AS c_external_id FROM messages m JOIN conversations c ON c.id = m.conversation_id "
        "WHERE m.id IN (SELECT MIN(id) FROM messages WHERE direction='out' AND status='pending' "
        "AND conversation_id = ? AND id <> ?) AND m.next_attempt_at <= ? ORDER BY m.id LIMIT 1) AS n ON true",
        (*(x for w in wamids for x in (f"whatsapp:out:{w}", str(message_id))),
         wamids[-1], sent_at, message_id, *keys, *keys, conversation_id, message_id, float(now)))
    row: Any = rows[0]
    nxt = (OutboxItem(message_of(row), row["channel"], row["c_external_id"], row["attempts"])
           if row["id"] is not None else None)
    return bool(row["s_done"]), list(row["s_statuses"] or ()), nxt
