"""Personal data on the web desk (README "Privacy", docs/protocols.md "Agent desk API").

* What the desk's API answers is masked per ``privacy.policy`` place ``desk``: e-mail addresses,
  phone numbers and IBANs in clear to the agent who holds (has claimed) the conversation, masked to
  everyone else; card numbers and codes never in clear (they are not even stored so). Personal slots
  (``personal: true`` on their collect step) are ``[personal data]`` to everyone but the holder.
  :meth:`DeskPrivacy.view` gives the :class:`handoff.privacy_view.View` for an agent and a handoff.
  The desk websocket's frames (:meth:`DeskPrivacy.frame`) and the review's answers
  (handoff/desk_review.py: proposed outcomes, review notes, compensation notes) are masked so too.
* ``POST /agent/api/conversations/{id}/reveal`` (``{"reason": "..."}``, optional): a supervisor of
  the conversation's team, or an admin, gets the texts in clear (what is stored: a card number was
  never stored, so it cannot be revealed); each reveal is written to the audit log (``reveal``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot import audit, privacy

from .privacy_view import View, desk_view, holds
from .roles import can, who_may

if TYPE_CHECKING:
    from .desk_web import AgentDeskWeb

log = logging.getLogger(__name__)

REASON_MAX = 200


@dataclass(frozen=True)
class _Team:
    """A conversation as a roles target: its last team (None: never handed to one), held by nobody."""
    team: str | None
    agent: None = None


class DeskPrivacy:
    """Masking and the reveal endpoint for :class:`AgentDeskWeb` (``desk``)."""

    def __init__(self, desk: AgentDeskWeb) -> None:
        self.desk = desk
        self._personal: frozenset[str] | None = None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/agent/api/conversations/{id}/reveal", self.reveal)

    @property
    def personal(self) -> frozenset[str]:
        if self._personal is None:
            flows = self.desk.flows
            self._personal = privacy.personal_slots(flows) if flows is not None else frozenset()
        return self._personal

    def view(self, agent: str, handoff: Any) -> View:
        """The view of ``agent`` on a conversation whose handoff now is ``handoff`` (a record, a
        summary dict with ``state`` and ``agent``, or None)."""
        return desk_view(owner=holds(agent, handoff), personal=self.personal)

    async def view_of(self, agent: str, conversation_id: str) -> View:
        """The view of ``agent`` on a conversation (one query: its handoff in the queue)."""
        return self.view(agent, await self.desk.store.active_handoff(conversation_id))

    async def masked(self, agent: str, conversation_id: str | None, obj: Any) -> Any:
        """``obj`` (JSON-like, about one conversation) as ``agent`` may see it."""
        view = await self.view_of(agent, conversation_id) if conversation_id else self.view(agent, None)
        return view.tree(obj)

    def frame(self, frame: dict[str, Any]) -> dict[str, Any]:
        """A desk websocket frame (an SLA alert, a review step, a compensation, an undelivered
        message): it goes to every agent at once, so masked as for one who holds nothing."""
        return self.view("", None).tree(frame)

    async def reveal(self, request: web.Request) -> web.Response:
        """The conversation's texts in clear, for a supervisor of its team or an admin; audited."""
        account = await self.desk._require(request)
        cid = request.match_info["id"]
        usage = 'send JSON {"reason": "why you need to see it"} (optional, at most 200 characters)'
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            return web.json_response({"error": usage}, status=400)
        reason = body.get("reason") if isinstance(body, dict) else None
        if not isinstance(body, dict) or (reason is not None and not isinstance(reason, str)):
            return web.json_response({"error": usage}, status=400)
        store = self.desk.store
        record = await store.conversation_record(cid)
        if record is None:
            return web.json_response({"error": f"no conversation {cid}"}, status=404)
        handoffs = record.get("handoffs") or []
        target = _Team(handoffs[-1]["team"] if handoffs else None)
        if not can(account, "reveal", target):
            log.info("reveal of %s refused to %s (%s)", cid, account.name, account.role)
            return web.json_response({"error": f"{account.name} ({account.role}) may not reveal masked data in team "
                                      f"{target.team!r}: only {who_may('reveal')} may"}, status=403)
        flow_state = await store.load_flow_state(cid) or {}
        notes = [n.to_dict() for n in await store.notes_of(cid)]
        detail: dict[str, Any] = {"messages": len(record.get("transcript") or [])}
        if reason and reason.strip():
            # the log outlives the conversation: the reason is kept as the logs see it
            detail["reason"] = privacy.current().logs(reason.strip()[:REASON_MAX])
        await audit.record(store, f"agent:{account.name}", "reveal", customer_id=record["customer"]["id"],
                           target=cid, detail=detail)
        log.info("agent %s revealed conversation %s", account.name, cid)
        return web.json_response({
            "conversation_id": cid, "revealed_by": account.name,
            "conversation": record["conversation"], "customer": record["customer"],
            "transcript": record["transcript"], "slots": flow_state.get("slots") or {},
            "tickets": record.get("tickets") or [], "notes": notes,
        }, headers={"Cache-Control": "no-store"})

