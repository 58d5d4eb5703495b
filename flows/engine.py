"""Runs flows one customer turn at a time.

The engine is pure with respect to storage: it takes the conversation's
saved state (a JSON-able dict) and the customer's turn, and returns replies,
the new state and, if the flow asked for one, a handoff request. Actions
that need the outside world (a reference number) are injected.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

from bot.model import Button, normalize_for_matching

from .loader import FlowSet, ParsedFlow
from .matcher import IntentMatcher, LexicalMatcher
from .nlu import entities as _entities
from .nlu.urgency import Urgency, urgency as _urgency
from .render import Renderer, TemplateError
from .schema import (ActionStep, BranchCase, BranchStep, ButtonSpec, ChoiceSpec, CollectStep, EndStep,
                     GotoStep, HandoffStep, SayStep, SetStep, Step)

log = logging.getLogger(__name__)

STATE_VERSION = 1
MAX_STEPS_PER_TURN = 200
RECENT_TEXTS = 4          # customer messages kept in the state to pre-fill slots from
RECENT_CHARS = 500
LEXICAL_THRESHOLD = 0.3   # default for matchers without a calibrated threshold
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)?")
_PHONE = re.compile(r"\+?[\d\s().-]{7,}")

ActionFn = Callable[["ActionContext"], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class TurnInput:
    """One customer turn as the engine sees it."""

    text: str
    payload: str | None = None
    attachments: tuple[Mapping[str, Any], ...] = ()
    customer: Mapping[str, Any] = field(default_factory=dict)
    channel: str = ""
    conversation_id: str = ""


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    buttons: tuple[Button, ...] = ()


@dataclass(frozen=True, slots=True)
class HandoffRequest:
    team: str | None
    reason: str
    priority: int = 0


@dataclass(frozen=True, slots=True)
class TurnResult:
    replies: tuple[Reply, ...]
    state: dict[str, Any]
    handoff: HandoffRequest | None = None
    intent: str | None = None
    score: float = 0.0
    complaint: float = 0.0
    urgency: Urgency | None = None


@dataclass(frozen=True, slots=True)
class ActionContext:
    conversation_id: str
    channel: str
    customer: Mapping[str, Any]
    slots: Mapping[str, Any]
    text: str = ""                                            # the customer's message this turn
    updates: dict[str, Any] = field(default_factory=dict, compare=False)  # more slots the action sets


class _Slots(dict):  # type: ignore[type-arg]
    """Slots (and customer fields) as templates see them: a missing key is None, not an error."""

    def __missing__(self, key: str) -> None:
        return None


@dataclass
class _State:
    flow: str | None = None
    step: int = 0
    awaiting: str | None = None
    attempts: int = 0
    misses: int = 0
    slots: dict[str, Any] = field(default_factory=dict)
    confirm: Any = None                                      # a pre-filled value awaiting yes/no
    recent: list[str] = field(default_factory=list)          # the customer's last messages
    signals: dict[str, Any] = field(default_factory=dict)    # highest complaint/urgency seen

    @classmethod
    def load(cls, d: Mapping[str, Any] | None) -> "_State":
        if not d:
            return cls()
        return cls(flow=d.get("flow"), step=int(d.get("step", 0)), awaiting=d.get("awaiting"),
                   attempts=int(d.get("attempts", 0)), misses=int(d.get("misses", 0)),
                   slots=dict(d.get("slots") or {}), confirm=d.get("confirm"),
                   recent=list(d.get("recent") or []), signals=dict(d.get("signals") or {}))

    def dump(self) -> dict[str, Any]:
        return {"v": STATE_VERSION, "flow": self.flow, "step": self.step, "awaiting": self.awaiting,
                "attempts": self.attempts, "misses": self.misses, "slots": self.slots,
                "confirm": self.confirm, "recent": self.recent, "signals": self.signals}


class _Turn:
    """Mutable scratch space of one turn."""

    def __init__(self, turn: TurnInput, st: _State) -> None:
        self.input = turn
        self.st = st
        self.replies: list[Reply] = []
        self.handoff: HandoffRequest | None = None

    def context(self) -> dict[str, Any]:
        return {"slots": _Slots(self.st.slots), "customer": _Slots(self.input.customer),
                "channel": self.input.channel, "message": self.input.text}


class FlowEngine:
    """Runs a :class:`FlowSet`.

    Args:
        flowset: validated flows.
        matcher: intent matcher; fitted here on the flows' examples.
        actions: named async callables for ``action:`` steps.
    """

    def __init__(self, flowset: FlowSet, *, matcher: IntentMatcher | None = None,
                 actions: Mapping[str, ActionFn] | None = None) -> None:
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

    @property
    def threshold(self) -> float:
        """The configured threshold, else the matcher's calibrated one, else the lexical default."""
        if self.settings.threshold is not None:
            return self.settings.threshold
        return float(getattr(self.matcher, "threshold", LEXICAL_THRESHOLD) or 0.0)

    # -- public --------------------------------------------------------------

    async def handle(self, state: Mapping[str, Any] | None, turn: TurnInput) -> TurnResult:
        """Answer one customer turn."""
        st = _State.load(state)
        t = _Turn(turn, st)
        forced = turn.payload[7:] if turn.payload and turn.payload.startswith("intent:") else None
        ranked: list[tuple[str, float]] = []
        complaint, urg, in_scope = 0.0, None, None
        if forced is None and turn.text.strip():
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
        self._note_signals(st, complaint, urg)
        top, score = (forced, 1.0) if forced else (ranked[0] if ranked else (None, 0.0))
        top_flow = self.flows.flow_for_intent(top) if top else None
        sure = bool(forced) or self._sure(score, in_scope)

        step = self._current_collect(st)
        if step is not None:
            await self._answer_collect(t, step, top_flow, score, sure, forced is not None)
        elif top_flow is not None and sure:
            st.misses = 0
            self._start(st, top_flow)
        else:
            self._fallback(t, ranked)
        await self._run(t)
        self._maybe_offer_complaint(t, complaint, top_flow if sure else None)
        if t.handoff is not None:
            t.handoff = self._with_urgency(t.handoff, st)
        return TurnResult(tuple(t.replies), st.dump(), t.handoff, top, score, complaint, urg)

    def _sure(self, score: float, in_scope: bool | None) -> bool:
        """Sure enough to act on the top intent? A configured threshold wins; otherwise the
        matcher's calibrated verdict (confidence and similarity to the examples), if it has one."""
        if self.settings.threshold is None and in_scope is not None:
            return in_scope and score > 0
        return score > 0 and score >= self.threshold

    # -- signals -----------------------------------------------------------------

    @staticmethod
    def _note_signals(st: _State, complaint: float, urg: Urgency) -> None:
        sig = st.signals
        sig["complaint"] = round(max(float(sig.get("complaint", 0.0)), complaint), 3)
        if urg.score > float(sig.get("urgency", 0.0)):
            sig["urgency"] = round(urg.score, 3)
            sig["urgency_level"] = urg.level
            sig["urgency_reasons"] = list(urg.reasons)

    @staticmethod
    def _with_urgency(h: HandoffRequest, st: _State) -> HandoffRequest:
        """Anger or urgency raises the handoff's priority (elevated +1, high +2). The reason stays
        as the flow wrote it (the customer reads it); agents see the cues in the context's signals."""
        bump = {"elevated": 1, "high": 2}.get(str(st.signals.get("urgency_level", "none")), 0)
        return HandoffRequest(h.team, h.reason, h.priority + bump) if bump else h

    def _maybe_offer_complaint(self, t: _Turn, complaint: float, matched: ParsedFlow | None) -> None:
        """A complaint in the middle of a FAQ or small talk: offer the complaint flow."""
        cs = self.settings.complaints
        st = t.st
        if not cs.flow or complaint < cs.threshold or t.handoff is not None or st.awaiting:
            return
        if st.flow is not None:      # a flow is still running (and not asking): leave it alone
            return
        target = self.flows.flow_for_intent(cs.flow)
        if target is None or (matched is not None and (matched.name == target.name or matched.flow.interrupts)):
            return
        t.replies.append(Reply(self._render(cs.offer, t), (Button(cs.offer_button, f"intent:{cs.flow}"),)))

    def reset_after_handoff(self, state: Mapping[str, Any] | None) -> dict[str, Any]:
        """The state to keep when a human hands the conversation back: slots stay, flow ends."""
        st = _State.load(state)
        st.flow, st.step, st.awaiting, st.attempts, st.misses, st.confirm = None, 0, None, 0, 0, None
        return st.dump()

    async def start_flow(self, state: Mapping[str, Any] | None, name: str, turn: TurnInput,
                         slots: Mapping[str, Any] | None = None) -> TurnResult | None:
        """Start flow ``name`` on the bot's own initiative (a satisfaction survey after an agent
        resolved a complaint): the human-era flow ends, ``slots`` are added, the flow runs until
        it asks or ends. None when there is no such flow."""
        pf = self.flows.flows.get(name)
        if pf is None:
            return None
        st = _State.load(self.reset_after_handoff(state))
        st.slots.update(slots or {})
        t = _Turn(turn, st)
        self._start(st, pf)
        await self._run(t)
        return TurnResult(tuple(t.replies), st.dump(), t.handoff, None, 0.0)

    def render(self, source: str, context: dict[str, Any]) -> str:
        return self.renderer.render(source, context)

    # -- turn logic -----------------------------------------------------------

    def _current_collect(self, st: _State) -> CollectStep | None:
        if not st.flow or not st.awaiting or st.flow not in self.flows.flows:
            return None
        pf = self.flows.flows[st.flow]
        if st.step >= len(pf.steps):
            return None
        step = pf.steps[st.step]
        return step if isinstance(step, CollectStep) and step.collect == st.awaiting else None

    async def _answer_collect(self, t: _Turn, step: CollectStep, top_flow: ParsedFlow | None,
                              score: float, sure: bool, forced: bool) -> None:
        st = t.st
        interrupting = top_flow is not None and top_flow.name != st.flow and top_flow.flow.interrupts and (
            forced or (sure and score >= self.settings.interrupt_threshold))
        if forced and top_flow is not None and top_flow.name != st.flow:
            self._start(st, top_flow)
            return
        if st.confirm is not None:
            offered, st.confirm = st.confirm, None
            answer = normalize_for_matching(t.input.payload or t.input.text).strip(" .!")
            if answer in self.settings.yes_words or t.input.payload == "prefill:yes":
                self._accept(st, step, offered)
                return
            ok, value, _ = self._validate(step, t)
            if ok and step.type != "text":      # they typed the right value instead
                self._accept(st, step, value)
                return
            self._ask(t, step)                 # "no": ask as if nothing was pre-filled
            return
        ok, value, _ = self._validate(step, t)
        if ok and step.optional and value is None:
            interrupting = False   # "skip" answers an optional question; it is no command
        if ok and (step.type != "text" or not interrupting):
            self._accept(st, step, value)
            return
        if interrupting:
            self._start(st, top_flow)  # type: ignore[arg-type]
            return
        if (top_flow is not None and top_flow.name != st.flow and sure
                and all(isinstance(s, SayStep) for s in top_flow.steps)):
            # A quick question in the middle of a form ("when are you open?"):
            # answer it, then ask again, without counting an attempt.
            for s in top_flow.steps:
                self._say(t, s)  # type: ignore[arg-type]
            self._ask(t, step, again=True)
            return
        st.attempts += 1
        if st.attempts >= step.max_attempts:
            st.awaiting, st.attempts = None, 0
            self._jump(t, step.on_fail, reason=f"I couldn't get your {step.collect.replace('_', ' ')}")
            return
        if step.invalid:
            t.replies.append(Reply(self._render(step.invalid, t)))
        self._ask(t, step, again=True)

    def _fallback(self, t: _Turn, ranked: list[tuple[str, float]]) -> None:
        st = t.st
        fb = self.settings.fallback
        st.misses += 1
        st.flow, st.awaiting = None, None
        human = self.flows.flow_for_intent("human")
        if st.misses >= fb.max_misses:
            st.misses = 0
            buttons = (Button("Talk to a person", "intent:human"),) if human else ()
            t.replies.append(Reply(self._render(fb.offer_human, t), buttons))
            return
        buttons = []
        below = [(i, sc) for i, sc in ranked if sc > 0]
        if below:
            # Not sure enough to act: offer the best two guesses ("did you mean A or B?").
            titles = []
            for intent, _ in below:
                pf = self.flows.flow_for_intent(intent)
                if pf is None or pf.flow.interrupts:
                    continue
                title = self._intent_title(intent, pf)
                buttons.append(Button(title, f"intent:{intent}"))
                titles.append(title)
                if len(buttons) >= min(2, fb.suggestions):
                    break
            if buttons:
                ctx = t.context() | {"options": titles}
                t.replies.append(Reply(self.renderer.render(fb.clarify, ctx), tuple(buttons)))
                return
        # Nothing came close: suggest the first topics the flows offer, so the customer has a way on.
        for intent in (fb.topics or self.flows.intents):
            if len(buttons) >= fb.suggestions:
                break
            pf = self.flows.flow_for_intent(intent)
            if pf is not None and not pf.flow.interrupts:
                buttons.append(Button(self._intent_title(intent, pf), f"intent:{intent}"))
        msg = fb.messages[(st.misses - 1) % len(fb.messages)]
        t.replies.append(Reply(self._render(msg, t), tuple(buttons)))

    def _intent_title(self, intent: str, pf: ParsedFlow) -> str:
        return self.flows.intents[intent].description or pf.flow.description or intent.replace("_", " ")

    @staticmethod
    def _accept(st: _State, step: CollectStep, value: Any) -> None:
        """The answer to ``step`` is ``value``: store it and go on."""
        st.slots[step.collect] = value
        st.awaiting, st.attempts = None, 0
        st.step += 1

    def _start(self, st: _State, pf: ParsedFlow) -> None:
        st.flow, st.step, st.awaiting, st.attempts, st.confirm = pf.name, 0, None, 0, None

    def _finish(self, st: _State) -> None:
        st.flow, st.step, st.awaiting, st.attempts, st.confirm = None, 0, None, 0, None

    def _jump(self, t: _Turn, target: str, *, reason: str = "you asked to talk to a person") -> None:
        st = t.st
        if target == "end":
            self._finish(st)
        elif target == "handoff":
            self._finish(st)
            t.handoff = HandoffRequest(None, reason)
        elif target.startswith("flow:"):
            self._start(st, self.flows.flows[target[5:]])
        else:
            st.step = self.flows.flows[st.flow].index_of(target)  # type: ignore[index]

    async def _run(self, t: _Turn) -> None:
        st = t.st
        for _ in range(MAX_STEPS_PER_TURN):
            if st.flow is None or st.awaiting or t.handoff is not None:
                return
            pf = self.flows.flows[st.flow]
            if st.step >= len(pf.steps):
                self._finish(st)
                return
            step = pf.steps[st.step]
            if await self._exec(t, pf, step):
                st.step += 1
        log.error("flow %s ran %d steps in one turn; stopping (a goto loop?)", st.flow, MAX_STEPS_PER_TURN)
        self._finish(st)

    async def _exec(self, t: _Turn, pf: ParsedFlow, step: Step) -> bool:
        """Execute one step; True to move on to the next step, False if it moved the pointer itself."""
        st = t.st
        if isinstance(step, SayStep):
            self._say(t, step)
        elif isinstance(step, CollectStep):
            if step.skip_if_filled and st.slots.get(step.collect) not in (None, "", []):
                return True
            st.awaiting, st.attempts = step.collect, 0
            value = self._prefill(step, st)
            if value is not None:
                st.confirm = value
                ctx = t.context() | {"value": value, "label": step.collect.replace("_", " ")}
                t.replies.append(Reply(self.renderer.render(self.settings.confirm_prefill, ctx),
                                       (Button("Yes", "prefill:yes"), Button("No", "prefill:no"))))
                return False
            self._ask(t, step)
            return False
        elif isinstance(step, BranchStep):
            ctx = t.context()
            for raw in step.branch:
                case = BranchCase.model_validate(raw)
                if case.else_ or self._truthy(case.if_, ctx):
                    self._jump(t, case.then)
                    return False
        elif isinstance(step, SetStep):
            for k, v in step.set.items():
                st.slots[k] = self._render(v, t) if isinstance(v, str) else v
        elif isinstance(step, ActionStep):
            if step.action == "reset":
                st.slots = {}
            else:
                fn = self.actions.get(step.action)
                if fn is None:
                    raise LookupError(f"action {step.action!r} is not registered")
                ctx = ActionContext(t.input.conversation_id, t.input.channel, dict(t.input.customer),
                                    dict(st.slots), t.input.text)
                result = await fn(ctx)
                st.slots.update(ctx.updates)
                if step.save_as:
                    st.slots[step.save_as] = result
        elif isinstance(step, HandoffStep):
            h = step.handoff
            t.handoff = HandoffRequest(h.team, self._render(h.reason, t), h.priority)
            self._finish(st)
            return False
        elif isinstance(step, GotoStep):
            self._jump(t, step.goto)
            return False
        elif isinstance(step, EndStep):
            self._finish(st)
            return False
        return True

    def _truthy(self, expr: str | None, ctx: dict[str, Any]) -> bool:
        try:
            return bool(self.renderer.evaluate(expr or "false", ctx))
        except TemplateError:
            log.warning("branch condition %r failed; treated as false", expr, exc_info=True)
            return False

    def _render(self, source: str, t: _Turn) -> str:
        return self.renderer.render(source, t.context())

    def _say(self, t: _Turn, step: SayStep) -> None:
        buttons = tuple(Button(b, b) if isinstance(b, str) else Button(b.title, b.payload)
                        for b in step.buttons)
        t.replies.append(Reply(self._render(step.say, t), buttons))

    def _ask(self, t: _Turn, step: CollectStep, *, again: bool = False) -> None:
        buttons: tuple[Button, ...] = ()
        if step.type == "choice":
            buttons = tuple(Button(*_choice_title_value(c)) for c in step.choices)
        if step.optional and step.type == "attachment":
            buttons = buttons + (Button("Skip", "skip"),)
        t.replies.append(Reply(self._render(step.ask, t), buttons))

    # -- pre-filling from what the customer already said ----------------------

    def _prefill(self, step: CollectStep, st: _State) -> Any:
        """A value for ``step`` found in the customer's recent messages (newest first), or None."""
        kind = step.prefill
        if kind == "none" or not st.recent:
            return None
        if kind == "auto":
            kind = {"email": "email", "phone": "phone", "regex": "order_number"}.get(step.type, "none")
            if kind == "none":
                return None
        for text in reversed(st.recent):
            if kind == "order_number" and step.type == "regex" and step.pattern:
                v = _regex_value(step, text)
                if v is None and step.normalize == "upper":
                    v = _regex_value(step, text.upper())
                if v is not None:
                    return v
                continue
            ent = _entities.first(text, kind)
            if ent is not None:
                if step.type == "number":
                    try:
                        return float(ent.value.split()[0])
                    except ValueError:
                        continue
                return ent.value
        return None

    # -- slot validation ---------------------------------------------------

    def _validate(self, step: CollectStep, t: _Turn) -> tuple[bool, Any, str]:
        text = t.input.text.strip()
        norm = normalize_for_matching(t.input.payload or text)
        if step.optional and norm.strip(" .!") in self.settings.skip_words and not t.input.attachments:
            return True, None, ""
        kind = step.type
        if kind == "attachment":
            if t.input.attachments:
                return True, [dict(a) for a in t.input.attachments], ""
            return False, None, "no attachment"
        if kind == "text":
            return (len(text) >= step.min_length, text, "too short")
        if kind == "choice":
            value = _match_choice(step.choices, t.input.payload, norm)
            return (value is not None, value, "not one of the choices")
        if kind == "number":
            m = _NUMBER.search(text)
            if not m:
                return False, None, "no number"
            n = float(m.group(0).replace(",", "."))
            if (step.min is not None and n < step.min) or (step.max is not None and n > step.max):
                return False, None, "out of range"
            return True, int(n) if n.is_integer() else n, ""
        if kind == "email":
            m = _EMAIL.search(text)
            return (m is not None, m.group(0).lower() if m else None, "not an e-mail address")
        if kind == "phone":
            m = _PHONE.search(text)
            digits = re.sub(r"\D", "", m.group(0)) if m else ""
            if not 7 <= len(digits) <= 15:
                return False, None, "not a phone number"
            return True, ("+" if m.group(0).strip().startswith("+") else "") + digits, ""  # type: ignore[union-attr]
        if kind == "regex":
            v = _regex_value(step, text)
            return (v is not None, v, "does not match")
        return False, None, f"unknown type {kind}"


def _regex_value(step: CollectStep, text: str) -> str | None:
    """The first match of a regex slot's pattern in ``text``, normalised as the step says."""
    m = re.search(step.pattern or "", text)
    if not m:
        return None
    v = m.group(0)
    return v.upper() if step.normalize == "upper" else v.lower() if step.normalize == "lower" else v


def _choice_title_value(c: str | ChoiceSpec) -> tuple[str, str]:
    if isinstance(c, str):
        return c.replace("_", " ").capitalize(), c
    return (c.title or c.value.replace("_", " ").capitalize()), c.value


def _match_choice(choices: list[str | ChoiceSpec], payload: str | None, norm: str) -> str | None:
    specs = [ChoiceSpec(value=c) if isinstance(c, str) else c for c in choices]
    if payload:
        for c in specs:
            if payload == c.value:
                return c.value
    if norm.isdigit() and 1 <= int(norm) <= len(specs):
        return specs[int(norm) - 1].value
    words = set(re.findall(r"\w+", norm))
    for c in specs:
        names = [c.value, c.title or "", *c.synonyms]
        for name in names:
            n = normalize_for_matching(name.replace("_", " "))
            if n and (n == norm or (" " not in n and n in words) or (" " in n and n in norm)):
                return c.value
    return None
