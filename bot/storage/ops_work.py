"""Store operations for the desk's working records and the audit log (schema 13).

* ``notes``: internal notes on a conversation, written on either desk, never sent to the customer.
* ``desk_reads``: up to when each agent has read each conversation (the desk's unread counts).
* ``compensations``: a refund, replacement or discount code asked for on a complaint; ``state``
  is ``granted`` (within the asker's authority), ``pending`` (waits for a supervisor),
  ``approved`` or ``rejected``; who decided and when are kept.
* ``audit``: append-only, who did what (never updated, only erased by retention).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .rows import iso, new_id, parse_iso
from .sql import All, Lock, One, Op, Run


@dataclass(frozen=True, slots=True)
class Note:
    id: str
    conversation_id: str
    handoff_id: str | None
    author: str                 # the agent account's name
    text: str
    via: str                    # the desk it was written on: "web" | "slack" | ""
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "conversation_id": self.conversation_id, "handoff_id": self.handoff_id,
                "author": self.author, "text": self.text, "via": self.via, "created_at": self.created_at.isoformat()}


@dataclass(frozen=True, slots=True)
class Compensation:
    id: str
    ticket_reference: str
    kind: str                   # refund | replacement | discount
    amount: float
    currency: str
    state: str                  # granted | pending | approved | rejected
    requested_by: str
    requested_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "ticket": self.ticket_reference, "kind": self.kind, "amount": self.amount,
                "currency": self.currency, "state": self.state, "requested_by": self.requested_by,
                "requested_at": self.requested_at.isoformat(), "decided_by": self.decided_by,
                "decided_at": self.decided_at.isoformat() if self.decided_at else None, "note": self.note}


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: str
    at: datetime
    actor: str                  # "agent:Anna Smith", "cli", "system"
    action: str                 # "login", "claim", "export", "erase", "approve", ...
    customer_id: str | None
    target: str | None          # what it was done to: a handoff, ticket or conversation id
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at.isoformat(), "actor": self.actor, "action": self.action,
                "customer_id": self.customer_id, "target": self.target, "detail": self.detail}


# -- notes -------------------------------------------------------------------------

def _note(row: Any) -> Note:
    return Note(id=row["id"], conversation_id=row["conversation_id"], handoff_id=row["handoff_id"],
                author=row["author"], text=row["text"], via=row["via"],
                created_at=parse_iso(row["created_at"]))  # type: ignore[arg-type]


def add_note(conversation_id: str, *, author: str, text: str, at: datetime, handoff_id: str | None = None,
             via: str = "") -> Op[Note]:
    """An internal note on the conversation (never sent to the customer)."""
    note = Note(id=new_id("note"), conversation_id=conversation_id, handoff_id=handoff_id, author=author,
                text=text, via=via, created_at=at)
    yield Run("INSERT INTO notes(id, conversation_id, handoff_id, author, text, via, created_at) "
              "VALUES (?, ?, ?, ?, ?, ?, ?)",
              (note.id, conversation_id, handoff_id, author, text, via, iso(at)))
    return note


def notes_of(conversation_id: str) -> Op[list[Note]]:
    """The conversation's notes, oldest first."""
    rows = yield All("SELECT * FROM notes WHERE conversation_id=? ORDER BY created_at, id", (conversation_id,))
    return [_note(r) for r in rows]


# -- what each agent has read ----------------------------------------------------

def mark_read(agent: str, conversation_id: str, *, at: datetime) -> Op[None]:
    """``agent`` has read the conversation up to ``at`` (never moves back)."""
    yield Run("INSERT INTO desk_reads(agent, conversation_id, read_at) VALUES (?, ?, ?) "
              "ON CONFLICT(agent, conversation_id) DO UPDATE SET read_at=excluded.read_at "
              "WHERE excluded.read_at > desk_reads.read_at", (agent, conversation_id, iso(at)))
    return None


def unread_counts(agent: str, conversation_ids: list[str]) -> Op[dict[str, int]]:
    """Per conversation: the customer's messages after ``agent`` last read it (all of them if never)."""
    out: dict[str, int] = {}
    for cid in conversation_ids:
        row = yield One("SELECT COUNT(*) AS n FROM messages m WHERE m.conversation_id=? AND m.direction='in' "
                        "AND m.created_at > COALESCE((SELECT read_at FROM desk_reads WHERE agent=? "
                        "AND conversation_id=?), '')", (cid, agent, cid))
        out[cid] = int(row["n"])
    return out


# -- compensations ---------------------------------------------------------------

def _compensation(row: Any) -> Compensation:
    return Compensation(id=row["id"], ticket_reference=row["ticket_reference"], kind=row["kind"],
                        amount=float(row["amount"]), currency=row["currency"], state=row["state"],
                        requested_by=row["requested_by"],
                        requested_at=parse_iso(row["requested_at"]),  # type: ignore[arg-type]
                        decided_by=row["decided_by"], decided_at=parse_iso(row["decided_at"]), note=row["note"])


def add_compensation(ticket_reference: str, *, kind: str, amount: float, currency: str, state: str,
                     requested_by: str, at: datetime, note: str | None = None) -> Op[Compensation]:
    """Record a compensation asked for on a ticket: ``granted`` (decided by the asker, within their
    authority) or ``pending`` (a supervisor decides)."""
    c = Compensation(id=new_id("cmp"), ticket_reference=ticket_reference, kind=kind, amount=amount,
                     currency=currency, state=state, requested_by=requested_by, requested_at=at,
                     decided_by=requested_by if state == "granted" else None,
                     decided_at=at if state == "granted" else None, note=note)
    yield Run("INSERT INTO compensations(id, ticket_reference, kind, amount, currency, state, requested_by, "
              "requested_at, decided_by, decided_at, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
              (c.id, ticket_reference, kind, amount, currency, state, requested_by, iso(at), c.decided_by,
               iso(c.decided_at) if c.decided_at else None, note))
    return c


def compensations_of(ticket_reference: str) -> Op[list[Compensation]]:
    rows = yield All("SELECT * FROM compensations WHERE ticket_reference=? ORDER BY requested_at, id",
                     (ticket_reference,))
    return [_compensation(r) for r in rows]


def pending_compensations() -> Op[list[Compensation]]:
    """Requests waiting for a supervisor, oldest first."""
    rows = yield All("SELECT * FROM compensations WHERE state='pending' ORDER BY requested_at, id")
    return [_compensation(r) for r in rows]


def decide_compensation(compensation_id: str, *, approve: bool, by: str, at: datetime,
                        note: str | None = None) -> Op[Compensation | None]:
    """Approve or reject a pending request; None if it is not pending (decided meanwhile, or no such id)."""
    yield Lock(f"compensation:{compensation_id}")
    n = yield Run("UPDATE compensations SET state=?, decided_by=?, decided_at=?, note=COALESCE(?, note) "
                  "WHERE id=? AND state='pending'",
                  ("approved" if approve else "rejected", by, iso(at), note, compensation_id))
    if n != 1:
        return None
    row = yield One("SELECT * FROM compensations WHERE id=?", (compensation_id,))
    return _compensation(row)


# -- audit -----------------------------------------------------------------------

def _audit(row: Any) -> AuditEntry:
    return AuditEntry(id=row["id"], at=parse_iso(row["at"]), actor=row["actor"],  # type: ignore[arg-type]
                      action=row["action"], customer_id=row["customer_id"], target=row["target"],
                      detail=json.loads(row["detail"] or "{}"))


def audit(actor: str, action: str, *, at: datetime, customer_id: str | None = None, target: str | None = None,
          detail: dict[str, Any] | None = None) -> Op[AuditEntry]:
    """Append one entry to the audit log."""
    entry = AuditEntry(id=new_id("aud"), at=at, actor=actor, action=action, customer_id=customer_id,
                       target=target, detail=dict(detail or {}))
    yield Run("INSERT INTO audit(id, at, actor, action, customer_id, target, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
              (entry.id, iso(at), actor, action, customer_id, target, json.dumps(entry.detail)))
    return entry


def audit_log(*, since: datetime | None = None, actor: str | None = None, customer_id: str | None = None,
              limit: int = 1000) -> Op[list[AuditEntry]]:
    """Entries oldest first, filtered by time, actor (exact) and customer."""
    where, args = ["1=1"], []   # type: ignore[var-annotated]
    if since is not None:
        where.append("at >= ?")
        args.append(iso(since))
    if actor is not None:
        where.append("actor = ?")
        args.append(actor)
    if customer_id is not None:
        where.append("customer_id = ?")
        args.append(customer_id)
    rows = yield All(f"SELECT * FROM audit WHERE {' AND '.join(where)} ORDER BY at, id LIMIT ?",
                     (*args, max(1, min(limit, 100_000))))
    return [_audit(r) for r in rows]
