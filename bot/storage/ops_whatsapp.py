"""Store operations the WhatsApp connector needs (see :mod:`connectors.whatsapp`).

No table of their own: what WhatsApp tells us beyond messages lives in ``meta`` rows,
so no migration is needed and the SQL is the portable subset of SQLite and PostgreSQL.

- ``whatsapp:in:<wa_id>``: when the customer last wrote (WhatsApp's timestamp, epoch seconds,
  zero-padded so text order is number order): the 24-hour window is computed from it.
- ``whatsapp:out:<wamid>``: the outbound message (our id) a WhatsApp message id belongs to (each
  part's, for a message sent in several), written with the sent mark
  (:mod:`bot.storage.ops_whatsapp_send`): how a status finds its message.
- ``whatsapp:status:<wamid>``: the latest delivery status, applied monotonically
  (sent < delivered < read; failed sticks, with its reason): ``failed`` by
  :func:`whatsapp_apply_status`, the others by :func:`whatsapp_note_status` (one statement).
"""

from __future__ import annotations

import json
from typing import Any

from .sql import BACKEND, Lock, One, Op, Run, transaction

#: statuses only move forward; failed is never overwritten
STATUS_RANK = {"sent": 1, "delivered": 2, "read": 3, "failed": 9}


def _pad(at: int) -> str:
    return f"{max(0, int(at)):012d}"


def whatsapp_saw_inbound(wa_id: str, at: int) -> Op[None]:
    """Remember that the customer ``wa_id`` wrote at ``at`` (epoch seconds); an earlier time
    (a late redelivery) never moves it back. (The connector has ``record_inbound`` do it, with
    the message: ``Inbound.heard_at``.)"""
    yield from saw_inbound("whatsapp", wa_id, at)


def saw_inbound(channel: str, external_id: str, at: int) -> Op[None]:
    """``whatsapp_saw_inbound`` for any channel (meta ``<channel>:in:<external_id>``)."""
    yield Run(SAW_INBOUND, saw_inbound_args(channel, external_id, at))


#: the window's upsert: a later time replaces an earlier one, never the reverse (PostgreSQL's
#: record_inbound runs the same statement inside its own: bot.storage.ops_pg.record_inbound_pg)
SAW_INBOUND = ("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value "
               "WHERE excluded.value > meta.value")


def saw_inbound_args(channel: str, external_id: str, at: int) -> tuple[str, str]:
    """:data:`SAW_INBOUND`'s parameters: the meta key and the zero-padded time."""
    return f"{channel}:in:{external_id}", _pad(at)


def whatsapp_last_inbound(wa_id: str) -> Op[int | None]:
    """When the customer ``wa_id`` last wrote (epoch seconds), or None."""
    row = yield One("SELECT value FROM meta WHERE key=?", (f"whatsapp:in:{wa_id}",))
    return int(row["value"]) if row else None


def whatsapp_inbound_seen(wamid: str) -> Op[bool]:
    """Whether the customer message ``wamid`` is stored already (a redelivery)."""
    row = yield One("SELECT id FROM messages WHERE channel='whatsapp' AND platform_message_id=? "
                    "AND direction='in'", (wamid,))
    return row is not None


@transaction
def whatsapp_apply_status(wamid: str, status: str, *, error: str = "") -> Op[dict[str, Any]]:
    """Record a delivery status of our message ``wamid``; mark the message failed on ``failed``.

    Returns ``{"outcome": ..., "message_id", "conversation_id", "role", "sender"}`` where outcome is
    ``failed_now`` (it was sent, now it is failed: tell the desks), ``recorded`` (stored; nothing
    else changes), ``in_flight`` (a failure for a message linked but not yet marked sent, which only
    a link written by an omnibot before ops_whatsapp_send leaves: ask again shortly) or ``unknown`` (not a message of ours, or not yet known: kept for the send).
    """
    # serialized with the send's record (ops_whatsapp_send.whatsapp_mark_sent_next): one of the
    # two sees the other's write, so a failure that overtakes the send is never lost
    yield Lock(f"wamid:{wamid}")
    key = f"whatsapp:status:{wamid}"
    # the status kept so far and the message, in one statement (always one row; NULLs for what is
    # not there): a status comes for every reply, several times (sent, delivered, read). The
    # message by the send's link (primary-key lookups): outbound messages have no index on their
    # wamid. Read before the status is written, as nothing below writes the link or the message.
    msg = yield One("SELECT s.value AS old, m.id, m.conversation_id, m.status, m.role, m.sender_name "
                    "FROM (SELECT 1 AS one) AS x LEFT JOIN meta s ON s.key=? LEFT JOIN meta k ON k.key=? "
                    "LEFT JOIN messages m ON m.id = CAST(k.value AS INTEGER)", (key, f"whatsapp:out:{wamid}"))
    old = json.loads(msg["old"]) if msg["old"] is not None else {}
    if STATUS_RANK.get(status, 0) > STATUS_RANK.get(old.get("status", ""), 0):
        value = json.dumps({"status": status, "error": error[:500]})
        yield Run("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                  (key, value))
    if msg["id"] is None:
        return {"outcome": "unknown"}
    out = {"message_id": msg["id"], "conversation_id": msg["conversation_id"], "role": msg["role"],
           "sender": msg["sender_name"]}
    if status != "failed" or msg["status"] == "failed":
        return {"outcome": "recorded", **out}
    if msg["status"] == "pending":
        return {"outcome": "in_flight", **out}
    reason = error or "WhatsApp reported the message as not delivered"
    n = yield Run("UPDATE messages SET status='failed', last_error=? WHERE id=? AND status='sent'",
                  (reason[:500], msg["id"]))
    return {"outcome": "failed_now" if n else "recorded", **out}


def whatsapp_note_status(wamid: str, status: str) -> Op[None]:
    """Keep ``sent``, ``delivered`` or ``read`` as the latest status of our message ``wamid``, only
    forward (as :func:`whatsapp_apply_status` keeps it): ONE statement, without a lock or a transaction.

    Meta sends these for every reply, often all three: each was a transaction with a lock and
    two reads (issue 20). None of them changes the message (only ``failed`` does, which takes
    :func:`whatsapp_apply_status`), so nothing is serialized with the send's record here: a send
    recorded before or after one of them is marked sent either way. The upsert itself moves the
    status forward only: on PostgreSQL a concurrent write of the same key is waited for and the
    condition checked on the row it left, so ``failed`` still sticks and ``read`` is not undone.
    """
    rank = STATUS_RANK.get(status, 0)
    if status == "failed" or not rank:
        raise ValueError(f"whatsapp_note_status takes sent, delivered or read, not {status!r}")
    kept = "meta.value::json ->> 'status'" if (yield BACKEND) == "postgresql" else "json_extract(meta.value, '$.status')"
    ranks = " ".join(f"WHEN '{s}' THEN {r}" for s, r in STATUS_RANK.items())
    yield Run("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value "
              f"WHERE (CASE {kept} {ranks} ELSE 0 END) < ?",
              (f"whatsapp:status:{wamid}", json.dumps({"status": status, "error": ""}), rank))


def whatsapp_status(wamid: str) -> Op[dict[str, Any] | None]:
    """The latest delivery status recorded for ``wamid``: ``{"status", "error"}``, or None."""
    row = yield One("SELECT value FROM meta WHERE key=?", (f"whatsapp:status:{wamid}",))
    return json.loads(row["value"]) if row else None
