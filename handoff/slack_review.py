"""Review and authority on the Slack desk (README "Slack agent desk"), over :class:`handoff.review.Reviews`.

* **Resolve with an outcome**: ``!resolve <outcome>`` in the handoff's thread, or
  ``/omnibot resolve C-1001 <outcome>``. A complaint needs the outcome: the Resolve button (which
  carries none) answers with how to give it. A complaint that needs review is proposed instead.
* **Review card**: a proposal posts a card in the handoff's thread (or, without one, in the
  team's channel) with **Approve** and **Send back** buttons. Approve acts at once; a note for
  sending back is a thread reply ``!return <what to change>`` (or ``/omnibot return C-1001
  <note>``); the Send back button says so. ``!approve`` / ``/omnibot approve C-1001`` work too.
* **Compensation over an agent's authority** (requested on the web desk): a card with
  **Approve** and **Reject**.

Members act as their agent accounts (``slack.members``) with their roles: approving needs a
supervisor of the ticket's team or an admin. A member listed only in ``slack.agents`` (or the
user group) has no account: they act as an agent of every team, so they may resolve and propose
but never approve. Cards are posted when the step happens on this instance; if Slack is
unreachable then, the step still stands and shows on the web desk's Reviews list.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from bot.errors import StorageUnavailable
from bot.privacy import slack_text
from bot.storage.base import AgentAccount

from .queue import DeskError
from .review import Reviews
from .roles import can
from .slack_card import escape
from .slack_sync import DESK

if TYPE_CHECKING:
    from .desk_slack import SlackDesk

log = logging.getLogger(__name__)

THREAD_COMMANDS = ("!resolve", "!approve", "!return")
BUTTONS = ("omnibot_review_approve", "omnibot_review_return", "omnibot_comp_approve", "omnibot_comp_reject")
OUTCOME_HELP = ("This is a complaint: the customer is told the outcome. Write `!resolve <what was done>` in "
                "the thread (or `/omnibot resolve {ref} <what was done>`).")


class SlackReviews:
    """Hooks the review steps into a :class:`SlackDesk`: buttons, thread commands, slash commands, cards."""

    def __init__(self, desk: "SlackDesk", reviews: Reviews) -> None:
        self.desk = desk
        self.reviews = reviews
        for action_id in BUTTONS:
            desk.app.action(action_id)(self._on_button)
        reviews.listeners.append(self.on_step)

    # -- who acts ---------------------------------------------------------------------

    async def account(self, user: str) -> AgentAccount | None:
        """The member's account; an unmapped agent stands in as an agent of every team; None for others."""
        if not await self.desk._is_agent(user):
            return None
        account = await self.desk._account(user)
        if account is not None:
            return account
        return AgentAccount(id="", name=await self.desk._agent_name(user), email="",
                            teams=tuple(self.desk.config.handoff.teams), role="agent", disabled=False,
                            created_at=datetime.now(timezone.utc))

    async def _run(self, user: str, channel: str, step: Any, *args: Any) -> Any:
        """Run ``step(account, *args)``, telling the member why not when it cannot be done."""
        account = await self.account(user)
        if account is None:
            await self.desk._tell(channel, user, "Sorry, only members of the support team can do that.")
            return None
        try:
            return await step(account, *args)
        except DeskError as exc:
            await self.desk._tell(channel, user, f"Not done: {exc}")
        except StorageUnavailable as exc:
            log.warning("slack review step not stored (%s)", exc)
            await self.desk._tell(channel, user, "Not done: we could not save it just now (storage unavailable). "
                                                 "Please try again in a minute.")
        return None

    # -- resolve ----------------------------------------------------------------------

    async def resolve(self, handoff_id: str, user: str, channel: str, outcome: str | None) -> None:
        """Resolve a handoff from Slack (button, ``!resolve``, ``/omnibot resolve``)."""
        async def step(account: AgentAccount) -> None:
            h = await self.desk.queue.get(handoff_id)
            ticket = await self.desk.store.conversation_ticket(h.conversation_id)
            if ticket is not None and not outcome and not (ticket.review_state == "approved"
                                                           and ticket.communicated_at is None):
                await self.desk._tell(channel, user, OUTCOME_HELP.format(ref=ticket.reference))
                return
            if account.id and not can(account, "resolve", h):
                raise DeskError(f"as {account.role} of {', '.join(account.teams) or 'no team'}, you may not "
                                f"resolve this conversation (team {h.team}"
                                f"{f', held by {h.agent}' if h.agent else ''})")
            done = await self.reviews.resolve_handoff(account, handoff_id, outcome)
            if done.proposed:
                await self.desk._tell(channel, user, f"Proposed for review: {ticket.reference if ticket else ''} "
                                                     "waits for a supervisor's approval; the customer is told "
                                                     "once it is approved.")
        await self._run(user, channel, step)

    # -- Slack input --------------------------------------------------------------------

    async def on_thread_command(self, text: str, handoff_id: str, user: str, channel: str) -> bool:
        """``!resolve <outcome>``, ``!approve``, ``!return <note>`` in a handoff's thread; False
        for anything else."""
        first, _, rest = text.partition(" ")
        first, rest = first.lower(), rest.strip()
        if first not in THREAD_COMMANDS:
            return False
        if first == "!resolve":
            await self.resolve(handoff_id, user, channel, rest or None)
            return True
        h = await self.desk.store.get_handoff(handoff_id)
        ref = await self._reference_of_conversation(h.conversation_id if h else "")
        if ref is None:
            await self.desk._tell(channel, user, "No complaint of this conversation waits for a review.")
            return True
        await self._decide(first.removeprefix("!"), ref, user, channel, rest)
        return True

    async def on_command(self, words: list[str], user: str, channel: str) -> bool:
        """``/omnibot resolve <ref> <outcome>``, ``approve <ref>``, ``return <ref> <note>``; False
        for the other commands."""
        if not words or words[0] not in ("resolve", "approve", "return"):
            return False
        kind, args = words[0], words[1:]
        if not args:
            await self.desk._tell(channel, user, f"Usage: /omnibot {kind} C-1001"
                                  + {"resolve": " <outcome>", "return": " <what to change>"}.get(kind, ""))
            return True
        if kind == "resolve":
            handoff_id = await self.desk._find(args[0])
            if handoff_id is not None:
                await self.resolve(handoff_id, user, channel, " ".join(args[1:]) or None)
                return True
            if not args[0].upper().startswith("C-"):
                await self.desk._tell(channel, user, "No open handoff or complaint matches that.")
                return True
            await self._run(user, channel, self._resolve_ticket, args[0], " ".join(args[1:]) or None)
            return True
        await self._decide(kind, args[0], user, channel, " ".join(args[1:]))
        return True

    async def _resolve_ticket(self, account: AgentAccount, ref: str, outcome: str | None) -> None:
        await self.reviews.resolve_ticket(account, ref, outcome)

    async def _on_button(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user = body.get("user", {}).get("id", "")
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id", "")
        value, kind = action.get("value", ""), action["action_id"]
        if kind == "omnibot_review_approve":
            done = await self._run(user, channel, self.reviews.approve, value)
            if done is not None:
                await self._settle(body, channel, f"Approved by {done[0].reviewed_by}.")
        elif kind == "omnibot_review_return":
            await self.desk._tell(channel, user, f"Say what to change: reply `!return <note>` in the handoff's "
                                                 f"thread, or `/omnibot return {value} <note>`.")
        else:
            approve = kind == "omnibot_comp_approve"
            c = await self._run(user, channel, self._decide_compensation, value, approve)
            if c is not None:
                await self._settle(body, channel, f"{c.state.capitalize()} by {c.decided_by}.")

    async def _decide_compensation(self, account: AgentAccount, cid: str, approve: bool) -> Any:
        return await self.reviews.decide_compensation(account, cid, approve=approve)

    async def _settle(self, body: dict[str, Any], channel: str, outcome: str) -> None:
        """The decided card loses its buttons and says who decided (nobody clicks a settled card)."""
        message = body.get("message") or {}
        ts = message.get("ts") or (body.get("container") or {}).get("message_ts")
        if not ts or not channel:
            return
        text = f"{message.get('text') or ''}\n*{outcome}*".strip()
        try:
            await self.desk.poster.update(channel, ts, text,
                                          blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": text}}])
        except Exception as exc:  # noqa: BLE001 - the decision stands; a stale card only gets refused clicks
            log.warning("could not update the decided card in %s: %s", channel, exc)

    async def _decide(self, kind: str, ref: str, user: str, channel: str, note: str) -> None:
        if kind == "approve":
            await self._run(user, channel, self.reviews.approve, ref)
        elif not note:
            await self.desk._tell(channel, user, "Say what to change: `!return <note>` "
                                                 f"(or `/omnibot return {ref} <note>`).")
        else:
            await self._run(user, channel, self.reviews.send_back, ref, note)

    async def _reference_of_conversation(self, conversation_id: str) -> str | None:
        t = await self.desk.store.conversation_ticket(conversation_id) if conversation_id else None
        return t.reference if t is not None else None

    # -- cards ------------------------------------------------------------------------------

    async def on_step(self, kind: str, data: dict[str, Any]) -> None:
        """A review or compensation step happened (on this instance): show it in Slack."""
        ticket = data["ticket"]
        link = await self.desk.store.desk_thread(DESK, data["handoff_id"]) if data.get("handoff_id") else None
        channel = link["channel"] if link else self.desk.cfg.channel_for(data.get("team") or "")
        if not channel:
            return
        where = {"thread_ts": link["ts"]} if link else {}
        ref = ticket.reference
        review = ticket.review()
        if kind == "review_pending":
            text = (f"Review needed: {data['by']} proposes to resolve complaint {ref} ({ticket.severity}) with: "
                    f"{escape(slack_text(review['proposed_result'] or ''))}")
            blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text}},
                      {"type": "actions", "elements": [
                          _button("Approve", "omnibot_review_approve", ref, "primary"),
                          _button("Send back", "omnibot_review_return", ref, "danger")]}]
            await self.desk._post(channel, text, blocks=blocks, **where)
        elif kind == "review_returned":
            await self.desk._post(channel, f"{data['by']} sent the proposed resolution of {ref} back: "
                                           f"{escape(slack_text(review['note'] or ''))}. Propose again with "
                                           "`!resolve <outcome>`.", **where)
        elif kind == "review_approved":
            told = ("the customer was told." if data.get("problem") is None else
                    f"the customer is not told yet ({escape(data['problem'])}): resolve it to tell them.")
            await self.desk._post(channel, f"{data['by']} approved the resolution of {ref}; {told}", **where)
        elif kind == "compensation_pending":
            c = data["compensation"]
            text = (f"Approval needed: {c['requested_by']} asks for a {c['kind']} of {c['amount']:.2f} "
                    f"{c['currency']} on {ref}" + (f": {escape(slack_text(c['note']))}" if c.get("note") else "."))
            blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text}},
                      {"type": "actions", "elements": [
                          _button("Approve", "omnibot_comp_approve", c["id"], "primary"),
                          _button("Reject", "omnibot_comp_reject", c["id"], "danger")]}]
            await self.desk._post(channel, text, blocks=blocks, **where)
        elif kind == "compensation_decided":
            c = data["compensation"]
            await self.desk._post(channel, f"{c['decided_by']} {c['state']} the {c['kind']} of {c['amount']:.2f} "
                                           f"{c['currency']} on {ref} (asked by {c['requested_by']}).", **where)


def _button(label: str, action_id: str, value: str, style: str) -> dict[str, Any]:
    return {"type": "button", "text": {"type": "plain_text", "text": label}, "action_id": action_id,
            "value": value, "style": style}
