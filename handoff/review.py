"""Review and authority: the complaint process's steps 4 and 5, one service for both desks.

**Resolve with an outcome.** Resolving a conversation that holds a complaint, or a complaint
from the ticket list, needs the outcome (what the customer will be told); without one it is a
400. Other conversations may be resolved without one.

**Review.** A complaint at or above ``complaints.review.min_severity`` (when
``complaints.review.enabled``) is not resolved at once: resolving *proposes* the outcome
(``review_state`` ``pending``). The customer is told nothing yet: the conversation stays where
it was (a claimed handoff stays claimed by the agent, who can keep talking to the customer; the
desks mark it "in review"), and the Reviews list of the team's supervisors shows it. A
supervisor of the ticket's team (or an admin) then

* **approves**: the ticket's handoff is resolved with the proposed outcome in the holder's name
  (or, with no conversation in the queue, the customer is told where they wrote last), then the
  survey runs, and ``communicated_at`` is set; or
* **sends it back** with a note (``returned``): the proposer sees the note and proposes again.

If the customer cannot be told at the approval (another conversation with the team is open,
say), the approval stands and the ticket waits, approved, until an agent resolves it (which
then tells the approved outcome): the communicate clock runs meanwhile.

**Authority.** A compensation (``complaints.authority.kinds``: refund, replacement, discount)
up to the requester's role limit is granted at once; above it, it waits (``pending``) for a
supervisor of the ticket's team or an admin whose own limit covers the amount, who approves or
rejects it once. Who asked, who decided and when are kept on the ticket.

Every step is written to the audit log and announced: a ``review`` event on the bus (the web
desk reloads) and to each ``listeners`` callback (the Slack desk's review cards).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from bot import privacy
from bot.config import SEVERITIES, Config
from bot.errors import OmnibotError, StorageUnavailable
from bot.events import Event, EventBus
from bot.storage import HandoffRecord, Store, Ticket
from bot.storage.base import AgentAccount
from bot.storage.ops_work import Compensation

from .queue import DeskError, HandoffQueue
from .roles import can, who_may

log = logging.getLogger(__name__)

RANK = {s: i for i, s in enumerate(SEVERITIES)}
Listener = Callable[[str, dict[str, Any]], Awaitable[None]]


class WorkError(DeskError):
    """A review or compensation step that cannot be done; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TeamOf:
    """A ticket as a roles target: its team, held by nobody."""
    team: str
    agent: None = None


@dataclass(frozen=True)
class Outcome:
    """What a resolve did: resolved (``handoff``/``ticket``) or ``proposed`` for review."""
    proposed: bool
    handoff: HandoffRecord | None = None
    ticket: Ticket | None = None


class Reviews:
    """Resolve-with-outcome, reviews and compensations over the queue and the store.

    Args:
        store: storage.
        queue: resolves a ticket's handoff (the customer is told through its ``on_resolved``).
        resolutions: :class:`handoff.resolution.Resolutions`, for a ticket with no handoff.
        config: ``complaints.review``, ``complaints.authority`` and the teams.
        events: a ``review`` event after every step.
        clock: the tickets' clock (tests control it).
    """

    def __init__(self, *, store: Store, queue: HandoffQueue, resolutions: Any, config: Config, events: EventBus,
                 clock: Callable[[], Any]) -> None:
        self.store = store
        self.queue = queue
        self.resolutions = resolutions
        self.config = config
        self.cfg = config.complaints
        self.events = events
        self.clock = clock
        self.listeners: list[Listener] = []

    # -- rules -----------------------------------------------------------------

    def needs_review(self, ticket: Ticket) -> bool:
        r = self.cfg.review
        return r.enabled and RANK.get(ticket.severity, 0) >= RANK[r.min_severity]

    async def team_of(self, ticket: Ticket) -> str:
        """The ticket's team: its department's, else its conversation's handoff's, else the default."""
        if ticket.team:
            return ticket.team
        h = await self.store.latest_handoff(ticket.conversation_id)
        return h.team if h is not None else self.config.handoff.default_team

    async def _ticket(self, reference: str) -> Ticket:
        t = await self.store.get_ticket(reference.strip().upper())
        if t is None:
            raise WorkError(f"no complaint {reference}", 404)
        return t

    @staticmethod
    def _forbid(account: AgentAccount, action: str, team: str) -> None:
        if not can(account, action, TeamOf(team)):
            raise WorkError(f"{account.name} ({account.role}) may not {action.replace('_', ' ')} in team "
                            f"{team!r}: only {who_may(action)} may", 403)

    @staticmethod
    def outcome_text(result: Any, *, required: bool) -> str | None:
        """The outcome as told to the customer (trimmed, at most 2000 characters)."""
        if result is not None and not isinstance(result, str):
            raise WorkError('the outcome must be text: {"result": "..."}')
        text = (result or "").strip()[:2000] or None
        if required and text is None:
            raise WorkError('a complaint needs its outcome: send {"result": "what was done"}, the customer '
                            'is told it')
        return text

    # -- resolving -------------------------------------------------------------

    async def resolve_handoff(self, account: AgentAccount, handoff_id: str, result: str | None) -> Outcome:
        """Resolve a handoff (the caller checked the ``resolve`` rule): with the outcome, required
        when the conversation has an open complaint, which is proposed instead when it needs review."""
        h = await self.queue.get(handoff_id)
        ticket = await self.store.conversation_ticket(h.conversation_id)
        if ticket is None or ticket.resolved_at is not None:
            return Outcome(False, handoff=await self.queue.resolve(handoff_id, account.name, result=result))
        if result is None and not (ticket.review_state == "approved" and ticket.communicated_at is None):
            self.outcome_text(None, required=True)
        if h.state == "claimed" and h.agent != account.name:
            raise WorkError(f"claimed by {h.agent}; only they can resolve it", 409)
        return await self._resolve(account, ticket, result, handoff=h)

    async def resolve_ticket(self, account: AgentAccount, reference: str, result: str | None) -> Outcome:
        """Resolve a complaint from the ticket list (nobody is chatting about it), or propose it."""
        ticket = await self._ticket(reference)
        self._forbid(account, "resolve_ticket", await self.team_of(ticket))
        if ticket.resolved_at is not None:
            raise WorkError(f"{ticket.reference} is already resolved", 409)
        if result is None and not (ticket.review_state == "approved" and ticket.communicated_at is None):
            self.outcome_text(None, required=True)
        return await self._resolve(account, ticket, result, handoff=None)

    async def _resolve(self, account: AgentAccount, ticket: Ticket, result: str | None, *,
                       handoff: HandoffRecord | None) -> Outcome:
        if self.needs_review(ticket):
            if ticket.review_state == "pending":
                raise WorkError(f"{ticket.reference} waits for a supervisor's review of "
                                f"{ticket.proposed_by}'s proposal", 409)
            if ticket.review_state == "approved" and ticket.communicated_at is None:
                # approved, the customer not told yet: tell them the approved outcome now
                done = await self._communicate(ticket, agent=account.name)
                if done is not None:
                    raise WorkError(f"the approved outcome could not be told: {done}", 409)
                return Outcome(False, handoff=await self.store.get_handoff(handoff.id) if handoff else None,
                               ticket=await self.store.get_ticket(ticket.reference))
            return Outcome(True, ticket=await self.propose(account, ticket.reference, result))
        if handoff is not None:
            h = await self.queue.resolve(handoff.id, account.name, result=result)
            return Outcome(False, handoff=h, ticket=await self.store.get_ticket(ticket.reference))
        try:
            t = await self.resolutions.resolve_ticket(ticket.reference, account.name, result)
        except StorageUnavailable:
            raise
        except OmnibotError as exc:        # resolved meanwhile, in a conversation with the team, ...
            raise WorkError(str(exc), getattr(exc, "status", 409)) from exc
        return Outcome(False, ticket=t)

    # -- review ----------------------------------------------------------------

    async def propose(self, account: AgentAccount, reference: str, result: Any) -> Ticket:
        """Propose the outcome of a complaint for review; the customer is told nothing yet."""
        text = privacy.stored_text(self.outcome_text(result, required=True))   # kept as replies are
        assert text is not None
        ticket = await self._ticket(reference)
        team = await self.team_of(ticket)
        h = await self.store.active_handoff(ticket.conversation_id)
        if h is not None:
            if not can(account, "resolve", h):
                raise WorkError(f"{account.name} may not resolve this conversation (team {h.team}"
                                f"{f', held by {h.agent}' if h.agent else ''})", 403)
        else:
            self._forbid(account, "resolve_ticket", team)
        if not self.needs_review(ticket):
            raise WorkError(f"{ticket.reference} ({ticket.severity}) needs no review: resolve it", 409)
        now = self.clock()
        done = await self.store.propose_review(ticket.reference, result=text, by=account.name, at=now)
        if done is None:
            why = ("is resolved" if ticket.resolved_at else
                   "waits for a review already" if ticket.review_state == "pending" else
                   "is approved: resolve it to tell the customer")
            raise WorkError(f"{ticket.reference} {why}", 409)
        await self._audit(account, "propose_resolution", done, {"result": text})
        log.info("complaint %s: resolution proposed by %s for review", done.reference, account.name)
        await self._announce("review_pending", done, team=team, by=account.name)
        return done

    async def approve(self, account: AgentAccount, reference: str) -> tuple[Ticket, str | None]:
        """Approve the proposal and tell the customer; returns the ticket and, if the customer could
        not be told now, why (the approval stands; resolving the ticket tells them)."""
        ticket = await self._ticket(reference)
        team = await self.team_of(ticket)
        self._forbid(account, "approve", team)
        done = await self.store.decide_review(ticket.reference, approve=True, by=account.name, at=self.clock())
        if done is None:
            raise WorkError(f"{ticket.reference} has no proposal waiting for review"
                            + (f" (it is {ticket.review_state})" if ticket.review_state else ""), 409)
        await self._audit(account, "approve_resolution", done, {"result": done.proposed_result})
        problem = await self._communicate(done, agent=None)
        final = await self.store.get_ticket(done.reference)
        assert final is not None
        log.info("complaint %s: resolution approved by %s%s", done.reference, account.name,
                 "" if problem is None else f"; the customer is not told yet ({problem})")
        await self._announce("review_approved", final, team=team, by=account.name, problem=problem)
        return final, problem

    async def send_back(self, account: AgentAccount, reference: str, note: Any) -> Ticket:
        """Return the proposal to the proposer with a note (required)."""
        if not isinstance(note, str) or not note.strip():
            raise WorkError('say what to change: send {"note": "..."}')
        ticket = await self._ticket(reference)
        team = await self.team_of(ticket)
        self._forbid(account, "review", team)
        done = await self.store.decide_review(ticket.reference, approve=False, by=account.name, at=self.clock(),
                                              note=privacy.stored_text(note.strip()[:1000]))
        if done is None:
            raise WorkError(f"{ticket.reference} has no proposal waiting for review"
                            + (f" (it is {ticket.review_state})" if ticket.review_state else ""), 409)
        await self._audit(account, "return_resolution", done, {"note": done.review_note})
        log.info("complaint %s: resolution sent back by %s", done.reference, account.name)
        await self._announce("review_returned", done, team=team, by=account.name)
        return done

    async def _communicate(self, ticket: Ticket, *, agent: str | None) -> str | None:
        """Tell the customer the approved outcome (resolve the ticket's handoff, or the ticket);
        None when told, else why not."""
        result = ticket.proposed_result
        h = await self.store.active_handoff(ticket.conversation_id)
        try:
            if h is not None:
                await self.queue.resolve(h.id, h.agent or agent or ticket.proposed_by or "", result=result)
            else:
                await self.resolutions.resolve_ticket(ticket.reference, agent or ticket.proposed_by or "", result)
        except StorageUnavailable:
            raise
        except OmnibotError as exc:
            return str(exc)
        await self.store.mark_communicated(ticket.reference, at=self.clock())
        return None

    async def reviews_for(self, account: AgentAccount) -> list[dict[str, Any]]:
        """What the account's Reviews list shows: for a supervisor or admin, the proposals of their
        teams; for everyone, their own proposals (waiting, returned, or approved and not told)."""
        out = []
        for t in await self.store.tickets_in_review():
            team = await self.team_of(t)
            reviewer = can(account, "approve", TeamOf(team))
            if not reviewer and t.proposed_by != account.name:
                continue
            h = await self.store.active_handoff(t.conversation_id)
            out.append(self.describe(t, team) | {
                "may_decide": reviewer and t.review_state == "pending",
                "handoff": {"id": h.id, "state": h.state, "agent": h.agent} if h else None})
        return out

    def describe(self, t: Ticket, team: str) -> dict[str, Any]:
        return {"reference": t.reference, "severity": t.severity, "category": t.category, "team": team,
                "team_name": self.config.handoff.team_name(team), "conversation_id": t.conversation_id,
                "review": t.review()}

    # -- compensation ------------------------------------------------------------

    def authority(self, account: AgentAccount) -> dict[str, Any]:
        a = self.cfg.authority
        return {"currency": a.currency, "limit": a.limit(account.role), "kinds": list(a.kinds), "role": account.role}

    async def request_compensation(self, account: AgentAccount, reference: str, kind: Any, amount: Any,
                                   note: Any = None) -> Compensation:
        """Grant (within the account's limit) or ask a supervisor for a compensation on a complaint."""
        a = self.cfg.authority
        if not isinstance(kind, str) or kind not in a.kinds:
            raise WorkError(f"kind must be one of {', '.join(a.kinds)}")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount) \
                or amount < 0 or amount > 1e9:
            raise WorkError("amount must be a number from 0 (a replacement may cost nothing) up")
        if note is not None and not isinstance(note, str):
            raise WorkError("note must be text")
        ticket = await self._ticket(reference)
        team = await self.team_of(ticket)
        self._forbid(account, "resolve_ticket", team)
        if ticket.resolved_at is not None:
            raise WorkError(f"{ticket.reference} is resolved; reopen it first", 409)
        limit = a.limit(account.role)
        state = "granted" if limit is None or amount <= limit else "pending"
        c = await self.store.add_compensation(ticket.reference, kind=kind, amount=round(float(amount), 2),
                                              currency=a.currency, state=state, requested_by=account.name,
                                              at=self.clock(),
                                              note=privacy.stored_text((note or "").strip()[:500]) or None)
        await self._audit(account, f"compensation_{state}", ticket, c.to_dict())
        log.info("complaint %s: %s %s %.2f %s by %s", ticket.reference, kind, state, c.amount, c.currency,
                 account.name)
        await self._announce("compensation_" + state, ticket, team=team, by=account.name, compensation=c.to_dict())
        return c

    async def decide_compensation(self, account: AgentAccount, compensation_id: str, *, approve: bool,
                                  note: Any = None) -> Compensation:
        """A supervisor's (or admin's) decision on a pending request, once."""
        if note is not None and not isinstance(note, str):
            raise WorkError("note must be text")
        c = next((x for x in await self.store.pending_compensations() if x.id == compensation_id), None)
        if c is None:
            raise WorkError(f"no pending compensation {compensation_id} (decided already, or no such request)",
                            409)
        ticket = await self._ticket(c.ticket_reference)
        team = await self.team_of(ticket)
        self._forbid(account, "approve", team)
        limit = self.cfg.authority.limit(account.role)
        if approve and limit is not None and c.amount > limit:
            raise WorkError(f"{c.amount:.2f} {c.currency} is above your authority ({limit:.2f} {c.currency} as "
                            f"{account.role}): an admin decides", 403)
        done = await self.store.decide_compensation(c.id, approve=approve, by=account.name, at=self.clock(),
                                                    note=privacy.stored_text((note or "").strip()[:500]) or None)
        if done is None:
            raise WorkError(f"compensation {compensation_id} was decided meanwhile", 409)
        await self._audit(account, f"compensation_{done.state}", ticket, done.to_dict())
        await self._announce("compensation_decided", ticket, team=team, by=account.name,
                             compensation=done.to_dict())
        return done

    async def pending_compensations_for(self, account: AgentAccount) -> list[dict[str, Any]]:
        """Pending requests the account may decide, and their own (to see them waiting)."""
        out = []
        for c in await self.store.pending_compensations():
            ticket = await self.store.get_ticket(c.ticket_reference)
            if ticket is None:
                continue
            team = await self.team_of(ticket)
            decider = can(account, "approve", TeamOf(team))
            if decider or c.requested_by == account.name:
                out.append(c.to_dict() | {"team": team, "may_decide": decider,
                                          "conversation_id": ticket.conversation_id})
        return out

    # -- helpers -------------------------------------------------------------------

    async def _audit(self, account: AgentAccount, action: str, ticket: Ticket, detail: dict[str, Any]) -> None:
        # the log outlives the ticket: free text in it (the outcome, a note) as the logs see it
        detail = {k: privacy.current().logs(v) if isinstance(v, str) else v for k, v in detail.items()}
        await self.store.audit(f"agent:{account.name}", action, at=self.clock(), customer_id=ticket.customer_id,
                               target=ticket.reference, detail=detail)

    async def _announce(self, kind: str, ticket: Ticket, *, team: str, by: str, **extra: Any) -> None:
        h = await self.store.active_handoff(ticket.conversation_id)
        data = {"what": kind, "reference": ticket.reference, "team": team, "by": by,
                "handoff_id": h.id if h else None} | extra
        self.events.publish(Event("review", ticket.conversation_id, h.id if h else None, data))
        for fn in self.listeners:
            try:
                await fn(kind, data | {"ticket": ticket})
            except Exception:  # noqa: BLE001 - one desk failing must not undo or hide the step
                log.exception("%s of %s not shown on %s", kind, ticket.reference, fn)
