"""The storage protocol and the records it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from bot.storage.health import StorageHealth
from bot.model import Conversation, ConversationState, Customer, Inbound, Message, Outbound


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

    def summary(self) -> dict[str, Any]:
        """What the agent's hand-over card shows about the ticket."""
        return {"reference": self.reference, "category": self.category, "severity": self.severity,
                "department": self.department, "priority": self.priority, "status": self.status,
                "reasons": list(self.reasons), "created_at": self.created_at.isoformat()}


@runtime_checkable
class Store(Protocol):
    """Everything the runtime, delivery and handoff queue persist."""

    health: StorageHealth   # whether writes go through now (bot.storage.health)

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def probe(self) -> bool: ...   # one small write; True if storage can write

    # key/value for small settings (generated secrets, counters)
    async def get_meta(self, key: str) -> str | None: ...
    async def set_meta_if_absent(self, key: str, value: str) -> str: ...
    async def set_meta(self, key: str, value: str) -> None: ...
    async def next_sequence(self, name: str, start: int = 1000) -> int: ...

    # customers and conversations
    async def record_inbound(self, inbound: Inbound) -> InboundResult: ...
    async def load_turn(self, conversation_id: str) -> tuple[Conversation, Customer, dict[str, Any] | None] | None: ...
    async def get_conversation(self, conversation_id: str) -> Conversation | None: ...
    async def latest_conversation(self, channel: str, external_id: str) -> Conversation | None: ...
    async def identities(self, customer_id: str) -> list[tuple[str, str]]: ...
    async def get_customer(self, customer_id: str) -> Customer | None: ...
    async def open_conversation(self, channel: str, external_id: str) -> Conversation | None: ...
    async def customer_conversations(self, customer_id: str) -> list[Conversation]: ...
    async def set_conversation_state(self, conversation_id: str, state: ConversationState) -> None: ...

    # messages
    async def history(self, conversation_id: str, *, after_id: int = 0, limit: int = 200) -> list[Message]: ...
    async def unprocessed_inbound(self, conversation_id: str) -> list[Message]: ...
    async def conversations_with_unprocessed(self) -> list[str]: ...
    async def load_flow_state(self, conversation_id: str) -> dict[str, Any] | None: ...
    async def commit_turn(self, conversation_id: str, *, inbound_id: int | None,
                          replies: Sequence[Outbound], flow_state: dict[str, Any] | None,
                          state: ConversationState | None = None, keep_flow_state: bool = False,
                          handoff: HandoffSpec | None = None,
                          ticket: TicketChange | None = None) -> list[Message]: ...

    # outbox
    async def due_outbox(self, now: float, *, limit: int = 100, exclude: Sequence[str] = (),
                         conversation_id: str | None = None) -> list[OutboxItem]: ...
    async def mark_sent(self, message_id: int, platform_message_id: str) -> None: ...
    async def mark_retry(self, message_id: int, *, next_attempt_at: float, error: str) -> None: ...
    async def mark_failed(self, message_id: int, *, error: str) -> None: ...
    async def next_outbox_due(self) -> float | None: ...

    # desks outside the bot (Slack): card/thread per handoff, and event ids already handled
    async def desk_thread(self, desk: str, handoff_id: str) -> dict[str, Any] | None: ...
    async def desk_thread_by_ts(self, desk: str, channel: str, ts: str) -> dict[str, Any] | None: ...
    async def save_desk_thread(self, desk: str, handoff_id: str, *, channel: str, ts: str, team: str,
                               relayed_upto: int) -> None: ...
    async def update_desk_thread(self, desk: str, handoff_id: str, *, relayed_upto: int | None = None,
                                 alerted_at: datetime | None = None, card_hash: str | None = None,
                                 warned: int | None = None) -> None: ...
    async def claim_desk_alert(self, desk: str, handoff_id: str, *, at: datetime,
                               older_than: datetime) -> bool: ...   # True: this caller fires it, once
    async def failed_outbound(self, conversation_id: str, *, since: datetime) -> list[tuple[int, str]]: ...
    async def first_seen(self, source: str, event_id: str) -> bool: ...

    # side effects keyed to the turn step that caused them (see flows.turn.ActionContext.key)
    async def get_effect(self, key: str) -> Any: ...
    async def save_effect(self, key: str, value: Any) -> None: ...

    # handoffs
    async def create_handoff(self, conversation_id: str, *, team: str, reason: str,
                             priority: int = 0, context: dict[str, Any] | None = None) -> HandoffRecord: ...
    async def get_handoff(self, handoff_id: str) -> HandoffRecord | None: ...
    async def active_handoff(self, conversation_id: str) -> HandoffRecord | None: ...
    async def latest_handoff(self, conversation_id: str) -> HandoffRecord | None: ...   # any state
    async def list_handoffs(self, *, states: Sequence[str], team: str | None = None) -> list[HandoffRecord]: ...
    async def transition_handoff(self, handoff_id: str, *, expected: str, new: str,
                                 agent: str | None = None, team: str | None = None,
                                 conversation_state: ConversationState | None = None,
                                 replies: Sequence[Outbound] = (),
                                 flow_state: dict[str, Any] | None = None) -> bool: ...
    async def queue_position(self, handoff_id: str) -> int: ...

    # complaint tickets
    async def create_ticket(self, ticket: Ticket) -> Ticket: ...
    async def ticket_by_origin(self, origin: str) -> Ticket | None: ...
    async def get_ticket(self, reference: str) -> Ticket | None: ...
    async def customer_tickets(self, customer_id: str, *, category: str | None = None) -> list[Ticket]: ...
    async def conversation_ticket(self, conversation_id: str) -> Ticket | None: ...
    async def resolve_ticket(self, reference: str, *, at: datetime, agent: str | None,
                             result: str | None, follow_up_at: datetime | None = None) -> Ticket | None: ...
    async def reopen_ticket(self, reference: str, *, at: datetime) -> Ticket | None: ...
    async def move_ticket(self, reference: str, *, conversation_id: str) -> None: ...
    async def open_tickets(self) -> list[Ticket]: ...
    async def add_sla_alert(self, reference: str, alert: str) -> bool: ...
    async def due_followups(self, now: datetime, *, limit: int = 100) -> list[Ticket]: ...
    async def mark_followed_up(self, reference: str, *, at: datetime) -> None: ...
    async def latest_customer_conversation(self, customer_id: str) -> Conversation | None: ...

    # linking a customer's accounts on different channels (one-time codes)
    async def create_link_code(self, customer_id: str, code: str, *, at: datetime,
                               expires_at: datetime) -> None: ...
    async def redeem_link_code(self, code: str, customer_id: str, *, at: datetime) -> str | None: ...
    async def record_csat(self, reference: str, *, score: int, comment: str | None,
                          at: datetime) -> Ticket | None: ...

    # the report's reads (bot.storage.ops_report): ISO-8601 UTC text bounds, plain rows
    async def report_conversations(self, since: str, until: str) -> list[dict[str, Any]]: ...
    async def report_first_messages(self, since: str, until: str) -> list[dict[str, Any]]: ...
    async def report_handed_conversations(self, since: str, until: str) -> list[str]: ...
    async def report_pickups(self, since: str, until: str) -> list[dict[str, Any]]: ...
    async def report_tickets(self, since: str, until: str) -> list[dict[str, Any]]: ...
