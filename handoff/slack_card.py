"""The Slack card of a handoff: Block Kit rendering, and Slack's text escaping.

Pure functions of the handoff and its context (:func:`handoff.context.handoff_context`):
no Slack calls, no storage, so the card can be hashed and compared with what Slack shows.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from bot.config import Config
from bot.names import team_for_agents
from bot.storage import HandoffRecord

ACTIVE = ("queued", "claimed")


def escape(text: str) -> str:
    """Slack mrkdwn escaping: customer text must not become mentions or links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def card_hash(text: str, blocks: list[dict[str, Any]]) -> str:
    """What Slack shows of a card, as a short hash: equal hashes need no chat.update."""
    return hashlib.sha256(json.dumps([text, blocks], sort_keys=True).encode()).hexdigest()[:32]


class CardRenderer:
    """Renders cards and thread lines for one configuration.

    Args:
        config: the whole configuration (team names, ``slack.transcript_lines``, public URL).
        flows: the loaded flows (flows.FlowSet): team names in their default language, as agents
            have no language setting (README "Languages"); None: English, else the first given.
    """

    def __init__(self, config: Config, flows: Any = None) -> None:
        self.config = config
        self.cfg = config.slack
        self.flows = flows

    def team(self, key: str) -> str:
        """A team's name as agents read it (the flows' default language)."""
        return team_for_agents(self.config.handoff, key, self.flows)

    def absolute(self, url: str) -> str:
        if url.startswith("/"):
            base = self.config.server.public_url or f"http://{self.config.server.host}:{self.config.server.port}"
            return base.rstrip("/") + url
        return url

    @staticmethod
    def who(m: dict[str, Any]) -> str:
        return {"customer": "Customer", "bot": "Bot", "system": "System"}.get(m["role"], m.get("sender") or "Agent")

    def summary(self, h: HandoffRecord) -> str:
        """The notification text of the card."""
        return f"Handoff for {self.team(h.team)}: {h.reason}"

    def customer_line(self, m: dict[str, Any]) -> str:
        """A customer message as a thread line (text escaped, attachments as links)."""
        text = escape(m["text"]) or "_(no text)_"
        for a in m.get("attachments", []):
            text += f"\n:paperclip: <{self.absolute(a['url'])}|{escape(a.get('name') or 'attachment')}>"
        return f"*Customer:* {text}"

    def card(self, h: HandoffRecord, ctx: dict[str, Any], *, moved_to: str | None = None) -> list[dict[str, Any]]:
        """The Block Kit card: who, why, what was captured, the story so far, and the buttons.

        The waiting time is a Slack date token (rendered by each viewer's Slack), so the card
        does not change, and is not updated, every minute.
        """
        cust = ctx.get("customer", {})
        conv = ctx.get("conversation", {})
        who = escape(cust.get("display") or cust.get("name") or "customer")    # never a bare cus_ id
        team = self.team(h.team)
        since = int(h.created_at.timestamp())
        fallback = h.created_at.strftime("%H:%M UTC")
        state = {"queued": f":hourglass: waiting since <!date^{since}^{{time}}|{fallback}>",
                 "claimed": f":raising_hand: claimed by {escape(h.agent or '')}",
                 "resolved": ":white_check_mark: resolved", "returned": ":robot_face: back with the bot"}[h.state]
        fields = [f"*Customer*\n{who}", f"*Channel*\n{escape(conv.get('channel', ''))}", f"*Team*\n{escape(team)}",
                  f"*State*\n{state}"]
        if ctx.get("reference"):
            fields.append(f"*Reference*\n{escape(str(ctx['reference']))}")
        if conv.get("language"):      # the customer's language (README "Languages")
            fields.append(f"*Language*\n{escape(str(conv['language']))}")
        fields.append(f"*Priority*\n{'high' if h.priority > 0 else 'normal'}")
        why = str(h.context.get("agent_reason") or h.reason)     # written for the agent, not the customer
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{escape(why[:1].upper() + why[1:])}*"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        ]
        origin = ctx.get("origin")
        if origin:
            said = " / ".join(origin.get("public_messages") or [])
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text":
                           f":loudspeaker: {escape(origin.get('summary') or '')[:200]}"
                           + (f": \u201c{escape(said)[:600]}\u201d" if said else "")}]})
        # the captured details as the flow labels them (context "fields"), else every slot by its name
        shown = [(f.get("label") or f["slot"], f.get("text") or f.get("value")) for f in ctx.get("fields") or []
                 if isinstance(f, dict) and f.get("slot")]
        if not shown:
            shown = [(k.replace("_", " ").capitalize(), v) for k, v in (ctx.get("slots") or {}).items()]
        if shown:
            lines = []
            for k, v in shown:
                if isinstance(v, list) and v and isinstance(v[0], dict):
                    v = ", ".join(f"<{self.absolute(a.get('url', ''))}|{escape(a.get('name') or 'file')}>" for a in v)
                else:
                    v = escape(str(v))
                lines.append(f"*{escape(str(k))}:* {v}")
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2900]}})
        previous = (cust.get("previous_conversations") or [])
        if previous:
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text":
                           f"{len(previous)} earlier conversation(s); last: "
                           f"{escape(previous[-1].get('summary') or '')[:150]}"}]})
        gone = ctx.get("unreachable")
        if gone:
            others = ", ".join(escape(o["channel"]) for o in ctx.get("other_channels") or [])
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text":
                           f":no_entry: Not reachable on {escape(gone['channel'])}: {escape(gone['reason'])}"
                           + (f". Also linked: {others}" if others else "")}]})
        transcript = ctx.get("transcript") or []
        tail = transcript[-self.cfg.transcript_lines:]
        if tail:
            text = "\n".join(f"*{escape(self.who(m))}:* {escape(m['text'])[:300]}" for m in tail)
            if len(transcript) > len(tail):
                text = f"_…{len(transcript) - len(tail)} earlier messages in the thread file_\n" + text
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}})
        if moved_to:
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn",
                           "text": f":arrow_right: transferred to <#{moved_to}>"}]})
            return blocks
        if h.state in ACTIVE:
            blocks += self._actions(h)
        return blocks

    def _actions(self, h: HandoffRecord) -> list[dict[str, Any]]:
        elements: list[dict[str, Any]] = []
        if h.state == "queued":
            elements.append({"type": "button", "action_id": "omnibot_claim", "style": "primary",
                             "text": {"type": "plain_text", "text": "Claim"}, "value": h.id})
        elements += [
            {"type": "button", "action_id": "omnibot_resolve", "text": {"type": "plain_text", "text": "Resolve"},
             "value": h.id},
            {"type": "button", "action_id": "omnibot_back", "text": {"type": "plain_text", "text": "Back to bot"},
             "value": h.id},
        ]
        others = [(k, self.team(k)) for k in self.config.handoff.teams if k != h.team]
        if others:
            elements.append({"type": "static_select", "action_id": "omnibot_transfer",
                             "placeholder": {"type": "plain_text", "text": "Transfer to…"},
                             "options": [{"text": {"type": "plain_text", "text": name[:75]},
                                          "value": f"{h.id}|{key}"} for key, name in others]})
        return [{"type": "actions", "block_id": f"handoff:{h.id}", "elements": elements},
                {"type": "context", "elements": [{"type": "mrkdwn", "text":
                 f"Reply in this thread after claiming; messages starting with "
                 f"`{escape(self.cfg.note_prefix)}` stay internal."}]}]
