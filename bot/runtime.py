"""The inbound pipeline: dedupe -> persist -> flow engine or handoff -> outbox.

``accept`` returns as soon as the message is stored (so connectors can
acknowledge); processing runs in the background, one message at a time per
conversation, under the same lock every other writer takes. If the process
dies, ``recover`` at start-up processes whatever was stored but not answered; when storage
fails in the middle of a turn, a sweep with backoff answers it once storage works again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import time
from collections import Counter
from typing import Any, Callable

from bot.aio import stop_tasks, wait_for
from bot.cluster import Cluster
from bot.config import Config
from bot.errors import ClaimLost, StorageUnavailable, TurnStale
from bot.events import Event, EventBus
from bot.locks import KeyedLock
from bot.logs import customer as _customer_text
from bot.model import Conversation, ConversationState, Customer, Inbound, Message, Outbound, sanitize_text, utcnow
from bot.privacy import Privacy
from bot.storage import HandoffSpec, InboundResult, Store, Ticket, TurnBasis
from flows import FlowEngine, TurnInput
from flows.i18n import render_system

log = logging.getLogger(__name__)

APOLOGY = ("Sorry, something went wrong on our side while answering you. "
           "Your message is saved and a person from our team will follow up.")


def first_name(name: str | None) -> str:
    return (name or "").strip().split(" ")[0]


def turn_input(conv: Conversation, customer: Customer | None, *, text: str = "", payload: str | None = None,
               attachments: tuple[dict[str, Any], ...] = (), key: str = "", language: str | None = None,
               switched: bool = False) -> TurnInput:
    """What the flow engine is told about a turn in ``conv`` (``key``: see :attr:`TurnInput.key`;
    ``language``: the conversation's, by default the one it keeps)."""
    return TurnInput(text=text, payload=payload, attachments=attachments,
                     customer={"id": conv.customer_id, "name": first_name(customer.display_name if customer else "")},
                     channel=conv.channel, conversation_id=conv.id, key=key,
                     language=language or conv.language or "", switched=switched)


async def start_flow_in(engine: FlowEngine, conv: Conversation, customer: Customer | None,
                        state: dict[str, Any] | None, flow: str,
                        slots: dict[str, Any]) -> tuple[list[Outbound], dict[str, Any]] | None:
    """Start ``flow`` on the bot's own initiative (a survey, a follow-up) in ``conv``: the
    messages to send and the flow state to keep, or None when there is no such flow."""
    started = await engine.start_flow(state, flow, turn_input(conv, customer), slots)
    if started is None:
        return None
    return [Outbound(r.text, buttons=r.buttons) for r in started.replies], started.state


def turn_outcome(missed: bool, flow_state: dict[str, Any]) -> str:
    """How a bot turn left the customer, kept with its last reply (README "Metrics"): the bot
    did not understand (``fallback``), a flow waits for an answer (``mid_flow``), or answered."""
    if missed:
        return "fallback"
    return "mid_flow" if flow_state.get("awaiting") or flow_state.get("confirm") is not None else ""


def handoff_agent_reason(cause: str | None, text: str, ticket: Ticket | None,
                         say: Callable[..., str] | None = None) -> str:
    """The reason written for the agent: the engine's words, with the complaint's reference,
    category and severity when a ticket is what the handoff is about. ``say(key, **values)``: the
    flows' text for agents (``why_*``, the default language); built-in English without it."""
    say = say or (lambda key, **values: render_system(key, "en", **values))
    if ticket is not None and cause in ("complaint", "reopened"):
        lead = say("why_ticket", reference=ticket.reference, category=ticket.category or "",
                   severity=ticket.severity, reopened=cause == "reopened")
        rest = text.split("; ", 1)[1] if "; " in text else ""     # the urgency cues, if any
        return lead + (f"; {rest}" if rest else "")
    return text or say("why_default")


class Runtime:
    """Routes customer messages.

    Args:
        store: storage.
        engine: the flow engine.
        config: the whole configuration (handoff teams and messages).
        locks: the per-conversation lock shared with the handoff queue.
        events: where state changes are announced.
        wake_delivery: called when new replies are in the outbox.
        cluster: this instance's membership of a cluster (PostgreSQL): turns are fenced by its
            conversation claims, and the sweep takes over what dead instances left unanswered.
    """

    def __init__(self, *, store: Store, engine: FlowEngine, config: Config, locks: KeyedLock,
                 events: EventBus, wake_delivery: Any = None, metrics: Any = None, cluster: Cluster | None = None,
                 sweep_interval: float | None = None, retry_delay: float = 0.5,
                 max_retry_delay: float = 30.0) -> None:
        self.store = store
        self.cluster = cluster
        self.owner = cluster.owner if cluster is not None else None
        if sweep_interval is None:
            # with several instances, the sweep is how one answers what a dead one left: soon
            sweep_interval = 2.0 if self.owner else 30.0
        if cluster is not None and cluster.enabled:
            cluster.on_peer_lost(lambda ids: self._sweep_wake.set())
        self.metrics = metrics      # bot.metrics.Live: counters and the turn latency histogram
        self.engine = engine
        self.config = config
        self.locks = locks
        self.events = events
        self.wake_delivery = wake_delivery or (lambda: None)
        self.sweep_interval = sweep_interval
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self._tasks: set[asyncio.Task[None]] = set()
        self._active: Counter[str] = Counter()   # conversations with a turn scheduled or running
        self._sweeper: asyncio.Task[None] | None = None
        self._sweep_wake = asyncio.Event()
        self._stranded = False      # a turn could not be stored: the sweep retries it
        self._backing_off = False
        self.processed = 0
        self.privacy = Privacy(config.privacy)
        # Fault injection for the crash test: hold every turn this many seconds.
        self._fault_delay = float(os.environ.get("OMNIBOT_FAULT_TURN_DELAY", "0") or 0)

    async def accept(self, inbound: Inbound) -> InboundResult:
        """Store a customer message (once) and schedule its answer.

        Returns after the message is durable; the caller may acknowledge then.

        Raises:
            StorageUnavailable: storage cannot write now; nothing was stored, so the caller
                must not acknowledge (webhooks answer 503, the web chat an error frame).
        """
        # at the edge, before anything is stored or logged: card data never kept (privacy.policy ... stored);
        # the flow reads the stored text, so it never sees it either
        text, removed = self.privacy.for_storage(sanitize_text(inbound.text))
        sender_name = sanitize_text(inbound.sender_name, max_chars=200)
        payload = sanitize_text(inbound.payload, max_chars=500) if inbound.payload else None
        if (text, sender_name, payload) != (inbound.text, inbound.sender_name, inbound.payload):
            inbound = dataclasses.replace(inbound, text=text, sender_name=sender_name, payload=payload)
        try:
            result = await self.store.record_inbound(inbound)
        except StorageUnavailable:
            self._wake_sweep()     # so /readyz turns back to ok as soon as a probe write works
            raise
        if result.duplicate:
            log.info("duplicate %s message %s ignored", inbound.channel, inbound.platform_message_id)
        elif self.metrics is not None:
            self.metrics.messages_in.labels(inbound.channel).inc()
        if not result.duplicate and any(f.kind in ("card", "cvc") for f in removed):
            await self._tell_card_removed(result, text)
        if result.message.status == "received":
            # a new message's turn starts from what storing it read (checked at its commit)
            self.schedule(result.conversation.id, None if result.duplicate else result)
        elif not inbound.answer and not result.duplicate:
            # stored, never answered (mail from a machine): the agent's desk still shows it
            log.info("%s message %s stored without an answer (automatic)", inbound.channel,
                     inbound.platform_message_id)
            cid = result.conversation.id
            try:
                handoff = await self.store.active_handoff(cid)
            except StorageUnavailable:
                handoff = None      # stored already: the desk re-reads storage anyway
            self.events.publish(Event("message", cid, handoff.id if handoff else None,
                                      {"message_id": result.message.id}))
        return result

    def card_notice(self, lang: str | None) -> str:
        """The card-data notice in ``lang``: ``privacy.notice`` when config gives it (a string: every
        language; by language: that language, else the flows' message), else the flows'
        ``card_removed`` message (flows/i18n.py, ``settings.messages.card_removed`` overrides it)."""
        own = self.config.privacy.notice
        if isinstance(own, str):
            return own
        if isinstance(own, dict) and lang in own:
            return own[lang]
        return self.engine.system_text("card_removed", lang)

    async def _tell_card_removed(self, result: Any, text: str) -> None:
        """Tell the customer, once per conversation, that the card data they sent was not kept, in
        the conversation's language (for its first message: the language that message decides)."""
        conversation_id = result.conversation.id
        lang = result.conversation.language
        if lang is None:
            try:
                hint = result.customer.attributes.get("language_code") if result.customer else None
                lang = self.engine.languages.decide(None, text, hint=hint).language
            except Exception:  # noqa: BLE001 - the notice goes out, in the default language at worst
                log.exception("no language for the card notice in %s", conversation_id)
        try:
            notice = self.card_notice(lang)
            if await self.store.privacy_notice(conversation_id, text=notice, at=utcnow()):
                log.info("card data removed from a message in %s; the customer is told", conversation_id)
                self.wake_delivery()
        except StorageUnavailable:
            pass    # the message is stored (masked) already; the notice is a courtesy

    def schedule(self, conversation_id: str, stored: InboundResult | None = None) -> None:
        self._active[conversation_id] += 1
        task = asyncio.create_task(self.process(conversation_id, stored), name=f"turn-{conversation_id}")
        self._tasks.add(task)
        task.add_done_callback(lambda t, cid=conversation_id: self._finished(t, cid))

    def _finished(self, task: asyncio.Task[None], conversation_id: str) -> None:
        self._tasks.discard(task)
        self._active[conversation_id] -= 1
        if self._active[conversation_id] <= 0:
            del self._active[conversation_id]

    async def start(self) -> None:
        """Answer what was stored but not answered, then keep sweeping for it (see :meth:`_sweep`)."""
        await self.recover()
        self._sweeper = asyncio.create_task(self._sweep(), name="omnibot-recovery-sweep")

    async def recover(self) -> int:
        """Schedule every conversation with a stored, unanswered message that no turn is working on."""
        if self.owner is None:
            found = await self.store.conversations_with_unprocessed()
        else:
            # several instances: only what no live instance is working on, and not what was
            # stored a moment ago (its own instance is about to answer it)
            assert self.cluster is not None
            found = await self.store.stranded_conversations(now=self.cluster.clock(), ttl=self.cluster.ttl,
                                                            older_than=1.0)
        pending = [cid for cid in found if cid not in self._active]
        if pending:
            log.info("recovering %d conversation(s) with unanswered messages", len(pending))
        for cid in pending:
            self.schedule(cid)
        return len(pending)

    async def _sweep(self) -> None:
        """Recovery that does not wait for a restart or the customer's next message.

        Every ``sweep_interval`` seconds, and soon after a turn could not be stored, look for
        accepted messages without an answer and answer them. While storage keeps failing,
        the rounds back off from ``retry_delay`` to ``max_retry_delay`` seconds, and each
        starts with a one-row probe write, so nothing is retried hot.
        """
        delay = self.retry_delay
        while True:
            self._backing_off = self._stranded or self.store.health.failing
            if self._backing_off:
                wait, delay = delay, min(delay * 2, self.max_retry_delay)
            else:
                wait, delay = self.sweep_interval, self.retry_delay
            self._sweep_wake.clear()
            try:
                await wait_for(self._sweep_wake.wait(), wait)
            except TimeoutError:
                pass
            self._stranded = False
            try:
                if self.store.health.failing and not await self.store.probe():
                    continue
                await self.recover()
            except asyncio.CancelledError:
                raise
            except StorageUnavailable:
                continue
            except Exception:  # noqa: BLE001 - the sweep must outlive any one bad round
                log.exception("recovery sweep failed; trying again in %.1f s", delay)
                self._stranded = True

    def _strand(self, conversation_id: str, exc: BaseException) -> None:
        """A turn could not be stored: leave its message unanswered for the sweep to retry."""
        log.debug("turn for %s not stored (%s); retrying when storage works", conversation_id, exc)
        self._stranded = True
        self._wake_sweep()

    def _wake_sweep(self) -> None:
        if not self._backing_off:
            self._sweep_wake.set()

    async def drain(self) -> None:
        """Wait for scheduled turns to finish (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self) -> None:
        # a turn cancelled before its commit leaves its message unanswered in the store, for the
        # recovery of this instance's next start or of another instance (see recover)
        await stop_tasks([*self._tasks, self._sweeper], "the turns")
        self._sweeper = None

    async def process(self, conversation_id: str, stored: InboundResult | None = None) -> None:
        """Answer every unprocessed message of a conversation, in order.

        A message is done when its turn is committed. When storage fails, the message stays
        unanswered (and the ones after it wait behind it) until the sweep retries it; a turn
        that fails for any other reason is answered with an apology instead.

        ``stored``: a message just stored, whose turn starts from what storing it read instead
        of reading the conversation again (one store operation fewer per message, issue 20).
        Its commit writes only if that is still what is stored, the message still unanswered
        and no older one waiting (see :class:`bot.storage.TurnBasis`); else nothing was written
        and the conversation is read and answered as without it.
        """
        try:
            async with self.locks(conversation_id):
                if self._fault_delay:
                    await asyncio.sleep(self._fault_delay)
                if stored is not None and stored.basis is not None and await self._stored_turn(stored):
                    self.processed += 1
                    messages, loaded = [], None     # answered (a newer message has a turn of its own)
                else:
                    # the messages to answer and what the first turn needs, in one read
                    messages, loaded = await self.store.turn_start(conversation_id)
                for msg in messages:
                    try:
                        started = time.perf_counter()
                        await self._turn(msg, loaded)
                        if self.metrics is not None:
                            self.metrics.turn_seconds.observe(time.perf_counter() - started)
                    except (asyncio.CancelledError, StorageUnavailable, ClaimLost):
                        raise
                    except Exception:
                        # The per-message boundary: apologise, never lose the message.
                        log.exception("turn for message %s of %s failed", msg.id, conversation_id)
                        await self.store.commit_turn(conversation_id, inbound_id=msg.id,
                                                     replies=[Outbound(await self._apology(conversation_id),
                                                                       role="system", outcome="error")],
                                                     flow_state=None, keep_flow_state=True, owner=self.owner)
                    loaded = None     # a turn changed it: the next one reads it again
                    self.processed += 1
        except StorageUnavailable as exc:
            self._strand(conversation_id, exc)
        except ClaimLost as exc:
            # this instance was taken for dead and another one answers now: write nothing
            log.warning("conversation %s was taken over by another instance: %s", conversation_id, exc)
        self.wake_delivery()

    async def _stored_turn(self, stored: InboundResult) -> bool:
        """The turn of a message just stored, from what storing it read; False if it wrote nothing
        (the conversation changed since, or the turn failed: :meth:`process` goes on as usual,
        so a failure is answered there, once)."""
        basis = stored.basis
        assert basis is not None
        loaded = (stored.conversation, stored.customer, json.loads(basis.flow_state) if basis.flow_state else None)
        started = time.perf_counter()
        try:
            await self._turn(stored.message, loaded, basis=basis)
        except (asyncio.CancelledError, StorageUnavailable, ClaimLost):
            raise
        except TurnStale as exc:
            log.debug("%s; reading it again", exc)
            return False
        except Exception:  # noqa: BLE001 - answered by the usual path, which logs a failure again
            log.debug("turn of message %s from its stored state failed; reading it again", stored.message.id,
                      exc_info=True)
            return False
        if self.metrics is not None:
            self.metrics.turn_seconds.observe(time.perf_counter() - started)
        return True

    async def _apology(self, conversation_id: str) -> str:
        """The apology for a failed turn, in the conversation's language when it can be read."""
        try:
            conv = await self.store.get_conversation(conversation_id)
            lang = conv.language if conv else None
            return self.engine.system_text("apology", lang) if lang else APOLOGY
        except Exception:  # noqa: BLE001 - the apology must go out whatever else fails
            return APOLOGY

    async def _turn(self, msg: Message, loaded: tuple[Conversation, Customer | None, dict[str, Any] | None]
                    | None = None, *, basis: TurnBasis | None = None) -> None:
        """Answer ``msg``; ``loaded``: the conversation, customer and flow state as read just now
        under the conversation's lock (else they are read here), or as ``basis`` says they were
        stored (then the commit checks that they still are: :class:`TurnStale` if not)."""
        cid = msg.conversation_id
        if loaded is None:
            loaded = await self.store.load_turn(cid)
        if loaded is None:
            raise LookupError(cid)
        conv, customer, state = loaded
        lang = self.engine.languages.decide(
            conv.language, msg.text, chosen=bool((state or {}).get("language_chosen")),
            hint=(customer.attributes.get("language_code") if customer else None), button=msg.payload is not None)
        if lang.language != conv.language:
            # kept on the conversation: what the bot answers in, and what agents see (README "Languages")
            await self.store.set_conversation_language(cid, lang.language)
            if basis is not None:
                basis = dataclasses.replace(basis, language=lang.language)
            log.info("conversation %s is in %s (%s)", cid, lang.language, lang.why)
            conv = dataclasses.replace(conv, language=lang.language)
            # the web chat widget's own words follow it (connectors/webchat.py, a "texts" frame)
            self.events.publish(Event("language", cid, None, {"language": lang.language, "channel": conv.channel,
                                                               "external_id": conv.external_id}))
        if conv.state in (ConversationState.WAITING, ConversationState.WITH_AGENT, ConversationState.CLOSED):
            # A human owns it (or will): the bot is silent; the message is kept for the agent.
            await self.store.commit_turn(cid, inbound_id=msg.id, replies=[], flow_state=None,
                                         keep_flow_state=True, owner=self.owner, basis=basis)
            handoff = await self.store.active_handoff(cid)
            self.events.publish(Event("message", cid, handoff.id if handoff else None,
                                      {"message_id": msg.id}))
            return
        turn = turn_input(conv, customer, text=msg.text, payload=msg.payload,
                          attachments=tuple(a.to_dict() for a in msg.attachments), key=f"in:{msg.id}",
                          switched=lang.switched)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("message %s in %s: %s", msg.id, cid, _customer_text(msg.text))
        result = await self.engine.handle(state, turn)
        spec = None
        if result.handoff is not None:
            replies = [Outbound(r.text, buttons=r.buttons) for r in result.replies]
            ticket = await self.store.conversation_ticket(cid)
            spec = self._handoff_spec(result.handoff.team, result.handoff.reason, result.handoff.priority,
                                      result.state, turn, ticket, cause=result.handoff.cause,
                                      agent_reason=result.handoff.agent_reason)
        else:
            # the last reply carries how the turn left the customer (made so at once, not copied)
            last = len(result.replies) - 1
            outcome = turn_outcome(result.missed, result.state) if last >= 0 else ""
            replies = [Outbound(r.text, buttons=r.buttons, outcome=outcome) if i == last
                       else Outbound(r.text, buttons=r.buttons) for i, r in enumerate(result.replies)]
        await self.store.commit_turn(cid, inbound_id=msg.id, replies=replies, flow_state=result.state,
                                     handoff=spec, owner=self.owner, basis=basis)
        if spec is not None:
            handoff = await self.store.active_handoff(cid)
            if handoff is not None:
                position = await self.store.queue_position(handoff.id)
                log.info("conversation %s queued for %s (%s), position %d", cid, handoff.team,
                         _customer_text(handoff.reason), position)   # the reason may quote slots
                if self.metrics is not None:
                    self.metrics.handoffs.labels(handoff.team).inc()
                self.events.publish(Event("queued", cid, handoff.id))
                self.events.publish(Event("state", cid, handoff.id, {
                    "state": "waiting", "position": position, "team": self.config.handoff.team_name(
                        handoff.team, conv.language, self.engine.settings.languages),
                    "channel": conv.channel, "external_id": conv.external_id}))

    def _handoff_spec(self, team: str | None, reason: str, priority: int, flow_state: dict[str, Any],
                      turn: TurnInput, ticket: Ticket | None = None, *, cause: str | None = None,
                      agent_reason: str = "") -> HandoffSpec:
        hc = self.config.handoff
        if ticket is not None:
            # the complaint's routing decides: its department's team, and at least its priority
            team = ticket.team or team
            priority = max(priority, ticket.priority)
        if not team or team not in hc.teams:
            if team:
                log.warning("handoff to unknown team %r; using %r", team, hc.default_team)
            team = hc.default_team
        team_name = hc.team_name(team, turn.language, self.engine.settings.languages)   # the customer reads it
        slots = {k: v for k, v in (flow_state.get("slots") or {}).items() if v not in (None, "", [])}
        context = {"slots": slots, "reference": slots.get("reference"), "reason": reason,
                   "language": turn.language or self.engine.settings.languages.default,
                   "ticket": ticket.summary() if ticket else {},
                   "agent_reason": handoff_agent_reason(cause, agent_reason, ticket, self.engine.for_agents)}
        template = self.engine.pick(self.engine.settings.handoff_message, turn.language)

        def message(position: int) -> Outbound:
            text = self.engine.render(template, {"team": team_name, "reason": reason, "position": position,
                                                 "customer": dict(turn.customer), "slots": slots})
            return Outbound(text, role="bot")

        return HandoffSpec(team=team, reason=reason, priority=priority, context=context, message=message,
                           cause=cause or "other")
