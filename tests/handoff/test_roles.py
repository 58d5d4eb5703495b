"""Every role rule of handoff.roles.can: what an agent, a supervisor and an admin may do."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import pytest

from bot.storage.base import AgentAccount
from handoff.roles import ACTIONS, can, who_may


def account(role: str, name: str = "Anna", teams: tuple[str, ...] = ("support",),
            disabled: bool = False) -> AgentAccount:
    return AgentAccount(id=f"agt_{name}", name=name, email=f"{name}@shop.test", teams=teams, role=role,
                        disabled=disabled, created_at=datetime(2026, 11, 30, tzinfo=timezone.utc))


@dataclass
class H:
    team: str
    agent: str | None = None


ANNA, BOB = account("agent", "Anna"), account("agent", "Bob")
SUE = account("supervisor", "Sue", teams=("support", "complaints"))
ROOT = account("admin", "Root", teams=())


def test_an_agent_works_their_teams_queue() -> None:
    queued = H("support")
    assert can(ANNA, "view", queued) and can(ANNA, "claim", queued)
    mine = H("support", "Anna")
    for action in ("view", "claim", "reply", "resolve", "hand_back", "transfer"):
        assert can(ANNA, action, mine), action
    for action in ("transfer", "resolve", "hand_back", "reply"):   # (a reply still needs a claim: the queue's rule)
        assert can(ANNA, action, queued), action
    assert can(ANNA, "resolve_ticket", H("support"))


def test_an_agent_cannot_see_or_touch_other_teams_queues() -> None:
    for action in ACTIONS - {"metrics_all", "configure"}:
        assert not can(ANNA, action, H("complaints")), action
        assert not can(ANNA, action, H("complaints", "Anna")), action


def test_an_agent_cannot_act_as_another() -> None:
    bobs = H("support", "Bob")
    assert can(ANNA, "view", bobs)                 # sees the colleague's conversation in the team queue
    for action in ("claim", "reply", "resolve", "hand_back", "take_over", "reassign", "transfer"):
        assert not can(ANNA, action, bobs), action
    assert can(BOB, "reply", bobs)


def test_an_agent_cannot_approve_review_reassign_or_see_everyones_metrics() -> None:
    for action in ("approve", "review", "reassign", "take_over"):
        assert not can(ANNA, action, H("support")) and not can(ANNA, action, H("support", "Anna"))
    assert not can(ANNA, "metrics_all") and not can(ANNA, "configure")


def test_a_supervisor_has_all_of_their_teams() -> None:
    for team in ("support", "complaints"):
        for action in ("view", "claim", "take_over", "reassign", "approve", "review", "resolve", "hand_back",
                       "resolve_ticket", "transfer"):
            assert can(SUE, action, H(team, "Anna")), (team, action)
    # a reply is always in one's own name: take the conversation over first
    assert not can(SUE, "reply", H("support", "Anna"))
    assert can(SUE, "reply", H("support", "Sue")) and can(SUE, "reply", H("support"))
    assert not can(SUE, "approve", H("sales")) and not can(SUE, "view", H("sales"))
    assert not can(SUE, "metrics_all") and not can(SUE, "configure")


def test_an_admin_may_do_everything() -> None:
    for action in ACTIONS:
        assert can(ROOT, action, H("sales", "Anna")), action
    assert can(ROOT, "metrics_all") and can(ROOT, "configure")


def test_a_disabled_account_may_do_nothing() -> None:
    for role in ("agent", "supervisor", "admin"):
        off = account(role, "Anna", disabled=True)
        assert not any(can(off, a, H("support", "Anna")) for a in ACTIONS), role


def test_no_target_or_unknown_role_or_action() -> None:
    assert not can(ANNA, "view") and not can(SUE, "approve")
    assert not can(account("intern"), "view", H("support"))
    with pytest.raises(ValueError):
        can(ROOT, "delete_everything", H("support"))
    assert "supervisor" in who_may("approve") and "admin" in who_may("metrics_all")
