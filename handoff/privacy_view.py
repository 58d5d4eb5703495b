"""What the desks show of personal data (README "Privacy", ``privacy.policy``).

The desks build their JSON (a handoff's context, queue rows, a conversation record, search results,
notes) from storage as before; :class:`View` then masks that structure for one place and viewer:

- ``View("slack")``: a copy posted to Slack (default: cards, codes, IBANs, e-mail and phone masked);
- ``View("desk", owner=True)``: the web desk for the agent who holds the conversation (default:
  e-mail, phone and IBAN in clear; cards and codes never), ``owner=False`` for everyone else.

Every text is masked with :mod:`bot.privacy` (ids, times, links and fixed words are not scanned);
slots marked ``personal: true`` (:func:`bot.privacy.personal_slots`) are shown as
``[personal data]`` where the place does not show personal data; an address that is itself an
e-mail address or a phone number (an ``email`` or ``whatsapp`` identity's ``external_id``) is
masked as one even where the detector would not recognise it (a WhatsApp id has no ``+``).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from bot import privacy
from bot.privacy import mask_value

#: Keys whose values are ids, times, links or fixed words: never personal data, never scanned.
SKIP = frozenset({
    "id", "conversation_id", "handoff_id", "customer_id", "message_id", "note_id", "reopened_from",
    "created_at", "updated_at", "claimed_at", "closed_at", "resolved_at", "csat_at", "last_message_at", "at",
    "since", "due_at", "read_at", "proposed_at", "reviewed_at", "communicated_at",
    "url", "mime", "kind", "role", "direction", "status", "state", "channel", "team", "team_name", "flow",
    "reference", "priority", "via", "view", "matched", "severity", "category", "department", "slot", "label",
    "tier", "tags", "size", "position", "waiting_seconds", "unread", "type", "level",
})
#: Channels whose address is a phone number / an e-mail address.
PHONE_CHANNELS = frozenset({"whatsapp", "sms", "phone"})
EMAIL_CHANNELS = frozenset({"email"})
PERSONAL = "[personal data]"


class View:
    """Masks desk data for one place (``slack`` or ``desk``) and viewer (``owner``).

    Args:
        place: ``slack`` or ``desk`` (a place of ``privacy.policy``).
        owner: whether the viewer holds the conversation (the desk's ``owner`` rule).
        personal: the slots marked ``personal: true`` in the flows.
    """

    def __init__(self, place: str, *, owner: bool = False, personal: Iterable[str] = ()) -> None:
        self.p = privacy.current()
        self.place = place
        self.owner = owner
        self.personal = frozenset(personal)
        self.kinds = self.p.kinds_masked(place, owner=owner)
        # personal slots are shown only where personal data is: to the owner on the web desk
        self.hide_personal = not (place == "desk" and owner)

    def text(self, value: str) -> str:
        """One text (a message, a note, a name)."""
        if not value or not self.kinds:
            return value
        return self.p.detector.mask(value, self.kinds)[0]

    def address(self, channel: str | None, external_id: Any) -> Any:
        """A conversation's or identity's address on its channel."""
        if not isinstance(external_id, str) or not external_id:
            return external_id
        if channel in EMAIL_CHANNELS and "email" in self.kinds and "@" in external_id:
            return mask_value("email", external_id)
        if channel in PHONE_CHANNELS and "phone" in self.kinds:
            return mask_value("phone", external_id if external_id.startswith("+") else "+" + external_id)
        return self.text(external_id)

    def slots(self, slots: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in slots.items():
            if k in self.personal and self.hide_personal and v not in (None, "", []):
                out[k] = PERSONAL
            else:
                out[k] = self.tree(v)
        return out

    def fields(self, fields: list[Any]) -> list[Any]:
        """The captured details (``[{"slot", "label", "value", "text"}]``)."""
        out = []
        for f in fields:
            if isinstance(f, dict) and f.get("slot") in self.personal and self.hide_personal:
                out.append({**f, "value": PERSONAL, "text": None})
            else:
                out.append(self.tree(f))
        return out

    def tree(self, obj: Any, key: str | None = None) -> Any:
        """A copy of ``obj`` (JSON-like) with every text masked for this place and viewer."""
        if isinstance(obj, str):
            return obj if key in SKIP else self.text(obj)
        if isinstance(obj, list):
            if key == "fields":
                return self.fields(obj)
            return [self.tree(v, key) for v in obj]
        if isinstance(obj, dict):
            if key in ("slots", "fields"):          # a flow's slots; a ticket's captured fields
                return self.slots(obj)
            out = {}
            for k, v in obj.items():
                if k == "external_id":
                    out[k] = self.address(obj.get("channel"), v)
                elif k in SKIP and not isinstance(v, (dict, list)):
                    out[k] = v
                else:
                    out[k] = self.tree(v, k)
            return out
        return obj


def slack_view(personal: Iterable[str] = ()) -> View:
    """What a copy posted to Slack may show."""
    return View("slack", personal=personal)


def desk_view(*, owner: bool, personal: Iterable[str] = ()) -> View:
    """What the web desk shows an agent (``owner``: the one who holds the conversation)."""
    return View("desk", owner=owner, personal=personal)


def holds(agent: str | None, handoff: Mapping[str, Any] | Any | None) -> bool:
    """Whether ``agent`` holds ``handoff`` (a record or a dict with ``state`` and ``agent``)."""
    if handoff is None or not agent:
        return False
    get = handoff.get if isinstance(handoff, Mapping) else (lambda k: getattr(handoff, k, None))
    return get("state") == "claimed" and get("agent") == agent
