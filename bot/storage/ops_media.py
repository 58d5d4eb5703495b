"""Store operations for uploaded files (photos of a damaged product, PDFs), kept in the database.

Every instance reads every file, whichever instance stored it: ``media`` holds the bytes
(BLOB on SQLite, BYTEA on PostgreSQL) beside the owner, name, type and size.
"""

from __future__ import annotations

from typing import Any

from .sql import One, Op, Run


def save_media(media_id: str, *, owner: str, name: str, mime: str, size: int, data: bytes,
               created_at: str) -> Op[bool]:
    """Keep a file; False (nothing changed) if ``media_id`` is stored already."""
    n = yield Run("INSERT INTO media(id, owner, name, mime, size, data, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                  "ON CONFLICT(id) DO NOTHING",
                  (media_id, owner, name, mime, int(size), bytes(data), created_at))
    return n == 1  # type: ignore[no-any-return]


def media_info(media_id: str) -> Op[dict[str, Any] | None]:
    """The file's id, owner, name, mime, size and created_at (not its bytes), or None."""
    row = yield One("SELECT id, owner, name, mime, size, created_at FROM media WHERE id=?", (media_id,))
    return dict(row) if row else None


def media_data(media_id: str) -> Op[bytes | None]:
    """The file's bytes, or None."""
    row = yield One("SELECT data FROM media WHERE id=?", (media_id,))
    return bytes(row["data"]) if row else None
