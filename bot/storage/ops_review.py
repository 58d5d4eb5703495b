"""Store operations for the review of a complaint's resolution (schema 13's ``tickets.review_*``).

A complaint at or above ``complaints.review.min_severity`` is not resolved by the agent at once:
the agent *proposes* the result (``review_state`` ``pending``), a supervisor *approves* it
(``approved``: then the customer is told and ``communicated_at`` is set) or *returns* it with a
note (``returned``: the agent proposes again). Each step is a compare-and-set, so two supervisors
deciding at once decide once. See :mod:`handoff.review`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.storage.base import Ticket

from .ops_desk import get_ticket
from .rows import iso, ticket_of
from .sql import All, Lock, Op, Run, transaction


@transaction
def propose_review(reference: str, *, result: str, by: str, at: datetime) -> Op[Ticket | None]:
    """Propose ``result`` for review; None if the ticket is resolved, missing, or already waiting
    for a review (nothing changes then). A new proposal clears an earlier approval that was already
    told (a reopened ticket is reviewed again); the last return's note is kept for the reviewer."""
    yield Lock(f"review:{reference}")
    n = yield Run("UPDATE tickets SET review_state='pending', proposed_result=?, proposed_by=?, proposed_at=?, "
                  "reviewed_by=NULL, reviewed_at=NULL, communicated_at=NULL, updated_at=? "
                  "WHERE reference=? AND resolved_at IS NULL AND COALESCE(review_state, '') <> 'pending' "
                  "AND NOT (COALESCE(review_state, '') = 'approved' AND communicated_at IS NULL)",
                  (result, by, iso(at), iso(at), reference))
    if n != 1:
        return None
    return (yield from get_ticket(reference))


@transaction
def decide_review(reference: str, *, approve: bool, by: str, at: datetime,
                  note: str | None = None) -> Op[Ticket | None]:
    """Approve or return a pending proposal (``note``: why it went back); None if it is not
    pending (decided meanwhile, withdrawn, or no such ticket)."""
    yield Lock(f"review:{reference}")
    where = "WHERE reference=? AND review_state='pending' AND resolved_at IS NULL"
    if approve:
        n = yield Run("UPDATE tickets SET review_state='approved', reviewed_by=?, reviewed_at=?, updated_at=? "
                      + where, (by, iso(at), iso(at), reference))
    else:
        n = yield Run("UPDATE tickets SET review_state='returned', reviewed_by=?, reviewed_at=?, review_note=?, "
                      "updated_at=? " + where, (by, iso(at), note, iso(at), reference))
    if n != 1:
        return None
    return (yield from get_ticket(reference))


def mark_communicated(reference: str, *, at: datetime) -> Op[bool]:
    """The customer was told the approved result (the communicate step is done); once."""
    n = yield Run("UPDATE tickets SET communicated_at=?, updated_at=? WHERE reference=? "
                  "AND review_state='approved' AND communicated_at IS NULL", (iso(at), iso(at), reference))
    return n == 1  # type: ignore[no-any-return]


def tickets_in_review(states: list[str] | None = None) -> Op[list[Ticket]]:
    """Open tickets whose review is in one of ``states`` (default: pending and returned), plus
    approved ones whose customer is not told yet; oldest proposal first."""
    wanted = states or ["pending", "returned", "approved"]
    marks = ", ".join("?" for _ in wanted)
    rows = yield All(f"SELECT * FROM tickets WHERE review_state IN ({marks}) AND resolved_at IS NULL "
                     "AND NOT (review_state = 'approved' AND communicated_at IS NOT NULL) "
                     "ORDER BY proposed_at, reference", tuple(wanted))
    return [ticket_of(r) for r in rows]


def report_reviews(since: str, until: str) -> Op[list[dict[str, Any]]]:
    """The report's review rows: tickets opened in [since, until) that were ever proposed."""
    rows = yield All("SELECT reference, category, team, created_at, resolved_at, review_state, proposed_at, "
                     "reviewed_at, communicated_at FROM tickets WHERE created_at >= ? AND created_at < ? "
                     "AND proposed_at IS NOT NULL ORDER BY created_at", (since, until))
    return [dict(r) for r in rows]


def report_compensations(since: str, until: str) -> Op[list[dict[str, Any]]]:
    """The report's compensation rows: requests made in [since, until), with their ticket's category."""
    rows = yield All("SELECT c.kind, c.amount, c.currency, c.state, t.category FROM compensations c "
                     "JOIN tickets t ON t.reference = c.ticket_reference "
                     "WHERE c.requested_at >= ? AND c.requested_at < ? ORDER BY c.requested_at", (since, until))
    return [dict(r) for r in rows]
