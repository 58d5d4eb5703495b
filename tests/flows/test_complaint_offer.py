"""The complaint offer must not annoy customers: the detector on neutral chat messages, and
the engine's offer decision with the learned matcher and the demo flows.

Fixtures: tests/fixtures/neutral_messages.csv and complaint_messages.csv (see the README there).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flows import FlowEngine, FlowSet, TurnInput, TurnResult, load_flows
from flows.engine import ActionContext
from flows.nlu.encoder import shared_encoder
from flows.offer import QUIET_TURNS, is_one_question, neutral_kind
from flows.nlu.service import COMPLAINT, LearnedNLU, read_labelled_csv

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
MAX_FALSE_POSITIVES = 0.05
# Recall of the default complaint detector on complaint_messages.csv before the neutral-chat
# negatives were added to complaints_default.csv (57 of 60), measured with
#   omnibot nlu complaint-eval --train flows/nlu/complaints_default.csv --test tests/fixtures/complaint_messages.csv
RECALL_BEFORE = 0.95
# Complaints of that set that started the complaint flow or got the offer in a new conversation
# with the demo flows, before the offer rules of flows/offer.py (59 of 60).
PATH_RECALL_BEFORE = 59 / 60
# Macro-F1 of the default detector on complaints_heldout_b.csv (brand-directed messages written
# apart from the training set, never used to choose training rows) before the hard negatives and
# implicit complaints of issue 18 were added to complaints_default.csv: 88.0 (bench/nlu/run.py).
HELDOUT_F1_BEFORE = 0.880


def _texts(name: str) -> list[str]:
    texts, _ = read_labelled_csv(FIXTURES / name)
    return texts


@pytest.fixture(scope="module")
def detector() -> LearnedNLU:
    nlu = LearnedNLU(encoder=shared_encoder(2), progress=lambda m: None)
    nlu.fit_complaints()           # the default set, as flows without complaint examples get it
    return nlu


def test_the_fixtures_are_what_they_claim() -> None:
    texts, labels = read_labelled_csv(FIXTURES / "neutral_messages.csv")
    assert len(texts) >= 100 and set(labels) == {"not_complaint"} and len(set(texts)) == len(texts)
    texts, labels = read_labelled_csv(FIXTURES / "complaint_messages.csv")
    assert len(texts) >= 50 and set(labels) == {COMPLAINT}
    train = {t.lower() for t in read_labelled_csv(Path(__file__).resolve().parents[2] / "flows" / "nlu"
                                                  / "complaints_default.csv")[0]}
    held = _texts("complaints_heldout_a.csv") + _texts("complaints_heldout_b.csv")
    leaked = [t for t in _texts("neutral_messages.csv") + texts + held if t.lower() in train]
    assert leaked == []            # measured on messages the detector never saw
    for name in ("complaints_heldout_a.csv", "complaints_heldout_b.csv"):
        texts, labels = read_labelled_csv(FIXTURES / name)
        assert len(set(texts)) == len(texts) >= 150 and set(labels) == {COMPLAINT, "not_complaint"}


def test_detector_false_positive_rate_on_neutral_messages(detector: LearnedNLU) -> None:
    texts = _texts("neutral_messages.csv")
    flagged = [t for t, (_, _, c) in zip(texts, detector.classify(texts)) if c >= detector.complaint_threshold]
    assert len(flagged) / len(texts) < MAX_FALSE_POSITIVES, flagged


def test_detector_recall_on_complaints_did_not_drop(detector: LearnedNLU) -> None:
    texts = _texts("complaint_messages.csv")
    missed = [t for t, (_, _, c) in zip(texts, detector.classify(texts)) if c < detector.complaint_threshold]
    assert 1 - len(missed) / len(texts) >= RECALL_BEFORE, missed


def test_detector_generalises_to_held_out_brand_messages(detector: LearnedNLU) -> None:
    """Complaints and hard negatives (negative words about something else, own mistakes, incident
    reports, praise) the detector never saw: better than before issue 18's training additions."""
    from flows.nlu.evaluate import macro_f1

    texts, gold = read_labelled_csv(FIXTURES / "complaints_heldout_b.csv")
    pred = [COMPLAINT if c >= detector.complaint_threshold else "not_complaint"
            for _, _, c in detector.classify(texts)]
    assert macro_f1(gold, pred) > HELDOUT_F1_BEFORE + 0.01


# -- the offer decision: the engine with the learned matcher and the demo flows ---------------------

DEMO = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "flows" / "shop"  # conftest.SHOP_FLOWS
OFFER = "open a complaint"


async def _ref(ctx: ActionContext) -> str:
    return "C-1042"


async def _status(ctx: ActionContext) -> str:
    return "Your complaint C-1042 is with our logistics team; they aim to resolve it by Friday."


def _engine(flowset: FlowSet) -> FlowEngine:
    actions = {name: _ref for name in ("create_reference", "record_csat", "reopen_ticket", "link_code",
                                       "link_with_code")}
    return FlowEngine(flowset, matcher=LearnedNLU(encoder=shared_encoder(2), progress=lambda m: None),
                      actions={**actions, "ticket_status": _status})


@pytest.fixture(scope="module")
def demo() -> FlowEngine:
    return _engine(load_flows(DEMO, teams=["support", "complaints"]))


class Talk:
    """One conversation with an engine; the state goes through JSON as a store would keep it."""

    def __init__(self, engine: FlowEngine) -> None:
        self.engine = engine
        self.state: dict[str, Any] | None = None
        self.last: TurnResult | None = None

    async def say(self, text: str, payload: str | None = None) -> TurnResult:
        self.last = await self.engine.handle(self.state, TurnInput(text, payload=payload))
        self.state = json.loads(json.dumps(self.last.state))
        return self.last

    @property
    def offered(self) -> bool:
        """Did the bot's last turn offer to open a complaint?"""
        assert self.last is not None
        cs = self.engine.settings.complaints
        return any(b.payload == f"intent:{cs.flow}" and b.title == self.engine.pick(cs.offer_button, None)
                   for r in self.last.replies for b in r.buttons)

    def texts(self) -> list[str]:
        assert self.last is not None
        return [r.text for r in self.last.replies]


def _is_complaint(engine: FlowEngine, res: TurnResult) -> None:
    """The precondition of a hold-back test: the detector does call this message a complaint."""
    assert res.complaint >= engine.settings.complaints.threshold


async def _offer_rate(engine: FlowEngine, texts: list[str], before: list[str]) -> tuple[float, list[str]]:
    hits = []
    for text in texts:
        talk = Talk(engine)
        for b in before:
            await talk.say(b)
        await talk.say(text)
        if talk.offered:
            hits.append(text)
    return len(hits) / len(texts), hits


@pytest.mark.parametrize("before", [[], ["how long does shipping take?"]], ids=["fresh", "after-a-faq"])
async def test_offer_false_positive_rate_on_neutral_messages(demo: FlowEngine, before: list[str]) -> None:
    rate, offered = await _offer_rate(demo, _texts("neutral_messages.csv"), before)
    assert rate < MAX_FALSE_POSITIVES, offered


async def test_complaints_still_reach_the_complaint_flow_or_its_offer(demo: FlowEngine) -> None:
    """Recall of the whole path: a complaint starts the complaint flow directly or gets the offer."""
    texts, missed = _texts("complaint_messages.csv"), []
    for text in texts:
        talk = Talk(demo)
        await talk.say(text)
        if not ("Let me take down the details" in " ".join(talk.texts()) or talk.offered):
            missed.append(text)
    assert 1 - len(missed) / len(texts) >= PATH_RECALL_BEFORE, missed


async def test_a_complaint_inside_a_faq_is_still_offered(demo: FlowEngine) -> None:
    talk = Talk(demo)
    await talk.say("how long does delivery take?")
    res = await talk.say("do you accept paypal? your card page charged me twice for order AB123456")
    assert "PayPal" in res.replies[0].text and talk.offered
    # typing "yes" to the offer is pressing its button
    await talk.say("yes")
    assert talk.state["flow"] == "complaint"  # type: ignore[index]
    # what the first message said is confirmed at once, not asked again
    assert "- category: Payment\n- order number: AB123456\n" in talk.texts()[-1]


async def _file_complaint(talk: Talk) -> None:
    await talk.say("I want to complain", payload="intent:complaint")
    await talk.say("Shipping", payload="shipping")
    await talk.say("AB123456")
    await talk.say("the parcel came two weeks late")
    await talk.say("skip")
    assert "Would you like to talk to a member of our team now?" in talk.texts()


async def test_no_offer_right_after_a_complaint_was_filed(demo: FlowEngine) -> None:
    talk = Talk(demo)
    await _file_complaint(talk)
    res = await talk.say("no")            # answers the bot's question; the flow ends with "anything else?"
    assert res.handoff is None and "We'll be in touch about C-1042" in talk.texts()[-1] and not talk.offered
    for text in ("nobody called me back", "ok", "helo", "what's the status of my complaint?"):
        res = await talk.say(text)
        assert not talk.offered, text
    # the window ends QUIET_TURNS messages after the complaint flow: then the same words are offered
    talk.state["complaint_turn"] = talk.state["turns"] - QUIET_TURNS - 1  # type: ignore[index]
    res = await talk.say("nobody called me back")
    _is_complaint(demo, res)
    assert talk.offered


async def test_no_offer_after_a_status_answer(demo: FlowEngine) -> None:
    talk = Talk(demo)
    res = await talk.say("any news on C-1042?")
    assert res.intent == "complaint_status" and "logistics team" in talk.texts()[0] and not talk.offered
    res = await talk.say("still waiting, this is taking forever")
    _is_complaint(demo, res)
    assert not talk.offered
    # the same words after a FAQ answer, with no complaint in sight, are offered the flow
    other = Talk(demo)
    await other.say("how long does shipping take?")
    await other.say("still waiting, this is taking forever")
    assert other.offered


async def test_no_offer_for_a_short_answer_to_the_bots_question(demo: FlowEngine) -> None:
    talk = Talk(demo)
    await talk.say("thank you")
    assert talk.texts()[-1].endswith("?")            # "Anything else I can do for you?"
    res = await talk.say("no refund yet")
    _is_complaint(demo, res)
    assert not talk.offered
    other = Talk(demo)
    await other.say("how long does shipping take?")  # an answer, no question
    await other.say("no refund yet")
    assert other.offered


FEEDBACK_FLOWS = """\
intents:
  greet: {examples: [hi, hello, hey, good morning, hiya]}
  hours: {examples: [when are you open, opening hours, what time do you close, are you open on sunday]}
  feedback: {examples: [i have feedback, leave feedback, i want to give feedback, can i leave a comment]}
  complaint: {examples: [i want to complain, i want to make a complaint, my order arrived damaged]}
flows:
  greet: {trigger: greet, steps: [{say: "Hello!"}]}
  hours: {trigger: hours, steps: [{say: "We are open 9 to 5."}]}
  feedback:
    trigger: feedback
    steps:
      - {collect: note, ask: "What would you like to tell us?"}
      - say: "Thanks, we read every note."
  complaint:
    trigger: complaint
    steps:
      - {collect: what, ask: "What went wrong?"}
"""


async def test_no_offer_for_the_answer_to_a_collect_step(tmp_path: Path) -> None:
    (tmp_path / "flows.yaml").write_text(FEEDBACK_FLOWS, encoding="utf-8")
    engine = _engine(load_flows(tmp_path))
    talk = Talk(engine)
    await talk.say("i want to give feedback")
    assert talk.texts() == ["What would you like to tell us?"]
    res = await talk.say("nobody called me back")     # the answer; the flow ends with it
    _is_complaint(engine, res)
    assert talk.texts() == ["Thanks, we read every note."] and not talk.offered
    other = Talk(engine)
    await other.say("what time do you close")
    await other.say("nobody called me back")
    assert other.offered


async def test_neutral_messages_are_held_back_even_when_the_detector_is_fooled(tmp_path: Path) -> None:
    """An admin who sets a very low complaint threshold: every message "is" a complaint; the
    neutral ones and FAQ questions still get no offer, anything else does."""
    (tmp_path / "flows.yaml").write_text(FEEDBACK_FLOWS + "settings:\n  complaints: {threshold: 0.0}\n",
                                         encoding="utf-8")
    engine = _engine(load_flows(tmp_path))
    for text in ("helo", "ok", "thanks!", "no", "42", "my email is jo@example.com", "+44 7700 900123",
                 "order AB123456", "any news on C-1042?", "who is handling my complaint?",
                 "are you open on sunday?"):
        talk = Talk(engine)
        await talk.say("when are you open")
        await talk.say(text)
        assert not talk.offered, text
    talk = Talk(engine)
    await talk.say("when are you open")
    await talk.say("nobody called me back")
    assert talk.offered


async def test_ok_is_no_goodbye_and_greeting_typos_are_greetings(demo: FlowEngine) -> None:
    talk = Talk(demo)
    for text in ("ok", "okay", "Ok."):
        res = await talk.say(text)
        assert res.intent == "acknowledge" and "Have a great day" not in talk.texts()[0] and not talk.offered
    for text in ("helo", "hallo", "hii", "Helo!", "hallo there"):
        res = await talk.say(text)
        assert res.intent == "greet", text
        assert talk.texts()[0].startswith("Hello! I'm the Acme Shop assistant.") and not talk.offered


# -- the neutral-message rule itself ------------------------------------------------------------------


@pytest.mark.parametrize("text, kind", [
    ("helo", "greeting or reply"), ("Hallo!!", "greeting or reply"), ("heyyy", "greeting or reply"),
    ("thanks!", "greeting or reply"), ("ok thanks", "greeting or reply"), ("no", "greeting or reply"),
    ("my email is Tom@Example.com", "e-mail address"), ("call me on +44 7700 900123", "phone number"),
    ("order AB123456", "number"), ("12.50", "number"), ("C-1042", "number"),
    ("any news on C-1042?", "status question"), ("who is handling my complaint", "status question"),
    ("not good", None), ("i have a complaint", None), ("no refund yet", None), ("my parcel is broken", None), ("hello, my tv is broken", None),
])
def test_neutral_kind(text: str, kind: str | None) -> None:
    assert neutral_kind(text) == kind


@pytest.mark.parametrize("text, one", [
    ("do you ship to austria?", True), ("how do i return an item", True), ("no refund yet", False),
    ("do you accept paypal? your card page charged me twice", False), ("my parcel is late.", False),
])
def test_is_one_question(text: str, one: bool) -> None:
    assert is_one_question(text) is one
