"""The Slack hand-over card says where a conversation came from (moved from a public group)."""

from __future__ import annotations

from datetime import datetime, timezone

from bot.config import parse_config
from bot.storage import HandoffRecord
from handoff.slack_card import CardRenderer

H = HandoffRecord(id="h1", conversation_id="c1", state="queued", team="support", reason="of your complaint",
                  priority=1, agent=None, created_at=datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc))


def test_the_card_shows_the_public_origin_escaped() -> None:
    render = CardRenderer(parse_config(""))
    ctx = {"customer": {"name": "Petra"}, "conversation": {"channel": "telegram"},
           "origin": {"summary": "moved from the public group Acme <fans>",
                      "public_messages": ["broken vase & no answer"]}}
    def origin_lines(c: dict) -> list[str]:
        return [e["text"] for b in render.card(H, c) if b["type"] == "context" for e in b["elements"]
                if e["text"].startswith(":loudspeaker:")]

    texts = origin_lines(ctx)
    assert texts == [":loudspeaker: moved from the public group Acme &lt;fans&gt;: "
                     "\u201cbroken vase &amp; no answer\u201d"]
    assert origin_lines({"customer": {}, "conversation": {}}) == []
