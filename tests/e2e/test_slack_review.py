"""Review and authority on the Slack desk (fake Slack, real slack-bolt): a complaint is resolved
with an outcome written in the thread, proposed for review, sent back and approved with the
card's buttons and thread commands by mapped accounts; a compensation above an agent's authority
is approved with its card's button, and an agent's click is refused."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from bot.agents import add_agent
from conftest import Running, start_app, stop_app, until
from e2e.slack_config import slack_config
from e2e.test_slack_desk import button, click, complaint_to_slack, fake, thread_message  # noqa: F401 (fixture)
from fakes.slack_api import FakeSlack


@pytest.fixture
async def review_app(tmp_path: Path, fake: FakeSlack) -> AsyncIterator[Running]:  # noqa: F811
    fake.add_user("USUE", "Sue Park")
    r = await start_app(slack_config(tmp_path, fake, agents=[],
                                     members={"UANNA": "anna@shop.test", "USUE": "sue@shop.test"},
                                     more_yaml="complaints: {review: {min_severity: low}, authority: {agent: 50}}"))
    try:
        for name, email, role in [("Anna Karlsson", "anna@shop.test", "agent"),
                                  ("Sue Park", "sue@shop.test", "supervisor")]:
            await add_agent(r.services.store, name=name, email=email, teams=["complaints"], role=role,
                            password="long enough")
        yield r
    finally:
        await stop_app(r)


def with_button(action_id: str) -> Any:
    return lambda call: bool(call.args.get("blocks")) and button(call.args["blocks"], action_id) is not None


def ephemeral(user: str, text: str) -> Any:
    return lambda call: call.args.get("user") == user and text in call.args.get("text", "")


async def test_review_and_approval_buttons_on_slack(review_app: Running, fake: FakeSlack) -> None:  # noqa: F811
    r, store = review_app, review_app.services.store
    c, hid, ts = await complaint_to_slack(r, fake)
    try:
        assert await click(r, "omnibot_claim", hid, "UANNA", ts) == 200
        assert (await c.reply())["text"].endswith("has joined the conversation.")

        # the Resolve button carries no outcome: a complaint asks for it, nothing is resolved
        assert await click(r, "omnibot_resolve", hid, "UANNA", ts) == 200
        await fake.wait_for("chat.postEphemeral", predicate=ephemeral("UANNA", "!resolve <what was done>"))
        assert (await store.get_handoff(hid)).state == "claimed"            # type: ignore[union-attr]

        # the outcome written in the thread: proposed for review, a card with the buttons
        assert await thread_message(r, "!resolve a new lamp is on its way", "UANNA", ts, event_id="Ev1") == 200
        [card] = await fake.wait_for("chat.postMessage", predicate=with_button("omnibot_review_approve"))
        assert card.args["thread_ts"] == ts and "a new lamp is on its way" in card.args["text"]
        ref = button(card.args["blocks"], "omnibot_review_approve")["value"]
        ticket = await store.get_ticket(ref)
        assert ticket is not None and ticket.review_state == "pending"
        with pytest.raises(asyncio.TimeoutError):
            await c.reply(timeout=0.5)                                       # the customer hears nothing

        # an agent cannot approve; the supervisor sends it back with a note in the thread
        assert await click(r, "omnibot_review_approve", ref, "UANNA", ts) == 200
        await fake.wait_for("chat.postEphemeral", predicate=ephemeral("UANNA", "may not approve"))
        assert await click(r, "omnibot_review_return", ref, "USUE", ts) == 200
        await fake.wait_for("chat.postEphemeral", predicate=ephemeral("USUE", "!return <note>"))
        assert await thread_message(r, "!return offer a refund too", "USUE", ts, event_id="Ev2") == 200
        await fake.wait_for("chat.postMessage", predicate=lambda call: "sent the proposed resolution" in
                            call.args.get("text", "") and "offer a refund too" in call.args["text"])
        assert (await store.get_ticket(ref)).review_state == "returned"     # type: ignore[union-attr]

        # a compensation above Anna's authority: a card; her click is refused, Sue's approves
        anna = await store.agent_by_email("anna@shop.test")
        comp = await r.services.reviews.request_compensation(anna, ref, "refund", 80, "broken twice")
        assert comp.state == "pending"
        [ccard] = await fake.wait_for("chat.postMessage", predicate=with_button("omnibot_comp_approve"))
        assert "80.00 EUR" in ccard.args["text"] and ccard.args["thread_ts"] == ts
        cts = card_ts(fake, ccard)                      # the buttons are on the card, in the thread
        assert await click(r, "omnibot_comp_approve", comp.id, "UANNA", cts) == 200
        await fake.wait_for("chat.postEphemeral", predicate=ephemeral("UANNA", "may not approve"))
        assert all(c.args.get("ts") != cts for c in fake.calls_to("chat.update"))    # refused: card unchanged
        assert await click(r, "omnibot_comp_approve", comp.id, "USUE", cts) == 200
        await until(lambda: _state(store, ref), what="compensation approved")
        # the decided card loses its buttons and says who decided
        [settled] = await fake.wait_for("chat.update", predicate=lambda call: call.args.get("ts") == cts)
        assert "Approved by Sue Park" in settled.args["text"]
        assert not [b for b in settled.args["blocks"] if b["type"] == "actions"]
        assert await click(r, "omnibot_comp_reject", comp.id, "USUE", cts) == 200
        await fake.wait_for("chat.postEphemeral", predicate=ephemeral("USUE", "decided already"))

        # proposed again, approved with the button: now the customer is told, then the survey
        assert await thread_message(r, "!resolve a refund and a new lamp", "UANNA", ts, event_id="Ev3") == 200
        cards = await fake.wait_for("chat.postMessage", count=2, predicate=with_button("omnibot_review_approve"))
        rts = card_ts(fake, cards[-1])
        assert await click(r, "omnibot_review_approve", ref, "USUE", rts) == 200
        [settled] = await fake.wait_for("chat.update", predicate=lambda call: call.args.get("ts") == rts)
        assert "Approved by Sue Park" in settled.args["text"]
        m = await c.reply()
        assert m["text"] == f"Anna resolved your complaint {ref}: a refund and a new lamp"
        done = await store.get_ticket(ref)
        assert done is not None and done.reviewed_by == "Sue Park" and done.communicated_at is not None
    finally:
        await c.close()


def card_ts(fake: Any, call: Any) -> str:  # noqa: F811
    """The ts Slack gave the message that ``call`` posted."""
    return next(ts for (_, ts), m in fake.messages.items()
                if m.get("text") == call.args["text"] and m.get("blocks") == call.args.get("blocks"))


async def _state(store: Any, ref: str) -> bool:
    return [x.state for x in await store.compensations_of(ref)] == ["approved"]
