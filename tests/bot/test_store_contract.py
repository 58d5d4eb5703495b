"""The store contract, part two (part one: test_storage.py): tickets, side effects, link codes,
the operations several instances coordinate with, and a check that the contract suite calls
every operation of the store. Each test runs on SQLite and on a real PostgreSQL (``store``)."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.errors import AlreadyDone, ClaimLost
from bot.model import ConversationState, Inbound, Outbound
from bot.storage import Store, Ticket, TicketFollowedUp, open_store
from bot.storage.operations import Operations

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
HERE = Path(__file__).parent

# The files whose tests take the ``store`` fixture: together, the contract suite.
CONTRACT_FILES = [HERE / "test_storage.py", HERE / "test_store_contract.py", HERE / "test_media_store.py",
                  HERE / "test_report.py", HERE / "test_store_whatsapp.py", HERE / "test_search.py", HERE / "test_agents.py",
                  HERE / "test_store_work.py", HERE / "test_store_customers.py", HERE / "test_figures.py",
                  HERE / "test_store_privacy.py", HERE / "test_store_actions.py",
                  HERE / "test_store_review.py", HERE / "test_store_language.py", HERE / "test_store_flows.py",
                  HERE / "test_store_hotpath.py", HERE / "test_store_onetrip.py", HERE / "test_turn_basis.py",
                  HERE / "test_store_onetrip_whatsapp.py",
                  # the report's reads are called by report(store), which test_report runs on both backends
                  HERE.parent.parent / "bot" / "report.py"]


def test_the_contract_suite_calls_every_operation() -> None:
    """A new operation without a test on both backends fails here."""
    ops = {name for name, value in vars(Operations).items() if callable(value) and not name.startswith("_")}
    ops -= {"open", "close", "schema_version"}
    text = "".join(p.read_text() for p in CONTRACT_FILES)
    missing = sorted(op for op in ops if not re.search(rf"\.{op}\(", text))
    assert not missing, f"operations without a contract test: {missing}"


async def conversation(store: Store, ext: str = "v1", pid: str = "m1") -> tuple[str, str]:
    r = await store.record_inbound(Inbound(channel="webchat", external_id=ext, platform_message_id=pid,
                                           text="hello", sender_name="Ann"))
    return r.conversation.id, r.customer.id


def ticket(ref: str, customer_id: str, conversation_id: str, *, at: datetime = T0,
           origin: str | None = None, priority: int = 0) -> Ticket:
    return Ticket(reference=ref, customer_id=customer_id, conversation_id=conversation_id, status="open",
                  category="shipping", severity="normal", department="customer_care", team="support",
                  priority=priority, fields={"order": "AB123456"}, reasons=("late",), created_at=at, origin=origin)


async def test_meta_and_flow_state(store: Store) -> None:
    await store.set_meta("k", "1")
    await store.set_meta("k", "2")
    assert await store.get_meta("k") == "2"
    cid, cust = await conversation(store)
    await store.commit_turn(cid, inbound_id=None, replies=[], flow_state={"flow": "faq", "slots": {"a": "b"}})
    conv, customer, state = await store.load_turn(cid)  # type: ignore[misc]
    assert conv.id == cid and customer.id == cust and customer.display_name == "Ann"
    assert state == {"flow": "faq", "slots": {"a": "b"}}
    assert await store.load_turn("conv_missing") is None
    assert (await store.latest_customer_conversation(cust)).id == cid  # type: ignore[union-attr]
    await store.set_conversation_state(cid, ConversationState.CLOSED)
    cid2, _ = await conversation(store, pid="m2")        # a new one at the same address
    assert cid2 != cid
    assert (await store.latest_customer_conversation(cust)).id == cid2  # type: ignore[union-attr]


async def test_tickets_life_cycle(store: Store) -> None:
    cid, cust = await conversation(store)
    t = await store.create_ticket(ticket("C-1001", cust, cid, origin="in:1"))
    assert (await store.create_ticket(ticket("C-1002", cust, cid, origin="in:1"))).reference == "C-1001"
    assert (await store.ticket_by_origin("in:1")).reference == "C-1001"  # type: ignore[union-attr]
    await store.create_ticket(ticket("C-1003", cust, cid, at=T0 + timedelta(hours=1), priority=2))
    assert (await store.get_ticket("c-1001")).fields == {"order": "AB123456"}  # type: ignore[union-attr]
    assert [x.reference for x in await store.customer_tickets(cust)] == ["C-1003", "C-1001"]
    assert [x.reference for x in await store.customer_tickets(cust, category="billing")] == []
    assert (await store.conversation_ticket(cid)).reference == "C-1003"  # type: ignore[union-attr]
    assert [x.reference for x in await store.open_tickets()] == ["C-1003", "C-1001"]
    assert await store.add_sla_alert(t.reference, "resolve:near")
    assert not await store.add_sla_alert(t.reference, "resolve:near")
    assert not await store.add_sla_alert("C-9999", "resolve:near")
    resolved = await store.resolve_ticket("C-1001", at=T0 + timedelta(hours=2), agent="Anna", result="refund",
                                          follow_up_at=T0 + timedelta(days=3))
    assert resolved is not None and resolved.status == "resolved" and resolved.resolved_by == "Anna"
    assert await store.due_followups(T0 + timedelta(days=2)) == []
    assert [x.reference for x in await store.due_followups(T0 + timedelta(days=4))] == ["C-1001"]
    await store.mark_followed_up("C-1001", at=T0 + timedelta(days=4))
    assert await store.due_followups(T0 + timedelta(days=4)) == []
    rated = await store.record_csat("C-1001", score=4, comment="ok", at=T0 + timedelta(days=4))
    assert rated is not None and rated.csat == 4 and rated.csat_comment == "ok"
    reopened = await store.reopen_ticket("C-1001", at=T0 + timedelta(days=5))
    assert reopened is not None and reopened.status == "reopened" and reopened.reopened == 1
    cid2, _ = await conversation(store, ext="v2", pid="m9")
    await store.move_ticket("C-1001", conversation_id=cid2)
    assert (await store.get_ticket("C-1001")).conversation_id == cid2  # type: ignore[union-attr]


async def test_a_follow_up_commits_once(store: Store) -> None:
    cid, cust = await conversation(store)
    await store.create_ticket(ticket("C-1001", cust, cid))
    await store.resolve_ticket("C-1001", at=T0, agent=None, result=None, follow_up_at=T0)
    await store.commit_turn(cid, inbound_id=None, replies=[Outbound("Still solved?")], flow_state=None,
                            ticket=TicketFollowedUp("C-1001"))
    with pytest.raises(AlreadyDone):
        await store.commit_turn(cid, inbound_id=None, replies=[Outbound("Still solved?")], flow_state=None,
                                ticket=TicketFollowedUp("C-1001"))
    assert [m.text for m in await store.history(cid) if m.direction == "out"] == ["Still solved?"]


async def test_effects_and_link_codes(store: Store) -> None:
    assert await store.get_effect("in:1/0/f/s") is None
    await store.save_effect("in:1/0/f/s", {"result": "C-1001", "updates": {}})
    await store.save_effect("in:1/0/f/s", {"result": "other", "updates": {}})   # the first one stays
    assert await store.get_effect("in:1/0/f/s") == {"result": "C-1001", "updates": {}}
    _, ann = await conversation(store, ext="web-ann", pid="a1")
    r = await store.record_inbound(Inbound(channel="telegram", external_id="42", platform_message_id="t1",
                                           text="hi", sender_name="Ann T"))
    await store.create_link_code(ann, "123456", at=T0, expires_at=T0 + timedelta(minutes=10))
    assert await store.redeem_link_code("999999", r.customer.id, at=T0) is None
    assert await store.redeem_link_code("123456", r.customer.id, at=T0 + timedelta(minutes=11)) is None
    assert await store.redeem_link_code("123456", r.customer.id, at=T0 + timedelta(minutes=1)) == ann
    assert await store.redeem_link_code("123456", r.customer.id, at=T0 + timedelta(minutes=1)) is None  # used
    assert sorted(await store.identities(ann)) == [("telegram", "42"), ("webchat", "web-ann")]
    assert await store.get_customer(r.customer.id) is None


async def test_public_messages_held_under_one_time_tokens(store: Store) -> None:
    exp = T0 + timedelta(minutes=30)
    hold = dict(place="telegram:-100", user="7", title="Acme fans", expires_at=exp)
    assert await store.hold_public_message("pub_a", text="broken vase AB123456", at=T0, **hold) == ("pub_a", True)
    # a second message of the same person there joins the open token
    assert await store.hold_public_message("pub_b", text="still no answer", at=T0, **hold) == ("pub_a", False)
    other = await store.hold_public_message("pub_c", place="telegram:-100", user="8", title="Acme fans",
                                            text="me too", at=T0, expires_at=exp)
    assert other == ("pub_c", True)
    at = T0 + timedelta(minutes=1)
    assert await store.redeem_public_token("pub_x", user="7", by="7:1", at=at) is None      # unknown
    assert await store.redeem_public_token("pub_a", user="8", by="8:1", at=at) is None      # someone else's
    rec = await store.redeem_public_token("pub_a", user="7", by="7:1", at=at)
    assert rec is not None and rec["texts"] == ["broken vase AB123456", "still no answer"]
    assert rec["title"] == "Acme fans" and rec["place"] == "telegram:-100"
    # the same private message again (a redelivery) gets it again; any other use does not
    assert (await store.redeem_public_token("pub_a", user="7", by="7:1", at=at))["texts"] == rec["texts"]
    assert await store.redeem_public_token("pub_a", user="7", by="7:2", at=at) is None
    # used: the next public message gets a new token
    assert await store.hold_public_message("pub_d", text="again", at=at, **hold) == ("pub_d", True)
    assert await store.redeem_public_token("pub_c", user="8", by="8:1", at=exp) is None      # expired
    # each new token deletes the expired ones: the public text is not kept after the link's life
    late = exp + timedelta(seconds=1)
    await store.hold_public_message("pub_e", place="telegram:-100", user="9", title="", text="x", at=late,
                                    expires_at=late + timedelta(minutes=30))
    for token in ("pub_a", "pub_c", "pub_d"):
        assert await store.get_meta(f"public:{token}") is None
    assert await store.get_meta("publicby:telegram:-100:8") is None
    assert await store.get_meta("public:pub_e") is not None


async def test_desk_thread_by_ts_and_latest_handoff(store: Store) -> None:
    cid, _ = await conversation(store)
    h1 = await store.create_handoff(cid, team="support", reason="asked")
    await store.transition_handoff(h1.id, expected="queued", new="resolved")
    h2 = await store.create_handoff(cid, team="complaints", reason="again")
    assert (await store.latest_handoff(cid)).id == h2.id  # type: ignore[union-attr]
    await store.save_desk_thread("slack", h2.id, channel="C1", ts="1.5", team="complaints", relayed_upto=0)
    assert (await store.desk_thread_by_ts("slack", "C1", "1.5"))["handoff_id"] == h2.id  # type: ignore[index]
    assert await store.desk_thread_by_ts("slack", "C1", "9.9") is None


# -- several instances -------------------------------------------------------------


async def test_instances_claims_and_leases(store: Store) -> None:
    cid, _ = await conversation(store)
    t = time.time() + 60        # seconds since the epoch, after the message was stored
    await store.register_instance("a", host="h", pid=1, now=t + 0)
    await store.register_instance("b", host="h", pid=2, now=t + 0)
    assert await store.live_instances(now=t + 1, ttl=5) == ["a", "b"]
    assert await store.claim_conversation(cid, "a", now=t + 1, ttl=5)
    assert await store.claim_conversation(cid, "a", now=t + 1, ttl=5)          # its own again
    assert not await store.claim_conversation(cid, "b", now=t + 1, ttl=5)      # a is alive
    assert await store.conversation_owner(cid) == "a"
    # a turn fenced by a claim it no longer holds writes nothing
    with pytest.raises(ClaimLost):
        await store.commit_turn(cid, inbound_id=None, replies=[Outbound("x")], flow_state=None, owner="b")
    assert [m for m in await store.history(cid) if m.direction == "out"] == []
    # a stops answering: b's heartbeat finds it dead, and b takes its conversation over
    assert await store.heartbeat("b", now=t + 10)
    assert await store.forget_dead_instances(now=t + 10, ttl=5) == ["a"]
    assert not await store.heartbeat("a", now=t + 10)                            # a must join again
    assert await store.stranded_conversations(now=t + 10, ttl=5, older_than=0) == [cid]
    assert await store.claim_conversation(cid, "b", now=t + 10, ttl=5)
    assert await store.stranded_conversations(now=t + 10, ttl=5, older_than=0) == []   # b holds it now
    await store.release_conversation(cid, "a")                                   # not a's to release
    assert await store.conversation_owner(cid) == "b"
    await store.release_conversation(cid, "b")
    assert await store.conversation_owner(cid) is None
    # leases
    assert await store.take_lease("telegram-poller", "b", now=t + 10, ttl=10)
    assert not await store.take_lease("telegram-poller", "c", now=t + 15, ttl=10)
    assert await store.take_lease("telegram-poller", "c", now=t + 21, ttl=10)    # b's lapsed
    await store.release_lease("telegram-poller", "c")
    assert await store.take_lease("telegram-poller", "b", now=t + 22, ttl=10)
    await store.forget_instance("b")
    assert await store.live_instances(now=t + 22, ttl=5) == []
    # rate counters
    assert [await store.rate_hit("v1", now=t + 100 + i, window=60) for i in range(3)] == [1, 2, 3]
    assert await store.rate_hit("v1", now=t + 161, window=60) == 1                # a new window


async def test_two_stores_on_one_postgresql_never_both_win(pg_url: str) -> None:
    """The claims and the once-only writes hold between two connection pools (two instances)."""
    a, b = await open_store(pg_url), await open_store(pg_url)
    try:
        cid, cust = await conversation(a)
        await a.register_instance("a", host="h", pid=1, now=100.0)
        await b.register_instance("b", host="h", pid=2, now=100.0)
        for _ in range(20):
            wins = await asyncio.gather(a.claim_conversation(cid, "a", now=101.0, ttl=5),
                                        b.claim_conversation(cid, "b", now=101.0, ttl=5))
            assert sum(wins) == 1
            owner = "a" if wins[0] else "b"
            await (a if owner == "a" else b).release_conversation(cid, owner)
        await a.create_ticket(ticket("C-1001", cust, cid))
        alerts = await asyncio.gather(*[s.add_sla_alert("C-1001", "resolve:breached") for s in (a, b) * 5])
        assert sum(alerts) == 1
        refs = await asyncio.gather(*[s.next_sequence("reference") for s in (a, b) * 10])
        assert sorted(refs) == list(range(1000, 1020))
        dupes = await asyncio.gather(*[s.record_inbound(Inbound(channel="telegram", external_id="9",
                                                                platform_message_id="u1", text="hi"))
                                       for s in (a, b) * 3])
        assert sum(not d.duplicate for d in dupes) == 1
    finally:
        await a.close()
        await b.close()


async def test_outbox_turn_and_messages_not_answered(store: Store) -> None:
    """One turn's replies come back together (for connectors that send a turn as one message);
    a message marked not to be answered is stored as processed: nothing ever answers it."""
    cid, _ = await conversation(store)
    first = await store.commit_turn(cid, inbound_id=None, flow_state=None,
                                    replies=[Outbound("a"), Outbound("b"), Outbound("c")])
    await asyncio.sleep(0.002)           # a later turn has a later timestamp
    later = await store.commit_turn(cid, inbound_id=None, flow_state=None, replies=[Outbound("d")])
    turn = await store.outbox_turn(first[0].id)
    assert [i.message.text for i in turn] == ["a", "b", "c"]
    assert {i.channel for i in turn} == {"webchat"} and {i.external_id for i in turn} == {"v1"}
    await store.mark_sent(first[0].id, "p1")
    assert [i.message.text for i in await store.outbox_turn(first[1].id)] == ["b", "c"]
    assert [i.message.text for i in await store.outbox_turn(later[0].id)] == ["d"]

    auto = await store.record_inbound(Inbound(channel="webchat", external_id="v1", platform_message_id="auto1",
                                              text="I am out of office", answer=False))
    assert auto.message.status == "processed" and not auto.duplicate
    assert auto.message.id not in [m.id for m in await store.unprocessed_inbound(cid)]


async def test_a_colliding_write_is_a_conflict_not_a_driver_error(store: Store) -> None:
    """A unique key already taken is StoreConflict (HTTP 409 through the middleware) on both
    backends, and writes nothing."""
    from bot.errors import StoreConflict

    cid, cust = await conversation(store)
    await store.create_ticket(ticket("C-1001", cust, cid))
    with pytest.raises(StoreConflict):
        await store.create_ticket(ticket("C-1001", cust, cid, at=T0 + timedelta(hours=1)))
    assert [t.reference for t in await store.customer_tickets(cust)] == ["C-1001"]
