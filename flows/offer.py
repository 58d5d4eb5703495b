"""Offering the complaint flow to a customer who complains in the middle of something else.

A customer who writes "your card page charged me twice" in the middle of a FAQ is asked "Would
you like me to open a complaint?". The offer is only useful when it is unexpected and right;
otherwise it annoys. So it is held back (issue 13), whatever the complaint score:

1. while the bot waits for an answer (a ``collect`` step), while a flow still runs, when a
   handoff was requested, or when the turn already started the complaint flow or a global flow;
2. when the message answered the bot's own question: a ``collect`` step (or a pre-filled value to
   confirm) was waiting at the start of the turn, or the bot's last message asked something
   (a question or buttons) and the reply is short (``SHORT_REPLY_WORDS`` words or fewer);
3. for ``QUIET_TURNS`` customer messages after the conversation last dealt with a complaint: the
   complaint flow (or the survey / follow-up flow) ran, or a ticket action did (a reference was
   created, a status was told, a score recorded, a ticket reopened). A customer with a clearly
   new complaint is not stuck: the complaint intent still starts the complaint flow directly;
   only the *offer* of it, made on a mere suspicion, waits;
4. on neutral messages: greetings (and their typos), thanks, yes/no/ok, goodbyes, numbers,
   e-mail addresses, phone numbers, order numbers and complaint references, with or without a
   few filler words ("my email is ...", "order AB123456"), and complaint-status questions
   ("any news on C-1042?");
5. on a FAQ question: the message is one question and the flow it matched only answers (all
   ``say`` steps), unless the detector is very sure (``CLEAR_COMPLAINT``).
"""

from __future__ import annotations

import logging
import re

from bot.model import Button, normalize_for_matching

from .loader import FlowSet, ParsedFlow
from .nlu import entities as _entities
from .schema import SayStep
from .steps import StepRunner
from .turn import Reply, Turn

log = logging.getLogger(__name__)

QUIET_TURNS = 5           # customer messages after a complaint was dealt with that get no offer
SHORT_REPLY_WORDS = 3     # a reply this short, right after the bot asked something, answers it
CLEAR_COMPLAINT = 0.85    # a FAQ question scored this high is still offered the complaint flow
# flow actions that mean the conversation is dealing with a complaint (see handoff/tickets.py)
TICKET_ACTIONS = frozenset({"create_reference", "ticket_status", "record_csat", "reopen_ticket"})

# Words that carry no complaint on their own: small talk, yes/no, and the filler around an
# e-mail address or a number ("my email is ...", "order number: ...").
_SMALL_TALK = frozenset("""
    hi hello hey hiya heya howdy yo morning evening afternoon good day greetings there again
    thanks thank thx ty cheers appreciated appreciate much lot so very many you u your help
    yes yeah yep yup ya sure ok okay okey oki k kk alright fine cool great perfect nice got it
    understood noted see i no nope nah now later maybe thats that's all that's it all good
    bye goodbye ciao care have a nice day later
    my the is it's its this is here email e-mail mail address phone number mobile tel call me on
    at order ref reference ticket nr code please pls plz and or of for
""".split())
_GREETING_WORDS = ("hello", "hey", "hi", "thanks", "okay", "bye", "goodbye", "morning", "evening")
_STATUS = re.compile(
    r"\b(status|update|updates|news|progress|resolved|solved|handling|handled|working on|looked at|"
    r"looking at|happening|where are you with|any word|heard|check on|checking on)\b", re.I)
_ABOUT_A_COMPLAINT = re.compile(r"\b(complaint|ticket|case|claim|c-?\d{3,})\b", re.I)
_CODE = re.compile(r"\b[a-z]{1,3}-?\d{3,}\b|\b\d[\d\s./,:-]*\b", re.I)
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_QUESTION_START = re.compile(
    r"^(how|what|what's|whats|when|where|which|who|why|do|does|did|can|could|is|are|will|would|may|"
    r"should|have|has)\b", re.I)


class ComplaintOffer:
    """Decides, after a turn ran, whether to add "Would you like me to open a complaint?"."""

    def __init__(self, flowset: FlowSet, steps: StepRunner) -> None:
        self.flows = flowset
        self.settings = flowset.settings
        self.steps = steps

    def maybe_offer(self, t: Turn, complaint: float, matched: ParsedFlow | None) -> None:
        """Offer the complaint flow if the message looks like a complaint and nothing holds it back.

        Args:
            t: the turn, after its steps ran.
            complaint: the message's complaint score.
            matched: the flow the message was sure to mean, if any.
        """
        self._note_complaint_work(t)
        why_not = self.held_back(t, complaint, matched)
        if why_not is not None:
            if complaint >= self.settings.complaints.threshold:
                log.debug("complaint offer held back: %s", why_not)
            return
        cs = self.settings.complaints
        t.replies.append(Reply(self.steps.render(cs.offer, t), (Button(self.steps.pick(cs.offer_button, t),
                                                                        f"intent:{cs.flow}"),)))
        t.st.offered = f"intent:{cs.flow}"

    def held_back(self, t: Turn, complaint: float, matched: ParsedFlow | None) -> str | None:
        """Why the offer is not made this turn (None: make it)."""
        cs = self.settings.complaints
        st = t.st
        if not cs.flow or complaint < cs.threshold:
            return "not a complaint"
        if t.handoff is not None or st.awaiting or st.flow is not None:
            return "the bot is busy with a flow"   # a flow still running or asking: leave it alone
        target = self.flows.flow_for_intent(cs.flow)
        if target is None:
            return "no complaint flow"
        if matched is not None and (matched.name == target.name or matched.flow.interrupts):
            return "the customer already chose a flow"
        if t.answered:
            return "an answer to the bot's question"
        text = t.input.text.strip()
        if t.asked_before and len(_WORD.findall(text)) + len(_CODE.findall(text)) <= SHORT_REPLY_WORDS:
            return "a short reply to the bot's question"
        if st.complaint_turn is not None and st.turns - st.complaint_turn <= QUIET_TURNS:
            return "a complaint was dealt with in this conversation just now"
        kind = neutral_kind(text)
        if kind is not None:
            return f"a neutral message ({kind})"
        if (matched is not None and all(isinstance(s, SayStep) for s in matched.steps)
                and is_one_question(text) and complaint < CLEAR_COMPLAINT):
            return "a FAQ question"
        return None

    def _note_complaint_work(self, t: Turn) -> None:
        """Remember the turn in which the conversation last dealt with a complaint."""
        cs = self.settings.complaints
        target = self.flows.flow_for_intent(cs.flow) if cs.flow else None
        names = {n for n in (target.name if target else None, cs.survey_flow, cs.follow_up_flow) if n}
        if (t.flows_run & names) or (t.st.flow in names) or TICKET_ACTIONS.intersection(t.actions_called):
            t.st.complaint_turn = t.st.turns

    def note(self, t: Turn) -> None:
        """A turn the bot started on its own (a survey): remember if it is about a complaint."""
        self._note_complaint_work(t)


def neutral_kind(text: str) -> str | None:
    """What kind of neutral message ``text`` is ("greeting or reply", "e-mail address", "number",
    "status question", ...), or None when it may say something about a problem."""
    norm = normalize_for_matching(text)
    if not norm.strip():
        return "empty"
    if _STATUS.search(norm) and _ABOUT_A_COMPLAINT.search(norm):
        return "status question"
    rest = norm
    kinds = []
    for e in sorted(_entities.extract(norm), key=lambda e: -e.start):
        if e.kind in ("email", "phone"):
            rest = rest[:e.start] + " " + rest[e.end:]
            kinds.append("e-mail address" if e.kind == "email" else "phone number")
    if _CODE.search(rest):
        kinds.append("number")
        rest = _CODE.sub(" ", rest)
    words = _WORD.findall(rest)
    if not all(w in _SMALL_TALK or _typo_of_greeting(w) for w in words):
        return None
    if kinds:
        return kinds[0]
    return "greeting or reply" if words else "no words"


def _typo_of_greeting(word: str) -> bool:
    """"helo", "hallo", "hii", "heyyy", "thnks": one letter off (or repeated) from a greeting word."""
    squeezed = re.sub(r"(.)\1+", r"\1", word)
    for g in _GREETING_WORDS:
        if squeezed == re.sub(r"(.)\1+", r"\1", g) or (len(g) >= 4 and _one_edit(word, g)):
            return True
    return False


def _one_edit(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1 or a == b:
        return a == b
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b)) == 1
    if len(a) > len(b):
        a, b = b, a
    return any(b[:i] + b[i + 1:] == a for i in range(len(b)))


def is_one_question(text: str) -> bool:
    """One sentence, and a question ("do you ship to austria?", "how do i return an item")."""
    body = text.strip()
    inner = body.rstrip("?!. ")
    if re.search(r"[.!?]\s", inner) or "\n" in inner:
        return False          # more than one sentence: "do you take paypal? you charged me twice"
    return body.endswith("?") or bool(_QUESTION_START.match(body))
