"""Complaint tickets: a reference at once, classified and routed by rules, status on request,
the result and a satisfaction score when an agent resolves it.

A complaint flow's ``create_reference`` action opens a ticket: the customer gets
its reference (``C-1042``) at once, with the department that will handle it and
the time by which it should be resolved (``complaints.sla.resolve``). Severity
starts at the flow's ``severity`` slot (or "normal") and rises with urgent or
angry wording (the NLU's urgency signal), a repeat complaint of the same
category, and matching rules; the department comes from the first matching
rule with one. Priority (the handoff queue's order) is the severity's rank plus
the matching rules' ``priority``. Every decision keeps its reason, for agents.

Time comes from an injected clock (``clock()`` -> aware datetime), so tests
control it and nothing sleeps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping, Sequence

from bot.config import SEVERITIES, ComplaintsConfig, RouteMatch
from bot.events import Event, EventBus
from bot.model import utcnow
from bot.names import localized
from bot.storage import Store, Ticket
from flows.engine import ActionContext
from flows.i18n import render_system, when
from flows.nlu.urgency import urgency

from .sla import Clock, breached, deadline
REFERENCE = re.compile(r"\b[Cc]-?\s?(\d{3,9})\b")
RANK = {s: i for i, s in enumerate(SEVERITIES)}


@dataclass(frozen=True, slots=True)
class Classification:
    severity: str
    department: str
    priority: int
    reasons: tuple[str, ...]


def _raise(severity: str, steps: int) -> str:
    return SEVERITIES[min(len(SEVERITIES) - 1, RANK[severity] + steps)]


def _matches(m: RouteMatch, *, category: str | None, text: str, tier: str | None,
             fields: Mapping[str, Any]) -> bool:
    if m.category and (category or "") not in m.category:
        return False
    if m.keywords and not any(re.search(rf"\b{re.escape(k)}\b", text, re.I) for k in m.keywords):
        return False
    if m.tier and (tier or "") not in m.tier:
        return False
    return all(str(fields.get(k, "")).lower() == str(v).lower() for k, v in m.slots.items())


def _english(key: str, **values: Any) -> str:
    return render_system(key, "en", **values)


def classify(cfg: ComplaintsConfig, *, category: str | None, fields: Mapping[str, Any], text: str,
             tier: str | None = None, repeats: int = 0, say: Callable[..., str] | None = None) -> Classification:
    """Severity, department and priority of a complaint, with the reasons: written for agents
    by ``say(key, **values)`` (the ``why_*`` messages in the flows' default language; built-in
    English without it)."""
    say = say or _english
    given = str(fields.get("severity") or "").lower()
    severity = given if given in RANK else "normal"
    reasons = [say("why_flow_severity", severity=severity)] if given in RANK else []
    u = urgency(text)
    if u.level != "none":
        severity = _raise(severity, 1 if u.level == "elevated" else 2)
        reasons.append(say("why_urgency", level=u.level, cues=", ".join(u.reasons[:3])))
    if repeats:
        severity = _raise(severity, 1)
        reasons.append(say("why_repeat", count=repeats, category=category))
    department, extra = None, 0
    for i, rule in enumerate(cfg.rules, 1):
        if not _matches(rule.when, category=category, text=text, tier=tier, fields=fields):
            continue
        did = []
        if rule.department and department is None:
            department = rule.department
            did.append(say("why_route_department", department=department))
        if rule.severity and RANK[rule.severity] > RANK[severity]:
            severity = rule.severity
            did.append(say("why_route_severity", severity=severity))
        if rule.priority:
            extra += rule.priority
            did.append(say("why_route_priority", priority=f"{rule.priority:+d}"))
        if did:
            reasons.append(say("why_route", number=i, changes=", ".join(did)))
    return Classification(severity, department or cfg.default_department, RANK[severity] + extra, tuple(reasons))


class Tickets:
    """Opens tickets and answers "what's the status of C-1042" for the ticket's own customer."""

    def __init__(self, store: Store, cfg: ComplaintsConfig, *, clock: Clock = utcnow,
                 team_names: Mapping[str, str] | None = None, events: EventBus | None = None) -> None:
        self.store = store
        self.events = events    # told when a score arrives: a desk showing the ticket refreshes
        self.cfg = cfg
        self.clock = clock
        self.team_names = dict(team_names or {})

    # -- opening ------------------------------------------------------------------------------

    async def open(self, ctx: ActionContext) -> Ticket:
        """Open the complaint's ticket; a replay of the same turn step gets the same ticket."""
        if ctx.key:
            opened = await self.store.ticket_by_origin(ctx.key)
            if opened is not None:
                return opened
        conv = await self.store.get_conversation(ctx.conversation_id)
        if conv is None:
            raise LookupError(f"conversation {ctx.conversation_id} is not stored")
        customer = await self.store.get_customer(conv.customer_id)
        tier = str((customer.attributes if customer else {}).get("tier") or "") or None
        history = await self.store.history(conv.id, limit=50)
        said = [m.text for m in history if m.direction == "in" and m.text]
        fields = {k: v for k, v in ctx.slots.items() if v not in (None, "", [])}
        text = " \n".join(said + [str(v) for v in fields.values() if isinstance(v, str)])
        category = str(fields["category"]) if fields.get("category") else None
        now = self.clock()
        earlier = [t for t in await self.store.customer_tickets(conv.customer_id, category=category)
                   if category and now - t.created_at <= timedelta(seconds=self.cfg.repeat_window)]
        c = classify(self.cfg, category=category, fields=fields, text=text, tier=tier, repeats=len(earlier),
                     say=ctx.agent_texts)      # the ticket's "Why", for agents (README "Languages")
        dep = self.cfg.departments[c.department]
        reference = f"C-{await self.store.next_sequence('reference', start=1001)}"
        ticket = Ticket(reference=reference, customer_id=conv.customer_id, conversation_id=conv.id,
                        status="received", category=category, severity=c.severity, department=c.department,
                        team=dep.team, priority=c.priority, created_at=now, fields=fields, reasons=c.reasons,
                        origin=ctx.key or None)
        return await self.store.create_ticket(ticket)

    async def resolve(self, conversation_id: str, *, agent: str | None, result: str | None) -> Ticket | None:
        """Resolve the conversation's open ticket, if it has one."""
        t = await self.store.conversation_ticket(conversation_id)
        if t is None:
            return None
        now = self.clock()
        return await self.store.resolve_ticket(t.reference, at=now, agent=agent, result=result,
                                               follow_up_at=now + self.follow_up_after())

    async def reopen(self, ctx: ActionContext) -> str:
        """The follow-up's "no, it's not solved": reopen the ``reference`` ticket (its owner only)."""
        ref = str(ctx.slots.get("reference") or "")
        conv = await self.store.get_conversation(ctx.conversation_id)
        t = await self.store.get_ticket(ref) if ref else None
        if t is None or conv is None or t.customer_id != conv.customer_id or t.resolved_at is None:
            return "skipped"
        # the reopened ticket now belongs to this conversation (the handoff that follows uses it)
        await self.store.reopen_ticket(ref, at=self.clock())
        await self.store.move_ticket(ref, conversation_id=conv.id)
        return "reopened"

    async def record_csat(self, ctx: ActionContext) -> str:
        """Store the survey's 1-5 ``score`` (and optional ``comment``) on the ``reference`` ticket."""
        ref = str(ctx.slots.get("reference") or "")
        try:
            score = int(str(ctx.slots.get("score")))
        except ValueError:
            return "skipped"
        if not 1 <= score <= 5 or not ref:
            return "skipped"
        comment = str(ctx.slots.get("comment") or "").strip() or None
        conv = await self.store.get_conversation(ctx.conversation_id)
        t = await self.store.get_ticket(ref)
        if t is None or conv is None or t.customer_id != conv.customer_id:
            return "skipped"   # only the ticket's own customer rates it
        await self.store.record_csat(ref, score=score, comment=comment, at=self.clock())
        if self.events is not None:
            # the ticket's conversation (the one it was resolved in), which a desk may have open
            for cid in dict.fromkeys((t.conversation_id, conv.id)):   # and the one the survey ran in
                self.events.publish(Event("csat", cid, None, {"reference": ref, "score": score}))
        return "recorded"

    def follow_up_after(self) -> timedelta:
        return timedelta(seconds=self.cfg.sla.follow_up)

    def due(self, ticket: Ticket) -> datetime:
        """When the ticket should be resolved (in business hours, if configured)."""
        return deadline(ticket, "resolve", self.cfg)

    def overdue(self, ticket: Ticket, now: datetime) -> bool:
        """Past the resolve deadline (the same rule as the alerts and the report)."""
        return breached(ticket, "resolve", now, self.cfg)

    def department_name(self, ticket: Ticket, lang: str | None = None) -> str:
        """The department's name in ``lang`` (bot/names.py); agents: no language."""
        dep = self.cfg.departments.get(ticket.department)
        return localized(dep.name, lang) if dep else ticket.department

    # -- status on request --------------------------------------------------------------------

    async def status(self, ctx: ActionContext) -> str:
        """The answer to "where is my complaint": a quoted reference, else the open ones; in the
        conversation's language (flows/i18n.py ``status_*``)."""
        conv = await self.store.get_conversation(ctx.conversation_id)
        if conv is None:
            return ctx.say("status_none")
        mine = await self.store.customer_tickets(conv.customer_id)
        m = REFERENCE.search(ctx.text or "")
        if m:
            ref = f"C-{m.group(1)}"
            ticket = next((t for t in mine if t.reference == ref), None)
            if ticket is None:   # someone else's or none at all: the same answer, nothing leaks
                return ctx.say("status_not_found", reference=ref)
            return await self._describe(ticket, ctx)
        open_ = [t for t in mine if t.resolved_at is None]
        if not open_:
            return ctx.say("status_no_open") if not mine else ctx.say("status_last_resolved",
                                                                        reference=mine[0].reference)
        lines = [await self._describe(t, ctx) for t in open_[:3]]
        more = " " + ctx.say("status_more", count=len(open_) - 3) if len(open_) > 3 else ""
        return "\n".join(lines) + more

    async def _describe(self, t: Ticket, ctx: ActionContext) -> str:
        category = ctx.title("category", t.category) if t.category else ""
        if t.resolved_at is not None:
            return ctx.say("status_resolved", reference=t.reference, category=category,
                           when=when(t.resolved_at, ctx.language))
        return ctx.say("status_open", reference=t.reference, category=category, owner=await self._owner(t),
                       team=self.department_name(t, ctx.language), due=when(self.due(t), ctx.language))

    async def _owner(self, t: Ticket) -> str | None:
        h = await self.store.active_handoff(t.conversation_id)
        if h is not None and h.state == "claimed" and h.agent:
            return h.agent.split()[0]
        return None


def ticket_actions(tickets: Tickets) -> dict[str, Callable[[ActionContext], Any]]:
    """The flow actions: ``create_reference`` (opens the ticket) and ``ticket_status``."""

    async def create_reference(ctx: ActionContext) -> str:
        t = await tickets.open(ctx)
        ctx.updates.update({"ticket_department": tickets.department_name(t, ctx.language),
                            "ticket_severity": t.severity, "ticket_due": when(tickets.due(t), ctx.language)})
        return t.reference

    async def ticket_status(ctx: ActionContext) -> str:
        return await tickets.status(ctx)

    async def record_csat(ctx: ActionContext) -> str:
        return await tickets.record_csat(ctx)

    async def reopen_ticket(ctx: ActionContext) -> str:
        return await tickets.reopen(ctx)

    return {"create_reference": create_reference, "ticket_status": ticket_status, "record_csat": record_csat,
            "reopen_ticket": reopen_ticket}


__all__: Sequence[str] = ["Classification", "Tickets", "classify", "ticket_actions"]
