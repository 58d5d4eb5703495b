"""Store operations for the agent desk's customer panel and queue rows (no schema change).

* A customer's profile as agents keep it: ``tier`` and ``tags`` in ``customers.attributes``
  (other attributes, such as those a connector stored, are left as they are).
* Who may see a customer: the team of each of their conversations' latest handoff.
* A queue row's preview: the customer's own last message, not the bot's.
"""

from __future__ import annotations

import json
from typing import Any

from bot.model import Customer, Message

from .rows import customer_of, message_of
from .sql import All, Lock, One, Op, Run, transaction

_UNSET: Any = object()


@transaction
def set_customer_profile(customer_id: str, *, tier: str | None = _UNSET,
                         tags: list[str] | None = _UNSET) -> Op[Customer | None]:
    """Set the customer's ``tier`` and/or ``tags`` (None or an empty list removes it); an argument
    not given is left as it is. None when there is no such customer.

    The attributes are merged here, not by the database's JSON patch, so that both backends keep
    exactly the same document (SQLite's json_patch drops nulls, PostgreSQL's keeps them).
    """
    yield Lock(f"customer:{customer_id}")
    row = yield One("SELECT * FROM customers WHERE id=?", (customer_id,))
    if row is None:
        return None
    attributes = json.loads(row["attributes"] or "{}")
    for key, value in (("tier", tier), ("tags", tags)):
        if value is _UNSET:
            continue
        if value in (None, "", []):
            attributes.pop(key, None)
        else:
            attributes[key] = list(value) if key == "tags" else value
    yield Run("UPDATE customers SET attributes=? WHERE id=?", (json.dumps(attributes), customer_id))
    row = yield One("SELECT * FROM customers WHERE id=?", (customer_id,))
    return customer_of(row)


def customer_teams(customer_id: str) -> Op[list[str | None]]:
    """For each of the customer's conversations, the team of its latest handoff (None: it never
    reached a team). Empty when the customer has no conversation (or does not exist)."""
    rows = yield All(
        "SELECT c.id, (SELECT h.team FROM handoffs h WHERE h.conversation_id = c.id "
        "ORDER BY h.created_at DESC, h.id DESC LIMIT 1) AS team "
        "FROM conversations c WHERE c.customer_id=? ORDER BY c.created_at, c.id", (customer_id,))
    return [r["team"] for r in rows]


def last_customer_messages(conversation_ids: list[str]) -> Op[dict[str, Message]]:
    """Per conversation, the customer's own last message (direction ``in``); a conversation where
    the customer wrote nothing is left out."""
    out: dict[str, Message] = {}
    for cid in dict.fromkeys(conversation_ids):
        row = yield One("SELECT * FROM messages WHERE conversation_id=? AND direction='in' "
                        "ORDER BY id DESC LIMIT 1", (cid,))
        if row is not None:
            out[cid] = message_of(row)
    return out
