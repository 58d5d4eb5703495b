"""Follow-up after resolution, with a clock the test controls: asked when due (not before),
on the customer's channel, surviving a restart; "no" reopens the ticket and queues it again."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from bot.app import SERVICES
from conftest import FakeClock, Running, agent_headers, agent_queue, make_config, start_app, stop_app
from e2e.chat import ChatClient
from e2e.test_tickets_e2e import _file_complaint

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


def _use_clock(r: Running, clock: FakeClock) -> None:
    tickets = r.app[SERVICES].tickets
    assert tickets is not None
    tickets.clock = clock


async def _resolved_complaint(r: Running, c: ChatClient) -> str:
    """File a complaint, get a person, have it resolved, answer the survey; return the reference."""
    ref = await _file_complaint(c, "product", "GH444444", "The blender lid cracked on day one.")
    await c.say("Yes, talk to a person", payload="yes", expect_text="queue")
    [h] = await agent_queue(r)
    for action, body in (("claim", None), ("resolve", {"result": "a new lid is on its way"})):
        async with r.http.post(f"{r.url}/agent/api/handoffs/{h['id']}/{action}", headers=agent_headers(),
                               json=body or {}) as resp:
            assert resp.status == 200
    await c.replies_until(lambda m: "How satisfied" in m["text"])
    await c.say("5", payload="5")
    await c.say("skip", expect_text="Thanks for your feedback")
    return ref


async def test_follow_up_when_due_and_no_reopens(running: Running) -> None:
    clock = FakeClock(T0)
    _use_clock(running, clock)
    followups = running.app[SERVICES].followups
    store = running.app[SERVICES].store
    assert followups is not None
    c = ChatClient(running.http, running.ws_url)
    await c.connect()
    try:
        ref = await _resolved_complaint(running, c)
        t = await store.get_ticket(ref)
        assert t is not None and t.followup_due_at == T0 + timedelta(days=3)

        clock.now = T0 + timedelta(days=2, hours=23)
        assert await followups.run_due() == 0                     # not yet
        clock.now = T0 + timedelta(days=3, minutes=1)
        assert await followups.run_due() == 1
        m = await c.reply()
        assert f"we resolved your complaint {ref}. Has the problem stayed solved?" in m["text"]
        assert [b["payload"] for b in m["buttons"]] == ["yes", "no"]
        assert await followups.run_due() == 0                     # asked once only

        got = await c.say("No, it's not solved", payload="no", expect_text="queue")
        assert any(f"I've reopened {ref}" in m["text"] for m in got)
        t = await store.get_ticket(ref)
        assert t is not None and t.status == "reopened" and t.reopened == 1 and t.resolved_at is None
        [h] = await agent_queue(running)
        assert h["priority"] >= 2
        async with running.http.get(f"{running.url}/agent/api/handoffs/{h['id']}",
                                    headers=agent_headers()) as resp:
            ctx = (await resp.json())["context"]
        assert ctx["ticket"]["reference"] == ref and ctx["ticket"]["status"] == "reopened"
    finally:
        await c.close()


async def test_a_yes_closes_the_loop(running: Running) -> None:
    clock = FakeClock(T0)
    _use_clock(running, clock)
    c = ChatClient(running.http, running.ws_url)
    await c.connect()
    try:
        ref = await _resolved_complaint(running, c)
        clock.now = T0 + timedelta(days=4)
        assert await running.app[SERVICES].followups.run_due() == 1  # type: ignore[union-attr]
        await c.reply()
        [m] = await c.say("yes all good", payload="yes")
        assert m["text"] == "Great, thanks for letting us know!"
        t = await running.app[SERVICES].store.get_ticket(ref)
        assert t is not None and t.status == "resolved" and t.reopened == 0
        assert await agent_queue(running) == []
    finally:
        await c.close()


async def test_a_pending_follow_up_survives_a_restart(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    r = await start_app(config)
    clock = FakeClock(T0)
    _use_clock(r, clock)
    c = ChatClient(r.http, r.ws_url)
    await c.connect()
    try:
        ref = await _resolved_complaint(r, c)
        token = c.token
    finally:
        await c.close()
        await stop_app(r)

    r2 = await start_app(config)
    clock.now = T0 + timedelta(days=3, hours=1)
    _use_clock(r2, clock)
    c2 = ChatClient(r2.http, r2.ws_url)
    try:
        followups = r2.app[SERVICES].followups
        assert followups is not None
        # asked once, whether by this call or by the periodic check that runs from the start
        await followups.run_due()
        assert followups.asked == 1
        welcome = await c2.connect(token=token)       # the same customer comes back to the widget
        texts = [m["text"] for m in welcome["history"]]
        assert len([t for t in texts if f"resolved your complaint {ref}. Has the problem stayed solved?" in t]) == 1
    finally:
        await c2.close()
        await stop_app(r2)
