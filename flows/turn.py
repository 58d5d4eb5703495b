"""What one customer turn is made of: the input, the replies, the saved state, the scratch space.

:class:`TurnInput` goes into :meth:`flows.FlowEngine.handle`, :class:`TurnResult` comes out; the
conversation's state between turns is the JSON-able dict :class:`TurnState` loads and dumps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

from bot.model import Button

from .nlu.urgency import Urgency

STATE_VERSION = 1
RECENT_TEXTS = 4          # customer messages kept in the state to pre-fill slots from
RECENT_CHARS = 500

ActionFn = Callable[["ActionContext"], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class TurnInput:
    """One customer turn as the engine sees it."""

    text: str
    payload: str | None = None
    attachments: tuple[Mapping[str, Any], ...] = ()
    customer: Mapping[str, Any] = field(default_factory=dict)
    channel: str = ""
    conversation_id: str = ""
    key: str = ""       # what makes this turn unique ("in:123", the inbound message); "" for none
    language: str = ""  # the conversation's language (README "Languages"); "": the flows' default
    switched: bool = False   # the message only asked to switch language: confirm, ask the question again


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    buttons: tuple[Button, ...] = ()


@dataclass(frozen=True, slots=True)
class HandoffRequest:
    team: str | None
    reason: str                 # what the customer is told ("because {{ reason }}")
    priority: int = 0
    cause: str | None = None    # bot.model.HANDOFF_CAUSES; None: the engine decides (see FlowEngine)
    agent_reason: str = ""      # why, written for the agent ("asked for a person after 2 misunderstood messages")
    flow: str | None = None     # the flow that handed over


@dataclass(frozen=True, slots=True)
class TurnResult:
    replies: tuple[Reply, ...]
    state: dict[str, Any]
    handoff: HandoffRequest | None = None
    intent: str | None = None
    score: float = 0.0
    complaint: float = 0.0
    urgency: Urgency | None = None
    missed: bool = False        # the bot did not understand this message (the fallback answered)


@dataclass(frozen=True, slots=True)
class ActionContext:
    conversation_id: str
    channel: str
    customer: Mapping[str, Any]
    slots: Mapping[str, Any]
    text: str = ""                                            # the customer's message this turn
    updates: dict[str, Any] = field(default_factory=dict, compare=False)  # more slots the action sets
    # The same for a replay of this step in this turn (after a crash or a storage error), and
    # different for any other: an action that writes keys its write to it, so a replay never
    # writes twice. "" when the turn has no key (the terminal shell).
    key: str = ""
    # the conversation's language (README "Languages"), and omnibot's own texts in it: what an action
    # tells the customer comes from flows/i18n.py SYSTEM_MESSAGES (the flows' settings.messages first)
    language: str | None = field(default=None, compare=False)
    texts: Callable[..., str] | None = field(default=None, compare=False, repr=False)
    titles: Callable[[str, Any], str] | None = field(default=None, compare=False, repr=False)
    # omnibot's texts for agents (a ticket's "why"): in the flows' default language, agents have none
    agent_texts: Callable[..., str] | None = field(default=None, compare=False, repr=False)

    def say(self, key: str, **values: Any) -> str:
        """System message ``key`` in the conversation's language, rendered with ``values`` (data)."""
        if self.texts is not None:
            return self.texts(key, **values)
        from .i18n import render_system

        return render_system(key, self.language, **values)

    def title(self, slot: str, value: Any) -> str:
        """How the customer reads ``value`` of choice slot ``slot`` (its choice title in the
        conversation's language), else the value as it is."""
        if self.titles is not None and value not in (None, ""):
            return self.titles(slot, value)
        return "" if value is None else str(value)


class Slots(dict):  # type: ignore[type-arg]
    """Slots (and customer fields) as templates see them: a missing key is None, not an error."""

    def __missing__(self, key: str) -> None:
        return None


@dataclass
class TurnState:
    """The conversation's state between turns (what the store keeps, as a dict)."""

    flow: str | None = None
    step: int = 0
    awaiting: str | None = None
    attempts: int = 0
    misses: int = 0
    slots: dict[str, Any] = field(default_factory=dict)
    confirm: Any = None                                      # a pre-filled value awaiting yes/no
    confirm_more: dict[str, Any] = field(default_factory=dict)   # the next questions' values, confirmed with it
    recent: list[str] = field(default_factory=list)          # the customer's last messages
    signals: dict[str, Any] = field(default_factory=dict)    # highest complaint/urgency seen
    turns: int = 0                                           # customer messages handled
    complaint_turn: int | None = None                        # the last turn that dealt with a complaint
    asked: bool = False                                      # the bot's last message asked something
    offered: str | None = None                               # the payload the bot's last message offered
    # the last flow started that asks the customer something (has collect steps): whose fields the
    # agent desk shows as "captured details" after a handoff (the flow itself has ended by then)
    asking_flow: str | None = None
    missed: int = 0                                          # misunderstood messages in a row (the offer of a
    #                                                          person does not reset it, unlike ``misses``)
    language_chosen: bool = False                            # the customer asked for the conversation's language

    @classmethod
    def load(cls, d: Mapping[str, Any] | None) -> "TurnState":
        if not d:
            return cls()
        return cls(flow=d.get("flow"), step=int(d.get("step", 0)), awaiting=d.get("awaiting"),
                   attempts=int(d.get("attempts", 0)), misses=int(d.get("misses", 0)),
                   slots=dict(d.get("slots") or {}), confirm=d.get("confirm"),
                   confirm_more=dict(d.get("confirm_more") or {}),
                   recent=list(d.get("recent") or []), signals=dict(d.get("signals") or {}),
                   turns=int(d.get("turns", 0)), complaint_turn=d.get("complaint_turn"),
                   asked=bool(d.get("asked", False)), offered=d.get("offered"),
                   asking_flow=d.get("asking_flow"), missed=int(d.get("missed", 0)),
                   language_chosen=bool(d.get("language_chosen", False)))

    def dump(self) -> dict[str, Any]:
        d = {"v": STATE_VERSION, "flow": self.flow, "step": self.step, "awaiting": self.awaiting,
             "attempts": self.attempts, "misses": self.misses, "slots": self.slots,
             "confirm": self.confirm, "recent": self.recent, "signals": self.signals,
             "turns": self.turns, "complaint_turn": self.complaint_turn, "asked": self.asked,
             "offered": self.offered}
        if self.confirm_more:     # only while a confirmation of several answers is pending
            d["confirm_more"] = self.confirm_more
        if self.asking_flow:      # only once a flow asked something
            d["asking_flow"] = self.asking_flow
        if self.missed:           # only while the bot has misunderstood the latest messages
            d["missed"] = self.missed
        if self.language_chosen:  # only once the customer asked for a language ("English please")
            d["language_chosen"] = True
        return d


class Turn:
    """Mutable scratch space of one turn."""

    def __init__(self, turn: TurnInput, st: TurnState) -> None:
        self.input = turn
        self.st = st
        self.replies: list[Reply] = []
        self.handoff: HandoffRequest | None = None
        self.actions_run = 0       # numbers the action calls of this turn (their ActionContext.key)
        self.answered = False            # the message answered a collect step (or a pre-filled value)
        self.asked_before = st.asked     # the bot's previous message asked something
        self.flows_run: set[str] = set()     # flows whose steps ran this turn
        self.actions_called: list[str] = []  # names of the actions that ran this turn
        self.missed = False                  # the fallback answered: the bot did not understand
        self.lang = turn.language or None    # what the replies are written in

    def context(self) -> dict[str, Any]:
        return {"slots": Slots(self.st.slots), "customer": Slots(self.input.customer),
                "channel": self.input.channel, "message": self.input.text, "payload": self.input.payload}
