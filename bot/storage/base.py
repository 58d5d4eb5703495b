"""The storage protocol and the records it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from bot.model import Conversation, Customer, Message, Outbound


@dataclass(frozen=True, slots=True)
class TurnBasis:
    """What a new message's storing read of its conversation, as stored (issue 20).

    The message's turn may start from it instead of reading the conversation again
    (``turn_start``), if its commit proves nothing changed in between: ``commit_turn(...,
    basis=...)`` writes only while the conversation (state, language, flow state, customer),
    the customer (name, attributes) are still as here, the message is still unanswered and no
    older message of the conversation is; else it raises :class:`bot.errors.TurnStale` and
    writes nothing. The comparison is of values, so any writer's change is caught, whichever
    instance made it and whether or not it touched ``updated_at``.
    """

    message_id: int
    state: str
    language: str            # '' for none
    flow_state: str          # the stored JSON text; '' for none
    customer_id: str
    display_name: str
    attributes: str          # the stored JSON text

    #: the condition on ``conversations`` (the row being updated) and its arguments' order
    SQL = ("state=? AND COALESCE(language, '')=? AND COALESCE(flow_state, '')=? AND customer_id=? "
           "AND EXISTS (SELECT 1 FROM customers WHERE id=? AND display_name=? AND attributes=?) "
           "AND EXISTS (SELECT 1 FROM messages WHERE id=? AND status='received') "
           "AND NOT EXISTS (SELECT 1 FROM messages WHERE conversation_id=? AND direction='in' "
           "AND status='received' AND id < ?)")

    def args(self, conversation_id: str) -> tuple[Any, ...]:
        return (self.state, self.language, self.flow_state, self.customer_id, self.customer_id, self.display_name,
                self.attributes, self.message_id, conversation_id, self.message_id)


@dataclass(frozen=True, slots=True)
class InboundResult:
    """What :meth:`Store.record_inbound` did: the stored message and whether it was a repeat;
    for a new message, what its turn may start from (see :class:`TurnBasis`)."""

    message: Message
    conversation: Conversation
    customer: Customer
    duplicate: bool
    basis: TurnBasis | None = None


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
