"""Between database rows (SQLite or PostgreSQL) and the store's records: timestamps, ids, and one converter per table."""

from __future__ import annotations

import json
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


def message_of(row: Row) -> Message:
    atts, buttons, status = row["attachments"], row["buttons"], row["status"]
    return Message(
        id=row["id"], conversation_id=row["conversation_id"], direction=row["direction"],
        role=row["role"], text=row["text"], created_at=parse_iso(row["created_at"]),  # type: ignore[arg-type]
        sender_name=row["sender_name"],
        attachments=() if atts in _EMPTY else tuple(Attachment.from_dict(a) for a in json.loads(atts)),
        buttons=() if buttons in _EMPTY else tuple(Button(b["title"], b["payload"]) for b in json.loads(buttons)),
        platform_message_id=row["platform_message_id"], status=status,
        payload=row["payload"], error=row["last_error"] if status == "failed" else None)


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
