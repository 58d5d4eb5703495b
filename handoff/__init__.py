"""Human handoff: the durable queue, the agent desk interface and its local web page."""

from .queue import HandoffQueue
from .states import HandoffState, TRANSITIONS, next_state

__all__ = ["HandoffQueue", "HandoffState", "TRANSITIONS", "next_state"]
