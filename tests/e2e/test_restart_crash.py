"""Durability: a clean restart keeps everything; a SIGKILL loses no accepted message."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from conftest import ROOT, agent_headers, make_config, start_app, stop_app
from e2e.chat import ChatClient


@pytest.fixture(scope="module")
def nlu_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The learned matcher's trained model, shared by this module's apps and ``omnibot run`` processes:
    the first app writes it (from this process's memory when an earlier test trained the demo flows),
    and no process started here trains again (each cold start trained for 5-10 s)."""
    return tmp_path_factory.mktemp("nlu-cache")


def _nlu(cache: Path) -> str:
    return f'nlu: {{cache_dir: "{cache}"}}'


async def test_restart_keeps_conversation_state_and_queue(tmp_path: Path, nlu_cache: Path) -> None:
    config = make_config(tmp_path, _nlu(nlu_cache))
    r = await start_app(config)
    c = ChatClient(r.http, r.ws_url)
    await c.connect()
    await c.say("I want to complain", expect_text="What is it about?")
    await c.say("Pricing", payload="pricing")
    await c.say("AB654321")
    [m] = await c.say("talk to a person")
    assert "Customer Care" in m["text"]
    # a second customer mid-form, owned by the bot
    d = ChatClient(r.http, r.ws_url)
    await d.connect()
    await d.say("I want to complain", expect_text="What is it about?")
    token_c, token_d = c.token, d.token
    await c.close()
    await d.close()
    await stop_app(r)

    r2 = await start_app(config)
    try:
        async with r2.http.get(r2.url + "/agent/api/queue", headers=agent_headers()) as resp:
            [h] = (await resp.json())["handoffs"]
        assert h["state"] == "queued" and h["position"] == 1
        async with r2.http.get(f"{r2.url}/agent/api/handoffs/{h['id']}", headers=agent_headers()) as resp:
            ctx = (await resp.json())["context"]
        assert ctx["slots"]["category"] == "pricing" and ctx["slots"]["order_number"] == "AB654321"
        assert ctx["conversation"]["state"] == "waiting"

        c2 = ChatClient(r2.http, r2.ws_url)
        w = await c2.connect(token=token_c)
        assert w["state"] == "waiting" and w["position"] == 1
        assert [m["text"] for m in w["history"] if m["direction"] == "in"][:2] == ["I want to complain", "Pricing"]
        # still waiting: the bot stays silent
        await c2.send("hello? anyone?")
        await asyncio.sleep(0.3)
        assert all(m["direction"] == "in" or m["id"] in {x["id"] for x in w["history"]}
                   for m in c2.messages.values())
        await c2.close()

        # the other customer continues the form where it stopped
        d2 = ChatClient(r2.http, r2.ws_url)
        await d2.connect(token=token_d)
        [m] = await d2.say("Service", payload="service")
        assert "order number" in m["text"]
        await d2.close()
    finally:
        await stop_app(r2)


def _start(cfg_path: Path, env_extra: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, **env_extra, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "run", "-c", str(cfg_path)], cwd=ROOT, env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 90   # a cold start trains the NLU; slow on a loaded machine
    assert proc.stderr is not None
    lines = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        m = re.search(r"web chat:\s+(http://127\.0\.0\.1:\d+)/", line)
        if m:
            return proc, m.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("omnibot did not start:\n" + "".join(lines))


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def _rows(db: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _write_config(tmp_path: Path, nlu_cache: Path) -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"""
server: {{host: 127.0.0.1, port: 0}}
storage: {{url: "sqlite:///{tmp_path / 'crash.sqlite3'}"}}
flows: {{path: "{ROOT / 'flows' / 'demo'}"}}
handoff: {{teams: {{support: {{name: Customer Care}}, complaints: {{name: Complaints}}}}}}
{_nlu(nlu_cache)}
""")
    return cfg


QUESTIONS = {"when are you open?": "Monday to Friday", "what payment methods do you accept": "PayPal",
             "how do i return an item": "30 days"}


async def _exactly_one_reply_each(url: str, token: str, db: Path) -> None:
    async with aiohttp.ClientSession() as http:
        c = ChatClient(http, url + "/webchat/ws")
        await c.connect(token=token)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pending = _rows(db, "SELECT COUNT(*) FROM messages WHERE direction='out' AND status!='sent'")[0][0]
            unprocessed = _rows(db, "SELECT COUNT(*) FROM messages WHERE direction='in' AND status!='processed'")[0][0]
            if pending == 0 and unprocessed == 0:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)   # let any (wrong) extra sends arrive
        await c.close()
    out = _rows(db, "SELECT text FROM messages WHERE direction='out' ORDER BY id")
    assert len(out) == len(QUESTIONS), out
    for (text,), expected in zip(out, QUESTIONS.values()):
        assert expected in text
    got = [m for m in sorted(c.messages.values(), key=lambda m: m["id"]) if m["direction"] == "out"]
    assert len(got) == len(QUESTIONS)
    # the client saw each reply once: history + live pushes are deduplicated by id, and no id repeats
    live_ids = [f["message"]["id"] for f in c.frames if f["type"] == "message"]
    hist_ids = [m["id"] for m in c.welcome["history"] if m["direction"] == "out"]
    assert len(set(live_ids) | set(hist_ids)) == len(QUESTIONS)


async def _send_all(url: str) -> str:
    async with aiohttp.ClientSession() as http:
        c = ChatClient(http, url + "/webchat/ws")
        await c.connect()
        for q in QUESTIONS:
            ack = await c.send(q)
            assert ack["type"] == "ack"
        await c.close()
        assert c.token
        return c.token


async def test_sigkill_with_replies_pending_in_outbox(tmp_path: Path, nlu_cache: Path) -> None:
    cfg = _write_config(tmp_path, nlu_cache)
    db = tmp_path / "crash.sqlite3"
    proc, url = _start(cfg, {"OMNIBOT_FAULT_SEND_DELAY": "60"})
    try:
        token = await _send_all(url)
        deadline = time.monotonic() + 10
        while _rows(db, "SELECT COUNT(*) FROM messages WHERE direction='out' AND status='pending'")[0][0] < 3:
            assert time.monotonic() < deadline, "replies never reached the outbox"
            await asyncio.sleep(0.05)
    finally:
        _kill(proc)
    assert _rows(db, "SELECT COUNT(*) FROM messages WHERE direction='out' AND status='sent'")[0][0] == 0

    proc, url = _start(cfg, {})
    try:
        await _exactly_one_reply_each(url, token, db)
    finally:
        _kill(proc)


async def test_sigkill_before_messages_are_answered(tmp_path: Path, nlu_cache: Path) -> None:
    cfg = _write_config(tmp_path, nlu_cache)
    db = tmp_path / "crash.sqlite3"
    proc, url = _start(cfg, {"OMNIBOT_FAULT_TURN_DELAY": "60"})
    try:
        token = await _send_all(url)      # acked = stored
    finally:
        _kill(proc)
    assert _rows(db, "SELECT COUNT(*) FROM messages WHERE direction='in' AND status='received'")[0][0] == 3
    assert _rows(db, "SELECT COUNT(*) FROM messages WHERE direction='out'")[0][0] == 0

    proc, url = _start(cfg, {})
    try:
        await _exactly_one_reply_each(url, token, db)
    finally:
        _kill(proc)
