"""Files customers upload (photos of a damaged product), kept in the database.

Every file is a row of the ``media`` table (see :mod:`bot.storage.ops_media`): its bytes
and the owner it belongs to (``webchat:<visitor>``, ``telegram:<chat>``), so only its
owner's session and agents can read it, from any instance on the same database. No
instance reads or writes a local folder for them.

Versions before schema 11 kept each file as ``<id>`` with ``<id>.json`` beside it in
``storage.media_dir``; :meth:`MediaStore.import_files` copies those into the database
once at start-up (again later imports nothing new) and deletes nothing.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from bot.model import utcnow

log = logging.getLogger(__name__)

ALLOWED_MIME = ("image/jpeg", "image/png", "image/gif", "image/webp", "application/pdf")
_ID = re.compile(r"^att_[0-9a-f]{24}$")


@dataclass(frozen=True)
class MediaInfo:
    id: str
    owner: str
    name: str
    mime: str
    size: int

    @property
    def kind(self) -> str:
        return "image" if self.mime.startswith("image/") else "file"


class MediaBackend(Protocol):
    """The store operations media needs (every store has them: :mod:`bot.storage.ops_media`)."""

    async def save_media(self, media_id: str, *, owner: str, name: str, mime: str, size: int, data: bytes,
                         created_at: str) -> bool: ...
    async def media_info(self, media_id: str) -> dict[str, Any] | None: ...
    async def media_data(self, media_id: str) -> bytes | None: ...


def safe_name(name: str) -> str:
    return re.sub(r"[^\w.\- ]", "_", name)[:120] or "file"


class MediaStore:
    """Uploaded files in the store: ``await save(...)``, ``await info(id)``, ``await read(id)``."""

    def __init__(self, store: MediaBackend) -> None:
        self.store = store

    async def save(self, data: bytes, *, owner: str, name: str, mime: str) -> MediaInfo:
        mid = "att_" + secrets.token_hex(12)
        info = MediaInfo(mid, owner, safe_name(name), mime, len(data))
        await self.store.save_media(mid, owner=owner, name=info.name, mime=mime, size=info.size, data=data,
                                    created_at=utcnow().isoformat())
        return info

    async def info(self, mid: object) -> MediaInfo | None:
        """The file's owner, name, type and size; None for an unknown or malformed id."""
        if not isinstance(mid, str) or not _ID.match(mid):
            return None
        row = await self.store.media_info(mid)
        if row is None:
            return None
        return MediaInfo(row["id"], row["owner"], row["name"], row["mime"], int(row["size"]))

    async def read(self, mid: object) -> bytes | None:
        """The file's bytes; None for an unknown or malformed id."""
        if not isinstance(mid, str) or not _ID.match(mid):
            return None
        return await self.store.media_data(mid)

    async def import_files(self, root: Path) -> int:
        """Copy the files an older omnibot kept in ``root`` into the store; how many were new.

        Idempotent (a file stored already is skipped) and read-only on ``root``: nothing
        is deleted there. A file without readable metadata, or whose size does not match,
        is left out with a warning.
        """
        if not root.is_dir():
            return 0
        imported = 0
        for meta in sorted(root.glob("att_*.json")):
            mid = meta.name[:-len(".json")]
            blob = root / mid
            if not _ID.match(mid) or not blob.is_file():
                continue
            try:
                fields = json.loads(meta.read_text())
                data = blob.read_bytes()
                owner, name, mime = str(fields["owner"]), str(fields["name"]), str(fields["mime"])
                created = datetime.fromtimestamp(blob.stat().st_mtime, timezone.utc)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("media file %s not imported: %s", blob, exc)
                continue
            if await self.store.save_media(mid, owner=owner, name=safe_name(name), mime=mime, size=len(data),
                                           data=data, created_at=created.isoformat()):
                imported += 1
        if imported:
            log.info("imported %d files from %s", imported, root)
        return imported


def sniff_mime(data: bytes, name: str) -> str:
    """The type from the file's first bytes (the browser's claim is not trusted)."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


class UploadRefused(Exception):
    """An upload answered ``status`` with ``{"error": reason}``; nothing is kept."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def read_upload(request: web.Request, limit: int) -> tuple[bytes, str]:
    """The bytes and name of the multipart field ``file``, or UploadRefused (400/413)."""
    if not request.content_type.startswith("multipart/"):
        raise UploadRefused(400, "send multipart/form-data with a field named file")
    try:
        reader = await request.multipart()
        part = await reader.next()
        while part is not None and getattr(part, "name", None) != "file":
            part = await reader.next()
        if part is None or not isinstance(part, BodyPartReader):
            raise UploadRefused(400, "no field named file")
        data = bytearray()
        while chunk := await part.read_chunk(64 * 1024):
            data += chunk
            if len(data) > limit:
                raise UploadRefused(413, f"file is larger than {limit // 1024} KiB")
        # The rest of the body must parse too: a body cut short is not a file we trust.
        while await reader.next() is not None:
            pass
    except UploadRefused:
        raise
    except (ValueError, AssertionError, RuntimeError, HttpProcessingError) as exc:
        raise UploadRefused(400, f"malformed multipart body ({type(exc).__name__})") from None
    except ConnectionResetError:
        # The client stopped sending mid-body; the answer likely never reaches it.
        raise UploadRefused(400, "the body ended early") from None
    if not data:
        raise UploadRefused(400, "the file is empty")
    return bytes(data), part.filename or "upload"
