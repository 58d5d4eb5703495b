"""The storage protocol and the records it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from bot.model import Conversation, Customer, Message, Outbound


@dataclass(frozen=True, slots=True)
class InboundResult:
    """What :meth:`Store.record_inbound` did: the stored message and whether it was a repeat."""

    message: Message
    conversation: Conversation
    customer: Customer
    duplicate: bool


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A pending outbound message with where it goes."""

    message: Message
    channel: str
    external_id: str
    attempts: int


@dataclass(frozen=True, slots=True)
class HandoffSpec:
    """A handoff to create together with a turn (see :meth:`Store.commit_turn`)."""

    team: str
    reason: str
    priority: int
    context: dict[str, Any]
    message: Callable[[int], Outbound]   # position in queue -> the reply telling the customer
    cause: str | None = None             # why (bot.model.HANDOFF_CAUSES); context["agent_reason"] says it in words


@dataclass(frozen=True, slots=True)
class TicketFollowedUp:
    """With :meth:`Store.commit_turn`: these replies ask the ticket's follow-up question."""

    reference: str


@dataclass(frozen=True, slots=True)
class TicketResolved:
    """With :meth:`Store.commit_turn`: these replies tell the customer the ticket is resolved.

    The turn is refused (:class:`bot.errors.StoreError`, nothing written) when the ticket was
    resolved meanwhile, so a customer is told once.
    """

    reference: str
    at: datetime
    agent: str | None
    result: str | None
    follow_up_at: datetime | None = None


TicketChange = TicketFollowedUp | TicketResolved


@dataclass(frozen=True, slots=True)
class HandoffRecord:
    id: str
    conversation_id: str
    state: str
    team: str
    reason: str
    priority: int
    agent: str | None
    created_at: datetime
    claimed_at: datetime | None = None
    closed_at: datetime | None = None
    context: dict[str, Any] = field(default_factory=dict, compare=False)
    cause: str | None = None       # bot.model.HANDOFF_CAUSES; None: handed over before schema 13


@dataclass(frozen=True, slots=True)
class Ticket:
    """A complaint being handled: its reference is what the customer quotes."""

    reference: str                 # "C-1042"
    customer_id: str
    conversation_id: str
    status: str                    # received | in_progress | resolved
    category: str | None
    severity: str                  # low | normal | high | critical
    department: str
    team: str | None               # None: the team the flow hands off to
    priority: int
    created_at: datetime
    fields: dict[str, Any] = field(default_factory=dict, compare=False)
    reasons: tuple[str, ...] = ()  # why it was classified so ("rule 2: category shipping", ...)
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    result: str | None = None      # what the agent told the customer on resolving
    csat: int | None = None        # 1-5, asked after resolution
    csat_comment: str | None = None
    followup_due_at: datetime | None = None   # when to ask whether it stayed solved
    reopened: int = 0
    sla_alerts: tuple[str, ...] = ()          # "acknowledge:near", "resolve:breached", ...
    origin: str | None = None                 # the turn step that opened it (ActionContext.key)
    # review by a supervisor before the customer is told (handoff.review): None (not needed or
    # not asked) | pending | returned | approved; who proposed what, who reviewed, and when the
    # customer was told the approved result
    review_state: str | None = None
    proposed_result: str | None = None
    proposed_by: str | None = None
    proposed_at: datetime | None = None
    reviewed_by: str | None = None
    reviewed_at: datetime | None = None
    review_note: str | None = None
    communicated_at: datetime | None = None

    def summary(self) -> dict[str, Any]:
        """What the agent's hand-over card shows about the ticket."""
        return {"reference": self.reference, "category": self.category, "severity": self.severity,
                "department": self.department, "priority": self.priority, "status": self.status,
                "reasons": list(self.reasons), "created_at": self.created_at.isoformat()}

    def review(self) -> dict[str, Any]:
        """The ticket's review step, for the desks (``state`` None: never proposed)."""
        def at(d: datetime | None) -> str | None:
            return d.isoformat() if d else None
        return {"state": self.review_state, "proposed_result": self.proposed_result,
                "proposed_by": self.proposed_by, "proposed_at": at(self.proposed_at),
                "reviewed_by": self.reviewed_by, "reviewed_at": at(self.reviewed_at), "note": self.review_note,
                "communicated_at": at(self.communicated_at)}


@dataclass(frozen=True, slots=True)
class AgentAccount:
    """A person who works the desk (``omnibot agent add``). Only hashes of secrets are kept."""

    id: str                        # "agt_..."
    name: str                      # shown to customers and other agents; the acting name on both desks
    email: str                     # lower case, unique: the login
    teams: tuple[str, ...]
    role: str                      # "agent" | "supervisor" | "admin" (handoff.roles)
    disabled: bool
    created_at: datetime
    session_gen: int = 0           # in every session cookie; bumped to end all sessions
    password_hash: str | None = field(default=None, repr=False, compare=False)
    token_hash: str | None = field(default=None, repr=False, compare=False)
