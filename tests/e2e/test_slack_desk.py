"""Slack as the agent desk: real slack-bolt / slack_sdk against a fake Slack Web API on 127.0.0.1,
with events and button clicks delivered as correctly signed HTTP requests."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from bot.app import SERVICES
from conftest import Running, agent_headers, start_app, stop_app
from e2e.chat import ChatClient
from e2e.slack_config import SECRET, slack_config  # noqa: F401 (imported from here by others)
from fakes.slack_api import FakeSlack, action_body, command_body, event_body, signed_headers



@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    f = FakeSlack()
    await f.start()
    f.add_user("UANNA", "Anna Smith")
    f.add_user("UBOB", "Bob Jones")
    f.add_user("UEVE", "Eve Outsider")
    try:
        yield f
    finally:
        await f.stop()


@pytest.fixture
async def slack_app(tmp_path: Path, fake: FakeSlack) -> AsyncIterator[Running]:
    r = await start_app(slack_config(tmp_path, fake))
    try:
        yield r
    finally:
        await stop_app(r)


async def post(r: Running, body: bytes, *, headers: dict[str, str] | None = None,
               timestamp: int | None = None) -> tuple[int, str]:
    h = headers if headers is not None else signed_headers(SECRET, body, timestamp)
    async with r.http.post(r.url + "/slack/events", data=body, headers=h) as resp:
        return resp.status, await resp.text()


def card_posts(fake: FakeSlack, channel: str) -> Any:
    return lambda c: c.args.get("channel") == channel and c.args.get("blocks") and not c.args.get("thread_ts")


def block_text(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks)


def button(blocks: list[dict[str, Any]], action_id: str) -> dict[str, Any] | None:
    for b in blocks:
        for e in b.get("elements", []):
            if e.get("action_id") == action_id:
                return e
    return None


async def complaint_to_slack(r: Running, fake: FakeSlack) -> tuple[ChatClient, str, str]:
    """A web-chat customer files a complaint and asks for a person; returns (client, handoff id, card ts)."""
    c = ChatClient(r.http, r.ws_url)
    await c.connect()
    await c.say("I want to complain", expect_text="What is it about?")
    await c.say("Product", payload="product")
    await c.say("AB123456")
    await c.say("The lamp arrived <b>broken</b> & dented")
    await c.say("skip", expect_text="talk to a member")
    [m] = await c.say("yes", payload="yes")
    assert "Complaints team" in m["text"]
    [card] = await fake.wait_for("chat.postMessage", predicate=card_posts(fake, "CCOMP"))
    hid = button(card.args["blocks"], "omnibot_claim")["value"]
    return c, hid, card.response["ts"] if hasattr(card, "response") else fake_ts(fake, card)


def fake_ts(fake: FakeSlack, call: Any) -> str:
    for (channel, ts), msg in fake.messages.items():
        if channel == call.args["channel"] and msg.get("blocks") == call.args.get("blocks") and not msg.get("thread_ts"):
            return ts
    raise AssertionError("card not found in the fake's messages")


async def click(r: Running, action_id: str, value: str | None, user: str, ts: str, channel: str = "CCOMP",
                selected: str | None = None) -> int:
    body = action_body(action_id, value, user_id=user, channel_id=channel, message_ts=ts,
                       selected_option=selected)
    status, _ = await post(r, body)
    return status


async def thread_message(r: Running, text: str, user: str, ts: str, *, event_id: str, channel: str = "CCOMP",
                         retry: int | None = None, subtype: str | None = None) -> int:
    event = {"type": "message", "channel": channel, "user": user, "text": text, "ts": f"{time.time():.6f}",
             "thread_ts": ts, "channel_type": "channel", "event_ts": f"{time.time():.6f}"}
    if subtype:
        event["subtype"] = subtype
    body = event_body(event, event_id=event_id)
    headers = signed_headers(SECRET, body)
    if retry:
        headers.update({"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"})
    status, _ = await post(r, body, headers=headers)
    return status


async def test_full_handoff_through_slack(slack_app: Running, fake: FakeSlack) -> None:
    r = slack_app
    c, hid, ts = await complaint_to_slack(r, fake)
    try:
        card = fake.calls_to("chat.postMessage")[0].args["blocks"]
        text = block_text(card)
        # everything the agent needs, with customer text escaped for Slack
        for needle in ("AB123456", "product", "complaint C-1001", "Complaints", "webchat",
                       "The lamp arrived &lt;b&gt;broken&lt;/b&gt; &amp; dented"):
            assert needle in text, needle
        assert button(card, "omnibot_resolve") and button(card, "omnibot_back") and button(card, "omnibot_transfer")

        assert await click(r, "omnibot_claim", hid, "UANNA", ts) == 200
        m = await c.reply()
        assert m["text"] == "Anna from Complaints has joined the conversation."
        upd = await fake.wait_for("chat.update", predicate=lambda x: "claimed by Anna Smith" in block_text(
            x.args.get("blocks", [])))
        assert button(upd[-1].args["blocks"], "omnibot_claim") is None

        # the agent's thread reply reaches the customer (Slack's escaping undone)
        assert await thread_message(r, "Hi! So sorry &lt;3 We'll send a new lamp.", "UANNA", ts,
                                    event_id="Ev1") == 200
        m = await c.reply()
        assert m["role"] == "agent" and m["sender"] == "Anna" and m["text"] == "Hi! So sorry <3 We'll send a new lamp."
        await asyncio.sleep(0.5)      # a reply written in Slack is not mirrored back into Slack
        assert not [x for x in fake.calls_to("chat.postMessage") if "web desk" in x.args.get("text", "")]

        # an internal note stays in Slack
        assert await thread_message(r, "// check stock in warehouse B", "UANNA", ts, event_id="Ev2") == 200
        with pytest.raises(asyncio.TimeoutError):
            await c.reply(timeout=0.5)

        # what the customer writes appears in the thread
        await c.send("Thank you, <i>great</i>!")
        relayed = await fake.wait_for("chat.postMessage", predicate=lambda x: x.args.get("thread_ts") == ts
                                      and "Thank you" in x.args.get("text", ""))
        assert "Thank you, &lt;i&gt;great&lt;/i&gt;!" in relayed[0].args["text"]

        # an edit is not relayed silently: the thread says so
        assert await thread_message(r, "edited", "UANNA", ts, event_id="Ev3", subtype="message_changed") == 200
        await fake.wait_for("chat.postMessage", predicate=lambda x: x.args.get("thread_ts") == ts
                            and "not relayed" in x.args.get("text", ""))

        # resolve from the card: a complaint asks for the outcome, written in the thread
        assert await click(r, "omnibot_resolve", hid, "UANNA", ts) == 200
        await fake.wait_for("chat.postEphemeral", predicate=lambda x: "!resolve <what was done>" in x.args["text"])
        assert await thread_message(r, "!resolve a new lamp is on its way", "UANNA", ts, event_id="Ev4") == 200
        m = await c.reply()
        assert m["text"] == "Anna resolved your complaint C-1001: a new lamp is on its way"
        await fake.wait_for("chat.update", predicate=lambda x: "resolved" in block_text(x.args.get("blocks", []))
                            and button(x.args["blocks"], "omnibot_resolve") is None)
    finally:
        await c.close()


async def test_two_concurrent_claims_one_wins(slack_app: Running, fake: FakeSlack) -> None:
    r = slack_app
    c, hid, ts = await complaint_to_slack(r, fake)
    try:
        statuses = await asyncio.gather(click(r, "omnibot_claim", hid, "UANNA", ts),
                                        click(r, "omnibot_claim", hid, "UBOB", ts))
        assert statuses == [200, 200]
        [eph] = await fake.wait_for("chat.postEphemeral")
        h = await r.services.store.get_handoff(hid)
        winner = "UANNA" if "UANNA" in (h.agent or "") else "UBOB"
        loser = "UBOB" if winner == "UANNA" else "UANNA"
        assert eph.args["user"] == loser and "already claimed by" in eph.args["text"]
        joined = await c.reply()
        assert "has joined" in joined["text"]
        with pytest.raises(asyncio.TimeoutError):
            await c.reply(timeout=0.4)       # told once, not twice
    finally:
        await c.close()


async def test_non_agent_is_refused(slack_app: Running, fake: FakeSlack) -> None:
    r = slack_app
    c, hid, ts = await complaint_to_slack(r, fake)
    try:
        assert await click(r, "omnibot_claim", hid, "UEVE", ts) == 200
        [eph] = await fake.wait_for("chat.postEphemeral")
        assert eph.args["user"] == "UEVE" and "only members of the support team" in eph.args["text"]
        assert (await r.services.store.get_handoff(hid)).state == "queued"
        # nor can they talk to the customer
        assert await thread_message(r, "hello from eve", "UEVE", ts, event_id="EvE") == 200
        await fake.wait_for("chat.postEphemeral", count=2)
        with pytest.raises(asyncio.TimeoutError):
            await c.reply(timeout=0.4)
    finally:
        await c.close()


async def test_retried_event_is_processed_once(slack_app: Running, fake: FakeSlack) -> None:
    r = slack_app
    c, hid, ts = await complaint_to_slack(r, fake)
    try:
        await click(r, "omnibot_claim", hid, "UANNA", ts)
        await c.reply()
        assert await thread_message(r, "One message only", "UANNA", ts, event_id="EvR") == 200
        assert await thread_message(r, "One message only", "UANNA", ts, event_id="EvR", retry=1) == 200
        m = await c.reply()
        assert m["text"] == "One message only"
        with pytest.raises(asyncio.TimeoutError):
            await c.reply(timeout=0.5)
    finally:
        await c.close()


async def test_bad_signatures_are_refused(slack_app: Running) -> None:
    r = slack_app
    body = event_body({"type": "message", "channel": "C1", "user": "UANNA", "text": "x", "ts": "1.0"},
                      event_id="EvX")
    bad = signed_headers("wrong-secret", body)
    assert (await post(r, body, headers=bad))[0] == 401
    assert (await post(r, body, timestamp=int(time.time()) - 600))[0] == 401      # replayed / stale
    assert (await post(r, b"{not json", headers={"Content-Type": "application/json"}))[0] == 401
    weird = signed_headers(SECRET, body)
    weird["X-Slack-Request-Timestamp"] = "yesterday"
    assert (await post(r, body, headers=weird))[0] == 400


async def test_transfer_between_teams(slack_app: Running, fake: FakeSlack) -> None:
    r = slack_app
    c = ChatClient(r.http, r.ws_url)
    await c.connect()
    try:
        [m] = await c.say("I want to talk to a person")
        assert "Customer Care" in m["text"]
        [card] = await fake.wait_for("chat.postMessage", predicate=card_posts(fake, "CSUP"))
        hid = button(card.args["blocks"], "omnibot_claim")["value"]
        ts = fake_ts(fake, card)
        await click(r, "omnibot_claim", hid, "UBOB", ts, channel="CSUP")
        await c.reply()
        option = {"value": f"{hid}|complaints", "text": {"type": "plain_text", "text": "Complaints"}}
        assert await click(r, "omnibot_transfer", None, "UBOB", ts, channel="CSUP", selected=option) == 200
        m = await c.reply()
        assert "transferring you to our Complaints team" in m["text"]
        # the card moves: a new one in the complaints channel, the old one says where it went
        [new] = await fake.wait_for("chat.postMessage", predicate=card_posts(fake, "CCOMP"))
        assert button(new.args["blocks"], "omnibot_claim")["value"] == hid
        await fake.wait_for("chat.update", predicate=lambda x: x.args.get("channel") == "CSUP"
                            and "transferred to" in block_text(x.args.get("blocks", [])))
        h = await r.services.store.get_handoff(hid)
        assert h.team == "complaints" and h.state == "queued"
    finally:
        await c.close()


async def test_rate_limited_card_is_retried_and_posted_once(slack_app: Running, fake: FakeSlack) -> None:
    r = slack_app
    fake.fail_next("chat.postMessage", status=429, retry_after=1)
    c = ChatClient(r.http, r.ws_url)
    await c.connect()
    try:
        await c.say("agent")
        t0 = time.monotonic()
        await fake.wait_for("chat.postMessage", predicate=lambda x: not x.failed and x.args.get("channel") == "CSUP")
        assert time.monotonic() - t0 >= 0.9                    # Retry-After honoured
        attempts = [x for x in fake.calls_to("chat.postMessage") if x.args.get("channel") == "CSUP"]
        assert [x.failed for x in attempts] == [True, False]
        await asyncio.sleep(0.7)                               # a later sync must not post it again
        assert len([x for x in fake.calls_to("chat.postMessage") if x.args.get("channel") == "CSUP"
                    and not x.args.get("thread_ts") and not x.failed]) == 1
    finally:
        await c.close()


async def test_slash_command_in_channel(slack_app: Running, fake: FakeSlack) -> None:
    r = slack_app
    c, hid, ts = await complaint_to_slack(r, fake)
    try:
        body = command_body("/omnibot", "claim C-1001", user_id="UBOB", channel_id="CCOMP")
        assert (await post(r, body))[0] == 200
        m = await c.reply()
        assert m["text"] == "Bob from Complaints has joined the conversation."
    finally:
        await c.close()


async def test_local_desk_and_slack_work_together(slack_app: Running, fake: FakeSlack) -> None:
    r = slack_app
    c, hid, ts = await complaint_to_slack(r, fake)
    try:
        async with r.http.post(f"{r.url}/agent/api/handoffs/{hid}/claim", headers=agent_headers("Carol King")) as resp:
            assert resp.status == 200
        await fake.wait_for("chat.update", predicate=lambda x: "claimed by Carol King" in block_text(
            x.args.get("blocks", [])))
        assert await click(r, "omnibot_claim", hid, "UANNA", ts) == 200
        [eph] = await fake.wait_for("chat.postEphemeral")
        assert "already claimed by Carol King" in eph.args["text"]
        # what Carol answers from the web desk shows in the Slack thread too
        async with r.http.post(f"{r.url}/agent/api/handoffs/{hid}/reply", headers=agent_headers("Carol King"),
                               json={"text": "I'm on it <3"}) as resp:
            assert resp.status == 200
        [mirror] = await fake.wait_for("chat.postMessage", predicate=lambda x: x.args.get("thread_ts") == ts
                                       and "web desk" in x.args.get("text", ""))
        assert mirror.args["text"] == "*Carol (web desk):* I'm on it &lt;3"
    finally:
        await c.close()


async def test_starts_when_slack_is_unreachable(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeSlack()
    await fake.start()
    base = fake.base_url
    await fake.stop()                       # nothing listens there any more
    config = slack_config(tmp_path, fake)
    config = config.model_copy(update={"slack": config.slack.model_copy(update={"api_url": base})})
    r = await start_app(config)
    try:
        c = ChatClient(r.http, r.ws_url)
        await c.connect()
        [m] = await c.say("when are you open?")
        assert "Monday" in m["text"]
        await c.close()
        for _ in range(50):
            if any("cannot reach Slack" in rec.getMessage() for rec in caplog.records):
                break
            await asyncio.sleep(0.1)
        assert any("cannot reach Slack" in rec.getMessage() and "retrying" in rec.getMessage()
                   for rec in caplog.records)
        # Slack down is "degraded": this instance still serves the web chat, so it stays ready
        async with r.http.get(r.url + "/readyz") as resp:
            assert resp.status == 200
            assert (await resp.json())["connectors"]["slack"] == "degraded: cannot reach Slack"
    finally:
        await stop_app(r)


async def test_unclaimed_handoff_pings_the_team(tmp_path: Path, fake: FakeSlack) -> None:
    r = await start_app(slack_config(tmp_path, fake, unclaimed_alert_after=0.5))
    try:
        c = ChatClient(r.http, r.ws_url)
        await c.connect()
        await c.say("agent")
        [card] = await fake.wait_for("chat.postMessage", predicate=card_posts(fake, "CSUP"))
        ts = fake_ts(fake, card)
        pings = await fake.wait_for("chat.postMessage", timeout=5, predicate=lambda x: x.args.get("thread_ts") == ts
                                    and "nobody has claimed" in x.args.get("text", ""))
        assert "<!here>" in pings[0].args["text"]
        await asyncio.sleep(1.0)
        assert len([x for x in fake.calls_to("chat.postMessage") if "nobody has claimed" in x.args.get("text", "")]) == 1
        await c.close()
    finally:
        await stop_app(r)


async def test_socket_mode_claim_and_reply(tmp_path: Path, fake: FakeSlack) -> None:
    from fakes.slack_api import action_payload, event_payload

    config = slack_config(tmp_path, fake)
    config = config.model_copy(update={"slack": config.slack.model_copy(update={
        "mode": "socket", "app_token": type(config.slack.app_token)(fake.app_token)})})
    r = await start_app(config)
    try:
        # no HTTP endpoint in socket mode
        status, _ = await post(r, b"{}")
        assert status in (404, 405)
        await fake.wait_socket_connected(timeout=10)
        c = ChatClient(r.http, r.ws_url)
        await c.connect()
        await c.say("talk to a person")
        [card] = await fake.wait_for("chat.postMessage", predicate=card_posts(fake, "CSUP"))
        hid = button(card.args["blocks"], "omnibot_claim")["value"]
        ts = fake_ts(fake, card)
        env = await fake.socket_send("interactive", action_payload("omnibot_claim", hid, user_id="UANNA",
                                                                   channel_id="CSUP", message_ts=ts))
        await fake.wait_ack(env)
        m = await c.reply()
        assert m["text"] == "Anna from Customer Care has joined the conversation."
        event = {"type": "message", "channel": "CSUP", "user": "UANNA", "text": "Hello via socket", "ts": "2.0",
                 "thread_ts": ts, "channel_type": "channel"}
        env = await fake.socket_send("events_api", event_payload(event, event_id="EvS1"))
        await fake.wait_ack(env)
        m = await c.reply()
        assert m["text"] == "Hello via socket"
        await c.close()
    finally:
        await stop_app(r)


async def test_sla_breach_alerts_the_team_thread_and_escalates(tmp_path: Path, fake: FakeSlack) -> None:
    r = await start_app(slack_config(tmp_path, fake, manager_channel="CMGR"))
    try:
        c, hid, ts = await complaint_to_slack(r, fake)
        services = r.app[SERVICES]
        assert services.tickets is not None and services.sla is not None
        real = services.tickets.clock
        services.tickets.clock = lambda: real() + timedelta(hours=3)   # nobody claimed it for 3 h
        [alert] = await services.sla.check()
        assert (alert.step, alert.level) == ("acknowledge", "breached")
        [thread] = await fake.wait_for("chat.postMessage", predicate=lambda call: call.args.get("thread_ts") == ts
                                       and "SLA breached" in call.args.get("text", ""))
        assert thread.args["channel"] == "CCOMP" and "<!here>" in thread.args["text"]
        [esc] = await fake.wait_for("chat.postMessage", predicate=lambda call: call.args.get("channel") == "CMGR")
        assert esc.args["text"].startswith("Escalation: SLA breached: complaint C-1001")
        assert await services.sla.check() == []                        # once
        await c.close()
    finally:
        await stop_app(r)
