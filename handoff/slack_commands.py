"""The Slack desk's actions between agents: internal notes, transfer (to a team or an agent, with a
note), take-over and canned replies, as slash commands and as messages in a handoff's thread.

Slash commands (``REF``: a complaint reference such as C-1001, or a handoff id)::

    /omnibot note REF text...                 an internal note (never sent to the customer)
    /omnibot transfer TEAM|@member|e-mail REF [note...]
    /omnibot takeover REF
    /omnibot reply NAME REF                   send the canned reply NAME, rendered, as you
    /omnibot canned [words]                   list canned replies (only you see the list)

In a handoff's thread: a message starting with ``note:`` (or ``slack.note_prefix``, ``//``) is an
internal note; ``!transfer TEAM|@member [note...]``, ``!takeover`` and ``!reply NAME`` act on that
handoff. A Slack member acts as the agent account ``slack.members`` maps them to (its name, role
and teams, :mod:`handoff.roles`); ``@member`` in a transfer is mapped the same way.

Notes written on the web desk (and the automatic notes of a transfer or take-over) are posted into
the handoff's thread marked as notes by :func:`relay_notes`, which the thread job of
:class:`handoff.slack_sync.DeskSync` runs; notes written in the thread are stored and shown on the
web desk. :class:`handoff.desk_slack.SlackDesk` hands commands and thread messages here first.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from bot.errors import StorageUnavailable
from bot.privacy import slack_text
from bot.events import Event
from bot.storage import HandoffRecord
from bot.storage.base import AgentAccount

from .canned import CannedReplies, context_for, load_canned
from .queue import DeskError
from .roles import take_over_rule
from .slack_card import escape
from .slack_poster import URGENT

if TYPE_CHECKING:
    from .desk_slack import SlackDesk

log = logging.getLogger(__name__)

NOTE_SEEN = "slack-note"      # seen_events source: "<thread ts>/<note id>" is in that thread
COMMANDS = ("note", "transfer", "takeover", "reply", "canned")
MENTION = re.compile(r"^<@([A-Z0-9]+)(?:\|[^>]*)?>$")
MAILTO = re.compile(r"^<mailto:([^|>]+)(?:\|[^>]*)?>$")
USAGE = ("Usage: /omnibot note REF text · /omnibot transfer TEAM|@agent REF [note] · /omnibot takeover REF · "
         "/omnibot reply NAME REF · /omnibot canned [words]")


def note_line(author: str, text: str, via: str) -> str:
    where = {"web": " (web desk)", "slack": " (Slack)"}.get(via, "")
    return (f":memo: *Internal note from {escape(author)}{where}* (not sent to the customer):\n"
            f"{escape(slack_text(text))}")


async def relay_notes(store: Any, poster: Any, h: HandoffRecord, link: dict[str, Any]) -> None:
    """Post the conversation's notes of this handoff that its thread does not show yet, marked as
    notes; each is recorded once Slack took it, so a failure is retried and nothing is posted twice."""
    for n in await store.notes_of(h.conversation_id):
        if n.handoff_id != h.id and n.created_at < h.created_at:
            continue
        key = f"{link['ts']}/{n.id}"
        if await store.was_seen(NOTE_SEEN, key):
            continue
        await poster.post(link["channel"], note_line(n.author, n.text, n.via), thread_ts=link["ts"], priority=URGENT)
        await store.first_seen(NOTE_SEEN, key)


class SlackCommands:
    """Notes, transfer, take-over and canned replies for :class:`SlackDesk` (``desk``)."""

    def __init__(self, desk: SlackDesk, canned: CannedReplies | None = None) -> None:
        self.desk = desk
        self.canned = canned if canned is not None else load_canned(desk.config.resolve(desk.config.flows.path))

    # -- entry points (from SlackDesk) ----------------------------------------------------

    async def command(self, text: str, user: str, channel: str) -> bool:
        """A ``/omnibot`` command of ours: done (True); else False (the desk's own)."""
        words = text.split()
        if not words or words[0].lower() not in COMMANDS:
            return False
        kind, args = words[0].lower(), words[1:]
        if kind == "canned":
            await self._list_canned(" ".join(args), user, channel)
            return True
        need = {"note": 2, "transfer": 2, "takeover": 1, "reply": 2}[kind]
        if len(args) < need:
            await self.desk._tell(channel, user, USAGE)
            return True
        ref = args[1] if kind in ("transfer", "reply") else args[0]
        handoff_id = await self.desk._find(ref)
        if handoff_id is None:
            await self.desk._tell(channel, user, f"No open handoff matches {ref!r}. {USAGE}")
            return True
        if kind == "note":
            await self._note(handoff_id, " ".join(args[1:]), user, channel, thread_ts=None)
        elif kind == "transfer":
            await self._transfer(handoff_id, args[0], " ".join(args[2:]), user, channel)
        elif kind == "takeover":
            await self._take_over(handoff_id, user, channel)
        else:
            await self._reply(handoff_id, args[0], user, channel)
        return True

    async def thread(self, link: dict[str, Any], text: str, user: str, channel: str, thread_ts: str) -> bool:
        """A message in a handoff's thread that is a note or one of our commands: done (True)."""
        lower = text.lower()
        prefix = next((p for p in ("note:", self.desk.cfg.note_prefix) if lower.startswith(p.lower())), None)
        hid = link["handoff_id"]
        if prefix is not None:
            await self._note(hid, text[len(prefix):], user, channel, thread_ts=thread_ts)
            return True
        words = text.split()
        first = words[0].lower() if words else ""
        if first == "!takeover":
            await self._take_over(hid, user, channel)
        elif first == "!transfer" and len(words) >= 2:
            await self._transfer(hid, words[1], " ".join(words[2:]), user, channel)
        elif first == "!reply" and len(words) >= 2:
            await self._reply(hid, words[1], user, channel)
        else:
            return False
        return True

    # -- the actions ------------------------------------------------------------------------

    async def _agent(self, user: str, channel: str) -> str | None:
        if not await self.desk._is_agent(user):
            await self.desk._tell(channel, user, "Sorry, only members of the support team can do that.")
            return None
        return await self.desk._agent_name(user)

    async def _note(self, handoff_id: str, text: str, user: str, channel: str, *, thread_ts: str | None) -> None:
        agent = await self._agent(user, channel)
        h = await self.desk.store.get_handoff(handoff_id)
        if agent is None or h is None or not await self.desk._allowed(user, "view", handoff_id, channel):
            return
        try:
            note = await self.desk.queue.add_note(h.conversation_id, agent, text, via="slack", announce=False)
            if thread_ts is not None:      # written in this very thread: it is there already
                await self.desk.store.first_seen(NOTE_SEEN, f"{thread_ts}/{note.id}")
        except DeskError as exc:
            await self.desk._tell(channel, user, f"Note not kept: {exc}")
            return
        except StorageUnavailable:
            await self.desk._tell(channel, user, "Note not kept: storage unavailable; please send it again.")
            return
        self.desk.queue.events.publish(Event("note", h.conversation_id, h.id, {"note_id": note.id, "via": "slack"}))
        if thread_ts is None:
            await self.desk._tell(channel, user, "Note kept (the customer does not see it).")

    async def _target(self, who: str) -> AgentAccount | str | None:
        """``@member`` / e-mail -> its agent account; a team id -> the team; else None."""
        m = MENTION.match(who)
        if m:
            email = self.desk.cfg.members.get(m.group(1))
            account = await self.desk.store.agent_by_email(email) if email else None
            return account
        m = MAILTO.match(who)
        if m or "@" in who:
            return await self.desk.store.agent_by_email((m.group(1) if m else who).lower())
        return who if who in self.desk.config.handoff.teams else None

    async def _transfer(self, handoff_id: str, who: str, note: str, user: str, channel: str) -> None:
        agent = await self._agent(user, channel)
        if agent is None or not await self.desk._allowed(user, "transfer", handoff_id, channel):
            return
        target = await self._target(who)
        if target is None:
            teams = ", ".join(self.desk.config.handoff.teams)
            await self.desk._tell(channel, user, f"Not transferred: {who!r} is neither a team ({teams}) nor a "
                                                 "Slack member mapped to an agent account (slack.members).")
            return
        try:
            if isinstance(target, str):
                await self.desk.queue.transfer(handoff_id, agent, target, note=note)
            else:
                await self.desk.queue.transfer(handoff_id, agent, None, to=target, note=note)
        except DeskError as exc:
            await self.desk._tell(channel, user, f"Not transferred: {exc}")

    async def _take_over(self, handoff_id: str, user: str, channel: str) -> None:
        agent = await self._agent(user, channel)
        h = await self.desk.store.get_handoff(handoff_id)
        if agent is None or h is None:
            return
        account = await self.desk._account(user)
        rule = take_over_rule(account, h) if account is not None else "when idle"   # unmapped: as an agent
        if rule is None:
            await self.desk._tell(channel, user, f"Not done: as {account.role} of "  # type: ignore[union-attr]
                                                 f"{', '.join(account.teams) or 'no team'}, you may not take over "  # type: ignore[union-attr]
                                                 f"in team {h.team}.")
            return
        minutes = self.desk.config.agent_desk.takeover_idle_minutes
        try:
            await self.desk.queue.take_over(handoff_id, agent,
                                            idle=None if rule == "any time" else timedelta(minutes=minutes))
        except DeskError as exc:
            await self.desk._tell(channel, user, f"Not taken over: {exc}")

    async def _reply(self, handoff_id: str, name: str, user: str, channel: str) -> None:
        agent = await self._agent(user, channel)
        if agent is None or not await self.desk._allowed(user, "reply", handoff_id, channel):
            return
        c = self.canned.get(name)
        if c is None:
            near = ", ".join(x.name for x in self.canned.search(name)[:5]) or ", ".join(
                x.name for x in self.canned.search("")[:8])
            await self.desk._tell(channel, user, f"No canned reply {name!r}. Try: {near or 'none are set up'}")
            return
        h = await self.desk.store.get_handoff(handoff_id)
        if h is None:
            return
        try:
            text = self.canned.render(c.name, await context_for(self.desk.store, self.desk.config, h, agent))
        except Exception as exc:  # noqa: BLE001 - a template bug: say so, send nothing
            log.warning("canned reply %s failed to render: %s", c.name, exc)
            await self.desk._tell(channel, user, f"Canned reply {c.name!r} could not be rendered; nothing was sent.")
            return
        try:
            await self.desk.queue.reply(handoff_id, agent, text, via="slack")
        except DeskError as exc:
            await self.desk._tell(channel, user, f"Not sent to the customer: {exc}. Claim it first.")
            return
        link = await self.desk.store.desk_thread("slack", handoff_id)
        if link is not None:     # sent as a Slack reply (not copied back): show what went
            await self.desk._post(link["channel"], f"*{escape(agent)}* (canned reply `{c.name}`): "
                                  f"{escape(slack_text(text))}",
                                  thread_ts=link["ts"])

    async def _list_canned(self, q: str, user: str, channel: str) -> None:
        found = self.canned.search(q)
        if not found:
            await self.desk._tell(channel, user, "No canned reply matches." if q else "No canned replies are set up "
                                                 "(files in the flows folder's canned/).")
            return
        lines = [f"`{c.name}` {escape(c.title)}" for c in found]
        await self.desk._tell(channel, user, "Canned replies (/omnibot reply NAME REF, or !reply NAME in a thread):\n"
                                             + "\n".join(lines))
