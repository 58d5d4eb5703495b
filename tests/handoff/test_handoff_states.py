"""The handoff state machine: every (state, event) pair, allowed or not."""

from __future__ import annotations

import itertools

import pytest

from bot.errors import InvalidTransition
from bot.model import ConversationState
from handoff.states import CONVERSATION_STATE, TRANSITIONS, HandoffState, next_state

S = HandoffState
EVENTS = ["claim", "cancel", "resolve", "release", "hand_back", "transfer", "assign", "take_over"]

# The specification, written out independently of the implementation's table.
ALLOWED = {
    (S.QUEUED, "claim"): S.CLAIMED,
    (S.QUEUED, "cancel"): S.RETURNED,
    (S.QUEUED, "resolve"): S.RESOLVED,
    (S.CLAIMED, "release"): S.QUEUED,
    (S.CLAIMED, "hand_back"): S.RETURNED,
    (S.CLAIMED, "resolve"): S.RESOLVED,
    (S.QUEUED, "transfer"): S.QUEUED,
    (S.CLAIMED, "transfer"): S.QUEUED,
    (S.QUEUED, "assign"): S.CLAIMED,         # transferred to a named agent
    (S.CLAIMED, "assign"): S.CLAIMED,
    (S.CLAIMED, "take_over"): S.CLAIMED,     # another agent takes it from its holder
}

PAIRS = list(itertools.product(list(HandoffState), EVENTS + ["bogus", ""]))


def test_states_and_events_are_the_expected_ones() -> None:
    assert [s.value for s in HandoffState] == ["queued", "claimed", "resolved", "returned"]
    assert {e for _, e in TRANSITIONS} == set(EVENTS)
    assert TRANSITIONS == ALLOWED


@pytest.mark.parametrize(("state", "event"), PAIRS, ids=[f"{s.value}-{e or 'empty'}" for s, e in PAIRS])
def test_every_state_event_pair(state: HandoffState, event: str) -> None:
    if (state, event) in ALLOWED:
        assert next_state(state, event) is ALLOWED[(state, event)]
        assert next_state(state.value, event) is ALLOWED[(state, event)]   # plain strings work too
    else:
        with pytest.raises(InvalidTransition) as ei:
            next_state(state, event)
        assert str(ei.value) == f"cannot {event} a handoff that is {state}"
        with pytest.raises(InvalidTransition):
            next_state(state.value, event)


def test_terminal_states_allow_nothing() -> None:
    for state in (S.RESOLVED, S.RETURNED):
        for event in EVENTS:
            with pytest.raises(InvalidTransition):
                next_state(state, event)


@pytest.mark.parametrize("state", ["", "open", "QUEUED", "closed"])
def test_unknown_state_is_an_invalid_transition(state: str) -> None:
    with pytest.raises(InvalidTransition, match=f"cannot claim a handoff that is {state}"):
        next_state(state, "claim")


def test_conversation_state_for_each_handoff_state() -> None:
    assert CONVERSATION_STATE == {
        S.QUEUED: ConversationState.WAITING,
        S.CLAIMED: ConversationState.WITH_AGENT,
        S.RESOLVED: ConversationState.CLOSED,
        S.RETURNED: ConversationState.BOT,
    }
