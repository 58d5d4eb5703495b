"""The agent desk interface over the durable handoff queue.

Every desk (the local /agent page now, Slack later) calls these methods;
each takes the conversation's lock, checks the transition table, and applies
the change as one compare-and-set transaction together with what the customer
is told.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable, Sequence

from bot import audit, privacy
from bot.config import Config
from bot.errors import InvalidTransition, OmnibotError
from bot.events import Event, EventBus
from bot.locks import KeyedLock
from bot.model import Attachment, ConversationState, Message, Outbound, utcnow
from bot.names import agent_languages, team_for_agents
from bot.runtime import first_name
from bot.storage import HandoffRecord, Store
from bot.storage.base import AgentAccount
from bot.storage.ops_work import Note
from flows.i18n import render_system

from .context import for_agents
from .states import CONVERSATION_STATE, HandoffState, next_state

log = logging.getLogger(__name__)

NOTE_MAX = 4000   # characters in an internal note

# (handoff, agent, result) -> (replies, flow state to keep, conversation state) or None
OnResolved = Callable[[HandoffRecord, str, "str | None"],
                      Awaitable["tuple[list[Outbound], dict[str, Any] | None, ConversationState | None] | None"]]


class DeskError(OmnibotError):
    """An agent action that cannot be done; ``status`` is the HTTP status to show."""

    status = 400


class NotFound(DeskError):
    status = 404


class Conflict(DeskError):
    status = 409


class HandoffQueue:
    """List, claim, reply, resolve, hand back.

    Args:
        store: storage.
        locks: the per-conversation lock shared with the runtime.
        events: announcements for desks and the web chat.
        config: teams.
        wake_delivery: called when the customer has new messages in the outbox.
        reset_flow: turns a flow state into the one to keep when the bot takes over again.
        on_resolved: called (under the conversation's lock) when an agent resolves; may return
            what to tell the customer instead of the plain notice, the flow state to keep and the
            conversation's new state (a complaint's result and satisfaction survey).
    """

    def __init__(self, *, store: Store, locks: KeyedLock, events: EventBus, config: Config,
                 wake_delivery: Callable[[], None], reset_flow: Callable[[Any], dict[str, Any]],
                 on_resolved: OnResolved | None = None,
                 texts: Callable[..., str] | None = None, flows: Callable[[], Any] | None = None) -> None:
        self.store = store
        # what the customer is told, in their conversation's language (README "Languages"):
        # texts(key, language, **values); by default the built-in messages (flows/i18n.py)
        self.texts = texts or render_system
        # the loaded flows (FlowSet) now: the notes omnibot writes for agents in their default
        # language, team names by their languages (README "Languages"); None: built-in English
        self.flows: Callable[[], Any] = flows or (lambda: None)
        self.locks = locks
        self.events = events
        self.config = config
        self.wake_delivery = wake_delivery
        self.reset_flow = reset_flow
        self.on_resolved = on_resolved
        self.clock: Callable[[], datetime] = utcnow    # take-over's idle time (tests set it)

    async def _told(self, h: HandoffRecord, key: str, *, team: str | None = None, **values: Any) -> Outbound:
        """A system message to the customer of ``h`` in their conversation's language (``team``: the
        team's key; its name in that language, bot/names.py)."""
        conv = await self.store.get_conversation(h.conversation_id)
        lang = conv.language if conv else None
        if team is not None:
            values["team"] = self.config.handoff.team_name(team, lang, agent_languages(self.flows()))
        return Outbound(self.texts(key, lang, **values), role="system")

    async def list(self, *, team: str | None = None) -> list[HandoffRecord]:
        """Queued and claimed handoffs, highest priority first, then oldest."""
        return await self.store.list_handoffs(states=["queued", "claimed"], team=team)

    async def get(self, handoff_id: str) -> HandoffRecord:
        h = await self.store.get_handoff(handoff_id)
        if h is None:
            raise NotFound(f"no handoff {handoff_id}")
        return h

    async def claim(self, handoff_id: str, agent: str) -> HandoffRecord:
        """Take a queued conversation; exactly one of several simultaneous claims wins."""
        h = await self.get(handoff_id)
        async with self.locks(h.conversation_id):
            h = await self.get(handoff_id)
            if h.state == "claimed":
                raise Conflict(f"already claimed by {h.agent}")
            new = self._next(h, "claim")
            told = await self._told(h, "agent_joined", agent=first_name(agent), team=h.team)
            if not await self.store.transition_handoff(handoff_id, expected=h.state, new=new.value, agent=agent,
                                                       conversation_state=CONVERSATION_STATE[new],
                                                       replies=[told]):
                now = await self.get(handoff_id)
                raise Conflict(f"already claimed by {now.agent}" if now.agent else f"handoff is {now.state}")
        log.info("handoff %s claimed by %s", handoff_id, agent)
        return await self._announce("claimed", handoff_id, audit=(agent, "claim", None))

    async def reply(self, handoff_id: str, agent: str, text: str,
                    attachments: Sequence[Attachment] = (), *, via: str = "") -> Message:
        """Send the agent's message (and the files they attached) to the customer's channel;
        ``via``: the desk it was written on (kept with the message: the Slack desk does not copy
        its own agents' replies back into the thread)."""
        # stored (and sent) as privacy.policy's `stored` place allows: a pasted card number is masked
        text = privacy.current().for_storage(text.strip())[0]
        if not text and not attachments:
            raise DeskError("the reply is empty")
        h = await self.get(handoff_id)
        async with self.locks(h.conversation_id):
            h = await self._held_by(handoff_id, agent)
            msgs = await self.store.commit_turn(
                h.conversation_id, inbound_id=None, flow_state=None, keep_flow_state=True,
                replies=[Outbound(text, role="agent", sender_name=first_name(agent),
                                  attachments=tuple(attachments), via=via, agent=agent)])
        self.wake_delivery()
        self.events.publish(Event("message", h.conversation_id, handoff_id, {"message_id": msgs[0].id}))
        return msgs[0]

    async def resolve(self, handoff_id: str, agent: str, *, result: str | None = None) -> HandoffRecord:
        """Close the conversation and tell the customer (with ``result``, what was done)."""
        result = privacy.stored_text(result)      # told and kept as replies are: no card in clear
        told = await self._told(await self.get(handoff_id), "resolved", agent=first_name(agent), result=result)
        return await self._finish(handoff_id, agent, "resolve", told, verb="resolve it", result=result)

    async def hand_back(self, handoff_id: str, agent: str) -> HandoffRecord:
        """Return the conversation to the bot (slots are kept, the flow starts fresh)."""
        told = await self._told(await self.get(handoff_id), "handed_back")
        return await self._finish(handoff_id, agent, "hand_back", told, verb="hand it back")

    async def _finish(self, handoff_id: str, agent: str, event: str, told: Outbound, *,
                      verb: str, result: str | None = None) -> HandoffRecord:
        """Resolve or hand back: only the claimant (or anyone, while still queued)."""
        h = await self.get(handoff_id)
        async with self.locks(h.conversation_id):
            h = await self.get(handoff_id)
            if h.state == "claimed" and h.agent != agent:
                raise Conflict(f"claimed by {h.agent}; only they can {verb}")
            if event == "hand_back" and h.state == "queued":
                event = "cancel"
            new = self._next(h, event)
            flow_state = None
            replies, conv_state = [told], CONVERSATION_STATE[new]
            if new is HandoffState.RETURNED:
                flow_state = self.reset_flow(await self.store.load_flow_state(h.conversation_id))
            if new is HandoffState.RESOLVED and self.on_resolved is not None:
                instead = await self.on_resolved(h, agent, result)
                if instead is not None:
                    replies, flow_state, conv_state = instead[0], instead[1], instead[2] or conv_state
            if not await self.store.transition_handoff(handoff_id, expected=h.state, new=new.value,
                                                       conversation_state=conv_state,
                                                       replies=replies, flow_state=flow_state):
                raise Conflict("the handoff changed meanwhile; reload")
        log.info("handoff %s %s by %s", handoff_id, new.value, agent)
        action = {"resolved": "resolve", "returned": "hand_back"}.get(new.value, new.value)
        return await self._announce(new.value, handoff_id, audit=(agent, action, None))

    async def transfer(self, handoff_id: str, agent: str, team: str | None = None, *,
                       to: AgentAccount | None = None, note: str | None = None) -> HandoffRecord:
        """Move the handoff to another team's queue, or straight to the agent ``to`` (then it is
        theirs, claimed, in ``team``: by default the handoff's team if ``to`` works it, else
        ``to``'s only team); the customer is told why and to whom. ``note`` (optional) is kept
        as an internal note for the receiver, never sent to the customer.

        Raises:
            DeskError: no such team; ``to`` is disabled or not of the team (400).
            Conflict: another agent holds it; it is already there (409).
        """
        teams = self.config.handoff.teams
        if team is not None and team not in teams:
            raise DeskError(f"no team {team!r} (teams: {', '.join(teams)})")
        note = (note or "").strip()[:NOTE_MAX] or None
        h = await self.get(handoff_id)
        if to is not None:
            if to.disabled:
                raise DeskError(f"{to.name}'s account is disabled")
            if team is None:
                mine = [t for t in to.teams if t in teams]
                team = h.team if (h.team in to.teams or to.role == "admin") else (mine[0] if len(mine) == 1 else None)
                if team is None:
                    raise DeskError(f"{to.name} works {', '.join(to.teams) or 'no team'}: say which team")
            if team not in to.teams and to.role != "admin":
                raise DeskError(f"{to.name} is not in team {self.config.handoff.team_name(team)} "
                                f"(their teams: {', '.join(to.teams) or 'none'})")
            if to.name == agent:
                raise DeskError("that is you: claim it instead")
        elif team is None:
            raise DeskError("say to which team or agent")
        async with self.locks(h.conversation_id):
            h = await self.get(handoff_id)
            if h.state == "claimed" and h.agent != agent:
                raise Conflict(f"claimed by {h.agent}; only they can transfer it")
            team_name = team_for_agents(self.config.handoff, team, self.flows())
            if to is None:
                if h.team == team:
                    raise Conflict(f"it is already with {team_name}")
                new = self._next(h, "transfer")
                told = await self._told(h, "transferred_team", agent=first_name(agent), team=team)
            else:
                new = self._next(h, "assign")
                told = await self._told(h, "transferred_agent", agent=first_name(agent), to=first_name(to.name),
                                        team=team)
            if not await self.store.transition_handoff(handoff_id, expected=h.state, new=new.value, team=team,
                                                       agent=to.name if to else None,
                                                       conversation_state=CONVERSATION_STATE[new],
                                                       replies=[told]):
                raise Conflict("the handoff changed meanwhile; reload")
            if note:
                await self._note(h, agent, for_agents(self.flows(), "note_transfer", to=to.name if to else team_name,
                                                      note=note), via="")
        log.info("handoff %s transferred to %s by %s", handoff_id, to.name if to else team, agent)
        return await self._announce("transferred", handoff_id, audit=(agent, "transfer", {
            "from_team": h.team, "team": team, **({"to": to.name} if to else {})}))

    async def take_over(self, handoff_id: str, agent: str, *, idle: timedelta | None = None) -> HandoffRecord:
        """Take a conversation another agent holds. ``idle``: only if its holder has not replied
        for that long (since they claimed it, or since their last message, whichever is later);
        None: at any time (a supervisor). The customer is told who continues; the previous
        holder finds an internal note (and their desk tells them).

        Raises:
            Conflict: nobody holds it (claim it), ``agent`` holds it already, or the holder
                replied less than ``idle`` ago (409).
        """
        h = await self.get(handoff_id)
        async with self.locks(h.conversation_id):
            h = await self.get(handoff_id)
            if h.state != "claimed":
                raise Conflict(f"nobody holds it (it is {h.state}): claim it instead" if h.state == "queued"
                               else f"it is {h.state}")
            if h.agent == agent:
                raise Conflict("you hold it already")
            previous = h.agent or "someone"
            quiet = self.clock() - await self._last_activity(h)
            if idle is not None and quiet < idle:
                wait = int((idle - quiet).total_seconds() // 60) + 1
                raise Conflict(f"{previous} is still on it (last reply {int(quiet.total_seconds() // 60)} min "
                               f"ago): an agent may take over after {int(idle.total_seconds() // 60)} min without "
                               f"a reply, in {wait} min; a supervisor may at any time")
            new = self._next(h, "take_over")
            told = await self._told(h, "taken_over", agent=first_name(agent), team=h.team,
                                    previous=first_name(previous))
            if not await self.store.transition_handoff(handoff_id, expected=h.state, new=new.value, agent=agent,
                                                       conversation_state=CONVERSATION_STATE[new],
                                                       replies=[told]):
                raise Conflict("the handoff changed meanwhile; reload")
            await self._note(h, agent, for_agents(self.flows(), "note_taken_over", agent=agent, previous=previous,
                                                  previous_first=first_name(previous),
                                                  minutes=int(quiet.total_seconds() // 60)), via="")
        log.info("handoff %s taken over by %s from %s", handoff_id, agent, previous)
        return await self._announce("claimed", handoff_id, audit=(agent, "take_over", {"from": previous}))

    async def add_note(self, conversation_id: str, agent: str, text: str, *, via: str = "",
                       announce: bool = True) -> Note:
        """An internal note on the conversation (with its handoff in the queue, if any): kept
        with it, shown on both desks, never sent to the customer. ``announce`` False: the caller
        publishes the ``note`` event itself (the Slack desk, once it recorded the note as in its thread)."""
        text = privacy.current().for_storage(text.strip())[0]     # as stored messages: no card in clear
        if not text:
            raise DeskError("the note is empty")
        if len(text) > NOTE_MAX:
            raise DeskError(f"a note is at most {NOTE_MAX} characters")
        conv = await self.store.get_conversation(conversation_id)
        if conv is None:
            raise NotFound(f"no conversation {conversation_id}")
        h = await self.store.active_handoff(conversation_id)
        note = await self.store.add_note(conversation_id, author=agent, text=text, at=utcnow(),
                                         handoff_id=h.id if h else None, via=via)
        if announce:
            self.events.publish(Event("note", conversation_id, h.id if h else None, {"note_id": note.id, "via": via}))
        return note

    async def _note(self, h: HandoffRecord, agent: str, text: str, *, via: str) -> None:
        text = privacy.current().for_storage(text)[0]
        note = await self.store.add_note(h.conversation_id, author=agent, text=text, at=utcnow(),
                                         handoff_id=h.id, via=via)
        self.events.publish(Event("note", h.conversation_id, h.id, {"note_id": note.id, "via": via}))

    async def _last_activity(self, h: HandoffRecord) -> datetime:
        """When the holder of ``h`` last acted: their claim, or their last reply if later."""
        since = h.claimed_at or h.created_at
        for m in reversed(await self.store.history(h.conversation_id, limit=200)):
            if m.created_at <= since:
                break
            if m.direction == "out" and m.role == "agent":   # only the holder can reply while it is held
                return m.created_at
        return since

    async def reopen(self, conversation_id: str, agent: str, *, note: str | None = None) -> HandoffRecord:
        """Put a past conversation back in the queue of the team that had it last.

        The new handoff says who reopened it and why (``note``); a resolved complaint ticket of
        the conversation is reopened with it. The customer is told nothing until an agent writes.

        Raises:
            NotFound: no such conversation.
            Conflict: it is in the queue already, or the customer has a newer open conversation
                at the same address (reopen that one instead).
        """
        conv = await self.store.get_conversation(conversation_id)
        if conv is None:
            raise NotFound(f"no conversation {conversation_id}")
        async with self.locks(conversation_id):
            active = await self.store.active_handoff(conversation_id)
            if active is not None:
                raise Conflict("it is in the queue already" if active.state == "queued"
                               else f"{active.agent} has it now")
            conv = await self.store.get_conversation(conversation_id)
            assert conv is not None
            if conv.state is ConversationState.CLOSED:
                newer = await self.store.latest_conversation(conv.channel, conv.external_id)
                if newer is not None and newer.id != conv.id and newer.state is not ConversationState.CLOSED:
                    raise Conflict(f"the customer has a newer conversation ({newer.id}); reopen that one")
            last = await self.store.latest_handoff(conversation_id)
            record = await self.store.conversation_record(conversation_id, limit=1)
            tickets = record["tickets"] if record else []
            ticket = tickets[-1] if tickets else None
            teams = self.config.handoff.teams
            team = next((t for t in (last.team if last else None, ticket and ticket.get("team"))
                         if t and t in teams), self.config.handoff.default_team)
            if ticket is not None and ticket["resolved_at"] is not None:
                await self.store.reopen_ticket(ticket["reference"], at=utcnow())
            reopened = await self.store.get_ticket(ticket["reference"]) if ticket else None
            note = (note or "").strip()[:500] or None
            context = dict(last.context) if last else {}
            context.update({"reopened_by": agent, "note": note, "reopened_from": last.id if last else None,
                            # for agents: in the flows' default language (None: no conversation's)
                            "agent_reason": self.texts("why_reopened_by", None, agent=agent, note=note or "")})
            if reopened is not None:
                context["ticket"] = reopened.summary()
                context.setdefault("reference", reopened.reference)
            h = await self.store.create_handoff(
                conversation_id, team=team, reason=f"reopened by {agent}" + (f": {note}" if note else ""),
                priority=max(last.priority if last else 0, reopened.priority if reopened else 0), context=context,
                cause="reopened")
        log.info("conversation %s reopened by %s as handoff %s", conversation_id, agent, h.id)
        await self._audit(agent, "reopen", h, conv.customer_id)
        self.events.publish(Event("queued", conversation_id, h.id))
        return h

    # -- helpers -------------------------------------------------------------

    def _next(self, h: HandoffRecord, event: str) -> HandoffState:
        try:
            return next_state(h.state, event)
        except InvalidTransition as exc:
            raise Conflict(str(exc)) from None

    async def _held_by(self, handoff_id: str, agent: str) -> HandoffRecord:
        h = await self.get(handoff_id)
        if h.state != "claimed":
            raise Conflict(f"claim the conversation first (it is {h.state})")
        if h.agent != agent:
            raise Conflict(f"claimed by {h.agent}")
        return h

    async def _audit(self, agent: str, action: str, h: HandoffRecord, customer_id: str | None,
                     detail: dict[str, Any] | None = None) -> None:
        """One entry in the audit log (bot.audit): who did what to which handoff. The action is
        done already: an audit log that cannot be written is logged, and the agent is not told
        it failed."""
        try:
            await audit.record(self.store, f"agent:{agent}", action, customer_id=customer_id, target=h.id,
                               detail=detail)
        except Exception as exc:  # noqa: BLE001 - the action stands; the missing entry is in the log
            log.error("audit entry %s of handoff %s by %s not written (%s)", action, h.id, agent, exc)

    async def _announce(self, kind: str, handoff_id: str, *,
                        audit: tuple[str, str, dict[str, Any] | None] | None = None) -> HandoffRecord:
        h = await self.get(handoff_id)
        conv = await self.store.get_conversation(h.conversation_id)
        if audit is not None:      # before the customer is told: what follows a told customer stays quick
            await self._audit(audit[0], audit[1], h, conv.customer_id if conv else None, audit[2])
        self.wake_delivery()
        self.events.publish(Event(kind, h.conversation_id, handoff_id))
        if conv is not None:
            self.events.publish(Event("state", h.conversation_id, handoff_id, {
                "state": conv.state.value, "position": 0,
                "team": self.config.handoff.team_name(h.team, conv.language),
                "agent": first_name(h.agent), "channel": conv.channel, "external_id": conv.external_id}))
        return h

    async def position(self, h: HandoffRecord) -> int:
        return await self.store.queue_position(h.id)

    def waiting_seconds(self, h: HandoffRecord, now: datetime | None = None) -> int:
        end = h.claimed_at or h.closed_at or (now or utcnow())
        return max(0, int((end - h.created_at).total_seconds()))
