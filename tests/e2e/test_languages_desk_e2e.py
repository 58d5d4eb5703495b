"""What the agent desks show is in the flows' default language, whatever the customer's
(README "Languages"): agent accounts and desks have no language setting. Team and department
names given by language, the words omnibot adds ("(attachment)" for a message with only files,
"Web visitor 3f2a" for a customer with no name yet) on the web desk's API and on the Slack card;
the customer still reads the team's name in the conversation's language.

Real app over HTTP, the web chat socket and the agent desk API; a copy of the demo flows whose
default language is Spanish (as tests/e2e/test_languages_agents_e2e.py), the lexical matcher and
team names by language (as tests/e2e/test_languages_teams_e2e.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from aiohttp import FormData

from bot.config import parse_config
from conftest import Running, agent_headers, agent_queue, make_config, start_app, stop_app, until
from e2e.chat import ChatClient
from e2e.apps import demo_copy
from e2e.test_languages_teams_e2e import NAMES

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    base = make_config(tmp_path, "nlu: {matcher: lexical}")
    names = parse_config(NAMES)
    config = base.model_copy(update={
        "handoff": names.handoff, "complaints": names.complaints,
        "flows": base.flows.model_copy(update={"path": str(demo_copy(tmp_path, default_language="es"))})})
    r = await start_app(config)
    try:
        yield r
    finally:
        await stop_app(r)


async def _get(r: Running, path: str) -> Any:
    async with r.http.get(f"{r.url}{path}", headers=agent_headers()) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def _upload(r: Running, token: str) -> dict[str, Any]:
    form = FormData()
    form.add_field("file", PNG, filename="box.png", content_type="image/png")
    async with r.http.post(r.url + "/webchat/upload", data=form, headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_the_desk_shows_names_and_its_own_words_in_the_flows_default_language(running: Running) -> None:
    c = ChatClient(running.http, running.ws_url)
    await c.connect()
    try:
        # an English-speaking customer is told the team's English name ...
        got = await c.say("Hello, I want to talk to a person please", expect_text="Customer Care")
        assert "Atención" not in got[-1]["text"]
        await until(lambda: agent_queue(running), what="the handoff queued")
        up = await _upload(running, c.token or "")
        ack = await c.send("", attachments=[{"id": up["id"]}])        # a photo without words
        assert ack["type"] == "ack", ack
        # ... and the desk, whose language is the flows' default (Spanish), reads the Spanish one
        [row] = await agent_queue(running)
        assert row["team_name"] == "Atención al cliente"
        assert row["last_message"] == "(archivo adjunto)"
        assert re.fullmatch(r"Visitante web [0-9a-f]{4}", row["customer"]["display"]), row["customer"]
        detail = await _get(running, f"/agent/api/handoffs/{row['id']}")
        ctx = detail["context"]
        assert ctx["conversation"]["language"] == "en"
        assert ctx["team_name"] == "Atención al cliente"
        assert ctx["customer"]["display"] == row["customer"]["display"]
        teams = {t["id"]: t["name"] for t in (await _get(running, "/agent/api/agents"))["teams"]}
        assert teams == {"support": "Atención al cliente", "complaints": "Reclamaciones"}
        record = await _get(running, f"/agent/api/conversations/{row['conversation_id']}")
        assert record["team_names"] == teams
        assert record["customer"]["display"] == row["customer"]["display"]
        found = await _get(running, f"/agent/api/search?q={ctx['customer']['id']}")
        for hit in found["results"]:
            assert hit["customer"]["display"] == row["customer"]["display"]
    finally:
        await c.close()


def test_the_slack_card_names_the_team_in_the_flows_default_language(tmp_path: Path) -> None:
    """The Slack card (handoff/slack_card.py, what DeskSync posts) and its notification text."""
    from datetime import datetime, timezone

    from bot.storage import HandoffRecord
    from flows import load_flows
    from handoff.slack_card import CardRenderer

    config = parse_config(NAMES)
    flows = load_flows(demo_copy(tmp_path, default_language="id"))
    h = HandoffRecord(id="h1", conversation_id="c1", state="queued", team="support", reason="Ingin bicara",
                      priority=0, context={}, agent=None, created_at=datetime.now(timezone.utc), claimed_at=None)
    render = CardRenderer(config, flows)
    assert render.summary(h) == "Handoff for Layanan Pelanggan: Ingin bicara"
    blocks = render.card(h, {"customer": {"display": "Ada"}, "conversation": {"channel": "webchat"}})
    text = str(blocks)
    assert "*Team*\\nLayanan Pelanggan" in text and "Customer Care" not in text
    assert "'text': 'Pengaduan'" in text          # the transfer menu's other team


async def test_the_notes_omnibot_writes_for_agents_are_in_the_flows_default_language(running: Running) -> None:
    """A transfer's note and a take-over's note (note_transfer, note_taken_over), with the team's name
    in the same language; the customer is still told in their own (here: none known, the default)."""
    from datetime import timedelta

    from bot.model import utcnow
    from conftest import FakeClock
    from e2e.test_agent_accounts import handoff
    from e2e.test_desk_actions import call, people

    r = running
    p = await people(r)
    hid = await handoff(r, "support", "v1")
    assert (await call(r, p["bob"], "POST", f"/agent/api/handoffs/{hid}/claim"))[0] == 200
    r.services.queue.clock = FakeClock(utcnow() + timedelta(minutes=16))
    status, body = await call(r, p["anna"], "POST", f"/agent/api/handoffs/{hid}/take_over")
    assert status == 200, body
    status, body = await call(r, p["anna"], "POST", f"/agent/api/handoffs/{hid}/transfer",
                              {"team": "complaints", "note": "pedido AB123456, dos veces"})
    assert status == 200, body
    assert body["handoff"]["team_name"] == "Reclamaciones"
    status, detail = await call(r, p["carl"], "GET", f"/agent/api/handoffs/{hid}")
    assert status == 200, detail
    notes = [n["text"] for n in detail["context"]["notes"]]
    assert notes[0].startswith("Anna Smith se ha hecho cargo de esta conversación en lugar de Bob Lee (Bob llevaba ")
    assert notes[1] == "Nota del traspaso para Reclamaciones: pedido AB123456, dos veces"


async def test_the_desks_and_the_agent_notices_follow_a_flows_reload(tmp_path: Path) -> None:
    """A default language changed by a reload (README "Changing flows on a running bot") changes
    the team names the desk shows at once, and settings.messages the notice the customer gets."""
    from e2e.reload_flows import FLOWS, reload_config, write_flows
    from e2e.test_agent_accounts import handoff

    v1 = "settings:\n  messages:\n    agent_joined: \"V1 {{ agent }} is here.\"\n" + FLOWS
    config = reload_config(tmp_path)
    write_flows(Path(config.flows.path), "V1", v1)
    r = await start_app(config.model_copy(update={"handoff": parse_config(NAMES).handoff}))
    try:
        v2 = ("settings:\n  languages: {default: es, supported: [es, en], complete: false}\n"
              "  messages:\n    agent_joined: \"V2 {{ agent }} está aquí.\"\n" + FLOWS)
        write_flows(Path(config.flows.path), "V2", v2)
        assert r.services.flows is not None
        done = await r.services.flows.reload(by="test")
        assert done.ok, done
        hid = await handoff(r, "support", "v1")
        async with r.http.post(f"{r.url}/agent/api/handoffs/{hid}/claim", headers=agent_headers()) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["handoff"]["team_name"] == "Atención al cliente"
        h = await r.services.store.get_handoff(hid)
        assert h is not None
        said = [m.text for m in await r.services.store.history(h.conversation_id)]
        assert said[-1] == "V2 Anna está aquí.", said
    finally:
        await stop_app(r)


async def test_the_slack_card_follows_the_default_language_and_a_reload(tmp_path: Path) -> None:
    """The real Slack desk (slack-bolt against tests/fakes/slack_api.py): the card names the team in
    the flows' default language, Spanish; after a reload whose default is Indonesian, the card's
    next update names it in Indonesian (SlackDesk.use_flows)."""
    import yaml

    from e2e.slack_config import slack_config
    from e2e.test_slack_desk import card_posts
    from fakes.slack_api import FakeSlack

    def block_text(blocks: Any) -> str:
        return json.dumps(blocks, ensure_ascii=False)

    def team_field(blocks: Any) -> str:
        return next(f["text"] for b in blocks for f in b.get("fields", []) if f["text"].startswith("*Team*"))

    fake = FakeSlack()
    await fake.start()
    names = parse_config(NAMES)
    flows = demo_copy(tmp_path, default_language="es")
    base = slack_config(tmp_path, fake)
    r = await start_app(base.model_copy(update={
        "handoff": names.handoff, "complaints": names.complaints,
        "nlu": make_config(tmp_path, "nlu: {matcher: lexical}").nlu,
        "flows": base.flows.model_copy(update={"path": str(flows)})}))
    c = ChatClient(r.http, r.ws_url)
    try:
        await c.connect()
        await c.say("Hello, I want to talk to a person please", expect_text="Customer Care")
        [card] = await fake.wait_for("chat.postMessage", predicate=card_posts(fake, "CSUP"))
        assert card.args["text"].startswith("Handoff for Atención al cliente: ")
        assert team_field(card.args["blocks"]) == "*Team*\nAtención al cliente"
        assert "Customer Care" in block_text(card.args["blocks"])      # what the customer was told, quoted
        settings = flows / "settings.yaml"
        data = yaml.safe_load(settings.read_text(encoding="utf-8"))
        data["settings"]["languages"]["default"] = "id"
        settings.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        assert r.services.flows is not None and (await r.services.flows.reload(by="test")).ok
        await c.send("Are you there?")
        upd = await fake.wait_for("chat.update", predicate=lambda x: "Layanan Pelanggan" in block_text(
            x.args.get("blocks", [])), timeout=10)
        assert team_field(upd[-1].args["blocks"]) == "*Team*\nLayanan Pelanggan"
        assert upd[-1].args["text"].startswith("Handoff for Layanan Pelanggan: ")
    finally:
        await c.close()
        await stop_app(r)
        await fake.stop()


async def test_a_tickets_why_is_in_the_flows_default_language(running: Running) -> None:
    """A complaint's ticket says why it got its severity (why_urgency, why_repeat, why_route, ...)
    in the flows' default language, for agents, whatever the customer wrote in."""
    from e2e.test_tickets_e2e import _file_complaint

    c = ChatClient(running.http, running.ws_url)
    await c.connect()
    try:
        ref = await _file_complaint(c, "shipping", "AB123456",
                                    "This is the third time the parcel never came!! I will call my lawyer.")
        tickets = (await _get(running, "/agent/api/tickets"))["tickets"]
        [t] = [t for t in tickets if t["reference"] == ref]
        assert t["department_name"] == "Atención al cliente"
        assert t["reasons"] and t["reasons"][0].startswith("urgencia alta ("), t["reasons"]
        assert not [r for r in t["reasons"] if "urgency" in r]
    finally:
        await c.close()
