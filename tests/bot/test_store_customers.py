"""The desk's customer panel and queue-preview operations (bot.storage.ops_customers) on SQLite and
PostgreSQL."""

from __future__ import annotations

from bot.model import Inbound, Outbound
from bot.storage import HandoffSpec, Store


async def _inbound(store: Store, ext: str, n: int, text: str) -> tuple[str, str]:
    r = await store.record_inbound(Inbound(channel="webchat", external_id=ext, platform_message_id=f"{ext}:{n}",
                                           text=text, sender_name="Ann"))
    return r.conversation.id, r.customer.id


async def test_profile_tier_and_tags_are_set_and_cleared_leaving_other_attributes(store: Store) -> None:
    r = await store.record_inbound(Inbound(channel="webchat", external_id="v1", platform_message_id="v1:1",
                                           text="hi", customer_attributes={"locale": "de"}))
    cust = r.customer.id
    got = await store.set_customer_profile(cust, tier="gold", tags=["vip", "late payer"])
    assert got is not None and dict(got.attributes) == {"locale": "de", "tier": "gold", "tags": ["vip", "late payer"]}
    got = await store.set_customer_profile(cust, tags=["vip"])              # tier left as it was
    assert got is not None and dict(got.attributes) == {"locale": "de", "tier": "gold", "tags": ["vip"]}
    got = await store.set_customer_profile(cust, tier=None)                 # removed, not a null
    assert got is not None and dict(got.attributes) == {"locale": "de", "tags": ["vip"]}
    got = await store.set_customer_profile(cust, tags=[])
    assert got is not None and dict(got.attributes) == {"locale": "de"}
    again = await store.get_customer(cust)
    assert again is not None and dict(again.attributes) == {"locale": "de"}
    assert await store.set_customer_profile("cus_nobody", tier="gold") is None


async def test_customer_teams_are_each_conversations_latest_handoff_team(store: Store) -> None:
    cid, cust = await _inbound(store, "v1", 1, "hello")
    assert await store.customer_teams(cust) == [None]
    for team in ("support", "complaints"):
        await store.commit_turn(cid, inbound_id=None, flow_state=None, replies=[],
                                handoff=HandoffSpec(team=team, reason="r", priority=0, context={},
                                                    message=lambda p: Outbound(f"#{p}")))
        h = await store.active_handoff(cid)
        assert h is not None
        await store.transition_handoff(h.id, expected="queued", new="resolved", agent="Anna")
    assert await store.customer_teams(cust) == ["complaints"]
    assert await store.customer_teams("cus_nobody") == []


async def test_last_customer_messages_skip_the_bots_replies(store: Store) -> None:
    cid, _ = await _inbound(store, "v1", 1, "my parcel never came")
    await _inbound(store, "v1", 2, "where is it?")
    await store.commit_turn(cid, inbound_id=None, flow_state=None, replies=[Outbound("Let me check.")])
    other, _ = await _inbound(store, "v2", 1, "hello")
    got = await store.last_customer_messages([cid, other, cid, "conv_none"])
    assert {k: m.text for k, m in got.items()} == {cid: "where is it?", other: "hello"}
    assert got[cid].direction == "in"
