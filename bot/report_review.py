"""The report's review and compensation figures (``omnibot report``, /admin/metrics): see :mod:`bot.report`.

* review breaches: proposed resolutions (tickets opened in the period) decided after
  ``complaints.sla.review`` from the proposal, or still waiting past it at ``now``;
* communicate breaches: approved resolutions told to the customer after ``sla.communicate`` from
  the approval, or still untold past it at ``now``;
* compensation per category: per ticket category and kind, the count and total of what was given
  (granted within authority, or approved), requested in the period; pending and rejected
  requests are counted apart.

The deadlines are :func:`handoff.sla.deadline`'s (business hours included), as for the alerts.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.config import ComplaintsConfig
from bot.storage import Store
from handoff.sla import breached


@dataclass
class _R:
    created_at: datetime
    resolved_at: datetime | None
    reviewed_at: datetime | None
    communicated_at: datetime | None


def _dt(s: Any) -> datetime | None:
    return datetime.fromisoformat(s) if s else None


async def review_figures(store: Store, since: str, until: str, cfg: ComplaintsConfig, now: datetime,
                         inside: Any) -> dict[str, Any]:
    """``reviews``, ``review_breaches``, ``communicate_breaches`` and ``compensation``."""
    reviews = review_breaches = communicate_breaches = 0
    for r in await store.report_reviews(since, until):
        row = _R(_dt(r["created_at"]), _dt(r["resolved_at"]), _dt(r["reviewed_at"]),  # type: ignore[arg-type]
                 _dt(r["communicated_at"]))
        if not inside(row.created_at):
            continue
        reviews += 1
        if breached(row, "review", now, cfg, started=_dt(r["proposed_at"])):
            review_breaches += 1
        if r["review_state"] == "approved" and row.reviewed_at is not None and \
                breached(row, "communicate", now, cfg, started=row.reviewed_at):
            communicate_breaches += 1
    given: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    waiting = {"pending": 0, "rejected": 0}
    for c in await store.report_compensations(since, until):
        if c["state"] in waiting:
            waiting[c["state"]] += 1
            continue
        k = given[str(c["category"] or "none")].setdefault(c["kind"], {"count": 0, "total": 0.0,
                                                                        "currency": c["currency"]})
        k["count"] += 1
        k["total"] = round(k["total"] + float(c["amount"]), 2)
    return {"reviews": reviews, "review_breaches": review_breaches, "communicate_breaches": communicate_breaches,
            "compensation": {cat: dict(sorted(kinds.items())) for cat, kinds in sorted(given.items())},
            "compensation_pending": waiting["pending"], "compensation_rejected": waiting["rejected"]}


def render_review(r: dict[str, Any]) -> list[str]:
    """The figures' lines for the terminal report."""
    if "reviews" not in r:
        return []
    lines = ["", f"  reviewed resolutions    {r['reviews']}",
             f"  review SLA breaches     {r['review_breaches']}",
             f"  communicate SLA breaches {r['communicate_breaches']}",
             f"  compensation            {r['compensation_pending']} pending, {r['compensation_rejected']} rejected"]
    for cat, kinds in r["compensation"].items():
        given = ", ".join(f"{kind} {v['count']} ({v['total']:.2f} {v['currency']})" for kind, v in kinds.items())
        lines.append(f"    {cat:<22}{given}")
    return lines
