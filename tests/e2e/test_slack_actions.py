"""Notes, transfer with a note, take-over and canned replies on the Slack desk: real slack-bolt
against the fake Slack, members mapped to agent accounts (handoff/slack_commands.py)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import AsyncIterator

import pytest
from conftest import FakeClock, Running, start_app, stop_app
from e2e.slack_config import slack_config
from e2e.test_slack_desk import click, complaint_to_slack, fake, post, thread_message  # noqa: F401 (pytest fixture)
from fakes.slack_api import FakeSlack, command_body

from bot.agents import add_agent, new_token, token_hash
from bot.model import utcnow


@pytest.fixture
async def app(tmp_path: Path, fake: FakeSlack) -> AsyncIterator[Running]:  # noqa: F811
    r = await start_app(slack_config(tmp_path, fake, agents=[],
                                     members={"UANNA": "anna@shop.test", "UBOB": "bob@shop.test",
                                              "UEVE": "eve@shop.test", "USUE": "sue@shop.test"}))
    try:
        for name, email, teams, role in [("Anna Karlsson", "anna@shop.test", ["complaints"], "agent"),
                                         ("Bob Jones", "bob@shop.test", ["complaints"], "agent"),
                                         ("Eve Berg", "eve@shop.test", ["support"], "agent"),
                                         ("Sue Park", "sue@shop.test", ["complaints"], "supervisor")]:
            await add_agent(r.services.store, name=name, email=email, teams=teams, role=role, password="long enough")
        yield r
    finally:
        await stop_app(r)


def in_thread(ts: str, needle: str):
    return lambda x: x.args.get("thread_ts") == ts and needle in x.args.get("text", "")


async def command(r: Running, text: str, user: str) -> int:
    return (await post(r, command_body("/omnibot", text, user_id=user, channel_id="CCOMP")))[0]


async def test_notes_both_ways_and_never_to_the_customer(app: Running, fake: FakeSlack) -> None:  # noqa: F811
    r = app
    c, hid, ts = await complaint_to_slack(r, fake)
    try:
        h = await r.services.store.get_handoff(hid)
        assert h is not None
        # a note written in the thread is kept (the web desk lists it), not sent, not echoed back
        assert await thread_message(r, "note: courier says <b>lost</b>", "UANNA", ts, event_id="Ev1") == 200
        assert await thread_message(r, "// second one, old prefix", "UANNA", ts, event_id="Ev2") == 200
        for _ in range(50):
            notes = await r.services.store.notes_of(h.conversation_id)
            if len(notes) == 2:
                break
            await asyncio.sleep(0.05)
        assert [(n.author, n.text, n.via) for n in notes] == [("Anna Karlsson", "courier says <b>lost</b>", "slack"),
                                                                ("Anna Karlsson", "second one, old prefix", "slack")]
        # a note written on the web desk appears in the thread, marked as a note
        token = new_token()
        await r.services.store.set_agent_token("bob@shop.test", token_hash(token))
        async with r.http.post(f"{r.url}/agent/api/conversations/{h.conversation_id}/notes",
                               headers={"Authorization": f"Bearer {token}"}, json={"text": "VIP, be quick"}) as resp:
            assert resp.status == 200
        [posted] = await fake.wait_for("chat.postMessage", predicate=in_thread(ts, "VIP, be quick"))
        assert "Internal note from Bob Jones (web desk)" in posted.args["text"]
        # a slash-command note too
        assert await command(r, "note C-1001 refund approved by finance", "UBOB") == 200
        await fake.wait_for("chat.postMessage", predicate=in_thread(ts, "refund approved by finance"))
        await asyncio.sleep(0.8)     # the sweep ran meanwhile: nothing posted twice, nothing echoed
        assert len([x for x in fake.calls_to("chat.postMessage") if in_thread(ts, "VIP, be quick")(x)]) == 1
        assert not [x for x in fake.calls_to("chat.postMessage") if in_thread(ts, "courier says")(x)]
        with pytest.raises(asyncio.TimeoutError):
            await c.reply(timeout=0.3)
        assert not [m for m in await r.services.store.history(h.conversation_id, limit=200)
                    if "VIP" in m.text or "courier" in m.text or "finance" in m.text]
    finally:
        await c.close()


async def test_transfer_to_a_member_with_a_note_and_take_over(app: Running, fake: FakeSlack) -> None:  # noqa: F811
    r = app
    c, hid, ts = await complaint_to_slack(r, fake)
    try:
        assert await click(r, "omnibot_claim", hid, "UANNA", ts) == 200
        assert (await c.reply())["text"] == "Anna from Complaints has joined the conversation."
        # to a member with no agent account: refused, nothing changes
        assert await thread_message(r, "!transfer <@UNOBODY> please", "UANNA", ts, event_id="Ev1") == 200
        [eph] = await fake.wait_for("chat.postEphemeral")
        assert "neither a team" in eph.args["text"]
        assert (await r.services.store.get_handoff(hid)).agent == "Anna Karlsson"  # type: ignore[union-attr]
        # to Bob, with a note
        assert await command(r, "transfer <@UBOB|bob> C-1001 wants a call back after 5pm", "UANNA") == 200
        m = await c.reply()
        assert m["text"].startswith("Anna is transferring you to Bob from Complaints, who can best help")
        h = await r.services.store.get_handoff(hid)
        assert h is not None and h.state == "claimed" and h.agent == "Bob Jones"
        await fake.wait_for("chat.postMessage", predicate=in_thread(ts, "wants a call back after 5pm"))

        # Anna takes it back: too early (Bob's claim is fresh), later fine
        assert await command(r, "takeover C-1001", "UANNA") == 200
        [eph] = await fake.wait_for("chat.postEphemeral", predicate=lambda x: "Not taken over" in x.args["text"])
        assert "after 15 min" in eph.args["text"]
        r.services.queue.clock = FakeClock(utcnow() + timedelta(minutes=16))
        assert await thread_message(r, "!takeover", "UANNA", ts, event_id="Ev2") == 200
        m = await c.reply()
        assert m["text"] == "Anna from Complaints is taking over from Bob and will continue with you."
        await fake.wait_for("chat.postMessage", predicate=in_thread(ts, "took over this conversation from Bob Jones"))
        # Eve (another team) may not; Sue (supervisor) may at once
        r.services.queue.clock = FakeClock(utcnow())
        assert await command(r, "takeover C-1001", "UEVE") == 200
        await fake.wait_for("chat.postEphemeral", predicate=lambda x: x.args["user"] == "UEVE")
        assert await command(r, "takeover C-1001", "USUE") == 200
        m = await c.reply()
        assert m["text"] == "Sue from Complaints is taking over from Anna and will continue with you."
    finally:
        await c.close()


async def test_canned_reply_from_slack(app: Running, fake: FakeSlack) -> None:  # noqa: F811
    r = app
    c, hid, ts = await complaint_to_slack(r, fake)
    try:
        assert await command(r, "canned refund", "UANNA") == 200
        [eph] = await fake.wait_for("chat.postEphemeral")
        assert "refund_started" in eph.args["text"]
        # not claimed yet: nothing is sent
        assert await command(r, "reply refund_started C-1001", "UANNA") == 200
        await fake.wait_for("chat.postEphemeral", count=2)
        assert await click(r, "omnibot_claim", hid, "UANNA", ts) == 200
        await c.reply()
        assert await thread_message(r, "!reply refund_started", "UANNA", ts, event_id="Ev1") == 200
        m = await c.reply()
        assert m["role"] == "agent" and m["sender"] == "Anna"
        assert "I've started a refund for order AB123456." in m["text"] and "Your reference is C-1001." in m["text"]
        await fake.wait_for("chat.postMessage", predicate=in_thread(ts, "canned reply `refund_started`"))
        assert await command(r, "reply nosuchreply C-1001", "UANNA") == 200
        await fake.wait_for("chat.postEphemeral", predicate=lambda x: "No canned reply 'nosuchreply'" in x.args["text"])
    finally:
        await c.close()
