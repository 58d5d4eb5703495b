"""Complaint tickets: classification and routing rules, the reference at once, status on request.

Time is a clock the tests set (never slept); storage is a real SQLite store in memory.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
import pytest

from bot.config import ComplaintsConfig, parse_config
from bot.errors import ConfigError
from bot.model import Inbound
from bot.storage import Store
from conftest import FakeClock
from flows.engine import ActionContext
from handoff.sla import run_clock
from handoff.tickets import Tickets, classify, ticket_actions

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)

RULES = ComplaintsConfig.model_validate({
    "default_department": "care",
    "departments": {
        "care": {"name": "Customer Care"},
        "logistics": {"name": "Logistics", "team": "logistics"},
        "billing": {"name": "Billing", "team": "billing"},
        "legal": {"name": "Legal", "team": "legal"},
    },
    "rules": [
        {"when": {"keywords": ["lawyer", "sue", "court"]}, "department": "legal", "severity": "critical"},
        {"when": {"category": ["shipping", "delivery"]}, "department": "logistics"},
        {"when": {"category": "payment"}, "department": "billing", "priority": 1},
        {"when": {"tier": "gold"}, "priority": 2},
        {"when": {"slots": {"product": "oven"}}, "severity": "high"},
    ],
    "sla": {"resolve": "8h"},
})


@pytest.fixture
def store(memory_store: Store) -> Store:
    return memory_store


# -- classification -----------------------------------------------------------------------------


@pytest.mark.parametrize(("category", "text", "tier", "fields", "department", "severity", "priority"), [
    ("shipping", "my parcel is late", None, {}, "logistics", "normal", 1),
    ("payment", "charged twice", None, {}, "billing", "normal", 2),
    ("product", "it broke after a day", None, {}, "care", "normal", 1),
    ("shipping", "I'll see you in court over this parcel", None, {}, "legal", "critical", 3),
    ("product", "the door is loose", "gold", {}, "care", "normal", 3),
    ("product", "the door is loose", None, {"product": "OVEN"}, "care", "high", 2),
    ("product", "it broke", None, {"severity": "low"}, "care", "low", 0),
])
def test_routing_rules(category: str, text: str, tier: str | None, fields: dict, department: str,
                       severity: str, priority: int) -> None:
    c = classify(RULES, category=category, fields=fields, text=text, tier=tier)
    assert (c.department, c.severity, c.priority) == (department, severity, priority)


def test_urgency_and_repeats_raise_the_severity_with_reasons() -> None:
    calm = classify(RULES, category="product", fields={}, text="the lid is scratched")
    angry = classify(RULES, category="product", fields={}, text="THIRD TIME the lid is scratched!!")
    repeat = classify(RULES, category="product", fields={}, text="the lid is scratched", repeats=2)
    assert calm.severity == "normal" and calm.reasons == ()
    assert angry.severity == "high" and angry.reasons == ("elevated urgency (third time, !!)",)
    assert repeat.severity == "high" and repeat.reasons == ("repeat complaint (2 earlier about product)",)
    assert angry.priority == repeat.priority > calm.priority
    furious = classify(RULES, category="product", fields={}, text="THIRD TIME!! This is a SCAM, I'm livid")
    assert furious.severity == "critical" and furious.reasons[0].startswith("high urgency")


def test_first_rule_with_a_department_wins_and_every_decision_is_explained() -> None:
    c = classify(RULES, category="payment", fields={}, text="my lawyer says the double charge is illegal",
                 tier="gold")
    assert c.department == "legal" and c.severity == "critical"
    assert c.reasons == ("elevated urgency (mentions a lawyer)", "rule 1: department legal, severity critical",
                         "rule 3: priority +1", "rule 4: priority +2")
    assert c.priority == 3 + 1 + 2


def test_complaints_config_is_validated() -> None:
    with pytest.raises(ValueError, match="rule 1: department 'nope' is not in departments"):
        ComplaintsConfig.model_validate({"rules": [{"when": {}, "department": "nope"}]})
    with pytest.raises(ValueError, match="not a duration like 30m, 2h or 3d"):
        ComplaintsConfig.model_validate({"sla": {"resolve": "soon"}})
    assert ComplaintsConfig.model_validate({"sla": {"resolve": "90m"}}).sla.resolve == 5400
    assert ComplaintsConfig.model_validate({"repeat_window": "2d"}).repeat_window == 172800
    with pytest.raises(ConfigError, match="team 'ghosts' is not in handoff.teams"):
        parse_config("complaints:\n  departments:\n    care: {name: Care, team: ghosts}\n"
                     "  default_department: care\n")


# -- opening and status -------------------------------------------------------------------------


async def _customer(store: Store, ext: str, text: str = "hello") -> ActionContext:
    r = await store.record_inbound(Inbound("webchat", ext, f"{ext}-{text[:8]}", text))
    return ActionContext(r.conversation.id, "webchat", {"id": r.customer.id}, {})


async def test_a_ticket_is_opened_with_a_reference_department_and_deadline(store: Store) -> None:
    clock = FakeClock(T0)
    actions = ticket_actions(Tickets(store, RULES, clock=clock))
    ctx = await _customer(store, "ada", "my parcel never arrived")
    ctx = ActionContext(ctx.conversation_id, "webchat", ctx.customer,
                        {"category": "shipping", "order_number": "AB123456", "photos": None})
    assert await actions["create_reference"](ctx) == "C-1001"
    assert ctx.updates == {"ticket_department": "Logistics", "ticket_severity": "normal",
                           "ticket_due": "Mon 23 Nov, 17:00 UTC"}          # 09:00 + resolve 8h
    t = await store.get_ticket("c-1001")
    assert t is not None and t.team == "logistics" and t.status == "received"
    assert t.fields == {"category": "shipping", "order_number": "AB123456"} and t.created_at == T0
    assert t.summary()["reasons"] == ["rule 2: department logistics"]


async def test_a_second_complaint_of_the_same_category_is_a_repeat(store: Store) -> None:
    clock = FakeClock(T0)
    tickets = Tickets(store, RULES, clock=clock)
    ctx = await _customer(store, "bo", "late again")
    first = ActionContext(ctx.conversation_id, "webchat", ctx.customer, {"category": "product"})
    assert (await tickets.open(first)).severity == "normal"
    clock.now = T0 + timedelta(days=3)
    assert (await tickets.open(first)).severity == "high"
    clock.now = T0 + timedelta(days=90)           # outside the 30-day window: not a repeat
    assert (await tickets.open(first)).severity == "normal"


async def test_status_on_request_only_for_the_customers_own_tickets(store: Store) -> None:
    clock = FakeClock(T0)
    tickets = Tickets(store, RULES, clock=clock)
    status = ticket_actions(tickets)["ticket_status"]
    ada = await _customer(store, "ada", "my parcel")
    eve = await _customer(store, "eve", "hi")
    ref = (await tickets.open(ActionContext(ada.conversation_id, "webchat", ada.customer,
                                            {"category": "shipping"}))).reference

    def asking(who: ActionContext, text: str) -> ActionContext:
        return ActionContext(who.conversation_id, "webchat", who.customer, {}, text)

    mine = await status(asking(ada, f"what's the status of {ref.lower()}?"))
    assert mine == (f"Your complaint {ref} about shipping: it is waiting for our Logistics team. "
                    "We aim to resolve it by Mon 23 Nov, 17:00 UTC.")
    assert await status(asking(ada, "any news on my complaint")) == mine
    # another customer quoting the same reference learns nothing about it
    theirs = await status(asking(eve, f"status of {ref}"))
    assert theirs.startswith(f"I couldn't find a complaint {ref} under your name") and "shipping" not in theirs
    assert await status(asking(eve, "my complaints")) == "You have no open complaints with us."


async def test_status_names_the_agent_who_claimed_it(store: Store) -> None:
    tickets = Tickets(store, RULES, clock=FakeClock(T0))
    ada = await _customer(store, "ada", "broken")
    t = await tickets.open(ActionContext(ada.conversation_id, "webchat", ada.customer, {"category": "product"}))
    h = await store.create_handoff(ada.conversation_id, team="support", reason="complaint")
    assert await store.transition_handoff(h.id, expected="queued", new="claimed", agent="Anna Smith")
    text = await tickets.status(ActionContext(ada.conversation_id, "webchat", ada.customer, {},
                                              t.reference))
    assert "Anna from our Customer Care team is working on it" in text



async def test_satisfaction_is_stored_once_resolved_and_only_by_the_owner(store: Store) -> None:
    clock = FakeClock(T0)
    tickets = Tickets(store, RULES, clock=clock)
    record = ticket_actions(tickets)["record_csat"]
    ada = await _customer(store, "ada", "broken")
    eve = await _customer(store, "eve", "hi")
    t = await tickets.open(ActionContext(ada.conversation_id, "webchat", ada.customer, {"category": "product"}))
    clock.now = T0 + timedelta(hours=5)
    done = await tickets.resolve(ada.conversation_id, agent="Anna Smith", result="replaced")
    assert done is not None and done.resolved_at == clock.now and done.status == "resolved"
    assert await tickets.resolve(ada.conversation_id, agent="Anna Smith", result="again") is None  # no open one

    def rating(who: ActionContext, **slots: object) -> ActionContext:
        return ActionContext(who.conversation_id, "webchat", who.customer, {"reference": t.reference, **slots})

    assert await record(rating(eve, score="1")) == "skipped"          # not eve's ticket
    assert await record(rating(ada, score="9")) == "skipped"
    assert await record(rating(ada, score="five")) == "skipped"
    assert (await store.get_ticket(t.reference)).csat is None  # type: ignore[union-attr]
    assert await record(rating(ada, score="5", comment="  great  ")) == "recorded"
    stored = await store.get_ticket(t.reference)
    assert stored is not None and (stored.csat, stored.csat_comment, stored.result) == (5, "great", "replaced")


async def test_follow_up_is_due_after_resolving_and_reopen_is_the_owners(store: Store) -> None:
    clock = FakeClock(T0)
    tickets = Tickets(store, RULES, clock=clock)
    reopen = ticket_actions(tickets)["reopen_ticket"]
    ada = await _customer(store, "ada", "broken")
    eve = await _customer(store, "eve", "hi")
    t = await tickets.open(ActionContext(ada.conversation_id, "webchat", ada.customer, {"category": "product"}))
    assert await store.due_followups(T0 + timedelta(days=30)) == []          # not resolved yet
    await tickets.resolve(ada.conversation_id, agent="Anna Smith", result=None)
    due = T0 + timedelta(days=3)                                              # sla.follow_up default
    assert await store.due_followups(due - timedelta(seconds=1)) == []
    assert [x.reference for x in await store.due_followups(due)] == [t.reference]

    slots = {"reference": t.reference}
    assert await reopen(ActionContext(eve.conversation_id, "webchat", eve.customer, slots)) == "skipped"
    assert await reopen(ActionContext(ada.conversation_id, "webchat", ada.customer, slots)) == "reopened"
    again = await store.get_ticket(t.reference)
    assert again is not None and (again.status, again.reopened, again.resolved_at) == ("reopened", 1, None)
    assert await store.due_followups(due) == []                               # nothing to ask any more
    assert await reopen(ActionContext(ada.conversation_id, "webchat", ada.customer, slots)) == "skipped"


# -- business hours -----------------------------------------------------------------------------

BERLIN_9_TO_5 = ComplaintsConfig.model_validate(
    {"business_hours": {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00",
                        "timezone": "Europe/Berlin"}}).business_hours


@pytest.mark.parametrize(("start", "hours", "due"), [
    # Monday 10:00 Berlin (09:00 UTC) + 2 h: the same day, 12:00 Berlin
    ("2026-11-23T09:00:00+00:00", 2, "2026-11-23T11:00:00+00:00"),
    # Friday 16:00 Berlin + 2 h: one hour on Friday, one on Monday -> Monday 10:00 Berlin
    ("2026-11-27T15:00:00+00:00", 2, "2026-11-30T09:00:00+00:00"),
    # Sunday noon + 1 h: the clock starts Monday 09:00 Berlin
    ("2026-11-29T11:00:00+00:00", 1, "2026-11-30T09:00:00+00:00"),
    # Tuesday 20:00 Berlin (after hours) + 24 h: three business days -> Friday 17:00 Berlin
    ("2026-11-24T19:00:00+00:00", 24, "2026-11-27T16:00:00+00:00"),
])
def test_deadlines_count_business_hours_only(start: str, hours: int, due: str) -> None:
    assert run_clock(datetime.fromisoformat(start), hours * 3600, BERLIN_9_TO_5) == datetime.fromisoformat(due)
    assert run_clock(datetime.fromisoformat(start), 3600, None) == datetime.fromisoformat(start) + timedelta(hours=1)


def test_business_hours_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        ComplaintsConfig.model_validate({"business_hours": {"timezone": "Mars/Olympus"}})
    with pytest.raises(ValueError, match="start 18:00 must be before end 09:00"):
        ComplaintsConfig.model_validate({"business_hours": {"start": "18:00", "end": "09:00"}})
    with pytest.raises(ValueError, match="'9am' is not a time like 09:00"):
        ComplaintsConfig.model_validate({"business_hours": {"start": "9am"}})
