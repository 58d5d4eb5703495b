"""Executes a flow's steps (say, collect, branch, set, action, call, handoff, goto, end) until the flow
asks the customer something, hands off or ends."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, Mapping

from bot.model import Button

from .i18n import Text, pick, system_text
from .loader import FlowSet, ParsedFlow
from .render import Renderer, TemplateError
from .schema import (ActionStep, BranchCase, BranchStep, CallStep, CollectStep, EndStep, GotoStep, HandoffSpec,
                     HandoffStep, SayStep, SetStep, Step)
from .slots import choice_title_value, prefill
from .turn import ActionContext, ActionFn, HandoffRequest, Reply, Turn, TurnState

log = logging.getLogger(__name__)

MAX_STEPS_PER_TURN = 200


class StepRunner:
    """Moves a conversation's flow pointer and executes the steps it passes.

    Args:
        flowset: validated flows.
        renderer: the template sandbox.
        actions: named async callables for ``action:`` steps.
        calls: runs ``call:`` steps (bot.integrations.Integrations); None: every call fails.
    """

    def __init__(self, flowset: FlowSet, renderer: Renderer, actions: Mapping[str, ActionFn],
                 calls: Any = None) -> None:
        self.flows = flowset
        self.settings = flowset.settings
        self.renderer = renderer
        self.actions = actions
        self.calls = calls

    # -- the pointer ------------------------------------------------------------

    @staticmethod
    def accept(st: TurnState, step: CollectStep, value: Any) -> None:
        """The answer to ``step`` is ``value``: store it and go on."""
        st.slots[step.collect] = value
        st.awaiting, st.attempts = None, 0
        st.step += 1

    @staticmethod
    def start(st: TurnState, pf: ParsedFlow) -> None:
        st.flow, st.step, st.awaiting, st.attempts, st.confirm = pf.name, 0, None, 0, None
        st.confirm_more = {}
        if any(isinstance(s, CollectStep) for s in pf.steps):
            st.asking_flow = pf.name

    @staticmethod
    def _prefill_ahead(pf: ParsedFlow, st: TurnState) -> dict[str, Any]:
        """Values for the collect steps right after the current one, found in what the customer
        already wrote (up to the next step that is not a question)."""
        more: dict[str, Any] = {}
        for s in pf.steps[st.step + 1:]:
            if not isinstance(s, CollectStep):
                break
            if s.skip_if_filled and st.slots.get(s.collect) not in (None, "", []):
                continue
            v = prefill(s, st)
            if v is not None and v not in more.values():     # one message answers one question
                more[s.collect] = v
        return more

    @staticmethod
    def finish(st: TurnState) -> None:
        st.flow, st.step, st.awaiting, st.attempts, st.confirm = None, 0, None, 0, None

    def jump(self, t: Turn, target: str, *, reason: Text | None = None,
             cause: str | None = None, agent_reason: str = "") -> None:
        st = t.st
        if reason is None:
            reason = HandoffSpec().reason       # "you asked to talk to a person", per language
        reason = self.pick(reason, t)
        if target == "end":
            self.finish(st)
        elif target == "handoff":
            flow = st.flow
            self.finish(st)
            t.handoff = HandoffRequest(None, reason, cause=cause, agent_reason=agent_reason, flow=flow)
        elif target.startswith("flow:"):
            self.start(st, self.flows.flows[target[5:]])
        else:
            st.step = self.flows.flows[st.flow].index_of(target)  # type: ignore[index]

    # -- running ------------------------------------------------------------------

    async def run(self, t: Turn) -> None:
        st = t.st
        for _ in range(MAX_STEPS_PER_TURN):
            if st.flow is None or st.awaiting or t.handoff is not None:
                return
            pf = self.flows.flows[st.flow]
            if st.step >= len(pf.steps):
                self.finish(st)
                return
            step = pf.steps[st.step]
            t.flows_run.add(pf.name)
            if await self.exec(t, pf, step):
                st.step += 1
        log.error("flow %s ran %d steps in one turn; stopping (a goto loop?)", st.flow, MAX_STEPS_PER_TURN)
        self.finish(st)

    async def exec(self, t: Turn, pf: ParsedFlow, step: Step) -> bool:
        """Execute one step; True to move on to the next step, False if it moved the pointer itself."""
        st = t.st
        if isinstance(step, SayStep):
            self.say(t, step)
        elif isinstance(step, CollectStep):
            if step.skip_if_filled and st.slots.get(step.collect) not in (None, "", []):
                return True
            st.awaiting, st.attempts = step.collect, 0
            value = prefill(step, st)
            if value is not None:
                st.confirm = value
                # the next questions answered already too (one long e-mail): one confirmation for all
                st.confirm_more = self._prefill_ahead(pf, st)
                if st.confirm_more:
                    found = {step.collect: (step, value)} | {
                        s.collect: (s, st.confirm_more[s.collect]) for s in pf.steps[st.step + 1:]
                        if isinstance(s, CollectStep) and s.collect in st.confirm_more}
                    items = [(s.collect.replace("_", " "), _shown(s, v, t.lang, self)) for s, v in found.values()]
                    text = self.render(self.settings.confirm_prefills, t, items=items)
                else:
                    text = self.render(self.settings.confirm_prefill, t, value=_shown(step, value, t.lang, self),
                                       label=step.collect.replace("_", " "))
                t.replies.append(Reply(text, (Button(self.system("button_yes", t), "prefill:yes"),
                                              Button(self.system("button_no", t), "prefill:no"))))
                return False
            self.ask(t, step)
            return False
        elif isinstance(step, BranchStep):
            ctx = t.context()
            for raw in step.branch:
                case = BranchCase.model_validate(raw)
                if case.else_ or self._truthy(case.if_, ctx):
                    self.jump(t, case.then)
                    return False
        elif isinstance(step, SetStep):
            for k, v in step.set.items():
                st.slots[k] = self.render(v, t) if isinstance(v, str) else v
        elif isinstance(step, ActionStep):
            if step.action == "reset":
                st.slots = {}
                st.asking_flow = None
            else:
                fn = self.actions.get(step.action)
                if fn is None:
                    raise LookupError(f"action {step.action!r} is not registered")
                t.actions_run += 1
                key = f"{t.input.key}/{t.actions_run}/{pf.name}/{st.step}" if t.input.key else ""
                ctx = ActionContext(t.input.conversation_id, t.input.channel, dict(t.input.customer),
                                    dict(st.slots), t.input.text, key=key, language=t.lang,
                                    texts=partial(self.system_in, t.lang),
                                    titles=partial(self.choice_title, t.lang),
                                    agent_texts=partial(self.system_in, self.settings.languages.default))
                result = await fn(ctx)
                t.actions_called.append(step.action)
                st.slots.update(ctx.updates)
                if step.save_as:
                    st.slots[step.save_as] = result
        elif isinstance(step, CallStep):
            return await self._call(t, pf, step)
        elif isinstance(step, HandoffStep):
            h = step.handoff
            t.handoff = HandoffRequest(h.team, self.render(h.reason, t), h.priority, cause=h.cause, flow=pf.name)
            self.finish(st)
            return False
        elif isinstance(step, GotoStep):
            self.jump(t, step.goto)
            return False
        elif isinstance(step, EndStep):
            self.finish(st)
            return False
        return True

    async def _call(self, t: Turn, pf: ParsedFlow, step: CallStep) -> bool:
        """A ``call:`` step: call, save the answer's fields, go where the outcome says."""
        from bot.integrations import CallOutcome, CallRequest, dig   # aiohttp only where flows call out

        st = t.st
        t.actions_run += 1
        key = f"{t.input.key}/{t.actions_run}/{pf.name}/{st.step}" if t.input.key else ""
        ctx = t.context()
        try:
            req = CallRequest(step.call, step.method, self.renderer.render_url(step.path, ctx),
                              {k: self.renderer.render(v, ctx) for k, v in step.query.items()},
                              _render_body(self.renderer, step.body, ctx), key=key, label=step.path)
        except TemplateError as exc:
            log.error("call %s in flow %s: %s", step.call, pf.name, exc)
            outcome = CallOutcome("failure", reason="the step's path, query or body did not render")
        else:
            if self.calls is None:
                outcome = CallOutcome("failure", reason="no integrations configured")
            else:
                outcome = await self.calls.call(req)
        t.actions_called.append("call:" + step.call)
        target: str | None
        if outcome.kind == "success":
            target = step.on_success
        elif outcome.kind == "not_found" and step.on_not_found:
            target = step.on_not_found
        elif outcome.kind == "status" and outcome.status in step.on_status:
            target = step.on_status[outcome.status]   # type: ignore[index]
        else:
            log.warning("call %s in flow %s failed: %s; going to %s", step.call, pf.name,
                        outcome.reason or outcome.kind, step.on_failure)
            t.replies.append(Reply(self.render(step.failure_message, t) if step.failure_message
                                   else self.system("call_failed", t)))
            self.jump(t, step.on_failure, reason=self.system("call_failed_reason", t), cause="other",
                      agent_reason=self.system_in(self.settings.languages.default, "why_call_failed", call=step.call,
                                                  why=outcome.reason or outcome.kind))
            return False
        if isinstance(outcome.data, (dict, list)) or outcome.data is None:
            for slot, path in step.save.items():
                st.slots[slot] = dig(outcome.data, path)
        if target is None:
            return True
        self.jump(t, target)
        return False

    def _truthy(self, expr: str | None, ctx: dict[str, Any]) -> bool:
        try:
            return bool(self.renderer.evaluate(expr or "false", ctx))
        except TemplateError:
            log.warning("branch condition %r failed; treated as false", expr, exc_info=True)
            return False

    # -- what the customer reads --------------------------------------------------

    def pick(self, source: Text | None, t: Turn) -> str:
        """``source`` in the turn's language (README "Languages")."""
        return pick(source, t.lang, self.settings.languages)

    def render(self, source: Text, t: Turn, **extra: Any) -> str:
        """``source`` in the turn's language, rendered with the step names (and ``extra``)."""
        ctx = t.context()
        if extra:
            ctx |= extra
        return self.renderer.render(self.pick(source, t), ctx)

    def system(self, key: str, t: Turn, **values: Any) -> str:
        """One of omnibot's own texts (flows/i18n.py SYSTEM_MESSAGES) in the turn's language."""
        src = system_text(key, t.lang, self.settings.languages, self.settings.messages)
        return self.renderer.render(src, values) if values or "{" in src else src

    def system_in(self, lang: str | None, key: str, **values: Any) -> str:
        """One of omnibot's own texts in ``lang`` (an action's answer, README "Languages")."""
        src = system_text(key, lang, self.settings.languages, self.settings.messages)
        return self.renderer.render(src, values) if values or "{" in src else src

    def choice_title(self, lang: str | None, slot: str, value: Any) -> str:
        """The title, in ``lang``, of the choice ``value`` of a collect step for ``slot`` (any flow)."""
        for pf in self.flows.flows.values():
            for step in pf.steps:
                if isinstance(step, CollectStep) and step.collect == slot and step.type == "choice":
                    for c in step.choices:
                        title, v = choice_title_value(c, lang, self.settings.languages)
                        if v == value:
                            return title
        return str(value)

    def say(self, t: Turn, step: SayStep) -> None:
        buttons = tuple(Button(b, b) if isinstance(b, str) else Button(self.pick(b.title, t), b.payload)
                        for b in step.buttons)
        t.replies.append(Reply(self.render(step.say, t), buttons))

    def ask(self, t: Turn, step: CollectStep, *, again: bool = False) -> None:
        buttons: tuple[Button, ...] = ()
        if step.type == "choice":
            buttons = tuple(Button(*choice_title_value(c, t.lang, self.settings.languages)) for c in step.choices)
        if step.optional and step.type == "attachment":
            buttons = buttons + (Button(self.system("button_skip", t), "skip"),)
        t.replies.append(Reply(self.render(step.ask, t), buttons))


def _render_body(renderer: Renderer, body: Any, ctx: dict[str, Any]) -> Any:
    """A call's JSON body with each string rendered as a template (JSON encoding escapes the values)."""
    if isinstance(body, str):
        return renderer.render(body, ctx)
    if isinstance(body, dict):
        return {k: _render_body(renderer, v, ctx) for k, v in body.items()}
    if isinstance(body, list):
        return [_render_body(renderer, v, ctx) for v in body]
    return body


def _shown(step: CollectStep, value: Any, lang: str | None = None, runner: StepRunner | None = None) -> str:
    """A pre-filled value as the customer reads it: a choice's title, a long message shortened."""
    if step.type == "choice":
        for c in step.choices:
            title, v = choice_title_value(c, lang, runner.settings.languages if runner else None)
            if v == value:
                return title
    text = str(value)
    return f"“{text[:117]}…”" if len(text) > 120 else (f"“{text}”" if step.prefill == "message" else text)
