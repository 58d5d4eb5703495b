"""Store operations for the desk's history and search (see :mod:`bot.storage.sql`).

``search`` finds conversations, open or long resolved, by what an agent remembers of them: a
ticket reference, an order number, the customer's name, e-mail address or phone number, or
words they wrote. It uses the tables as they are (no search index, no migration), so each kind
of match has its own, bounded query, and the costs differ:

- reference (``C-1042``, ``c1042``): one primary-key lookup on ``tickets``; nothing else runs.
- e-mail address (has ``@``): ``customers`` (names) and ``identities`` read whole; nothing else.
- anything else (names, order numbers, words): ``customers``, ``identities`` and ``tickets``
  (their ``fields``) read whole, ``conversations.flow_state`` (the flow's slots) read whole, and
  ``messages`` walked newest first until :data:`TEXT_HITS` matching messages are found (a full
  walk only when fewer match). That last one is the expensive part on a big database; a phone
  number (digits, ``+``, spaces, dashes) that found a customer's identity skips it (digits that
  found none may be an order number someone wrote).

Matching is a case-insensitive substring match: ``LOWER(column) LIKE ?`` with the query
lowered the same way (ASCII letters only, as both databases' ``LOWER`` under PostgreSQL's
``COLLATE "C"`` and SQLite's default do) and ``%``, ``_`` and ``\\`` escaped, so they match
themselves. Results are conversations, most recently active first, at most ``limit`` (<= 50).
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable

from .rows import handoff_of, message_of
from .sql import All, One, Op

MAX_LIMIT = 50
TEXT_HITS = 500       # matching messages read at most (newest first) for a words search
REFERENCE = re.compile(r"^\s*[Cc]-?\s?(\d{3,9})\s*$")
PHONE = re.compile(r"^\+?[\d\s().-]{6,}$")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def like_pattern(text: str) -> str:
    """``%text%`` for ``LIKE ... ESCAPE '\\'``: the text's own ``%``, ``_`` and ``\\`` match literally,
    lowered as SQL's ``LOWER`` lowers (ASCII letters only)."""
    lowered = text.translate(_ASCII_LOWER)
    return "%" + lowered.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _in(ids: Iterable[str]) -> tuple[str, list[str]]:
    values = list(ids)
    return ",".join("?" * len(values)), values


def search(query: str, *, limit: int = 20) -> Op[list[dict[str, Any]]]:
    """Conversations matching ``query``, most recently active first (see the module doc).

    Args:
        query: a reference, order number, name, e-mail address, phone number or words.
        limit: at most this many results (capped at 50).

    Returns:
        One dict per conversation: ``conversation_id``, ``channel``, ``external_id``, ``state``,
        ``created_at``, ``updated_at``, ``customer`` (``id``, ``name``), ``last_message``
        (``text``, ``role``, ``at``), ``ticket`` (the newest: ``reference``, ``status``,
        ``category``, ``order_number``, ``csat``, ``csat_comment``, or None), ``handoff`` (the
        latest: ``id``, ``state``, ``team``, ``agent``, or None) and ``matched`` (what matched:
        ``reference``, ``details`` (an order number or another captured detail), ``name``,
        ``email``, ``phone``, ``contact`` (another identity) or ``text``), with ``snippet`` (the
        newest matching message) for a text match.
    """
    q = " ".join(query.split())[:200]
    limit = max(1, min(int(limit), MAX_LIMIT))
    if len(q) < 2:
        return []
    found: dict[str, set[str]] = {}          # conversation id -> what matched
    snippets: dict[str, str] = {}

    def hit(cid: str, why: str) -> None:
        found.setdefault(cid, set()).add(why)

    ref = REFERENCE.match(q)
    if ref:
        rows = yield All("SELECT conversation_id FROM tickets WHERE reference=?", (f"C-{ref.group(1)}",))
        for r in rows:
            hit(r["conversation_id"], "reference")
        return (yield from _results(found, snippets, limit))

    pattern = like_pattern(q)
    # customers by name, and by any identity (an e-mail address, a phone number, a handle)
    rows = yield All("SELECT c.id FROM conversations c JOIN customers u ON u.id = c.customer_id "
                     "WHERE LOWER(u.display_name) LIKE ? ESCAPE '\\'", (pattern,))
    for r in rows:
        hit(r["id"], "name")
    contact = "email" if "@" in q else "phone" if PHONE.match(q) else "contact"
    patterns = [pattern]
    if contact == "phone":
        digits = re.sub(r"\D", "", q)
        patterns.append(like_pattern(digits))     # +49 151 2345-678 finds 491512345678
    for p in patterns:
        rows = yield All("SELECT c.id FROM conversations c JOIN identities i ON i.customer_id = c.customer_id "
                         "WHERE LOWER(i.external_id) LIKE ? ESCAPE '\\'", (p,))
        for r in rows:
            hit(r["id"], contact)
    if contact == "email":
        return (yield from _results(found, snippets, limit))

    # order numbers (and any other captured detail): the tickets' fields, the flows' slots
    rows = yield All("SELECT conversation_id FROM tickets WHERE LOWER(fields) LIKE ? ESCAPE '\\'", (pattern,))
    for r in rows:
        hit(r["conversation_id"], "details")
    rows = yield All("SELECT id FROM conversations WHERE LOWER(flow_state) LIKE ? ESCAPE '\\'", (pattern,))
    for r in rows:
        hit(r["id"], "details")

    if contact == "phone" and any("phone" in why for why in found.values()):
        return (yield from _results(found, snippets, limit))   # digits that are an order number go on
    # words the customer, the bot or an agent wrote: newest first, bounded
    rows = yield All("SELECT conversation_id, text FROM messages WHERE LOWER(text) LIKE ? ESCAPE '\\' "
                     "ORDER BY id DESC LIMIT ?", (pattern, TEXT_HITS))
    for r in rows:
        hit(r["conversation_id"], "text")
        snippets.setdefault(r["conversation_id"], r["text"][:200])
    return (yield from _results(found, snippets, limit))


def _results(found: dict[str, set[str]], snippets: dict[str, str], limit: int) -> Op[list[dict[str, Any]]]:
    if not found:
        return []
    marks, ids = _in(found)
    convs = yield All(
        "SELECT c.id, c.channel, c.external_id, c.state, c.created_at, c.updated_at, c.customer_id, "
        f"u.display_name FROM conversations c JOIN customers u ON u.id = c.customer_id WHERE c.id IN ({marks}) "
        "ORDER BY c.updated_at DESC, c.id DESC LIMIT ?", (*ids, limit))
    if not convs:
        return []
    marks, ids = _in(c["id"] for c in convs)
    tickets: dict[str, dict[str, Any]] = {}
    for t in (yield All(f"SELECT * FROM tickets WHERE conversation_id IN ({marks}) "
                        "ORDER BY created_at, reference", ids)):
        tickets[t["conversation_id"]] = _ticket(t)            # the newest wins
    handoffs: dict[str, dict[str, Any]] = {}
    for h in (yield All("SELECT id, conversation_id, state, team, agent FROM handoffs "
                        f"WHERE conversation_id IN ({marks}) ORDER BY created_at, id", ids)):
        handoffs[h["conversation_id"]] = {"id": h["id"], "state": h["state"], "team": h["team"], "agent": h["agent"]}
    out = []
    for c in convs:
        last = yield One("SELECT text, role, created_at FROM messages WHERE conversation_id=? "
                         "ORDER BY id DESC LIMIT 1", (c["id"],))
        out.append({
            "conversation_id": c["id"], "channel": c["channel"], "external_id": c["external_id"],
            "state": c["state"], "created_at": c["created_at"], "updated_at": c["updated_at"],
            "customer": {"id": c["customer_id"], "name": c["display_name"]},
            "last_message": {"text": last["text"][:200], "role": last["role"], "at": last["created_at"]}
            if last else None,
            "ticket": tickets.get(c["id"]), "handoff": handoffs.get(c["id"]),
            "matched": sorted(found[c["id"]]), "snippet": snippets.get(c["id"]),
        })
    return out


def _ticket(t: Any) -> dict[str, Any]:
    fields = json.loads(t["fields"] or "{}")
    return {"reference": t["reference"], "status": t["status"], "category": t["category"],
            "severity": t["severity"], "order_number": fields.get("order_number"),
            "created_at": t["created_at"], "resolved_at": t["resolved_at"], "resolved_by": t["resolved_by"],
            "result": t["result"], "csat": t["csat"], "csat_comment": t["csat_comment"], "csat_at": t["csat_at"],
            "reopened": t["reopened"]}


def conversation_record(conversation_id: str, *, limit: int = 1000) -> Op[dict[str, Any] | None]:
    """A whole conversation for the desk's history view: the conversation, its customer (with
    identities), the transcript (its last ``limit`` messages), every ticket opened in it (with
    the result and the CSAT score and comment) and every handoff, oldest first; None if unknown."""
    c = yield One("SELECT c.*, u.display_name, u.attributes FROM conversations c "
                  "JOIN customers u ON u.id = c.customer_id WHERE c.id=?", (conversation_id,))
    if c is None:
        return None
    idents = yield All("SELECT channel, external_id FROM identities WHERE customer_id=? ORDER BY created_at",
                       (c["customer_id"],))
    msgs = yield All("SELECT * FROM (SELECT * FROM messages WHERE conversation_id=? ORDER BY id DESC LIMIT ?) "
                     "AS h ORDER BY id", (conversation_id, limit))
    tickets = yield All("SELECT * FROM tickets WHERE conversation_id=? ORDER BY created_at, reference",
                        (conversation_id,))
    handoffs = yield All("SELECT * FROM handoffs WHERE conversation_id=? ORDER BY created_at, id",
                         (conversation_id,))
    return {
        "conversation": {"id": c["id"], "channel": c["channel"], "external_id": c["external_id"],
                         "state": c["state"], "created_at": c["created_at"], "updated_at": c["updated_at"]},
        "customer": {"id": c["customer_id"], "name": c["display_name"],
                     "attributes": json.loads(c["attributes"] or "{}"),
                     "identities": [{"channel": i["channel"], "external_id": i["external_id"]} for i in idents]},
        "transcript": [message_of(m).to_dict() for m in msgs],
        "tickets": [_ticket(t) | {"department": t["department"], "team": t["team"],
                                  "fields": json.loads(t["fields"] or "{}")} for t in tickets],
        "handoffs": [_handoff(handoff_of(h)) for h in handoffs],
    }


def _handoff(h: Any) -> dict[str, Any]:
    return {"id": h.id, "state": h.state, "team": h.team, "agent": h.agent, "reason": h.reason,
            "priority": h.priority, "created_at": h.created_at.isoformat(),
            "claimed_at": h.claimed_at.isoformat() if h.claimed_at else None,
            "closed_at": h.closed_at.isoformat() if h.closed_at else None,
            "reopened_by": h.context.get("reopened_by"), "note": h.context.get("note")}
