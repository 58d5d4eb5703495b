"""The conversation model every channel is normalized into.

Values are immutable and ids are strings from day one. A connector turns a
platform payload into an :class:`Inbound`; the runtime stores it as a
:class:`Message` of a :class:`Conversation` that belongs to one
:class:`Customer`, who may be known on several channels (:class:`Identity`).
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, Literal, Mapping

Role = Literal["customer", "bot", "agent", "system"]


def utcnow() -> datetime:
    """Timezone-aware now in UTC (the only clock the model uses)."""
    return datetime.now(timezone.utc)


class ConversationState(StrEnum):
    """Who owns a conversation right now."""

    BOT = "bot"                # the flow engine answers
    WAITING = "waiting"        # queued for a human; the bot is silent, messages are kept
    WITH_AGENT = "with_agent"  # a human owns it; the bot is silent
    CLOSED = "closed"          # resolved; the next message opens a new conversation


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file a customer or agent sent (photo of a damaged product, a PDF)."""

    kind: Literal["image", "file"]
    url: str
    name: str = ""
    mime: str = ""
    size: int = 0
    platform_file_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "url": self.url, "name": self.name, "mime": self.mime,
                "size": self.size, "platform_file_id": self.platform_file_id}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Attachment":
        return cls(kind="image" if d.get("kind") == "image" else "file", url=str(d.get("url", "")),
                   name=str(d.get("name", "")), mime=str(d.get("mime", "")),
                   size=int(d.get("size") or 0), platform_file_id=str(d.get("platform_file_id", "")))


@dataclass(frozen=True, slots=True)
class Button:
    """A quick reply. Channels without buttons render them as a numbered list."""

    title: str
    payload: str


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    display_name: str
    created_at: datetime
    attributes: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class Identity:
    """A customer's address on one channel: (channel, external_id) is unique."""

    channel: str
    external_id: str
    customer_id: str


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    customer_id: str
    channel: str
    external_id: str          # where replies go on that channel (chat id, visitor id)
    state: ConversationState
    created_at: datetime
    updated_at: datetime
    language: str | None = None   # the language the bot answers in (README "Languages"); None: not known yet


@dataclass(frozen=True, slots=True)
class Inbound:
    """A customer message as a connector hands it to the runtime.

    ``platform_message_id`` plus ``channel`` is the dedupe key: the same pair
    delivered twice is one message. There is no default sender: a connector
    that cannot name the sender rejects the payload instead.
    """

    channel: str
    external_id: str
    platform_message_id: str
    text: str
    sender_name: str = ""
    attachments: tuple[Attachment, ...] = ()
    payload: str | None = None    # a button's payload, when the customer pressed one
    customer_attributes: Mapping[str, Any] = field(default_factory=dict)   # merged into the customer record
    sent_at: datetime = field(default_factory=utcnow)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # False: store it (the agent sees it) but never answer it: it was written by a machine
    # (an auto-reply, a bounce, bulk mail), and answering could start a loop between robots.
    answer: bool = True
    # when the customer wrote, by the platform's clock (epoch seconds), for a channel that keeps
    # it (WhatsApp's 24-hour window): stored with the message as meta "<channel>:in:<external_id>",
    # never moved back, also for a repeat delivery (see bot.storage.ops_whatsapp)
    heard_at: int | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """One stored message of a conversation, inbound or outbound."""

    id: int
    conversation_id: str
    direction: Literal["in", "out"]
    role: Role
    text: str
    created_at: datetime
    sender_name: str = ""
    attachments: tuple[Attachment, ...] = ()
    buttons: tuple[Button, ...] = ()
    platform_message_id: str | None = None
    status: str = ""          # outbound: pending | sent | failed; inbound: received | processed
    payload: str | None = None
    error: str | None = None  # outbound and failed: why it was not delivered (human, no customer text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "conversation_id": self.conversation_id, "direction": self.direction,
            "role": self.role, "text": self.text, "sender": self.sender_name,
            "at": self.created_at.isoformat(), "status": self.status,
            "error": self.error if self.status == "failed" else None,
            "attachments": [a.to_dict() for a in self.attachments],
            "buttons": [{"title": b.title, "payload": b.payload} for b in self.buttons],
        }


@dataclass(frozen=True, slots=True)
class Outbound:
    """A reply to queue for a conversation (the runtime fills in the rest)."""

    text: str
    role: Role = "bot"
    sender_name: str = ""
    buttons: tuple[Button, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    via: str = ""        # the desk a person wrote it on ("slack"), kept with the message's payload
    agent: str = ""      # the account name of the person who wrote it (per-agent figures), kept likewise
    outcome: str = ""    # a bot turn's last reply: "fallback" | "mid_flow" | "error" (containment figures)


# Why a conversation was handed to a person (``handoffs.cause``; README "Metrics").
HANDOFF_CAUSES = ("customer_asked", "misunderstood", "complaint", "rule", "reopened", "other")


def outbound_payload(m: Outbound) -> str | None:
    """What is stored as an outbound message's ``payload``: its desk, author account and turn
    outcome as compact JSON (only the keys set), or None. Never shown to the customer."""
    d = {k: v for k, v in (("via", m.via), ("agent", m.agent), ("outcome", m.outcome)) if v}
    return json.dumps(d, separators=(",", ":"), ensure_ascii=False) if d else None


def outbound_meta(payload: str | None) -> dict[str, str]:
    """The fields of a stored outbound ``payload`` (see :func:`outbound_payload`); the older
    form ``via:slack`` reads as ``{"via": "slack"}``."""
    if not payload:
        return {}
    if payload.startswith("via:"):
        return {"via": payload[4:]}
    try:
        d = json.loads(payload)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in d.items()} if isinstance(d, dict) else {}


def sanitize_text(text: str, *, max_chars: int = 20_000) -> str:
    """Make customer text safe to store: no lone surrogates, no NULs, bounded.

    Lone surrogates (from broken UTF-16 on some platforms) cannot be encoded
    as UTF-8 and would crash storage; each becomes one U+FFFD. A valid pair
    of surrogates is joined into the character it encodes.
    """
    if not isinstance(text, str):
        text = str(text)
    text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    text = text.replace("\x00", "")
    return text[:max_chars]


def normalize_for_matching(text: str) -> str:
    """NFC-normalize and casefold: the form intent matching and slot checks see."""
    return unicodedata.normalize("NFC", text).casefold().strip()
