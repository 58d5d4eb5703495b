"""Per-agent figures, handoffs by cause and the honest bot containment (README "Metrics"),
part of what :func:`bot.report.report` returns.

Definitions (over what was *created* in [since, until), like the rest of the report):

* per agent (the account name a handoff was claimed under):

  - handled: handoffs they resolved;
  - first response: from their claim of a handoff to their first reply in it (the claim, not the
    queueing: the wait in the queue is the team's pickup time, reported apart);
  - time to resolution: from the handoff's queueing to their resolving it;
  - CSAT: the 1-5 scores of the complaints they resolved.

  A reply is theirs when its stored payload names their account; replies stored before
  payloads named one count when the sender's first name matches.
* handoffs by cause: handoffs queued, counted by ``handoffs.cause`` (``unknown`` before schema 13).
* bot containment: of the conversations with a customer message, those the bot contained.
  A *visit* is the customer's messages up to a silence of ``report.visit_gap_minutes``; the
  first visit of each conversation decides. Every conversation is exactly one of (first that
  applies):

  - handed: it was handed to a person (at any time);
  - came back: the same customer wrote again (here or in any other conversation, on any channel)
    within ``report.containment_window_days`` after the end of the visit;
  - abandoned: the bot's last reply of the visit was no answer: it did not understand
    (``fallback``), a flow was left waiting for the customer's answer (``mid_flow``), or an
    error apology (``error``);
  - contained: the rest. ``pending`` counts those whose window is not over yet at ``now``.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from bot.config import ReportConfig
from bot.model import outbound_meta
from bot.storage import Store

ABANDONED = ("fallback", "mid_flow", "error")


def _dt(s: str | None) -> datetime | None:
    return datetime.fromisoformat(s) if s else None


def _median(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 1) if xs else None


def _first(name: str | None) -> str:
    return (name or "").strip().split(" ")[0]


async def service_figures(store: Store, since: str, until: str, *, now: datetime,
                          cfg: ReportConfig | None = None) -> dict[str, Any]:
    """``containment``, ``bot_containment``, ``handoffs_by_cause`` and ``agents`` over the period
    (``since``/``until``: stored-form ISO UTC bounds)."""
    cfg = cfg or ReportConfig()
    rows = await store.report_handoff_rows(since, until)
    causes: dict[str, int] = defaultdict(int)
    for h in rows:
        causes[h["cause"] or "unknown"] += 1
    out: dict[str, Any] = {"handoffs_by_cause": dict(sorted(causes.items())),
                           "agents": await _agents(store, since, until, rows)}
    out.update(await _containment(store, since, until, now, cfg))
    return out


async def _agents(store: Store, since: str, until: str, handoffs: list[dict[str, Any]]) -> dict[str, Any]:
    replies: dict[str, list[tuple[datetime, str, str]]] = defaultdict(list)
    for r in await store.report_agent_replies(since, until):
        replies[r["conversation_id"]].append((_dt(r["created_at"]), outbound_meta(r["payload"]).get("agent", ""),  # type: ignore[arg-type]
                                              r["sender_name"] or ""))
    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    handled: dict[str, int] = defaultdict(int)
    for h in handoffs:
        agent = h["agent"]
        if not agent:
            continue
        created, claimed, closed = _dt(h["created_at"]), _dt(h["claimed_at"]), _dt(h["closed_at"])
        per[agent]                                       # an agent who claimed shows, even with no figures
        if claimed is not None:
            theirs = [at for at, acct, sender in replies.get(h["conversation_id"], [])
                      if (acct == agent if acct else sender == _first(agent))
                      and at >= claimed and (closed is None or at <= closed)]
            if theirs:
                per[agent]["frt"].append((min(theirs) - claimed).total_seconds())
        if h["state"] == "resolved" and closed is not None:
            handled[agent] += 1
            per[agent]["ttr"].append((closed - created).total_seconds())  # type: ignore[operator]
    for t in await store.report_resolved_tickets(since, until):
        if t["resolved_by"]:
            per[t["resolved_by"]]
            if t["csat"] is not None:
                per[t["resolved_by"]]["csat"].append(float(t["csat"]))
    return {name: {"handled": handled.get(name, 0),
                   "first_response_s_median": _median(f["frt"]),
                   "resolution_s_median": _median(f["ttr"]),
                   "csat_mean": round(statistics.fmean(f["csat"]), 2) if f["csat"] else None,
                   "csat_answers": len(f["csat"])}
            for name, f in sorted(per.items())}


async def _containment(store: Store, since: str, until: str, now: datetime,
                       cfg: ReportConfig) -> dict[str, Any]:
    gap = timedelta(minutes=cfg.visit_gap_minutes)
    window = timedelta(days=cfg.containment_window_days)
    msgs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in await store.report_conversation_messages(since, until):
        msgs[m["conversation_id"]].append(m)
    # every first visit ends by the last of these messages: what came later than a window after
    # it cannot make one come back
    last = max([_dt(m["created_at"]) for ms in msgs.values() for m in ms] or [now])
    upto = (last + window + gap).isoformat()  # type: ignore[operator]
    wrote: dict[str, list[datetime]] = defaultdict(list)
    for r in await store.report_customer_messages(since, until, upto):
        wrote[r["customer_id"]].append(_dt(r["created_at"]))  # type: ignore[arg-type]
    handed = set(await store.report_handed_conversations(since, until))
    counts = {"conversations": 0, "contained": 0, "handed": 0, "came_back": 0, "abandoned": 0, "pending": 0}
    for cid, ms in msgs.items():
        ins = [_dt(m["created_at"]) for m in ms if m["direction"] == "in"]
        if not ins:
            continue
        counts["conversations"] += 1
        if cid in handed:
            counts["handed"] += 1
            continue
        end = ins[0]
        for t in ins[1:]:
            if t - end > gap:  # type: ignore[operator]
                break
            end = t
        assert end is not None
        if any(end < t <= end + window for t in wrote.get(ms[0]["customer_id"], [])):
            counts["came_back"] += 1
            continue
        said = [m for m in ms if m["direction"] == "out" and m["role"] in ("bot", "system")
                and ins[0] <= _dt(m["created_at"]) <= end + gap]  # type: ignore[operator]
        if said and outbound_meta(said[-1]["payload"]).get("outcome") in ABANDONED:
            counts["abandoned"] += 1
            continue
        counts["contained"] += 1
        if now < end + window:
            counts["pending"] += 1
    n = counts["conversations"]
    return {"bot_containment": round(counts["contained"] / n, 4) if n else None,
            "containment": counts | {"window_days": cfg.containment_window_days}}


def render_lines(r: dict[str, Any], *, agents: bool) -> list[str]:
    """The report's text lines for these figures (with ``agents``: one block per agent)."""
    from bot.report import _dur

    c = r.get("containment") or {}
    lines = [f"  containment detail      {c.get('contained', 0)} contained, {c.get('handed', 0)} handed, "
             f"{c.get('came_back', 0)} came back within {c.get('window_days', '-')} days, "
             f"{c.get('abandoned', 0)} abandoned ({c.get('pending', 0)} still in their window)"]
    causes = ", ".join(f"{k} {v}" for k, v in (r.get("handoffs_by_cause") or {}).items()) or "none"
    lines.append(f"  handoffs by cause       {causes}")
    if agents:
        for name, a in (r.get("agents") or {}).items():
            lines += ["", f"  agent: {name}",
                      f"    handled                 {a['handled']}",
                      f"    first response (median) {_dur(a['first_response_s_median'])}",
                      f"    time to resolution      {_dur(a['resolution_s_median'])} (median)",
                      f"    CSAT                    {a['csat_mean'] if a['csat_mean'] is not None else '-'} / 5 "
                      f"({a['csat_answers']} answers)"]
        if not r.get("agents"):
            lines += ["", "  no agent claimed a handoff in this period"]
    return lines
