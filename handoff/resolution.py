"""Telling a customer their complaint is resolved, then asking how satisfied they are.

Two ways in: an agent resolves the conversation holding the complaint's handoff (the queue's
``on_resolved`` hook: the result and the survey go into that conversation), or an agent resolves
a complaint from the desk's ticket list, for complaints nobody is talking about right now: then
the result goes to the conversation where the customer wrote last, on whatever channel.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from bot import privacy
from bot.errors import OmnibotError, StorageUnavailable, StoreError
from bot.locks import KeyedLock
from bot.model import ConversationState, Outbound
from bot.runtime import first_name, start_flow_in
from bot.storage import HandoffRecord, Store, Ticket, TicketResolved
from flows import FlowEngine

from .tickets import Tickets

log = logging.getLogger(__name__)


class ResolutionError(OmnibotError):
    status = 409


class Resolutions:
    def __init__(self, *, store: Store, engine: FlowEngine, tickets: Tickets, locks: KeyedLock,
                 wake_delivery: Callable[[], None]) -> None:
        self.store = store
        self.engine = engine
        self.tickets = tickets
        self.locks = locks
        self.wake_delivery = wake_delivery

    async def _tell(self, ticket: Ticket, conversation_id: str, agent: str, result: str | None,
                    *, survey: bool) -> tuple[list[Outbound], dict[str, Any] | None]:
        """The result message, and the survey's first question with the flow state to keep."""
        conv0 = await self.store.get_conversation(conversation_id)
        text = self.engine.system_text("complaint_resolved", conv0.language if conv0 else None,
                                       agent=first_name(agent), reference=ticket.reference, result=result)
        replies = [Outbound(text, role="system")]
        flow = self.engine.settings.complaints.survey_flow
        loaded = await self.store.load_turn(conversation_id)
        if not survey or not flow or loaded is None:
            return replies, None
        conv, customer, state = loaded
        started = await start_flow_in(self.engine, conv, customer, state, flow, {"reference": ticket.reference})
        if started is None:
            log.warning("complaints.survey_flow %r is not a flow; no survey", flow)
            return replies, None
        return replies + started[0], started[1]

    async def on_handoff_resolved(self, h: HandoffRecord, agent: str, result: str | None):
        """HandoffQueue's ``on_resolved`` hook (runs under the conversation's lock)."""
        ticket = await self.tickets.resolve(h.conversation_id, agent=agent, result=result)
        if ticket is None:
            return None
        replies, state = await self._tell(ticket, h.conversation_id, agent, result, survey=True)
        return replies, state, ConversationState.BOT if state is not None else None

    async def resolve_ticket(self, reference: str, agent: str, result: str | None) -> Ticket:
        """Resolve a complaint from the ticket list and tell the customer where they wrote last."""
        result = privacy.stored_text(result)      # told and kept as replies are: no card in clear
        ticket = await self.store.get_ticket(reference)
        if ticket is None:
            raise ResolutionError(f"no complaint {reference}")
        if ticket.resolved_at is not None:
            raise ResolutionError(f"{ticket.reference} is already resolved")
        if await self.store.active_handoff(ticket.conversation_id) is not None:
            raise ResolutionError(f"{ticket.reference} is in a conversation with the team: resolve that")
        conv = await self.store.latest_customer_conversation(ticket.customer_id)
        if conv is None:
            raise ResolutionError(f"no conversation to tell the customer of {ticket.reference}")
        async with self.locks(conv.id):
            now = self.tickets.clock()
            change = TicketResolved(ticket.reference, at=now, agent=agent, result=result,
                                    follow_up_at=now + self.tickets.follow_up_after())
            busy = conv.state in (ConversationState.WAITING, ConversationState.WITH_AGENT)
            replies, state = await self._tell(ticket, conv.id, agent, result, survey=not busy)
            # resolved and told in one transaction: a failure leaves it open (the agent retries),
            # never resolved with the customer untold
            try:
                await self.store.commit_turn(conv.id, inbound_id=None, replies=replies, flow_state=state,
                                             keep_flow_state=state is None,
                                             state=ConversationState.BOT if state is not None else None,
                                             ticket=change)
            except StorageUnavailable:
                raise
            except StoreError as exc:
                raise ResolutionError(str(exc)) from exc
            done = await self.store.get_ticket(ticket.reference)
            assert done is not None
        self.wake_delivery()
        log.info("complaint %s resolved by %s from the ticket list; told on %s", ticket.reference, agent,
                 conv.channel)
        return done
