"""The ``call:`` step (README "Calling your systems") with the real aiohttp client against a fake
shop API on 127.0.0.1: a delay beyond the timeout, a 404, a 500, an answer that is not JSON, retries
then success, a POST made once per turn step (a replayed turn does not call again), values
URL-encoded, and the auth header sent but never logged."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from aiohttp import web
from pydantic import SecretStr

from bot.config import EndpointConfig, IntegrationsConfig, parse_config
from bot.integrations import Integrations, dig
from bot.storage import Store
from flows import FlowEngine, LexicalMatcher, TurnInput, load_flows

TOKEN = "s3cret-shop-token-123"

FLOWS = """\
intents:
  where: {examples: [where is my order]}
  slow: {examples: [slow call please]}
  boom: {examples: [broken call please]}
  junk: {examples: [junk answer please]}
  flaky: {examples: [flaky call please]}
  move: {examples: [move my order]}
  sneaky: {examples: [sneaky path please]}
flows:
  where:
    trigger: where
    steps:
      - collect: order
        type: regex
        pattern: '[A-Z]{2}\\d{6}'
        ask: "Order number?"
      - call: shop
        path: "/orders/{{ slots.order }}"
        save: {status: status, eta: delivery.eta, first_item: items.0.name}
        on_not_found: unknown
      - say: "{{ slots.order }} is {{ slots.status }}, due {{ slots.eta }} ({{ slots.first_item }})."
      - end
      - id: unknown
        say: "No order {{ slots.order }}."
  slow:
    trigger: slow
    steps:
      - call: shop
        path: /slow
        failure_message: "Our order system is slow right now; try again in a minute."
      - say: "never said"
  boom:
    trigger: boom
    steps:
      - call: shop
        path: /boom
        on_failure: handoff
      - say: "never said"
  junk:
    trigger: junk
    steps:
      - call: shop
        path: /junk
        on_failure: sorry
      - say: "never said"
      - end
      - id: sorry
        say: "Let me get back to you on that."
  flaky:
    trigger: flaky
    steps:
      - call: shop
        path: /flaky
        save: {answer: answer}
      - say: "Got {{ slots.answer }}."
  move:
    trigger: move
    steps:
      - call: shop
        method: POST
        path: /orders/AB123456/address
        body: {address: "{{ message }}", note: [fixed, "{{ channel }}"]}
        save: {status: status}
        on_status: {409: too_late}
      - say: "Moved ({{ slots.status }})."
      - end
      - id: too_late
        say: "Too late, it shipped."
  sneaky:
    trigger: sneaky
    steps:
      - set: {order: "../admin?x=1#frag"}
      - call: shop
        path: "/orders/{{ slots.order }}"
        query: {q: "{{ message }}"}
        on_not_found: gone
      - say: "found?"
      - end
      - id: gone
        say: "not found"
"""


@dataclass
class FakeShop:
    """The shop's API as a real aiohttp server; records what it received."""

    received: list[dict[str, Any]] = field(default_factory=list)
    flaky_failures: int = 2
    post_status: int = 200
    slow_seconds: float = 1.0          # > 3x the endpoint timeout (0.3 s)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        self.received.append({"method": request.method, "raw_path": request.raw_path, "path": request.path,
                              "query": dict(request.query), "headers": dict(request.headers), "body": body})
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error": "no"}, status=401)
        p = request.path
        if p == "/api/orders/AB123456" and request.method == "GET":
            return web.json_response({"status": "shipped", "delivery": {"eta": "2030-01-02"},
                                      "items": [{"name": "Boots"}]})
        if p.startswith("/api/orders/") and request.method == "GET":
            return web.json_response({"error": "not found"}, status=404)
        if p == "/api/slow":
            await asyncio.sleep(self.slow_seconds)
            return web.json_response({"late": True})
        if p == "/api/boom":
            return web.json_response({"error": "internal"}, status=500)
        if p == "/api/junk":
            return web.Response(text="<html>maintenance</html>", content_type="text/html")
        if p == "/api/flaky":
            self.flaky_failures -= 1
            if self.flaky_failures >= 0:
                return web.Response(status=503, text="busy")
            return web.json_response({"answer": 42})
        if p == "/api/orders/AB123456/address" and request.method == "POST":
            if self.post_status == 409:
                return web.json_response({"error": "shipped", "status": "shipped"}, status=409)
            return web.json_response({"status": "processing"})
        return web.json_response({"error": "?"}, status=400)

    def count(self, path: str) -> int:
        return sum(1 for r in self.received if r["path"] == path)


@pytest.fixture
async def shop() -> AsyncIterator[tuple[FakeShop, str]]:
    fake = FakeShop()
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield fake, f"http://127.0.0.1:{port}/api"
    finally:
        await runner.cleanup()


@dataclass
class Bot:
    engine: FlowEngine
    calls: Integrations
    state: dict[str, Any] | None = None
    n: int = 0

    async def say(self, text: str, *, key: str | None = None) -> Any:
        self.n += 1
        res = await self.engine.handle(self.state, TurnInput(text=text, channel="webchat", conversation_id="c1",
                                                             key=key if key is not None else f"in:{self.n}"))
        self.state = res.state
        return res


@pytest.fixture
async def bot(tmp_path: Path, shop: tuple[FakeShop, str], memory_store: Store) -> AsyncIterator[Bot]:
    (tmp_path / "flows.yaml").write_text(FLOWS, encoding="utf-8")
    fs = load_flows(tmp_path, endpoints=["shop"])
    ep = EndpointConfig(base_url=shop[1], auth_header=SecretStr(f"Bearer {TOKEN}"), timeout=0.3, retries=2,
                        retry_delay=0.01)
    calls = Integrations(IntegrationsConfig(endpoints={"shop": ep}), effects=memory_store)
    try:
        yield Bot(FlowEngine(fs, matcher=LexicalMatcher(), calls=calls), calls)
    finally:
        await calls.close()


async def test_success_saves_nested_fields_and_sends_the_auth_header(bot: Bot, shop: tuple[FakeShop, str]) -> None:
    await bot.say("where is my order")
    res = await bot.say("AB123456")
    assert [r.text for r in res.replies] == ["AB123456 is shipped, due 2030-01-02 (Boots)."]
    [got] = shop[0].received
    assert got["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert got["method"] == "GET" and "Idempotency-Key" not in got["headers"]


async def test_404_goes_to_on_not_found(bot: Bot) -> None:
    await bot.say("where is my order")
    res = await bot.say("ZZ999999")
    assert [r.text for r in res.replies] == ["No order ZZ999999."]
    assert res.handoff is None


async def test_a_delay_beyond_the_timeout_says_the_failure_message(bot: Bot, shop: tuple[FakeShop, str]) -> None:
    res = await bot.say("slow call please")
    assert [r.text for r in res.replies] == ["Our order system is slow right now; try again in a minute."]
    assert res.state["flow"] is None and res.handoff is None          # on_failure default: end
    assert shop[0].count("/api/slow") == 3                            # the first try and 2 retries


async def test_a_500_after_the_retries_hands_over_without_showing_the_error(bot: Bot,
                                                                           shop: tuple[FakeShop, str]) -> None:
    res = await bot.say("broken call please")
    assert [r.text for r in res.replies] == ["Sorry, I can't look that up right now."]
    assert res.handoff is not None and res.handoff.cause == "other"
    assert "could not reach shop" in res.handoff.agent_reason and "500" in res.handoff.agent_reason
    assert shop[0].count("/api/boom") == 3
    assert all("500" not in r.text and "internal" not in r.text for r in res.replies)


async def test_an_answer_that_is_not_json_fails_without_retrying(bot: Bot, shop: tuple[FakeShop, str]) -> None:
    res = await bot.say("junk answer please")
    assert [r.text for r in res.replies] == ["Sorry, I can't look that up right now.",
                                             "Let me get back to you on that."]
    assert shop[0].count("/api/junk") == 1


async def test_retries_then_success(bot: Bot, shop: tuple[FakeShop, str]) -> None:
    res = await bot.say("flaky call please")
    assert [r.text for r in res.replies] == ["Got 42."]
    assert shop[0].count("/api/flaky") == 3                           # 503, 503, 200


async def test_a_post_is_made_once_per_turn_step_even_when_the_turn_is_replayed(
        bot: Bot, shop: tuple[FakeShop, str]) -> None:
    before = bot.state
    res = await bot.say("move my order", key="in:42")
    assert [r.text for r in res.replies] == ["Moved (processing)."]
    [post] = [r for r in shop[0].received if r["method"] == "POST"]
    assert post["headers"]["Content-Type"].startswith("application/json")
    import json
    assert json.loads(post["body"]) == {"address": "move my order", "note": ["fixed", "webchat"]}
    key = post["headers"]["Idempotency-Key"]
    # the process died before the turn was committed: the same inbound message runs again
    bot.state = before
    again = await bot.say("move my order", key="in:42")
    assert [r.text for r in again.replies] == ["Moved (processing)."]
    assert shop[0].count("/api/orders/AB123456/address") == 1
    # another message is another turn: it calls (with another idempotency key)
    await bot.say("move my order", key="in:43")
    posts = [r for r in shop[0].received if r["method"] == "POST"]
    assert len(posts) == 2 and posts[1]["headers"]["Idempotency-Key"] != key


async def test_on_status_branches_on_a_409(bot: Bot, shop: tuple[FakeShop, str]) -> None:
    shop[0].post_status = 409
    res = await bot.say("move my order")
    assert [r.text for r in res.replies] == ["Too late, it shipped."]
    assert res.state["slots"]["status"] == "shipped"


async def test_values_are_url_encoded_and_stay_one_path_segment(bot: Bot, shop: tuple[FakeShop, str]) -> None:
    res = await bot.say("sneaky path please {{ 7*7 }} & x=1")
    assert [r.text for r in res.replies] == ["not found"]
    [got] = shop[0].received
    assert got["raw_path"].startswith("/api/orders/..%2Fadmin%3Fx%3D1%23frag?")
    assert got["path"] == "/api/orders/../admin?x=1#frag"            # one segment, not a way out of /api/orders
    assert got["query"] == {"q": "sneaky path please {{ 7*7 }} & x=1"}  # customer text is data, not a template


async def test_calls_are_logged_without_the_auth_header(bot: Bot, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.integrations")
    await bot.say("where is my order")
    await bot.say("AB123456")
    await bot.say("broken call please")
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.integrations"]
    assert any(line.startswith("call shop GET /orders/{{ slots.order }}: 200 in ") for line in lines), lines
    assert any("call shop GET /boom: 500 in " in line and "attempt 3 of 3" in line for line in lines), lines
    assert not any(TOKEN in line or "AB123456" in line for line in lines)


async def test_an_unknown_endpoint_is_a_flow_error(tmp_path: Path) -> None:
    (tmp_path / "f.yaml").write_text(textwrap.dedent("""\
        intents: {a: {examples: [a]}}
        flows:
          a:
            trigger: a
            steps:
              - call: shopp
                path: "orders/{{ slots.nothing }}"
                method: GET
                body: {x: 1}
                on_status: {404: nowhere, 200: x}
        """), encoding="utf-8")
    from bot.errors import FlowValidationError
    with pytest.raises(FlowValidationError) as exc:
        load_flows(tmp_path, endpoints=["shop"])
    text = "\n".join(map(str, exc.value.errors))
    assert "no endpoint named 'shopp' in config integrations.endpoints (shop); did you mean 'shop'?" in text
    assert "path starts with /" in text
    assert "slot 'nothing' is never filled" in text
    assert "a GET has no body" in text
    assert "on_status 404" in text and "on_status 200" in text
    assert "unknown target 'nowhere'" in text


def test_config_expands_the_auth_header_from_the_environment_and_keeps_it_secret(tmp_path: Path) -> None:
    cfg = parse_config(textwrap.dedent("""\
        integrations:
          endpoints:
            shop: {base_url: "https://shop.example/api/", auth_header: "Bearer ${SHOP_API_TOKEN}", timeout: 3,
                   retries: 2}
        """), path=str(tmp_path / "config.yaml"), env={"SHOP_API_TOKEN": "tok-123"})
    ep = cfg.integrations.endpoints["shop"]
    assert ep.base_url == "https://shop.example/api" and ep.timeout == 3 and ep.retries == 2
    assert ep.auth_header.get_secret_value() == "Bearer tok-123"
    assert "tok-123" not in repr(cfg.integrations)
    assert "tok-123" in cfg.secrets()                   # the log filter hides it, alone or with "Bearer"


def test_dig() -> None:
    data = {"a": {"b": [{"c": 1}, {"c": 2}]}, "n": None}
    assert dig(data, "a.b.1.c") == 2 and dig(data, "a.b.-1.c") == 2
    assert dig(data, "a.x") is None and dig(data, "a.b.5") is None and dig(data, "n.x") is None
    assert dig(data, ".") is data
