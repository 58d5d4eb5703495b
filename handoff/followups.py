"""Follow-ups: some days after a complaint was resolved, ask whether it stayed solved.

The due time is stored on the ticket when it is resolved (``complaints.sla.follow_up``),
so pending follow-ups survive restarts: :meth:`FollowUps.run_due` looks for due ones
(the app calls it every ``complaints.check_every``; tests call it with their own clock).
The question goes to the conversation where the customer wrote last, on whatever channel,
as the ``follow_up`` flow (``settings.complaints.follow_up_flow``); its "no" reopens the
ticket and hands the customer to the ticket's team. A conversation a human holds right now
is left alone; the follow-up is asked on a later round.
"""

from __future__ import annotations

import logging
from typing import Callable

from bot.errors import AlreadyDone
from bot.locks import KeyedLock
from bot.model import ConversationState
from bot.runtime import start_flow_in
from bot.storage import Store, TicketFollowedUp
from flows import FlowEngine

from .tickets import Clock

log = logging.getLogger(__name__)


class FollowUps:
    def __init__(self, *, store: Store, engine: FlowEngine, locks: KeyedLock, clock: Clock,
                 wake_delivery: Callable[[], None]) -> None:
        self.store = store
        self.engine = engine
        self.locks = locks
        self.clock = clock
        self.wake_delivery = wake_delivery
        self.asked = 0

    async def run_due(self) -> int:
        """Ask every due follow-up that can be asked now; returns how many were asked."""
        flow = self.engine.settings.complaints.follow_up_flow
        if not flow or flow not in self.engine.flows.flows:
            return 0
        asked = 0
        for ticket in await self.store.due_followups(self.clock()):
            conv = await self.store.latest_customer_conversation(ticket.customer_id)
            if conv is None:
                continue
            async with self.locks(conv.id):
                loaded = await self.store.load_turn(conv.id)
                if loaded is None:
                    continue
                conv, customer, state = loaded
                if conv.state in (ConversationState.WAITING, ConversationState.WITH_AGENT):
                    continue   # with a person now: ask later
                started = await start_flow_in(self.engine, conv, customer, state, flow,
                                              {"reference": ticket.reference})
                if started is None:
                    return asked
                replies, flow_state = started
                # asked and marked asked in one transaction: a failure, a crash or another
                # instance asking at the same moment never asks twice
                try:
                    await self.store.commit_turn(conv.id, inbound_id=None, flow_state=flow_state,
                                                 state=ConversationState.BOT, replies=replies,
                                                 ticket=TicketFollowedUp(ticket.reference))
                except AlreadyDone:
                    continue
            asked += 1
            log.info("follow-up asked for %s in conversation %s (%s)", ticket.reference, conv.id, conv.channel)
        if asked:
            self.asked += asked
            self.wake_delivery()
        return asked
