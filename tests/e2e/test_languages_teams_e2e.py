"""Team and department names in the customer's language (README "Languages", bot/names.py): the
handoff message ("I'm passing you to <team>"), the agent-joined notice and a complaint's status
read the name config gives for the conversation's language. Real app over HTTP, the web chat
socket and the agent desk API, a copy of the demo flows with the lexical matcher and a few
examples in Spanish and Indonesian (as tests/e2e/test_languages_system_e2e.py).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.config import parse_config
from conftest import DEMO_FLOWS, Running, agent_headers, agent_queue, make_config, serving, until
from e2e.apps import LEXICAL, demo_copy, on_flows
from e2e.chat import ChatClient

NAMES = """
handoff:
  default_team: support
  teams:
    support:
      name: {en: Customer Care, es: Atención al cliente, id: Layanan Pelanggan}
    complaints: {name: {en: Complaints, es: Reclamaciones, id: Pengaduan}}
complaints:
  departments:
    customer_care: {name: {en: Customer Care, es: Atención al cliente, id: Layanan Pelanggan}}
"""
EXTRA = {
    "human": ["quiero hablar con una persona", "hablar con un agente", "pásame con una persona",
              "saya mau bicara dengan petugas", "hubungkan saya dengan orang", "bicara dengan manusia"],
    "complaint": ["saya mau komplain soal pesanan saya", "pesanan saya rusak", "saya mau komplain"],
    "complaint_status": ["bagaimana status keluhan saya", "status keluhan"],
}


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    names = parse_config(NAMES)
    config = on_flows(make_config(tmp_path, LEXICAL), demo_copy(tmp_path, examples=EXTRA),
                      handoff=names.handoff, complaints=names.complaints)
    async with serving(config) as r:
        yield r


async def _claim(r: Running) -> dict[str, Any]:
    await until(lambda: agent_queue(r), what="the handoff queued")
    [h] = await agent_queue(r)
    async with r.http.post(f"{r.url}/agent/api/handoffs/{h['id']}/claim", headers=agent_headers()) as resp:
        assert resp.status == 200, await resp.text()
    return h


@pytest.mark.parametrize(("said", "passing", "joined"), [
    ("Hola, quiero hablar con una persona por favor",
     "Te paso con nuestro equipo de Atención al cliente porque",
     "Anna, del equipo de Atención al cliente, se ha unido a la conversación."),
    ("Halo, saya mau bicara dengan petugas sekarang",
     "Saya teruskan Anda ke tim Layanan Pelanggan kami karena",
     "Anna dari tim Layanan Pelanggan telah bergabung dalam percakapan."),
])
async def test_team_name_in_the_customers_language(running: Running, said: str, passing: str, joined: str) -> None:
    c = ChatClient(running.http, running.ws_url)
    await c.connect()
    try:
        got = await c.say(said, expect_text=passing)
        assert got[-1]["text"].startswith(passing), got[-1]
        h = await _claim(running)
        assert h["team_name"] == "Customer Care"     # agents: the desk has no language (English, else the first)
        got = await c.replies_until(lambda m: m["role"] == "system")
        assert got[-1]["text"] == joined
    finally:
        await c.close()


async def test_department_name_in_an_indonesian_complaint_status(running: Running) -> None:
    c = ChatClient(running.http, running.ws_url)
    await c.connect()
    try:
        await c.say("halo, saya mau komplain soal pesanan saya", expect_text="Masalahnya tentang apa?")
        await c.say("barangnya datang rusak", expect_text="Berapa nomor pesanan Anda?")
        await c.say("AB123456", expect_text="Silakan ceritakan")
        await c.say("Layar laptopnya retak waktu paket dibuka", expect_text="foto")
        await c.say("lewati", expect_text="Apakah Anda ingin berbicara dengan petugas kami sekarang?")
        await c.say("tidak, terima kasih")
        got = await c.say("bagaimana status keluhan C-1001", expect_text="C-1001")
        assert "sedang menunggu tim Layanan Pelanggan kami." in got[-1]["text"], got[-1]
    finally:
        await c.close()


def test_validate_reports_a_team_name_missing_in_a_supported_language(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"""flows: {{path: "{DEMO_FLOWS}"}}
handoff:
  default_team: support
  teams:
    support: {{name: Customer Care}}
    complaints:
      name: {{en: Complaints, es: Reclamaciones}}
complaints:
  departments:
    customer_care:
      name: {{en: Customer Care, id: Layanan Pelanggan}}
""", encoding="utf-8")
    res = CliRunner().invoke(main, ["validate", "-c", str(config)])
    assert res.exit_code == 1, res.output
    assert f"{config}:7: handoff.teams.complaints.name: no name in 'id'" in res.output
    assert f"{config}:11: complaints.departments.customer_care.name: no name in 'es'" in res.output
    # a plain string is one name for every language; a complete mapping is fine
    config.write_text(config.read_text(encoding="utf-8").replace("es: Reclamaciones}", "es: Reclamaciones, id: "
                      "Pengaduan}").replace("id: Layanan Pelanggan}", "id: Layanan Pelanggan, es: Atención}"),
                      encoding="utf-8")
    res = CliRunner().invoke(main, ["validate", "-c", str(config)])
    assert res.exit_code == 0, res.output


async def test_a_canned_reply_names_the_team_in_the_customers_language(running: Running) -> None:
    """A canned reply goes to the customer: its {{ team }} is the conversation's language's name."""
    c = ChatClient(running.http, running.ws_url)
    await c.connect()
    try:
        await c.say("Hola, quiero hablar con una persona por favor", expect_text="Atención al cliente")
        h = await _claim(running)
        async with running.http.get(f"{running.url}/agent/api/handoffs/{h['id']}/canned/greeting",
                                    headers=agent_headers()) as resp:
            assert resp.status == 200, await resp.text()
            text = (await resp.json())["text"]
        assert text.startswith("Hola") and "soy Anna, del equipo de Atención al cliente." in text, text
    finally:
        await c.close()


async def test_a_texts_frame_when_the_conversations_language_changes(running: Running) -> None:
    """docs/protocols.md: the widget's words again, in the new language, with the queued team's name."""
    c = ChatClient(running.http, running.ws_url)
    await c.connect()
    try:
        await c.say("Hola, quiero hablar con una persona por favor", expect_text="Atención al cliente")
        await until(lambda: any(f["type"] == "texts" for f in c.frames), what="a texts frame")
        es = next(f for f in c.frames if f["type"] == "texts")
        assert es["language"] == "es" and es["texts"]["placeholder"] == "Escribe un mensaje…"
        ack = await c.send("English please")
        assert ack["type"] == "ack", ack
        en = await c.expect(lambda f: f["type"] == "texts")
        assert en["language"] == "en" and en["texts"]["waiting"] == "Waiting for an agent"
        assert en["team"] == "Customer Care"
        assert en["texts"]["position"] == "you are number {{ position }} in the queue"   # the widget fills it in
        await c.send("I'm still waiting, thanks")       # the same language: no frame
        await asyncio.sleep(0.3)
        assert [f["language"] for f in c.frames if f["type"] == "texts"] == ["es", "en"]
    finally:
        await c.close()


async def test_a_team_name_missing_in_the_customers_language_follows_the_flows_fallback(tmp_path: Path) -> None:
    """A team named in English and Spanish only, flows whose fallback is Spanish: an Indonesian
    customer reads the Spanish name everywhere (handoff message, agent joined, the widget's welcome
    after a reconnect), not the English one."""
    import yaml as _yaml

    names = parse_config(NAMES.replace(", id: Layanan Pelanggan}\n    complaints", "}\n    complaints"))
    flows = demo_copy(tmp_path, examples=EXTRA, default_language="es")
    settings = flows / "settings.yaml"
    data = _yaml.safe_load(settings.read_text(encoding="utf-8"))
    data["settings"]["languages"]["fallback"] = "es"
    settings.write_text(_yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    config = on_flows(make_config(tmp_path, LEXICAL), flows, handoff=names.handoff, complaints=names.complaints)
    async with serving(config) as r:
        c = ChatClient(r.http, r.ws_url)
        try:
            await c.connect()
            await c.say("Halo, saya mau bicara dengan petugas sekarang", expect_text="Atención al cliente")
            await c.close()
            token = c.token
            c = ChatClient(r.http, r.ws_url)
            welcome = await c.connect(token=token)
            assert welcome["team"] == "Atención al cliente", welcome
            await _claim(r)
            got = await c.replies_until(lambda m: m["role"] == "system")
            assert got[-1]["text"] == "Anna dari tim Atención al cliente telah bergabung dalam percakapan."
        finally:
            await c.close()
