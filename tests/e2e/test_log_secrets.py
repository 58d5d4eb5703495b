"""No secret, session token, card number or (by default) customer text reaches a log, at any level.

A full conversation runs with the root logger at DEBUG, set up exactly as ``omnibot run`` sets it
up, with fresh random secrets: web chat (hello, messages, handoff), the web agent desk (login,
claim, reply), Telegram by webhook (the real python-telegram-bot against the fake Bot API) and the
Slack desk (the real slack-bolt / slack_sdk against the fake Slack, really signed requests). Then
every captured line, from every logger including third-party ones, is searched.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from pathlib import Path
from typing import Iterator

import pytest

from bot.config import Config, parse_config
from bot.logs import configure_logging, reset_logging
from conftest import DEMO_FLOWS, Running, start_app, stop_app
from e2e.chat import ChatClient
from fakes.slack_api import FakeSlack, action_body, event_body, signed_headers
from fakes.telegram_api import FakeTelegram, deliver_webhook, text_update


def _card() -> str:
    """A random 16-digit number that passes the Luhn check."""
    digits = [4] + [random.randrange(10) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):        # the check digit will sit to the right
        total += (d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 == 0 else d
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, factory = root.level, logging.getLogRecordFactory()
    quiet = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "aiohttp.access")}
    try:
        yield
    finally:
        reset_logging()
        root.setLevel(level)
        logging.setLogRecordFactory(factory)
        for name, lvl in quiet.items():
            logging.getLogger(name).setLevel(lvl)


def _config(tmp_path: Path, tg: FakeTelegram | None, slack: FakeSlack | None, s: dict[str, str], *,
            customer_text: bool = False) -> Config:
    text = f"""
server: {{host: 127.0.0.1, port: 0}}
storage: {{url: "sqlite:///{tmp_path / 'omnibot.sqlite3'}", media_dir: "{tmp_path / 'media'}"}}
flows: {{path: "{DEMO_FLOWS}"}}
webchat: {{secret: "{s['webchat_secret']}", messages_per_minute: 1000}}
agent_desk: {{token: "{s['agent_token']}"}}
handoff:
  default_team: support
  teams: {{support: {{name: Customer Care}}, complaints: {{name: Complaints}}}}
delivery: {{base_delay: 0.05, max_delay: 0.2}}
logging: {{level: DEBUG, customer_text: {str(customer_text).lower()}}}
"""
    if tg is not None:
        text += f"""
telegram:
  enabled: true
  token: "{s['telegram_token']}"
  mode: webhook
  webhook_url: https://bot.example.com/telegram/webhook
  secret_token: "{s['telegram_secret']}"
  api_url: "{tg.base_url}"
  file_url: "{tg.base_file_url}"
"""
    if slack is not None:
        text += f"""
slack:
  enabled: true
  mode: http
  bot_token: "{s['slack_bot_token']}"
  app_token: "{s['slack_app_token']}"
  signing_secret: "{s['slack_signing_secret']}"
  api_url: "{slack.base_url}"
  default_channel: CSUP
  agents: [UANNA]
  unclaimed_alert_after: 3600
  sync_interval: 0.3
"""
    return parse_config(text, path=str(tmp_path / "config.yaml"))


async def _stop(r: Running) -> None:
    """Stop the app and wait for the database thread, whose last DEBUG line follows the close."""
    db_thread = getattr(getattr(r.services.store, "_db", None), "_thread", None)
    await stop_app(r)
    if db_thread is not None:
        await asyncio.to_thread(db_thread.join, 5)


async def _slack_post(r: Running, body: bytes, signing_secret: str) -> int:
    async with r.http.post(r.url + "/slack/events", data=body, headers=signed_headers(signing_secret, body)) as resp:
        return resp.status


async def test_full_conversation_at_debug_logs_no_secret_and_no_customer_text(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_logging: None) -> None:
    s = {
        "webchat_secret": secrets.token_urlsafe(32),
        "agent_token": "agt-" + secrets.token_urlsafe(24),
        "telegram_token": f"{random.randrange(10**8, 10**9)}:{secrets.token_urlsafe(40)[:35]}",
        "telegram_secret": "whs_" + secrets.token_hex(16),
        "slack_bot_token": f"xoxb-{random.randrange(10**11)}-{random.randrange(10**11)}-{secrets.token_hex(12)}",
        "slack_app_token": f"xapp-1-A{random.randrange(10**9)}-{secrets.token_hex(16)}",
        "slack_signing_secret": secrets.token_hex(16),
    }
    card = _card()
    card_typed = " ".join(card[i:i + 4] for i in range(0, 16, 4))
    word = f"zanzibar{secrets.token_hex(4)}"
    email = f"zed.{secrets.token_hex(4)}@example.com"
    tg_name = f"Quirinus{secrets.token_hex(3)}"
    tg_word = f"ottoman{secrets.token_hex(4)}"
    after_claim = f"marmalade{secrets.token_hex(4)}"
    customer_text = [word, email, tg_name, tg_word, after_claim]

    tg = FakeTelegram(token=s["telegram_token"])
    slack = FakeSlack(bot_token=s["slack_bot_token"], app_token=s["slack_app_token"])
    await tg.start()
    await slack.start()
    slack.add_user("UANNA", "Anna Smith")
    config = _config(tmp_path, tg, slack, s)
    # exactly as `omnibot run` does (bot/cli.py), before anything else is built
    configure_logging(config)
    # the product keeps these at WARNING (they print request URLs); open them too, to widen the net
    for name in ("httpx", "httpcore", "aiohttp.access"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    r = await start_app(config)
    issued: dict[str, str] = {}
    try:
        assert logging.getLogger().getEffectiveLevel() == logging.DEBUG
        issued["app_secret"] = await r.services.store.get_meta("app_secret") or ""
        assert len(issued["app_secret"]) >= 32

        # web chat: hello, a message with a card number and an e-mail address, a handoff
        c = ChatClient(r.http, r.ws_url)
        await c.connect()
        issued["webchat_session"] = c.token or ""
        await c.say(f"hi, {word} here; my card {card_typed} was charged twice, mail me at {email}")
        await c.say("agent", expect_text="Customer Care")
        await slack.wait_for("chat.postMessage", predicate=lambda x: x.args.get("channel") == "CSUP")

        # the web agent desk: log in with the token (cookie), claim, reply
        async with r.http.post(r.url + "/agent/login", json={"token": s["agent_token"], "name": "Anna Smith"}) as resp:
            assert resp.status == 200
        [cookie] = [m.value for m in r.http.cookie_jar if m.key == "omnibot_agent"]
        issued["agent_cookie"] = cookie
        async with r.http.get(r.url + "/agent/api/queue") as resp:
            [h] = (await resp.json())["handoffs"]
        async with r.http.post(f"{r.url}/agent/api/handoffs/{h['id']}/claim") as resp:
            assert resp.status == 200
        async with r.http.post(f"{r.url}/agent/api/handoffs/{h['id']}/reply",
                               json={"text": "Hello, I am looking into it."}) as resp:
            assert resp.status == 200
        await c.expect(lambda f: f["type"] == "message" and "looking into it" in f["message"]["text"])
        await c.send(after_claim)
        await slack.wait_for("chat.postMessage", predicate=lambda x: after_claim in x.args.get("text", ""))
        await c.close()

        # Telegram by webhook: a message, then a handoff that a Slack agent claims and answers
        hook = r.url + "/telegram/webhook"
        await tg.wait_for("setWebhook")
        assert await deliver_webhook(r.http, hook, text_update(7301, f"hello {tg_word}", first_name=tg_name),
                                     s["telegram_secret"]) == 200
        await tg.wait_for("sendMessage", predicate=lambda x: str(x.args.get("chat_id")) == "7301")
        assert await deliver_webhook(r.http, hook, text_update(7301, "agent", first_name=tg_name),
                                     s["telegram_secret"]) == 200
        cards = await slack.wait_for("chat.postMessage", count=2, predicate=lambda x: x.args.get("channel") == "CSUP"
                                     and x.args.get("blocks") and not x.args.get("thread_ts"))
        tg_card = cards[-1]
        hid = next(e["value"] for b in tg_card.args["blocks"] for e in b.get("elements", [])
                   if e.get("action_id") == "omnibot_claim")
        ts = tg_card.response["ts"]
        assert await _slack_post(r, action_body("omnibot_claim", hid, user_id="UANNA", channel_id="CSUP",
                                                message_ts=ts), s["slack_signing_secret"]) == 200
        await tg.wait_for("sendMessage", predicate=lambda x: "has joined" in x.args.get("text", ""))
        event = {"type": "message", "channel": "CSUP", "user": "UANNA", "text": "On it, one moment.",
                 "ts": f"{time.time():.6f}", "thread_ts": ts, "channel_type": "channel",
                 "event_ts": f"{time.time():.6f}"}
        assert await _slack_post(r, event_body(event, event_id="EvLog1"), s["slack_signing_secret"]) == 200
        await tg.wait_for("sendMessage", predicate=lambda x: "On it" in x.args.get("text", ""))
    finally:
        await _stop(r)
        await slack.stop()
        await tg.stop()

    out = capsys.readouterr().err
    lines = out.splitlines()
    # the net was really cast: our loggers and the libraries' DEBUG lines were captured
    for name in (" bot.", " aiosqlite:", " telegram.", " slack_", " handoff.",
                 " connectors.telegram_http:"):
        assert any(name in line for line in lines), f"no log line from {name.strip()}"
    assert any(" DEBUG " in line for line in lines)

    found = []
    for what, value in {**s, **issued}.items():
        assert value, what
        found += [f"{what}: {line[:300]}" for line in lines if value in line]
    for value in (card, card_typed):
        found += [f"card: {line[:300]}" for line in lines if value in line]
    for value in customer_text:
        found += [f"customer text {value!r}: {line[:300]}" for line in lines if value in line]
    assert not found, "leaked into the log:\n" + "\n".join(found[:40])


async def test_customer_text_setting_lets_customer_text_in_but_never_secrets(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_logging: None) -> None:
    s = {"webchat_secret": secrets.token_urlsafe(32), "agent_token": "agt-" + secrets.token_urlsafe(24)}
    card = _card()
    word = f"zanzibar{secrets.token_hex(4)}"
    config = _config(tmp_path, None, None, s, customer_text=True)
    configure_logging(config)
    r = await start_app(config)
    try:
        c = ChatClient(r.http, r.ws_url)
        await c.connect()
        await c.say(f"{word} here, card {card}")     # the first reply is the card notice (README "Privacy")
        await r.services.runtime.drain()              # ... the turn's own DEBUG line comes with the answer
        await c.close()
        token = c.token or ""
    finally:
        await _stop(r)
    lines = capsys.readouterr().err.splitlines()
    assert [line for line in lines if " bot.runtime: " in line and word in line]      # our own DEBUG line
    assert not [line for line in lines if card in line or token in line
                or any(v in line for v in s.values())]
    assert any(f"**** {card[-4:]}" in line for line in lines)    # masked at the edge (README "Privacy")
