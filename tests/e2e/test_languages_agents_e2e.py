"""What agents read about a conversation's origin, in the desk's language (README "Languages").

Agent accounts and desks carry no language, so the summary of where a conversation came from
(moved from a public Telegram group) is in the flows' default language, whatever the customer's,
and ``settings.messages.origin_public`` overrides it. Real python-telegram-bot against the fake Bot
API, the agent desk's HTTP API, a copy of the demo flows with another default language.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import DEMO_FLOWS, Running, agent_headers, agent_queue, make_config, start_app, stop_app, until
from fakes.telegram_api import FakeTelegram
from test_telegram import fake, say, tg_config  # noqa: F401 - fake: the fake Telegram fixture
from test_telegram_public import COMPLAINT, in_group, open_link, public_link


def flows_with(tmp_path: Path, default: str, messages: dict[str, Any] | None = None) -> Path:
    flows = tmp_path / "flows"
    shutil.copytree(DEMO_FLOWS, flows)
    path = flows / "settings.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["settings"]["languages"]["default"] = default
    if messages:
        data["settings"].setdefault("messages", {}).update(messages)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return flows


@pytest.fixture(scope="module")
def nlu_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The learned matcher's trained model, shared by this module's tests (trained once)."""
    return tmp_path_factory.mktemp("nlu-cache")


async def _origin_seen_by_agents(tmp_path: Path, fake: FakeTelegram, flows: Path,  # noqa: F811
                                 nlu_cache: Path) -> dict[str, Any]:
    config = tg_config(tmp_path, fake)
    config = config.model_copy(update={"nlu": make_config(tmp_path, f"nlu: {{cache_dir: '{nlu_cache}'}}").nlu,
                                       "flows": config.flows.model_copy(update={"path": str(flows)})})
    r: Running = await start_app(config)
    try:
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
    finally:
        await stop_app(r)


@pytest.mark.parametrize(("default", "summary"), [
    ("es", "trasladada desde el grupo público Acme fans"),
    ("id", "dipindahkan dari grup publik Acme fans"),
])
async def test_origin_summary_in_the_desks_default_language(tmp_path: Path, fake: FakeTelegram,  # noqa: F811
                                                            default: str, summary: str, nlu_cache: Path) -> None:
    origin = await _origin_seen_by_agents(tmp_path, fake, flows_with(tmp_path, default), nlu_cache)
    assert origin["summary"] == summary
    assert origin["public_messages"] == [COMPLAINT] and origin["place"] == "Acme fans"


async def test_origin_summary_overridden_under_settings_messages(tmp_path: Path, fake: FakeTelegram,  # noqa: F811
                                                                 nlu_cache: Path) -> None:
    flows = flows_with(tmp_path, "id", {"origin_public": {"id": "Pelanggan datang dari grup Telegram {{ place }}"}})
    origin = await _origin_seen_by_agents(tmp_path, fake, flows, nlu_cache)
    assert origin["summary"] == "Pelanggan datang dari grup Telegram Acme fans"
