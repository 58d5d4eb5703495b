"""Store operations of the path every message takes, each doing in one call what took two.

Each operation here is the same SQL as the two it replaces (see :mod:`bot.storage.ops_chat`),
so what is read and written does not change; what changes is the number of operations per
message: fewer futures and hand-offs to SQLite's thread, and fewer statements (round trips)
on PostgreSQL.

- :func:`turn_start`: a conversation's unanswered customer messages together with what its
  first turn needs (``unprocessed_inbound`` + ``load_turn``), in ONE statement.
- :func:`mark_sent_next`: mark a reply sent and look up the conversation's next due reply
  (``mark_sent`` + ``due_outbox(conversation_id=...)``).
"""

from __future__ import annotations

import json
from typing import Any

from bot.model import Conversation, ConversationState, Customer, Message, utcnow

from .base import OutboxItem
from .ops_chat import due_outbox, mark_sent
from .ops_pg import mark_sent_next_pg
from .rows import iso, message_of, parse_iso
from .sql import BACKEND, All, Op

#: the conversation's and its customer's columns, named apart from the message's, after them
#: (turn_start reads them by position, in this order)
_TURN_COLUMNS = ("c.customer_id AS c_customer_id, c.channel AS c_channel, c.external_id AS c_external_id, "
                 "c.state AS c_state, c.created_at AS c_created_at, c.updated_at AS c_updated_at, "
                 "c.language AS c_language, c.flow_state AS c_flow_state, "
                 "u.display_name AS u_name, u.created_at AS u_created, u.attributes AS u_attributes")
_TURN_WIDTH = _TURN_COLUMNS.count(" AS ")

Loaded = tuple[Conversation, Customer, "dict[str, Any] | None"]


def turn_start(conversation_id: str) -> Op[tuple[list[Message], Loaded | None]]:
    """The conversation's customer messages still to answer, oldest first, and what a turn
    needs (as :func:`~bot.storage.ops_chat.load_turn`: the conversation, its customer and the
    flow state; None when there is no such conversation), read together.

    One row per unanswered message (one row with no message when there is none): the
    conversation's columns repeat on each, which is cheaper than a second statement.
    """
    rows = yield All(
        f"SELECT m.*, {_TURN_COLUMNS} FROM conversations c JOIN customers u ON u.id = c.customer_id "
        "LEFT JOIN messages m ON m.conversation_id = c.id AND m.direction = 'in' AND m.status = 'received' "
        "WHERE c.id = ? ORDER BY m.id", (conversation_id,))
    if not rows:
        return [], None
    # the last columns, by position (by name, each would be compared with the ~25 before it)
    (customer_id, channel, external_id, conv_state, created_at, updated_at, language, flow_state,
     name, customer_created, attrs) = tuple(rows[0])[-_TURN_WIDTH:]
    conv = Conversation(id=conversation_id, customer_id=customer_id, channel=channel,
                        external_id=external_id, state=ConversationState(conv_state),
                        created_at=parse_iso(created_at),  # type: ignore[arg-type]
                        updated_at=parse_iso(updated_at),  # type: ignore[arg-type]
                        language=language)
    customer = Customer(customer_id, name, parse_iso(customer_created),  # type: ignore[arg-type]
                        json.loads(attrs) if attrs and attrs != "{}" else {})
    state = json.loads(flow_state) if flow_state else None
    messages = [message_of(row) for row in rows if row["id"] is not None]
    return messages, (conv, customer, state)


def mark_sent_next(message_id: int, platform_message_id: str, *, conversation_id: str,
                   now: float) -> Op[OutboxItem | None]:
    """Mark ``message_id`` sent (as :func:`~bot.storage.ops_chat.mark_sent`), then the
    conversation's next reply if it is due now (as ``due_outbox(now, limit=1,
    conversation_id=...)``), or None. Not one transaction: a failure after the mark leaves it
    marked, as two operations would."""
    if (yield BACKEND) == "postgresql":       # one statement, one round trip
        return (yield from mark_sent_next_pg(message_id, platform_message_id, conversation_id=conversation_id,
                                             sent_at=iso(utcnow()), now=now))
    yield from mark_sent(message_id, platform_message_id)
    due = yield from due_outbox(now, limit=1, conversation_id=conversation_id)
    return due[0] if due else None
