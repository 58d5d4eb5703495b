"""What agents read about a conversation's origin, in the desk's language (README "Languages").

Agent accounts and desks carry no language, so the summary of where a conversation came from
(moved from a public Telegram group) is in the flows' default language, whatever the customer's,
and ``settings.messages.origin_public`` overrides it. Real python-telegram-bot against the fake Bot
API, the agent desk's HTTP API, a copy of the demo flows with another default language.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import Running, agent_headers, agent_queue, make_config, serving, start_app, stop_app, until
from e2e.apps import demo_copy, fake_server, on_flows, tg_config
from fakes.telegram_api import FakeTelegram
from test_telegram import say
from test_telegram_public import COMPLAINT, in_group, open_link, public_link


fake = fake_server(FakeTelegram)


def learned(nlu_cache: Path) -> str:
    """The config section for the learned matcher, its model kept in ``nlu_cache``."""
    return f"nlu: {{cache_dir: '{nlu_cache}'}}"


@pytest.fixture(scope="module")
def nlu_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The learned matcher's trained model, shared by this module's tests (trained once)."""
    return tmp_path_factory.mktemp("nlu-cache")


async def _origin_seen_by_agents(tmp_path: Path, fake: FakeTelegram, flows: Path,
                                 nlu_cache: Path) -> dict[str, Any]:
    async with serving(on_flows(tg_config(tmp_path, fake, sections=learned(nlu_cache)), flows)) as r:
        fake.push_update(in_group(611, COMPLAINT))
        _, token = await public_link(fake)
        await open_link(fake, 611, token, "Let me check I have this right")     # the customer writes English
        await say(fake, 611, "yes", "photo")
        await say(fake, 611, "skip", "talk to a member")
        await say(fake, 611, "yes", "Complaints team")
        await until(lambda: agent_queue(r), what="the handoff queued")
        [h] = await agent_queue(r)
        async with r.http.get(f"{r.url}/agent/api/handoffs/{h['id']}", headers=agent_headers()) as resp:
            assert resp.status == 200
            ctx = (await resp.json())["context"]
        assert ctx["conversation"]["language"] == "en"
        return ctx["origin"]


@pytest.mark.parametrize(("default", "summary"), [
    ("es", "trasladada desde el grupo público Acme fans"),
    ("id", "dipindahkan dari grup publik Acme fans"),
])
async def test_origin_summary_in_the_desks_default_language(tmp_path: Path, fake: FakeTelegram,
                                                            default: str, summary: str, nlu_cache: Path) -> None:
    origin = await _origin_seen_by_agents(tmp_path, fake, demo_copy(tmp_path, default_language=default), nlu_cache)
    assert origin["summary"] == summary
    assert origin["public_messages"] == [COMPLAINT] and origin["place"] == "Acme fans"


async def test_origin_summary_overridden_under_settings_messages(tmp_path: Path, fake: FakeTelegram,
                                                                 nlu_cache: Path) -> None:
    flows = demo_copy(tmp_path, default_language="id",
                      messages={"origin_public": {"id": "Pelanggan datang dari grup Telegram {{ place }}"}})
    origin = await _origin_seen_by_agents(tmp_path, fake, flows, nlu_cache)
    assert origin["summary"] == "Pelanggan datang dari grup Telegram Acme fans"


@pytest.mark.parametrize(("default", "asked", "complaint", "urgency"), [
    ("es", "pidió hablar con una persona", "reclamación {} (shipping, ", "; urgencia "),
    ("id", "meminta berbicara dengan petugas", "keluhan {} (shipping, ", "; urgensi "),
])
async def test_why_it_was_handed_over_in_the_desks_default_language(
        tmp_path: Path, nlu_cache: Path, default: str, asked: str, complaint: str, urgency: str) -> None:
    """The reason written for agents (context agent_reason) is in the flows' default language,
    whatever the customer's: the customer asking, and an urgent complaint written in English."""
    from e2e.chat import ChatClient
    from e2e.test_tickets_e2e import _file_complaint

    r = await start_app(on_flows(make_config(tmp_path, learned(nlu_cache)),
                                 demo_copy(tmp_path, default_language=default)))
    asks, complains = ChatClient(r.http, r.ws_url), ChatClient(r.http, r.ws_url)
    try:
        await asks.connect()
        await complains.connect()
        await asks.say("I want to talk to a person", expect_text="Customer Care")
        ref = await _file_complaint(complains, "shipping", "AB123456",
                                    "This is the third time the parcel never came!! I will call my lawyer.")
        await complains.say("Yes, talk to a person", payload="yes", expect_text="queue")
        queue = await agent_queue(r)
        reasons = {h["conversation_id"]: h["agent_reason"] for h in queue}
        conv_a = await r.services.store.latest_conversation("webchat", await _visitor(r, asks))
        conv_c = await r.services.store.latest_conversation("webchat", await _visitor(r, complains))
        assert reasons[conv_a.id] == asked
        assert reasons[conv_c.id].startswith(complaint.format(ref)), reasons[conv_c.id]
        assert urgency in reasons[conv_c.id], reasons[conv_c.id]
    finally:
        await asks.close()
        await complains.close()
        await stop_app(r)


async def _visitor(r: Running, c: Any) -> str:
    return r.services.connectors["webchat"].signer.verify(c.token)  # type: ignore[attr-defined]
