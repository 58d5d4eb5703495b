"""Read-only store operations behind the per-agent figures, handoff causes and the honest bot
containment of ``omnibot report`` and ``/admin/metrics`` (see :mod:`bot.figures`).

Like :mod:`bot.storage.ops_report`: plain dicts, timestamps as the stored ISO-8601 UTC text,
no writes (they run on a read-only SQLite store too). Agent account changes
(``omnibot agent enable|set``) are here as well, beside :mod:`bot.storage.ops_agents`.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from .sql import All, Op, Run

_CONV_IN_PERIOD = "c.created_at >= ? AND c.created_at < ?"


def report_handoff_rows(since: str, until: str) -> Op[list[dict[str, Any]]]:
    """Handoffs queued in [since, until): ``id``, ``conversation_id``, ``state``, ``agent``,
    ``cause``, ``created_at``, ``claimed_at``, ``closed_at``."""
    rows = yield All(
        "SELECT h.id, h.conversation_id, h.state, h.agent, h.cause, h.created_at, h.claimed_at, h.closed_at "
        "FROM handoffs h WHERE h.created_at >= ? AND h.created_at < ? ORDER BY h.created_at, h.id", (since, until))
    return [dict(r) for r in rows]


def report_agent_replies(since: str, until: str) -> Op[list[dict[str, Any]]]:
    """People's replies in the conversations of the handoffs queued in [since, until):
    ``conversation_id``, ``created_at``, ``sender_name``, ``payload`` (which names the account)."""
    rows = yield All(
        "SELECT m.conversation_id, m.created_at, m.sender_name, m.payload FROM messages m "
        "WHERE m.direction='out' AND m.role='agent' AND m.conversation_id IN "
        "(SELECT h.conversation_id FROM handoffs h WHERE h.created_at >= ? AND h.created_at < ?) "
        "ORDER BY m.conversation_id, m.id", (since, until))
    return [dict(r) for r in rows]


def report_resolved_tickets(since: str, until: str) -> Op[list[dict[str, Any]]]:
    """Tickets opened in [since, until) and resolved: ``reference``, ``resolved_by``, ``csat``."""
    rows = yield All(
        "SELECT t.reference, t.resolved_by, t.csat FROM tickets t WHERE t.created_at >= ? AND t.created_at < ? "
        "AND t.resolved_at IS NOT NULL ORDER BY t.reference", (since, until))
    return [dict(r) for r in rows]


def report_conversation_messages(since: str, until: str) -> Op[list[dict[str, Any]]]:
    """Every message of the conversations created in [since, until), in order:
    ``conversation_id``, ``customer_id``, ``direction``, ``role``, ``created_at``, ``payload``
    (an outbound payload says how a bot turn ended; inbound payloads are left out)."""
    rows = yield All(
        "SELECT m.conversation_id, c.customer_id, m.direction, m.role, m.created_at, "
        "CASE WHEN m.direction='out' THEN m.payload END AS payload FROM messages m "
        f"JOIN conversations c ON c.id = m.conversation_id WHERE {_CONV_IN_PERIOD} "
        "ORDER BY m.conversation_id, m.created_at, m.id", (since, until))
    return [dict(r) for r in rows]


def report_customer_messages(since: str, until: str, upto: str) -> Op[list[dict[str, Any]]]:
    """What the customers of the conversations created in [since, until) wrote from ``since``
    up to ``upto``, in any conversation: ``customer_id``, ``conversation_id``, ``created_at``."""
    rows = yield All(
        "SELECT c.customer_id, m.conversation_id, m.created_at FROM messages m "
        "JOIN conversations c ON c.id = m.conversation_id WHERE m.direction='in' "
        "AND m.created_at >= ? AND m.created_at < ? AND c.customer_id IN "
        f"(SELECT c.customer_id FROM conversations c WHERE {_CONV_IN_PERIOD}) "
        "ORDER BY c.customer_id, m.created_at", (since, upto, since, until))
    return [dict(r) for r in rows]


# -- agent accounts ----------------------------------------------------------------------


def update_agent(email: str, *, name: str | None = None, teams: Sequence[str] | None = None,
                 role: str | None = None) -> Op[bool]:
    """Change an account's name, teams or role (those given); False if there is no such e-mail.

    Sessions go on: every request reads the account's role and teams afresh.
    """
    sets: list[str] = []
    args: list[Any] = []
    if name is not None:
        sets.append("name=?")
        args.append(name)
    if teams is not None:
        sets.append("teams=?")
        args.append(json.dumps(list(teams)))
    if role is not None:
        sets.append("role=?")
        args.append(role)
    if not sets:
        return False
    n = yield Run(f"UPDATE agents SET {', '.join(sets)} WHERE email=?", (*args, email.strip().lower()))
    return n == 1  # type: ignore[no-any-return]
