"""The hand-over card: everything an agent needs so the customer never repeats the story."""

from __future__ import annotations

from typing import Any

from bot.config import Config
from bot.public import origin_of
from bot.storage import HandoffRecord, Store
from bot.model import Conversation, Message, utcnow


async def handoff_summary(store: Store, config: Config, h: HandoffRecord) -> dict[str, Any]:
    """One queue row: who, where, why, how long."""
    conv = await store.get_conversation(h.conversation_id)
    customer = await store.get_customer(conv.customer_id) if conv else None
    last = await store.history(h.conversation_id, limit=1)
    end = h.claimed_at if h.state != "queued" and h.claimed_at else utcnow()
    return {
        "id": h.id, "conversation_id": h.conversation_id, "state": h.state, "team": h.team,
        "team_name": config.handoff.team_name(h.team), "reason": h.reason, "priority": h.priority,
        "agent": h.agent, "created_at": h.created_at.isoformat(),
        "claimed_at": h.claimed_at.isoformat() if h.claimed_at else None,
        "waiting_seconds": max(0, int((end - h.created_at).total_seconds())),
        "position": await store.queue_position(h.id),
        "channel": conv.channel if conv else None,
        "customer": {"id": customer.id if customer else None, "name": customer.display_name if customer else ""},
        "last_message": last[-1].text[:200] if last else "",
    }


async def handoff_context(store: Store, config: Config, h: HandoffRecord) -> dict[str, Any]:
    """The whole context: transcript, captured fields, channel, customer and history, reason."""
    conv = await store.get_conversation(h.conversation_id)
    if conv is None:
        return {}
    customer = await store.get_customer(conv.customer_id)
    flow_state = await store.load_flow_state(conv.id) or {}
    slots = {k: v for k, v in (flow_state.get("slots") or {}).items() if v not in (None, "", [])}
    slots = {**{k: v for k, v in (h.context.get("slots") or {}).items()}, **slots}
    transcript = await store.history(conv.id, limit=1000)
    # what the customer wrote between asking for a person and an agent taking over
    waiting = [m.to_dict() for m in transcript
               if m.direction == "in" and m.created_at >= h.created_at
               and (h.claimed_at is None or m.created_at < h.claimed_at)]
    previous = []
    for c in await store.customer_conversations(conv.customer_id):
        if c.id == conv.id:
            continue
        first = await store.history(c.id, limit=1000)
        opening = next((m.text for m in first if m.direction == "in"), "")
        previous.append({"id": c.id, "channel": c.channel, "created_at": c.created_at.isoformat(),
                         "state": c.state.value, "summary": opening[:160]})
    identities = await store.identities(conv.customer_id)
    return {
        "conversation": {"id": conv.id, "channel": conv.channel, "external_id": conv.external_id,
                         "state": conv.state.value, "created_at": conv.created_at.isoformat()},
        "customer": {"id": conv.customer_id, "name": customer.display_name if customer else "",
                     "attributes": dict(customer.attributes) if customer else {},
                     "identities": [{"channel": ch, "external_id": ext} for ch, ext in identities],
                     "previous_conversations": previous},
        "reason": h.reason, "team": h.team, "team_name": config.handoff.team_name(h.team),
        # where the conversation came from when it did not start here, e.g. moved from a public group
        "origin": await origin_of(store, conv.id),
        "slots": slots, "reference": slots.get("reference") or h.context.get("reference"),
        "flow": flow_state.get("flow"),
        # the NLU's highest complaint score and urgency (level, cues) seen in this conversation
        "signals": flow_state.get("signals") or {},
        # the complaint ticket: reference, category, severity, department, priority and why
        "ticket": h.context.get("ticket") or {},
        "transcript": [m.to_dict() for m in transcript],
        "waiting_messages": waiting,
        # the customer cannot be reached on this conversation's channel (or None), and where else they can
        "unreachable": unreachable(conv, transcript),
        "other_channels": await other_channels(store, conv, identities),
    }


def unreachable(conv: Conversation, transcript: list[Message]) -> dict[str, Any] | None:
    """Whether the latest replies of this conversation could not be delivered.

    The customer counts as unreachable from the first failed message after the last one that was
    delivered or the last one the customer wrote; a later delivery or customer message ends it.
    """
    first_failed: Message | None = None
    last_failed: Message | None = None
    for m in transcript:
        if m.direction == "in" or m.status == "sent":
            first_failed = last_failed = None
        elif m.status == "failed":
            first_failed = first_failed or m
            last_failed = m
    if first_failed is None or last_failed is None:
        return None
    return {"channel": conv.channel, "reason": last_failed.error or "not delivered",
            "since": first_failed.created_at.isoformat(), "message_id": last_failed.id}


async def other_channels(store: Store, conv: Conversation, identities: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The customer's other linked identities, each with its latest conversation (if any)."""
    out = []
    for channel, external_id in identities:
        if (channel, external_id) == (conv.channel, conv.external_id):
            continue
        latest = await store.latest_conversation(channel, external_id)
        out.append({"channel": channel, "external_id": external_id,
                    "conversation_id": latest.id if latest else None})
    return out
