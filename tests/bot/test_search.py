"""The desk's search over past conversations (bot.storage.ops_search), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from bot.model import Inbound, Outbound, utcnow
from bot.storage import HandoffSpec, Store, Ticket


async def converse(store: Store, channel: str, ext: str, name: str, texts: list[str],
                   flow_state: dict | None = None) -> str:
    """A conversation of ``texts`` from one customer, each answered; its id."""
    cid = ""
    for i, text in enumerate(texts):
        r = await store.record_inbound(Inbound(channel, ext, f"{ext}:{i}", text, sender_name=name))
        cid = r.conversation.id
        await store.commit_turn(cid, inbound_id=r.message.id, replies=[Outbound("Noted.")],
                                flow_state=flow_state or {"flow": "faq"})
    return cid


async def ticket(store: Store, cid: str, ref: str, fields: dict) -> None:
    conv = await store.get_conversation(cid)
    assert conv is not None
    await store.create_ticket(Ticket(reference=ref, customer_id=conv.customer_id, conversation_id=cid,
                                     status="received", category="shipping", severity="normal",
                                     department="care", team="complaints", priority=1, created_at=utcnow(),
                                     fields=fields))


async def ids(store: Store, q: str, limit: int = 20) -> list[str]:
    return [r["conversation_id"] for r in await store.search(q, limit=limit)]


async def test_search_by_reference_order_name_contact_and_words(store: Store) -> None:
    ada = await converse(store, "webchat", "v_ada", "Ada Lovelace", ["My parcel never arrived", "AB123456"],
                         flow_state={"flow": "complaint", "slots": {"order_number": "AB123456"}})
    await ticket(store, ada, "C-1042", {"order_number": "AB123456", "category": "shipping"})
    bob = await converse(store, "email", "bob@example.com", "Bob Jones", ["The kettle leaks badly"])
    wa = await converse(store, "whatsapp", "491512345678", "Wanda", ["hola, the zip broke"])

    assert await ids(store, "C-1042") == [ada]
    assert await ids(store, "c1042") == [ada]              # as customers and agents type it
    assert await ids(store, "C-9999") == []
    assert await ids(store, "ab123456") == [ada]           # order number, any case
    assert "details" in (await store.search("AB123456"))[0]["matched"]
    assert await ids(store, "lovelace") == [ada]
    assert await ids(store, "BOB@example.com") == [bob]
    assert (await store.search("bob@example.com"))[0]["matched"] == ["email"]
    assert await ids(store, "+49 151 2345678") == [wa]     # spaces and + do not matter
    assert await ids(store, "KETTLE leaks") == [bob]
    [hit] = await store.search("never arrived")
    assert hit["matched"] == ["text"] and hit["snippet"] == "My parcel never arrived"
    assert await ids(store, "x") == []                     # too short to mean anything

    [row] = await store.search("C-1042")
    assert row["customer"]["name"] == "Ada Lovelace" and row["channel"] == "webchat"
    assert row["ticket"]["reference"] == "C-1042" and row["ticket"]["order_number"] == "AB123456"
    assert row["ticket"]["csat"] is None and row["handoff"] is None
    assert row["last_message"]["text"] == "Noted." and row["state"] == "bot"


async def test_results_carry_the_latest_handoff_and_csat(store: Store) -> None:
    cid = await converse(store, "webchat", "v_c", "Cleo", ["broken mug"])
    await ticket(store, cid, "C-1001", {"order_number": "CD222222"})
    r = await store.record_inbound(Inbound("webchat", "v_c", "v_c:h", "a person please"))
    await store.commit_turn(cid, inbound_id=r.message.id, replies=[Outbound("connecting")], flow_state=None,
                            handoff=HandoffSpec(team="complaints", reason="asked", priority=1, context={},
                                                message=lambda p: Outbound(f"number {p}")))
    h = await store.active_handoff(cid)
    assert h is not None
    await store.transition_handoff(h.id, expected="queued", new="resolved")
    now = utcnow()
    await store.resolve_ticket("C-1001", at=now, agent="Anna", result="refunded",
                               follow_up_at=now + timedelta(days=1))
    await store.record_csat("C-1001", score=4, comment="quick", at=now)
    [row] = await store.search("cd222222")
    assert row["handoff"] == {"id": h.id, "state": "resolved", "team": "complaints", "agent": None}
    assert (row["ticket"]["status"], row["ticket"]["csat"], row["ticket"]["csat_comment"]) == ("resolved", 4, "quick")

    rec = await store.conversation_record(cid)
    assert rec is not None
    assert [m["text"] for m in rec["transcript"]][:2] == ["broken mug", "Noted."]
    assert rec["tickets"][0]["csat"] == 4 and rec["tickets"][0]["result"] == "refunded"
    assert [x["id"] for x in rec["handoffs"]] == [h.id] and rec["customer"]["name"] == "Cleo"
    assert await store.conversation_record("conv_nope") is None


async def test_like_wildcards_in_the_query_are_literal(store: Store) -> None:
    plain = await converse(store, "webchat", "v1", "Dan", ["I paid 100 dollars"])
    pct = await converse(store, "webchat", "v2", "Eve", ["I want 100% of it back"])
    under = await converse(store, "webchat", "v3", "Fay", ["my code is A_B and a\\b"])
    await converse(store, "webchat", "v4", "Gus", ["AxB is not it"])
    assert await ids(store, "100%") == [pct]
    assert plain in await ids(store, "100")
    assert await ids(store, "a_b") == [under]
    assert await ids(store, "%") == await ids(store, "%%") == []       # not "everything"
    assert await ids(store, "a\\b") == [under]
    assert await ids(store, "__") == []


async def test_newest_first_and_bounded(store: Store) -> None:
    made = [await converse(store, "webchat", f"v{i}", f"Hal {i}", [f"refund please {i}"]) for i in range(7)]
    assert await ids(store, "refund please") == made[::-1]
    assert await ids(store, "refund please", limit=3) == made[::-1][:3]
    assert len(await ids(store, "refund please", limit=500)) == 7       # capped at 50, not refused


async def test_digits_find_a_phone_or_an_order_number(store: Store) -> None:
    wa = await converse(store, "whatsapp", "441234567890", "Ivy", ["hello"])
    web = await converse(store, "webchat", "v9", "Jo", ["order 99887766 is late"])
    await ticket(store, web, "C-1005", {"order_number": "99887766"})
    assert await ids(store, "44 1234 567890") == [wa]
    assert await ids(store, "99887766") == [web]
