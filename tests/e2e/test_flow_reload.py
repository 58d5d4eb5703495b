"""Live reload with versions (README "Changing flows on a running bot"): over the real app on
127.0.0.1, web-chat customers on real WebSockets, the admin API as `omnibot reload` calls it."""

from __future__ import annotations

import re

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from playwright.async_api import expect

from bot.agents import add_agent
from conftest import AGENT_TOKEN, Running, start_app, stop_app
from e2e.chat import ChatClient
from e2e.reload_flows import BROKEN, reload_config, write_flows
from e2e.test_widget_browser import page  # noqa: F401 (fixture)

ADMIN = {"Authorization": f"Bearer {AGENT_TOKEN}"}


@pytest.fixture
async def app(tmp_path: Path) -> Any:
    r = await start_app(reload_config(tmp_path))
    try:
        yield r
    finally:
        await stop_app(r)


async def _post(r: Running, path: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, dict]:
    async with r.http.post(r.url + path, json=body or {}, headers=ADMIN if headers is None else headers) as resp:
        return resp.status, await resp.json()


async def _customer(r: Running) -> ChatClient:
    c = ChatClient(r.http, r.ws_url)
    await c.connect()
    return c


def _flows_dir(r: Running) -> Path:
    return Path(r.services.config.flows.path)


async def test_reload_while_50_conversations_are_mid_flow(app: Running) -> None:
    r = app
    clients = await asyncio.gather(*(_customer(r) for _ in range(50)))
    await asyncio.gather(*(c.say("I want to order", expect_text="V1 what is your name?") for c in clients))

    write_flows(_flows_dir(r), "V2")
    versions = r.services.flows
    assert versions is not None
    build, training = versions.build, threading.Event()

    def slow_build(fs: Any) -> Any:        # training takes a while: the old version must answer meanwhile
        training.set()
        time.sleep(1.5)
        return build(fs)

    versions.build = slow_build
    reload = asyncio.create_task(_post(r, "/admin/api/reload"))
    assert await asyncio.to_thread(training.wait, 5)
    t0 = time.monotonic()
    await asyncio.gather(*(c.say(f"Name{i}", expect_text="V1 which size?") for i, c in enumerate(clients)))
    assert not reload.done() and time.monotonic() - t0 < 1.5      # nobody waited for the training
    status, body = await reload
    assert status == 200 and body["ok"] and body["changed"] and (body["previous"], body["version"]) == (1, 2)
    assert r.services.flows.current.number == 2

    # each of the 50 finishes on the version its flow started on; a new conversation starts on the new one
    await asyncio.gather(*(c.say("large", expect_text=f"V1 done for Name{i}") for i, c in enumerate(clients)))
    new = await _customer(r)
    await new.say("I want to order", expect_text="V2 what is your name?")
    # ...and when the old conversations start again, they are on the new version too
    await clients[0].say("I want to order", expect_text="V2 done for Name0")   # (its slots are kept)

    # none lost: every message answered, every old conversation only ever heard V1 until it restarted
    assert await r.services.store.conversations_with_unprocessed() == []
    for c in clients[1:]:
        bot = [m["text"] for m in c.messages.values() if m["direction"] == "out"]
        assert len(bot) == 3 and all(t.startswith("V1 ") for t in bot), bot
    for c in [*clients, new]:
        await c.close()


async def test_an_invalid_version_is_refused_and_the_old_one_keeps_serving(app: Running) -> None:
    r = app
    c = await _customer(r)
    await c.say("I want to order", expect_text="V1 what is your name?")
    flows = write_flows(_flows_dir(r), "V2", BROKEN)
    status, body = await _post(r, "/admin/api/reload")
    assert status == 422 and not body["ok"] and body["version"] == 1
    assert "version 1 keeps serving" in body["error"]
    [err] = body["errors"]
    assert err.startswith(f"{flows / 'main.yaml'}:14: ") and "'nmae' is never filled" in err
    # the old version answers, old conversation and new
    await c.say("Ann", expect_text="V1 which size?")
    d = await _customer(r)
    await d.say("when are you open", expect_text="V1 open nine to five")
    # the admin page and API show it
    async with r.http.get(r.url + "/admin/api/flows", headers=ADMIN) as resp:
        state = await resp.json()
    assert state["version"] == 1 and state["last"]["errors"] == [err] and [v["number"] for v in state["history"]] == [1]
    async with r.http.get(r.url + "/admin/flows", headers=ADMIN) as resp:
        page = await resp.text()
    assert "was refused" in page and "never filled" in page
    # fixed: the next reload takes it
    write_flows(flows, "V2")
    status, body = await _post(r, "/admin/api/reload")
    assert status == 200 and body["version"] == 2
    await d.say("when are you open", expect_text="V2 open nine to five")
    await c.close()
    await d.close()


async def test_unchanged_files_keep_the_version_and_rollback_serves_the_stored_texts(app: Running) -> None:
    r = app
    status, body = await _post(r, "/admin/api/reload")
    assert status == 200 and body["ok"] and not body["changed"] and body["version"] == 1
    write_flows(_flows_dir(r), "V2")
    assert (await _post(r, "/admin/api/reload"))[1]["version"] == 2
    c = await _customer(r)
    await c.say("I want to order", expect_text="V2 what is your name?")     # mid-flow on version 2

    status, body = await _post(r, "/admin/api/flows/rollback", {"version": 1})
    assert status == 200 and body["version"] == 3 and body["previous"] == 2
    # version 1's texts serve although the files on disk are version 2's
    d = await _customer(r)
    await d.say("when are you open", expect_text="V1 open nine to five")
    await c.say("Ann", expect_text="V2 which size?")      # the conversation started on 2 finishes on 2
    await c.say("small", expect_text="V2 done for Ann")
    async with r.http.get(r.url + "/admin/api/flows", headers=ADMIN) as resp:
        state = await resp.json()
    assert [(v["number"], v["note"], v["loaded_by"]) for v in state["history"]] == [
        (3, "rollback to 1", "shared token"), (2, "reload", "shared token"), (1, "", "startup")]
    assert state["history"][0]["hash"] == state["history"][2]["hash"] and state["files_differ"] is True
    # configuration changes are in the audit log, with who made them
    audit = [(e.actor, e.action, e.target) for e in await r.services.store.audit_log()
             if e.action.startswith("flows_")]
    assert audit == [("agent:shared token", "flows_reload", "flows v2"),
                     ("agent:shared token", "flows_rollback", "flows v3")]

    # bad requests get a clear 4xx, and the version stays
    assert (await _post(r, "/admin/api/flows/rollback", {"version": 9}))[0] == 404
    assert (await _post(r, "/admin/api/flows/rollback", {"version": "two"}))[0] == 400
    async with r.http.post(r.url + "/admin/api/flows/rollback", data=b"{nope", headers=ADMIN) as resp:
        assert resp.status == 400 and "JSON" in (await resp.json())["error"]
    assert (await _post(r, "/admin/api/reload", headers={}))[0] == 401
    assert (await _post(r, "/admin/api/reload", headers={"Authorization": "Bearer wrong"}))[0] == 401
    assert r.services.flows.current.number == 3
    await c.close()
    await d.close()


async def test_an_old_version_no_longer_in_memory_is_rebuilt_from_its_stored_texts(app: Running) -> None:
    r = app
    c = await _customer(r)
    await c.say("I want to order", expect_text="V1 what is your name?")
    versions = r.services.flows
    for n in range(2, 8):       # more versions than engines kept: version 1's engine is dropped
        write_flows(_flows_dir(r), f"V{n}")
        assert (await _post(r, "/admin/api/reload"))[1]["version"] == n
    assert 1 not in versions.old and len(versions.old) <= 4
    write_flows(_flows_dir(r), "V9", "this: [is not")    # and the files on disk are no help
    await c.say("Ann", expect_text="V1 which size?")
    await c.say("large", expect_text="V1 done for Ann")
    await c.close()


async def test_the_admin_page_reload_button(app: Running, page: Any) -> None:  # noqa: F811
    """An admin logs in and presses Reload, then Roll back, on /admin/flows in a real browser."""
    r = app
    await add_agent(r.services.store, name="Ada Admin", email="ada@shop.test", teams=["support"], role="admin",
                    password="correct horse battery", known_teams=["support", "complaints"])
    await add_agent(r.services.store, name="Sam Agent", email="sam@shop.test", teams=["support"], role="agent",
                    password="correct horse battery", known_teams=["support", "complaints"])
    resp = await page.request.post(r.url + "/agent/login", data={"email": "sam@shop.test",
                                                                "password": "correct horse battery"})
    assert resp.ok
    assert (await page.request.post(r.url + "/admin/api/reload")).status == 401     # an agent may not
    assert (await page.request.get(r.url + "/admin/api/flows/graph?flow=main")).status == 401
    await page.goto(r.url + "/admin/flows")
    assert page.url.endswith("/agent")                                              # ...nor see the page
    resp = await page.request.post(r.url + "/agent/login", data={"email": "ada@shop.test",
                                                                "password": "correct horse battery"})
    assert resp.ok
    write_flows(_flows_dir(r), "V2", BROKEN)
    await page.goto(r.url + "/admin/flows")
    await expect(page.locator("#version")).to_have_text("1")
    await page.click("#reload")
    await expect(page.locator("#errors")).to_contain_text("main.yaml:14: say: slot 'nmae' is never filled")
    await expect(page.locator("#version")).to_have_text("1")
    write_flows(_flows_dir(r), "V2")
    await page.click("#reload")
    await expect(page.locator("#version")).to_have_text("2")
    await expect(page.locator("text=by Ada Admin")).to_have_count(1)
    await page.click("button.rollback[data-version='1']")
    await expect(page.locator("#version")).to_have_text("3")
    await expect(page.locator("td", has_text="rollback to 1")).to_have_count(1)
    # the page draws the serving version's flows (SVG made by the server)
    await expect(page.locator("#graph")).to_have_attribute("src", re.compile(r"graph\?flow="))
    assert await page.locator("#graph").evaluate("img => img.complete && img.naturalWidth > 0")
    resp = await page.request.get(r.url + "/admin/api/flows/graph?flow=nope")
    assert resp.status == 404 and "no flow 'nope'" in (await resp.json())["error"]
    assert (await page.request.get(r.url + "/admin/api/flows/graph")).status == 400


async def test_a_reload_of_unchanged_intents_reuses_the_trained_model(tmp_path: Path) -> None:
    """The learned matcher: a reload that changes only texts does not retrain (flows/nlu cache)."""
    import shutil

    from conftest import DEMO_FLOWS, make_config

    shutil.copytree(DEMO_FLOWS, tmp_path / "flows")
    config = make_config(tmp_path, f'nlu: {{cache_dir: "{tmp_path / "nlu-cache"}"}}')
    config = config.model_copy(update={"flows": config.flows.model_copy(update={"path": str(tmp_path / "flows")})})
    r = await start_app(config)
    try:
        faq = tmp_path / "flows" / "faq.yaml"
        faq.write_text(faq.read_text().replace("Monday to Friday", "Mondays to Fridays"))
        status, body = await _post(r, "/admin/api/reload")
        assert status == 200 and body["version"] == 2 and body["seconds"] < 2.0
        assert r.services.flows.current.engine.matcher.trained_now == 0      # both models from the cache
        c = await _customer(r)
        await c.say("when are you open?", expect_text="Mondays to Fridays")
        await c.close()
    finally:
        await stop_app(r)
