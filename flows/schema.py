"""Pydantic models of the flow YAML. The loader reports their errors with file:line."""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .i18n import LanguageSettings, Text, t3

SLOT_TYPES = ("text", "choice", "number", "email", "phone", "regex", "attachment")
RESERVED_TARGETS = ("handoff", "end")


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Intent(_M):
    examples: list[str] = Field(min_length=1)
    description: Text = ""

    @field_validator("examples")
    @classmethod
    def _non_empty(cls, v: list[str]) -> list[str]:
        if any(not isinstance(e, str) or not e.strip() for e in v):
            raise ValueError("examples must be non-empty strings")
        return v


class ButtonSpec(_M):
    title: Text
    payload: str


class ChoiceSpec(_M):
    value: str
    title: Text | None = None
    synonyms: list[str] = Field(default_factory=list)


class _Step(_M):
    id: str | None = None


class SayStep(_Step):
    say: Text
    buttons: list[Union[str, ButtonSpec]] = Field(default_factory=list)


class CollectStep(_Step):
    collect: str
    ask: Text
    label: str | None = Field(None, max_length=60, description="how the agent desk names this field "
                              "(captured details); default: the slot name, e.g. order_number -> Order number")
    type: Literal["text", "choice", "number", "email", "phone", "regex", "attachment"] = "text"
    choices: list[Union[str, ChoiceSpec]] = Field(default_factory=list)
    pattern: str | None = None
    normalize: Literal["none", "upper", "lower"] = "none"
    min: float | None = None
    max: float | None = None
    min_length: int = 1
    invalid: Text | None = Field(None, description="said before re-asking after invalid input")
    max_attempts: int = Field(3, ge=1, le=10)
    on_fail: str = "handoff"
    optional: bool = False
    personal: bool = Field(False, description="the value is personal data (a phone number for a call-back): "
                           "kept for the flow, masked in Slack copies and to agents who do not own the "
                           "conversation, exported and erased with the customer (README \"Privacy\")")
    skip_if_filled: bool = True
    prefill: Literal["auto", "none", "email", "phone", "amount", "date", "order_number", "choice", "message"] = Field(
        "auto", description="take the value from what the customer already said and confirm it; auto: by type; "
        "choice: the one choice their words name; message: a message of theirs long enough to be the answer")


def slot_label(step: CollectStep) -> str:
    """What the agent desk calls the field ``step`` collects: its ``label:``, else its slot name
    made readable (``order_number`` -> ``Order number``)."""
    if step.label and step.label.strip():
        return step.label.strip()
    words = step.collect.replace("_", " ").replace("-", " ").split()
    text = " ".join(words) or step.collect
    return text[:1].upper() + text[1:]


class BranchCase(_M):
    if_: str | None = Field(None, alias="if")
    else_: bool | None = Field(None, alias="else")
    then: str

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class BranchStep(_Step):
    branch: list[dict[str, Any]]


class SetStep(_Step):
    set: dict[str, Any] = Field(min_length=1)


class ActionStep(_Step):
    action: str
    save_as: str | None = None


class HandoffSpec(_M):
    team: str | None = None
    reason: Text = Field(default_factory=lambda: t3("you asked to talk to a person", "pediste hablar con una persona",
                                                  "Anda meminta berbicara dengan petugas"))
    priority: int = 0
    cause: Literal["customer_asked", "misunderstood", "complaint", "rule", "reopened", "other"] | None = Field(
        None, description="why it hands over, for the figures (README \"Metrics\"); empty: decided from the flow")


class HandoffStep(_Step):
    handoff: HandoffSpec


class GotoStep(_Step):
    goto: str


class EndStep(_Step):
    end: Literal[True]


CALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


class CallStep(_Step):
    """Calls one of the business's systems over HTTP (README "Calling your systems")."""

    call: str = Field(description="the endpoint's name in config integrations.endpoints")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    path: str = Field("", description="appended to the endpoint's base_url; a template whose values are "
                      "URL-encoded: /orders/{{ slots.order_number }}")
    query: dict[str, str] = Field(default_factory=dict, description="query parameters; values are templates")
    body: dict[str, Any] | None = Field(None, description="JSON body (POST, PUT, PATCH); string values are "
                                        "templates, rendered as text")
    save: dict[str, str] = Field(default_factory=dict, description="slot: field of the JSON answer, dotted "
                                 "for nested fields and list items (delivery.eta, items.0.name); '.' is the "
                                 "whole answer")
    on_success: str | None = Field(None, description="where to go on a 2xx answer; default: the next step")
    on_not_found: str | None = Field(None, description="where to go on a 404; default: on_failure")
    on_status: dict[int, str] = Field(default_factory=dict, description="where to go on other HTTP statuses "
                                      "(409: already_shipped); the answer's fields are saved too")
    on_failure: str = Field("end", description="where to go when the call fails (timeout, connection error, "
                            "5xx after the retries, any other status, an answer that is not JSON): a step id, "
                            "flow:NAME, handoff or end")
    failure_message: Text | None = Field(None, description="said when the call fails, before on_failure; "
                                         "default: settings.messages.call_failed (built in)")


STEP_KINDS: dict[str, type[_Step]] = {
    "say": SayStep, "collect": CollectStep, "branch": BranchStep, "set": SetStep,
    "action": ActionStep, "call": CallStep, "handoff": HandoffStep, "goto": GotoStep, "end": EndStep,
}
Step = Union[SayStep, CollectStep, BranchStep, SetStep, ActionStep, CallStep, HandoffStep, GotoStep, EndStep]


class Flow(_M):
    description: Text = ""
    trigger: Union[str, list[str], None] = None
    interrupts: bool = Field(False, description="may interrupt another flow's question (human, restart, help)")
    steps: list[Any] = Field(min_length=1, description="step mappings, or the shorthand `end`")

    def triggers(self) -> list[str]:
        if self.trigger is None:
            return []
        return [self.trigger] if isinstance(self.trigger, str) else list(self.trigger)


class FallbackSettings(_M):
    messages: list[Text] = Field(default_factory=lambda: [t3(
        "Sorry, I didn't quite get that. Could you put it another way?",
        "Perdona, no te he entendido bien. ¿Puedes decirlo de otra manera?",
        "Maaf, saya kurang paham. Bisakah Anda mengatakannya dengan cara lain?")])
    max_misses: int = Field(2, ge=1)
    offer_human: Text = t3("I'm not sure I can help with that. Would you like to talk to a person?",
                           "No estoy seguro de poder ayudarte con eso. ¿Quieres hablar con una persona?",
                           "Saya tidak yakin bisa membantu soal itu. Apakah Anda ingin berbicara dengan petugas?")
    suggestions: int = Field(3, ge=0, le=6, description="top intents offered as buttons when clarifying")
    topics: list[str] = Field(default_factory=list,
                              description="intents offered when nothing came close (default: the first ones)")
    clarify: Text = Field(t3("Did you mean {{ options | join(' or ') }}?", "¿Te refieres a {{ options | join(' o ') }}?",
                             "Apakah maksud Anda {{ options | join(' atau ') }}?"),
                         description="below the confidence threshold: the top intents as buttons")


class ComplaintSettings(_M):
    flow: str | None = Field("complaint", description="intent whose flow files a complaint; null: don't offer")
    threshold: float = Field(0.6, ge=0, le=1, description="complaint score from which the flow is offered")
    offer: Text = t3("I'm sorry something went wrong. Would you like me to open a complaint? "
                     "It only takes a minute, and you'll get a reference at once.",
                     "Siento que algo haya ido mal. ¿Quieres que abra una reclamación? "
                     "Solo lleva un minuto y recibirás una referencia al momento.",
                     "Maaf ada yang tidak beres. Apakah Anda ingin saya membuat keluhan? "
                     "Hanya butuh semenit, dan Anda langsung mendapat nomor referensi.")
    offer_button: Text = t3("Yes, file a complaint", "Sí, abrir una reclamación", "Ya, buat keluhan")
    survey_flow: str | None = Field("satisfaction", description="flow started when an agent resolves a "
                                    "complaint (asks for a 1-5 score); null: no survey")
    follow_up_flow: str | None = Field("follow_up", description="flow started complaints.sla.follow_up after "
                                       "resolving (asks whether it stayed solved); null: no follow-up")
    examples: dict[Literal["complaint", "not_complaint"], list[str]] = Field(
        default_factory=dict, description="your own examples, added to the default set")


class Settings(_M):
    threshold: float | None = Field(None, ge=0, le=1, description="intent confidence needed; default: calibrated")
    interrupt_threshold: float = Field(0.5, ge=0, le=1)
    fallback: FallbackSettings = FallbackSettings()
    complaints: ComplaintSettings = ComplaintSettings()
    out_of_scope: list[str] = Field(default_factory=list,
                                    description="messages you don't handle; they only tune the confidence threshold")
    confirm_prefill: Text = t3("You mentioned {{ value }}. Is that your {{ label }}?",
                               "Mencionaste {{ value }}. ¿Es tu {{ label }}?",
                               "Anda menyebut {{ value }}. Apakah itu {{ label }} Anda?")
    # several answers found at once (the next questions too): confirmed with one question
    confirm_prefills: Text = t3(
        "Let me check I have this right:\n{% for label, value in items %}- {{ label }}: {{ value }}\n{% endfor %}"
        "Is that right?",
        "Déjame comprobar que lo tengo bien:\n{% for label, value in items %}- {{ label }}: {{ value }}\n"
        "{% endfor %}¿Es correcto?",
        "Saya periksa dulu apakah sudah benar:\n{% for label, value in items %}- {{ label }}: {{ value }}\n"
        "{% endfor %}Apakah sudah benar?")
    yes_words: list[str] = Field(default_factory=lambda: ["yes", "y", "yeah", "yep", "correct", "right", "sure",
                                                         "that's right", "thats right", "ok", "okay",
                                                         # es, id (README "Languages")
                                                         "sí", "si", "claro", "vale", "correcto", "ya", "iya",
                                                         "betul", "benar", "boleh"])
    handoff_message: Text = t3(
        "I'm passing you to our {{ team }} team because {{ reason }}. "
        "You are number {{ position }} in the queue. They will see everything you've told me, "
        "so you won't have to repeat yourself.",
        "Te paso con nuestro equipo de {{ team }} porque {{ reason }}. "
        "Eres el número {{ position }} en la cola. Verán todo lo que me has contado, "
        "así que no tendrás que repetirlo.",
        "Saya teruskan Anda ke tim {{ team }} kami karena {{ reason }}. "
        "Anda nomor {{ position }} dalam antrean. Mereka akan melihat semua yang sudah Anda ceritakan, "
        "jadi Anda tidak perlu mengulanginya.")
    welcome_flow: str | None = None
    languages: LanguageSettings = LanguageSettings()
    messages: dict[str, Text] = Field(default_factory=dict, description="omnibot's own messages to customers "
                                      "(agent_joined, resolved, ...; see flows/i18n.py SYSTEM_MESSAGES), per language")
    skip_words: list[str] = Field(default_factory=lambda: ["skip", "no", "none", "nothing", "no thanks",
                                                          "no photo", "not now",
                                                          "omitir", "saltar", "nada", "ahora no",
                                                          "lewati", "tidak", "tidak ada", "nanti saja"])


class FlowFile(_M):
    """One YAML file: any of intents, flows and (in one file only) settings."""

    intents: dict[str, Intent] = Field(default_factory=dict)
    flows: dict[str, Flow] = Field(default_factory=dict)
    settings: Settings | None = None
