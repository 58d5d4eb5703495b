"""bot.storage.ops_actions on SQLite and PostgreSQL."""

from __future__ import annotations

from bot.storage import Store


async def test_was_seen_reads_first_seen_without_recording(store: Store) -> None:
    assert await store.was_seen("slack-note", "171.1/note_a") is False
    assert await store.was_seen("slack-note", "171.1/note_a") is False      # asking records nothing
    assert await store.first_seen("slack-note", "171.1/note_a") is True
    assert await store.was_seen("slack-note", "171.1/note_a") is True
    assert await store.was_seen("slack-note", "171.2/note_a") is False      # another thread
    assert await store.was_seen("slack-event", "171.1/note_a") is False     # another source
