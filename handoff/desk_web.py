"""The local agent desk: the /agent page and its JSON API (docs/protocols.md).

Agents log in with the agent token from config and their name; the cookie
carries their signed name. Scripts may send the token as a Bearer header plus
``X-Omnibot-Agent``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from aiohttp import WSMsgType, web

from bot import audit
from bot.agents import TOKEN_PREFIX, Sessions, check_password, token_hash
from bot.auth import Signer
from bot.config import Config
from bot.errors import OmnibotError
from bot.events import EventBus
from bot.media import ALLOWED_MIME, MediaStore, UploadRefused, read_upload, sniff_mime
from bot.model import Attachment
from bot.names import agent_languages, team_for_agents
from bot.storage import Store
from bot.storage.base import AgentAccount

from .context import handoff_context, handoff_summary, named
from .desk_customers import DeskCustomers, queue_views
from .desk_actions import DeskActions
from .desk_privacy import DeskPrivacy
from .queue import DeskError, HandoffQueue
from .roles import can, who_may

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
COOKIE = "omnibot_agent"
DESK_EVENTS = ("queued", "claimed", "message", "resolved", "returned", "transferred", "sla", "delivery_failed",
               "csat",     # a customer answered the survey of a resolved ticket
               "note",     # an internal note (handoff.desk_actions); never reaches the customer
               "review",   # a review or compensation step (handoff.review)
               "resync")   # resync: live events were lost (another instance's bus reconnected); reload


async def _result_of(request: web.Request) -> str | None:
    """The optional ``{"result": "..."}`` of a resolve request (400 when it is not text)."""
    bad = web.HTTPBadRequest(text=json.dumps({"error": 'result must be text: {"result": "..."}'}),
                             content_type="application/json")
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        raise bad from None
    result = body.get("result") if isinstance(body, dict) else None
    if result is not None and not isinstance(result, str):
        raise bad
    return (result or "").strip()[:2000] or None


@dataclass(frozen=True)
class _Unheld:
    """A ticket as a roles target: its team, held by nobody (resolving a ticket needs its team)."""
    team: str
    agent: None = None


def _may_view(account: AgentAccount, team: str | None) -> bool:
    """Search and history: an admin sees everything; others their teams' conversations, and those
    that never reached a team (the bot answered them alone)."""
    return not account.disabled and (account.role == "admin" or team is None or team in account.teams)


class AgentDeskWeb:
    """Mounts /agent on the bot's server.

    Args:
        queue: the desk interface.
        store: for context and queue rows.
        config: teams and the agent token.
        events: pushed to agents' browsers.
        secret: signs the login cookie.
    """

    def __init__(self, *, queue: HandoffQueue, store: Store, config: Config, events: EventBus,
                 secret: str, resolutions: Any = None, tickets: Any = None,
                 connectors: Mapping[str, Any] | None = None, media: MediaStore | None = None,
                 flows: Any = None) -> None:
        self.queue = queue
        self.flows = flows               # flows.FlowSet: the captured details' fields and labels
        self.media = media               # files agents attach to replies
        self.connectors = connectors if connectors is not None else {}   # for each channel's reply window
        self.resolutions = resolutions   # handoff.resolution.Resolutions: complaints from the ticket list
        self.tickets = tickets           # handoff.tickets.Tickets: deadlines
        self.store = store
        self.config = config
        self.events = events
        self.signer = Signer(secret, "agent-session")
        self._token = config.agent_desk.token.get_secret_value()
        self.sessions = Sessions(secret, hours=config.agent_desk.session_hours)   # accounts' cookies
        self._accounts = False       # whether an agent account exists (then the shared token is off)
        self._sockets: set[web.WebSocketResponse] = set()
        self.actions = DeskActions(self)   # transfer, take-over, notes, canned replies (loads canned/)
        self.privacy = DeskPrivacy(self)   # personal data masked but to the holder; reveal (audited)
        self.reviews: Any = None         # handoff.review.Reviews (set by the app): outcome, review, authority

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/agent", self.page)
        r.add_get("/agent/static/{name}", self.static)
        r.add_post("/agent/login", self.login)
        r.add_post("/agent/logout", self.logout)
        r.add_get("/agent/api/me", self.me)
        r.add_get("/agent/api/auth", self.auth_mode)
        r.add_get("/agent/api/queue", self.list_queue)
        r.add_get("/agent/api/handoffs/{id}", self.detail)
        self.actions.add_routes(app)      # before the generic {action} route below
        if self.reviews is not None:     # before the generic {action} route: resolve goes through the review
            from .desk_review import ReviewWeb
            ReviewWeb(self, self.reviews).add_routes(app)
        r.add_post("/agent/api/handoffs/{id}/{action}", self.action)
        r.add_post("/agent/api/upload", self.upload)
        r.add_get("/agent/ws", self.ws)
        # history and search: past conversations, read-only, and reopened into the queue
        r.add_get("/agent/api/search", self.search)
        r.add_get("/agent/api/conversations/{id}", self.conversation)
        r.add_post("/agent/api/conversations/{id}/reopen", self.reopen)
        if self.resolutions is not None and self.tickets is not None:
            r.add_get("/agent/api/tickets", self.list_tickets)
            r.add_post("/agent/api/tickets/{ref}/resolve", self.resolve_ticket)
        DeskCustomers(self, _may_view).add_routes(app)   # read marks, customer tier and tags
        self.privacy.add_routes(app)                      # POST conversations/{id}/reveal

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"server shutdown")

    # -- auth ----------------------------------------------------------------

    async def check_accounts(self) -> None:
        """At start: warn while the shared token is how agents log in (no account exists)."""
        if not await self._have_accounts():
            log.warning("agent desk: no agent accounts exist, so the shared agent_desk.token logs anyone in "
                        "under any name; add accounts with `omnibot agent add` (the shared token then stops "
                        "working)")

    async def _have_accounts(self) -> bool:
        # accounts are never deleted (only disabled): once one exists, the shared token is off for good
        if not self._accounts:
            self._accounts = await self.store.count_agents() > 0
        return self._accounts

    async def account_of(self, request: web.Request) -> AgentAccount | None:
        """Who is acting: the account of the session cookie or of the personal token
        (``Authorization: Bearer omb_...``); None if nobody is logged in.

        While no account exists, the shared token with ``X-Omnibot-Agent`` (or the old name cookie)
        stands for an admin under that free name. Once one exists, only accounts act, and their
        name comes from the account: ``X-Omnibot-Agent`` is ignored.
        """
        auth = request.headers.get("Authorization", "")
        bearer = auth[7:].strip() if auth.startswith("Bearer ") else ""
        if await self._have_accounts():
            if bearer.startswith(TOKEN_PREFIX):
                account = await self.store.agent_by_token(token_hash(bearer))
                return account if account is not None and not account.disabled else None
            return await self.sessions.account(self.store, request.cookies.get(COOKIE))
        name = self.signer.verify(request.cookies.get(COOKIE))
        if not name and bearer and hmac.compare_digest(bearer.encode(), self._token.encode()):
            name = request.headers.get("X-Omnibot-Agent", "").strip()[:60]
        return self._shared(name) if name else None

    def _shared(self, name: str) -> AgentAccount:
        """The first-run stand-in for an account: an admin under a free name (shared token)."""
        return AgentAccount(id="", name=name, email="", teams=tuple(self.config.handoff.teams), role="admin",
                            disabled=False, created_at=datetime.now(timezone.utc))

    async def agent_of(self, request: web.Request) -> str | None:
        """The logged-in agent's name, or None."""
        account = await self.account_of(request)
        return account.name if account else None

    async def is_agent(self, request: web.Request) -> bool:
        return await self.account_of(request) is not None

    async def may_see_metrics(self, request: web.Request) -> bool:
        """/metrics and /admin/metrics: everyone's figures, so an admin account (its session or
        personal token); while no account exists, the shared token (no name needed: a scraper)."""
        if not await self._have_accounts():
            auth = request.headers.get("Authorization", "")
            if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip().encode(), self._token.encode()):
                return True
        account = await self.account_of(request)
        return account is not None and can(account, "metrics_all")

    async def _require(self, request: web.Request) -> AgentAccount:
        account = await self.account_of(request)
        if account is None:
            raise web.HTTPUnauthorized(text=json.dumps({"error": "log in first"}), content_type="application/json",
                                       headers={"WWW-Authenticate": 'Bearer realm="omnibot"'})
        return account

    @staticmethod
    def _forbid(account: AgentAccount, action: str, target: Any) -> None:
        """403 unless ``account`` may do ``action`` on ``target`` (handoff.roles)."""
        if not can(account, action, target):
            what = action.replace("_", " ")
            raise web.HTTPForbidden(text=json.dumps({
                "error": f"{account.name} ({account.role}, teams: {', '.join(account.teams) or 'none'}) may not "
                         f"{what} in team {getattr(target, 'team', '?')!r}"
                         + (f" (held by {target.agent})" if getattr(target, "agent", None) else "")
                         + f": only {who_may(action)} may"}), content_type="application/json")

    async def login(self, request: web.Request) -> web.Response:
        """``{"email", "password"}`` (JSON or a form) -> a session cookie. While no account exists:
        ``{"token", "name"}`` with the shared token."""
        usage = "send JSON {email, password}"
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                return web.json_response({"error": usage}, status=400)
        else:
            body = dict(await request.post())
        if not isinstance(body, dict):
            return web.json_response({"error": usage}, status=400)
        if not await self._have_accounts():
            return await self._shared_login(request, body)
        email, password = str(body.get("email", "")).strip().lower(), str(body.get("password", ""))
        if not email or not password:
            msg = ("the shared agent token is off now that agent accounts exist: log in with your e-mail and "
                   "password" if body.get("token") else usage)
            return web.json_response({"error": msg}, status=400 if not body.get("token") else 401)
        account = await self.store.agent_by_email(email)
        ok = await asyncio.to_thread(check_password, account.password_hash if account else None, password)
        if account is None or not ok:
            await asyncio.sleep(0.3)  # slow down guessing
            log.warning("failed agent login for %s from %s", email, request.remote)
            await self._audit_login(account.name if account else None, "login_failed", email)
            return web.json_response({"error": "wrong e-mail or password"}, status=401)
        if account.disabled:
            log.warning("login refused: agent account %s is disabled", email)
            await self._audit_login(account.name, "login_failed", email, {"why": "disabled"})
            return web.json_response({"error": "this account is disabled; ask an admin"}, status=403)
        resp = web.json_response(self._me(account))
        resp.set_cookie(COOKIE, self.sessions.issue(account), httponly=True, samesite="Strict", path="/",
                        secure=request.secure, max_age=int(self.sessions.hours * 3600))
        log.info("agent %s (%s) logged in", account.name, account.email)
        await self._audit_login(account.name, "login", email)
        return resp

    async def _audit_login(self, name: str | None, action: str, email: str,
                           detail: dict[str, Any] | None = None) -> None:
        """A login or failed login in the audit log (an unknown e-mail: actor ``unknown``)."""
        try:
            await audit.record(self.store, f"agent:{name}" if name else "unknown", action, target=email[:120] or None,
                               detail=detail)
        except Exception as exc:  # noqa: BLE001 - the login's answer stands; the missing entry is logged
            log.error("audit entry %s for %s not written (%s)", action, name or email, exc)

    async def _shared_login(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        token, name = str(body.get("token", "")), str(body.get("name", "")).strip()
        if not hmac.compare_digest(token.encode(), self._token.encode()):
            await asyncio.sleep(0.3)  # slow down guessing
            log.warning("failed agent login from %s", request.remote)
            await self._audit_login(None, "login_failed", "", {"shared_token": True})
            return web.json_response({"error": "wrong agent token"}, status=401)
        if not 1 <= len(name) <= 60:
            return web.json_response({"error": "give your name (1-60 characters)"}, status=400)
        resp = web.json_response({"name": name})
        resp.set_cookie(COOKIE, self.signer.sign(name), httponly=True, samesite="Strict", path="/",
                        secure=request.secure, max_age=int(self.sessions.hours * 3600))
        log.warning("agent %s logged in with the shared token (no agent accounts exist yet)", name)
        await self._audit_login(name, "login", "", {"shared_token": True})
        return resp

    async def auth_mode(self, request: web.Request) -> web.Response:
        """How to log in (public): ``accounts`` (e-mail and password) or ``shared`` (token and name)."""
        return web.json_response({"mode": "accounts" if await self._have_accounts() else "shared"})

    async def logout(self, request: web.Request) -> web.Response:
        resp = web.json_response({"ok": True})
        resp.del_cookie(COOKIE, path="/")
        return resp

    @staticmethod
    def _me(account: AgentAccount) -> dict[str, Any]:
        return {"name": account.name, "email": account.email, "role": account.role, "teams": list(account.teams)}

    # -- pages and API -------------------------------------------------------

    async def static(self, request: web.Request) -> web.StreamResponse:
        # no-cache: after an upgrade, browsers revalidate instead of running an old agent.js
        path = (STATIC / request.match_info["name"]).resolve()
        if path.parent != STATIC.resolve() or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    async def page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "agent.html", headers={"Cache-Control": "no-cache"})

    async def me(self, request: web.Request) -> web.Response:
        return web.json_response(self._me(await self._require(request)))

    async def _summary(self, h: Any) -> dict[str, Any]:
        """A queue row; names and omnibot's words in the flows' default language (README "Languages")."""
        return await handoff_summary(self.store, self.config, h, flows=self.flows)

    def _agent_language(self) -> str | None:
        langs = agent_languages(self.flows)
        return langs.default if langs else None

    async def list_queue(self, request: web.Request) -> web.Response:
        account = await self._require(request)
        rows = [await self._summary(h) for h in await self.queue.list()
                if can(account, "view", h)]     # an agent sees their teams' queues only
        rows = [self.privacy.view(account.name, r).tree(r) for r in rows]   # personal data: the holder's
        return web.json_response(await queue_views(self.store, account, rows))   # unread, counts per view

    async def detail(self, request: web.Request) -> web.Response:
        account = await self._require(request)
        try:
            h = await self.queue.get(request.match_info["id"])
        except DeskError as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        self._forbid(account, "view", h)
        context = await handoff_context(self.store, self.config, h, flows=self.flows)
        context["notes"] = [n.to_dict() for n in await self.store.notes_of(h.conversation_id)]
        conv = context.get("conversation") or {}
        window = getattr(self.connectors.get(conv.get("channel", "")), "reply_window", None)
        if window is not None and conv.get("external_id"):
            context["reply_window"] = await window(conv["external_id"])
        view = self.privacy.view(account.name, h)     # e-mail, phone: in clear to the holder only
        return web.json_response({"handoff": view.tree(await self._summary(h)),
                                  "context": view.tree(context)})

    async def action(self, request: web.Request) -> web.Response:
        account = await self._require(request)
        agent = account.name       # always the account's own name: nobody acts as another
        hid, action = request.match_info["id"], request.match_info["action"]
        rule = {"claim": "claim", "reply": "reply", "resolve": "resolve", "release": "hand_back",
                "hand_back": "hand_back"}.get(action)
        try:
            if rule is not None:
                self._forbid(account, rule, await self.queue.get(hid))
            if action == "claim":
                h = await self.queue.claim(hid, agent)
            elif action == "reply":
                usage = 'send JSON {"text": "...", "attachments": [{"id": "att_..."}] (optional)}'
                try:
                    body = await request.json()
                except ValueError:
                    return web.json_response({"error": usage}, status=400)
                text = body.get("text", "") if isinstance(body, dict) else None
                files = body.get("attachments", []) if isinstance(body, dict) else None
                if not isinstance(text, str) or not isinstance(files, list) or len(files) > 10 or not all(
                        isinstance(f, dict) and isinstance(f.get("id"), str) for f in files):
                    return web.json_response({"error": usage}, status=400)
                attachments = await self._attachments(hid, [f["id"] for f in files])
                msg = await self.queue.reply(hid, agent, text, attachments)
                return web.json_response({"message": msg.to_dict()})
            elif action == "resolve":
                # optional {"result": "..."}: what was done, told to the customer with the survey
                h = await self.queue.resolve(hid, agent, result=await _result_of(request))
            elif action in ("release", "hand_back"):
                h = await self.queue.hand_back(hid, agent)
            else:
                return web.json_response({"error": f"unknown action {action!r}"}, status=404)
        except DeskError as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        return web.json_response({"handoff": await self._summary(h)})

    async def upload(self, request: web.Request) -> web.Response:
        """An agent's file for a reply (``multipart/form-data``, field ``file``): ``{"id": ...}``."""
        agent = (await self._require(request)).name
        if self.media is None:
            return web.json_response({"error": "uploads are not available"}, status=404)
        try:
            data, name = await read_upload(request, self.config.webchat.max_upload_bytes)
            mime = sniff_mime(data, "")
            if mime not in ALLOWED_MIME:
                raise UploadRefused(415, "only images (JPEG, PNG, GIF, WebP) and PDF files are accepted")
        except UploadRefused as exc:
            return web.json_response({"error": exc.reason}, status=exc.status)
        info = await self.media.save(data, owner=f"agent:{agent}", name=name, mime=mime)
        return web.json_response({"id": info.id, "kind": info.kind, "name": info.name, "mime": info.mime,
                                  "size": info.size})

    async def _attachments(self, handoff_id: str, ids: list[str]) -> list[Attachment]:
        """Agents' uploads as attachments of a reply: each a copy the customer owns (so the web chat
        serves it to them)."""
        if not ids:
            return []
        if self.media is None:
            raise DeskError("uploads are not available")
        h = await self.queue.get(handoff_id)
        conv = await self.store.get_conversation(h.conversation_id)
        assert conv is not None
        out = []
        for mid in ids:
            info = await self.media.info(mid)
            data = await self.media.read(mid) if info is not None and info.owner.startswith("agent:") else None
            if info is None or data is None:
                raise DeskError(f"no uploaded file {mid!r} (upload it with POST /agent/api/upload)")
            copy = await self.media.save(data, owner=f"{conv.channel}:{conv.external_id}", name=info.name,
                                         mime=info.mime)
            out.append(Attachment(kind=copy.kind, url=f"/media/{copy.id}", name=copy.name, mime=copy.mime,
                                  size=copy.size))
        return out

    async def list_tickets(self, request: web.Request) -> web.Response:
        """Open complaints, most urgent first: with or without a conversation in the queue."""
        account = await self._require(request)
        now = self.tickets.clock()
        out = []
        for t in await self.store.open_tickets():
            if not can(account, "view", t):
                continue
            due = self.tickets.due(t)
            h = await self.store.active_handoff(t.conversation_id)
            customer = await self.store.get_customer(t.customer_id)
            out.append(self.privacy.view(account.name, h).tree(t.summary() | {
                "customer": customer.display_name if customer else "", "team": t.team,
                "department_name": self.tickets.department_name(t, self._agent_language()),
                "due_at": due.isoformat(),
                "overdue": self.tickets.overdue(t, now), "sla_alerts": list(t.sla_alerts),
                "handoff": {"id": h.id, "state": h.state, "agent": h.agent} if h else None}))
        out.sort(key=lambda x: (-x["priority"], x["due_at"]))
        return web.json_response({"tickets": out})

    async def resolve_ticket(self, request: web.Request) -> web.Response:
        """Resolve a complaint nobody is chatting about: ``{"result": "..."}`` goes to the customer."""
        account = await self._require(request)
        result = await _result_of(request)
        ref = request.match_info["ref"].upper()
        ticket = await self.store.get_ticket(ref)
        if ticket is not None:
            self._forbid(account, "resolve_ticket", _Unheld(ticket.team))
        try:
            t = await self.resolutions.resolve_ticket(ref, account.name, result)
        except OmnibotError as exc:
            return web.json_response({"error": str(exc)}, status=getattr(exc, "status", 409))
        return web.json_response({"ticket": t.summary()})

    # -- history and search ------------------------------------------------------

    async def search(self, request: web.Request) -> web.Response:
        """``?q=`` a reference, order number, name, e-mail, phone or words (``&limit=``, at most 50):
        matching conversations, most recently active first; only those of the account's teams."""
        account = await self._require(request)
        q = request.query.get("q", "").strip()
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            return web.json_response({"error": "limit must be a number"}, status=400)
        results = [self.privacy.view(account.name, r.get("handoff")).tree(r)
                   for r in await self.store.search(q, limit=limit)
                   if _may_view(account, (r.get("handoff") or {}).get("team"))]
        for r in results:      # "Web visitor 3f2a" for the unnamed, in the flows' default language
            named(r.get("customer"), r.get("channel"), self.flows)
        return web.json_response({"query": q, "results": results})

    async def conversation(self, request: web.Request) -> web.Response:
        """A whole conversation, open or long closed: transcript, customer, tickets (with the
        result and CSAT) and handoffs; ``handoff`` is its handoff in the queue now, if any."""
        account = await self._require(request)
        cid = request.match_info["id"]
        record = await self.store.conversation_record(cid)
        if record is None:
            return web.json_response({"error": f"no conversation {cid}"}, status=404)
        handoffs = record.get("handoffs") or []
        if not _may_view(account, handoffs[-1]["team"] if handoffs else None):
            return web.json_response({"error": f"{account.name} may not see team {handoffs[-1]['team']!r}'s "
                                      "conversations"}, status=403)
        h = await self.store.active_handoff(cid)
        record["handoff"] = await self._summary(h) if h else None
        record["team_names"] = {t: team_for_agents(self.config.handoff, t, self.flows)
                                for t in self.config.handoff.teams}
        record["notes"] = [n.to_dict() for n in await self.store.notes_of(cid)]
        named(record.get("customer"), (record.get("conversation") or {}).get("channel"), self.flows)
        return web.json_response(self.privacy.view(account.name, h).tree(record))

    async def reopen(self, request: web.Request) -> web.Response:
        """Back into its last team's queue, with ``{"note": "..."}`` (optional) and who did it."""
        account = await self._require(request)
        record = await self.store.conversation_record(request.match_info["id"])
        handoffs = (record or {}).get("handoffs") or []
        if not _may_view(account, handoffs[-1]["team"] if handoffs else None):
            return web.json_response({"error": f"{account.name} may not reopen another team's conversation"},
                                     status=403)
        agent = account.name
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            body = None
        note = body.get("note") if isinstance(body, dict) else None
        if body is None or not isinstance(body, dict) or (note is not None and not isinstance(note, str)):
            return web.json_response({"error": 'send JSON {"note": "..."} (optional)'}, status=400)
        try:
            h = await self.queue.reopen(request.match_info["id"], agent, note=note)
        except DeskError as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        return web.json_response({"handoff": await self._summary(h)})

    async def ws(self, request: web.Request) -> web.StreamResponse:
        await self._require(request)
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=64 * 1024)
        await ws.prepare(request)
        self._sockets.add(ws)
        q = self.events.subscribe()

        async def pump() -> None:
            while True:
                ev = await q.get()
                if ev.kind in DESK_EVENTS:
                    frame = {"type": "changed", "event": ev.kind, "handoff_id": ev.handoff_id,
                             "conversation_id": ev.conversation_id}
                    if ev.kind == "sla":      # an SLA warning or breach: show it to every agent
                        frame["alert"] = ev.data
                    elif ev.kind == "review":  # {"what": "review_pending", "reference", ...}
                        frame["review"] = ev.data
                    elif ev.kind == "csat":   # the survey's answer: {"reference", "score"}
                        frame.update({k: ev.data.get(k) for k in ("reference", "score")})
                    elif ev.kind == "delivery_failed":   # a message did not reach the customer
                        frame.update({k: ev.data.get(k) for k in ("message_id", "reason", "channel", "sender")})
                    await ws.send_json(self.privacy.frame(frame))     # masked as for one who holds nothing

        task = asyncio.create_task(pump())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and msg.data == "ping":
                    await ws.send_str("pong")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self.events.unsubscribe(q)
            self._sockets.discard(ws)
        return ws
