"""Store operations for moving a public complaint to a private chat (see :mod:`bot.public`).

A one-time token stands for what one person wrote in one public place (a Telegram group): the
place's title and their messages there, kept until the token is used or expires. Tokens live in
the ``meta`` table (no migration: ``public:<token>`` holds the record, ``publicby:<place>:<user>``
the person's open token there), as JSON that starts with ``{"expires_at": "<ISO UTC>"``, so
``value < '{"expires_at": "<now>'`` finds every expired row in portable SQL and each new token
deletes them: the public text is not kept after the link's lifetime.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from .rows import iso
from .sql import Lock, One, Op, Run, transaction

MAX_TEXTS = 10          # public messages one token carries (the newest are kept)


def _value(expires_at: str, **rest: Any) -> str:
    return json.dumps({"expires_at": expires_at, **rest})     # expires_at first: see the module doc


def _purge_expired(at: datetime) -> Op[None]:
    yield Run("DELETE FROM meta WHERE (key LIKE 'public:%' OR key LIKE 'publicby:%') AND value < ?",
              (_value(iso(at) or "")[:-2],))   # '{"expires_at": "<now>' (the closing quote and brace cut)


@transaction
def hold_public_message(token: str, *, place: str, user: str, title: str, text: str, at: datetime,
                        expires_at: datetime) -> Op[tuple[str, bool]]:
    """Keep ``text`` that ``user`` wrote in the public ``place`` under a one-time token.

    Args:
        token: the new token, used when the person has no open one in this place.
        place: the public place's id (``telegram:<chat id>``).
        user: the writer's id on that channel (only they can use the token).
        title: the place's name, shown to agents.
        text: what they wrote (may be empty: a mention with nothing else).

    Returns:
        (the token, True if it is new): a second message before the first token is used or
        expires joins it, so one link carries all of it.
    """
    yield Lock(f"public:{place}:{user}")
    yield from _purge_expired(at)
    by_key = f"publicby:{place}:{user}"
    row = yield One("SELECT value FROM meta WHERE key=?", (by_key,))
    if row is not None:
        open_token = json.loads(row["value"])["token"]
        rec_row = yield One("SELECT value FROM meta WHERE key=?", (f"public:{open_token}",))
        rec = json.loads(rec_row["value"]) if rec_row else None
        if rec is not None and rec.get("used_by") is None:
            if text:
                rec["texts"] = (rec["texts"] + [text])[-MAX_TEXTS:]
            yield Run("UPDATE meta SET value=? WHERE key=?", (json.dumps(rec), f"public:{open_token}"))
            return open_token, False
    exp = iso(expires_at) or ""
    yield Run("INSERT INTO meta(key, value) VALUES (?, ?)",
              (f"public:{token}", _value(exp, place=place, user=user, title=title, texts=[text] if text else [],
                                         created_at=iso(at), used_by=None)))
    yield Run("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
              (by_key, _value(exp, token=token)))
    return token, True


@transaction
def redeem_public_token(token: str, *, user: str, by: str, at: datetime) -> Op[dict[str, Any] | None]:
    """Use a token: the held record (``place``, ``title``, ``texts``, ``created_at``), or None
    for an unknown, expired or used token, or one made for someone else (which stays usable).

    Using it again with the same ``by`` (the private message that used it, delivered again)
    gives the same record, so a redelivered ``/start`` is not told the link was used.
    """
    yield Lock(f"publictoken:{token}")
    row = yield One("SELECT value FROM meta WHERE key=?", (f"public:{token}",))
    if row is None:
        return None
    rec: dict[str, Any] = json.loads(row["value"])
    if rec["expires_at"] <= (iso(at) or ""):
        return None
    if rec.get("used_by") is not None:
        return rec if rec["used_by"] == by else None
    if rec["user"] != user:
        return None
    rec["used_by"], rec["used_at"] = by, iso(at)
    yield Run("UPDATE meta SET value=? WHERE key=?", (json.dumps(rec), f"public:{token}"))
    yield Run("DELETE FROM meta WHERE key=?", (f"publicby:{rec['place']}:{user}",))
    return rec
