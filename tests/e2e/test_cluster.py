"""Three `omnibot run` processes on one real PostgreSQL: no instance to lose, nothing sent twice.

Web-chat customers are connected to different instances, Telegram webhook deliveries are spread
over all three, an agent works through a third; one instance is SIGKILLed in the middle of the
load and started again. Every accepted message is answered (web chat: exactly once; Telegram:
at most one duplicate per kill), in order per conversation; an agent's reply through one
instance reaches a customer's socket on another at once; one Slack card per handoff; a
follow-up is asked once.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import asyncpg
import pytest

from conftest import AGENT_TOKEN, ROOT, agent_headers
from e2e.chat import ChatClient
from e2e.test_restart_crash import _kill
from e2e.test_slack_desk import card_posts
from e2e.test_tickets_e2e import _file_complaint
from e2e.apps import fake_server
from fakes.slack_api import FakeSlack
from fakes.telegram_api import FakeTelegram, deliver_webhook, text_update

fake = fake_server(FakeTelegram)
SECRET = "cluster-secret_1"
SLACK_SECRET = "cluster-slack-secret"
FAQ = {"when are you open?": "Monday to Friday", "what payment methods do you accept": "PayPal",
       "how do i return an item": "30 days"}


def _config(tmp_path: Path, pg_url: str, fake: FakeTelegram, slack: FakeSlack) -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"""
server: {{host: 127.0.0.1, port: 0}}
storage: {{url: "{pg_url}"}}
flows: {{path: "{ROOT / 'flows' / 'demo'}"}}
nlu: {{matcher: lexical}}
agent_desk: {{token: {AGENT_TOKEN}}}
handoff:
  default_team: support
  teams: {{support: {{name: Customer Care}}, complaints: {{name: Complaints}}}}
delivery: {{base_delay: 0.05, max_delay: 0.2}}
complaints: {{check_every: 0.3, sla: {{follow_up: 3s}}}}
telegram:
  enabled: true
  token: "{fake.token}"
  mode: webhook
  secret_token: {SECRET}
  webhook_url: "https://bot.example.com/telegram/webhook"
  api_url: "{fake.base_url}"
  file_url: "{fake.base_file_url}"
slack:
  enabled: true
  mode: http
  bot_token: "{slack.bot_token}"
  signing_secret: {SLACK_SECRET}
  api_url: "{slack.base_url}"
  default_channel: CSUP
  team_channels: {{complaints: CCOMP}}
  agents: [UANNA]
  sync_interval: 0.3
""")
    return cfg


class Instance:
    """An `omnibot run` process; its log is read on a thread (a full pipe would stall it)."""

    def __init__(self, cfg: Path, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "run", "-c", str(cfg), "--port", "0"],
                                     cwd=ROOT, env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.lines: list[str] = []
        self._url: list[str] = []
        self._started = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._started.wait(90) or not self._url:
            self.proc.kill()
            raise AssertionError("omnibot did not start:\n" + "".join(self.lines))
        self.url = self._url[0]

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            m = re.search(r"web chat:\s+(http://127\.0\.0\.1:\d+)/", line)
            if m and not self._url:
                self._url.append(m.group(1))
                self._started.set()
        self._started.set()

    def log(self) -> str:
        return "".join(self.lines)


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    f = FakeSlack()
    await f.start()
    f.add_user("UANNA", "Anna Smith")
    try:
        yield f
    finally:
        await f.stop()


async def _rows(pg_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    con = await asyncpg.connect(pg_url)
    try:
        return await con.fetch(sql, *args)
    finally:
        await con.close()


async def _until(what: str, check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"{what} not reached in {timeout} s"
        await asyncio.sleep(0.1)


async def _queue(http: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    async with http.get(url + "/agent/api/queue", headers=agent_headers()) as resp:
        assert resp.status == 200
        return (await resp.json())["handoffs"]  # type: ignore[no-any-return]


async def _true(v: bool) -> bool:
    return v


async def _faq_customer(http: aiohttp.ClientSession, urls: list[str], home: int) -> ChatClient:
    """A customer asking the FAQ questions; when its instance dies, the widget reconnects (to the
    next instance, as a load balancer would) with its token and resends what was not acked."""
    c = ChatClient(http, urls[home] + "/webchat/ws")
    await c.connect()
    for q, a in FAQ.items():
        client_id = str(uuid.uuid4())
        for attempt in range(1, 12):
            try:
                ack = await c.send(q, client_id=client_id)
                assert ack["type"] == "ack", ack
                if not any(a in m["text"] for m in c.messages.values() if m["direction"] == "out"):
                    await c.replies_until(lambda m: a in m["text"], timeout=6)
                break
            except (asyncio.TimeoutError, aiohttp.ClientError, ConnectionError, AssertionError, RuntimeError):
                await c.close()
                token = c.token
                c = ChatClient(http, urls[(home + attempt) % len(urls)] + "/webchat/ws")
                try:
                    await c.connect(token=token)
                except (asyncio.TimeoutError, aiohttp.ClientError, ConnectionError):
                    await asyncio.sleep(0.5)
        else:
            raise AssertionError(f"{q!r} never answered")
    return c


async def _telegram_chat(http: aiohttp.ClientSession, urls: list[str], chat_id: int, start: int) -> None:
    """Each message of the chat through another instance (as a load balancer spreads them)."""
    for i, q in enumerate(FAQ):
        update = text_update(chat_id, q, message_id=start + i)
        for attempt in range(len(urls) * 3):    # an instance down: Telegram retries; here, the next one
            url = urls[(start + i + attempt) % len(urls)]
            try:
                status = await deliver_webhook(http, url + "/telegram/webhook", update, SECRET, timeout=5)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                continue
            if status == 200:
                break
        else:
            raise AssertionError(f"update {start + i} of chat {chat_id} never accepted")


async def test_three_instances_lose_nothing_and_send_nothing_twice(tmp_path: Path, pg_url: str,
                                                                   fake: FakeTelegram, slack: FakeSlack) -> None:
    cfg = _config(tmp_path, pg_url, fake, slack)
    # B stores and acknowledges what it receives but never gets to answer it (each turn waits a
    # minute): killed, its messages must be answered by A and C within seconds
    insts = [Instance(cfg), Instance(cfg, {"OMNIBOT_FAULT_TURN_DELAY": "60"}), Instance(cfg)]
    urls = [i.url for i in insts]
    a, b, c = urls
    try:
        async with aiohttp.ClientSession() as http:
            # -- live across instances: a customer on A, the agent's desk socket on C ----------
            agent_ws = await http.ws_connect(c + "/agent/ws", headers=agent_headers())
            customer = ChatClient(http, a + "/webchat/ws")
            await customer.connect()
            await customer.say("talk to a person", expect_text="Customer Care")
            frame = await asyncio.wait_for(agent_ws.receive_json(), 10)      # published on A, seen on C
            assert frame["event"] == "queued"
            hid = frame["handoff_id"]
            for action, body in (("claim", {}), ("reply", {"text": "Hi, Anna here. How can I help?"})):
                async with http.post(f"{c}/agent/api/handoffs/{hid}/{action}", headers=agent_headers(),
                                     json=body) as resp:
                    assert resp.status == 200, await resp.text()
            started = time.monotonic()
            await customer.replies_until(lambda m: "Anna here" in m["text"])
            assert time.monotonic() - started < 3         # pushed to A's socket, not on a reconnect
            await customer.send("my order never arrived")
            while True:                                   # the customer's message, live on C's desk
                frame = await asyncio.wait_for(agent_ws.receive_json(), 10)
                if frame["event"] == "message" and frame["handoff_id"] == hid:
                    break
            # three Slack desks, one card for the handoff (and it stays one through the sweeps)
            await _until("the Slack card", lambda: _true(any(map(card_posts(slack, "CSUP"), slack.calls_to("chat.postMessage")))))
            await asyncio.sleep(1.0)
            assert len([x for x in slack.calls_to("chat.postMessage") if card_posts(slack, "CSUP")(x)]) == 1

            # -- load on all three, and B killed in the middle of it ---------------------------
            load = [asyncio.create_task(_faq_customer(http, urls, i % 3)) for i in range(6)]
            tg = [asyncio.create_task(_telegram_chat(http, urls, 7000 + n, 100 * n)) for n in range(6)]

            async def b_holds_work() -> bool:
                rows = await _rows(pg_url, "SELECT COUNT(*) AS n FROM conversations WHERE owner LIKE $1",
                                   f"%:{insts[1].proc.pid}:%")
                return rows[0]["n"] >= 2
            await _until("instance B working on conversations", b_holds_work)
            _kill(insts[1].proc)
            killed_at = time.monotonic()
            [last] = await _rows(pg_url, "SELECT MAX(id) AS n FROM messages")

            async def left_by_b_answered() -> bool:
                rows = await _rows(pg_url, "SELECT COUNT(*) AS n FROM messages WHERE direction='in' "
                                   "AND status='received' AND id <= $1", last["n"])
                return rows[0]["n"] == 0
            await _until("what B accepted answered by A and C", left_by_b_answered, timeout=20)
            taken_over = time.monotonic() - killed_at
            assert taken_over < 12, taken_over      # within seconds (5 s to be found dead), not at B's start
            customers = await asyncio.gather(*load)
            await asyncio.gather(*tg)
            assert "stopped answering; their conversations are taken over" in insts[0].log() + insts[2].log()
            insts[1] = Instance(cfg)                 # B again, answering normally now
            urls[1] = insts[1].url
            customers += await asyncio.gather(*[_faq_customer(http, urls, i) for i in range(3)])
            for cust in customers:
                # the customer saw each answer once: live pushes and history deduplicated by id
                answers = [m for m in cust.messages.values() if m["direction"] == "out"
                           and any(x in m["text"] for x in FAQ.values())]
                assert len(answers) == len(FAQ), [m["text"] for m in answers]
                await cust.close()

            # -- every accepted message answered, exactly once, in order ------------------------
            async def settled() -> bool:
                [row] = await _rows(pg_url, "SELECT "
                                    "(SELECT COUNT(*) FROM messages WHERE direction='in' AND status='received') AS i, "
                                    "(SELECT COUNT(*) FROM messages WHERE direction='out' AND status='pending') AS o")
                return row["i"] == 0 and row["o"] == 0
            await _until("every message answered and sent", settled)

            convs = await _rows(pg_url, "SELECT id, channel, external_id FROM conversations WHERE state='bot'")
            for conv in convs:
                msgs = await _rows(pg_url, "SELECT direction, text FROM messages WHERE conversation_id=$1 ORDER BY id",
                                   conv["id"])
                ins = [m["text"] for m in msgs if m["direction"] == "in"]
                outs = [m["text"] for m in msgs if m["direction"] == "out"]
                # one reply per question, in the order asked (the welcome, if any, comes first)
                answers = [t for t in outs if any(x in t for x in FAQ.values())]
                assert len(answers) == len(ins), (conv["channel"], ins, outs)
                for q, t in zip(ins, answers):
                    assert FAQ[q] in t, (q, t)
            # Telegram: each reply sent at most twice (one duplicate for the one kill), in order
            for n in range(6):
                sent = [m["text"] for m in fake.sent_to(7000 + n)]
                distinct = list(dict.fromkeys(sent))
                assert [next(a for a in FAQ.values() if a in t) for t in distinct] == list(FAQ.values())
                assert len(sent) - len(distinct) <= 1, sent

            # -- a follow-up is asked once, though three instances watch the clock ---------------
            filer = ChatClient(http, a + "/webchat/ws")
            await filer.connect()
            ref = await _file_complaint(filer, "product", "GH444444", "The blender lid cracked on day one.")
            await filer.say("Yes, talk to a person", payload="yes", expect_text="queue")
            [h] = [x for x in await _queue(http, c) if x["state"] == "queued"]
            for action, body in (("claim", {}), ("resolve", {"result": "a new lid is on its way"})):
                async with http.post(f"{c}/agent/api/handoffs/{h['id']}/{action}", headers=agent_headers(),
                                     json=body) as resp:
                    assert resp.status == 200, await resp.text()
            await filer.replies_until(lambda m: "How satisfied" in m["text"], timeout=10)
            await filer.say("5", payload="5")
            await filer.say("skip", expect_text="Thanks for your feedback")
            await filer.replies_until(lambda m: "Has the problem stayed solved?" in m["text"], timeout=15)
            await asyncio.sleep(1.5)      # five more rounds of every instance's follow-up check
            rows = await _rows(pg_url, "SELECT COUNT(*) AS n FROM messages WHERE direction='out' AND text LIKE $1",
                               f"%{ref}. Has the problem stayed solved?%")
            assert rows[0]["n"] == 1
            await filer.close()
            await agent_ws.close()
            await customer.close()
    finally:
        for inst in insts:
            if inst.proc.poll() is None:
                _kill(inst.proc)
    rows = await _rows(pg_url, "SELECT COUNT(*) AS n FROM instances")
    assert rows[0]["n"] <= 3
