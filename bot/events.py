"""In-process notifications: the agent desk and the web chat listen here.

Events are hints to re-read storage ("something changed"), never the only
copy of anything: a listener that misses one loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Event:
    kind: str                      # queued | claimed | message | resolved | returned | state | sla | delivery_failed | csat
    #                                | language (the conversation's language changed: data language, channel, external_id)
    conversation_id: str
    handoff_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    remote: bool = field(default=False, compare=False)   # published by another instance (bot.events_pg)


class EventBus:
    """Fan-out to any number of subscribers, each with a bounded queue."""

    #: Whether events also reach other instances (:class:`bot.events_pg.PgEventBus`).
    shared = False

    def __init__(self, *, maxsize: int = 1000) -> None:
        self._subs: set[asyncio.Queue[Event]] = set()
        self._maxsize = maxsize

    def subscribe(self) -> asyncio.Queue[Event]:
        q: asyncio.Queue[Event] = asyncio.Queue(self._maxsize)
        self._subs.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[Event]) -> None:
        self._subs.discard(q)

    def publish(self, event: Event) -> None:
        for q in list(self._subs):
            try:
                q.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("event subscriber is %d events behind; dropping %s", q.qsize(), event.kind)
