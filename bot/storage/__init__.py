"""Storage: one protocol, chosen by URL in :func:`open_store`.

The SQLite backend is the embedded default. Every backend keeps the same
invariants: inbound messages are unique on (channel, platform_message_id),
a turn (replies + flow state + inbound marked processed) commits as one
transaction, and handoff transitions are compare-and-set.
"""

from __future__ import annotations

from .base import (HandoffRecord, HandoffSpec, InboundResult, OutboxItem, Ticket, TicketChange,
                   TicketFollowedUp, TicketResolved, TurnBasis)
from .operations import Store
from .sqlite import SqliteStore

__all__ = ["HandoffRecord", "HandoffSpec", "InboundResult", "OutboxItem", "Store", "SqliteStore", "Ticket",
           "TicketChange", "TicketFollowedUp", "TicketResolved", "TurnBasis", "open_store"]


async def open_store(url: str, **options: object) -> Store:
    """Open (and migrate) the store named by ``url``.

    Args:
        url: ``sqlite:///path/to/file.db``, ``sqlite:///:memory:``, a plain path, or
            ``postgresql://user:password@host:port/database`` (several instances).
        **options: backend options (``synchronous`` for SQLite, ``pool_size`` for PostgreSQL).

    Raises:
        ConfigError: for an unknown scheme.
    """
    from bot.errors import ConfigError

    if url.startswith("sqlite://"):
        path = url[len("sqlite://"):]
        path = path[1:] if path.startswith("/") else path
        store = SqliteStore(path or ":memory:", **options)  # type: ignore[arg-type]
    elif "://" not in url:
        store = SqliteStore(url, **options)  # type: ignore[arg-type]
    elif url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        options.pop("synchronous", None)   # SQLite's own
        store = PostgresStore(url, **options)  # type: ignore[arg-type]
    else:
        raise ConfigError(f"unsupported storage url {url.split('://')[0]}://; use sqlite:///path or "
                          "postgresql://user:password@host:port/database",
                          key="storage.url")
    await store.open()
    return store
