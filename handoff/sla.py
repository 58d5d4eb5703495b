"""SLA clocks of open complaints: warn the team near a time limit, escalate past it.

Two clocks run per open ticket:

* acknowledge: the complaint's handoff, queued -> claimed by a person (``sla.acknowledge``);
* resolve: ticket opened -> resolved (``sla.resolve``, the deadline the customer was told).

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
from typing import Awaitable, Callable

from bot.config import ComplaintsConfig
from bot.events import Event, EventBus
from bot.storage import Store, Ticket

from .tickets import Clock, deadline

log = logging.getLogger(__name__)


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
        what = {"acknowledge": "to be taken by a person", "resolve": "to be resolved"}[self.step]
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
            hours = self.cfg.business_hours
            for step, start, limit, handoff_id in await self._clocks(t):
                due = deadline(start, limit, hours)
                level = ("breached" if now >= due else
                         "near" if now >= deadline(start, limit * self.cfg.sla.warn_at, hours) else None)
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

    async def _clocks(self, t: Ticket) -> list[tuple[str, datetime, float, str | None]]:
        """(step, started, limit in seconds, handoff id for the Slack thread) of each running clock."""
        h = await self.store.active_handoff(t.conversation_id)
        queued = h if h is not None and h.state == "queued" else None
        out = [("resolve", t.created_at, self.cfg.sla.resolve, queued.id if queued else None)]
        if queued is not None:   # waiting for a person: the acknowledge clock runs
            out.append(("acknowledge", queued.created_at, self.cfg.sla.acknowledge, queued.id))
        return out
