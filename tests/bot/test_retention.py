"""The retention job (bot.retention) with a controllable clock: once per cluster (a lease), when due
across restarts, keeping the figures, recorded in the audit log. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bot.config import parse_config
from bot.model import ConversationState, Inbound
from bot.retention import Retention
from bot.storage import Store, Ticket
from conftest import FakeClock

DAY = timedelta(days=1)


async def test_retention_runs_once_per_cluster_when_due(store: Store) -> None:
    cfg = parse_config("privacy: {retention: {message_texts: 30d, attachments: 30d, closed_conversations: 365d, "
                       "audit: 3y, check_every: 1h}}".replace("3y", "1095d")).privacy.retention
    r = await store.record_inbound(Inbound(channel="webchat", external_id="v1", platform_message_id="m1",
                                           text="my iban is DE89 3704 0044 0532 0130 00", sender_name="Zoe"))
    await store.create_ticket(Ticket(reference="C-4001", customer_id=r.customer.id, conversation_id=r.conversation.id,
                                     status="received", category="payment", severity="normal",
                                     department="customer_care", team=None, priority=0, created_at=r.message.created_at))
    await store.resolve_ticket("C-4001", at=r.message.created_at, agent="Anna", result="refunded")
    await store.record_csat("C-4001", score=5, comment="thanks Anna", at=r.message.created_at)
    await store.set_conversation_state(r.conversation.id, ConversationState.CLOSED)
    clock = FakeClock(datetime.now(timezone.utc))
    a = Retention(store, cfg, holder="a", clock=clock)
    b = Retention(store, cfg, holder="b", clock=clock)            # another instance of the cluster
    first = await a.run_if_due()
    assert first == {"message_texts": 0, "attachments": 0, "conversations": 0, "customers_anonymised": 0,
                     "audit_entries": 0}
    assert await b.run_if_due() is None                           # a holds the lease
    assert await a.run_if_due() is None                           # not due again within check_every
    clock.now += 31 * DAY
    restarted = Retention(store, cfg, holder="a", clock=clock)    # after a restart: the last run is in the database
    done = await restarted.run_if_due()
    assert done is not None and done["message_texts"] == 1 and done["conversations"] == 0
    assert [m.text for m in await store.history(r.conversation.id)] == ["[removed]"]
    clock.now += 400 * DAY
    done = await b.run_if_due()           # a was silent longer than its lease: b takes the job over
    assert await a.run_if_due() is None
    assert done is not None and done["conversations"] == 1 and done["customers_anonymised"] == 1
    t = await store.get_ticket("C-4001")
    assert t is not None and t.csat == 5 and t.resolved_at is not None and t.csat_comment is None   # figures kept
    runs = [e for e in await store.audit_log() if e.action == "retention"]
    assert [e.actor for e in runs] == ["system"] * 3 and runs[1].detail["message_texts"] == 1
    clock.now += 2000 * DAY
    done = await b.run_if_due()
    assert done is not None and done["audit_entries"] == 3
