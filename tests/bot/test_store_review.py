"""The review of a complaint's resolution (bot.storage.ops_review) on SQLite and PostgreSQL:
proposed, decided once, sent back and proposed again, told once; the report's rows."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bot.model import Inbound
from bot.storage import Store, Ticket

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)


async def _ticket(store: Store, ref: str = "C-1001", ext: str = "v1", category: str = "shipping") -> Ticket:
    r = await store.record_inbound(Inbound(channel="webchat", external_id=ext, platform_message_id=f"{ext}:1",
                                           text="my parcel never came", sender_name="Ann"))
    return await store.create_ticket(Ticket(reference=ref, customer_id=r.customer.id,
                                            conversation_id=r.conversation.id, status="received",
                                            category=category, severity="high", department="logistics",
                                            team="complaints", priority=2, created_at=T0))


async def test_a_proposal_is_decided_once_and_sent_back_then_approved(store: Store) -> None:
    t = await _ticket(store)
    assert (t.review_state, t.proposed_result, t.communicated_at) == (None, None, None)
    p = await store.propose_review("C-1001", result="refund 40 EUR", by="Anna", at=T0)
    assert p is not None and (p.review_state, p.proposed_result, p.proposed_by, p.proposed_at) == (
        "pending", "refund 40 EUR", "Anna", T0)
    # one proposal at a time
    assert await store.propose_review("C-1001", result="other", by="Bob", at=T0) is None
    assert [x.reference for x in await store.tickets_in_review()] == ["C-1001"]

    back = await store.decide_review("C-1001", approve=False, by="Sue", at=T0 + timedelta(hours=1),
                                     note="offer a replacement too")
    assert back is not None and (back.review_state, back.reviewed_by, back.review_note) == (
        "returned", "Sue", "offer a replacement too")
    # decided once: another supervisor's approval at the same moment changes nothing
    assert await store.decide_review("C-1001", approve=True, by="Kim", at=T0 + timedelta(hours=1)) is None
    assert [x.review_state for x in await store.tickets_in_review(["returned"])] == ["returned"]
    assert await store.tickets_in_review(["pending"]) == []

    again = await store.propose_review("C-1001", result="refund 40 EUR and a new lamp", by="Anna",
                                       at=T0 + timedelta(hours=2))
    assert again is not None and again.review_state == "pending" and again.reviewed_by is None
    assert again.review_note == "offer a replacement too"          # the reviewer sees why it came back
    ok = await store.decide_review("C-1001", approve=True, by="Sue", at=T0 + timedelta(hours=3))
    assert ok is not None and (ok.review_state, ok.reviewed_by, ok.reviewed_at) == (
        "approved", "Sue", T0 + timedelta(hours=3))
    # approved but not told: no new proposal replaces it, and it is still listed
    assert await store.propose_review("C-1001", result="x", by="Bob", at=T0) is None
    assert [x.reference for x in await store.tickets_in_review()] == ["C-1001"]

    assert await store.mark_communicated("C-1001", at=T0 + timedelta(hours=4))
    assert not await store.mark_communicated("C-1001", at=T0 + timedelta(hours=5))      # once
    told = await store.get_ticket("C-1001")
    assert told is not None and told.communicated_at == T0 + timedelta(hours=4)
    assert told.review()["communicated_at"] == (T0 + timedelta(hours=4)).isoformat()
    assert await store.tickets_in_review() == []
    assert await store.decide_review("C-nope", approve=True, by="Sue", at=T0) is None


async def test_a_resolved_ticket_takes_no_proposal(store: Store) -> None:
    await _ticket(store)
    await store.resolve_ticket("C-1001", at=T0, agent="Anna", result="refunded")
    assert await store.propose_review("C-1001", result="refund", by="Anna", at=T0) is None
    assert await store.propose_review("C-9999", result="refund", by="Anna", at=T0) is None


async def test_the_reports_review_and_compensation_rows(store: Store) -> None:
    await _ticket(store)
    await _ticket(store, "C-1002", "v2", category="product")
    await store.propose_review("C-1001", result="refund", by="Anna", at=T0 + timedelta(minutes=5))
    await store.add_compensation("C-1002", kind="refund", amount=30, currency="EUR", state="granted",
                                 requested_by="Anna", at=T0 + timedelta(minutes=6))
    since, until = T0.isoformat(), (T0 + timedelta(days=1)).isoformat()
    [row] = await store.report_reviews(since, until)
    assert (row["reference"], row["review_state"], row["category"]) == ("C-1001", "pending", "shipping")
    [c] = await store.report_compensations(since, until)
    assert (c["kind"], c["amount"], c["state"], c["category"]) == ("refund", 30, "granted", "product")
    assert await store.report_reviews(until, until) == []
