"""Privacy on the Slack desk (README "Privacy"): what the fake Slack received (the card, its updates,
the thread lines, the relayed notes, the transcript file) holds no e-mail address or phone number of
the customer in clear, while order numbers, dates, amounts and ticket references are untouched; and
the card shows the complaint flow's labelled fields, not every slot."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import AsyncIterator

import pytest

from conftest import Running, agent_headers, start_app, stop_app
from e2e.chat import ChatClient
from e2e.slack_config import slack_config
from e2e.test_slack_desk import button, card_posts, click, fake_ts
from fakes.slack_api import FakeSlack

EMAIL, PHONE = "ann.privacy@shop.example", "+44 20 7946 0958"
IN_CLEAR = [EMAIL, "ann.privacy", PHONE, "7946 0958", "2079460958", "7946"]
NEGATIVE = ["AB123456", "2026-11-30", "1,234.56", "C-1042"]


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    f = FakeSlack()
    await f.start()
    f.add_user("UANNA", "Anna Smith")
    try:
        yield f
    finally:
        await f.stop()


@pytest.fixture
async def slack_app(tmp_path: Path, fake: FakeSlack) -> AsyncIterator[Running]:
    # three transcript lines on the card: the rest goes up as a file, which is scanned too
    r = await start_app(slack_config(tmp_path, fake, transcript_lines=3))
    try:
        yield r
    finally:
        await stop_app(r)


def received(fake: FakeSlack) -> str:
    """Everything the fake Slack was sent: every Web API call's arguments and every uploaded file."""
    calls = [json.dumps(c.args, ensure_ascii=False) for c in fake.calls]
    files = [data.decode("utf-8", "replace") for data in fake.files.values()]
    return "\n".join(calls + files)


async def test_slack_copies_mask_email_and_phone_but_not_the_negative_controls(slack_app: Running,
                                                                               fake: FakeSlack) -> None:
    r = slack_app
    c = ChatClient(r.http, r.ws_url)
    await c.connect()
    try:
        await c.say("I want to complain", expect_text="What is it about?")
        await c.say("Product", payload="product")
        await c.say("AB123456")
        await c.say(f"The lamp of order AB123456 from 2026-11-30 (€1,234.56) is broken, see C-1042. "
                    f"Write to {EMAIL} or call {PHONE}")
        await c.say("skip", expect_text="talk to a member")
        await c.say("yes", payload="yes")
        [card] = await fake.wait_for("chat.postMessage", predicate=card_posts(fake, "CCOMP"))
        hid = button(card.args["blocks"], "omnibot_claim")["value"]
        ts = fake_ts(fake, card)
        blocks = json.dumps(card.args["blocks"], ensure_ascii=False)
        # the flow's labelled fields (flows= passed to the context), the description masked in it
        assert "cus_" not in blocks                       # a readable customer name, never the bare id
        assert "*Problem area:* Product" in blocks and "*Order number:* AB123456" in blocks
        assert "What happened:" in blocks and "a***@shop.example" in blocks
        assert "Ticket due" not in blocks and "Ticket department" not in blocks     # slots no flow step asks

        assert await click(r, "omnibot_claim", hid, "UANNA", ts) == 200
        await c.send(f"again, my mobile is {PHONE} and my mail {EMAIL}; the order was AB123456 on 2026-11-30")
        line = await fake.wait_for("chat.postMessage", predicate=lambda x: x.args.get("thread_ts") == ts
                                   and "again, my mobile" in x.args.get("text", ""))
        assert "AB123456" in line[0].args["text"] and "2026-11-30" in line[0].args["text"]

        # a web-desk note that names the customer's contacts is relayed to the thread masked
        h = await r.services.store.get_handoff(hid)
        assert h is not None
        async with r.http.post(r.url + f"/agent/api/conversations/{h.conversation_id}/notes",
                               headers=agent_headers("Bob Web"),
                               json={"text": f"she asked to be called on {PHONE} about C-1042"}) as resp:
            assert resp.status == 200
        note = await fake.wait_for("chat.postMessage", predicate=lambda x: x.args.get("thread_ts") == ts
                                   and "Internal note" in x.args.get("text", ""))
        assert "C-1042" in note[0].args["text"]
        await fake.wait_for("chat.update", predicate=lambda x: "claimed by" in json.dumps(x.args))
        await asyncio.sleep(0.5)          # a sweep or two more: anything else Slack would get
    finally:
        await c.close()

    assert fake.files, "the transcript file was uploaded"
    everything = received(fake)
    for value in IN_CLEAR:
        assert value not in everything, value
    for value in NEGATIVE:
        assert value in everything, value
    # and the database still has them: only the Slack copies are masked (privacy.policy stored: clear)
    history = await r.services.store.history(h.conversation_id, limit=100)
    assert any(EMAIL in m.text and PHONE in m.text for m in history)
