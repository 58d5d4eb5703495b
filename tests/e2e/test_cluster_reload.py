"""Two instances on one real PostgreSQL: a reload on one moves both to the new version (README
"Changing flows on a running bot"); the other loads the version's stored texts and says when its
own files differ."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cluster import on_pg
from conftest import AGENT_TOKEN, start_app, stop_app, until
from e2e.chat import ChatClient
from e2e.reload_flows import reload_config, write_flows

ADMIN = {"Authorization": f"Bearer {AGENT_TOKEN}"}


async def test_a_reload_on_one_instance_moves_every_instance(tmp_path: Path, pg_url: str,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    config_a = on_pg(reload_config(tmp_path / "a"), pg_url)
    config_b = on_pg(reload_config(tmp_path / "b"), pg_url)      # its own copy of the same files
    a = await start_app(config_a)
    b = await start_app(config_b)
    try:
        assert a.services.flows.current.number == b.services.flows.current.number == 1   # same files, one version
        mid = ChatClient(b.http, b.ws_url)
        await mid.connect()
        await mid.say("I want to order", expect_text="V1 what is your name?")

        write_flows(Path(config_a.flows.path), "V2")
        caplog.set_level(logging.INFO, logger="bot.flow_versions")
        async with a.http.post(a.url + "/admin/api/reload", headers=ADMIN) as resp:
            body = await resp.json()
        assert resp.status == 200 and body["version"] == 2
        await until(lambda: b.services.flows.current.number == 2, timeout=5, what="instance b on version 2")

        # b answers with version 2 (the texts kept in the database, not its own files) ...
        c = ChatClient(b.http, b.ws_url)
        await c.connect()
        await c.say("when are you open", expect_text="V2 open nine to five")
        # ... says that its files differ ...
        assert b.services.flows.files_differ and not a.services.flows.files_differ
        assert any("this instance's files" in r.getMessage() and "differ from version 2" in r.getMessage()
                   for r in caplog.records)
        async with b.http.get(b.url + "/admin/api/flows", headers=ADMIN) as resp:
            state = await resp.json()
        assert state["version"] == 2 and state["files_differ"] is True
        # ... and the conversation mid-flow on it finishes on version 1
        await mid.say("Ann", expect_text="V1 which size?")
        await mid.say("large", expect_text="V1 done for Ann")

        # a rollback on b moves a too
        async with b.http.post(b.url + "/admin/api/flows/rollback", json={"version": 1}, headers=ADMIN) as resp:
            assert resp.status == 200 and (await resp.json())["version"] == 3
        await until(lambda: a.services.flows.current.number == 3, timeout=5, what="instance a on version 3")
        d = ChatClient(a.http, a.ws_url)
        await d.connect()
        await d.say("when are you open", expect_text="V1 open nine to five")
        for x in (mid, c, d):
            await x.close()
    finally:
        await stop_app(b)
        await stop_app(a)
