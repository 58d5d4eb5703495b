"""SLA clocks of complaints: the one rule for deadlines and breaches, and the alerts.

Two clocks run per open ticket:

* acknowledge: the complaint's handoff, queued -> claimed by a person (``sla.acknowledge``);
* resolve: ticket opened -> resolved (``sla.resolve``, the deadline the customer was told).

And two more while a complaint is reviewed (:mod:`handoff.review`):

* review: resolution proposed -> approved or sent back by a supervisor (``sla.review``);
* communicate: approved -> the customer told (``sla.communicate``).

Each alert is raised once per ticket and clock (a second proposal after a return does not
warn again).

:func:`deadline` and :func:`breached` are the only place that says when a clock is due and
whether it was missed (counting only ``complaints.business_hours`` when set): the alerts
below, the "resolve by" time told to the customer (:mod:`handoff.tickets`), the agent desk's
ticket list, ``omnibot report`` and ``/metrics`` (:mod:`bot.report`) all ask them.

At ``sla.warn_at`` of a limit the team is warned ("near"); past it ("breached") the team is
alerted again and, with Slack, the manager channel too. Each alert is raised once per ticket
and clock, recorded on the ticket, so a restart neither repeats nor loses one. Alerts go to
the agent desk (an ``sla`` event on its live socket) and to every ``notify`` callback (the
Slack desk). Time comes from the injected clock; :meth:`SlaWatch.check` is called on a timer
by the app and directly by tests.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Awaitable, Callable, Literal, Protocol

from zoneinfo import ZoneInfo

from bot.config import WEEKDAYS, BusinessHours, ComplaintsConfig
from bot.events import Event, EventBus
from bot.storage import Store, Ticket

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Stage = Literal["acknowledge", "resolve", "review", "communicate"]


class Timed(Protocol):
    """What the rule reads of a ticket (a stored :class:`Ticket`, or the report's rows)."""

    @property
    def created_at(self) -> datetime: ...

    @property
    def resolved_at(self) -> datetime | None: ...


def run_clock(start: datetime, seconds: float, hours: BusinessHours | None) -> datetime:
    """``start`` plus ``seconds`` of clock time: around the clock, or only in business hours."""
    if hours is None:
        return start + timedelta(seconds=seconds)
    tz = ZoneInfo(hours.timezone)
    h0, m0 = map(int, hours.start.split(":"))
    h1, m1 = map(int, hours.end.split(":"))
    days = {WEEKDAYS.index(d) for d in hours.days}
    now = start.astimezone(tz)
    left = timedelta(seconds=seconds)
    for _ in range(800):                       # a bit over two years of days: ample for any SLA
        opens = now.replace(hour=h0, minute=m0, second=0, microsecond=0)
        closes = now.replace(hour=h1, minute=m1, second=0, microsecond=0)
        if now.weekday() in days and now < closes:
            now = max(now, opens)
            if now + left <= closes:
                return (now + left).astimezone(start.tzinfo)
            left -= closes - now
        nxt = (now + timedelta(days=1)).date()
        now = datetime(nxt.year, nxt.month, nxt.day, h0, m0, tzinfo=tz)
    raise ValueError("no business hours to run the clock in")


def deadline(ticket: Timed, stage: Stage, cfg: ComplaintsConfig, *, started: datetime | None = None,
             share: float = 1.0) -> datetime:
    """When ``stage`` of ``ticket`` is due.

    Args:
        ticket: the complaint.
        stage: ``resolve`` (from the ticket's opening) or ``acknowledge`` (from ``started``,
            when its handoff was queued).
        cfg: ``complaints:``; its ``sla`` limits and ``business_hours``.
        started: when the clock started, if not when the ticket was opened.
        share: a part of the limit (``sla.warn_at`` for the warning).
    """
    limit = {"resolve": cfg.sla.resolve, "acknowledge": cfg.sla.acknowledge, "review": cfg.sla.review,
             "communicate": cfg.sla.communicate}[stage]
    return run_clock(started or ticket.created_at, limit * share, cfg.business_hours)


def breached(ticket: Timed, stage: Stage, now: datetime, cfg: ComplaintsConfig, *,
             started: datetime | None = None) -> bool:
    """Whether ``stage`` missed its deadline: done after it, or not done and past it at ``now``.

    Done at the deadline itself is in time. The resolve stage is done when the ticket was
    resolved; the acknowledge stage is only asked about while its handoff waits; review is done
    when a supervisor decided (``reviewed_at``), communicate when the customer was told
    (``communicated_at``); both start where ``started`` says.
    """
    done = {"resolve": ticket.resolved_at, "review": getattr(ticket, "reviewed_at", None),
            "communicate": getattr(ticket, "communicated_at", None)}.get(stage)
    return (done or now) > deadline(ticket, stage, cfg, started=started)


@dataclass(frozen=True, slots=True)
class SlaAlert:
    reference: str
    step: str              # acknowledge | resolve
    level: str             # near | breached
    due: datetime
    team: str | None
    conversation_id: str
    handoff_id: str | None
    severity: str

    def text(self, now: datetime) -> str:
        what = {"acknowledge": "to be taken by a person", "resolve": "to be resolved",
                "review": "to be reviewed by a supervisor",
                "communicate": "to be told to the customer after its approval"}[self.step]
        late = now - self.due
        if self.level == "breached":
            return (f"SLA breached: complaint {self.reference} ({self.severity}) was due {what} "
                    f"{_ago(late)} ago.")
        return f"SLA warning: complaint {self.reference} ({self.severity}) is due {what} in {_ago(-late)}."


def _ago(d: timedelta) -> str:
    minutes = max(0, int(d.total_seconds() // 60))
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


Notify = Callable[[SlaAlert, datetime], Awaitable[None]]


class SlaWatch:
    def __init__(self, *, store: Store, events: EventBus, cfg: ComplaintsConfig, clock: Clock,
                 notify: list[Notify] | None = None) -> None:
        self.store = store
        self.events = events
        self.cfg = cfg
        self.clock = clock
        self.notify = list(notify or [])

    async def check(self) -> list[SlaAlert]:
        """Raise every alert that is due and was not raised before."""
        now = self.clock()
        raised = []
        for t in await self.store.open_tickets():
            for step, start, handoff_id in await self._clocks(t):
                due = deadline(t, step, self.cfg, started=start)
                near = deadline(t, step, self.cfg, started=start, share=self.cfg.sla.warn_at)
                level = ("breached" if breached(t, step, now, self.cfg, started=start) else
                         "near" if now >= near else None)
                if level is None:
                    continue
                alert = SlaAlert(t.reference, step, level, due, t.team, t.conversation_id, handoff_id, t.severity)
                if level == "breached" and f"{step}:near" not in t.sla_alerts:
                    await self.store.add_sla_alert(t.reference, f"{step}:near")  # skipped, not owed later
                if not await self.store.add_sla_alert(t.reference, f"{step}:{level}"):
                    continue
                raised.append(alert)
                log.warning("%s", alert.text(now))
                self.events.publish(Event("sla", t.conversation_id, handoff_id, {
                    "reference": t.reference, "step": step, "level": level, "due": due.isoformat(),
                    "text": alert.text(now)}))
                for fn in self.notify:
                    try:
                        await fn(alert, now)
                    except Exception:  # noqa: BLE001 - one desk failing must not hide the alert elsewhere
                        log.exception("SLA alert for %s not delivered to %s", t.reference, fn)
        return raised

    async def _clocks(self, t: Ticket) -> list[tuple[Stage, datetime, str | None]]:
        """(step, started, handoff id for the Slack thread) of each running clock."""
        h = await self.store.active_handoff(t.conversation_id)
        queued = h if h is not None and h.state == "queued" else None
        out: list[tuple[Stage, datetime, str | None]] = [("resolve", t.created_at, queued.id if queued else None)]
        if queued is not None:   # waiting for a person: the acknowledge clock runs
            out.append(("acknowledge", queued.created_at, queued.id))
        hid = h.id if h is not None else None
        if t.review_state == "pending" and t.proposed_at is not None:        # a supervisor decides
            out.append(("review", t.proposed_at, hid))
        elif t.review_state == "approved" and t.reviewed_at is not None and t.communicated_at is None:
            out.append(("communicate", t.reviewed_at, hid))                  # approved, customer not told
        return out
