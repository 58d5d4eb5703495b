"""Files customers upload (photos of a damaged product), kept on disk.

Each file is ``<id>`` with a ``<id>.json`` beside it naming its owner, so
only its owner's session and agents can read it.
"""

from __future__ import annotations

import json
import mimetypes
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

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


class MediaStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def save(self, data: bytes, *, owner: str, name: str, mime: str) -> MediaInfo:
        self.root.mkdir(parents=True, exist_ok=True)
        mid = "att_" + secrets.token_hex(12)
        safe_name = re.sub(r"[^\w.\- ]", "_", name)[:120] or "file"
        (self.root / mid).write_bytes(data)
        info = MediaInfo(mid, owner, safe_name, mime, len(data))
        (self.root / f"{mid}.json").write_text(json.dumps(info.__dict__))
        return info

    def info(self, mid: str) -> MediaInfo | None:
        if not _ID.match(mid or ""):
            return None
        meta = self.root / f"{mid}.json"
        if not meta.exists():
            return None
        return MediaInfo(**json.loads(meta.read_text()))

    def path(self, mid: str) -> Path:
        return self.root / mid


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
