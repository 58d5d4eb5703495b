"""One customer across channels, for real: a web-chat customer links their Telegram account with
a one-time code (real python-telegram-bot against the fake Bot API); the complaint's status is
then available on Telegram, agents see both identities, and nobody else gets in by claiming."""

from __future__ import annotations

import re

from conftest import Running, agent_headers, agent_queue
from e2e.chat import ChatClient
from e2e.test_telegram import fake, polling, say  # noqa: F401 (pytest fixtures)
from e2e.test_tickets_e2e import _file_complaint
from fakes.telegram_api import FakeTelegram


async def test_link_web_chat_and_telegram_with_a_code(polling: Running, fake: FakeTelegram) -> None:  # noqa: F811
    web = ChatClient(polling.http, polling.ws_url)
    await web.connect()
    try:
        ref = await _file_complaint(web, "shipping", "AB123456", "The parcel never came.")
        await web.say("No, that's all", payload="no")

        # Telegram before linking: a stranger to this complaint, whatever they claim
        await say(fake, 4242, f"I'm the one who wrote on your website, what's the status of {ref}?",
                  expect=f"couldn't find a complaint {ref}")

        [m] = await web.say("link my accounts")
        code = re.search(r'"link (\d{6})"', m["text"])
        assert code, m["text"]
        await say(fake, 4242, f"link {code.group(1)}", expect="Done: your accounts are linked")
        await say(fake, 4242, f"what's the status of {ref}?", expect=f"Your complaint {ref} about shipping")

        # another Telegram user cannot use the same (spent) code
        await say(fake, 5151, f"link {code.group(1)}", expect="isn't valid")
        await say(fake, 5151, f"status of {ref}", expect=f"couldn't find a complaint {ref}")

        # the agent sees one customer with both identities and the earlier conversation
        await say(fake, 4242, "I want to talk to a person", expect="queue")
        [h] = await agent_queue(polling)
        async with polling.http.get(f"{polling.url}/agent/api/handoffs/{h['id']}",
                                    headers=agent_headers()) as resp:
            ctx = (await resp.json())["context"]
        channels = sorted(i["channel"] for i in ctx["customer"]["identities"])
        assert channels == ["telegram", "webchat"]
        assert any(p["channel"] == "webchat" for p in ctx["customer"]["previous_conversations"])
    finally:
        await web.close()
