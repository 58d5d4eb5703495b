"""Complaints are not handled in public: moving them to a private conversation.

In a public place the bot is part of (a Telegram group), a complaint, or a message to the bot,
gets a short public reply from config with a one-time link to a private chat; nothing the
customer wrote, and nothing personal, is written there. What they wrote is held under the
link's token (:mod:`bot.storage.ops_public`) until they open it; the private conversation then
starts with it, and its origin ("moved from the public group <title>") is kept for agents
(:func:`origin_of`, shown in the hand-over context). Channel-neutral: a connector with public
places calls :class:`PublicPlaces`.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from bot.model import utcnow
from bot.storage import Store

log = logging.getLogger(__name__)

TOKEN_PREFIX = "pub_"      # tells a public link's token from other /start payloads (campaigns)
ORIGIN_KEY = "origin:{}"   # meta key: where a conversation came from (JSON)
# The payload of a message whose text is the customer's account of a problem, made elsewhere (the
# flows see it as ``payload``: the demo complaint flow takes the text as the description).
STORY_PAYLOAD = "story"

#: The public reply in English, without the flows (their ``public_reply`` gives it per language).
PUBLIC_REPLY = ("Sorry to hear that. So we can help without sharing your details here, please continue with us "
                "in private: {link}")
#: The word for a spent link, in English (the flows' ``public_link_expired`` gives it per language).
EXPIRED = ("Sorry, this link doesn't work any more: links from our public replies work once, for a "
           "limited time, and only for the person they were made for. Tell me here what happened and "
           "I'll help.")


def new_token() -> str:
    """A one-time token fit for a Telegram /start payload (A-Z a-z 0-9 _ -, at most 64)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(18)


def public_reply(message: str, link: str) -> str:
    """The configured public text with the link in place of ``{link}`` (appended when missing)."""
    return message.replace("{link}", link) if "{link}" in message else f"{message} {link}"


@dataclass(frozen=True, slots=True)
class Moved:
    """A public record carried into a private conversation."""

    title: str
    texts: tuple[str, ...]
    created_at: str

    @property
    def text(self) -> str:
        return "\n\n".join(self.texts)

    def origin(self, channel: str) -> dict[str, Any]:
        return {"kind": "public", "channel": channel, "place": self.title,
                "summary": f"moved from the public group {self.title}".strip(),
                "public_messages": list(self.texts), "at": self.created_at}


class PublicTexts:
    """What the bot writes in a public place and about a spent link, in the customer's language:
    the language the message makes clear (the flows' ``settings.languages`` rules), else the
    platform's hint (Telegram's ``language_code``), else the default; the text is the flows'
    ``public_reply`` / ``public_link_expired`` message (flows/i18n.py, ``settings.messages``
    overrides), or the configured public message when config gives one (every language)."""

    def __init__(self, engine: Any, message: str | None = None) -> None:
        self.engine = engine
        self.message = message

    def language(self, text: str, hint: Any) -> str | None:
        try:
            return self.engine.languages.decide(None, text or "", hint=hint).language
        except Exception:  # noqa: BLE001 - the reply goes out, in the default language at worst
            log.exception("no language for a public reply")
            return None

    def reply(self, link: str, *, text: str = "", hint: Any = None) -> str:
        """The public reply carrying ``link`` (``text``: what the customer wrote, only to tell its language)."""
        if self.message:
            return public_reply(self.message, link)
        return self.engine.system_text("public_reply", self.language(text, hint), link=link)

    def expired(self, *, hint: Any = None) -> str:
        return self.engine.system_text("public_link_expired", self.language("", hint))


class ComplaintDetector:
    """The flows' own complaint detection, for messages no flow will answer.

    A message is a complaint when the NLU's complaint score reaches ``complaints.threshold`` (the
    score the complaint offer uses), or when its intent is, surely, the complaint flow's.
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    async def __call__(self, text: str) -> bool:
        if not text.strip():
            return False
        cs = self.engine.settings.complaints
        if not cs.flow:
            return False
        analyze = getattr(self.engine.matcher, "analyze", None)
        in_scope = None
        if analyze is not None:
            a = await analyze(text, top=3)
            if a.complaint >= cs.threshold:
                return True
            ranked, in_scope = a.ranked, a.in_scope
        else:
            ranked = await self.engine.matcher.rank(text, top=3)
        if not ranked or ranked[0][0] != cs.flow:
            return False
        return bool(self.engine._sure(ranked[0][1], in_scope))


class PublicPlaces:
    """Hold public messages under one-time tokens, and carry them into private chats.

    Args:
        store: storage (tokens in ``meta``, see :mod:`bot.storage.ops_public`).
        link_minutes: how long a token works.
        clock: now, as an aware UTC datetime.
    """

    def __init__(self, store: Store, *, link_minutes: int = 30, clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.ttl = timedelta(minutes=link_minutes)
        self.clock = clock

    async def hold(self, *, place: str, user: str, title: str, text: str) -> tuple[str, bool]:
        """(token, new?) for what ``user`` wrote in ``place``; see ``hold_public_message``."""
        now = self.clock()
        return await self.store.hold_public_message(new_token(), place=place, user=user, title=title, text=text,
                                                    at=now, expires_at=now + self.ttl)

    async def redeem(self, token: str, *, user: str, by: str) -> Moved | None:
        """What the token holds, once, for its own user; None otherwise (tell them :data:`EXPIRED`)."""
        rec = await self.store.redeem_public_token(token, user=user, by=by, at=self.clock())
        if rec is None:
            return None
        return Moved(title=rec.get("title") or "", texts=tuple(rec.get("texts") or ()),
                     created_at=rec.get("created_at") or "")

    async def record_origin(self, conversation_id: str, moved: Moved, *, channel: str) -> None:
        """Keep where the conversation came from, for the hand-over context."""
        await self.store.set_meta(ORIGIN_KEY.format(conversation_id), json.dumps(moved.origin(channel)))


async def origin_of(store: Store, conversation_id: str) -> dict[str, Any] | None:
    """Where a conversation came from (a public group it was moved from), or None."""
    raw = await store.get_meta(ORIGIN_KEY.format(conversation_id))
    return json.loads(raw) if raw else None
