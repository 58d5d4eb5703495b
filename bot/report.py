"""Service figures from the database: what `omnibot report`, /admin/metrics and /metrics show.

Definitions (all over conversations or tickets *created* in [since, until)):

* first response time: first customer message -> first reply (bot or person), per conversation.
* agent pickup time: a handoff queued -> a person claimed it.
* time to resolution: ticket opened -> resolved (resolved tickets).
* first contact resolution (FCR): resolved tickets never reopened / resolved tickets.
* CSAT: mean of 1-5 scores, and the share of 4s and 5s.
* bot containment: conversations the bot contained (never handed to a person, the customer not
  back within ``report.containment_window_days``, not abandoned) / conversations with a customer
  message; see :mod:`bot.figures`, which also gives handoffs by cause and the per-agent figures.
* SLA breaches: tickets resolved after their resolve deadline, or still open past it at ``now``;
  the deadline is :func:`handoff.sla.deadline` (``complaints.sla.resolve``, counted in
  ``complaints.business_hours`` when set): the one the customer was told and the alerts use.
* repeat complaints: tickets of a customer who had another ticket of the same category in the
  ``complaints.repeat_window`` before it.

Reads through the store (:mod:`bot.storage.ops_report`), so it works on SQLite and PostgreSQL
alike. :func:`open_store_for_report` opens a SQLite database read-only (no instance lock, no
migrations; WAL lets it read beside a running omnibot) and PostgreSQL as usual.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from bot import figures as agent_figures
from bot.config import ComplaintsConfig, ReportConfig
from bot.storage import Store, open_store
from handoff.sla import breached

from .report_review import render_review, review_figures

GROUPS = ("category", "team", "channel")
BY = GROUPS + ("agent",)      # --by agent: the per-agent figures (bot.figures) instead of ticket groups


def _dt(s: str | None) -> datetime | None:
    return datetime.fromisoformat(s) if s else None


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat()


def _median(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 1) if xs else None


def _mean(xs: list[float]) -> float | None:
    return round(statistics.fmean(xs), 2) if xs else None


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


@dataclass
class _T:
    reference: str
    customer_id: str
    category: str | None
    team: str | None
    department: str
    channel: str
    created_at: datetime
    resolved_at: datetime | None
    reopened: int
    csat: int | None


async def open_store_for_report(url: str) -> Store:
    """The store to compute figures from: a SQLite file read-only (beside a running omnibot,
    which holds the instance lock), anything else as :func:`bot.storage.open_store` opens it.

    Raises:
        FileNotFoundError: the SQLite database does not exist.
        StoreError: the database cannot be used (in memory, another schema version, unreachable).
        ConfigError: an unknown storage URL.
    """
    from bot.storage.admin import scheme_of, sqlite_path
    from bot.storage.sqlite import SqliteStore

    if scheme_of(url) == "sqlite":
        store = SqliteStore(sqlite_path(url), readonly=True)
        await store.open()
        return store
    return await open_store(url)


async def report(store: Store, *, since: datetime | None = None, until: datetime | None = None,
                 by: str | None = None, complaints: ComplaintsConfig | None = None,
                 now: datetime | None = None, containment: ReportConfig | None = None) -> dict[str, Any]:
    """All figures; with ``by``, the ticket figures also per category, team or channel.

    ``complaints`` (the config's ``complaints:``; default: its defaults) gives the SLA, the
    business hours and the repeat window.
    """
    cfg = complaints or ComplaintsConfig()
    repeat_window = cfg.repeat_window
    if by is not None and by not in BY:
        raise ValueError(f"--by must be one of {', '.join(BY)}")
    now = now or datetime.now(timezone.utc)
    lo = since or datetime(1970, 1, 1, tzinfo=timezone.utc)
    hi = until or datetime(9999, 1, 1, tzinfo=timezone.utc)

    def inside(ts: datetime | None) -> bool:
        return ts is not None and lo <= ts < hi

    # Stored times are UTC ISO strings, so SQL narrows by period; ``inside`` has the last word.
    period = (_iso(lo), _iso(hi))
    conv_ids = {r["id"] for r in await store.report_conversations(*period) if inside(_dt(r["created_at"]))}
    first_in: dict[str, datetime] = {}
    first_out: dict[str, datetime] = {}
    for r in await store.report_first_messages(*period):
        if r["conversation_id"] in conv_ids:
            (first_in if r["direction"] == "in" else first_out)[r["conversation_id"]] = _dt(r["first_at"])  # type: ignore[assignment]
    frt = [(first_out[c] - first_in[c]).total_seconds() for c in first_in
           if c in first_out and first_out[c] >= first_in[c]]
    handed = set(await store.report_handed_conversations(*period))
    talked = [c for c in conv_ids if c in first_in]
    pickup = [(_dt(r["claimed_at"]) - _dt(r["created_at"])).total_seconds()  # type: ignore[operator]
              for r in await store.report_pickups(*period) if inside(_dt(r["created_at"]))]

    # the period's tickets, and those early enough before it to make one of them a repeat
    earliest = _iso(max(lo - timedelta(seconds=repeat_window), datetime(1970, 1, 1, tzinfo=timezone.utc)))
    all_tickets = [_T(r["reference"], r["customer_id"], r["category"], r["team"], r["department"], r["channel"],
                      _dt(r["created_at"]), _dt(r["resolved_at"]), r["reopened"], r["csat"])  # type: ignore[arg-type]
                   for r in await store.report_tickets(earliest, period[1])]
    tickets = [t for t in all_tickets if inside(t.created_at)]
    out: dict[str, Any] = {
        "period": {"since": since.isoformat() if since else None, "until": until.isoformat() if until else None},
        "conversations": len(talked),
        "first_response_s_median": _median(frt),
        "agent_pickup_s_median": _median(pickup),
        "handoffs": sum(1 for c in talked if c in handed),
    }
    out.update(_ticket_figures(tickets, all_tickets, cfg, now))
    # honest containment (replaces the plain share above), handoffs by cause, per-agent figures
    out.update(await agent_figures.service_figures(store, *period, now=now, cfg=containment))
    out.update(await review_figures(store, *period, cfg, now, inside))   # review, communicate, compensation
    if by == "agent":
        out["by"] = by
    elif by is not None:
        groups: dict[str, list[_T]] = defaultdict(list)
        for t in tickets:
            groups[str(getattr(t, by) or "none")].append(t)
        out["by"] = by
        out["groups"] = {k: _ticket_figures(v, all_tickets, cfg, now)
                         for k, v in sorted(groups.items())}
    return out


def _ticket_figures(tickets: list[_T], everyone: list[_T], cfg: ComplaintsConfig,
                    now: datetime) -> dict[str, Any]:
    resolved = [t for t in tickets if t.resolved_at is not None]
    ttr = [(t.resolved_at - t.created_at).total_seconds() for t in resolved]  # type: ignore[operator]
    scores = [t.csat for t in tickets if t.csat is not None]
    breaches = sum(1 for t in tickets if breached(t, "resolve", now, cfg))
    repeats = [t for t in tickets if _is_repeat(t, everyone, timedelta(seconds=cfg.repeat_window))]
    return {
        "tickets": len(tickets),
        "resolved": len(resolved),
        "resolution_s_median": _median(ttr),
        "first_contact_resolution": _share(sum(t.reopened == 0 for t in resolved), len(resolved)),
        "csat_mean": _mean([float(s) for s in scores]),
        "csat_satisfied": _share(sum(s >= 4 for s in scores), len(scores)),
        "csat_answers": len(scores),
        "sla_breaches": breaches,
        "repeat_complaints": len(repeats),
        "repeat_by_category": _count(t.category for t in repeats),
    }


def _is_repeat(t: _T, everyone: list[_T], window: timedelta) -> bool:
    """Another ticket of the same customer and category opened within ``window`` before it."""
    return bool(t.category) and any(
        o.customer_id == t.customer_id and o.category == t.category and o.reference != t.reference
        and timedelta(0) < t.created_at - o.created_at <= window for o in everyone)


def _count(xs: Iterable[str | None]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for x in xs:
        out[str(x)] += 1
    return dict(sorted(out.items()))


def _dur(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.0f}%"


def render(r: dict[str, Any]) -> str:
    """The report as text for a terminal."""
    p = r["period"]
    lines = [f"omnibot report ({p['since'] or 'start'} .. {p['until'] or 'now'})", ""]
    lines += [f"  conversations           {r['conversations']}",
              f"  first response (median) {_dur(r['first_response_s_median'])}",
              f"  bot containment         {_pct(r['bot_containment'])} ({r['handoffs']} handed to a person)",
              f"  agent pickup (median)   {_dur(r['agent_pickup_s_median'])}", ""]

    def tickets(t: dict[str, Any], indent: str = "  ") -> list[str]:
        rep = ", ".join(f"{k} {v}" for k, v in t["repeat_by_category"].items()) or "none"
        return [f"{indent}complaints              {t['tickets']} ({t['resolved']} resolved)",
                f"{indent}time to resolution      {_dur(t['resolution_s_median'])} (median)",
                f"{indent}first contact resolution {_pct(t['first_contact_resolution'])}",
                f"{indent}CSAT                    {t['csat_mean'] if t['csat_mean'] is not None else '-'} / 5, "
                f"{_pct(t['csat_satisfied'])} satisfied ({t['csat_answers']} answers)",
                f"{indent}SLA breaches            {t['sla_breaches']}",
                f"{indent}repeat complaints       {t['repeat_complaints']} ({rep})"]

    lines += agent_figures.render_lines(r, agents=r.get("by") == "agent") + [""]
    lines += tickets(r)
    lines += render_review(r)
    for name, g in (r.get("groups") or {}).items():
        lines += ["", f"  {r['by']}: {name}"] + tickets(g, "    ")
    return "\n".join(lines)
