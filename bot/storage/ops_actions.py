"""Store operations of the desks' actions between agents (handoff/desk_actions.py, slack_commands.py).

* ``was_seen``: whether :func:`bot.storage.ops_chat.first_seen` recorded an id, without recording
  it. The Slack desk posts a web-desk note into a handoff's thread, then records it as seen
  (source ``slack-note``): a failed post is retried by the next sync, a posted one never repeated.
"""

from __future__ import annotations

from .sql import One, Op


def was_seen(source: str, event_id: str) -> Op[bool]:
    """Whether ``first_seen(source, event_id)`` was recorded before (records nothing)."""
    row = yield One("SELECT 1 AS x FROM seen_events WHERE source=? AND event_id=?", (source, event_id))
    return row is not None
