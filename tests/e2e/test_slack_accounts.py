"""Slack members mapped to agent accounts (slack.members): a mapped member acts on Slack as the
account (its name, role and teams), and not at all once the account is disabled."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import AsyncIterator

import pytest

from bot.agents import add_agent
from conftest import Running, start_app, stop_app
from e2e.slack_config import slack_config
from e2e.test_slack_desk import click, complaint_to_slack, fake, thread_message  # noqa: F401 (fixture)
from fakes.slack_api import FakeSlack


@pytest.fixture
async def mapped_app(tmp_path: Path, fake: FakeSlack) -> AsyncIterator[Running]:  # noqa: F811
    r = await start_app(slack_config(tmp_path, fake, agents=["UBOB"],
                                     members={"UANNA": "anna@shop.test", "UEVE": "eve@shop.test"}))
    try:
        for name, email, team in [("Anna Karlsson", "anna@shop.test", "complaints"),
                                  ("Eve Berg", "eve@shop.test", "support")]:
            await add_agent(r.services.store, name=name, email=email, teams=[team], role="agent",
                            password="long enough")
        yield r
    finally:
        await stop_app(r)


async def test_a_mapped_member_acts_as_their_account(mapped_app: Running, fake: FakeSlack) -> None:  # noqa: F811
    r = mapped_app
    c, hid, ts = await complaint_to_slack(r, fake)
    try:
        # Eve's account works the support queue only: the complaints card is not hers to claim
        assert await click(r, "omnibot_claim", hid, "UEVE", ts) == 200
        [eph] = await fake.wait_for("chat.postEphemeral")
        assert eph.args["user"] == "UEVE" and "may not claim" in eph.args["text"]
        assert (await r.services.store.get_handoff(hid)).state == "queued"  # type: ignore[union-attr]

        assert await click(r, "omnibot_claim", hid, "UANNA", ts) == 200
        m = await c.reply()
        assert m["text"] == "Anna from Complaints has joined the conversation."
        # the account's name, not the Slack profile's ("Anna Smith") nor "... (slack:UANNA)"
        assert (await r.services.store.get_handoff(hid)).agent == "Anna Karlsson"  # type: ignore[union-attr]
        assert await thread_message(r, "Hello, a new lamp is on its way.", "UANNA", ts, event_id="Ev1") == 200
        m = await c.reply()
        assert m["role"] == "agent" and m["sender"] == "Anna"

        await r.services.store.set_agent_disabled("anna@shop.test", True)
        assert await thread_message(r, "still me", "UANNA", ts, event_id="Ev2") == 200
        await fake.wait_for("chat.postEphemeral", count=2)
        with pytest.raises(asyncio.TimeoutError):
            await c.reply(timeout=0.4)
    finally:
        await c.close()
