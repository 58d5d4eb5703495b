"""Web chat input at and past its limits, malformed uploads, and a store that cannot write.

Limits (docs/protocols.md): frames up to ``webchat.max_frame_bytes`` are read; larger ones up to
the hard cap (4 x max_frame_bytes) get a ``too_large`` error frame and the socket stays open;
past the hard cap the socket is closed with 1009. A message's text is at most 4000 characters.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import uuid
from typing import Any

import aiohttp
import pytest

from bot.config import Config
from bot.storage.admin import sqlite_path
from conftest import Running
from e2e.bad_input import StoreOutage, errors, post_cut_off, stored_messages, warnings
from e2e.chat import ChatClient
from e2e.test_widget_browser import page  # noqa: F401 (the Chromium page fixture)

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4"
       b"\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7V\xbd\xfa\x00\x00\x00\x00IEND\xaeB`\x82")
MAX_TEXT_CHARS = 4000


def message_frame(size: int, client_id: str, text: str = "when are you open?") -> str:
    """A valid message frame of exactly ``size`` UTF-8 bytes (padded with JSON whitespace)."""
    frame = json.dumps({"type": "message", "client_id": client_id, "text": text})
    assert len(frame) <= size
    return frame[:-1] + " " * (size - len(frame)) + "}"


def media_files(config: Config) -> list[str]:
    """The uploads kept: rows of the media table (and no file in storage.media_dir, ever)."""
    root = config.resolve(config.storage.media_dir)
    assert not (root.exists() and any(root.iterdir())), "an upload was written to a local folder"
    con = sqlite3.connect(f"file:{sqlite_path(config.storage_url())}?mode=ro", uri=True)
    try:
        return [r[0] for r in con.execute("SELECT id FROM media ORDER BY id")]
    finally:
        con.close()


async def test_frames_at_each_size(running: Running, config: Config) -> None:
    limit = config.webchat.max_frame_bytes
    hard = 4 * limit
    c = ChatClient(running.http, running.ws_url)
    await c.connect()
    assert c.ws is not None
    try:
        for size, expected in [(limit - 1, "ack"), (limit, "ack"), (limit + 1, "too_large"),
                               (2 * limit, "too_large"), (hard, "too_large")]:
            cid = f"size-{size}"
            raw = message_frame(size, cid)
            assert len(raw.encode()) == size
            await c.ws.send_str(raw)
            f = await c.expect(lambda f: f.get("client_id") == cid)
            assert (f["type"] if f["type"] == "ack" else f["code"]) == expected, (size, f)
        assert not c.ws.closed
        # the socket is still usable after every refusal
        [m] = await c.say("when are you open?")
        assert "Monday to Friday" in m["text"]
        # past the hard cap: closed with 1009 "message too big"
        await c.ws.send_str(message_frame(hard + 1, "too-big"))
        await asyncio.wait_for(c._reader, 5)          # the server closed the socket
        assert c.ws.closed and c.ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        assert not [f for f in c.frames if f.get("client_id") == "too-big"]
    finally:
        await c.close()
    conv = await running.services.store.latest_conversation("webchat",
                                                            running.services.webchat.signer.verify(c.token))
    texts = [m.text for m in await running.services.store.history(conv.id) if m.direction == "in"]
    assert len(texts) == 3          # limit - 1, limit, and the last say()


async def test_text_limit_is_answered_not_cut(running: Running) -> None:
    c = ChatClient(running.http, running.ws_url)
    await c.connect()
    assert c.ws is not None
    try:
        ok = await c.send("a" * MAX_TEXT_CHARS)
        assert ok["type"] == "ack"
        refused = await c.send("b" * (MAX_TEXT_CHARS + 1), client_id="long-1")
        assert refused["type"] == "error" and refused["code"] == "too_large"
        assert refused["client_id"] == "long-1" and str(MAX_TEXT_CHARS) in refused["message"]
        # characters, not bytes: 4000 four-byte characters, sent as UTF-8 JSON as the widget does
        # (JSON.stringify), fit in one frame of the default 16 KiB
        await c.ws.send_str(json.dumps({"type": "message", "client_id": "emoji-1", "text": "😀" * MAX_TEXT_CHARS},
                                       ensure_ascii=False))
        ok = await c.expect(lambda f: f.get("client_id") == "emoji-1")
        assert ok["type"] == "ack", ok
    finally:
        await c.close()
    conv = await running.services.store.latest_conversation("webchat",
                                                            running.services.webchat.signer.verify(c.token))
    stored = [m.text for m in await running.services.store.history(conv.id) if m.direction == "in"]
    assert stored == ["a" * MAX_TEXT_CHARS, "😀" * MAX_TEXT_CHARS]          # whole, not cut


async def _upload_raw(r: Running, token: str, body: bytes, content_type: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    async with r.http.post(r.url + "/webchat/upload", data=body, headers=headers) as resp:
        text = await resp.text()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text


def _multipart(boundary: str, name: str = "file", data: bytes = PNG, close: bool = True) -> bytes:
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"a.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + data + b"\r\n"
    return body + (f"--{boundary}--\r\n".encode() if close else b"")


async def test_malformed_uploads_get_4xx_with_a_json_error(running: Running, config: Config,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    r = running
    caplog.set_level(logging.INFO)
    c = ChatClient(r.http, r.ws_url)
    await c.connect()
    await c.close()
    token = c.token or ""
    b = "XyZ" + uuid.uuid4().hex
    mp = f"multipart/form-data; boundary={b}"
    cases: list[tuple[str, bytes, str | None]] = [
        ("JSON instead of multipart", b'{"file": "x"}', "application/json"),
        ("no content type", _multipart(b), None),
        ("multipart without a boundary", _multipart(b), "multipart/form-data"),
        ("boundary that is not in the body", _multipart(b), "multipart/form-data; boundary=other"),
        ("garbage body", b"\x00\x01\x02 not multipart at all", mp),
        ("empty body", b"", mp),
        ("truncated inside the file", _multipart(b)[:150], mp),
        ("no closing boundary", _multipart(b, close=False), mp),
        ("part without headers end", f"--{b}\r\nContent-Disposition: form-data; name=file".encode(), mp),
        ("no field named file", _multipart(b, name="photo"), mp),
        ("empty file", _multipart(b, data=b""), mp),
        ("not an image or PDF", _multipart(b, data=b"MZ\x90\x00 an exe"), mp),
    ]
    for name, body, ctype in cases:
        caplog.clear()
        status, answer = await _upload_raw(r, token, body, ctype)
        assert 400 <= status < 500, (name, status, answer)
        assert isinstance(answer, dict) and isinstance(answer.get("error"), str), (name, answer)
        assert errors(caplog) == [], name
        assert media_files(config) == [], name
    # and a good one still works
    form = aiohttp.FormData()
    form.add_field("file", PNG, filename="a.png", content_type="image/png")
    async with r.http.post(r.url + "/webchat/upload", data=form, headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200 and (await resp.json())["kind"] == "image"


async def test_upload_cut_off_mid_transfer_stores_nothing(running: Running, config: Config,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """The client promises more bytes than it sends, then stops sending (half-close)."""
    r = running
    caplog.set_level(logging.INFO)
    c = ChatClient(r.http, r.ws_url)
    await c.connect()
    await c.close()
    b = "cut" + uuid.uuid4().hex
    answer = await post_cut_off(r, "/webchat/upload", {"Authorization": f"Bearer {c.token}",
                                                       "Content-Type": f"multipart/form-data; boundary={b}"},
                                _multipart(b))
    # aiohttp drops the connection when the client stops sending mid-body, so an answer (400)
    # may not reach it; what matters is that nothing is kept and nothing crashed.
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:300]
    assert media_files(config) == []
    assert errors(caplog) == []


async def test_upload_when_the_disk_is_full_is_503(running: Running, config: Config,
                                                   caplog: pytest.LogCaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    r = running
    caplog.set_level(logging.INFO)
    c = ChatClient(r.http, r.ws_url)
    await c.connect()
    await c.close()

    def disk_full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(r.services.webchat.media, "save", disk_full)
    form = aiohttp.FormData()
    form.add_field("file", PNG, filename="a.png", content_type="image/png")
    async with r.http.post(r.url + "/webchat/upload", data=form,
                           headers={"Authorization": f"Bearer {c.token}"}) as resp:
        assert resp.status == 503 and int(resp.headers["Retry-After"]) > 0
        assert isinstance((await resp.json())["error"], str)
    assert errors(caplog) == []
    assert len(warnings(caplog, "connectors.webchat")) == 1


async def test_message_not_stored_is_not_acknowledged(running: Running, caplog: pytest.LogCaptureFixture) -> None:
    r = running
    caplog.set_level(logging.INFO)
    outage = StoreOutage(r)
    c = ChatClient(r.http, r.ws_url)
    await c.connect()
    assert c.ws is not None
    try:
        await outage.start()
        try:
            for _ in range(2):
                f = await c.send("when are you open?", client_id="keep-1")
                assert f == {"type": "error", "code": "unavailable", "client_id": "keep-1",
                             "message": f["message"]}
            assert not c.ws.closed and stored_messages(r) == 0
            assert not [f for f in c.frames if f["type"] == "ack"]
        finally:
            await outage.end()
        # the client resends the same client_id later: stored once, acknowledged, answered
        ack = await c.send("when are you open?", client_id="keep-1")
        assert ack["type"] == "ack" and ack["duplicate"] is False
        m = await c.reply()
        assert "Monday to Friday" in m["text"]
        assert stored_messages(r) == 1
    finally:
        await c.close()
    assert errors(caplog) == []
    assert len(warnings(caplog, "connectors.webchat")) == 2


async def test_widget_resends_what_the_server_could_not_store(running: Running, page: Any,  # noqa: F811
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """The real widget in Chromium: an ``unavailable`` message stays pending and is sent again
    (same client_id) until it is stored; a text over the limit is refused before sending."""
    from playwright.async_api import expect

    r = running
    caplog.set_level(logging.INFO)
    await page.goto(r.url + "/?chat=open")
    root = page.locator("#omnibot-root")
    await expect(root.locator("#omnibot-status")).to_have_text("online", timeout=10_000)
    outage = StoreOutage(r)
    await outage.start()
    try:
        await root.locator("#omnibot-input").fill("when are you open?")
        await root.locator("#omnibot-send").click()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while not warnings(caplog, "connectors.webchat") and loop.time() < deadline:
            await asyncio.sleep(0.02)
        assert len(warnings(caplog, "connectors.webchat")) == 1      # refused once, not acknowledged
        mine = root.locator(".omnibot-msg.omnibot-customer").last
        await expect(mine).to_have_attribute("data-status", "sending")
    finally:
        await outage.end()
    # the widget sends it again by itself (same client_id) and it goes through
    await expect(mine).to_have_attribute("data-status", "sent", timeout=10_000)
    await expect(root.locator(".omnibot-msg.omnibot-bot .omnibot-text").last).to_contain_text("Monday to Friday")
    assert stored_messages(r) == 1
    assert await root.locator(".omnibot-retry").count() == 0          # never shown as failed

    await root.locator("#omnibot-input").fill("x" * (MAX_TEXT_CHARS + 1))
    await root.locator("#omnibot-send").click()
    await expect(root.locator(".omnibot-notice").last).to_contain_text(f"at most {MAX_TEXT_CHARS} characters")
    assert await root.locator(".omnibot-msg.omnibot-customer").count() == 1
    assert stored_messages(r) == 1
