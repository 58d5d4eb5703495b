"""The web desk's views, read marks and customer profiles (docs/protocols.md, "Agent desk API").

* ``GET /agent/api/queue`` rows get ``unread`` (the customer's messages after this agent last read
  the conversation) and ``view`` (``mine`` | ``unassigned`` | ``other``); the response gets
  ``counts`` and ``unread`` per view (:func:`queue_views`).
* ``POST /agent/api/conversations/{id}/read``: the agent has read it (up to ``at``, default now).
* ``PATCH /agent/api/customers/{id}``: ``{"tier": "gold", "tags": ["vip"]}``, by an agent who may
  see one of the customer's conversations.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from aiohttp import web

from bot.storage.base import AgentAccount

from .context import profile

if TYPE_CHECKING:
    from .desk_web import AgentDeskWeb

log = logging.getLogger(__name__)

MAX_TIER = 40
MAX_TAG = 40
MAX_TAGS = 20
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
PROFILE_USAGE = ('send JSON {"tier": "gold" or null, "tags": ["vip", ...]} (either or both; a tier of at most '
                 f"{MAX_TIER} characters, at most {MAX_TAGS} tags of 1-{MAX_TAG} characters)")


def _bad(error: str, status: int = 400) -> web.Response:
    return web.json_response({"error": error}, status=status)


def view_of(row: dict[str, Any], agent: str) -> str:
    """Which desk view a queue row is in besides All: ``mine``, ``unassigned`` or ``other``."""
    if row.get("state") == "queued":
        return "unassigned"
    return "mine" if row.get("state") == "claimed" and row.get("agent") == agent else "other"


async def queue_views(store: Any, account: AgentAccount, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The queue response: the rows with ``unread`` and ``view``, and per view (mine, unassigned,
    all) how many conversations (``counts``) and unread customer messages (``unread``)."""
    unread = await store.unread_counts(account.name, [r["conversation_id"] for r in rows])
    counts = {"mine": 0, "unassigned": 0, "all": len(rows)}
    totals = {"mine": 0, "unassigned": 0, "all": 0}
    for r in rows:
        r["unread"] = unread.get(r["conversation_id"], 0)
        r["view"] = view_of(r, account.name)
        totals["all"] += r["unread"]
        if r["view"] in counts and r["view"] != "all":
            counts[r["view"]] += 1
            totals[r["view"]] += r["unread"]
    return {"handoffs": rows, "counts": counts, "unread": totals}


def clean_profile(body: Any) -> dict[str, Any]:
    """The validated ``tier`` / ``tags`` of a PATCH body. Raises ValueError with the reason."""
    if not isinstance(body, dict) or not body:
        raise ValueError(PROFILE_USAGE)
    unknown = sorted(set(body) - {"tier", "tags"})
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}: {PROFILE_USAGE}")
    out: dict[str, Any] = {}
    if "tier" in body:
        tier = body["tier"]
        if tier is not None and not isinstance(tier, str):
            raise ValueError(f"tier must be text or null: {PROFILE_USAGE}")
        tier = (tier or "").strip()
        if len(tier) > MAX_TIER or _CONTROL.search(tier):
            raise ValueError(f"tier must be at most {MAX_TIER} characters on one line")
        out["tier"] = tier or None
    if "tags" in body:
        tags = body["tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ValueError(f"tags must be a list of texts: {PROFILE_USAGE}")
        seen: dict[str, str] = {}
        for t in tags:
            t = " ".join(t.split())
            if not 1 <= len(t) <= MAX_TAG or _CONTROL.search(t):
                raise ValueError(f"each tag must be 1-{MAX_TAG} characters on one line")
            seen.setdefault(t.casefold(), t)     # "VIP" and "vip" are one tag: the first spelling
        if len(seen) > MAX_TAGS:
            raise ValueError(f"at most {MAX_TAGS} tags")
        out["tags"] = list(seen.values())
    return out


class DeskCustomers:
    """Mounted by :class:`handoff.desk_web.AgentDeskWeb` (same login, same rules on who sees what).

    Args:
        desk: the web desk (its store, and who is logged in).
        may_view: whether an account may see a conversation last handed to a team (None: never handed).
    """

    def __init__(self, desk: AgentDeskWeb, may_view: Callable[[AgentAccount, str | None], bool]) -> None:
        self.desk = desk
        self.may_view = may_view

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/agent/api/conversations/{id}/read", self.read)
        app.router.add_patch("/agent/api/customers/{id}", self.patch_customer)

    async def read(self, request: web.Request) -> web.Response:
        """``{"at": "<ISO time>"}`` (optional; default now): read up to that message. The desk sends
        the time of the newest message it shows, so one arriving meanwhile stays unread."""
        account = await self.desk._require(request)
        store = self.desk.store
        cid = request.match_info["id"]
        usage = 'send JSON {"at": "2026-01-31T09:00:00+00:00"} (optional: the newest message read)'
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            return _bad(usage)
        if not isinstance(body, dict) or not isinstance(body.get("at", ""), str):
            return _bad(usage)
        now = datetime.now(timezone.utc)
        at = now
        if body.get("at"):
            try:
                at = datetime.fromisoformat(body["at"].replace("Z", "+00:00"))
            except ValueError:
                return _bad(usage)
            if at.tzinfo is None:
                return _bad("at needs a time zone: " + usage)
            at = min(at, now)
        if await store.get_conversation(cid) is None:
            return _bad(f"no conversation {cid}", 404)
        h = await store.latest_handoff(cid)
        if not self.may_view(account, h.team if h else None):
            return _bad(f"{account.name} may not see team {h.team if h else ''!r}'s conversations", 403)
        await store.mark_read(account.name, cid, at=at)
        unread = (await store.unread_counts(account.name, [cid]))[cid]
        return web.json_response({"conversation_id": cid, "read_at": at.isoformat(), "unread": unread})

    async def patch_customer(self, request: web.Request) -> web.Response:
        """Set the customer's tier and tags; answers the customer's profile."""
        account = await self.desk._require(request)
        store = self.desk.store
        customer_id = request.match_info["id"]
        try:
            body = await request.json()
        except ValueError:
            return _bad(PROFILE_USAGE)
        try:
            change = clean_profile(body)
        except ValueError as exc:
            return _bad(str(exc))
        customer = await store.get_customer(customer_id)
        if customer is None:
            return _bad(f"no customer {customer_id}", 404)
        teams = await store.customer_teams(customer_id) or [None]
        if not any(self.may_view(account, t) for t in teams):
            return _bad(f"{account.name} ({account.role}, teams: {', '.join(account.teams) or 'none'}) may not "
                        "edit this customer: none of their conversations is in your teams", 403)
        updated = await store.set_customer_profile(customer_id, **change)
        if updated is None:
            return _bad(f"no customer {customer_id}", 404)
        log.info("agent %s set customer %s's %s", account.name, customer_id, " and ".join(sorted(change)))
        return web.json_response({"id": customer_id, **profile(updated.attributes)})
