"""Telegram input that is not what the Bot API promises, and a store that cannot write.

A wrongly shaped update is refused with 400 (webhook) or skipped and confirmed (polling),
with one WARNING and no traceback; an update that could not be stored is never confirmed
(webhook: 503 + Retry-After, polling: the offset stays, the poller backs off and retries).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from conftest import Running, start_app, stop_app
from e2e.bad_input import StoreOutage, errors, post_cut_off, stored_messages, warnings
from e2e.apps import SECRET, fake_server, tg_config
from e2e.test_telegram import to_chat
from fakes.telegram_api import FakeTelegram, callback_update, deliver_webhook, photo_update, text_update

fake = fake_server(FakeTelegram)
LOGGER = "connectors.telegram"
HOOK_HEADERS = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}


def _good(chat: int = 2002, text: str = "what payment methods do you accept") -> dict[str, Any]:
    return text_update(chat, text)


def _with(path: str, value: Any, *, drop: bool = False) -> dict[str, Any]:
    """A good text update with one field (dotted path) replaced or removed."""
    upd = copy.deepcopy(_good())
    *parents, last = path.split(".")
    node = upd
    for p in parents:
        node = node[p]
    if drop:
        node.pop(last)
    else:
        node[last] = value
    return upd


def _cq_with(path: str, value: Any) -> dict[str, Any]:
    upd = callback_update(2002, "product", message_id=1)
    *parents, last = path.split(".")
    node = upd
    for p in parents:
        node = node[p]
    node[last] = value
    return upd


# (name, raw body): every one passes the secret check and is not a Telegram update.
MALFORMED: list[tuple[str, bytes]] = [
    ("not JSON", b"{oops"),
    ("not UTF-8", b'{"update_id": 1, "message": "\xff\xfe"}'),
    ("JSON array", b"[1, 2]"),
    ("JSON string", b'"update"'),
    ("nested too deep", b"[" * 100_000 + b"]" * 100_000),
    ("no update_id", json.dumps({k: v for k, v in _good().items() if k != "update_id"}).encode()),
    ("update_id a string", json.dumps(_with("update_id", "7")).encode()),
    ("message a number", json.dumps(_with("message", 5)).encode()),
    ("message a list", json.dumps(_with("message", [1, 2])).encode()),
    ("from a string", json.dumps(_with("message.from", "Ann")).encode()),
    ("chat missing", json.dumps(_with("message.chat", None, drop=True)).encode()),
    ("chat a string", json.dumps(_with("message.chat", "2002")).encode()),
    ("chat id a string", json.dumps(_with("message.chat.id", "two")).encode()),
    ("chat type missing", json.dumps(_with("message.chat.type", None, drop=True)).encode()),
    ("message_id a string", json.dumps(_with("message.message_id", "abc")).encode()),
    ("date missing", json.dumps(_with("message.date", None, drop=True)).encode()),
    ("date a string", json.dumps(_with("message.date", "today")).encode()),
    ("text a number", json.dumps(_with("message.text", 5)).encode()),
    ("text an object", json.dumps(_with("message.text", {"a": 1})).encode()),
    ("caption a list", json.dumps(_with("message.caption", ["x"])).encode()),
    ("photo a string", json.dumps(_with("message.photo", "PHOTO1")).encode()),
    ("photo without file_id", json.dumps(_with("message.photo", [{"width": 1, "height": 1}])).encode()),
    ("document a string", json.dumps(_with("message.document", "DOC1")).encode()),
    ("document name a list", json.dumps(_with("message.document", {"file_id": "D", "file_unique_id": "u",
                                                                    "file_name": ["a"]})).encode()),
    ("callback_query a string", json.dumps({"update_id": 99, "callback_query": "x"}).encode()),
    ("callback from missing", json.dumps(_cq_with("callback_query.from", None)).encode()),
    ("callback data a number", json.dumps(_cq_with("callback_query.data", 17)).encode()),
    ("callback id a number", json.dumps(_cq_with("callback_query.id", 17)).encode()),
]


@pytest.fixture
async def webhook_app(tmp_path: Path, fake: FakeTelegram) -> AsyncIterator[Running]:
    r = await start_app(tg_config(tmp_path, fake, mode="webhook"))
    try:
        yield r
    finally:
        await stop_app(r)


@pytest.fixture
async def polling_app(tmp_path: Path, fake: FakeTelegram) -> AsyncIterator[Running]:
    r = await start_app(tg_config(tmp_path, fake))
    try:
        yield r
    finally:
        await stop_app(r)


async def test_malformed_webhook_updates_get_400_and_one_warning(webhook_app: Running, fake: FakeTelegram,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    r = webhook_app
    caplog.set_level(logging.INFO)
    hook = r.url + "/telegram/webhook"
    for name, body in MALFORMED:
        caplog.clear()
        async with r.http.post(hook, data=body, headers=HOOK_HEADERS) as resp:
            status, answer = resp.status, await resp.text()
        assert status == 400, (name, status, answer[:200])
        assert "error" in json.loads(answer), name
        assert errors(caplog) == [], name
        assert len(warnings(caplog, LOGGER)) == 1, (name, warnings(caplog, LOGGER))
    await asyncio.sleep(0.1)
    assert stored_messages(r) == 0
    assert fake.calls_to("sendMessage") == []
    # the endpoint still works for a well-formed update
    assert await deliver_webhook(r.http, hook, _good(), SECRET) == 200
    assert stored_messages(r) == 1
    await fake.wait_for("sendMessage", predicate=to_chat(2002, text="PayPal"))


async def test_webhook_request_cut_off_mid_body(webhook_app: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    answer = await post_cut_off(webhook_app, "/telegram/webhook", HOOK_HEADERS, json.dumps(_good()).encode())
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:300]
    assert stored_messages(webhook_app) == 0
    assert errors(caplog) == []


async def test_polling_skips_malformed_updates_and_confirms_them(polling_app: Running, fake: FakeTelegram,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    r = polling_app
    caplog.set_level(logging.INFO)
    bad = [_with("message", 5), _with("message.chat", None, drop=True), _with("message.text", 5),
           _cq_with("callback_query", "x")]
    ids = [fake.push_update(u) for u in bad]
    good_id = fake.push_update(_good(3003, "when are you open?"))
    await fake.wait_for("sendMessage", predicate=to_chat(3003, text="Monday to Friday"))
    # every one confirmed: the next getUpdates carries an offset past them all
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while fake.confirmed_offset <= good_id and loop.time() < deadline:
        await asyncio.sleep(0.05)
    assert fake.confirmed_offset == good_id + 1 and max(ids) < good_id
    assert fake.updates == []
    assert errors(caplog) == []
    skipped = warnings(caplog, LOGGER)
    assert len(skipped) == len(bad) and all(str(i) in w for i, w in zip(ids, skipped)), skipped
    assert stored_messages(r) == 1
    # the poller is alive and keeps answering
    fake.push_update(_good(3003, "what payment methods do you accept"))
    await fake.wait_for("sendMessage", predicate=to_chat(3003, text="PayPal"))


async def test_webhook_answers_503_when_the_store_cannot_write(webhook_app: Running, fake: FakeTelegram,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    r = webhook_app
    caplog.set_level(logging.INFO)
    outage = StoreOutage(r)
    hook = r.url + "/telegram/webhook"
    upd = _good()
    await outage.start()
    try:
        async with r.http.post(hook, data=json.dumps(upd).encode(), headers=HOOK_HEADERS) as resp:
            assert resp.status == 503
            assert int(resp.headers["Retry-After"]) > 0
        assert stored_messages(r) == 0
    finally:
        await outage.end()
    assert errors(caplog) == []
    assert len(warnings(caplog, LOGGER)) == 1
    # Telegram delivers it again; now the store writes, and it is answered once
    assert await deliver_webhook(r.http, hook, upd, SECRET) == 200
    assert stored_messages(r) == 1
    await fake.wait_for("sendMessage", predicate=to_chat(2002, text="PayPal"))
    await asyncio.sleep(0.3)
    assert len(fake.calls_to("sendMessage")) == 1


async def test_webhook_photo_that_cannot_be_saved_is_503(webhook_app: Running, fake: FakeTelegram,
                                                         caplog: pytest.LogCaptureFixture,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    r = webhook_app
    caplog.set_level(logging.INFO)
    fake.add_file("PHOTO1", b"\x89PNG\r\n\x1a\n" + b"0" * 64, file_path="photos/file_1.png")
    connector = r.services.connectors["telegram"]

    def disk_full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(connector.media, "save", disk_full)
    status = await deliver_webhook(r.http, r.url + "/telegram/webhook", photo_update(2002, "PHOTO1"), SECRET)
    assert status == 503
    assert stored_messages(r) == 0
    assert errors(caplog) == []


async def test_polling_does_not_confirm_what_it_could_not_store(polling_app: Running, fake: FakeTelegram,
                                                                caplog: pytest.LogCaptureFixture,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    r = polling_app
    caplog.set_level(logging.INFO)
    connector = r.services.connectors["telegram"]
    monkeypatch.setattr(connector, "store_retry_delays", (0.2, 2.0))
    outage = StoreOutage(r)

    def refusals() -> list[logging.LogRecord]:
        return [x for x in caplog.records if x.name == LOGGER and x.levelno == logging.WARNING
                and "not stored" in x.getMessage()]

    await outage.start()
    try:
        uid = fake.push_update(_good(4004, "when are you open?"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while len(refusals()) < 3 and loop.time() < deadline:
            await asyncio.sleep(0.02)
        # refused three times: not confirmed, still queued on Telegram's side, nothing stored
        assert len(refusals()) >= 3
        assert fake.confirmed_offset <= uid and [u["update_id"] for u in fake.updates] == [uid]
        assert stored_messages(r) == 0 and fake.calls_to("sendMessage") == []
    finally:
        await outage.end()
    await fake.wait_for("sendMessage", timeout=10, predicate=to_chat(4004, text="Monday to Friday"))
    times = [x.created for x in refusals()]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4, gaps           # backed off, doubling
    assert stored_messages(r) == 1
    assert len(fake.calls_to("sendMessage")) == 1
    deadline = loop.time() + 5
    while fake.confirmed_offset <= uid and loop.time() < deadline:
        await asyncio.sleep(0.05)
    assert fake.confirmed_offset == uid + 1
    assert await r.services.store.get_meta("telegram:offset") == str(uid + 1)
    assert errors(caplog) == []
