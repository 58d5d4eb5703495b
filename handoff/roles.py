"""What each role may do on the desks: one rule function, :func:`can`, used by the web and Slack desks.

* **agent** works their teams' queues: sees and claims their teams' handoffs; replies to,
  resolves, transfers and hands back those nobody else holds (a reply needs their claim: the
  queue's rule); resolves their teams' complaint tickets.
* **supervisor** (department head) has all of their teams: besides an agent's rights there, may
  take over a handoff another agent holds at any time (an agent only once its holder has been idle
  for ``agent_desk.takeover_idle_minutes``: :func:`take_over_rule`), reassign, review and approve,
  reveal masked personal data (README "Privacy"), and resolve or hand back any of their teams' handoffs.
* **admin** may do everything, in every team, including everyone's metrics and configuration.

A disabled account may do nothing. Nobody acts as another: the acting name is the account's.
"""

from __future__ import annotations

from typing import Any, Protocol

from bot.storage.base import AgentAccount

#: Actions on one handoff (or ticket): anything with a ``team`` and an ``agent`` (its holder).
HANDOFF_ACTIONS = frozenset({"view", "claim", "reply", "resolve", "hand_back", "take_over", "reassign",
                             "approve", "review", "resolve_ticket", "transfer", "reveal"})
#: Actions that concern no one handoff.
GLOBAL_ACTIONS = frozenset({"metrics_all", "configure"})
ACTIONS = HANDOFF_ACTIONS | GLOBAL_ACTIONS

_SUPERVISOR_ONLY = frozenset({"take_over", "reassign", "approve", "review", "reveal"})


class Target(Protocol):
    team: str
    agent: str | None


def can(account: AgentAccount, action: str, target: Target | Any = None) -> bool:
    """Whether ``account`` may do ``action`` (on ``target``, a handoff or a ticket).

    Raises:
        ValueError: for an unknown action (a typo must not quietly deny or allow).
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if account.disabled:
        return False
    if account.role == "admin":
        return True
    if action in GLOBAL_ACTIONS:
        return False
    if target is None or getattr(target, "team", None) not in account.teams:
        return False
    holder = getattr(target, "agent", None)
    mine = holder is not None and holder == account.name
    if account.role == "supervisor":
        if action == "reply":
            return holder is None or mine       # take over first: a reply is always in one's own name
        return True
    if account.role != "agent" or action in _SUPERVISOR_ONLY:
        return False
    if action == "resolve_ticket":               # a complaint nobody is chatting about: their team's
        return True
    if action == "view":
        return True
    # claim, reply, resolve, transfer, hand_back: never in a conversation another agent holds (the
    # queue then asks for a claim before a reply, and lets a queued one be resolved or handed back)
    return holder is None or mine


def take_over_rule(account: AgentAccount, target: Target | Any) -> str | None:
    """How ``account`` may take over ``target`` (a handoff another agent holds): ``"any time"`` (a
    supervisor of its team, or an admin), ``"when idle"`` (an agent of its team: only after the
    holder has not replied for ``agent_desk.takeover_idle_minutes``), or None (not at all)."""
    if can(account, "take_over", target):
        return "any time"
    if not account.disabled and account.role == "agent" and getattr(target, "team", None) in account.teams:
        return "when idle"
    return None


def who_may(action: str) -> str:
    """The roles allowed ``action``, for a 403's message."""
    if action in GLOBAL_ACTIONS:
        return "an admin"
    if action in _SUPERVISOR_ONLY:
        return "a supervisor of the team, or an admin"
    return "an agent of the team (on what no other agent holds), a supervisor of the team, or an admin"
