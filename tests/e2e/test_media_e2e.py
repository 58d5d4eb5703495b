"""Uploads kept in the database: fetched through the real web chat, served by any instance,
and files of versions before schema 11 imported from ``storage.media_dir`` once."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import aiohttp
import pytest

from bot.config import Config
from conftest import Running, agent_headers, make_config, start_app, stop_app
from e2e.chat import ChatClient

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4"
       b"\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7V\xbd\xfa\x00\x00\x00\x00IEND\xaeB`\x82")
PDF = b"%PDF-1.4\n% a receipt\n" + b"x" * 300


async def upload(r: Running, token: str, data: bytes, name: str) -> dict:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=name, content_type="application/octet-stream")
    async with r.http.post(r.url + "/webchat/upload", data=form,
                           headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()  # type: ignore[no-any-return]


async def fetch(r: Running, url: str, **kw: object) -> tuple[int, bytes, dict[str, str]]:
    async with r.http.get(r.url + url, **kw) as resp:  # type: ignore[arg-type]
        return resp.status, await resp.read(), dict(resp.headers)


async def test_upload_and_fetch_through_the_web_chat(running: Running, config: Config) -> None:
    r = running
    alice = ChatClient(r.http, r.ws_url)
    await alice.connect()
    up = await upload(r, alice.token or "", PNG, "box.png")
    assert up["kind"] == "image" and up["mime"] == "image/png" and up["size"] == len(PNG)
    assert up["name"] == "box.png" and up["url"] == f"/media/{up['id']}"
    doc = await upload(r, alice.token or "", PDF, "receipt.pdf")
    assert doc["kind"] == "file"

    status, body, headers = await fetch(r, up["url"], params={"token": alice.token})
    assert (status, body) == (200, PNG)
    assert headers["Content-Type"] == "image/png" and headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Disposition"] == 'inline; filename="box.png"'
    assert headers["Cache-Control"] == "private, max-age=3600"
    status, body, headers = await fetch(r, doc["url"], params={"token": alice.token})
    assert (status, body) == (200, PDF)
    assert headers["Content-Disposition"] == 'attachment; filename="receipt.pdf"'

    # agents read it; nobody else does
    status, body, _ = await fetch(r, up["url"], headers=agent_headers())
    assert (status, body) == (200, PNG)
    bob = ChatClient(r.http, r.ws_url)
    await bob.connect()
    assert (await fetch(r, up["url"], params={"token": bob.token}))[0] == 403
    assert (await fetch(r, up["url"]))[0] == 403
    assert (await fetch(r, "/media/att_" + "0" * 24, params={"token": alice.token}))[0] == 404
    assert (await fetch(r, "/media/../../etc/passwd", params={"token": alice.token}))[0] == 404
    # ...nor attaches it to a message
    refused = await bob.send("look", attachments=[{"id": up["id"]}])
    assert refused["type"] == "error" and refused["code"] == "bad_frame"

    # the message carries it; nothing was written to a local folder
    ack = await alice.send("here", attachments=[{"id": up["id"]}])
    assert ack["type"] == "ack"
    media_dir = config.resolve(config.storage.media_dir)
    assert not media_dir.exists() or not any(media_dir.iterdir())
    await alice.close()
    await bob.close()


def old_file(root: Path, mid: str, data: bytes, *, owner: str, name: str, mime: str) -> None:
    """A file as versions before schema 11 kept it: ``<id>`` with ``<id>.json`` beside it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / mid).write_bytes(data)
    (root / f"{mid}.json").write_text(json.dumps({"id": mid, "owner": owner, "name": name, "mime": mime,
                                                  "size": len(data)}))


async def test_files_of_older_versions_are_imported_once(config: Config, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.media")
    root = config.resolve(config.storage.media_dir)
    old_file(root, "att_" + "a" * 24, PNG, owner="webchat:v_old", name="old.png", mime="image/png")
    old_file(root, "att_" + "b" * 24, PDF, owner="telegram:42", name="doc.pdf", mime="application/pdf")
    (root / "stray.tmp").write_bytes(b"not a media file")
    before = sorted(p.name for p in root.iterdir())

    r = await start_app(config)
    try:
        assert [m.getMessage() for m in caplog.records if "imported" in m.getMessage()] == \
            [f"imported 2 files from {root}"]
        status, body, headers = await fetch(r, "/media/att_" + "a" * 24, headers=agent_headers())
        assert (status, body, headers["Content-Type"]) == (200, PNG, "image/png")
        info = await r.services.webchat.media.info("att_" + "b" * 24)  # type: ignore[union-attr]
        assert info is not None and (info.owner, info.name, info.size) == ("telegram:42", "doc.pdf", len(PDF))
    finally:
        await stop_app(r)
    assert sorted(p.name for p in root.iterdir()) == before     # nothing deleted

    caplog.clear()
    r = await start_app(config)          # again: nothing new to import, the files still served
    try:
        assert not [m for m in caplog.records if "imported" in m.getMessage()]
        assert (await fetch(r, "/media/att_" + "b" * 24, headers=agent_headers()))[1] == PDF
    finally:
        await stop_app(r)


async def test_any_instance_serves_an_upload(tmp_path: Path, pg_url: str) -> None:
    """Two instances on one PostgreSQL: a file uploaded to one is fetched from the other."""
    configs = []
    for name in ("a", "b"):
        cfg = make_config(tmp_path / name)
        configs.append(cfg.model_copy(update={"storage": cfg.storage.model_copy(update={"url": pg_url})}))
    a = await start_app(configs[0])
    try:
        b = await start_app(configs[1])
        try:
            c = ChatClient(a.http, a.ws_url)
            await c.connect()
            up = await upload(a, c.token or "", PNG, "p.png")
            await c.close()
            status, body, _ = await fetch(b, up["url"], params={"token": c.token})
            assert (status, body) == (200, PNG)
        finally:
            await stop_app(b)
    finally:
        await stop_app(a)
