"""Store operations on the flow versions the bot served (schema 15, README "Changing flows on a
running bot").

``flow_versions`` keeps each version the bot served: its number (1, 2, ...; the highest is the
current one), the hash of its files, when and by whom it was loaded, a note (``rollback to 3``)
and the texts of its files (JSON ``{relative path: text}``). The texts are what a conversation
that started on an older version finishes on, and what a rollback serves again, whatever the
files on disk say by then.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .rows import iso, parse_iso
from .sql import All, Lock, One, Op, transaction


@dataclass(frozen=True, slots=True)
class FlowVersion:
    number: int
    hash: str
    loaded_at: datetime
    loaded_by: str
    note: str = ""
    files: dict[str, str] = field(default_factory=dict)   # empty in listings (flow_versions)

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "hash": self.hash, "loaded_at": self.loaded_at.isoformat(),
                "loaded_by": self.loaded_by, "note": self.note}


_COLS = "number, hash, loaded_at, loaded_by, note"


def _version(row: Any, *, files: bool = True) -> FlowVersion:
    return FlowVersion(number=int(row["number"]), hash=row["hash"], loaded_at=parse_iso(row["loaded_at"]),  # type: ignore[arg-type]
                       loaded_by=row["loaded_by"], note=row["note"] or "",
                       files=json.loads(row["files"]) if files else {})


@transaction
def add_flow_version(hash: str, files: dict[str, str], *, loaded_by: str, at: datetime,
                     note: str = "") -> Op[FlowVersion]:
    """Keep a new version (the next number): it becomes the current one. When the current one has
    the same hash already (the files did not change; two instances starting with the same files),
    that one is returned and nothing is written."""
    yield Lock("flow_versions")
    last = yield One(f"SELECT {_COLS}, files FROM flow_versions ORDER BY number DESC LIMIT 1")
    if last is not None and last["hash"] == hash:
        return _version(last)
    number = int(last["number"]) + 1 if last is not None else 1
    yield One(f"INSERT INTO flow_versions({_COLS}, files) VALUES (?, ?, ?, ?, ?, ?) RETURNING number",
              (number, hash, iso(at), loaded_by, note, json.dumps(files, sort_keys=True)))
    return FlowVersion(number, hash, at, loaded_by, note, dict(files))


def flow_version(number: int) -> Op[FlowVersion | None]:
    """Version ``number`` with its files' texts, or None."""
    row = yield One(f"SELECT {_COLS}, files FROM flow_versions WHERE number=?", (number,))
    return _version(row) if row else None


def latest_flow_version() -> Op[FlowVersion | None]:
    """The current version (the highest number) with its files' texts; None before the first."""
    row = yield One(f"SELECT {_COLS}, files FROM flow_versions ORDER BY number DESC LIMIT 1")
    return _version(row) if row else None


def flow_versions(limit: int = 50) -> Op[list[FlowVersion]]:
    """The last ``limit`` versions, newest first, without their texts."""
    rows = yield All(f"SELECT {_COLS} FROM flow_versions ORDER BY number DESC LIMIT ?", (limit,))
    return [_version(r, files=False) for r in rows]
