"""When the bot is not sure what the customer wants: "did you mean A or B?", topics to pick
from, and after ``fallback.max_misses`` a person."""

from __future__ import annotations

from bot.model import Button

from .loader import FlowSet, ParsedFlow
from .steps import StepRunner
from .turn import Reply, Turn


class Fallback:
    """Answers a turn no flow took."""

    def __init__(self, flowset: FlowSet, steps: StepRunner) -> None:
        self.flows = flowset
        self.settings = flowset.settings
        self.steps = steps

    def miss(self, t: Turn, ranked: list[tuple[str, float]]) -> None:
        st = t.st
        fb = self.settings.fallback
        st.misses += 1
        t.missed = True
        st.flow, st.awaiting = None, None
        human = self.flows.flow_for_intent("human")
        if st.misses >= fb.max_misses:
            st.misses = 0
            buttons = (Button(self.steps.system("button_human", t), "intent:human"),) if human else ()
            t.replies.append(Reply(self.steps.render(fb.offer_human, t), buttons))
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
                title = self._intent_title(intent, pf, t)
                buttons.append(Button(title, f"intent:{intent}"))
                titles.append(title)
                if len(buttons) >= min(2, fb.suggestions):
                    break
            if buttons:
                t.replies.append(Reply(self.steps.render(fb.clarify, t, options=titles), tuple(buttons)))
                return
        # Nothing came close: suggest the first topics the flows offer, so the customer has a way on.
        for intent in (fb.topics or self.flows.intents):
            if len(buttons) >= fb.suggestions:
                break
            pf = self.flows.flow_for_intent(intent)
            if pf is not None and not pf.flow.interrupts:
                buttons.append(Button(self._intent_title(intent, pf, t), f"intent:{intent}"))
        msg = fb.messages[(st.misses - 1) % len(fb.messages)]
        t.replies.append(Reply(self.steps.render(msg, t), tuple(buttons)))

    def _intent_title(self, intent: str, pf: ParsedFlow, t: Turn) -> str:
        return (self.steps.pick(self.flows.intents[intent].description, t) or self.steps.pick(pf.flow.description, t)
                or intent.replace("_", " "))
