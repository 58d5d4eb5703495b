"""Uploaded files in the store (bot.media over bot.storage.ops_media), on both backends."""

from __future__ import annotations

import json
from pathlib import Path

from bot.media import MediaStore
from bot.storage import Store

BLOB = bytes(range(256)) * 64 + b"\x00\xff"     # every byte value, NULs included


async def test_save_info_read(store: Store) -> None:
    media = MediaStore(store)  # type: ignore[arg-type]
    info = await media.save(BLOB, owner="webchat:v1", name="a/b\\c<d>.png", mime="image/png")
    assert info.id.startswith("att_") and len(info.id) == 28
    assert (info.owner, info.name, info.mime, info.size, info.kind) == (
        "webchat:v1", "a_b_c_d_.png", "image/png", len(BLOB), "image")
    assert await media.info(info.id) == info
    assert await media.read(info.id) == BLOB
    row = await store.media_info(info.id)  # type: ignore[attr-defined]
    assert row is not None and "data" not in row and row["created_at"]
    other = await media.save(b"%PDF-1", owner="telegram:7", name="", mime="application/pdf")
    assert other.id != info.id and other.name == "file" and other.kind == "file"
    # unknown and malformed ids: None, never a query with them
    for bad in ("att_" + "0" * 24, "att_x", "../etc/passwd", "", None, 42, {"id": 1}):
        assert await media.info(bad) is None and await media.read(bad) is None


async def test_save_media_keeps_the_first(store: Store) -> None:
    args = dict(owner="webchat:v1", name="x.png", mime="image/png", size=3, created_at="2026-01-01T00:00:00+00:00")
    assert await store.save_media("att_" + "1" * 24, data=b"one", **args) is True  # type: ignore[attr-defined]
    assert await store.save_media("att_" + "1" * 24, data=b"two", **args) is False  # type: ignore[attr-defined]
    assert await store.media_data("att_" + "1" * 24) == b"one"  # type: ignore[attr-defined]


async def test_import_files_once(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "media"
    root.mkdir()
    good = "att_" + "c" * 24
    (root / good).write_bytes(BLOB)
    (root / f"{good}.json").write_text(json.dumps({"id": good, "owner": "webchat:v9", "name": "p.png",
                                                   "mime": "image/png", "size": len(BLOB)}))
    broken = "att_" + "d" * 24
    (root / broken).write_bytes(b"x")
    (root / f"{broken}.json").write_text("{not json")
    (root / ("att_" + "e" * 24 + ".json")).write_text("{}")    # metadata without its file
    media = MediaStore(store)  # type: ignore[arg-type]
    assert await media.import_files(root) == 1
    assert await media.import_files(root) == 0
    assert await media.import_files(tmp_path / "absent") == 0
    info = await media.info(good)
    assert info is not None and (info.owner, info.name, info.size) == ("webchat:v9", "p.png", len(BLOB))
    assert await media.read(good) == BLOB
    assert await media.info(broken) is None
    assert (root / good).exists() and (root / f"{good}.json").exists()
