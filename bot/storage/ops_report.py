"""Read-only store operations behind ``omnibot report``, ``/metrics`` and ``/admin/metrics``
(see :mod:`bot.report` for the figures and :mod:`bot.storage.sql` for how an operation runs).

Each returns plain dicts of the columns the report needs; timestamps stay the stored
ISO-8601 UTC text (the same in both backends), so ``?`` bounds compare as text and
:mod:`bot.report` parses them. None of them writes, so they run on a read-only SQLite
store too (``SqliteStore(path, readonly=True)``).
"""

from __future__ import annotations

from typing import Any

from .sql import All, Op

_CONV_IN_PERIOD = "c.created_at >= ? AND c.created_at < ?"


def report_conversations(since: str, until: str) -> Op[list[dict[str, Any]]]:
    """Conversations created in [since, until): ``id``, ``created_at``."""
    rows = yield All(f"SELECT c.id, c.created_at FROM conversations c WHERE {_CONV_IN_PERIOD}", (since, until))
    return [dict(r) for r in rows]


def report_first_messages(since: str, until: str) -> Op[list[dict[str, Any]]]:
    """Per conversation created in [since, until) and direction (``in``/``out``), the first
    message's time: ``conversation_id``, ``direction``, ``first_at``."""
    rows = yield All(
        "SELECT m.conversation_id, m.direction, MIN(m.created_at) AS first_at FROM messages m "
        f"JOIN conversations c ON c.id = m.conversation_id WHERE {_CONV_IN_PERIOD} "
        "GROUP BY m.conversation_id, m.direction", (since, until))
    return [dict(r) for r in rows]


def report_handed_conversations(since: str, until: str) -> Op[list[str]]:
    """Ids of the conversations created in [since, until) that were ever handed to a person."""
    rows = yield All(
        "SELECT DISTINCT h.conversation_id FROM handoffs h JOIN conversations c ON c.id = h.conversation_id "
        f"WHERE {_CONV_IN_PERIOD}", (since, until))
    return [r["conversation_id"] for r in rows]


def report_pickups(since: str, until: str) -> Op[list[dict[str, Any]]]:
    """Handoffs queued in [since, until) that a person claimed: ``created_at``, ``claimed_at``."""
    rows = yield All(
        "SELECT h.created_at, h.claimed_at FROM handoffs h WHERE h.claimed_at IS NOT NULL "
        "AND h.created_at >= ? AND h.created_at < ?", (since, until))
    return [dict(r) for r in rows]


def report_tickets(since: str, until: str) -> Op[list[dict[str, Any]]]:
    """Tickets opened in [since, until), with their conversation's channel."""
    rows = yield All(
        "SELECT t.reference, t.customer_id, t.category, t.team, t.department, c.channel, t.created_at, "
        "t.resolved_at, t.reopened, t.csat FROM tickets t JOIN conversations c ON c.id = t.conversation_id "
        "WHERE t.created_at >= ? AND t.created_at < ? ORDER BY t.created_at, t.reference", (since, until))
    return [dict(r) for r in rows]
