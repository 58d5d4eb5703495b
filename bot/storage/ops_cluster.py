"""Store operations that let several instances share one database (see :mod:`bot.cluster`).

- Each instance registers and heartbeats a row in ``instances``; one whose heartbeat is older
  than the TTL is dead, and what it held is free.
- A conversation has at most one ``owner`` instance at a time: the one answering its messages
  or sending its replies. The claim is taken in one statement, so two instances never both
  win, and a dead owner's claim is taken over.
- Named leases (``leases``) elect one instance for a job (the Telegram poller).
- ``rate_limits`` counts hits per key and window, the same for every instance.
- Times are seconds since the epoch from the instances' clocks (keep them in sync with NTP).
"""

from __future__ import annotations

from datetime import datetime, timezone

from bot.model import utcnow

from .rows import iso
from .sql import All, One, Op, Run, transaction


def register_instance(instance_id: str, *, host: str, pid: int, now: float) -> Op[None]:
    yield Run("INSERT INTO instances(id, host, pid, started_at, seen_at) VALUES (?, ?, ?, ?, ?) "
              "ON CONFLICT(id) DO UPDATE SET seen_at=excluded.seen_at",
              (instance_id, host, pid, iso(utcnow()), float(now)))


def heartbeat(instance_id: str, *, now: float) -> Op[bool]:
    """Mark the instance alive; False if its row is gone (others took it for dead)."""
    n = yield Run("UPDATE instances SET seen_at=? WHERE id=?", (float(now), instance_id))
    return n == 1  # type: ignore[no-any-return]


def live_instances(*, now: float, ttl: float) -> Op[list[str]]:
    rows = yield All("SELECT id FROM instances WHERE seen_at > ? ORDER BY id", (float(now - ttl),))
    return [r["id"] for r in rows]


@transaction
def forget_instance(instance_id: str) -> Op[None]:
    """An instance leaves (a clean shutdown, or found dead): its claims and leases are free."""
    yield Run("UPDATE conversations SET owner=NULL WHERE owner=?", (instance_id,))
    yield Run("DELETE FROM leases WHERE holder=?", (instance_id,))
    yield Run("DELETE FROM instances WHERE id=?", (instance_id,))


def forget_dead_instances(*, now: float, ttl: float) -> Op[list[str]]:
    """Remove the rows of instances silent for longer than ``ttl`` seconds (their claims lapse)."""
    rows = yield All("DELETE FROM instances WHERE seen_at <= ? RETURNING id", (float(now - ttl),))
    return [r["id"] for r in rows]


def claim_conversation(conversation_id: str, instance_id: str, *, now: float, ttl: float) -> Op[bool]:
    """Become the conversation's owner, unless a live instance is; True if this instance owns it."""
    n = yield Run("UPDATE conversations SET owner=? WHERE id=? AND (owner IS NULL OR owner=? OR owner NOT IN "
                  "(SELECT id FROM instances WHERE seen_at > ?))",
                  (instance_id, conversation_id, instance_id, float(now - ttl)))
    return n == 1  # type: ignore[no-any-return]


def stranded_conversations(*, now: float, ttl: float, older_than: float) -> Op[list[str]]:
    """Conversations with a message stored more than ``older_than`` seconds ago and not answered,
    that no live instance holds: what an instance that died left behind, oldest first."""
    rows = yield All(
        "SELECT m.conversation_id, MIN(m.id) AS first FROM messages m JOIN conversations c ON c.id = m.conversation_id "
        "WHERE m.direction='in' AND m.status='received' AND m.created_at <= ? AND (c.owner IS NULL OR c.owner NOT IN "
        "(SELECT id FROM instances WHERE seen_at > ?)) GROUP BY m.conversation_id ORDER BY first",
        (iso(datetime.fromtimestamp(now - older_than, timezone.utc)), float(now - ttl)))
    return [r["conversation_id"] for r in rows]


def release_conversation(conversation_id: str, instance_id: str) -> Op[None]:
    yield Run("UPDATE conversations SET owner=NULL WHERE id=? AND owner=?", (conversation_id, instance_id))


def conversation_owner(conversation_id: str) -> Op[str | None]:
    row = yield One("SELECT owner FROM conversations WHERE id=?", (conversation_id,))
    return row["owner"] if row else None


@transaction
def take_lease(name: str, holder: str, *, now: float, ttl: float) -> Op[bool]:
    """Hold the lease ``name`` for ``ttl`` seconds (renewing it if held already); True if held."""
    yield Run("INSERT INTO leases(name, holder, until) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
              "holder=excluded.holder, until=excluded.until WHERE leases.holder=excluded.holder OR leases.until < ?",
              (name, holder, float(now + ttl), float(now)))
    row = yield One("SELECT holder FROM leases WHERE name=?", (name,))
    return bool(row and row["holder"] == holder)


def release_lease(name: str, holder: str) -> Op[None]:
    yield Run("DELETE FROM leases WHERE name=? AND holder=?", (name, holder))


def rate_hit(key: str, *, now: float, window: float) -> Op[int]:
    """Count one hit on ``key`` in its current window of ``window`` seconds; the hits so far."""
    row = yield One(
        "INSERT INTO rate_limits(key, window_start, hits) VALUES (?, ?, 1) ON CONFLICT(key) DO UPDATE SET "
        "hits=CASE WHEN rate_limits.window_start <= ? THEN 1 ELSE rate_limits.hits + 1 END, "
        "window_start=CASE WHEN rate_limits.window_start <= ? THEN excluded.window_start "
        "ELSE rate_limits.window_start END RETURNING hits",
        (key, float(now), float(now - window), float(now - window)))
    return int(row["hits"])
