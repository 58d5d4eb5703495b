"""The web desk's actions between agents: transfer (to a team or an agent, with a note), take-over,
internal notes and canned replies (docs/protocols.md, "Agent desk API").

Mounted by :meth:`handoff.desk_web.AgentDeskWeb.add_routes` before its generic
``/agent/api/handoffs/{id}/{action}`` route. Every handler acts as the logged-in account (nobody
acts as another) under the rules of :mod:`handoff.roles`; bad input is a 400 with a JSON error,
a rule that forbids it a 403, a missing handoff or conversation a 404, a handoff that is not in a
state for it (held by another, the holder not idle long enough) a 409.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.names import team_for_agents
from bot.storage.base import AgentAccount

from .canned import CannedReplies, context_for, load_canned
from .queue import DeskError
from .roles import take_over_rule

if TYPE_CHECKING:
    from .desk_web import AgentDeskWeb

log = logging.getLogger(__name__)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def json_object(request: web.Request, usage: str) -> dict[str, Any]:
    """The request's JSON object (an empty body is ``{}``); a 400 with ``usage`` otherwise."""
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": usage}), content_type="application/json")
    return body


async def find_account(store: Any, who: str) -> AgentAccount | None:
    """An agent account by e-mail, or by its exact name (any case)."""
    who = who.strip()
    if "@" in who:
        return await store.agent_by_email(who.lower())
    found = [a for a in await store.list_agents() if a.name.lower() == who.lower()]
    return found[0] if len(found) == 1 else None


class DeskActions:
    """Transfer, take-over, notes and canned replies on the /agent desk.

    Args:
        desk: the web desk (its store, queue, config and who is logged in).
        canned: the canned replies; loaded from the flows folder's ``canned/`` when not given
            (a bad file stops the start, like a bad flow file).
    """

    def __init__(self, desk: AgentDeskWeb, canned: CannedReplies | None = None) -> None:
        self.desk = desk
        self.canned = canned if canned is not None else load_canned(
            desk.config.resolve(desk.config.flows.path), desk.flows.settings.languages if desk.flows else None)

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/agent/api/handoffs/{id}/transfer", self.transfer)
        r.add_post("/agent/api/handoffs/{id}/take_over", self.take_over)
        r.add_get("/agent/api/handoffs/{id}/canned/{name}", self.render_canned)
        r.add_get("/agent/api/conversations/{id}/notes", self.list_notes)
        r.add_post("/agent/api/conversations/{id}/notes", self.add_note)
        r.add_get("/agent/api/canned", self.search_canned)
        r.add_get("/agent/api/agents", self.agents)

    async def _handoff(self, request: web.Request, account: AgentAccount, action: str) -> Any:
        try:
            h = await self.desk.queue.get(request.match_info["id"])
        except DeskError as exc:
            raise web.HTTPNotFound(text=json.dumps({"error": str(exc)}), content_type="application/json") from None
        self.desk._forbid(account, action, h)
        return h

    # -- transfer and take-over -------------------------------------------------------

    async def transfer(self, request: web.Request) -> web.Response:
        """``{"team": "billing", "agent": "sam@shop.test" or "Sam Lee", "note": "..."}``: to a
        team's queue, or claimed by that agent at once (an enabled account of the team)."""
        account = await self.desk._require(request)
        usage = 'send JSON {"team": "...", "agent": "name or e-mail", "note": "..."} (team and/or agent)'
        body = await json_object(request, usage)
        team, who, note = body.get("team"), body.get("agent"), body.get("note")
        if any(v is not None and not isinstance(v, str) for v in (team, who, note)) or not (team or who):
            return _error(400, usage)
        h = await self._handoff(request, account, "transfer")
        to = None
        if who:
            to = await find_account(self.desk.store, who)
            if to is None:
                return _error(400, f"no agent account {who!r} (give their e-mail or full name)")
        try:
            h = await self.desk.queue.transfer(h.id, account.name, team or None, to=to, note=note)
        except DeskError as exc:
            return _error(exc.status, str(exc))
        return await self._summary(h)

    async def take_over(self, request: web.Request) -> web.Response:
        """Take a conversation another agent holds: a supervisor of its team (or an admin) any
        time, an agent of its team once the holder has been idle ``agent_desk.takeover_idle_minutes``."""
        account = await self.desk._require(request)
        try:
            h = await self.desk.queue.get(request.match_info["id"])
        except DeskError as exc:
            return _error(exc.status, str(exc))
        rule = take_over_rule(account, h)
        if rule is None:
            return _error(403, f"{account.name} ({account.role}, teams: {', '.join(account.teams) or 'none'}) may "
                               f"not take over in team {h.team!r}: only an agent or supervisor of the team may")
        minutes = self.desk.config.agent_desk.takeover_idle_minutes
        try:
            h = await self.desk.queue.take_over(h.id, account.name,
                                                idle=None if rule == "any time" else timedelta(minutes=minutes))
        except DeskError as exc:
            return _error(exc.status, str(exc))
        return await self._summary(h)

    async def _summary(self, h: Any) -> web.Response:
        from .context import handoff_summary
        return web.json_response({"handoff": await handoff_summary(self.desk.store, self.desk.config, h,
                                                                   flows=self.desk.flows)})

    async def agents(self, request: web.Request) -> web.Response:
        """Enabled accounts to transfer to: ``{"agents": [{name, email, teams, role}]}``."""
        await self.desk._require(request)
        rows = [{"name": a.name, "email": a.email, "teams": list(a.teams), "role": a.role}
                for a in await self.desk.store.list_agents() if not a.disabled]
        teams = [{"id": t, "name": team_for_agents(self.desk.config.handoff, t, self.desk.flows)}
                 for t in self.desk.config.handoff.teams]      # the flows' default language, as the desk
        return web.json_response({"agents": rows, "teams": teams})

    # -- internal notes ---------------------------------------------------------------------

    async def _conversation_team(self, request: web.Request, account: AgentAccount) -> str | None:
        """403 unless the account may see the conversation; 404 if there is none."""
        from .desk_web import _may_view
        cid = request.match_info["id"]
        if await self.desk.store.get_conversation(cid) is None:
            raise web.HTTPNotFound(text=json.dumps({"error": f"no conversation {cid}"}), content_type="application/json")
        last = await self.desk.store.latest_handoff(cid)
        team = last.team if last else None
        if not _may_view(account, team):
            raise web.HTTPForbidden(text=json.dumps({"error": f"{account.name} may not see team {team!r}'s "
                                                     "conversations"}), content_type="application/json")
        return team

    async def list_notes(self, request: web.Request) -> web.Response:
        account = await self.desk._require(request)
        await self._conversation_team(request, account)
        notes = await self.desk.store.notes_of(request.match_info["id"])
        view = await self.desk.privacy.view_of(account.name, request.match_info["id"])   # the holder sees all
        return web.json_response({"notes": [view.tree(n.to_dict()) for n in notes]})

    async def add_note(self, request: web.Request) -> web.Response:
        """``{"text": "..."}``: an internal note, never sent to the customer."""
        account = await self.desk._require(request)
        usage = 'send JSON {"text": "..."}'
        body = await json_object(request, usage)
        text = body.get("text")
        if not isinstance(text, str):
            return _error(400, usage)
        await self._conversation_team(request, account)
        try:
            note = await self.desk.queue.add_note(request.match_info["id"], account.name, text, via="web")
        except DeskError as exc:
            return _error(exc.status, str(exc))
        return web.json_response({"note": note.to_dict()})

    # -- canned replies ------------------------------------------------------------------------

    async def search_canned(self, request: web.Request) -> web.Response:
        """``?q=`` words in the name, title or text (all of them): ``{"canned": [{name, title, text}]}``."""
        await self.desk._require(request)
        q = request.query.get("q", "")[:200]
        return web.json_response({"canned": [c.to_dict() for c in self.canned.search(q)]})

    async def render_canned(self, request: web.Request) -> web.Response:
        """The reply rendered for this handoff and agent: ``{"name", "title", "text"}``."""
        account = await self.desk._require(request)
        h = await self._handoff(request, account, "view")
        name = request.match_info["name"]
        c = self.canned.get(name)
        if c is None:
            return _error(404, f"no canned reply {name!r}")
        try:
            text = self.canned.render(c.name, await context_for(self.desk.store, self.desk.config, h, account.name))
        except Exception as exc:  # noqa: BLE001 - a template bug: say which reply, never a 500
            log.warning("canned reply %s failed to render: %s", c.name, exc)
            return _error(422, f"canned reply {c.name!r} could not be rendered ({c.file}:{c.line})")
        return web.json_response({"name": c.name, "title": c.title, "text": text})
