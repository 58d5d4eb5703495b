"""Slack requests that are correctly signed but malformed, and a store that cannot write.

Signed garbage is refused with 400 before Bolt sees it (one WARNING, no traceback, nothing
stored); an event whose dedupe record cannot be written is answered 503 so Slack retries it;
an agent's thread reply that cannot be stored is reported back to the agent, not dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from typing import Any
from urllib.parse import urlencode

import pytest

from bot.errors import StorageUnavailable
from conftest import Running
from e2e.bad_input import StoreOutage, errors, post_cut_off, warnings
from e2e.test_slack_desk import (SECRET, click, complaint_to_slack, fake, post,  # noqa: F401 (fixtures)
                                 slack_app, thread_message)
from fakes.slack_api import FakeSlack, action_payload, command_payload, event_body, event_payload, signed_headers

LOGGER = "handoff.desk_slack"


def seen_events(r: Running) -> int:
    db = r.services.config.storage_url().removeprefix("sqlite:///")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT count(*) FROM seen_events").fetchone()[0]
    finally:
        con.close()


def _event(**changes: Any) -> dict[str, Any]:
    event = {"type": "message", "channel": "CCOMP", "user": "UANNA", "text": "hello", "ts": "1700000000.000100",
             "thread_ts": "1700000000.000001", "channel_type": "channel", "event_ts": "1700000000.000100"}
    event.update(changes)
    return event


def _json(payload: Any) -> tuple[bytes, str]:
    return json.dumps(payload).encode(), "application/json"


def _form(fields: dict[str, str]) -> tuple[bytes, str]:
    return urlencode(fields).encode(), "application/x-www-form-urlencoded"


def _action(**changes: Any) -> dict[str, Any]:
    payload = action_payload("omnibot_claim", "h_1", user_id="UANNA", channel_id="CCOMP",
                             message_ts="1700000000.000001")
    payload.update(changes)
    return payload


def _without(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


GOOD_EVENT = event_payload(_event(), event_id="EvGood")
# (name, body, content type): each is signed with the right secret.
MALFORMED: list[tuple[str, bytes, str]] = [
    ("bad JSON", b"{not json", "application/json"),
    ("truncated JSON", event_body(_event(), event_id="EvT")[:90], "application/json"),
    ("JSON array", b"[1, 2]", "application/json"),
    ("JSON string", b'"event"', "application/json"),
    ("nested too deep", b"{\"a\":" * 50_000 + b"1" + b"}" * 50_000, "application/json"),
    ("no type", *_json(_without(GOOD_EVENT, "type"))),
    ("type a number", *_json({**GOOD_EVENT, "type": 7})),
    ("event missing", *_json(_without(GOOD_EVENT, "event"))),
    ("event a string", *_json({**GOOD_EVENT, "event": "message"})),
    ("event without type", *_json({**GOOD_EVENT, "event": _without(_event(), "type")})),
    ("event_id missing", *_json(_without(GOOD_EVENT, "event_id"))),
    ("event_id a number", *_json({**GOOD_EVENT, "event_id": 12})),
    ("message without channel", *_json({**GOOD_EVENT, "event": _without(_event(), "channel")})),
    ("text a number", *_json({**GOOD_EVENT, "event": _event(text=5)})),
    ("user a list", *_json({**GOOD_EVENT, "event": _event(user=["UANNA"])})),
    ("thread_ts a number", *_json({**GOOD_EVENT, "event": _event(thread_ts=1700000000.1)})),
    ("edited message a string", *_json({**GOOD_EVENT, "event": _event(subtype="message_changed", message="x")})),
    ("url_verification without challenge", *_json({"type": "url_verification", "token": "t"})),
    ("payload not JSON", *_form({"payload": "{not json"})),
    ("payload a list", *_form({"payload": "[1]"})),
    ("payload without type", *_form({"payload": json.dumps(_without(_action(), "type"))})),
    ("actions not a list", *_form({"payload": json.dumps(_action(actions="claim"))})),
    ("action without action_id", *_form({"payload": json.dumps(_action(actions=[{"value": "h_1"}]))})),
    ("action value a number", *_form({"payload": json.dumps(
        _action(actions=[{"action_id": "omnibot_claim", "value": 5}]))})),
    ("user a string", *_form({"payload": json.dumps(_action(user="UANNA"))})),
    ("selected_option a string", *_form({"payload": json.dumps(
        _action(actions=[{"action_id": "omnibot_transfer", "selected_option": "h_1|support"}]))})),
    ("neither event, action nor command", *_form({"foo": "bar"})),
    ("command without user", *_form(_without(command_payload("/omnibot", "claim C-1", user_id="UANNA",
                                                             channel_id="CCOMP"), "user_id"))),
    ("empty body", b"", "application/json"),
]


async def test_signed_but_malformed_requests_get_400(slack_app: Running, fake: FakeSlack,  # noqa: F811
                                                     caplog: pytest.LogCaptureFixture) -> None:
    r = slack_app
    caplog.set_level(logging.INFO)
    for name, body, ctype in MALFORMED:
        caplog.clear()
        status, answer = await post(r, body, headers=signed_headers(SECRET, body, content_type=ctype))
        assert status == 400, (name, status, answer[:200])
        assert isinstance(json.loads(answer).get("error"), str), name
        assert errors(caplog) == [], name
        assert len(warnings(caplog, LOGGER)) == 1, (name, warnings(caplog, LOGGER))
    await asyncio.sleep(0.2)                 # nothing ran in the background either
    assert errors(caplog) == []
    assert seen_events(r) == 0
    assert not fake.calls_to("chat.postEphemeral") and not fake.calls_to("chat.postMessage")
    # well-formed requests still pass: a thread message of an unknown thread is ignored quietly
    status, _ = await post(r, json.dumps(GOOD_EVENT).encode())
    assert status == 200
    assert seen_events(r) == 1
    body = urlencode(command_payload("/omnibot", "help", user_id="UANNA", channel_id="CCOMP")).encode()
    assert (await post(r, body))[0] == 200
    await fake.wait_for("chat.postEphemeral", predicate=lambda c: "Usage" in c.args.get("text", ""))


async def test_request_cut_off_mid_body(slack_app: Running, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    caplog.set_level(logging.INFO)
    body = json.dumps(GOOD_EVENT).encode()
    answer = await post_cut_off(slack_app, "/slack/events", signed_headers(SECRET, body), body)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:300]
    assert seen_events(slack_app) == 0
    assert errors(caplog) == []


async def test_event_that_cannot_be_recorded_is_503_then_processed_once(slack_app: Running, fake: FakeSlack,  # noqa: F811
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    r = slack_app
    c, hid, ts = await complaint_to_slack(r, fake)
    try:
        assert await click(r, "omnibot_claim", hid, "UANNA", ts) == 200
        await c.reply()
        seen_before = seen_events(r)
        caplog.set_level(logging.INFO)
        caplog.clear()
        outage = StoreOutage(r)
        event = {"type": "message", "channel": "CCOMP", "user": "UANNA", "text": "Your refund is on its way",
                 "ts": f"{time.time():.6f}", "thread_ts": ts, "channel_type": "channel"}
        body = event_body(event, event_id="EvFull")
        await outage.start()
        try:
            async with r.http.post(r.url + "/slack/events", data=body,
                                   headers=signed_headers(SECRET, body)) as resp:
                assert resp.status == 503 and int(resp.headers["Retry-After"]) > 0
            with pytest.raises(asyncio.TimeoutError):
                await c.reply(timeout=0.5)               # not relayed
        finally:
            await outage.end()
        assert errors(caplog) == []
        assert len(warnings(caplog, LOGGER)) == 1
        assert seen_events(r) == seen_before
        # Slack retries the same event_id once the store writes again: relayed once
        headers = signed_headers(SECRET, body)
        headers.update({"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_error"})
        assert (await post(r, body, headers=headers))[0] == 200
        m = await c.reply()
        assert m["text"] == "Your refund is on its way"
        with pytest.raises(asyncio.TimeoutError):
            await c.reply(timeout=0.3)                   # once
    finally:
        await c.close()


async def test_agent_reply_that_cannot_be_stored_is_reported_to_the_agent(slack_app: Running, fake: FakeSlack,  # noqa: F811
                                                                          caplog: pytest.LogCaptureFixture,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    r = slack_app
    c, hid, ts = await complaint_to_slack(r, fake)
    try:
        assert await click(r, "omnibot_claim", hid, "UANNA", ts) == 200
        await c.reply()
        caplog.set_level(logging.INFO)
        caplog.clear()

        async def full(*args: Any, **kwargs: Any) -> Any:
            raise StorageUnavailable("database or disk is full")

        monkeypatch.setattr(r.services.queue, "reply", full)
        assert await thread_message(r, "We will refund you", "UANNA", ts, event_id="EvReply") == 200
        [told] = await fake.wait_for("chat.postEphemeral", predicate=lambda x: x.args.get("user") == "UANNA")
        assert "not sent" in told.args["text"].lower() and "again" in told.args["text"]
        assert errors(caplog) == []
        with pytest.raises(asyncio.TimeoutError):
            await c.reply(timeout=0.3)
    finally:
        await c.close()
