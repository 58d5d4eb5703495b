"""Public to private on Telegram: a complaint in a group gets a short public reply with a one-time
link, never the details, and the private chat the link opens carries it (real python-telegram-bot
against the fake Bot API on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from bot.model import utcnow
from bot.public import EXPIRED
from conftest import Running, agent_headers, start_app, stop_app, until
from fakes.telegram_api import BOT_USERNAME, FakeTelegram, command_update, text_update
from e2e.apps import fake_server, tg_config
from test_telegram import say, to_chat

fake = fake_server(FakeTelegram)
GROUP = -100555
COMPLAINT = "My order AB123456 arrived completely smashed, this is unacceptable! I want my money back"
LINK = re.compile(r"https://t\.me/" + BOT_USERNAME + r"\?start=(pub_[A-Za-z0-9_-]+)")


@pytest.fixture
async def running(tmp_path: Path, fake: FakeTelegram) -> AsyncIterator[Running]:
    r = await start_app(tg_config(tmp_path, fake))
    try:
        yield r
    finally:
        await stop_app(r)


def in_group(user_id: int, text: str, **kw: Any) -> dict:
    return text_update(GROUP, text, chat_type="supergroup", title="Acme fans", user_id=user_id,
                       first_name="Petra", last_name="Novak", **kw)


def group_calls(fake: FakeTelegram) -> list[Any]:
    return [c for c in fake.calls_to("sendMessage") if to_chat(GROUP)(c)]


async def public_link(fake: FakeTelegram, n: int = 1) -> tuple[Any, str]:
    calls = await fake.wait_for("sendMessage", predicate=to_chat(GROUP), count=n)
    m = LINK.search(calls[-1].args["text"])
    assert m, calls[-1].args["text"]
    return calls[-1], m.group(1)


async def stored_conversation(r: Running, chat: str) -> Any:
    """The private chat's conversation, once the /start message is stored (the polite word about a
    spent link is sent before the /start is stored as a message)."""
    found: list[Any] = []

    async def stored() -> bool:
        found[:] = [await r.services.store.open_conversation("telegram", chat)]
        return found[0] is not None
    await until(stored, what=f"the conversation of {chat} stored")
    return found[0]


async def open_link(fake: FakeTelegram, user_id: int, token: str, expect: str) -> Any:
    fake.push_update(command_update(user_id, "/start", payload=token, first_name="Petra"))
    return (await fake.wait_for("sendMessage", predicate=to_chat(user_id, text=expect)))[-1]


async def test_group_complaint_moves_to_private(running: Running, fake: FakeTelegram,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    r = running
    fake.push_update(in_group(601, COMPLAINT))
    call, token = await public_link(fake)
    public = call.args["text"]
    # the public reply: the configured text and the link, nothing the customer wrote, no name
    assert public.startswith("Sorry to hear that.")
    for leak in ("AB123456", "smashed", "money", "Petra", "Novak", "C-"):
        assert leak not in public
    assert call.args["reply_parameters"]["message_id"] > 0          # a reply to their message
    # the group is no conversation: nothing of it is stored as one
    assert await r.services.store.open_conversation("telegram", str(GROUP)) is None

    # the customer opens the link: the private chat starts with the public complaint
    # what it says (category, order number, story) is confirmed in one question, not asked again
    confirm = await open_link(fake, 601, token, "Let me check I have this right")
    assert "AB123456" in confirm.args["text"]
    conv = await r.services.store.open_conversation("telegram", "601")
    assert (await r.services.store.history(conv.id))[0].text == COMPLAINT
    customer = await r.services.store.get_customer(conv.customer_id)
    assert "telegram_start" not in customer.attributes                # the token is not kept
    await say(fake, 601, "yes", "photo")
    assert not [c for c in fake.calls_to("sendMessage") if to_chat(601, text="what happened")(c)]
    await say(fake, 601, "skip", "talk to a member")
    await say(fake, 601, "yes", "Complaints team")

    # the agent sees where it came from, and the public message
    async with r.http.get(r.url + "/agent/api/queue", headers=agent_headers()) as resp:
        [h] = (await resp.json())["handoffs"]
    async with r.http.get(f"{r.url}/agent/api/handoffs/{h['id']}", headers=agent_headers()) as resp:
        ctx = (await resp.json())["context"]
    assert ctx["origin"]["summary"] == "moved from the public group Acme fans"
    assert ctx["origin"]["public_messages"] == [COMPLAINT] and ctx["origin"]["channel"] == "telegram"
    assert ctx["slots"]["description"] == COMPLAINT and ctx["slots"]["order_number"] == "AB123456"
    # still nothing more in the group, and no log line above DEBUG carries the customer's words
    assert len(group_calls(fake)) == 1
    assert not [x for x in caplog.records if x.levelno >= logging.INFO
                and ("AB123456" in x.getMessage() or "smashed" in x.getMessage())]


async def test_the_link_works_once_for_its_own_person_before_it_expires(running: Running,
                                                                        fake: FakeTelegram) -> None:
    r = running
    fake.push_update(in_group(701, COMPLAINT))
    # a second message of the same person joins the first: one public reply, one link for both
    fake.push_update(in_group(701, "And nobody answers my emails"))
    _, token = await public_link(fake)
    # someone else in the group opens it: a polite word, and the link still works for its person
    note = await open_link(fake, 702, token, "doesn't work any more")
    assert note.args["text"] == EXPIRED
    assert (await r.services.store.history((await stored_conversation(r, "702")).id))[0].text.startswith("/start")
    await open_link(fake, 701, token, "Let me check I have this right")
    conv = await r.services.store.open_conversation("telegram", "701")
    assert (await r.services.store.history(conv.id))[0].text == COMPLAINT + "\n\nAnd nobody answers my emails"
    assert len(group_calls(fake)) == 1
    # used: opening it again gets the polite word
    fake.push_update(command_update(701, "/start", payload=token, first_name="Petra"))
    await fake.wait_for("sendMessage", predicate=to_chat(701, text="doesn't work any more"))

    # expired: a new link, opened after its lifetime
    fake.push_update(in_group(703, "Third time my parcel is lost, this is a scam, I'm furious"))
    _, late = await public_link(fake, 2)
    telegram = r.services.connectors["telegram"]
    telegram.public.clock = lambda: utcnow() + timedelta(minutes=31)          # type: ignore[attr-defined]
    await open_link(fake, 703, late, "doesn't work any more")
    conv = await stored_conversation(r, "703")
    assert "parcel" not in " ".join(m.text for m in await r.services.store.history(conv.id))


async def test_other_group_messages_are_not_answered_but_messages_to_the_bot_are(running: Running,
                                                                                fake: FakeTelegram) -> None:
    fake.push_update(in_group(801, "see you all at the meetup tomorrow, bring snacks"))
    fake.push_update(in_group(802, "hello"))
    mention = f"@{BOT_USERNAME} do you ship to Norway?"
    fake.push_update(in_group(803, mention, entities=[{"offset": 0, "length": len(BOT_USERNAME) + 1,
                                                       "type": "mention"}]))
    call, token = await public_link(fake)
    assert "Norway" not in call.args["text"]
    # a reply to the bot's message is to the bot too
    reply = in_group(804, "what about Iceland?")
    reply["message"]["reply_to_message"] = {
        "message_id": int(call.response["message_id"]), "date": 1, "chat": reply["message"]["chat"],
        "from": {"id": 1, "is_bot": True, "first_name": "Omnibot", "username": BOT_USERNAME}, "text": "..."}
    fake.push_update(reply)
    await public_link(fake, 2)
    await asyncio.sleep(0.5)
    assert len(group_calls(fake)) == 2          # only the messages to the bot got an answer
    # the private chat carries the question without the @mention
    await open_link(fake, 803, token, "")
    conv = await running.services.store.open_conversation("telegram", "803")
    assert (await running.services.store.history(conv.id))[0].text == "do you ship to Norway?"


async def test_mode_ignore_ignores_groups(tmp_path: Path, fake: FakeTelegram) -> None:
    r = await start_app(tg_config(tmp_path, fake, public="{mode: ignore}"))
    try:
        fake.push_update(in_group(901, COMPLAINT))
        fake.push_update(text_update(902, "when are you open?"))
        await fake.wait_for("sendMessage", predicate=to_chat(902))
        await asyncio.sleep(0.3)
        assert not group_calls(fake)
    finally:
        await stop_app(r)


async def test_mode_answer_answers_in_the_group(tmp_path: Path, fake: FakeTelegram) -> None:
    r = await start_app(tg_config(tmp_path, fake, public="{mode: answer}"))
    try:
        fake.push_update(in_group(911, "when are you open?"))
        [call] = await fake.wait_for("sendMessage", predicate=to_chat(GROUP))
        assert "Monday to Friday" in call.args["text"]
    finally:
        await stop_app(r)
