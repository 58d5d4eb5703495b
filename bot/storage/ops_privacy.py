"""Store operations for privacy (README "Privacy"): the card notice once per conversation, finding a
customer, everything about them (export), erasing them, and retention.

Erasing keeps the figures: a conversation's row (channel, state, times), its handoffs (team, times,
agent) and its tickets (category, severity, times, CSAT score) stay, with nothing personal left in
them: no address, flow state, reason, fields, result or comment. Messages, notes, files, identities,
link codes, desk threads and the side effects of its turns are deleted; the customer's row stays,
anonymous (so the tickets keep their customer id).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Iterable, Sequence

from .rows import iso
from .sql import All, Lock, One, Op, Run, transaction

REMOVED = "[removed]"


def _in(ids: Sequence[Any]) -> str:
    return "(" + ", ".join("?" for _ in ids) + ")"


def _chunks(ids: Sequence[Any], n: int = 500) -> Iterable[Sequence[Any]]:
    for i in range(0, len(ids), n):
        yield ids[i:i + n]


# -- the notice ----------------------------------------------------------------------

@transaction
def privacy_notice(conversation_id: str, *, text: str, at: datetime) -> Op[bool]:
    """Queue ``text`` (role system) to the conversation unless it was queued there before; True if queued."""
    yield Lock(f"conv:{conversation_id}")
    n = yield Run("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING",
                  (f"privacy-notice:{conversation_id}", iso(at)))
    if n != 1:
        return False
    conv = yield One("SELECT channel FROM conversations WHERE id=?", (conversation_id,))
    if conv is None:
        return False
    yield Run("INSERT INTO messages(conversation_id, direction, role, sender_name, text, attachments, buttons, "
              "channel, status, next_attempt_at, created_at) VALUES (?, 'out', 'system', '', ?, '[]', '[]', ?, "
              "'pending', ?, ?)", (conversation_id, text, conv["channel"], at.timestamp(), iso(at)))
    return True


# -- finding a customer --------------------------------------------------------------

def find_customers(*, customer_id: str | None = None, channel: str | None = None, external_id: str | None = None,
                   email: str | None = None, phone_digits: str | None = None) -> Op[list[str]]:
    """The ids of the customers matching any of what is given: their id, an identity (channel and
    external id), an e-mail address (the e-mail channel's identities) or a phone number in E.164
    digits without "+" (WhatsApp identities)."""
    found: list[str] = []

    def add(rows: Any) -> None:
        for r in rows:
            if r["customer_id"] not in found:
                found.append(r["customer_id"])

    if customer_id:
        add((yield All("SELECT id AS customer_id FROM customers WHERE id=?", (customer_id,))))
    if channel and external_id:
        add((yield All("SELECT customer_id FROM identities WHERE channel=? AND external_id=?", (channel, external_id))))
    if email:
        add((yield All("SELECT customer_id FROM identities WHERE channel='email' AND LOWER(external_id)=?",
                       (email.strip().lower(),))))
    if phone_digits:
        add((yield All("SELECT customer_id FROM identities WHERE channel='whatsapp' AND external_id=?",
                       (phone_digits,))))
    return found


# -- everything about a customer -------------------------------------------------------

def _media_ids(attachments_json: str) -> list[str]:
    try:
        items = json.loads(attachments_json or "[]")
    except ValueError:
        return []
    out = []
    for a in items if isinstance(items, list) else []:
        url = str((a or {}).get("url", "")) if isinstance(a, dict) else ""
        if url.startswith("/media/"):
            out.append(url[len("/media/"):])
    return out


def _scope(customer_id: str) -> Op[dict[str, Any]]:
    idents = yield All("SELECT * FROM identities WHERE customer_id=? ORDER BY created_at", (customer_id,))
    convs = yield All("SELECT * FROM conversations WHERE customer_id=? ORDER BY created_at, id", (customer_id,))
    cids = [c["id"] for c in convs]
    owners = [f"{i['channel']}:{i['external_id']}" for i in idents] + \
        [f"{c['channel']}:{c['external_id']}" for c in convs]
    return {"identities": idents, "conversations": convs, "cids": cids, "owners": sorted(set(owners))}


def _rows(sql: str, ids: Sequence[Any], tail: str = "") -> Op[list[dict[str, Any]]]:
    out: list[dict[str, Any]] = []
    for part in _chunks(list(ids)):
        rows = yield All(f"{sql} {_in(part)} {tail}", tuple(part))
        out += [dict(r) for r in rows]
    return out


def _media_of(scope: dict[str, Any], messages: list[dict[str, Any]]) -> Op[list[dict[str, Any]]]:
    ids = sorted({m for msg in messages for m in _media_ids(msg["attachments"])})
    by_id = yield from _rows("SELECT id, owner, name, mime, size, created_at FROM media WHERE id IN", ids)
    by_owner = yield from _rows("SELECT id, owner, name, mime, size, created_at FROM media WHERE owner IN",
                                scope["owners"])
    seen: dict[str, dict[str, Any]] = {}
    for r in by_id + by_owner:
        seen.setdefault(r["id"], r)
    return sorted(seen.values(), key=lambda r: (r["created_at"], r["id"]))


def customer_data(customer_id: str) -> Op[dict[str, Any] | None]:
    """Everything stored about a customer (files without their bytes: ``media_data`` reads them), or None."""
    cust = yield One("SELECT * FROM customers WHERE id=?", (customer_id,))
    if cust is None:
        return None
    scope = yield from _scope(customer_id)
    cids = scope["cids"]
    messages = yield from _rows("SELECT * FROM messages WHERE conversation_id IN", cids, "ORDER BY id")
    handoffs = yield from _rows("SELECT * FROM handoffs WHERE conversation_id IN", cids, "ORDER BY created_at")
    hids = [h["id"] for h in handoffs]
    threads = yield from _rows("SELECT * FROM desk_threads WHERE handoff_id IN", hids)
    notes = yield from _rows("SELECT * FROM notes WHERE conversation_id IN", cids, "ORDER BY created_at")
    tickets = yield All("SELECT * FROM tickets WHERE customer_id=? ORDER BY created_at", (customer_id,))
    refs = [t["reference"] for t in tickets]
    comps = yield from _rows("SELECT * FROM compensations WHERE ticket_reference IN", refs, "ORDER BY requested_at")
    media = yield from _media_of(scope, messages)

    def decoded(row: Any, *cols: str) -> dict[str, Any]:
        d = dict(row)
        for c in cols:
            if isinstance(d.get(c), str):
                try:
                    d[c] = json.loads(d[c])
                except ValueError:
                    pass
        return d

    return {
        "customer": decoded(cust, "attributes"),
        "identities": [dict(i) for i in scope["identities"]],
        "conversations": [decoded(c, "flow_state") for c in scope["conversations"]],
        "messages": [decoded(m, "attachments", "buttons") for m in messages],
        "handoffs": [decoded(h, "context") for h in handoffs],
        "desk_threads": threads,
        "notes": notes,
        "tickets": [decoded(t, "fields", "reasons", "sla_alerts") for t in tickets],
        "surveys": [{"ticket": t["reference"], "score": t["csat"], "comment": t["csat_comment"], "at": t["csat_at"]}
                    for t in tickets if t["csat"] is not None],
        "compensations": comps,
        "media": media,
    }


def customer_desk_threads(customer_id: str) -> Op[list[dict[str, Any]]]:
    """The desk threads (Slack cards and their threads) of the customer's handoffs."""
    rows = yield All("SELECT d.* FROM desk_threads d JOIN handoffs h ON h.id = d.handoff_id "
                     "JOIN conversations c ON c.id = h.conversation_id WHERE c.customer_id=? ORDER BY d.created_at",
                     (customer_id,))
    return [dict(r) for r in rows]


# -- erasing ---------------------------------------------------------------------------

def _erase_conversations(cids: Sequence[str], counts: dict[str, int]) -> Op[None]:
    """Delete what the conversations hold and anonymise what the figures need (see the module)."""
    if not cids:
        return None
    msgs = yield from _rows("SELECT id, attachments FROM messages WHERE conversation_id IN", cids)
    media_ids = sorted({m for r in msgs for m in _media_ids(r["attachments"])})
    for part in _chunks(media_ids):
        counts["media"] = counts.get("media", 0) + (yield Run(f"DELETE FROM media WHERE id IN {_in(part)}", tuple(part)))
    for r in msgs:         # each turn's remembered side effects (slot values among them)
        counts["effects"] = counts.get("effects", 0) + (
            yield Run("DELETE FROM effects WHERE key LIKE ?", (f"in:{r['id']}/%",)))
    for part in _chunks(list(cids)):
        args = tuple(part)
        hids = yield All(f"SELECT id FROM handoffs WHERE conversation_id IN {_in(part)}", args)
        hid_list = [h["id"] for h in hids]
        for hpart in _chunks(hid_list):
            counts["desk_threads"] = counts.get("desk_threads", 0) + (
                yield Run(f"DELETE FROM desk_threads WHERE handoff_id IN {_in(hpart)}", tuple(hpart)))
        counts["messages"] = counts.get("messages", 0) + (
            yield Run(f"DELETE FROM messages WHERE conversation_id IN {_in(part)}", args))
        counts["notes"] = counts.get("notes", 0) + (
            yield Run(f"DELETE FROM notes WHERE conversation_id IN {_in(part)}", args))
        yield Run(f"DELETE FROM desk_reads WHERE conversation_id IN {_in(part)}", args)
        for cid in part:
            yield Run("DELETE FROM meta WHERE key=?", (f"privacy-notice:{cid}",))
        counts["handoffs_anonymised"] = counts.get("handoffs_anonymised", 0) + (
            yield Run(f"UPDATE handoffs SET reason='', context='{{}}' WHERE conversation_id IN {_in(part)}", args))
        # the address goes; the row stays (channel, state, times) for the figures
        counts["conversations_anonymised"] = counts.get("conversations_anonymised", 0) + (
            yield Run("UPDATE conversations SET external_id='erased:' || id, flow_state=NULL, owner=NULL, "
                      f"state='closed' WHERE id IN {_in(part)}", args))
        counts["tickets_anonymised"] = counts.get("tickets_anonymised", 0) + (
            yield Run("UPDATE tickets SET fields='{}', reasons='[]', result=NULL, csat_comment=NULL, "
                      "proposed_result=NULL, review_note=NULL, origin=NULL "
                      f"WHERE conversation_id IN {_in(part)}", args))
        yield Run("UPDATE compensations SET note=NULL WHERE ticket_reference IN "
                  f"(SELECT reference FROM tickets WHERE conversation_id IN {_in(part)})", args)
    return None


def _forget_addresses(idents: Sequence[Any]) -> Op[int]:
    """What other records keep about the customer's addresses (WhatsApp window, public-group holds)."""
    n = 0
    for i in idents:
        ext = i["external_id"]
        if i["channel"] == "whatsapp":
            n += yield Run("DELETE FROM meta WHERE key=?", (f"whatsapp:in:{ext}",))
        if i["channel"] == "telegram":
            n += yield Run("DELETE FROM meta WHERE key LIKE ?", (f"publicby:%:{ext}",))
            held = yield All("SELECT key, value FROM meta WHERE key LIKE 'public:%'")
            for h in held:
                try:
                    rec = json.loads(h["value"])
                except ValueError:
                    continue
                if isinstance(rec, dict) and str(rec.get("user")) == str(ext):
                    n += yield Run("DELETE FROM meta WHERE key=?", (h["key"],))
    return n


@transaction
def erase_customer(customer_id: str) -> Op[dict[str, int] | None]:
    """Erase a customer (see the module): what was removed or anonymised, per kind; None if no such customer."""
    yield Lock(f"customer:{customer_id}")
    cust = yield One("SELECT id FROM customers WHERE id=?", (customer_id,))
    if cust is None:
        return None
    scope = yield from _scope(customer_id)
    counts: dict[str, int] = {"conversations": len(scope["cids"])}
    yield from _erase_conversations(scope["cids"], counts)
    for part in _chunks(scope["owners"]):    # files sent but never part of a message, by owner
        counts["media"] = counts.get("media", 0) + (
            yield Run(f"DELETE FROM media WHERE owner IN {_in(part)}", tuple(part)))
    counts["meta"] = yield from _forget_addresses(scope["identities"])
    counts["tickets_anonymised"] = counts.get("tickets_anonymised", 0) + (
        yield Run("UPDATE tickets SET fields='{}', reasons='[]', result=NULL, csat_comment=NULL, proposed_result=NULL, "
                  "review_note=NULL, origin=NULL WHERE customer_id=?", (customer_id,)))
    counts["tickets_anonymised"] = min(counts["tickets_anonymised"],
                                       int((yield One("SELECT COUNT(*) AS n FROM tickets WHERE customer_id=?",
                                                      (customer_id,)))["n"]))
    yield Run("DELETE FROM link_codes WHERE customer_id=?", (customer_id,))
    counts["identities"] = yield Run("DELETE FROM identities WHERE customer_id=?", (customer_id,))
    yield Run("UPDATE customers SET display_name='', attributes='{}' WHERE id=?", (customer_id,))
    return counts


# -- retention -------------------------------------------------------------------------

def _closed_before(before: datetime) -> Op[list[str]]:
    rows = yield All("SELECT id FROM conversations WHERE state='closed' AND updated_at < ? "
                     "AND external_id NOT LIKE 'erased:%' ORDER BY updated_at", (iso(before),))
    return [r["id"] for r in rows]


@transaction
def expire_message_texts(before: datetime) -> Op[int]:
    """Closed conversations last active before ``before``: what customers and agents wrote (messages,
    notes, flow state, handoff reasons, ticket fields and comments) is removed; rows and times stay.
    Returns how many messages lost their text."""
    cids = yield from _closed_before(before)
    n = 0
    for part in _chunks(cids):
        args = tuple(part)
        n += yield Run(f"UPDATE messages SET text=?, sender_name='', payload=NULL "
                       f"WHERE conversation_id IN {_in(part)} AND text != ?", (REMOVED, *args, REMOVED))
        yield Run(f"UPDATE notes SET text=? WHERE conversation_id IN {_in(part)}", (REMOVED, *args))
        yield Run(f"UPDATE conversations SET flow_state=NULL WHERE id IN {_in(part)}", args)
        yield Run(f"UPDATE handoffs SET reason='', context='{{}}' WHERE conversation_id IN {_in(part)}", args)
        yield Run("UPDATE tickets SET fields='{}', reasons='[]', result=NULL, csat_comment=NULL, proposed_result=NULL, "
                  f"review_note=NULL WHERE conversation_id IN {_in(part)} AND resolved_at IS NOT NULL", args)
    return n


@transaction
def expire_attachments(before: datetime) -> Op[int]:
    """Files of closed conversations last active before ``before`` are deleted (the messages keep no
    link to them), and files uploaded before then that no message refers to. Returns files deleted."""
    cids = yield from _closed_before(before)
    n = 0
    for part in _chunks(cids):
        rows = yield All(f"SELECT id, attachments FROM messages WHERE conversation_id IN {_in(part)} "
                         "AND attachments != '[]'", tuple(part))
        ids = sorted({m for r in rows for m in _media_ids(r["attachments"])})
        for ipart in _chunks(ids):
            n += yield Run(f"DELETE FROM media WHERE id IN {_in(ipart)}", tuple(ipart))
        for r in rows:
            yield Run("UPDATE messages SET attachments='[]' WHERE id=?", (r["id"],))
    # uploads never sent, or sent in conversations long gone
    old = yield All("SELECT id FROM media WHERE created_at < ?", (iso(before),))
    if old:
        used = yield All("SELECT attachments FROM messages WHERE attachments != '[]'")
        referenced = {m for r in used for m in _media_ids(r["attachments"])}
        for r in old:
            if r["id"] not in referenced:
                n += yield Run("DELETE FROM media WHERE id=?", (r["id"],))
    return n


@transaction
def expire_conversations(before: datetime) -> Op[dict[str, int]]:
    """Closed conversations last active before ``before`` are erased like a customer's (see the module);
    customers left with no conversation then lose their identities and name."""
    cids = yield from _closed_before(before)
    counts: dict[str, int] = {"conversations": len(cids)}
    owners: set[str] = set()
    for part in _chunks(cids):
        rows = yield All(f"SELECT DISTINCT customer_id FROM conversations WHERE id IN {_in(part)}", tuple(part))
        owners |= {r["customer_id"] for r in rows}
    yield from _erase_conversations(cids, counts)
    customers = 0
    for customer_id in sorted(owners):
        live = yield One("SELECT 1 AS x FROM conversations WHERE customer_id=? AND external_id NOT LIKE 'erased:%' "
                         "LIMIT 1", (customer_id,))
        if live is None:
            idents = yield All("SELECT * FROM identities WHERE customer_id=?", (customer_id,))
            yield from _forget_addresses(idents)
            yield Run("DELETE FROM identities WHERE customer_id=?", (customer_id,))
            yield Run("DELETE FROM link_codes WHERE customer_id=?", (customer_id,))
            yield Run("UPDATE customers SET display_name='', attributes='{}' WHERE id=?", (customer_id,))
            customers += 1
    counts["customers_anonymised"] = customers
    return counts


def expire_audit(before: datetime) -> Op[int]:
    """Audit entries older than ``before`` are deleted; how many."""
    n = yield Run("DELETE FROM audit WHERE at < ?", (iso(before),))
    return n  # type: ignore[no-any-return]
