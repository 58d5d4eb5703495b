"""Offering the complaint flow to a customer who complains in the middle of something else."""

from __future__ import annotations

from bot.model import Button

from .loader import FlowSet, ParsedFlow
from .steps import StepRunner
from .turn import Reply, Turn


class ComplaintOffer:
    """Decides, after a turn ran, whether to add "Would you like me to open a complaint?"."""

    def __init__(self, flowset: FlowSet, steps: StepRunner) -> None:
        self.flows = flowset
        self.settings = flowset.settings
        self.steps = steps

    def maybe_offer(self, t: Turn, complaint: float, matched: ParsedFlow | None) -> None:
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
        t.replies.append(Reply(self.steps.render(cs.offer, t), (Button(cs.offer_button, f"intent:{cs.flow}"),)))
