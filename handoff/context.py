"""The hand-over card: everything an agent needs so the customer never repeats the story."""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from bot.config import Config
from bot.names import team_for_agents
from bot.public import origin_of
from bot.storage import HandoffRecord, Store
from bot.model import Conversation, Message, utcnow
from flows.loader import FlowSet
from flows.i18n import pick, render_system
from flows.schema import ChoiceSpec, CollectStep, slot_label

#: Slots kept on the hand-over card whatever the flow: the complaint's reference.
ALWAYS_SHOWN = ("reference",)
#: Channels whose unnamed customers the desks call "<kind of contact> <tail>" (``who_<channel>``
#: messages, flows/i18n.py, in the flows' default language); any other channel: ``who_customer``.
CHANNEL_PEOPLE = ("webchat", "telegram", "whatsapp", "email", "slack", "console")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[\d\s().-]{6,20}$")


def for_agents(flows: FlowSet | None, key: str, **values: Any) -> str:
    """System message ``key`` (flows/i18n.py) as agents read it: in the flows' default language,
    ``settings.messages`` overriding it (agents have no language setting, README "Languages");
    without flows, the built-in English."""
    if flows is None:
        return render_system(key, "en", **values)
    st = flows.settings
    return render_system(key, st.languages.default, st.languages, st.messages, **values)


def readable_name(*, customer_id: str | None, display_name: str | None, channel: str | None,
                  slots: Mapping[str, Any] | None = None, emails: Iterable[str] = (),
                  flows: FlowSet | None = None) -> str:
    """What the desks call a customer, never their internal ``cus_...`` id (README, "Agent desk").

    The name the flow asked (slot ``name``), else the platform profile's (``display_name``), else
    their e-mail address, else the kind of contact and the id's last four characters
    ("Web visitor 3f2a"), which stays the same for the same customer; that one in the flows'
    default language (``who_<channel>`` messages).
    """
    asked = (slots or {}).get("name")
    if isinstance(asked, str) and asked.strip():
        return asked.strip()[:80]
    if display_name and display_name.strip():
        return display_name.strip()[:80]
    for e in emails:
        return e
    tail = (customer_id or "").rsplit("_", 1)[-1][-4:] or "?"
    kind = channel if channel in CHANNEL_PEOPLE else "customer"
    return for_agents(flows, f"who_{kind}", tail=tail).strip()


def named(customer: dict[str, Any] | None, channel: str | None, flows: FlowSet | None) -> None:
    """Give a desk row's ``customer`` (``id``, ``name``) its readable ``display`` (in place)."""
    if isinstance(customer, dict) and not customer.get("display"):
        customer["display"] = readable_name(customer_id=customer.get("id"), display_name=customer.get("name"),
                                            channel=channel, flows=flows)


def asking_flow(h: HandoffRecord, flow_state: Mapping[str, Any]) -> str | None:
    """The flow whose fields the hand-over card shows: the one the handoff recorded, else the one
    running, else the last one that asked the customer something (flows/turn.py asking_flow)."""
    return h.context.get("flow") or flow_state.get("flow") or flow_state.get("asking_flow")


def flow_fields(flows: FlowSet | None, flow: str | None) -> list[CollectStep]:
    """The collect steps of ``flow``, in order, each slot once."""
    pf = flows.flows.get(flow) if flows is not None and flow else None
    if pf is None:
        return []
    seen: dict[str, CollectStep] = {}
    for step in pf.steps:
        if isinstance(step, CollectStep) and step.collect not in seen:
            seen[step.collect] = step
    return list(seen.values())


def _choice_title(step: CollectStep, value: Any) -> str | None:
    """The chosen option's title as the desk shows it: in the flows' default language (choice
    titles may be given per language)."""
    for c in step.choices:
        if isinstance(c, ChoiceSpec) and c.value == value and c.title:
            return pick(c.title, None) or None
    return None


def captured(slots: Mapping[str, Any], steps: list[CollectStep], *,
             restrict: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The captured details: the slots ``steps`` declare (and the reference), with their labels.

    ``restrict`` False (no flow set known): every slot, labelled from its name.
    """
    filled = {k: v for k, v in slots.items() if v not in (None, "", [])}
    fields: list[dict[str, Any]] = []
    for step in steps:
        if step.collect in filled:
            value = filled[step.collect]
            fields.append({"slot": step.collect, "label": slot_label(step), "value": value,
                           "text": _choice_title(step, value)})
    named = {f["slot"] for f in fields}
    rest = [k for k in filled if k not in named and (not restrict or k in ALWAYS_SHOWN)]
    for k in rest:
        fields.append({"slot": k, "label": slot_label(CollectStep(collect=k, ask="-")), "value": filled[k],
                       "text": None})
    return {f["slot"]: f["value"] for f in fields}, fields


def contacts(slots: Mapping[str, Any], attributes: Mapping[str, Any], identities: Iterable[tuple[str, str]],
             email_slots: Iterable[str] = (), phone_slots: Iterable[str] = ()) -> dict[str, list[str]]:
    """E-mail addresses and phone numbers known for a customer: what the flows asked (slots of type
    email / phone, or named so), what a connector stored, and their e-mail / WhatsApp identities."""
    emails: list[str] = []
    phones: list[str] = []

    def add(into: list[str], value: Any, pattern: re.Pattern[str]) -> None:
        if isinstance(value, str) and pattern.match(value.strip()) and value.strip() not in into:
            into.append(value.strip())

    for k in (*email_slots, "email", "e_mail", "email_address"):
        add(emails, slots.get(k), _EMAIL)
    for k in (*phone_slots, "phone", "phone_number", "mobile"):
        add(phones, slots.get(k), _PHONE)
    add(emails, attributes.get("email"), _EMAIL)
    add(phones, attributes.get("phone"), _PHONE)
    for channel, ext in identities:
        if channel == "email":
            add(emails, ext, _EMAIL)
        elif channel == "whatsapp":
            add(phones, ext if ext.startswith("+") else f"+{ext}", _PHONE)
    return {"emails": emails, "phones": phones}


def _typed_slots(flows: FlowSet | None, kind: str) -> list[str]:
    if flows is None:
        return []
    return [s.collect for pf in flows.flows.values() for s in pf.steps
            if isinstance(s, CollectStep) and s.type == kind]


def profile(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The tier and tags agents keep on a customer (``customers.attributes``)."""
    tier = attributes.get("tier")
    tags = attributes.get("tags")
    return {"tier": tier if isinstance(tier, str) else None,
            "tags": [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []}


async def handoff_summary(store: Store, config: Config, h: HandoffRecord, *,
                          flows: FlowSet | None = None) -> dict[str, Any]:
    """One queue row: who, where, why, how long; the preview is the customer's own last message.

    The team's name and the words omnibot adds are in the flows' (``flows``) default language."""
    conv = await store.get_conversation(h.conversation_id)
    customer = await store.get_customer(conv.customer_id) if conv else None
    last = (await store.last_customer_messages([h.conversation_id])).get(h.conversation_id)
    end = h.claimed_at if h.state != "queued" and h.claimed_at else utcnow()
    return {
        "id": h.id, "conversation_id": h.conversation_id, "state": h.state, "team": h.team,
        "team_name": team_for_agents(config.handoff, h.team, flows), "reason": h.reason, "priority": h.priority,
        # why the bot handed over, written for the agent (the reason is the customer-facing sentence)
        "agent_reason": h.context.get("agent_reason") or None,
        "agent": h.agent, "created_at": h.created_at.isoformat(),
        "claimed_at": h.claimed_at.isoformat() if h.claimed_at else None,
        "waiting_seconds": max(0, int((end - h.created_at).total_seconds())),
        "position": await store.queue_position(h.id),
        "channel": conv.channel if conv else None,
        "language": conv.language if conv else None,      # the customer's (README "Languages")
        "customer": {"id": customer.id if customer else None, "name": customer.display_name if customer else "",
                     "display": readable_name(customer_id=customer.id if customer else None,
                                              display_name=customer.display_name if customer else "",
                                              channel=conv.channel if conv else None,
                                              slots=h.context.get("slots") or {}, flows=flows)},
        "last_message": (last.text or (for_agents(flows, "desk_attachment") if last.attachments else ""))[:200]
        if last else "",
        "last_message_at": last.created_at.isoformat() if last else None,
    }


async def handoff_context(store: Store, config: Config, h: HandoffRecord, *,
                          flows: FlowSet | None = None) -> dict[str, Any]:
    """The whole context: transcript, captured fields, channel, customer and history, reason.

    With ``flows`` (the loaded flow files), the captured details are only the fields the handoff's
    flow declares (and the reference), labelled as the flow labels them; without, every slot.
    """
    conv = await store.get_conversation(h.conversation_id)
    if conv is None:
        return {}
    customer = await store.get_customer(conv.customer_id)
    flow_state = await store.load_flow_state(conv.id) or {}
    slots = {k: v for k, v in (flow_state.get("slots") or {}).items() if v not in (None, "", [])}
    slots = {**{k: v for k, v in (h.context.get("slots") or {}).items()}, **slots}
    flow = asking_flow(h, flow_state)
    shown, fields = captured(slots, flow_fields(flows, flow), restrict=flows is not None)
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
    attributes = dict(customer.attributes) if customer else {}
    contact = contacts(slots, attributes, identities, _typed_slots(flows, "email"), _typed_slots(flows, "phone"))
    tickets = [{"reference": t.reference, "conversation_id": t.conversation_id, "status": t.status,
                "category": t.category, "created_at": t.created_at.isoformat(),
                "resolved_at": t.resolved_at.isoformat() if t.resolved_at else None, "result": t.result,
                "csat": t.csat, "csat_comment": t.csat_comment}
               for t in await store.customer_tickets(conv.customer_id)]
    return {
        "conversation": {"id": conv.id, "channel": conv.channel, "external_id": conv.external_id,
                         "state": conv.state.value, "created_at": conv.created_at.isoformat(),
                         "language": conv.language},
        "customer": {"id": conv.customer_id, "name": customer.display_name if customer else "",
                     "display": readable_name(customer_id=conv.customer_id,
                                              display_name=customer.display_name if customer else "",
                                              channel=conv.channel, slots=slots, emails=contact["emails"],
                                              flows=flows),
                     "attributes": attributes, **profile(attributes), "contacts": contact,
                     "tickets": tickets,
                     "identities": [{"channel": ch, "external_id": ext} for ch, ext in identities],
                     "previous_conversations": previous},
        "reason": h.reason, "team": h.team, "team_name": team_for_agents(config.handoff, h.team, flows),
        # why the bot handed over, written for the agent ("asked for a person after 2 misunderstood
        # messages"); the reason above is the sentence the customer was told
        "agent_reason": h.context.get("agent_reason") or None,
        # where the conversation came from when it did not start here, e.g. moved from a public group
        "origin": origin_for_agents(await origin_of(store, conv.id), flows),
        # the captured details: the handoff's flow's fields (label, value), and the same as a mapping
        "slots": shown, "fields": fields, "reference": slots.get("reference") or h.context.get("reference"),
        "flow": flow,
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


def origin_for_agents(origin: dict[str, Any] | None, flows: FlowSet | None) -> dict[str, Any] | None:
    """Where the conversation came from, its summary in the words of the flows' ``origin_public``
    message (flows/i18n.py; ``settings.messages.origin_public`` overrides it). Agents have no
    language of their own (accounts and desks carry none): it is in ``settings.languages.default``,
    whatever the customer's language. Without flows, the summary kept when it was recorded."""
    if not origin or origin.get("kind") != "public" or flows is None:
        return origin
    st = flows.settings
    summary = render_system("origin_public", st.languages.default, st.languages, st.messages,
                            place=str(origin.get("place") or ""))
    return {**origin, "summary": summary.strip()}


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
