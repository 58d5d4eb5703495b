"""Between database rows (SQLite or PostgreSQL) and the store's records: timestamps, ids, and one converter per table."""

from __future__ import annotations

import dataclasses
import json
import operator
import secrets
from datetime import datetime, timezone
from typing import Any

from bot.model import Attachment, Button, Conversation, ConversationState, Customer, Message

from .base import HandoffRecord, Ticket

Row = Any  # sqlite3.Row or asyncpg.Record

def iso(dt: datetime | None) -> str | None:
    return dt.astimezone(timezone.utc).isoformat() if dt else None


def parse_iso(s: str | None) -> datetime | None:
    return datetime.fromisoformat(s) if s else None


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def customer_of(row: Row) -> Customer:
    attrs = row["attributes"]
    return Customer(row["id"], row["display_name"], parse_iso(row["created_at"]),  # type: ignore[arg-type]
                    json.loads(attrs) if attrs and attrs != "{}" else {})


def conversation_of(row: Row) -> Conversation:
    return Conversation(id=row["id"], customer_id=row["customer_id"], channel=row["channel"],
                        external_id=row["external_id"], state=ConversationState(row["state"]),
                        created_at=parse_iso(row["created_at"]), updated_at=parse_iso(row["updated_at"]),  # type: ignore[arg-type]
                        language=row["language"])


#: how the store writes an empty list of attachments or buttons (most messages): no JSON to parse
_EMPTY = (None, "", "[]")

#: the columns :func:`message_of` reads, in this order
_MESSAGE_COLUMNS = ("id", "conversation_id", "direction", "role", "text", "created_at", "sender_name",
                    "attachments", "buttons", "platform_message_id", "status", "payload", "last_error")
_BY_NAME = operator.itemgetter(*_MESSAGE_COLUMNS)
#: how to take those columns out of a row, by the row's column names: a few shapes (``SELECT *``,
#: ``RETURNING *``, ``m.*`` and more), each looked up once
_getters: dict[tuple[str, ...], Any] = {}


def _message_getter(names: tuple[str, ...]) -> Any:
    get = _getters.get(names)
    if get is None:
        try:     # by position: the first column of each name, as row["name"] finds
            get = operator.itemgetter(*(names.index(c) for c in _MESSAGE_COLUMNS))
        except ValueError:
            get = _BY_NAME       # not a plain messages row: by name
        if len(_getters) < 256:
            _getters[names] = get
    return get


# Message is a frozen dataclass: its __init__ sets each of 13 fields through object.__setattr__
# (~5 us a message, the most of reading one); its slots' own setters do the same at a third of that.
# It has no __post_init__ and no default factories, so every field is set from a row, as __init__ would.
_MESSAGE_FIELDS = tuple(f.name for f in dataclasses.fields(Message))
_MESSAGE_SETTERS = tuple(Message.__dict__[name].__set__ for name in _MESSAGE_FIELDS)
assert not hasattr(Message, "__post_init__")
assert set(_MESSAGE_FIELDS) == set(_MESSAGE_COLUMNS) - {"last_error"} | {"error"}


def _message(values: tuple[Any, ...]) -> Message:
    """``Message(*values)`` (in field order) without the frozen dataclass's __init__."""
    m = object.__new__(Message)
    for set_value, value in zip(_MESSAGE_SETTERS, values):
        set_value(m, value)
    return m


def message_of(row: Row) -> Message:
    # sqlite3.Row finds a column by name by comparing it with every column before it (~50 ns
    # each; a messages row read with a join has ~30 columns): by position instead, with the
    # positions looked up once per shape of row
    (mid, conversation_id, direction, role, text, created_at, sender_name, atts, buttons,
     platform_message_id, status, payload, last_error) = _message_getter(tuple(row.keys()))(row)
    return _message((
        mid, conversation_id, direction, role, text, parse_iso(created_at), sender_name,
        () if atts in _EMPTY else tuple(Attachment.from_dict(a) for a in json.loads(atts)),
        () if buttons in _EMPTY else tuple(Button(b["title"], b["payload"]) for b in json.loads(buttons)),
        platform_message_id, status, payload, last_error if status == "failed" else None))


def handoff_of(row: Row) -> HandoffRecord:
    return HandoffRecord(
        id=row["id"], conversation_id=row["conversation_id"], state=row["state"], team=row["team"],
        reason=row["reason"], priority=row["priority"], agent=row["agent"],
        created_at=parse_iso(row["created_at"]), claimed_at=parse_iso(row["claimed_at"]),  # type: ignore[arg-type]
        closed_at=parse_iso(row["closed_at"]), context=json.loads(row["context"] or "{}"),
        cause=row["cause"])


def ticket_of(row: Row) -> Ticket:
    return Ticket(
        reference=row["reference"], customer_id=row["customer_id"], conversation_id=row["conversation_id"],
        status=row["status"], category=row["category"], severity=row["severity"],
        department=row["department"], team=row["team"], priority=row["priority"],
        fields=json.loads(row["fields"] or "{}"), reasons=tuple(json.loads(row["reasons"] or "[]")),
        created_at=parse_iso(row["created_at"]), resolved_at=parse_iso(row["resolved_at"]),  # type: ignore[arg-type]
        resolved_by=row["resolved_by"], result=row["result"], csat=row["csat"],
        csat_comment=row["csat_comment"], followup_due_at=parse_iso(row["followup_due_at"]),
        reopened=row["reopened"], sla_alerts=tuple(json.loads(row["sla_alerts"] or "[]")),
        origin=row["origin"], **_review_of(row))


def _review_of(row: Row) -> dict[str, Any]:
    """The review columns (schema 13) of a tickets row."""
    keys = row.keys() if hasattr(row, "keys") else row
    if "review_state" not in keys:
        return {}
    return {"review_state": row["review_state"], "proposed_result": row["proposed_result"],
            "proposed_by": row["proposed_by"], "proposed_at": parse_iso(row["proposed_at"]),
            "reviewed_by": row["reviewed_by"], "reviewed_at": parse_iso(row["reviewed_at"]),
            "review_note": row["review_note"], "communicated_at": parse_iso(row["communicated_at"])}
