"""The desk's working records and the audit log (bot.storage.ops_work) on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bot.model import Inbound
from bot.storage import Store

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)


async def _conversation(store: Store, ext: str = "v1") -> tuple[str, str]:
    r = await store.record_inbound(Inbound(channel="webchat", external_id=ext, platform_message_id=f"{ext}:1",
                                           text="my parcel never came", sender_name="Ann"))
    return r.conversation.id, r.customer.id


async def test_notes_are_kept_per_conversation_in_order(store: Store) -> None:
    cid, _ = await _conversation(store)
    other, _ = await _conversation(store, "v2")
    assert await store.notes_of(cid) == []
    n1 = await store.add_note(cid, author="Anna Smith", text="called the courier", at=T0, handoff_id="h_1",
                              via="web")
    await store.add_note(other, author="Bob", text="not this one", at=T0)
    n2 = await store.add_note(cid, author="Bob", text="refund agreed", at=T0 + timedelta(minutes=1), via="slack")
    got = await store.notes_of(cid)
    assert got == [n1, n2]
    assert got[0].to_dict() | {"id": ""} == {"id": "", "conversation_id": cid, "handoff_id": "h_1",
                                             "author": "Anna Smith", "text": "called the courier", "via": "web",
                                             "created_at": T0.isoformat()}


async def test_unread_counts_follow_what_each_agent_read(store: Store) -> None:
    cid, _ = await _conversation(store)
    assert await store.unread_counts("Anna", [cid]) == {cid: 1}      # never read: every customer message
    conv = await store.get_conversation(cid)
    assert conv is not None
    await store.mark_read("Anna", cid, at=datetime.now(timezone.utc) + timedelta(seconds=1))
    assert await store.unread_counts("Anna", [cid]) == {cid: 0}
    assert await store.unread_counts("Bob", [cid]) == {cid: 1}       # per agent
    await store.mark_read("Anna", cid, at=T0)                        # never moves back
    assert await store.unread_counts("Anna", [cid]) == {cid: 0}
    assert await store.unread_counts("Anna", []) == {}


async def test_compensations_granted_or_decided_once(store: Store) -> None:
    from bot.storage import Ticket
    cid, cust = await _conversation(store)
    await store.create_ticket(Ticket(reference="C-1001", customer_id=cust, conversation_id=cid, status="received",
                                     category="shipping", severity="high", department="logistics", team="support",
                                     priority=2, created_at=T0))
    ok = await store.add_compensation("C-1001", kind="refund", amount=20, currency="EUR", state="granted",
                                      requested_by="Anna", at=T0)
    assert (ok.state, ok.decided_by, ok.decided_at) == ("granted", "Anna", T0)
    big = await store.add_compensation("C-1001", kind="refund", amount=250.5, currency="EUR", state="pending",
                                       requested_by="Anna", at=T0 + timedelta(minutes=1), note="broken twice")
    assert [c.id for c in await store.pending_compensations()] == [big.id]
    done = await store.decide_compensation(big.id, approve=True, by="Sam", at=T0 + timedelta(hours=1))
    assert done is not None and (done.state, done.decided_by, done.note, done.amount) == (
        "approved", "Sam", "broken twice", 250.5)
    # decided once: a second decision (another supervisor at the same moment) changes nothing
    assert await store.decide_compensation(big.id, approve=False, by="Kim", at=T0 + timedelta(hours=2)) is None
    assert await store.decide_compensation("cmp_nope", approve=True, by="Sam", at=T0) is None
    assert [c.state for c in await store.compensations_of("C-1001")] == ["granted", "approved"]
    assert await store.pending_compensations() == []
    assert done.to_dict()["ticket"] == "C-1001"


async def test_the_audit_log_is_appended_and_filtered(store: Store) -> None:
    a = await store.audit("agent:Anna", "login", at=T0)
    b = await store.audit("agent:Sam", "approve", at=T0 + timedelta(hours=1), customer_id="cus_1", target="C-1001",
                          detail={"amount": 250})
    c = await store.audit("cli", "export", at=T0 + timedelta(hours=2), customer_id="cus_1")
    assert await store.audit_log() == [a, b, c]
    assert await store.audit_log(since=T0 + timedelta(minutes=30)) == [b, c]
    assert await store.audit_log(actor="agent:Sam") == [b]
    assert await store.audit_log(customer_id="cus_1", limit=1) == [b]
    assert b.detail == {"amount": 250} and b.to_dict()["target"] == "C-1001"
