"""Runs flows one customer turn at a time.

The engine is pure with respect to storage: it takes the conversation's
saved state (a JSON-able dict) and the customer's turn, and returns replies,
the new state and, if the flow asked for one, a handoff request. Actions
that need the outside world (a reference number) are injected.

This module decides what a turn is about (an answer to the bot's question, a
new flow, or nothing the bot understood); :mod:`flows.steps` executes steps,
:mod:`flows.slots` validates and pre-fills answers, :mod:`flows.fallback`
handles misses and :mod:`flows.offer` offers the complaint flow.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Mapping

from bot.model import normalize_for_matching

from .fallback import Fallback
from .i18n import all_texts, pick, system_text
from .language import Languages
from .loader import FlowSet, ParsedFlow
from .matcher import IntentMatcher, LexicalMatcher
from .nlu.urgency import Urgency, urgency as _urgency
from .offer import ComplaintOffer, neutral_kind
from .render import Renderer
from .schema import ChoiceSpec, CollectStep, SayStep
from .slots import validate
from .steps import MAX_STEPS_PER_TURN, StepRunner
from .turn import (RECENT_CHARS, RECENT_TEXTS, STATE_VERSION, ActionContext, ActionFn, HandoffRequest, Reply,
                   Turn, TurnInput, TurnResult, TurnState)

log = logging.getLogger(__name__)

LEXICAL_THRESHOLD = 0.3   # default for matchers without a calibrated threshold
CLEAR_COMPLAINT = 0.9     # a complaint score this high ...
LUKEWARM = 0.6            # ... beats a top intent below this when complaint ranks close behind

__all__ = ["ActionContext", "ActionFn", "FlowEngine", "HandoffRequest", "LEXICAL_THRESHOLD",
           "MAX_STEPS_PER_TURN", "RECENT_CHARS", "RECENT_TEXTS", "Reply", "STATE_VERSION", "TurnInput",
           "TurnResult"]


class FlowEngine:
    """Runs a :class:`FlowSet`.

    Args:
        flowset: validated flows.
        matcher: intent matcher; fitted here on the flows' examples.
        actions: named async callables for ``action:`` steps.
        calls: runs ``call:`` steps (bot.integrations.Integrations); None: calls fail (on_failure).
    """

    def __init__(self, flowset: FlowSet, *, matcher: IntentMatcher | None = None,
                 actions: Mapping[str, ActionFn] | None = None, calls: Any = None) -> None:
        self.flows = flowset
        self.settings = flowset.settings
        self.matcher = matcher or LexicalMatcher()
        ex = self.settings.complaints.examples
        if hasattr(self.matcher, "fit_complaints") and ex:
            # before fit(), which would otherwise train the default complaint model first
            self.matcher.fit_complaints(ex.get("complaint", []), ex.get("not_complaint", []))
        if self.settings.out_of_scope and getattr(self.matcher, "supports_out_of_scope", False):
            self.matcher.fit(flowset.examples(), out_of_scope=self.settings.out_of_scope)  # type: ignore[call-arg]
        else:
            self.matcher.fit(flowset.examples())
        self.actions = dict(actions or {})
        self.renderer = Renderer()
        self.calls = calls
        self.steps = StepRunner(flowset, self.renderer, self.actions, calls)
        self.fallback = Fallback(flowset, self.steps)
        self.offer = ComplaintOffer(flowset, self.steps)
        self.languages = Languages(self.settings.languages)
        self.languages.warm(background=True)

    @property
    def threshold(self) -> float:
        """The configured threshold, else the matcher's calibrated one, else the lexical default."""
        if self.settings.threshold is not None:
            return self.settings.threshold
        return float(getattr(self.matcher, "threshold", LEXICAL_THRESHOLD) or 0.0)

    # -- public --------------------------------------------------------------

    async def handle(self, state: Mapping[str, Any] | None, turn: TurnInput) -> TurnResult:
        """Answer one customer turn."""
        st = TurnState.load(state)
        t = Turn(turn, st)
        if turn.switched:
            st.language_chosen = True
            if turn.payload is None:
                return self._switched(t)
        st.turns += 1
        missed_before = st.missed
        offered, st.offered = st.offered, None
        payload = turn.payload
        if offered and payload is None and self._is_yes(turn.text):
            payload = offered     # "yes" typed to the bot's offer is pressing its button
        forced = payload[7:] if payload and payload.startswith("intent:") else None
        ranked: list[tuple[str, float]] = []
        complaint, urg, in_scope = 0.0, None, None
        if forced is None and turn.text.strip():
            if not self._answer_decides(t):
                top_n = max(8, self.settings.fallback.suggestions)
                analyze = getattr(self.matcher, "analyze", None)
                if analyze is not None:
                    a = await analyze(turn.text, top=top_n)
                    ranked, complaint, urg, in_scope = a.ranked, a.complaint, a.urgency, a.in_scope
                else:
                    ranked = await self.matcher.rank(turn.text, top=top_n)
            st.recent = (st.recent + [turn.text[:RECENT_CHARS]])[-RECENT_TEXTS:]
        if urg is None:   # the learned matcher scores urgency with the rest; others don't
            urg = _urgency(turn.text)
        ranked = self._complaint_first(ranked, complaint)
        self._note_signals(st, complaint, urg)
        top, score = (forced, 1.0) if forced else (ranked[0] if ranked else (None, 0.0))
        top_flow = self.flows.flow_for_intent(top) if top else None
        sure = bool(forced) or self._sure(score, in_scope)

        step = self._current_collect(st)
        if step is not None:
            t.answered = True
            await self._answer_collect(t, step, top_flow, score, sure, forced is not None)
        elif top_flow is not None and sure:
            st.misses = 0
            self.steps.start(st, top_flow)
        else:
            self.fallback.miss(t, ranked)
        await self.steps.run(t)
        self.offer.maybe_offer(t, complaint, top_flow if sure else None)
        st.asked = _asks(t)
        st.missed = missed_before + 1 if t.missed else 0
        if t.handoff is not None:
            t.handoff = self._with_urgency(self._with_cause(t.handoff, missed_before), st)
        return TurnResult(tuple(t.replies), st.dump(), t.handoff, top, score, complaint, urg, t.missed)

    def _complaint_first(self, ranked: list[tuple[str, float]], complaint: float) -> list[tuple[str, float]]:
        """A message the complaint detector is sure about ("the parcel was delivered to the wrong
        address") goes to the complaint flow when the intent ranked above it is only lukewarm and
        complaint is among the top three, and it would start a flow that asks questions: an order
        question (change_address, order_status) must not swallow a complaint about the order, and
        while a flow asks, the complaint offer is held back (flows.offer)."""
        cflow = self.settings.complaints.flow
        if not cflow or complaint < CLEAR_COMPLAINT or len(ranked) < 2 or ranked[0][0] == cflow:
            return ranked
        top = ranked[0][1]
        asks = self.flows.flow_for_intent(ranked[0][0])
        if asks is None or not any(isinstance(s, CollectStep) for s in asks.steps):
            return ranked     # an answer only (a FAQ): the complaint offer follows it if need be
        for name, score in ranked[1:3]:
            if name == cflow and top < LUKEWARM:
                return [(name, top)] + [r for r in ranked if r[0] != name]
        return ranked

    def _switched(self, t: Turn) -> TurnResult:
        """The message only asked for another language ("English please", "/lang es"): say so in
        it, and ask the question the bot is waiting on again, now in that language."""
        st = t.st
        t.replies.append(Reply(self.steps.system("language_switched", t)))
        step = self._current_collect(st)
        if step is not None and st.confirm is None:
            self.steps.ask(t, step, again=True)
        st.asked = _asks(t)
        return TurnResult(tuple(t.replies), st.dump())

    def system_text(self, key: str, lang: str | None, **values: Any) -> str:
        """One of omnibot's own messages (flows/i18n.py SYSTEM_MESSAGES, overridden by the flows'
        ``settings.messages``) in ``lang``, rendered with ``values`` (data, never templates)."""
        src = system_text(key, lang, self.settings.languages, self.settings.messages)
        return self.renderer.render(src, values) if "{" in src else src

    def for_agents(self, key: str, **values: Any) -> str:
        """One of omnibot's texts for agents (``why_*``, ``origin_public``): in the default language,
        as agents have no language setting (README "Languages")."""
        return self.system_text(key, self.settings.languages.default, **values)

    def pick(self, text: Any, lang: str | None) -> str:
        """A flow text (a string or a mapping by language) in ``lang``."""
        return pick(text, lang, self.settings.languages)

    def _sure(self, score: float, in_scope: bool | None) -> bool:
        """Sure enough to act on the top intent? A configured threshold wins; otherwise the
        matcher's calibrated verdict (confidence and similarity to the examples), if it has one."""
        if self.settings.threshold is None and in_scope is not None:
            return in_scope and score > 0
        return score > 0 and score >= self.threshold

    def reset_after_handoff(self, state: Mapping[str, Any] | None) -> dict[str, Any]:
        """The state to keep when a human hands the conversation back: slots stay, flow ends."""
        st = TurnState.load(state)
        st.flow, st.step, st.awaiting, st.attempts, st.misses, st.confirm = None, 0, None, 0, 0, None
        st.asked, st.offered = False, None     # the person answered last, not the bot
        return st.dump()

    async def start_flow(self, state: Mapping[str, Any] | None, name: str, turn: TurnInput,
                         slots: Mapping[str, Any] | None = None) -> TurnResult | None:
        """Start flow ``name`` on the bot's own initiative (a satisfaction survey after an agent
        resolved a complaint): the human-era flow ends, ``slots`` are added, the flow runs until
        it asks or ends. None when there is no such flow."""
        pf = self.flows.flows.get(name)
        if pf is None:
            return None
        st = TurnState.load(self.reset_after_handoff(state))
        st.slots.update(slots or {})
        t = Turn(turn, st)
        self.steps.start(st, pf)
        await self.steps.run(t)
        self.offer.note(t)
        st.asked = _asks(t)
        handoff = self._with_cause(t.handoff, 0) if t.handoff is not None else None
        return TurnResult(tuple(t.replies), st.dump(), handoff, None, 0.0)

    def render(self, source: str, context: dict[str, Any]) -> str:
        return self.renderer.render(source, context)

    def _is_yes(self, text: str) -> bool:
        return normalize_for_matching(text).strip(" .!") in self.settings.yes_words

    # -- signals -----------------------------------------------------------------

    @staticmethod
    def _note_signals(st: TurnState, complaint: float, urg: Urgency) -> None:
        sig = st.signals
        sig["complaint"] = round(max(float(sig.get("complaint", 0.0)), complaint), 3)
        if urg.score > float(sig.get("urgency", 0.0)):
            sig["urgency"] = round(urg.score, 3)
            sig["urgency_level"] = urg.level
            sig["urgency_reasons"] = list(urg.reasons)

    def _with_urgency(self, h: HandoffRequest, st: TurnState) -> HandoffRequest:
        """Anger or urgency raises the handoff's priority (elevated +1, high +2). The reason stays
        as the flow wrote it (the customer reads it); the agent's reason names the cues."""
        level = str(st.signals.get("urgency_level", "none"))
        bump = {"elevated": 1, "high": 2}.get(level, 0)
        if not bump:
            return h
        cues = ", ".join(str(c) for c in (st.signals.get("urgency_reasons") or [])[:3])
        urgency = self.for_agents("why_urgency", level=level, cues=cues)
        return dataclasses.replace(h, priority=h.priority + bump, agent_reason=f"{h.agent_reason}; {urgency}")

    def _with_cause(self, h: HandoffRequest, missed_before: int) -> HandoffRequest:
        """Why the conversation is handed over, for the figures and in words for the agent.

        A cause the flow's handoff step names wins. Otherwise: the flow of the ``human``
        intent is the customer asking (``misunderstood`` when the bot had just misunderstood
        them), the complaint flow (``settings.complaints.flow``) is ``complaint``, the
        follow-up flow (the customer says it is not solved) ``reopened``, and any other flow's
        handoff (a step, or a branch to ``handoff``) a ``rule`` of that flow.
        """
        if h.agent_reason:       # set where the handoff was decided (a question that failed)
            return h
        cs = self.settings.complaints
        flow_of = self.flows.flow_for_intent
        human = flow_of("human")
        complaint = flow_of(cs.flow) if cs.flow else None
        cause = h.cause
        if cause is None:
            if human is not None and h.flow == human.name:
                cause = "misunderstood" if missed_before else "customer_asked"
            elif complaint is not None and h.flow == complaint.name:
                cause = "complaint"
            elif cs.follow_up_flow and h.flow == cs.follow_up_flow:
                cause = "reopened"
            else:
                cause = "rule"
        if cause == "misunderstood" and missed_before:
            text = self.for_agents("why_misunderstood", count=missed_before)
        elif cause in ("customer_asked", "misunderstood"):
            text = self.for_agents("why_asked")
        elif cause == "complaint":
            text = self.for_agents("why_complaint", reason=h.reason)
        elif cause == "reopened":
            text = self.for_agents("why_reopened")
        else:
            text = self.for_agents("why_rule", flow=h.flow or "?", reason=h.reason)
        return dataclasses.replace(h, cause=cause, agent_reason=text)

    # -- an answer to the bot's question ----------------------------------------

    def _answer_decides(self, t: Turn) -> bool:
        """The message is only the answer the bot waits for, and that answer decides the turn
        whatever the intent model would say: the model (and its complaint score) is not run.

        That is a button press or a confirmation (the text is a button's title or "yes", not the
        customer's words), or an answer that the waiting ``collect`` step accepts and that
        carries nothing else: a choice typed as its title, synonym or number; a number, e-mail
        address, phone number or order number with at most filler words around it (what
        :func:`flows.offer.neutral_kind` calls neutral); "skip" to an optional question. The
        complaint offer is held back for answers anyway (flows/offer.py), and such a message
        scores as no complaint (tests/flows/test_answer_without_model.py). Free text (a
        ``text`` step, whose answer the model may take as a new request) and an accepted value
        inside other words ("AB123456, it arrived smashed") still go through the model.
        """
        st = t.st
        step = self._current_collect(st)
        if step is None:
            return False
        inp = t.input
        if st.confirm is not None and (inp.payload == "prefill:yes" or normalize_for_matching(
                inp.payload or inp.text).strip(" .!") in self.settings.yes_words):
            return True
        ok, value, _ = validate(step, t, self.settings)
        if not ok or (st.confirm is not None and step.type == "text"):
            return False       # (to a pre-filled text, only "yes" decides: see _answer_collect)
        if step.optional and value is None:
            return True        # a skip word: no command, no complaint
        if step.type == "text":
            return False
        if inp.payload is not None:
            return True
        if step.type == "choice":
            return _names_a_choice(step, inp.text)
        return neutral_kind(inp.text) is not None

    def _current_collect(self, st: TurnState) -> CollectStep | None:
        if not st.flow or not st.awaiting or st.flow not in self.flows.flows:
            return None
        pf = self.flows.flows[st.flow]
        if st.step >= len(pf.steps):
            return None
        step = pf.steps[st.step]
        return step if isinstance(step, CollectStep) and step.collect == st.awaiting else None

    async def _answer_collect(self, t: Turn, step: CollectStep, top_flow: ParsedFlow | None,
                              score: float, sure: bool, forced: bool) -> None:
        st = t.st
        steps = self.steps
        interrupting = top_flow is not None and top_flow.name != st.flow and top_flow.flow.interrupts and (
            forced or (sure and score >= self.settings.interrupt_threshold))
        if forced and top_flow is not None and top_flow.name != st.flow:
            steps.start(st, top_flow)
            return
        if st.confirm is not None:
            offered, st.confirm = st.confirm, None
            more, st.confirm_more = st.confirm_more, {}
            answer = normalize_for_matching(t.input.payload or t.input.text).strip(" .!")
            if answer in self.settings.yes_words or t.input.payload == "prefill:yes":
                steps.accept(st, step, offered)
                st.slots.update(more)          # the next questions, confirmed with it, are skipped
                return
            ok, value, _ = validate(step, t, self.settings)
            if ok and step.type != "text":      # they typed the right value instead
                steps.accept(st, step, value)
                return
            if interrupting:                   # neither yes nor no: "agent", "cancel" ...
                steps.start(st, top_flow)  # type: ignore[arg-type]
                return
            steps.ask(t, step)                 # "no": ask as if nothing was pre-filled
            return
        ok, value, _ = validate(step, t, self.settings)
        if ok and step.optional and value is None:
            interrupting = False   # "skip" answers an optional question; it is no command
        if ok and (step.type != "text" or not interrupting):
            steps.accept(st, step, value)
            return
        if interrupting:
            steps.start(st, top_flow)  # type: ignore[arg-type]
            return
        if (top_flow is not None and top_flow.name != st.flow and sure
                and all(isinstance(s, SayStep) for s in top_flow.steps)):
            # A quick question in the middle of a form ("when are you open?"):
            # answer it, then ask again, without counting an attempt.
            for s in top_flow.steps:
                steps.say(t, s)  # type: ignore[arg-type]
            steps.ask(t, step, again=True)
            return
        st.attempts += 1
        if st.attempts >= step.max_attempts:
            st.awaiting, st.attempts = None, 0
            label = step.collect.replace('_', ' ')
            # the slot's name is the flow author's word (English in the demo): said as it is
            steps.jump(t, step.on_fail, reason=steps.system("couldnt_get", t, label=label), cause="misunderstood",
                       agent_reason=self.for_agents("why_not_understood", label=label, tries=step.max_attempts))
            return
        if step.invalid:
            t.replies.append(Reply(steps.render(step.invalid, t)))
        steps.ask(t, step, again=True)


def _names_a_choice(step: CollectStep, text: str) -> bool:
    """The whole message is one choice's number, value, title (any language) or synonym."""
    norm = normalize_for_matching(text).strip(" .!")
    if norm.isdigit():
        return 1 <= int(norm) <= len(step.choices)
    for c in step.choices:
        spec = ChoiceSpec(value=c) if isinstance(c, str) else c
        for name in (spec.value, *all_texts(spec.title), *spec.synonyms):
            if normalize_for_matching(name.replace("_", " ")).strip(" .!") == norm:
                return True
    return False


def _asks(t: Turn) -> bool:
    """Did the bot's last message this turn ask the customer something (a question or buttons)?"""
    if not t.replies:
        return False
    last = t.replies[-1]
    return bool(last.buttons) or last.text.rstrip().endswith("?")
