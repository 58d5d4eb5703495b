"""FlowEngine: slot types, retries, branches, interrupts, FAQ mid-form, fallback, state."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from bot.model import Button
from flows import FlowEngine, FlowSet, HandoffRequest, LexicalMatcher, TurnInput, TurnResult, load_flows
from flows.engine import ActionContext

DEMO = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "flows" / "shop"  # conftest.SHOP_FLOWS

FLOWS = """\
settings:
  threshold: 0.45
  interrupt_threshold: 0.8
  fallback:
    messages: ["Sorry, say again?", "Still lost, pick one:"]
    max_misses: 3
    offer_human: "Shall I get you a person?"
    suggestions: 3

intents:
  human: {description: Talk to a person, examples: [agent, human, talk to a person, speak to a human]}
  hours: {description: Opening hours, examples: [when are you open, opening hours, what time do you open]}
  text_slot: {examples: [text slot test]}
  choice_slot: {examples: [choice slot test]}
  number_slot: {examples: [number slot test]}
  email_slot: {examples: [email slot test]}
  phone_slot: {examples: [phone slot test]}
  regex_slot: {examples: [regex slot test]}
  attachment_slot: {examples: [attachment slot test]}
  optional_slot: {examples: [optional slot test]}
  retry_handoff: {examples: [retry handoff test]}
  retry_end: {examples: [retry end test]}
  branching: {examples: [branching test]}
  setgoto: {examples: [set and goto test]}
  ending: {examples: [ending test]}
  handoff_step: {examples: [handoff step test]}
  echo: {examples: [echo test]}
  reset_flow: {examples: [reset flow test]}
  reference: {examples: [reference test]}
  to_hours: {examples: [to hours test]}
  loop: {examples: [loop test]}

flows:
  human:
    trigger: human
    interrupts: true
    steps:
      - handoff: {team: support, reason: you asked to talk to a person}
  hours:
    trigger: hours
    steps:
      - say: "We are open 9 to 5."
  text_slot:
    trigger: text_slot
    steps:
      - collect: note
        ask: "Your note?"
        min_length: 5
        invalid: "Too short."
      - say: "Note: {{ slots.note }}"
  choice_slot:
    trigger: choice_slot
    steps:
      - collect: colour
        type: choice
        ask: "Which colour?"
        choices:
          - {value: red, title: Bright red, synonyms: [crimson, scarlet]}
          - green
          - {value: light_blue, synonyms: [baby blue]}
        invalid: "Please pick a colour."
      - say: "Colour={{ slots.colour }}"
  number_slot:
    trigger: number_slot
    steps:
      - collect: qty
        type: number
        min: 1
        max: 10
        ask: "How many?"
        invalid: "1 to 10, please."
      - say: "qty={{ slots.qty }}"
  email_slot:
    trigger: email_slot
    steps:
      - collect: email
        type: email
        ask: "Your e-mail?"
        invalid: "That is not an e-mail address."
      - say: "email={{ slots.email }}"
  phone_slot:
    trigger: phone_slot
    steps:
      - collect: phone
        type: phone
        ask: "Your phone?"
        invalid: "That is not a phone number."
      - say: "phone={{ slots.phone }}"
  regex_slot:
    trigger: regex_slot
    steps:
      - collect: order
        type: regex
        pattern: '\\b[A-Za-z]{2}-?\\d{6}\\b'
        normalize: upper
        ask: "Order number?"
        invalid: "Two letters and six digits, like AB123456."
      - say: "order={{ slots.order }}"
  attachment_slot:
    trigger: attachment_slot
    steps:
      - collect: photo
        type: attachment
        ask: "Send a photo."
        invalid: "No photo received."
      - say: "photos={{ slots.photo | length }}"
  optional_slot:
    trigger: optional_slot
    steps:
      - collect: photo
        type: attachment
        optional: true
        ask: "A photo, or say skip."
      - collect: comment
        optional: true
        ask: "Any comment?"
      - say: "photo={{ slots.photo }} comment={{ slots.comment }}"
  retry_handoff:
    trigger: retry_handoff
    steps:
      - collect: pin
        type: regex
        pattern: '^\\d{4}$'
        max_attempts: 2
        ask: "PIN?"
        invalid: "Four digits."
      - say: "unreachable"
  retry_end:
    trigger: retry_end
    steps:
      - collect: pin
        type: regex
        pattern: '^\\d{4}$'
        max_attempts: 3
        on_fail: end
        ask: "PIN?"
      - say: "unreachable"
  branching:
    trigger: branching
    steps:
      - collect: age
        type: number
        ask: "Age?"
      - branch:
          - if: slots.age >= 18
            then: adult
          - else: true
            then: minor
      - id: adult
        say: "Adult."
      - end
      - id: minor
        say: "Minor."
  setgoto:
    trigger: setgoto
    steps:
      - set: {greeting: "Hi {{ customer.name }}", count: 3, tags: [a, b], nothing: null}
      - goto: last
      - say: "skipped"
      - id: last
        # `comment` is collected by another flow (a slot that does not exist at all is a load error)
        say: "{{ slots.greeting }}|{{ slots.count + 1 }}|{{ slots.tags | join(',') }}|{{ slots.nothing }}|[{{ slots.comment }}]"
  ending:
    trigger: ending
    steps:
      - say: "before"
      - end: true
      - say: "after"
  handoff_step:
    trigger: handoff_step
    steps:
      - collect: order
        type: regex
        pattern: '[A-Z]{2}\\d{6}'
        ask: "Order number?"
      - handoff:
          team: complaints
          reason: "order {{ slots.order }} needs a look"
          priority: 2
      - say: "unreachable"
  echo:
    trigger: echo
    steps:
      - collect: note
        ask: "Say something."
      - set: {echo: "{{ message }}"}
      - say: "You wrote: {{ message }} / {{ slots.note }} / {{ slots.echo }}"
  reset_flow:
    trigger: reset_flow
    steps:
      - action: reset
      - say: "cleared [{{ slots.colour }}]"
  reference:
    trigger: reference
    steps:
      - action: create_reference
        save_as: ref
      - say: "Your reference is {{ slots.ref }}."
  to_hours:
    trigger: to_hours
    steps:
      - say: "Let me check."
      - goto: flow:hours
  loop:
    trigger: loop
    steps:
      - id: again
        goto: again
"""


@pytest.fixture(scope="module")
def flowset(tmp_path_factory: pytest.TempPathFactory) -> FlowSet:
    d = tmp_path_factory.mktemp("engine_flows")
    (d / "flows.yaml").write_text(FLOWS, encoding="utf-8")
    return load_flows(d, teams=["support", "complaints"])


class Chat:
    """A conversation: feeds turns to the engine, keeping state through a JSON round trip."""

    def __init__(self, engine: FlowEngine, **turn_defaults: Any) -> None:
        self.engine = engine
        self.state: dict[str, Any] | None = None
        self.calls: list[ActionContext] = []
        self.turn_defaults = turn_defaults
        self.last: TurnResult | None = None

    async def send(self, text: str = "", payload: str | None = None,
                   attachments: tuple[dict[str, Any], ...] = ()) -> list[str]:
        turn = TurnInput(text=text, payload=payload, attachments=attachments, **self.turn_defaults)
        res = await self.engine.handle(self.state, turn)
        self.last = res
        self.state = json.loads(json.dumps(res.state))  # what a store would do
        assert self.state == res.state
        return [r.text for r in res.replies]

    async def start(self, intent: str) -> list[str]:
        return await self.send(payload=f"intent:{intent}")

    @property
    def slots(self) -> dict[str, Any]:
        assert self.state is not None
        return self.state["slots"]

    @property
    def handoff(self) -> HandoffRequest | None:
        assert self.last is not None
        return self.last.handoff


def make_engine(fs: FlowSet, calls: list[ActionContext] | None = None) -> FlowEngine:
    async def create_reference(ctx: ActionContext) -> str:
        if calls is not None:
            calls.append(ctx)
        return "C-1"

    return FlowEngine(fs, actions={"create_reference": create_reference})


@pytest.fixture
def chat(flowset: FlowSet) -> Chat:
    calls: list[ActionContext] = []
    c = Chat(make_engine(flowset, calls), customer={"id": "cust-1", "name": "Ada"}, channel="webchat",
             conversation_id="conv-1")
    c.calls = calls
    return c


# -- slot types -------------------------------------------------------------------


async def test_text_slot_min_length(chat: Chat) -> None:
    assert await chat.start("text_slot") == ["Your note?"]
    assert chat.state is not None and chat.state["awaiting"] == "note"
    assert await chat.send("abc") == ["Too short.", "Your note?"]
    assert chat.state["attempts"] == 1
    assert await chat.send("  hello there  ") == ["Note: hello there"]
    assert chat.slots["note"] == "hello there"
    assert chat.state["flow"] is None and chat.state["awaiting"] is None and chat.state["attempts"] == 0


@pytest.mark.parametrize("text,payload,expected", [
    ("Green", None, "green"),                 # by value
    ("bright red", None, "red"),              # by title
    ("Bright Red", None, "red"),
    ("something crimson please", None, "red"),  # synonym inside a sentence
    ("baby blue", None, "light_blue"),        # multi-word synonym
    ("light blue", None, "light_blue"),       # value with _ read as a space
    ("3", None, "light_blue"),                # number index
    ("1", None, "red"),
    ("Sky", "green", "green"),                # button payload wins over text
])
async def test_choice_slot_accepts(chat: Chat, text: str, payload: str | None, expected: str) -> None:
    replies = await chat.start("choice_slot")
    assert replies == ["Which colour?"]
    assert chat.last is not None
    assert chat.last.replies[0].buttons == (Button("Bright red", "red"), Button("Green", "green"),
                                            Button("Light blue", "light_blue"))
    assert await chat.send(text, payload=payload) == [f"Colour={expected}"]
    assert chat.slots["colour"] == expected


@pytest.mark.parametrize("text", ["purple", "4", "0", "reddish"])
async def test_choice_slot_rejects(chat: Chat, text: str) -> None:
    await chat.start("choice_slot")
    assert await chat.send(text) == ["Please pick a colour.", "Which colour?"]
    assert chat.last is not None and len(chat.last.replies[1].buttons) == 3
    assert "colour" not in chat.slots
    assert chat.state is not None and chat.state["attempts"] == 1


@pytest.mark.parametrize("text,expected", [("7", 7), ("I'd like 3 please", 3), ("2.5", 2.5), ("2,5", 2.5),
                                           ("10", 10), ("1", 1)])
async def test_number_slot_accepts(chat: Chat, text: str, expected: float) -> None:
    await chat.start("number_slot")
    assert await chat.send(text) == [f"qty={expected}"]
    assert chat.slots["qty"] == expected
    assert type(chat.slots["qty"]) is type(expected)


@pytest.mark.parametrize("text", ["eleven", "11", "0", "-3", "none at all"])
async def test_number_slot_rejects(chat: Chat, text: str) -> None:
    await chat.start("number_slot")
    assert await chat.send(text) == ["1 to 10, please.", "How many?"]
    assert "qty" not in chat.slots


async def test_email_slot(chat: Chat) -> None:
    await chat.start("email_slot")
    assert await chat.send("ada at example dot com") == ["That is not an e-mail address.", "Your e-mail?"]
    assert await chat.send("sure, it's Ada.Lovelace+shop@Example.COM thanks") == [
        "email=ada.lovelace+shop@example.com"]


async def test_phone_slot(chat: Chat) -> None:
    await chat.start("phone_slot")
    assert await chat.send("12345") == ["That is not a phone number.", "Your phone?"]
    assert await chat.send("call me on +44 (20) 7946-0958") == ["phone=+442079460958"]
    assert chat.slots["phone"] == "+442079460958"


async def test_phone_slot_without_plus(chat: Chat) -> None:
    await chat.start("phone_slot")
    assert await chat.send("0612 345 678") == ["phone=0612345678"]


async def test_regex_slot_extracts_and_normalizes(chat: Chat) -> None:
    await chat.start("regex_slot")
    assert await chat.send("it's 12345678") == ["Two letters and six digits, like AB123456.", "Order number?"]
    assert await chat.send("my order is ab-123456, thanks") == ["order=AB-123456"]
    assert chat.slots["order"] == "AB-123456"


async def test_attachment_slot(chat: Chat) -> None:
    await chat.start("attachment_slot")
    assert await chat.send("here it is") == ["No photo received.", "Send a photo."]
    photo = {"kind": "image", "url": "media/1.jpg", "name": "damage.jpg"}
    assert await chat.send("", attachments=(photo,)) == ["photos=1"]
    assert chat.slots["photo"] == [photo]


async def test_optional_slots_skipped(chat: Chat) -> None:
    replies = await chat.start("optional_slot")
    assert replies == ["A photo, or say skip."]
    assert chat.last is not None and chat.last.replies[0].buttons == (Button("Skip", "skip"),)
    assert await chat.send("Skip.") == ["Any comment?"]
    assert await chat.send("no thanks") == ["photo= comment="]
    assert chat.slots == {"photo": None, "comment": None}


async def test_optional_slots_skip_button_and_values(chat: Chat) -> None:
    await chat.start("optional_slot")
    photo = {"kind": "image", "url": "media/2.jpg"}
    # "skip" text with a photo attached: the photo counts, nothing is skipped
    assert await chat.send("skip", attachments=(photo,)) == ["Any comment?"]
    assert await chat.send("it was wet") == [f"photo={[photo]} comment=it was wet"]
    chat.state = None
    await chat.start("optional_slot")
    assert await chat.send("Skip", payload="skip") == ["Any comment?"]
    assert chat.slots["photo"] is None


# -- retries and on_fail --------------------------------------------------------------


async def test_retry_limit_hands_off_by_default(chat: Chat) -> None:
    await chat.start("retry_handoff")
    assert await chat.send("12") == ["Four digits.", "PIN?"]
    assert chat.handoff is None
    assert await chat.send("abcd") == []
    assert chat.handoff == HandoffRequest(None, "I couldn't get your pin", 0, cause="misunderstood",
                                          agent_reason="the bot could not understand their pin (2 tries)",
                                          flow="retry_handoff")
    assert chat.state is not None
    assert (chat.state["flow"], chat.state["awaiting"], chat.state["attempts"]) == (None, None, 0)


async def test_retry_limit_with_on_fail_end(chat: Chat) -> None:
    await chat.start("retry_end")
    for _ in range(2):
        assert await chat.send("nope") == ["PIN?"]  # no invalid: text, just the question again
    assert chat.state is not None and chat.state["attempts"] == 2
    assert await chat.send("still no") == []
    assert chat.handoff is None
    assert chat.state["flow"] is None and "pin" not in chat.slots


async def test_valid_answer_resets_attempts(chat: Chat) -> None:
    await chat.start("retry_handoff")
    await chat.send("x")
    assert chat.state is not None and chat.state["attempts"] == 1
    assert await chat.send("1234") == ["unreachable"]
    assert chat.slots["pin"] == "1234"
    assert chat.handoff is None


# -- branch, set, goto, end, handoff, actions ---------------------------------------------


@pytest.mark.parametrize("age,reply", [("42", "Adult."), ("18", "Adult."), ("17", "Minor.")])
async def test_branch_on_slots(chat: Chat, age: str, reply: str) -> None:
    await chat.start("branching")
    assert await chat.send(age) == [reply]  # and `- end` stops before "Minor."
    assert chat.state is not None and chat.state["flow"] is None


async def test_set_and_goto(chat: Chat) -> None:
    assert await chat.start("setgoto") == ["Hi Ada|4|a,b||[]"]
    assert chat.slots == {"greeting": "Hi Ada", "count": 3, "tags": ["a", "b"], "nothing": None}


async def test_customer_without_name(flowset: FlowSet) -> None:
    c = Chat(make_engine(flowset))  # TurnInput's default customer is {}
    assert await c.start("setgoto") == ["Hi|4|a,b||[]"]


async def test_end_step(chat: Chat) -> None:
    assert await chat.start("ending") == ["before"]
    assert chat.state is not None and chat.state["flow"] is None


async def test_handoff_step(chat: Chat) -> None:
    await chat.start("handoff_step")
    assert await chat.send("It's XY123456") == []
    assert chat.handoff == HandoffRequest("complaints", "order XY123456 needs a look", 2, cause="rule",
                                          agent_reason="rule: flow handoff_step hands over "
                                                       "(order XY123456 needs a look)", flow="handoff_step")
    assert chat.state is not None and chat.state["flow"] is None
    assert chat.slots == {"order": "XY123456"}


async def test_action_result_saved_and_context_passed(chat: Chat) -> None:
    chat.state = {"slots": {"colour": "red"}}
    assert await chat.start("reference") == ["Your reference is C-1."]
    assert chat.slots == {"colour": "red", "ref": "C-1"}
    (ctx,) = chat.calls
    assert ctx == ActionContext("conv-1", "webchat", {"id": "cust-1", "name": "Ada"}, {"colour": "red"})


async def test_unregistered_action_raises(flowset: FlowSet) -> None:
    engine = FlowEngine(flowset)
    with pytest.raises(LookupError, match="create_reference"):
        await engine.handle(None, TurnInput("", payload="intent:reference"))


async def test_reset_action_clears_slots(chat: Chat) -> None:
    chat.state = {"slots": {"colour": "red", "order": "AB123456"}}
    assert await chat.start("reset_flow") == ["cleared []"]
    assert chat.slots == {}


async def test_goto_another_flow(chat: Chat) -> None:
    assert await chat.start("to_hours") == ["Let me check.", "We are open 9 to 5."]
    assert chat.state is not None and chat.state["flow"] is None


async def test_goto_loop_is_stopped(chat: Chat) -> None:
    assert await chat.start("loop") == []  # stops after MAX_STEPS_PER_TURN steps
    assert chat.state is not None and chat.state["flow"] is None


# -- interrupts and questions mid-form ----------------------------------------------------


async def test_global_interrupt_during_a_question(chat: Chat) -> None:
    await chat.start("regex_slot")
    assert await chat.send("agent") == []
    assert chat.handoff == HandoffRequest("support", "you asked to talk to a person", 0, cause="customer_asked",
                                          agent_reason="asked for a person", flow="human")
    assert chat.last is not None and chat.last.intent == "human"
    assert chat.state is not None and chat.state["flow"] is None and chat.state["awaiting"] is None


async def test_global_interrupt_beats_a_free_text_answer(chat: Chat) -> None:
    await chat.start("text_slot")
    assert await chat.send("talk to a person") == []
    assert chat.handoff is not None and chat.handoff.team == "support"
    assert "note" not in chat.slots


async def test_interrupt_button_payload(chat: Chat) -> None:
    await chat.start("choice_slot")
    assert await chat.send("Talk to a person", payload="intent:human") == []
    assert chat.handoff is not None and chat.handoff.team == "support"


async def test_faq_mid_form_is_answered_and_question_reasked(chat: Chat) -> None:
    await chat.start("regex_slot")
    await chat.send("no idea")
    assert chat.state is not None and chat.state["attempts"] == 1
    assert await chat.send("when are you open?") == ["We are open 9 to 5.", "Order number?"]
    assert chat.state["attempts"] == 1  # not counted
    assert chat.state["flow"] == "regex_slot" and chat.state["awaiting"] == "order"
    assert chat.handoff is None
    assert await chat.send("AB123456") == ["order=AB123456"]


# -- fallback --------------------------------------------------------------------------------


async def test_fallback_clarifies_then_offers_a_human(chat: Chat) -> None:
    query = "when does the bakery open, ask a person"  # partial match: below threshold
    assert "human" in [i for i, _ in await chat.engine.matcher.rank(query, top=3)]
    replies = await chat.send(query)
    # not sure enough to act: the best two guesses, as buttons
    assert len(replies) == 1 and replies[0].startswith("Did you mean Opening hours or ")
    assert chat.last is not None
    assert 0 < chat.last.score < 0.45 and chat.last.intent == "hours"
    buttons = chat.last.replies[0].buttons
    assert buttons[0] == Button("Opening hours", "intent:hours") and len(buttons) == 2
    assert replies[0] == f"Did you mean {buttons[0].title} or {buttons[1].title}?"
    assert all(b.payload != "intent:human" for b in buttons)  # interrupting flows are not suggested
    assert all(b.payload.startswith("intent:") for b in buttons)
    assert chat.state is not None and chat.state["misses"] == 1

    assert await chat.send("xyzzy plugh") == ["Still lost, pick one:"]
    assert chat.state["misses"] == 2
    assert await chat.send("frobnicate") == ["Shall I get you a person?"]
    assert chat.last.replies[0].buttons == (Button("Talk to a person", "intent:human"),)
    assert chat.state["misses"] == 0
    assert chat.handoff is None

    # the button forces the human flow: the customer asked, after three misunderstood messages
    assert await chat.send("Talk to a person", payload="intent:human") == []
    assert chat.handoff == HandoffRequest("support", "you asked to talk to a person", 0, cause="misunderstood",
                                          agent_reason="asked for a person after 3 misunderstood messages",
                                          flow="human")
    assert "missed" not in chat.state


async def test_a_matched_intent_resets_misses(chat: Chat) -> None:
    await chat.send("xyzzy")
    await chat.send("xyzzy")
    assert chat.state is not None and chat.state["misses"] == 2
    assert await chat.send("what time do you open") == ["We are open 9 to 5."]
    assert chat.state["misses"] == 0
    assert await chat.send("xyzzy") == ["Sorry, say again?"]


async def test_empty_text_is_a_miss(chat: Chat) -> None:
    assert await chat.send("   ") == ["Sorry, say again?"]
    assert chat.last is not None and chat.last.intent is None
    # nothing came close, so the first topics are offered as a way on
    buttons = chat.last.replies[0].buttons
    assert buttons and buttons[0] == Button("Opening hours", "intent:hours")


async def test_payload_forces_a_flow(chat: Chat) -> None:
    assert await chat.send("speak to a human", payload="intent:hours") == ["We are open 9 to 5."]
    assert chat.last is not None and (chat.last.intent, chat.last.score) == ("hours", 1.0)


async def test_payload_forces_a_flow_during_a_question(chat: Chat) -> None:
    await chat.start("regex_slot")
    assert await chat.send("Opening hours", payload="intent:hours") == ["We are open 9 to 5."]
    assert chat.state is not None and chat.state["flow"] is None


async def test_offer_human_without_a_human_flow_has_no_button(tmp_path: Path) -> None:
    (tmp_path / "f.yaml").write_text(textwrap.dedent("""\
        intents:
          hours: {examples: [when are you open]}
        flows:
          hours:
            trigger: hours
            steps: [{say: open}]
        settings:
          fallback: {max_misses: 1, offer_human: "No idea."}
        """))
    c = Chat(FlowEngine(load_flows(tmp_path)))
    assert await c.send("xyzzy") == ["No idea."]
    assert c.last is not None and c.last.replies[0].buttons == ()


# -- state -----------------------------------------------------------------------------------


async def test_state_round_trip_gives_identical_results(flowset: FlowSet) -> None:
    engine = make_engine(flowset)
    turns = [TurnInput("", payload="intent:regex_slot"), TurnInput("nope"), TurnInput("AB123456")]
    raw: dict[str, Any] | None = None
    trip: dict[str, Any] | None = None
    for turn in turns:
        a = await engine.handle(raw, turn)
        b = await engine.handle(trip, turn)
        assert a.replies == b.replies and a.state == b.state
        raw = a.state
        trip = json.loads(json.dumps(b.state))
    assert trip == raw and trip is not None
    assert trip["slots"] == {"order": "AB123456"} and trip["v"] == 1


async def test_state_is_json_with_attachments_mid_flow(chat: Chat) -> None:
    await chat.start("attachment_slot")
    assert chat.state == {"v": 1, "flow": "attachment_slot", "step": 0, "awaiting": "photo",
                          "attempts": 0, "misses": 0, "slots": {}, "confirm": None, "recent": [],
                          "signals": {"complaint": 0.0}, "turns": 1, "complaint_turn": None,
                          "asked": False, "offered": None, "asking_flow": "attachment_slot"}
    await chat.send("", attachments=({"kind": "image", "url": "u", "size": 10},))
    assert chat.slots == {"photo": [{"kind": "image", "url": "u", "size": 10}]}


async def test_reset_after_handoff_keeps_slots_but_ends_the_flow(chat: Chat) -> None:
    await chat.start("choice_slot")
    await chat.send("green")
    await chat.start("regex_slot")
    await chat.send("??")
    assert chat.state is not None and chat.state["awaiting"] == "order" and chat.state["attempts"] == 1
    back = chat.engine.reset_after_handoff(chat.state)
    assert back == {"v": 1, "flow": None, "step": 0, "awaiting": None, "attempts": 0, "misses": 0,
                    "slots": {"colour": "green"}, "confirm": None, "recent": ["green", "??"],
                    "signals": chat.state["signals"], "turns": 4, "complaint_turn": None,
                    "asked": False, "offered": None, "asking_flow": "regex_slot"}
    assert json.loads(json.dumps(back)) == back
    chat.state = back
    # the old question is no longer pending: the answer is not taken as an order number
    assert await chat.send("AB123456") == ["Sorry, say again?"]
    assert chat.slots == {"colour": "green"}


async def test_state_from_a_stale_flow_is_ignored(chat: Chat) -> None:
    chat.state = {"flow": "gone", "step": 3, "awaiting": "x", "slots": {"a": 1}}
    assert await chat.send("when are you open") == ["We are open 9 to 5."]
    assert chat.slots == {"a": 1}


# -- the demo flows end to end ------------------------------------------------------------------


async def test_demo_complaint_end_to_end() -> None:
    fs = load_flows(DEMO, teams=["support", "complaints"])
    c = Chat(make_engine(fs), customer={"id": "c1", "name": "Ada"})
    replies = await c.start("complaint")
    assert replies[-1] == "What is it about?"
    assert await c.send("Shipping", payload="shipping") == [
        "What's your order number? You'll find it in your confirmation e-mail; it looks like AB123456."]
    assert await c.send("agent", payload=None) == []  # global interrupt while asking
    assert c.handoff is not None and c.handoff.team == "support"
    assert c.slots["category"] == "shipping"

    c.state = c.engine.reset_after_handoff(c.state)
    await c.start("complaint")  # a new complaint starts from a clean slate
    assert c.slots["category"] is None
    await c.send("2")
    await c.send("order ab123456")
    await c.send("The parcel never came")
    replies = await c.send("skip")
    assert replies[0].startswith("Thank you for explaining what happened, Ada.")
    assert "Waiting for a parcel" in replies[0]
    assert replies[1].startswith("Your reference number is C-1. Our complaints team")
    assert len(replies) == 3
    assert replies[-1] == "Would you like to talk to a member of our team now?"
    assert await c.send("yes please") == []
    assert c.handoff == HandoffRequest("complaints", "of your complaint C-1 about shipping", 1, cause="complaint",
                                       agent_reason="complaint flow: of your complaint C-1 about shipping",
                                       flow="complaint")
    assert c.slots == {"category": "shipping", "order_number": "AB123456",
                       "description": "The parcel never came", "photos": None, "want_human": "yes",
                       "reference": "C-1"}


async def test_demo_greeting_without_customer_name() -> None:
    fs = load_flows(DEMO, teams=["support", "complaints"])
    c = Chat(FlowEngine(fs, matcher=LexicalMatcher()))
    (reply,) = await c.send("hello")
    assert reply.startswith("Hello! I'm the Acme Shop assistant.")


async def test_fallback_with_nothing_close_offers_the_configured_topics(tmp_path: Path) -> None:
    from conftest import SHOP_FLOWS as DEMO_FLOWS

    eng = FlowEngine(load_flows(DEMO_FLOWS), actions={"create_reference": _ref_c1})
    res = await eng.handle(None, TurnInput("xyzzy"))
    assert [b.payload for b in res.replies[0].buttons] == ["intent:opening_hours", "intent:shipping_times",
                                                           "intent:returns"]


async def _ref_c1(ctx: object) -> str:
    return "C-1"


# -- don't ask twice: pre-filled slots ------------------------------------------------------------


async def test_an_email_given_earlier_is_confirmed_not_asked(chat: Chat) -> None:
    await chat.send("hello, I'm Jo.Smith@Example.com and my parcel is late")
    assert await chat.start("email_slot") == [
        "You mentioned jo.smith@example.com. Is that your email?"]
    assert [b.payload for b in chat.last.replies[0].buttons] == ["prefill:yes", "prefill:no"]  # type: ignore[union-attr]
    assert await chat.send("yes") == ["email=jo.smith@example.com"]


async def test_a_pre_filled_value_can_be_corrected_or_refused(chat: Chat) -> None:
    await chat.send("call me on +44 7700 900123 please")
    assert await chat.start("phone_slot") == ["You mentioned +447700900123. Is that your phone?"]
    # typing another valid value instead of yes/no takes that value
    assert await chat.send("+44 7700 900999") == ["phone=+447700900999"]

    await chat.send("my order is AB123456")
    assert await chat.start("regex_slot") == ["You mentioned AB123456. Is that your order?"]
    assert await chat.send("no", payload="prefill:no") == ["Order number?"]
    assert await chat.send("CD654321") == ["order=CD654321"]


async def test_a_request_for_a_person_while_a_pre_filled_value_waits_for_yes_or_no(chat: Chat) -> None:
    """Neither yes nor no but "agent": the customer gets a person, not the question again."""
    await chat.send("my order is AB123456")
    assert await chat.start("regex_slot") == ["You mentioned AB123456. Is that your order?"]
    assert await chat.send("agent") == []
    assert chat.handoff is not None and chat.handoff.flow == "human"
    assert chat.state is not None and chat.state["awaiting"] is None


async def test_prefill_none_always_asks(tmp_path: Path) -> None:
    assert "        type: email\n" in FLOWS
    (tmp_path / "flows.yaml").write_text(
        FLOWS.replace("        type: email\n", "        type: email\n        prefill: none\n", 1), encoding="utf-8")
    engine = make_engine(load_flows(tmp_path, teams=["support", "complaints"]))
    c = Chat(engine, customer={"id": "c"}, channel="webchat", conversation_id="x")
    await c.send("I'm jo@example.com")
    assert await c.start("email_slot") == ["Your e-mail?"]


async def test_what_one_long_message_says_is_confirmed_once_not_asked_again() -> None:
    """One long message (an e-mail) with the category's words, the order number and the story:
    one confirmation for all three, then the flow goes on after them; "no" asks as before."""
    fs = load_flows(DEMO, teams=["support", "complaints"])
    first = "I want to complain: my blender from order ab123456 is broken, the jar cracked and it leaks everywhere"
    c = Chat(make_engine(fs), customer={"id": "c1", "name": "Ada"})
    await c.send(first)
    replies = await c.start("complaint")     # (the lexical matcher asks "Did you mean ...?" first)
    assert replies[-1] == ("Let me check I have this right:\n- category: Product\n- order number: AB123456\n"
                           f"- description: “{first}”\nIs that right?")
    assert [b.payload for b in c.last.replies[-1].buttons] == ["prefill:yes", "prefill:no"]  # type: ignore[union-attr]
    replies = await c.send("yes")
    assert replies == ["If you have a photo (of the damage, the label or the item), send it now with the "
                       "paperclip button. Otherwise say 'skip'."]
    assert (c.slots["category"], c.slots["order_number"], c.slots["description"]) == ("product", "AB123456", first)
    assert "confirm_more" not in c.state                    # type: ignore[operator]

    d = Chat(make_engine(fs), customer={"id": "c2", "name": "Bo"})
    await d.send(first)
    await d.start("complaint")
    assert await d.send("no") == ["What is it about?"]
    # two choices named ("arrived" is shipping, "broken" product): asked, not guessed
    e = Chat(make_engine(fs), customer={"id": "c3", "name": "Cy"})
    await e.send("I want to complain, my parcel arrived broken")
    assert (await e.start("complaint"))[-1] == "What is it about?"


async def test_the_asking_flow_outlives_a_handoff_that_interrupts_it(chat: Chat) -> None:
    """The desk shows the fields of the last flow that asked something (state["asking_flow"]): a
    customer who asks for a person mid-form keeps that form's flow; starting over forgets it."""
    await chat.start("regex_slot")
    assert chat.state is not None and chat.state["asking_flow"] == "regex_slot"
    await chat.start("human")                       # interrupts; asks nothing itself
    assert chat.handoff is not None
    assert chat.state["flow"] is None and chat.state["asking_flow"] == "regex_slot"
    await chat.start("reset_flow")
    assert "asking_flow" not in chat.state
