"""A blocked Telegram customer and an agent answering from the Slack thread: the thread is told,
once, that the reply was not delivered (issue 21, item 1, the Slack desk's side).

Real python-telegram-bot against the fake Bot API (403 "bot was blocked by the user" for the
chat), real slack-bolt / slack_sdk against the fake Slack, bot.delivery publishing
``delivery_failed`` as it does in production.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from conftest import start_app, stop_app
from e2e.slack_config import slack_config
from e2e.test_slack_desk import button, card_posts, click, fake, fake_ts, thread_message  # noqa: F401
from e2e.test_telegram import fake as tg_fake, say, to_chat  # noqa: F401 (pytest fixture)
from fakes.slack_api import FakeSlack
from fakes.telegram_api import FakeTelegram


async def test_blocked_customer_reply_from_slack_is_reported_in_the_thread(
        tmp_path: Path, fake: FakeSlack, tg_fake: FakeTelegram) -> None:  # noqa: F811
    tg = tg_fake
    config = slack_config(tmp_path, fake, team_channels={}, agents=["UANNA"], more_yaml=f"""
telegram:
  enabled: true
  token: "{tg.token}"
  mode: polling
  api_url: "{tg.base_url}"
  file_url: "{tg.base_file_url}"
  poll_timeout: 1
""")
    r = await start_app(config)
    try:
        await say(tg, 4243, "I want to talk to a person", expect="queue")
        [card] = await fake.wait_for("chat.postMessage", predicate=card_posts(fake, "CSUP"))
        hid, ts = button(card.args["blocks"], "omnibot_claim")["value"], fake_ts(fake, card)
        assert await click(r, "omnibot_claim", hid, "UANNA", ts, channel="CSUP") == 200
        await tg.wait_for("sendMessage", predicate=lambda c: to_chat(4243, text="has joined")(c) and not c.failed)

        tg.fail_next("sendMessage", status=403, description="Forbidden: bot was blocked by the user", chat_id=4243,
                     times=1000)
        assert await thread_message(r, "We will send a new lamp", "UANNA", ts, event_id="EvB1",
                                    channel="CSUP") == 200
        [warn] = await fake.wait_for("chat.postMessage", timeout=5, predicate=lambda x: x.args.get("thread_ts") == ts
                                     and "Not delivered to the customer" in x.args.get("text", ""))
        assert "blocked" in warn.args["text"], warn.args["text"]
        # and the card says the customer cannot be reached there
        await fake.wait_for("chat.update", timeout=5, predicate=lambda x: x.args.get("ts") == ts
                            and "Not reachable on telegram: the customer blocked the bot" in str(x.args.get("blocks")))
        await asyncio.sleep(1.0)            # sweeps and the event: told once
        assert len([x for x in fake.calls_to("chat.postMessage")
                    if "Not delivered" in x.args.get("text", "")]) == 1
    finally:
        await stop_app(r)
