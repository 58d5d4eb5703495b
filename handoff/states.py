"""The handoff state machine, as data.

A transition the table does not list raises :class:`InvalidTransition`; the
store applies each allowed one as a compare-and-set, so of two agents
pressing Claim at once exactly one wins.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from bot.errors import InvalidTransition
from bot.model import ConversationState


class HandoffState(StrEnum):
    QUEUED = "queued"
    CLAIMED = "claimed"
    RESOLVED = "resolved"
    RETURNED = "returned"     # handed back to the bot


TRANSITIONS: Final[dict[tuple[HandoffState, str], HandoffState]] = {
    (HandoffState.QUEUED, "claim"): HandoffState.CLAIMED,
    (HandoffState.QUEUED, "cancel"): HandoffState.RETURNED,    # the customer withdraws / back to bot
    (HandoffState.QUEUED, "resolve"): HandoffState.RESOLVED,   # solved without a claim (e.g. duplicate)
    (HandoffState.CLAIMED, "release"): HandoffState.QUEUED,    # unclaim: back into the queue
    (HandoffState.CLAIMED, "hand_back"): HandoffState.RETURNED,
    (HandoffState.CLAIMED, "resolve"): HandoffState.RESOLVED,
    (HandoffState.QUEUED, "transfer"): HandoffState.QUEUED,    # to another team's queue
    (HandoffState.CLAIMED, "transfer"): HandoffState.QUEUED,
    (HandoffState.QUEUED, "assign"): HandoffState.CLAIMED,     # transferred to a named agent: theirs at once
    (HandoffState.CLAIMED, "assign"): HandoffState.CLAIMED,
    (HandoffState.CLAIMED, "take_over"): HandoffState.CLAIMED,  # another agent takes it from its holder
}

# What the conversation becomes after each resulting handoff state.
CONVERSATION_STATE: Final[dict[HandoffState, ConversationState]] = {
    HandoffState.QUEUED: ConversationState.WAITING,
    HandoffState.CLAIMED: ConversationState.WITH_AGENT,
    HandoffState.RESOLVED: ConversationState.CLOSED,
    HandoffState.RETURNED: ConversationState.BOT,
}


def next_state(current: str | HandoffState, event: str) -> HandoffState:
    """The state after ``event``, or InvalidTransition."""
    try:
        return TRANSITIONS[(HandoffState(current), event)]
    except (KeyError, ValueError):
        raise InvalidTransition(f"cannot {event} a handoff that is {current}") from None
