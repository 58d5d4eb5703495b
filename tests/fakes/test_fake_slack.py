"""The fake Slack answers the real slack_sdk / slack-bolt clients like Slack does."""

from __future__ import annotations

import json
import time
from typing import AsyncIterator

import pytest
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from fakes.slack_api import (
    FakeSlack,
    action_body,
    command_body,
    event_body,
    event_payload,
    signed_headers,
)

SECRET = "test-signing-secret"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    slack = FakeSlack()
    await slack.start()
    try:
        yield slack
    finally:
        await slack.stop()


def web(fake: FakeSlack, **kwargs) -> AsyncWebClient:
    return AsyncWebClient(token=kwargs.pop("token", fake.bot_token), base_url=fake.base_url, **kwargs)


async def test_post_update_and_users_info(fake: FakeSlack) -> None:
    client = web(fake)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]
    first = await client.chat_postMessage(channel="C1", text="hi", blocks=blocks, thread_ts="1699999999.000001")
    second = await client.chat_postMessage(channel="C1", text="again")
    assert first["ok"] and first["channel"] == "C1"
    assert float(second["ts"]) > float(first["ts"])
    assert first["message"]["user"] == "UBOT" and first["message"]["bot_id"] == "BBOT"
    assert first["message"]["thread_ts"] == "1699999999.000001"
    assert first["message"]["blocks"] == blocks

    upd = await client.chat_update(channel="C1", ts=first["ts"], text="edited")
    assert (upd["channel"], upd["ts"], upd["text"]) == ("C1", first["ts"], "edited")
    assert fake.messages[("C1", first["ts"])]["text"] == "edited"

    fake.add_user("U1", "Ada Lovelace", display_name="ada")
    info = await client.users_info(user="U1")
    assert info["user"]["profile"] == {**info["user"]["profile"], "real_name": "Ada Lovelace", "display_name": "ada", "first_name": "Ada"}
    with pytest.raises(SlackApiError) as err:
        await client.users_info(user="U404")
    assert err.value.response["error"] == "user_not_found"

    [post1, post2] = await fake.wait_for("chat.postMessage", count=2)
    assert post1.args["blocks"] == blocks and post1.args["thread_ts"] == "1699999999.000001"
    assert post1.headers["authorization"] == f"Bearer {fake.bot_token}"
    assert [c.args["user"] for c in fake.calls_to("users.info")] == ["U1", "U404"]
    assert fake.calls_to("chat.update")[0].args["ts"] == first["ts"]


async def test_other_methods_and_form_bodies(fake: FakeSlack) -> None:
    client = web(fake)
    fake.add_usergroup("S1", ["U1", "U2"])
    assert (await client.usergroups_users_list(usergroup="S1"))["users"] == ["U1", "U2"]
    fake.add_channel("C9", "support")
    assert (await client.conversations_info(channel="C9"))["channel"]["name"] == "support"
    eph = await client.chat_postEphemeral(channel="C9", user="U1", text="psst")
    assert eph["message_ts"]
    assert (await client.chat_delete(channel="C9", ts=eph["message_ts"]))["ts"] == eph["message_ts"]
    auth = await client.auth_test()
    assert (auth["user"], auth["team_id"], auth["user_id"], auth["bot_id"]) == ("omnibot", "T0001", "UBOT", "BBOT")

    # form-encoded body with a JSON-string field: decoded in Call.args
    blocks = [{"type": "divider"}]
    await client.api_call("chat.postMessage", data={"channel": "C9", "text": "x", "blocks": json.dumps(blocks)})
    assert fake.calls_to("chat.postMessage")[-1].args["blocks"] == blocks

    with pytest.raises(SlackApiError) as err:
        await client.api_call("chat.frobnicate", json={})
    assert err.value.response["error"] == "unknown_method"
    with pytest.raises(SlackApiError) as err, pytest.warns(UserWarning, match="top-level `text`"):
        await client.chat_postMessage(channel="C9", text="")
    assert err.value.response["error"] == "no_text"


async def test_rate_limit_then_success(fake: FakeSlack) -> None:
    client = web(fake, retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)])
    fake.fail_next("chat.postMessage", status=429, retry_after=1)
    started = time.monotonic()
    res = await client.chat_postMessage(channel="C1", text="hi")
    assert res["ok"]
    attempts = fake.calls_to("chat.postMessage")
    assert len(attempts) == 2
    assert [a.failed for a in attempts] == [True, False]
    assert attempts[0].status == 429
    assert time.monotonic() - started >= 1.0  # the client honoured Retry-After


async def test_server_error_without_retry(fake: FakeSlack) -> None:
    fake.fail_next("chat.postMessage", status=503, times=2)
    with pytest.raises(SlackApiError) as err:
        await web(fake).chat_postMessage(channel="C1", text="hi")
    assert err.value.response.status_code == 503
    assert err.value.response["error"] == "service_unavailable"
    fake.fail_next("chat.update", status=200, error="cant_update_message")
    with pytest.raises(SlackApiError) as err:
        await web(fake).chat_update(channel="C1", ts="1.2", text="x")
    assert err.value.response["error"] == "cant_update_message"


async def test_bad_tokens(fake: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as err:
        await web(fake, token="xoxb-wrong").chat_postMessage(channel="C1", text="hi")
    assert err.value.response["error"] == "invalid_auth"
    assert err.value.response.status_code == 200
    with pytest.raises(SlackApiError) as err:
        await AsyncWebClient(base_url=fake.base_url).auth_test()
    assert err.value.response["error"] == "not_authed"
    with pytest.raises(SlackApiError) as err:
        await web(fake).apps_connections_open(app_token=fake.bot_token)
    assert err.value.response["error"] == "not_allowed_token_type"
    res = await web(fake).apps_connections_open(app_token=fake.app_token)
    assert res["url"] == fake.socket_url
    assert len(fake.calls) == 4


async def test_files_upload_v2(fake: FakeSlack) -> None:
    res = await web(fake).files_upload_v2(
        channel="C1", thread_ts="1700000000.000100", content="hello transcript", filename="t.txt", title="Transcript"
    )
    assert res["ok"]
    file_id = res["file"]["id"]
    assert fake.files[file_id] == b"hello transcript"
    assert res["file"]["title"] == "Transcript"
    assert fake.file_info[file_id]["thread_ts"] == "1700000000.000100"
    [complete] = fake.calls_to("files.completeUploadExternal")
    assert complete.args["channel_id"] == "C1"
    assert complete.args["files"][0]["id"] == file_id
    assert [c.method for c in fake.calls] == ["files.getUploadURLExternal", "upload", "files.completeUploadExternal"]


async def test_wait_for_reports_what_was_called(fake: FakeSlack) -> None:
    await web(fake).auth_test()
    with pytest.raises(AssertionError, match="auth.test"):
        await fake.wait_for("chat.postMessage", timeout=0.1)


def test_signed_headers_match_slack_sdk_verifier() -> None:
    body = event_body({"type": "app_mention", "user": "U1", "text": "hi", "channel": "C1", "ts": "1.1"}, event_id="Ev1")
    headers = signed_headers(SECRET, body)
    assert SignatureVerifier(SECRET).is_valid_request(body, headers)
    assert not SignatureVerifier("other").is_valid_request(body, headers)
    stale = signed_headers(SECRET, body, timestamp=int(time.time()) - 600)
    assert not SignatureVerifier(SECRET).is_valid_request(body, stale)


async def test_bolt_parses_signed_bodies(fake: FakeSlack) -> None:
    app = AsyncApp(signing_secret=SECRET, client=web(fake))
    seen: dict = {}

    @app.action("pick")
    async def on_action(ack, body, context, action):
        await ack()
        seen["action"] = (context.user_id, context.channel_id, context.team_id, action.get("value"), action.get("selected_option"))

    @app.command("/omni")
    async def on_command(ack, command, context):
        await ack()
        seen["command"] = (context.user_id, context.channel_id, context.team_id, command["text"])

    @app.event("app_mention")
    async def on_mention(event, context, say):
        seen["event"] = (context.user_id, context.channel_id, context.team_id, event["text"])
        await say("pong")

    async def dispatch(body: bytes) -> int:
        resp = await app.async_dispatch(AsyncBoltRequest(body=body.decode(), headers=signed_headers(SECRET, body)))
        return resp.status

    assert await dispatch(action_body("pick", "v1", user_id="U1", channel_id="C1", message_ts="1.1")) == 200
    assert seen["action"] == ("U1", "C1", "T0001", "v1", None)
    body = action_body("pick", None, user_id="U2", channel_id="C2", message_ts="1.1", selected_option="opt")
    assert await dispatch(body) == 200
    assert seen["action"][:3] == ("U2", "C2", "T0001") and seen["action"][4]["value"] == "opt"
    assert await dispatch(command_body("/omni", "help me", user_id="U3", channel_id="C3")) == 200
    assert seen["command"] == ("U3", "C3", "T0001", "help me")
    event = {"type": "app_mention", "user": "U4", "text": "<@UBOT> ping", "channel": "C4", "ts": "1.2"}
    assert await dispatch(event_body(event, event_id="Ev1")) == 200
    [post] = await fake.wait_for("chat.postMessage")
    assert seen["event"] == ("U4", "C4", "T0001", "<@UBOT> ping")
    assert post.args["channel"] == "C4" and post.args["text"] == "pong"
    assert len(fake.calls_to("auth.test")) == 1  # bolt's single-team authorize, cached
    # bad signature is rejected by bolt
    body = command_body("/omni", "x", user_id="U3", channel_id="C3")
    bad = await app.async_dispatch(AsyncBoltRequest(body=body.decode(), headers=signed_headers("wrong", body)))
    assert bad.status == 401


async def test_socket_mode_hello_envelope_and_ack(fake: FakeSlack) -> None:
    client = SocketModeClient(app_token=fake.app_token, web_client=web(fake))
    received = []

    async def listener(c: SocketModeClient, req) -> None:
        received.append(req)
        await c.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))

    client.socket_mode_request_listeners.append(listener)
    hellos = []

    async def on_message(c, message: dict, raw: str) -> None:
        if message.get("type") == "hello":
            hellos.append(message)

    client.message_listeners.append(on_message)
    try:
        await client.connect()
        await fake.wait_socket_connected()
        payload = event_payload({"type": "app_mention", "user": "U1", "text": "hi", "channel": "C1"}, event_id="Ev9")
        envelope_id = await fake.socket_send("events_api", payload)
        ack = await fake.wait_ack(envelope_id, timeout=5)
        assert ack["envelope_id"] == envelope_id
        assert received[0].type == "events_api" and received[0].payload["event_id"] == "Ev9"
        assert hellos and hellos[0]["num_connections"] == 1
        assert fake.calls_to("apps.connections.open")[0].token == fake.app_token
    finally:
        await client.close()


async def test_per_channel_limits_answer_429_with_retry_after(fake: FakeSlack) -> None:
    fake.limit("chat.postMessage", per_second=2)
    fake.limit("chat.update", per_second=1)
    client = web(fake)
    assert (await client.chat_postMessage(channel="C1", text="1"))["ok"]
    assert (await client.chat_postMessage(channel="C1", text="2"))["ok"]
    with pytest.raises(SlackApiError) as exc:
        await client.chat_postMessage(channel="C1", text="3")          # third within one second
    assert exc.value.response.status_code == 429 and exc.value.response["error"] == "ratelimited"
    assert int(exc.value.response.headers["Retry-After"]) >= 1
    assert (await client.chat_postMessage(channel="C2", text="other channel"))["ok"]   # per channel
    first = (await client.chat_update(channel="C1", ts="1.0", text="u1"))["ok"]       # its own budget
    with pytest.raises(SlackApiError):
        await client.chat_update(channel="C1", ts="1.0", text="u2")
    assert first and fake.rate_limited == 2
    assert [c.failed for c in fake.calls_to("chat.postMessage")] == [False, False, True, False]


async def test_latency_delays_every_answer(fake: FakeSlack) -> None:
    fake.latency = 0.1
    fake.latency_for["users.info"] = 0.0
    fake.add_user("U1", "Ada Lovelace")
    client = web(fake)
    t0 = time.monotonic()
    await client.chat_postMessage(channel="C1", text="slow")
    slow = time.monotonic() - t0
    t0 = time.monotonic()
    await client.users_info(user="U1")
    assert slow >= 0.1 and time.monotonic() - t0 < 0.1
