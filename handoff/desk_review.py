"""The web desk's review and authority API (docs/protocols.md "Review and authority").

Mounted by :meth:`handoff.desk_web.AgentDeskWeb.add_routes` *before* its generic
``/agent/api/handoffs/{id}/{action}`` route, so resolving a handoff goes through
:class:`handoff.review.Reviews` (outcome required for a complaint, proposed for review when
the complaint needs it). Every handler acts as the logged-in account; errors are JSON with a
4xx status. What they answer is masked as the desk's other views are (handoff/desk_privacy.py):
e-mail, phone and IBAN in an outcome or a note in clear to the agent who holds the conversation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.names import team_for_agents

from .context import handoff_summary
from .queue import DeskError
from .review import Outcome, Reviews

from .desk_actions import json_object

if TYPE_CHECKING:
    from .desk_web import AgentDeskWeb


def _error(exc: DeskError) -> web.Response:
    return web.json_response({"error": str(exc)}, status=exc.status)


class ReviewWeb:
    """The routes; ``desk`` gives the logged-in account and the rules."""

    def __init__(self, desk: "AgentDeskWeb", reviews: Reviews) -> None:
        self.desk = desk
        self.reviews = reviews

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/agent/api/handoffs/{id}/resolve", self.resolve_handoff)
        r.add_post("/agent/api/tickets/{ref}/resolve", self.resolve_ticket)
        r.add_post("/agent/api/tickets/{ref}/propose", self.propose)
        r.add_post("/agent/api/tickets/{ref}/approve", self.approve)
        r.add_post("/agent/api/tickets/{ref}/return", self.send_back)
        r.add_get("/agent/api/tickets/{ref}/compensations", self.compensations)
        r.add_post("/agent/api/tickets/{ref}/compensations", self.request_compensation)
        r.add_get("/agent/api/reviews", self.list_reviews)
        r.add_get("/agent/api/compensations", self.pending)
        r.add_post("/agent/api/compensations/{id}/{decision}", self.decide)
        r.add_get("/agent/api/authority", self.authority)

    async def _json(self, account: Any, conversation_id: str | None, obj: Any, status: int = 200) -> web.Response:
        """``obj`` about one conversation, masked for ``account`` (docs/protocols.md "Personal data")."""
        return web.json_response(await self.desk.privacy.masked(account.name, conversation_id, obj), status=status)

    async def _ticket_json(self, account: Any, t: Any, status: int = 200) -> web.Response:
        return await self._json(account, t.conversation_id, {"ticket": t.summary() | {"review": t.review()}}, status)

    async def _compensation_json(self, account: Any, c: Any, status: int = 200) -> web.Response:
        t = await self.desk.store.get_ticket(c.ticket_reference)
        return await self._json(account, t.conversation_id if t else None, {"compensation": c.to_dict()}, status)

    async def _outcome(self, account: Any, o: Outcome) -> web.Response:
        out: dict[str, Any] = {"proposed": o.proposed}
        if o.handoff is not None:
            out["handoff"] = await handoff_summary(self.desk.store, self.desk.config, o.handoff,
                                                   flows=self.desk.flows)
        if o.ticket is not None:
            out["ticket"] = o.ticket.summary() | {"review": o.ticket.review()}
        cid = o.ticket.conversation_id if o.ticket is not None else o.handoff.conversation_id if o.handoff else None
        return await self._json(account, cid, out, status=202 if o.proposed else 200)

    async def resolve_handoff(self, request: web.Request) -> web.Response:
        """``{"result": "..."}``: resolve (the outcome is required for a complaint), or propose the
        outcome for review (202, ``"proposed": true``) when the complaint needs review."""
        account = await self.desk._require(request)
        body = await json_object(request, 'send JSON {"result": "what was done"}')
        try:
            result = Reviews.outcome_text(body.get("result"), required=False)
            h = await self.desk.queue.get(request.match_info["id"])
            self.desk._forbid(account, "resolve", h)
            return await self._outcome(account, await self.reviews.resolve_handoff(account, h.id, result))
        except DeskError as exc:
            return _error(exc)

    async def resolve_ticket(self, request: web.Request) -> web.Response:
        """A complaint from the ticket list: ``{"result"}`` required; proposed when it needs review."""
        account = await self.desk._require(request)
        body = await json_object(request, 'send JSON {"result": "what was done"}')
        try:
            result = Reviews.outcome_text(body.get("result"), required=False)
            return await self._outcome(account, await self.reviews.resolve_ticket(account, request.match_info["ref"],
                                                                                  result))
        except DeskError as exc:
            return _error(exc)

    async def propose(self, request: web.Request) -> web.Response:
        account = await self.desk._require(request)
        body = await json_object(request, 'send JSON {"result": "what was done"}')
        try:
            t = await self.reviews.propose(account, request.match_info["ref"], body.get("result"))
        except DeskError as exc:
            return _error(exc)
        return await self._ticket_json(account, t, status=202)

    async def approve(self, request: web.Request) -> web.Response:
        """A supervisor approves: the customer is told (``told``: false and ``problem`` if not yet)."""
        account = await self.desk._require(request)
        try:
            t, problem = await self.reviews.approve(account, request.match_info["ref"])
        except DeskError as exc:
            return _error(exc)
        return await self._json(account, t.conversation_id, {"ticket": t.summary() | {"review": t.review()},
                                                              "told": problem is None, "problem": problem})

    async def send_back(self, request: web.Request) -> web.Response:
        account = await self.desk._require(request)
        body = await json_object(request, 'send JSON {"note": "what to change"}')
        try:
            t = await self.reviews.send_back(account, request.match_info["ref"], body.get("note"))
        except DeskError as exc:
            return _error(exc)
        return await self._ticket_json(account, t)

    async def list_reviews(self, request: web.Request) -> web.Response:
        account = await self.desk._require(request)
        privacy = self.desk.privacy
        reviews = await self.reviews.reviews_for(account)
        for r in reviews:      # the team's name in the flows' default language (README "Languages")
            r["team_name"] = team_for_agents(self.desk.config.handoff, r["team"], self.desk.flows)
        reviews = [privacy.view(account.name, r["handoff"]).tree(r) for r in reviews]
        return web.json_response({"reviews": reviews, "compensations": await self._pending_of(account)})

    async def _pending_of(self, account: Any) -> list[Any]:
        return [await self.desk.privacy.masked(account.name, c["conversation_id"], c)
                for c in await self.reviews.pending_compensations_for(account)]

    async def compensations(self, request: web.Request) -> web.Response:
        """Every compensation of a ticket, with who asked, who decided and when."""
        account = await self.desk._require(request)
        try:
            t = await self.reviews._ticket(request.match_info["ref"])
            self.reviews._forbid(account, "view", await self.reviews.team_of(t))
        except DeskError as exc:
            return _error(exc)
        return await self._json(account, t.conversation_id, {
            "ticket": t.reference, "authority": self.reviews.authority(account),
            "compensations": [c.to_dict() for c in await self.desk.store.compensations_of(t.reference)]})

    async def request_compensation(self, request: web.Request) -> web.Response:
        """``{"kind", "amount", "note"}``: granted at once within the account's authority (200),
        else pending for a supervisor (202)."""
        account = await self.desk._require(request)
        body = await json_object(request, 'send JSON {"kind": "refund", "amount": 20, "note": "..."}')
        try:
            c = await self.reviews.request_compensation(account, request.match_info["ref"], body.get("kind"),
                                                        body.get("amount"), body.get("note"))
        except DeskError as exc:
            return _error(exc)
        return await self._compensation_json(account, c, status=200 if c.state == "granted" else 202)

    async def pending(self, request: web.Request) -> web.Response:
        account = await self.desk._require(request)
        return web.json_response({"compensations": await self._pending_of(account)})

    async def decide(self, request: web.Request) -> web.Response:
        account = await self.desk._require(request)
        decision = request.match_info["decision"]
        if decision not in ("approve", "reject"):
            return web.json_response({"error": f"unknown decision {decision!r}: approve or reject"}, status=404)
        body = await json_object(request, 'send JSON {"note": "..."} (optional)')
        try:
            c = await self.reviews.decide_compensation(account, request.match_info["id"],
                                                       approve=decision == "approve", note=body.get("note"))
        except DeskError as exc:
            return _error(exc)
        return await self._compensation_json(account, c)

    async def authority(self, request: web.Request) -> web.Response:
        """The account's compensation limit (``limit`` null: none), currency and kinds."""
        return web.json_response(self.reviews.authority(await self.desk._require(request)))
