"""Templates: customer text is never template source; flow templates run in a sandbox."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from bot.errors import FlowValidationError
from flows import FlowEngine, FlowSet, TurnInput, load_flows
from flows.render import Renderer, TemplateError

INJECTIONS = ["{{ 7*7 }}", "{% for x in y %}boom{% endfor %}", "{% for x in y %}", "{{ slots }}",
              "{# c #}{{ ''.__class__ }}"]

FLOWS = """\
intents:
  echo: {examples: [echo]}
  escape_mro: {examples: [mro]}
  escape_globals: {examples: [globals]}
  mutate: {examples: [mutate]}
  gaps: {examples: [gaps]}
  cond: {examples: [cond]}
flows:
  echo:
    trigger: echo
    steps:
      - collect: note
        ask: "Say something."
      - set: {copied: "{{ message }}", both: "{{ slots.note }}!"}
      - say: "You wrote: {{ message }}"
      - say: "Saved: {{ slots.note }} | {{ slots.copied }} | {{ slots.both }}"
  escape_mro:
    trigger: escape_mro
    steps:
      - say: "{{ ''.__class__.__mro__ }}"
  escape_globals:
    trigger: escape_globals
    steps:
      - say: "{{ cycler.__init__.__globals__ }}"
  mutate:
    trigger: mutate
    steps:
      - say: "{{ slots.update({'admin': true}) }}"
  gaps:
    trigger: gaps
    steps:
      # `note` is collected by another flow (a slot that does not exist at all is a load error)
      - say: "[{{ slots.note }}][{{ customer.nope }}][{{ channel }}]"
  cond:
    trigger: cond
    steps:
      - collect: age
        type: number
        ask: Age?
        optional: true
      - branch:
          - if: slots.age > 17
            then: adult
          - if: slots.age is none
            then: unknown
          - else: true
            then: minor
      - id: adult
        say: adult
      - end
      - id: minor
        say: minor
      - end
      - id: unknown
        say: unknown
"""


@pytest.fixture(scope="module")
def flowset(tmp_path_factory: pytest.TempPathFactory) -> FlowSet:
    d = tmp_path_factory.mktemp("render_flows")
    (d / "flows.yaml").write_text(FLOWS, encoding="utf-8")
    return load_flows(d)


async def run(fs: FlowSet, *texts: str, start: str, **turn: Any) -> list[list[str]]:
    engine = FlowEngine(fs)
    state: dict[str, Any] | None = None
    out = []
    for i, text in enumerate((None, *texts)):
        t = TurnInput("", payload=f"intent:{start}", **turn) if i == 0 else TurnInput(text or "", **turn)
        res = await engine.handle(state, t)
        state = json.loads(json.dumps(res.state))
        out.append([r.text for r in res.replies])
    return out


# -- customer text stays literal -----------------------------------------------------------


@pytest.mark.parametrize("evil", INJECTIONS)
async def test_customer_text_is_echoed_literally(flowset: FlowSet, evil: str) -> None:
    replies = await run(flowset, f"hi {evil} bye", start="echo")
    text = f"hi {evil} bye"
    assert replies == [["Say something."], [f"You wrote: {text}", f"Saved: {text} | {text} | {text}!"]]
    assert "49" not in "".join(replies[1])


def test_renderer_never_renders_variables_twice() -> None:
    r = Renderer()
    assert r.render("You wrote: {{ message }}", {"message": "{{ 7*7 }}"}) == "You wrote: {{ 7*7 }}"
    assert r.render("{{ m }}", {"m": "{% for x in y %}"}) == "{% for x in y %}"
    assert r.render("{{ 7*7 }}", {}) == "49"  # flow authors' own templates do run


def test_no_autoescape() -> None:
    assert Renderer().render("{{ m }}", {"m": "<b>Tom & Jerry's</b>"}) == "<b>Tom & Jerry's</b>"


# -- sandbox ---------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ slots.update({'a': 1}) }}",
    "{{ slots.pop('a') }}",
])
def test_sandbox_blocks_escapes(source: str) -> None:
    r = Renderer()
    r.check_template(source)  # it compiles: the sandbox acts when it runs
    with pytest.raises(TemplateError) as ei:
        r.render(source, {"slots": {"a": 1}})
    assert isinstance(ei.value.__cause__, SecurityError)
    assert "unsafe" in str(ei.value)


@pytest.mark.parametrize("flow", ["escape_mro", "escape_globals", "mutate"])
async def test_sandbox_escape_in_a_flow_raises_template_error(flowset: FlowSet, flow: str) -> None:
    engine = FlowEngine(flowset)
    state = {"slots": {"a": 1}}
    with pytest.raises(TemplateError, match="unsafe"):
        await engine.handle(state, TurnInput("", payload=f"intent:{flow}"))
    assert state == {"slots": {"a": 1}}


def test_sandbox_escape_in_expression() -> None:
    with pytest.raises(TemplateError) as ei:
        Renderer().evaluate("''.__class__.__mro__", {})
    assert isinstance(ei.value.__cause__, SecurityError)


# -- missing values ------------------------------------------------------------------------


async def test_missing_slot_and_customer_field_render_empty(flowset: FlowSet) -> None:
    assert await run(flowset, start="gaps") == [["[][][]"]]
    assert await run(flowset, start="gaps", channel="telegram", customer={"nope": "x"}) == [["[][x][telegram]"]]


def test_none_renders_empty_but_undefined_names_fail() -> None:
    r = Renderer()
    assert r.render("[{{ v }}]", {"v": None}) == "[]"
    assert r.render("[{{ v }}]", {"v": 0}) == "[0]"
    with pytest.raises(TemplateError) as ei:
        r.render("{{ typo }}", {})
    assert isinstance(ei.value.__cause__, UndefinedError)


def test_render_strips_and_passes_plain_text_through() -> None:
    r = Renderer()
    assert r.render("  {{ a }}  \n", {"a": "x"}) == "x"
    assert r.render("no braces at all", {}) == "no braces at all"


def test_check_template_reports_syntax_errors() -> None:
    r = Renderer()
    r.check_template("{% if a %}yes{% else %}no{% endif %}")
    with pytest.raises(TemplateError, match="^template error:"):
        r.check_template("{% if a %}never closed")
    with pytest.raises(TemplateError, match="^template error:"):
        r.check_template("{{ a ")


# -- conditions (compile_expression) ---------------------------------------------------------


@pytest.mark.parametrize("expr,ctx,expected", [
    ("slots.a == 'x'", {"slots": {"a": "x"}}, True),
    ("slots.a == 'x'", {"slots": {"a": "y"}}, False),
    ("slots.n >= 18 and slots.ok", {"slots": {"n": 18, "ok": True}}, True),
    ("slots.n >= 18 and slots.ok", {"slots": {"n": 18, "ok": False}}, False),
    ("slots.c in ['shipping', 'payment']", {"slots": {"c": "payment"}}, True),
    ("not slots.tags", {"slots": {"tags": []}}, True),
    ("slots.tags | length == 2", {"slots": {"tags": [1, 2]}}, True),
    ("customer.name is string", {"customer": {"name": "Ada"}}, True),
])
def test_evaluate(expr: str, ctx: dict[str, Any], expected: bool) -> None:
    assert Renderer().evaluate(expr, ctx) is expected


def test_expression_errors() -> None:
    r = Renderer()
    r.check_expression("slots.a == 1")
    with pytest.raises(TemplateError, match="^condition error:"):
        r.check_expression("slots.a ==")
    with pytest.raises(TemplateError, match="^condition error:"):
        r.check_expression("{{ a }}")
    with pytest.raises(TemplateError, match="cannot evaluate"):
        r.evaluate("slots.n > 3", {"slots": {"n": None}})  # None > 3


@pytest.mark.parametrize("age,reply", [("30", "adult"), ("12", "minor"), ("skip", "unknown")])
async def test_branch_conditions_in_a_flow(flowset: FlowSet, age: str, reply: str) -> None:
    # `slots.age > 17` with age None fails to evaluate: the engine treats it as false
    assert await run(flowset, age, start="cond") == [["Age?"], [reply]]


def test_bad_condition_is_a_load_error(tmp_path: Path) -> None:
    from bot.errors import FlowValidationError

    (tmp_path / "f.yaml").write_text(textwrap.dedent("""\
        intents:
          a: {examples: [a]}
        flows:
          a:
            trigger: a
            steps:
              - branch:
                  - if: "slots.x = 1"
                    then: end
        """))
    with pytest.raises(FlowValidationError) as ei:
        load_flows(tmp_path)
    (err,) = ei.value.errors
    assert err.line == 8 and err.reason.startswith("branch case 1: condition error:")   # the if: line


@pytest.mark.parametrize("name", ["items", "update"])
def test_slot_named_like_a_dict_method_is_refused(tmp_path: Path, name: str) -> None:
    # templates read slots.NAME; a slot called `items` would reach dict.items instead
    (tmp_path / "f.yaml").write_text(textwrap.dedent(f"""\
        intents:
          a: {{examples: [a]}}
        flows:
          a:
            trigger: a
            steps:
              - collect: {name}
                ask: What?
        """))
    with pytest.raises(FlowValidationError) as ei:
        load_flows(tmp_path)
    (err,) = ei.value.errors
    assert err.line == 7 and f"slot name {name!r} is reserved" in err.reason


# -- what a template reads (for the loader's name checks) ------------------------------------


def test_template_names_lists_context_names_and_literal_slot_reads() -> None:
    r = Renderer()
    found = r.template_names(
        "{{ slots.a }}{{ slots['b'] }}{{ slots.get('c') }}{{ slots[key] }}{{ slots.items() | list }}"
        "{% set n = 1 %}{{ n }}{% for x in range(2) %}{{ loop.index }}{{ x }}{% endfor %}{{ customer.name }}")
    assert found.names == {"slots", "key", "customer"}       # not n, x, loop, nor the global range
    assert found.slots == ("a", "b", "c")
    # a template's own `slots` variable is not the conversation's slots
    assert r.template_names("{% set slots = {'z': 1} %}{{ slots.z }}").slots == ()
    with pytest.raises(TemplateError, match="^template error:"):
        r.template_names("{{ slots.a ")


def _demo_template_texts() -> list[str]:
    """Every text the demo flows and canned replies give the loader as a template."""
    from flows import render

    seen: list[str] = []
    real = render.Renderer.template_names

    def spy(self: Renderer, source: str) -> Any:
        seen.append(source)
        return real(self, source)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(render.Renderer, "template_names", spy)
        fs = load_flows(Path(__file__).resolve().parents[2] / "flows" / "demo")
        from handoff.canned import load_canned

        load_canned(Path(__file__).resolve().parents[2] / "flows" / "demo", fs.settings.languages)
    return seen


def test_template_names_of_plain_texts_skip_jinja_and_answer_as_jinja_would() -> None:
    """A text without "{" is not compiled (issue 20: time to ready); what it reads, whether it
    compiles are what jinja says, on every demo text and on look-alikes."""
    texts = _demo_template_texts()
    plain = [t for t in texts if "{" not in t]
    assert len(plain) > 50 and len(texts) - len(plain) > 20       # the demo has both kinds
    texts += ["50% off, #1 choice", "} }} %} #}", "a\n\n  b  ", "", "  ", "{{ slots.a }} {% if x %}y{% endif %}",
              "{# only a comment #}plain", "{{ '{' }}"]
    for text in texts:
        slow = Renderer()
        slow.check_template(text)                       # compiled and parsed, as before
        expected = slow._names(slow.env.parse(text))
        assert Renderer().template_names(text) == expected, text
    r = Renderer()
    r.template_names("{{ slots.a }}")
    assert "{{ slots.a }}" in r._templates               # compiled once, for rendering
    with pytest.raises(TemplateError, match="^template error:"):
        r.template_names("{% block a %}{% endblock %}{% block a %}{% endblock %}")   # a compile-time error


def test_expression_names() -> None:
    r = Renderer()
    found = r.expression_names("slot.want_human == 'yes' or slots.x in ['a'] and channel")
    assert found.names == {"slot", "slots", "channel"}
    assert found.slots == ("x",)
    with pytest.raises(TemplateError, match="^condition error:"):
        r.expression_names("slots.a ==")


# -- a known slot that is not filled yet, in every template -----------------------------------


def test_a_missing_key_of_a_mapping_is_none_but_unsafe_attributes_still_fail() -> None:
    # bot/runtime.py renders handoff_message with the filled slots as a plain dict
    r = Renderer()
    src = "{% if slots.reference %}ref {{ slots.reference }}{% endif %}[{{ slots['x'] }}][{{ customer.name }}]"
    assert r.render(src, {"slots": {}, "customer": {}}) == "[][]"
    assert r.render(src, {"slots": {"reference": "C-1", "x": 0}, "customer": {"name": "Ada"}}) == "ref C-1[0][Ada]"
    assert r.evaluate("slots.reference is none", {"slots": {}}) is True
    with pytest.raises(TemplateError) as ei:
        r.render("{{ slots.__class__.__mro__ }}", {"slots": {}})
    assert isinstance(ei.value.__cause__, SecurityError)
    with pytest.raises(TemplateError) as ei:
        r.render("{{ slots.reference.upper() }}", {"slots": {}})     # None.upper: still an error
    with pytest.raises(TemplateError):
        r.render("{{ nope }}", {"slots": {}})                        # unknown names stay strict


async def test_handoff_message_reading_a_slot_that_is_not_filled_still_hands_off(tmp_path: Path) -> None:
    import shutil

    from bot.config import Config, HandoffConfig, TeamConfig
    from bot.events import EventBus
    from bot.locks import KeyedLock
    from bot.model import ConversationState, Inbound
    from bot.runtime import Runtime
    from bot.storage import open_store
    from conftest import DEMO_FLOWS

    flows = tmp_path / "flows"
    shutil.copytree(DEMO_FLOWS, flows)
    settings = flows / "settings.yaml"
    text = settings.read_text(encoding="utf-8")
    head = "  handoff_message:\n    en: >-\n"       # given by language (README "Languages")
    assert head in text
    settings.write_text(text.replace(head, head + "      {% if slots.reference %}"
                                     "About {{ slots.reference }}: {% endif %}\n", 1), encoding="utf-8")
    store = await open_store("sqlite:///:memory:")
    config = Config(handoff=HandoffConfig(teams={"support": TeamConfig(name="Customer Care"),
                                                 "complaints": TeamConfig(name="Complaints")}))
    engine = FlowEngine(load_flows(flows, teams=["support", "complaints"]))
    runtime = Runtime(store=store, engine=engine, config=config, locks=KeyedLock(), events=EventBus())
    try:
        res = await runtime.accept(Inbound("webchat", "v1", "m1", "I want to talk to a person"))
        await runtime.drain()
        conv = await store.get_conversation(res.message.conversation_id)
        assert conv is not None and conv.state is ConversationState.WAITING
        outs = [m.text for m in await store.history(conv.id) if m.direction == "out"]
        assert len(outs) == 1 and outs[0].startswith("I'm passing you to our Customer Care team")
    finally:
        await runtime.stop()
        await store.close()
