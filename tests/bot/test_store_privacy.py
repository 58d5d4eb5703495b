"""Privacy's store operations (bot.storage.ops_privacy) on SQLite and PostgreSQL: the card notice once,
finding a customer, export, erasure (then a scan of every text column of every table finds nothing of
them, while another customer is untouched), and retention with a controllable clock."""

from __future__ import annotations

import json
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bot import dsr
from bot.model import Attachment, ConversationState, Inbound, Outbound
from bot.storage import Store, Ticket
from bot.storage.sql import All, Op

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)
PNG = b"\x89PNG\r\n\x1a\nsecret-photo-bytes-of-ann"

# what Ann left behind, everywhere; none of it may survive her erasure
ANN = ["ann.erase@shop.example", "Ann Erasable", "4930123456", "my parcel AB654321 is lost",
       "call me back on +49 30 123456", "ann-note-about-her", "secret-photo-bytes-of-ann", "photo-of-ann.png",
       "refund to Ann's account", "she was lovely", "ann-tg-42"]


def _tables() -> Op[list[str]]:
    rows = yield All("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")
    return [r["name"] for r in rows]


def _pg_tables() -> Op[list[str]]:
    rows = yield All("SELECT table_name AS name FROM information_schema.tables WHERE table_schema=current_schema()")
    return [r["name"] for r in rows]


def _dump(tables: list[str]) -> Op[str]:
    out = []
    for t in tables:
        for r in (yield All(f"SELECT * FROM {t}")):
            for v in dict(r).values():
                if isinstance(v, (bytes, bytearray, memoryview)):
                    v = bytes(v).decode("latin-1")
                out.append(f"{t}: {v}")
    return "\n".join(out)


async def everything(store: Store) -> str:
    """Every value of every column of every table, as text (files' bytes included)."""
    try:
        tables = await store._call(_tables, (), {})
    except Exception:  # noqa: BLE001 - PostgreSQL
        tables = await store._call(_pg_tables, (), {})
    return await store._call(_dump, (tables,), {})


async def _customer(store: Store, channel: str, ext: str, text: str, name: str = "") -> tuple[str, str]:
    r = await store.record_inbound(Inbound(channel=channel, external_id=ext, platform_message_id=f"{ext}:{text[:8]}",
                                           text=text, sender_name=name))
    return r.customer.id, r.conversation.id


async def _ann(store: Store) -> tuple[str, str]:
    """Ann on e-mail and (linked) WhatsApp and Telegram, with a file, a handoff on Slack, a ticket,
    a survey, a note, a compensation and a flow state."""
    cus, conv = await _customer(store, "email", "ann.erase@shop.example", "my parcel AB654321 is lost", "Ann Erasable")
    await store.save_media("att_" + "a" * 24, owner="email:ann.erase@shop.example", name="photo-of-ann.png",
                           mime="image/png", size=len(PNG), data=PNG, created_at=T0.isoformat())
    await store.record_inbound(Inbound(channel="email", external_id="ann.erase@shop.example", platform_message_id="p2",
                                       text="here", attachments=(Attachment(kind="image", url="/media/att_" + "a" * 24,
                                                                            name="photo-of-ann.png"),)))
    other_cus, _ = await _customer(store, "whatsapp", "4930123456", "call me back on +49 30 123456")
    await store.create_link_code(cus, "123456", at=T0, expires_at=T0 + timedelta(days=3650))
    assert await store.redeem_link_code("123456", other_cus, at=T0) == cus
    tg_cus, _ = await _customer(store, "telegram", "ann-tg-42", "hello from telegram")
    await store.create_link_code(cus, "654321", at=T0, expires_at=T0 + timedelta(days=3650))
    await store.redeem_link_code("654321", tg_cus, at=T0)
    await store.commit_turn(conv, inbound_id=None, replies=[Outbound("Sorry Ann Erasable")],
                            flow_state={"flow": "complaint", "slots": {"phone": "+49 30 123456"}})
    h = await store.create_handoff(conv, team="support", reason="Ann Erasable wants a call", priority=0,
                                   context={"slots": {"phone": "+49 30 123456"}})
    await store.save_desk_thread("slack", h.id, channel="CSUP", ts="1700000000.000100", team="support",
                                 relayed_upto=0)
    await store.create_ticket(Ticket(reference="C-2001", customer_id=cus, conversation_id=conv, status="received",
                                     category="shipping", severity="high", department="customer_care", team="support",
                                     priority=1, fields={"order_number": "AB654321", "email": "ann.erase@shop.example"},
                                     reasons=("Ann Erasable is furious",), created_at=T0))
    await store.resolve_ticket("C-2001", at=T0 + timedelta(hours=2), agent="Anna Smith", result="refund to Ann's account")
    await store.record_csat("C-2001", score=5, comment="she was lovely", at=T0 + timedelta(hours=3))
    await store.add_note(conv, author="Anna Smith", text="ann-note-about-her", at=T0)
    await store.add_compensation("C-2001", kind="refund", amount=20, currency="EUR", state="granted",
                                 requested_by="Anna Smith", at=T0, note="refund to Ann's account")
    return cus, conv


async def test_the_card_notice_is_queued_once_per_conversation(store: Store) -> None:
    _, conv = await _customer(store, "webchat", "v1", "card **** **** **** 1111")
    assert await store.privacy_notice(conv, text="removed", at=T0) is True
    assert await store.privacy_notice(conv, text="removed", at=T0) is False
    assert await store.privacy_notice("conv_missing", text="removed", at=T0) is False
    out = [m for m in await store.history(conv) if m.direction == "out"]
    assert [(m.text, m.role, m.status) for m in out] == [("removed", "system", "pending")]


async def test_find_a_customer_by_id_email_phone_or_identity(store: Store) -> None:
    cus, _ = await _ann(store)
    bob, _ = await _customer(store, "webchat", "bob-1", "hi")
    assert await store.find_customers(customer_id=cus) == [cus]
    assert await store.find_customers(email="ANN.erase@shop.example ") == [cus]
    assert await dsr.find_customers(store, phone="+49 30 123456") == [cus]
    assert await store.find_customers(channel="telegram", external_id="ann-tg-42") == [cus]
    assert await store.find_customers(channel="webchat", external_id="bob-1") == [bob]
    assert await store.find_customers(email="nobody@shop.example") == []
    assert await store.find_customers() == []


async def test_export_then_erase_leaves_nothing_of_the_customer(store: Store, tmp_path: Path) -> None:
    cus, conv = await _ann(store)
    bob, bob_conv = await _customer(store, "webchat", "bob-1", "bob's own words", "Bob Keeper")
    await store.save_media("att_" + "b" * 24, owner="webchat:bob-1", name="bob.png", mime="image/png", size=3,
                           data=b"bob", created_at=T0.isoformat())
    before = await everything(store)
    assert [v for v in ANN if v not in before] == []

    counts = await dsr.export_customer(store, cus, tmp_path / "ann.zip", actor="cli:test")
    assert counts["identities"] == 3 and counts["conversations"] == 3 and counts["files"] == 1
    with zipfile.ZipFile(tmp_path / "ann.zip") as z:
        data = json.loads(z.read("customer.json"))
        [photo] = [n for n in z.namelist() if n.startswith("media/")]
        assert z.read(photo) == PNG
    assert data["customer"]["display_name"] == "Ann Erasable"
    assert {i["channel"] for i in data["identities"]} == {"email", "whatsapp", "telegram"}
    assert data["surveys"] == [{"ticket": "C-2001", "score": 5, "comment": "she was lovely",
                                "at": (T0 + timedelta(hours=3)).isoformat()}]
    assert [n["text"] for n in data["notes"]] == ["ann-note-about-her"]
    assert data["compensations"][0]["note"] == "refund to Ann's account"
    assert data["tickets"][0]["fields"]["order_number"] == "AB654321"
    assert [t["ts"] for t in data["desk_threads"]] == ["1700000000.000100"]
    assert await store.customer_desk_threads(cus) == [
        {**data["desk_threads"][0]}]
    assert "my parcel AB654321 is lost" in [m["text"] for m in data["messages"]]

    erased = await dsr.erase_customer(store, cus, actor="cli:test")
    assert erased["identities"] == 3 and erased["messages"] >= 4 and erased["media"] == 1
    assert erased["notes"] == 1 and erased["desk_threads"] == 1 and erased["tickets_anonymised"] == 1
    after = await everything(store)
    left = [v for v in ANN if v in after]
    assert not left, f"still in the database after erasure: {left}"
    # the figures stay: the ticket (times, CSAT score), the conversations and the handoff, anonymous
    t = await store.get_ticket("C-2001")
    assert t is not None and t.csat == 5 and t.resolved_at is not None and t.fields == {} and t.result is None
    assert t.category == "shipping" and t.customer_id == cus
    assert len(await store.customer_conversations(cus)) == 3
    assert await store.find_customers(email="ann.erase@shop.example") == []
    assert await store.media_data("att_" + "a" * 24) is None
    # Bob is untouched
    assert "bob's own words" in after and "Bob Keeper" in after and await store.media_data("att_" + "b" * 24) == b"bob"
    assert [m.text for m in await store.history(bob_conv)] == ["bob's own words"]
    assert await store.find_customers(channel="webchat", external_id="bob-1") == [bob]
    # both recorded, with counts only
    entries = await store.audit_log(customer_id=cus)
    assert [(e.actor, e.action) for e in entries] == [("cli:test", "export"), ("cli:test", "erase")]
    assert not [v for v in ANN if v in json.dumps([e.to_dict() for e in entries])]
    assert await store.erase_customer("cus_missing") is None
    assert await store.customer_data("cus_missing") is None


async def test_retention_by_age_keeps_the_figures(store: Store) -> None:
    old_cus, old = await _customer(store, "webchat", "old-1", "old words +44 20 7946 0958", "Olga Old")
    await store.record_inbound(Inbound(channel="webchat", external_id="old-1", platform_message_id="o2", text="file",
                                       attachments=(Attachment(kind="image", url="/media/att_" + "c" * 24),)))
    await store.save_media("att_" + "c" * 24, owner="webchat:old-1", name="old.png", mime="image/png", size=3,
                           data=b"old", created_at=T0.isoformat())
    await store.save_media("att_" + "d" * 24, owner="webchat:gone", name="never-sent.png", mime="image/png", size=3,
                           data=b"zzz", created_at=T0.isoformat())
    await store.create_ticket(Ticket(reference="C-3001", customer_id=old_cus, conversation_id=old, status="received",
                                     category="product", severity="normal", department="customer_care", team=None, priority=0,
                                     fields={"order_number": "AB111111"}, created_at=T0))
    await store.resolve_ticket("C-3001", at=T0, agent="Anna", result="replaced it")
    await store.record_csat("C-3001", score=4, comment="ok I guess", at=T0)
    await store.set_conversation_state(old, ConversationState.CLOSED)
    _, live = await _customer(store, "webchat", "new-1", "still talking")
    now = datetime.now(timezone.utc)
    # nothing is old yet by a clock at T0 ...
    assert await store.expire_message_texts(T0 - timedelta(days=1)) == 0
    # ... a clock a year on: the closed conversation's texts go, the open one stays
    later = now + timedelta(days=1)
    assert await store.expire_message_texts(later) == 2
    assert [m.text for m in await store.history(old)] == ["[removed]", "[removed]"]
    assert [m.text for m in await store.history(live)] == ["still talking"]
    t = await store.get_ticket("C-3001")
    assert t is not None and t.csat == 4 and t.csat_comment is None and t.fields == {} and t.resolved_at == T0
    assert await store.expire_message_texts(later) == 0        # once
    assert await store.expire_attachments(later) == 2          # the conversation's file and an upload never sent
    assert await store.media_data("att_" + "c" * 24) is None and await store.media_data("att_" + "d" * 24) is None
    counts = await store.expire_conversations(later)
    assert counts["conversations"] == 1 and counts["customers_anonymised"] == 1
    assert await store.history(old) == [] and (await store.get_ticket("C-3001")).csat == 4  # type: ignore[union-attr]
    assert await store.find_customers(channel="webchat", external_id="old-1") == []
    assert (await store.get_customer(old_cus)).display_name == ""  # type: ignore[union-attr]
    assert [m.text for m in await store.history(live)] == ["still talking"]
    assert "Olga Old" not in await everything(store)
    await store.audit("system", "retention", at=T0 - timedelta(days=30))
    await store.audit("system", "retention", at=T0)
    assert await store.expire_audit(T0 - timedelta(days=1)) == 1
    assert [e.at for e in await store.audit_log()] == [T0]
