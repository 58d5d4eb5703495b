"""Agent accounts over real HTTP: log in, sessions that expire, personal tokens, disabled
accounts, the shared token turned off by the first account, no acting as another, and each
agent seeing their own teams' queue."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator

import aiohttp
import pytest

from bot.agents import add_agent, new_token, token_hash
from bot.model import Inbound, Outbound
from bot.storage import HandoffSpec
from conftest import FakeClock, Running, agent_headers

PASSWORD = "correct horse battery"


async def handoff(r: Running, team: str, ext: str) -> str:
    """A web-chat customer waiting for a person in ``team``; the handoff's id."""
    store = r.services.store
    got = await store.record_inbound(Inbound(channel="webchat", external_id=ext, platform_message_id=f"{ext}:1",
                                             text="a person please"))
    await store.commit_turn(got.conversation.id, inbound_id=got.message.id, flow_state=None,
                            replies=[Outbound("connecting you")],
                            handoff=HandoffSpec(team=team, reason="asked for a person", priority=1, context={},
                                                message=lambda position: Outbound(f"you are number {position}")))
    h = await store.active_handoff(got.conversation.id)
    assert h is not None
    return h.id


async def accounts(r: Running) -> None:
    store, teams = r.services.store, list(r.services.config.handoff.teams)
    for name, email, team, role in [("Anna Smith", "anna@shop.test", "support", "agent"),
                                    ("Bob Lee", "bob@shop.test", "support", "agent"),
                                    ("Carl Diaz", "carl@shop.test", "complaints", "agent"),
                                    ("Sue Park", "sue@shop.test", "support", "supervisor")]:
        await add_agent(store, name=name, email=email, teams=[team], role=role, password=PASSWORD,
                        known_teams=teams)


@pytest.fixture
async def sessions(running: Running) -> AsyncIterator[dict[str, aiohttp.ClientSession]]:
    """A browser (its own cookie jar) per agent."""
    out = {k: aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) for k in ("anna", "bob", "carl")}
    try:
        yield out
    finally:
        for s in out.values():
            await s.close()


async def login(r: Running, http: aiohttp.ClientSession, email: str, password: str = PASSWORD,
                form: bool = False) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    kw: dict[str, Any] = {"data": {"email": email, "password": password}} if form else \
        {"json": {"email": email, "password": password}}
    async with http.post(r.url + "/agent/login", **kw) as resp:
        return resp.status, await resp.json(), resp


async def call(r: Running, http: aiohttp.ClientSession, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    async with http.request(method, r.url + path, **kw) as resp:
        return resp.status, await resp.json()


async def test_shared_token_works_until_the_first_account(running: Running) -> None:
    r = running
    assert (await call(r, r.http, "GET", "/agent/api/me", headers=agent_headers("Anyone")))[1]["name"] == "Anyone"
    await accounts(r)
    status, body = await call(r, r.http, "GET", "/agent/api/me", headers=agent_headers("Anyone"))
    assert status == 401 and body == {"error": "log in first"}
    status, body = await call(r, r.http, "POST", "/agent/login", json={"token": "test-agent-token", "name": "X"})
    assert status == 401 and "shared agent token is off" in body["error"]
    async with r.http.get(r.url + "/metrics", headers={"Authorization": "Bearer test-agent-token"}) as resp:
        assert resp.status == 401


async def test_two_agents_log_in_and_see_their_teams_queues(running: Running,
                                                           sessions: dict[str, aiohttp.ClientSession]) -> None:
    r = running
    await accounts(r)
    support, complaints = await handoff(r, "support", "v1"), await handoff(r, "complaints", "v2")
    status, me, resp = await login(r, sessions["anna"], "Anna@Shop.test")
    assert status == 200 and me == {"name": "Anna Smith", "email": "anna@shop.test", "role": "agent",
                                    "teams": ["support"]}
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=43200" in cookie
    status, me, _ = await login(r, sessions["carl"], "carl@shop.test", form=True)     # the login form
    assert status == 200 and me["name"] == "Carl Diaz"

    _, q = await call(r, sessions["anna"], "GET", "/agent/api/queue")
    assert [h["id"] for h in q["handoffs"]] == [support]
    _, q = await call(r, sessions["carl"], "GET", "/agent/api/queue")
    assert [h["id"] for h in q["handoffs"]] == [complaints]
    status, body = await call(r, sessions["anna"], "GET", f"/agent/api/handoffs/{complaints}")
    assert status == 403 and "only an agent of the team" in body["error"]
    status, body = await call(r, sessions["anna"], "POST", f"/agent/api/handoffs/{complaints}/claim")
    assert status == 403 and "may not claim in team 'complaints'" in body["error"]

    status, _ = await call(r, sessions["anna"], "POST", f"/agent/api/handoffs/{support}/claim",
                           headers={"X-Omnibot-Agent": "Bob Lee"})      # spoofing: ignored
    assert status == 200
    assert (await r.services.store.get_handoff(support)).agent == "Anna Smith"  # type: ignore[union-attr]

    status, body = await call(r, sessions["anna"], "POST", "/agent/login",
                              json={"email": "anna@shop.test", "password": "wrong password"})
    assert status == 401 and body == {"error": "wrong e-mail or password"}
    status, _, _ = await login(r, sessions["anna"], "nobody@shop.test")
    assert status == 401


async def test_nobody_acts_as_another(running: Running, sessions: dict[str, aiohttp.ClientSession]) -> None:
    r = running
    await accounts(r)
    hid = await handoff(r, "support", "v1")
    await login(r, sessions["anna"], "anna@shop.test")
    await login(r, sessions["bob"], "bob@shop.test")
    assert (await call(r, sessions["bob"], "POST", f"/agent/api/handoffs/{hid}/claim"))[0] == 200
    for action, body in [("reply", {"text": "hi, Anna here"}), ("resolve", {}), ("release", {})]:
        status, err = await call(r, sessions["anna"], "POST", f"/agent/api/handoffs/{hid}/{action}", json=body,
                                 headers={"X-Omnibot-Agent": "Bob Lee"})
        assert status == 403 and "held by Bob Lee" in err["error"], action
    # even naming Bob with the shared token gets nowhere now
    status, _ = await call(r, r.http, "POST", f"/agent/api/handoffs/{hid}/reply", json={"text": "x"},
                           headers=agent_headers("Bob Lee"))
    assert status == 401
    status, body = await call(r, sessions["bob"], "POST", f"/agent/api/handoffs/{hid}/reply", json={"text": "hi"})
    assert status == 200 and body["message"]["sender"] == "Bob"
    history = await r.services.store.history((await r.services.store.get_handoff(hid)).conversation_id)  # type: ignore[union-attr]
    assert not any("Anna here" in m.text for m in history)


async def test_sessions_expire(running: Running, sessions: dict[str, aiohttp.ClientSession]) -> None:
    r = running
    await accounts(r)
    desk = r.services.desk
    assert desk is not None
    clock = FakeClock(datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc))
    desk.sessions.clock = clock
    await login(r, sessions["anna"], "anna@shop.test")
    clock.now += timedelta(hours=11, minutes=59)
    assert (await call(r, sessions["anna"], "GET", "/agent/api/me"))[0] == 200
    clock.now += timedelta(minutes=1)                      # agent_desk.session_hours: 12
    assert (await call(r, sessions["anna"], "GET", "/agent/api/me"))[0] == 401
    await login(r, sessions["anna"], "anna@shop.test")
    assert (await call(r, sessions["anna"], "GET", "/agent/api/me"))[0] == 200


async def test_personal_token_and_disabled_account(running: Running,
                                                   sessions: dict[str, aiohttp.ClientSession]) -> None:
    r = running
    await accounts(r)
    store = r.services.store
    token = new_token()
    await store.set_agent_token("anna@shop.test", token_hash(token))
    bearer = {"Authorization": f"Bearer {token}", "X-Omnibot-Agent": "Sue Park"}
    status, me = await call(r, r.http, "GET", "/agent/api/me", headers=bearer)
    assert status == 200 and me["name"] == "Anna Smith"             # the token's account, not the header
    assert (await call(r, r.http, "GET", "/agent/api/me",
                       headers={"Authorization": "Bearer omb_not-a-token"}))[0] == 401

    await login(r, sessions["anna"], "anna@shop.test")
    await store.set_agent_disabled("anna@shop.test", True)          # omnibot agent disable
    assert (await call(r, sessions["anna"], "GET", "/agent/api/me"))[0] == 401   # the session ended
    assert (await call(r, r.http, "GET", "/agent/api/me", headers=bearer))[0] == 401
    status, body, _ = await login(r, sessions["bob"], "anna@shop.test")
    assert status == 403 and "disabled" in body["error"]
    status, _, _ = await login(r, sessions["bob"], "anna@shop.test", password="wrong password")
    assert status == 401                                             # no hint without the password


async def test_metrics_need_an_admin_account(running: Running, sessions: dict[str, aiohttp.ClientSession]) -> None:
    r = running
    await accounts(r)
    await add_agent(r.services.store, name="Root", email="root@shop.test", teams=[], role="admin",
                    password=PASSWORD)
    await login(r, sessions["anna"], "anna@shop.test")
    async with sessions["anna"].get(r.url + "/metrics") as resp:
        assert resp.status == 401
    await login(r, sessions["bob"], "root@shop.test")
    async with sessions["bob"].get(r.url + "/metrics") as resp:
        assert resp.status == 200


async def test_search_and_history_show_only_the_accounts_teams(running: Running,
                                                                sessions: dict[str, aiohttp.ClientSession]) -> None:
    r = running
    await accounts(r)
    support, complaints = await handoff(r, "support", "v7"), await handoff(r, "complaints", "v8")
    conv = {hid: (await r.services.store.get_handoff(hid)).conversation_id  # type: ignore[union-attr]
            for hid in (support, complaints)}
    await login(r, sessions["anna"], "anna@shop.test")
    status, _ = await call(r, sessions["bob"], "GET", "/agent/api/search?q=person")
    assert status == 401                                           # not logged in: nothing
    status, body = await call(r, sessions["anna"], "GET", "/agent/api/search?q=person")
    found = {x["conversation_id"] for x in body["results"]}
    assert status == 200 and conv[support] in found and conv[complaints] not in found
    status, _ = await call(r, sessions["anna"], "GET", f"/agent/api/conversations/{conv[support]}")
    assert status == 200
    status, body = await call(r, sessions["anna"], "GET", f"/agent/api/conversations/{conv[complaints]}")
    assert status == 403 and "may not see team 'complaints'" in body["error"]
    status, _ = await call(r, sessions["anna"], "POST", f"/agent/api/conversations/{conv[complaints]}/reopen",
                           json={})
    assert status == 403
