"""Metrics over HTTP: ``/metrics`` for Prometheus, ``/admin/metrics`` (a page) for people.

Both need the agent token (Prometheus: ``authorization: {credentials: TOKEN}`` in the scrape
config) or, for the page, an agent desk login. Service figures come from the database through
:mod:`bot.report` at scrape time, by store operations (no SQL here): from a SQLite file, through
a read-only store opened for the scrape (its own connection, so the bot's turns never queue
behind the report's reads); otherwise (PostgreSQL, in-memory SQLite) from the app's store.
Live counters and the turn latency histogram are kept in process by the runtime.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import json
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bot import report as rep
from bot.config import Config
from bot.storage import Store
from bot.storage.admin import scheme_of, sqlite_path

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Live:
    """In-process counters the runtime updates (one registry per app, so tests don't share)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages_in = Counter("omnibot_messages_in", "Customer messages accepted", ["channel"],
                                   registry=self.registry)
        self.turn_seconds = Histogram("omnibot_turn_seconds", "Time to answer one customer message (bot turn)",
                                      buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
                                      registry=self.registry)
        self.handoffs = Counter("omnibot_handoffs", "Conversations queued for a person", ["team"],
                                registry=self.registry)


class _FromDatabase(Collector):
    """Service figures over the last ``window`` (default 30 days), computed at scrape time."""

    def __init__(self, compute: Callable[[], dict[str, Any]]) -> None:
        self.compute = compute
        self.latest: dict[str, Any] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        r = self.latest
        if not r:
            return
        simple = {
            "omnibot_conversations": ("Conversations with a customer message (30 days)", r["conversations"]),
            "omnibot_first_response_seconds_median": ("Median time to the first reply (30 days)",
                                                      r["first_response_s_median"]),
            "omnibot_agent_pickup_seconds_median": ("Median time from queued to claimed (30 days)",
                                                    r["agent_pickup_s_median"]),
            "omnibot_bot_containment_ratio": ("Conversations never handed to a person (30 days)",
                                              r["bot_containment"]),
        }
        for name, (doc, value) in simple.items():
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=value)
        per = r.get("groups") or {}
        fams = {
            "tickets": GaugeMetricFamily("omnibot_tickets", "Complaints opened (30 days)", labels=["category"]),
            "resolved": GaugeMetricFamily("omnibot_tickets_resolved", "Complaints resolved (30 days)",
                                          labels=["category"]),
            "sla_breaches": GaugeMetricFamily("omnibot_sla_breaches", "Complaints past the resolve SLA (30 days)",
                                              labels=["category"]),
            "repeat_complaints": GaugeMetricFamily("omnibot_repeat_complaints", "Repeat complaints (30 days)",
                                                   labels=["category"]),
            "csat_mean": GaugeMetricFamily("omnibot_csat_mean", "Mean satisfaction 1-5 (30 days)",
                                           labels=["category"]),
            "first_contact_resolution": GaugeMetricFamily(
                "omnibot_first_contact_resolution_ratio", "Resolved complaints never reopened (30 days)",
                labels=["category"]),
            "resolution_s_median": GaugeMetricFamily(
                "omnibot_resolution_seconds_median", "Median time to resolve a complaint (30 days)",
                labels=["category"]),
        }
        for category, figures in per.items():
            for key, fam in fams.items():
                if figures.get(key) is not None:
                    fam.add_metric([category], figures[key])
        yield from fams.values()


class MetricsWeb:
    def __init__(self, *, config: Config, live: Live, is_agent: Callable[[web.Request], Awaitable[bool]] | None,
                 store: Store | None = None, window_days: int = 30) -> None:
        self.config = config
        self.store = store
        self.live = live
        self.is_agent = is_agent
        self.window = timedelta(days=window_days)
        self._collector = _FromDatabase(self.figures)
        self.live.registry.register(self._collector)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/metrics", self.prometheus)
        app.router.add_get("/admin/metrics", self.page)
        app.router.add_get("/admin/api/metrics", self.api)

    # -- figures ---------------------------------------------------------------------------------

    async def figures(self, by: str = "category", since: datetime | None = None) -> dict[str, Any]:
        """The report over the window (``{}`` when there is no store to read)."""
        url = self.config.storage_url()
        args: dict[str, Any] = {"since": since or datetime.now(timezone.utc) - self.window, "by": by,
                                "complaints": self.config.complaints, "containment": self.config.report}
        if scheme_of(url) == "sqlite" and sqlite_path(url) != ":memory:":
            store = await rep.open_store_for_report(url)     # read-only: no lock, no migrations
            try:
                return await rep.report(store, **args)
            finally:
                await store.close()
        if self.store is None:
            return {}
        return await rep.report(self.store, **args)

    # -- auth --------------------------------------------------------------------------------------

    async def _authorized(self, request: web.Request) -> bool:
        if self.is_agent is not None:     # the desk decides: an admin account, or the shared token while none exists
            return await self.is_agent(request)
        token = self.config.agent_desk.token.get_secret_value()
        auth = request.headers.get("Authorization", "")
        if token and auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].encode(), token.encode()):
            return True
        return False

    async def _require(self, request: web.Request) -> None:
        if not await self._authorized(request):
            raise web.HTTPUnauthorized(text="agent token or agent login needed\n",
                                       headers={"WWW-Authenticate": 'Bearer realm="omnibot"'})

    # -- handlers ----------------------------------------------------------------------------------

    async def prometheus(self, request: web.Request) -> web.Response:
        await self._require(request)
        self._collector.latest = await self.figures()
        body = await asyncio.to_thread(generate_latest, self.live.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def api(self, request: web.Request) -> web.Response:
        await self._require(request)
        by = request.query.get("by", "category")
        if by not in rep.BY:
            return web.json_response({"error": f"by must be one of {', '.join(rep.BY)}"}, status=400)
        return web.json_response(await self.figures(by))

    async def page(self, request: web.Request) -> web.Response:
        if not await self._authorized(request):
            raise web.HTTPFound("/agent")        # log in there, then come back
        r = await self.figures(request.query.get("by", "category")
                               if request.query.get("by") in rep.BY else "category")
        return web.Response(text=_page(r), content_type="text/html")


def _bar_rows(groups: dict[str, dict[str, Any]], key: str, fmt: Callable[[Any], str], scale: float) -> str:
    rows = []
    for name, g in groups.items():
        v = g.get(key)
        width = 0 if v is None or scale <= 0 else max(1, int(240 * float(v) / scale))
        rows.append(f'<tr><th>{html.escape(name)}</th><td><span class="bar" style="width:{width}px"></span> '
                    f'{html.escape(fmt(v))}</td></tr>')
    return "".join(rows)


def _page(r: dict[str, Any]) -> str:
    if not r:
        return "<p>No figures: the metrics have no database to read.</p>"
    groups = r.get("groups") or {}
    pct = rep._pct
    dur = rep._dur
    charts = []
    for title, key, fmt, scale in (
            ("Complaints", "tickets", str, max([g["tickets"] for g in groups.values()] or [1])),
            ("SLA breaches", "sla_breaches", str, max([g["sla_breaches"] for g in groups.values()] or [1])),
            ("Repeat complaints", "repeat_complaints", str,
             max([g["repeat_complaints"] for g in groups.values()] or [1])),
            ("CSAT (1-5)", "csat_mean", lambda v: "-" if v is None else f"{v}", 5),
            ("First contact resolution", "first_contact_resolution", pct, 1),
            ("Time to resolution (median)", "resolution_s_median", dur,
             max([g["resolution_s_median"] or 0 for g in groups.values()] or [1]))):
        charts.append(f"<h2>{title} by {html.escape(str(r.get('by')))}</h2><table>"
                      f"{_bar_rows(groups, key, fmt, scale)}</table>")
    summary = json.dumps({k: v for k, v in r.items() if k not in ("groups", "period", "by", "agents")}, indent=1)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>omnibot metrics</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse}}
th{{text-align:left;padding:.2em 1em .2em 0;font-weight:normal}}.bar{{display:inline-block;height:.9em;
background:#3b6fd4;vertical-align:middle}}pre{{background:#f4f4f4;padding:1em}}</style></head><body>
<h1>Service metrics (last 30 days)</h1>
<p>First response {dur(r['first_response_s_median'])} (median) &middot; bot containment
{pct(r['bot_containment'])} &middot; agent pickup {dur(r['agent_pickup_s_median'])} &middot;
{r['tickets']} complaints, CSAT {r['csat_mean'] if r['csat_mean'] is not None else '-'} / 5,
{r['sla_breaches']} SLA breaches &middot; by <a href="?by=category">category</a>,
<a href="?by=team">team</a>, <a href="?by=channel">channel</a>, <a href="?by=agent">agent</a></p>
{''.join(charts)}
{_agents_section(r)}
<h2>All figures</h2><pre>{html.escape(summary)}</pre></body></html>"""


def _agents_section(r: dict[str, Any]) -> str:
    """Per-agent figures, handoffs by cause and what bot containment left out (bot.figures)."""
    dur = rep._dur
    rows = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{a['handled']}</td><td>{html.escape(dur(a['first_response_s_median']))}"
        f"</td><td>{html.escape(dur(a['resolution_s_median']))}</td><td>"
        f"{'-' if a['csat_mean'] is None else a['csat_mean']} ({a['csat_answers']})</td></tr>"
        for name, a in (r.get("agents") or {}).items())
    causes = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>"
                     for k, v in (r.get("handoffs_by_cause") or {}).items())
    c = r.get("containment") or {}
    return (
        '<h2>Agents</h2><table class="agents"><tr><th>agent</th><th>handled</th><th>first response (median, '
        'from the claim)</th><th>time to resolution (median)</th><th>CSAT (answers)</th></tr>'
        f"{rows or '<tr><td colspan=5>no agent claimed a handoff</td></tr>'}</table>"
        f'<h2>Handoffs by cause</h2><table class="causes">{causes}</table>'
        f"<p>Bot containment: {c.get('contained', 0)} contained of {c.get('conversations', 0)} conversations; "
        f"{c.get('handed', 0)} handed to a person, {c.get('came_back', 0)} came back within "
        f"{c.get('window_days', '-')} days, {c.get('abandoned', 0)} abandoned "
        f"({c.get('pending', 0)} still in their window).</p>")
