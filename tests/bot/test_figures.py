"""Per-agent figures, handoffs by cause and the honest bot containment (bot.figures), on a small
hand-made history written through the store (SQLite and PostgreSQL), expected values by hand.

T0 = 2026-11-02 10:00 UTC; "now" = T0 + 10 days; report.containment_window_days 3, visits end
after 30 minutes of silence. Every conversation is on the web chat, one customer each:

conv  first in   the bot's last reply            afterwards                        counts as
ann   T0         an answer                       -                                 contained
bob   T0+1h      did not understand (fallback)   -                                 abandoned
cy    T0+2h      an answer                       writes again 1 day later          came back
dee   T0+3h      a flow waits for an answer      -                                 abandoned
eve   T0+4h      an answer                       writes again 5 days later (> 3)   contained
hal   T0+5h      handed (customer_asked)         Anna: claim +70 s, reply +100 s, resolve +10 min
ida   T0+6h      handed (complaint, C-1 CSAT 4)  Anna: claim +60 s, reply +160 s, resolve +1 h
jo    T0+7h      handed (misunderstood)          Bob: claim +40 s, reply +100 s (stored before
                                                 payloads named the account: first name "Bob")
kim   T0+8h      handed (no cause: before schema 13)

(handoffs are queued 10 s after the conversation's first message)

=> conversations 9: contained 2, handed 4, came back 1, abandoned 2; bot containment 2/9;
   handoffs by cause complaint 1, customer_asked 1, misunderstood 1, unknown 1;
   Anna Smith: handled 2, first response median (30, 100) = 65 s, time to resolution median
   (590, 3590) = 2090 s, CSAT 4.0 (1 answer); Bob Jones: handled 0, first response 60 s.
   On T0 + 1 day, ann and eve are still within their window: pending 2.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from bot import report as rep
from bot.cli import main
from bot.config import ReportConfig
from bot.model import Inbound, Outbound
from bot.storage import Store, Ticket, open_store
from bot.storage import ops_chat, ops_desk
from conftest import FakeClock

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)
NOW = T0 + timedelta(days=10)
S, H, D = timedelta(seconds=1), timedelta(hours=1), timedelta(days=1)


async def _history(store: Store, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The module docstring's history; returns conversation ids by name."""
    clock = FakeClock(T0)
    monkeypatch.setattr(ops_chat, "utcnow", clock)
    monkeypatch.setattr(ops_desk, "utcnow", clock)
    convs: dict[str, str] = {}
    customers: dict[str, str] = {}

    async def visit(name: str, at: datetime, outcome: str = "", n: int = 1) -> None:
        clock.now = at
        got = await store.record_inbound(Inbound("webchat", name, f"{name}-{n}", "hi", sent_at=at))
        convs[name] = got.conversation.id
        customers[name] = got.customer.id
        clock.now = at + 2 * S
        await store.commit_turn(got.conversation.id, inbound_id=got.message.id, flow_state=None,
                                replies=[Outbound("hello"), Outbound("more", outcome=outcome)])

    async def agent_reply(name: str, at: datetime, agent: str, first: str) -> None:
        clock.now = at
        await store.commit_turn(convs[name], inbound_id=None, flow_state=None, keep_flow_state=True,
                                replies=[Outbound("on it", role="agent", sender_name=first, agent=agent)])

    await visit("ann", T0)
    await visit("bob", T0 + H, "fallback")
    await visit("cy", T0 + 2 * H)
    await visit("cy", T0 + 2 * H + D, n=2)
    await visit("dee", T0 + 3 * H, "mid_flow")
    await visit("eve", T0 + 4 * H)
    await visit("eve", T0 + 4 * H + 5 * D, n=2)
    for name, at, cause, agent, claim, reply, resolve in (
            ("hal", T0 + 5 * H, "customer_asked", "Anna Smith", 70, 100, 600),
            ("ida", T0 + 6 * H, "complaint", "Anna Smith", 60, 160, 3600),
            ("jo", T0 + 7 * H, "misunderstood", "Bob Jones", 40, 100, None),
            ("kim", T0 + 8 * H, None, None, None, None, None)):
        await visit(name, at)
        clock.now = at + 10 * S
        h = await store.create_handoff(convs[name], team="support", reason="r", cause=cause)
        assert h.cause == cause and (await store.get_handoff(h.id)).cause == cause  # type: ignore[union-attr]
        if name == "ida":
            await store.create_ticket(Ticket("C-1", customers[name], convs[name], "received", "shipping", "normal", "care",
                                             "support", 1, at))
        if agent is None:
            continue
        clock.now = at + claim * S
        assert await store.transition_handoff(h.id, expected="queued", new="claimed", agent=agent)
        if agent == "Bob Jones":     # an old reply: no account in its payload, the first name only
            clock.now = at + reply * S
            await store.commit_turn(convs[name], inbound_id=None, flow_state=None, keep_flow_state=True,
                                    replies=[Outbound("on it", role="agent", sender_name="Bob")])
        else:
            await agent_reply(name, at + reply * S, agent, agent.split()[0])
        if resolve is not None:
            clock.now = at + resolve * S
            assert await store.transition_handoff(h.id, expected="claimed", new="resolved")
    await store.resolve_ticket("C-1", at=T0 + 7 * H, agent="Anna Smith", result=None)
    await store.record_csat("C-1", score=4, comment=None, at=T0 + 8 * H)
    return convs


def _assert_hand_worked(r: dict[str, Any]) -> None:
    c = r["containment"]
    assert (c["conversations"], c["contained"], c["handed"], c["came_back"], c["abandoned"]) == (9, 2, 4, 1, 2)
    assert c["pending"] == 0 and c["window_days"] == 3
    assert r["bot_containment"] == round(2 / 9, 4)
    assert r["handoffs_by_cause"] == {"complaint": 1, "customer_asked": 1, "misunderstood": 1, "unknown": 1}
    assert r["agents"] == {
        "Anna Smith": {"handled": 2, "first_response_s_median": 65.0, "resolution_s_median": 2090.0,
                       "csat_mean": 4.0, "csat_answers": 1},
        "Bob Jones": {"handled": 0, "first_response_s_median": 60.0, "resolution_s_median": None,
                      "csat_mean": None, "csat_answers": 0}}


async def test_figures_on_both_backends(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    await _history(store, monkeypatch)
    r = await rep.report(store, since=T0 - D, by="agent", now=NOW)
    assert r["by"] == "agent" and "groups" not in r
    _assert_hand_worked(r)
    early = await rep.report(store, since=T0 - D, now=T0 + D)
    assert early["containment"]["pending"] == 2
    # a longer window: eve's return after 5 days counts as coming back too
    longer = await rep.report(store, since=T0 - D, now=NOW, containment=ReportConfig(containment_window_days=6))
    assert (longer["containment"]["came_back"], longer["containment"]["contained"]) == (2, 1)
    # a period without the later handoffs: only ann .. hal
    first = await rep.report(store, since=T0, until=T0 + 5 * H + 30 * S, now=NOW)
    assert first["handoffs_by_cause"] == {"customer_asked": 1} and list(first["agents"]) == ["Anna Smith"]
    assert first["agents"]["Anna Smith"]["handled"] == 1


async def test_the_report_reads_on_both_backends(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each read alone: what it returns for the period."""
    convs = await _history(store, monkeypatch)
    since, until = (T0 - D).isoformat(), (T0 + D).isoformat()
    rows = await store.report_handoff_rows(since, until)
    assert [(r["agent"], r["cause"], r["state"]) for r in rows] == [
        ("Anna Smith", "customer_asked", "resolved"), ("Anna Smith", "complaint", "resolved"),
        ("Bob Jones", "misunderstood", "claimed"), (None, None, "queued")]
    replies = await store.report_agent_replies(since, until)
    assert sorted((json.loads(r["payload"] or "{}").get("agent", ""), r["sender_name"]) for r in replies) == [
        ("", "Bob"), ("Anna Smith", "Anna"), ("Anna Smith", "Anna")]
    assert await store.report_resolved_tickets(since, until) == [{"reference": "C-1", "resolved_by": "Anna Smith",
                                                                   "csat": 4}]
    msgs = await store.report_conversation_messages(since, until)
    assert {m["conversation_id"] for m in msgs} == set(convs.values())
    bob = [m for m in msgs if m["conversation_id"] == convs["bob"]]
    assert [(m["direction"], m["payload"]) for m in bob] == [("in", None), ("out", None),
                                                             ("out", '{"outcome":"fallback"}')]
    wrote = await store.report_customer_messages(since, until, (T0 + 30 * D).isoformat())
    assert sum(1 for w in wrote if w["conversation_id"] == convs["cy"]) == 2
    assert await store.report_customer_messages(since, until, since) == []


async def test_update_agent_on_both_backends(store: Store) -> None:
    from bot.agents import AccountError, add_agent, update_agent

    await add_agent(store, name="Anna Smith", email="anna@shop.test", teams=["support"], role="agent",
                    password="correct horse")
    await add_agent(store, name="Bob Jones", email="bob@shop.test", teams=["support"], role="agent",
                    password="correct horse")
    before = await store.agent_by_email("anna@shop.test")
    assert await store.update_agent("ANNA@shop.test", teams=["support", "complaints"], role="supervisor")
    after = await store.agent_by_email("anna@shop.test")
    assert after is not None and before is not None
    assert (after.teams, after.role, after.name) == (("support", "complaints"), "supervisor", "Anna Smith")
    assert after.session_gen == before.session_gen          # sessions go on: roles are read per request
    assert not await store.update_agent("nobody@shop.test", role="admin")
    assert not await store.update_agent("anna@shop.test")
    renamed = await update_agent(store, "anna@shop.test", name="Anna Berg")
    assert renamed.name == "Anna Berg"
    with pytest.raises(AccountError, match="exists already"):
        await update_agent(store, "anna@shop.test", name="bob jones")
    with pytest.raises(AccountError, match="at least one team"):
        await update_agent(store, "bob@shop.test", teams=[])
    with pytest.raises(LookupError):
        await update_agent(store, "nobody@shop.test", role="agent")


# -- the command line ----------------------------------------------------------------------------------


async def _cli(*args: str, input: str | None = None) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), input=input)


def _config(tmp_path: Path, db: Path) -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f'storage: {{url: "sqlite:///{db}"}}\n'
                   "handoff: {default_team: support, teams: {support: {name: Care}, complaints: {name: C}}}\n",
                   encoding="utf-8")
    return cfg


async def test_cli_report_by_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "o.sqlite3"
    store = await open_store(f"sqlite:///{db}")
    try:
        await _history(store, monkeypatch)
    finally:
        await store.close()
    cfg = _config(tmp_path, db)
    text = await _cli("report", "-c", str(cfg), "--since", "2026-11-01", "--by", "agent")
    assert text.exit_code == 0, text.output
    out = text.output
    assert "agent: Anna Smith" in out and "agent: Bob Jones" in out
    anna = out.split("agent: Anna Smith")[1].split("agent: Bob Jones")[0]
    assert "handled                 2" in anna and "first response (median) 65 s" in anna
    assert "time to resolution      35 min (median)" in anna and "CSAT                    4.0 / 5 (1 answers)" in anna
    assert "bot containment         22%" in out
    assert "2 contained, 4 handed, 1 came back within 3 days, 2 abandoned" in out
    assert "handoffs by cause       complaint 1, customer_asked 1, misunderstood 1, unknown 1" in out
    as_json = await _cli("report", "-c", str(cfg), "--since", "2026-11-01", "--by", "agent", "--json")
    _assert_hand_worked(json.loads(as_json.output) | {})
    plain = await _cli("report", "-c", str(cfg), "--since", "2026-11-01")
    assert "agent: Anna Smith" not in plain.output and "handoffs by cause" in plain.output
    helped = await _cli("report", "--help")
    assert "--by [category|team|channel|agent]" in helped.output and "first response" in helped.output


async def test_cli_agent_enable_and_set(tmp_path: Path) -> None:
    db = tmp_path / "o.sqlite3"
    cfg = str(_config(tmp_path, db))
    added = await _cli("agent", "add", "-c", cfg, "--name", "Anna Smith", "--email", "anna@shop.test",
                       "--teams", "support")
    assert added.exit_code == 0, added.output
    assert (await _cli("agent", "disable", "-c", cfg, "anna@shop.test")).exit_code == 0
    enabled = await _cli("agent", "enable", "-c", cfg, "anna@shop.test")
    assert enabled.exit_code == 0 and "enabled anna@shop.test" in enabled.output
    listed = await _cli("agent", "list", "-c", cfg)
    assert "anna@shop.test  Anna Smith  agent  support  no" in listed.output

    changed = await _cli("agent", "set", "-c", cfg, "anna@shop.test", "--teams", "support,complaints",
                         "--role", "supervisor")
    assert changed.exit_code == 0, changed.output
    assert "anna@shop.test: supervisor Anna Smith (teams: support, complaints)" in changed.output
    unknown = await _cli("agent", "set", "-c", cfg, "anna@shop.test", "--teams", "support,billing")
    assert unknown.exit_code == 2 and "unknown team 'billing' (teams: support, complaints)" in unknown.output
    nothing = await _cli("agent", "set", "-c", cfg, "anna@shop.test")
    assert nothing.exit_code == 2 and "give --name, --teams and/or --role" in nothing.output
    bad_role = await _cli("agent", "set", "-c", cfg, "anna@shop.test", "--role", "boss")
    assert bad_role.exit_code == 2
    missing = await _cli("agent", "set", "-c", cfg, "nobody@shop.test", "--role", "agent")
    assert missing.exit_code == 1 and "no agent account with e-mail nobody@shop.test" in missing.output
    assert (await _cli("agent", "enable", "-c", cfg, "nobody@shop.test")).exit_code == 1
    listed = await _cli("agent", "list", "-c", cfg)
    assert "anna@shop.test  Anna Smith  supervisor  support,complaints  no" in listed.output
    helped = await _cli("agent", "set", "--help")
    assert "sessions go on" in " ".join(helped.output.split()) and "--teams" in helped.output
    assert "enable" in (await _cli("agent", "--help")).output
