"""Loader: the demo flows load; every error is a FlowError with the right file and line."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from bot.errors import FlowError, FlowValidationError
from flows import FlowSet, load_flows
from flows.schema import CollectStep, EndStep, HandoffStep, SayStep

DEMO = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "flows" / "shop"  # conftest.SHOP_FLOWS


def write(folder: Path, name: str, text: str) -> Path:
    """Write dedented YAML; its first line is line 1 (no leading blank line)."""
    p = folder / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return p


def errors_of(path: Path, **kw: object) -> list[FlowError]:
    with pytest.raises(FlowValidationError) as ei:
        load_flows(path, **kw)  # type: ignore[arg-type]
    errs = ei.value.errors
    assert errs, "FlowValidationError without errors"
    assert all(isinstance(e, FlowError) for e in errs)
    return errs


def where(errs: list[FlowError]) -> list[tuple[str, int | None]]:
    return [(Path(e.path).name, e.line) for e in errs]


HEAD = """\
intents:
  hi:
    examples: [hi, hello]
"""


# -- the demo ------------------------------------------------------------------


def test_demo_flows_load_with_expected_flows_and_intents() -> None:
    fs = load_flows(DEMO, teams=["support", "complaints"])
    assert isinstance(fs, FlowSet)
    expected = {"acknowledge", "complaint", "complaint_status", "link_accounts", "link_enter", "goodbye", "greet", "help", "human", "opening_hours", "payment_methods", "privacy_request",
                "restart", "returns", "shipping_times", "thanks"}
    assert set(fs.flows) == expected | {"satisfaction", "follow_up"}   # started by omnibot, no trigger
    assert set(fs.intents) == expected
    for name in expected:  # every demo flow is triggered by the intent of the same name
        assert fs.flow_for_intent(name) is fs.flows[name]
    assert {n for n, f in fs.flows.items() if f.flow.interrupts} == {"human", "restart", "help", "privacy_request"}
    assert sorted(Path(f).name for f in fs.files) == [
        "complaint.yaml", "control.yaml", "faq.yaml", "intents.yaml", "settings.yaml"]
    assert fs.settings.fallback.max_misses == 3
    assert all(len(ex) >= 5 for ex in fs.examples().values())


def demo_line(file: str, needle: str) -> int:
    """1-based line of the first line of a demo file containing ``needle``."""
    lines = (DEMO / file).read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if needle in line)


def test_demo_complaint_flow_structure() -> None:
    fs = load_flows(DEMO, teams=["support", "complaints"])
    c = fs.flows["complaint"]
    assert Path(c.file).name == "complaint.yaml"
    assert c.line == demo_line("complaint.yaml", "  complaint:")
    collects = [s.collect for s in c.steps if isinstance(s, CollectStep)]
    assert collects == ["category", "order_number", "description", "photos", "want_human"]
    assert set(c.ids) == {"to_agent", "wrap_up"}
    to_agent = c.steps[c.index_of("to_agent")]
    assert isinstance(to_agent, HandoffStep)
    assert (to_agent.handoff.team, to_agent.handoff.priority) == ("complaints", 1)
    assert isinstance(c.steps[c.index_of("wrap_up")], SayStep)
    assert len(c.step_lines) == len(c.steps)
    assert c.step_lines[0] == demo_line("complaint.yaml", "- set:")
    assert c.step_lines[c.index_of("wrap_up")] == demo_line("complaint.yaml", "- id: wrap_up")


def test_demo_rejects_a_team_list_without_complaints() -> None:
    errs = errors_of(DEMO, teams=["support"])
    assert len(errs) == 2     # the complaint's handoff, and the follow-up's "not solved" handoff
    assert {Path(e.path).name for e in errs} == {"complaint.yaml"}
    assert errs[0].line == demo_line("complaint.yaml", "- id: to_agent")  # the step holding the handoff
    assert errs[1].line == demo_line("complaint.yaml", "- handoff:")
    assert all("team 'complaints' is not in config handoff.teams (support)" in e.reason for e in errs)


def test_single_file_and_content_hash(tmp_path: Path) -> None:
    p = write(tmp_path, "one.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps:
      - say: hello
      - end
""")
    fs = load_flows(p)
    assert list(fs.flows) == ["f"]
    assert isinstance(fs.flows["f"].steps[1], EndStep)  # the `- end` shorthand
    h1 = fs.content_hash()
    assert h1 == load_flows(p).content_hash()
    p.write_text(p.read_text().replace("[hi, hello]", "[hi, hey]"))
    assert load_flows(p).content_hash() != h1


# -- YAML-level errors ------------------------------------------------------------


def test_invalid_yaml_syntax_reports_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "bad.yaml", """\
intents:
  hi:
    examples: [hi]
flows:
  f:
    steps:
	- say: tab
""")
    errs = errors_of(tmp_path)
    assert where(errs) == [("bad.yaml", 7)]
    assert errs[0].reason.startswith("invalid YAML:")
    assert "'\\t'" in errs[0].reason


def test_unterminated_flow_sequence_reports_line(tmp_path: Path) -> None:
    write(tmp_path, "bad.yaml", """\
intents:
  hi:
    examples: [hi, hello
  bye:
    examples: [bye]
""")
    errs = errors_of(tmp_path)
    assert len(errs) == 1
    assert errs[0].reason.startswith("invalid YAML:")
    assert errs[0].line == 4  # where PyYAML notices the missing `]`


def test_key_given_twice(tmp_path: Path) -> None:
    write(tmp_path, "dup.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps:
      - say: one
        say: two
""")
    errs = errors_of(tmp_path)
    assert where(errs) == [("dup.yaml", 9)]
    assert errs[0].reason == "key 'say' is given twice"


def test_flow_name_given_twice_in_one_file(tmp_path: Path) -> None:
    write(tmp_path, "dup.yaml", HEAD + """\
flows:
  f:
    steps: [end]
  f:
    steps: [end]
""")
    errs = errors_of(tmp_path)
    assert where(errs) == [("dup.yaml", 7)]
    assert errs[0].reason == "key 'f' is given twice"


def test_str_of_error_is_path_line_reason(tmp_path: Path) -> None:
    p = write(tmp_path, "dup.yaml", "intents:\n  hi:\n    examples: [hi]\n  hi:\n    examples: [yo]\n")
    with pytest.raises(FlowValidationError) as ei:
        load_flows(tmp_path)
    (err,) = ei.value.errors
    assert str(err) == f"{p}:4: key 'hi' is given twice"
    assert str(ei.value) == str(err)


def test_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    write(tmp_path, "list.yaml", "- say: hi\n")
    errs = errors_of(tmp_path)
    assert where(errs) == [("list.yaml", 1)]
    assert "a flow file is a mapping" in errs[0].reason


# -- step-level errors --------------------------------------------------------------


def test_unknown_key_in_collect_step_points_at_that_key(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps:
      - collect: code
        type: regex
        regx: '[0-9]+'
        ask: Code?
""")
    errs = errors_of(tmp_path)
    assert where(errs) == [("f.yaml", 10)]
    assert errs[0].reason == "flows.f.steps[0].regx: unknown key 'regx'"
    assert str(errs[0]).endswith("f.yaml:10: flows.f.steps[0].regx: unknown key 'regx'")


def test_missing_key_points_at_the_step(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps:
      - say: first
      - collect: code
        type: text
""")
    errs = errors_of(tmp_path)
    assert where(errs) == [("f.yaml", 9)]
    assert errs[0].reason == "flows.f.steps[1].ask: missing key 'ask'"


def test_step_with_no_kind_and_with_two_kinds(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps:
      - say: fine
      - id: nothing
        ask: What?
      - say: a
        goto: end
""")
    errs = errors_of(tmp_path)
    assert where(errs) == [("f.yaml", 9), ("f.yaml", 11)]
    assert errs[0].reason.startswith("flows.f.steps[1]: no step kind; a step has exactly one of say, collect")
    assert errs[1].reason.startswith("flows.f.steps[2]: several step kinds (say, goto);")


def test_step_that_is_not_a_mapping_is_reported_with_the_other_errors(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps:
      - collect: x
      - 42
""")
    errs = errors_of(tmp_path)
    assert where(errs) == [("f.yaml", 8), ("f.yaml", 9)]
    assert errs[0].reason == "flows.f.steps[0].ask: missing key 'ask'"
    assert errs[1].reason.startswith("flows.f.steps[1]: a step is a mapping")


def test_unknown_goto_branch_and_on_fail_targets(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps:
      - goto: nowhere
      - branch:
          - if: slots.a == 1
            then: missing
          - else: true
            then: done
      - collect: a
        ask: A?
        on_fail: flow:nope
      - collect: b
        ask: B?
        on_fail: later
      - id: done
        goto: flow:f
""")
    errs = errors_of(tmp_path)
    assert where(errs) == [("f.yaml", 8), ("f.yaml", 9), ("f.yaml", 14), ("f.yaml", 17)]
    assert errs[0].reason.startswith("goto: unknown target 'nowhere' (a step id in this flow, flow:NAME")
    assert "done" in errs[0].reason  # lists the step ids that exist
    assert errs[1].reason.startswith("branch case 1: unknown target 'missing'")
    assert errs[2].reason == "collect 'a': on_fail: no flow named 'nope'"
    assert errs[3].reason.startswith("collect 'b': on_fail: unknown target 'later'")


def test_branch_case_errors(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps:
      - branch:
          - then: end
      - branch:
          - if: slots.a ==
            then: end
""")
    errs = errors_of(tmp_path)
    assert where(errs) == [("f.yaml", 8), ("f.yaml", 11)]     # a condition: the line of its if:
    assert "give either `if: CONDITION` or `else: true`" in errs[0].reason
    assert errs[1].reason.startswith("branch case 1: condition error:")


def test_bad_regex_pattern(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps:
      - say: hello
      - collect: code
        type: regex
        pattern: '[a-'
        ask: Code?
""")
    errs = errors_of(tmp_path)
    assert where(errs) == [("f.yaml", 9)]
    assert errs[0].reason.startswith("collect 'code': bad pattern: unterminated character set")


def test_jinja_syntax_error_in_say(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps:
      - set: {a: "fine {{ slots.a }}"}
      - say: "Hello {{ slots.name"
      - say: "{% if slots.a %}never closed"
""")
    errs = errors_of(tmp_path)
    assert where(errs) == [("f.yaml", 9), ("f.yaml", 10)]
    assert all(e.reason.startswith("say: template error:") for e in errs)


def test_trigger_naming_an_undefined_intent(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", HEAD + """\
flows:
  f:
    description: test
    trigger: [hi, bye]
    steps:
      - say: ok
""")
    errs = errors_of(tmp_path)
    assert where(errs) == [("f.yaml", 7)]
    assert errs[0].reason == "flow 'f': trigger intent 'bye' is not defined (intents: hi)"


def test_choice_without_choices_and_regex_without_pattern(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps:
      - collect: colour
        type: choice
        ask: Colour?
      - collect: code
        type: regex
        ask: Code?
""")
    errs = errors_of(tmp_path)
    assert where(errs) == [("f.yaml", 8), ("f.yaml", 11)]
    assert errs[0].reason == "collect 'colour': type choice needs choices:"
    assert errs[1].reason == "collect 'code': type regex needs pattern:"


def test_unknown_slot_type_points_at_type_key(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps:
      - collect: when
        ask: When?
        type: date
""")
    errs = errors_of(tmp_path)
    assert where(errs) == [("f.yaml", 10)]
    assert errs[0].reason.startswith("flows.f.steps[0].type:")


def test_unknown_action(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps:
      - action: create_reference
      - action: launch_rockets
""")
    errs = errors_of(tmp_path)
    assert where(errs) == [("f.yaml", 9)]
    assert errs[0].reason == "action 'launch_rockets' is unknown (known: create_reference, ticket_status, record_csat, reopen_ticket, link_code, link_with_code, reset)"


def test_handoff_team_not_in_teams(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps:
      - handoff: {team: support}
      - handoff:
          team: sales
          reason: because
""")
    errs = errors_of(tmp_path, teams=["support", "complaints"])
    assert where(errs) == [("f.yaml", 9)]
    assert errs[0].reason == "handoff: team 'sales' is not in config handoff.teams (complaints, support)"
    # Without a team list, any team is accepted.
    assert set(load_flows(tmp_path).flows) == {"f"}


def test_duplicate_step_id(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps:
      - id: a
        say: one
      - id: a
        say: two
""")
    errs = errors_of(tmp_path)
    assert where(errs) == [("f.yaml", 10)]
    assert errs[0].reason == "step id 'a' is used twice in flow 'f'"


# -- across files ---------------------------------------------------------------------


def test_duplicate_flow_and_settings_across_two_files(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps:
      - say: a
settings:
  threshold: 0.5
""")
    write(tmp_path, "b.yaml", """\
# second file
flows:
  g:
    steps: [end]
  f:
    steps:
      - say: b
settings:
  threshold: 0.4
""")
    errs = errors_of(tmp_path)
    assert where(errs) == [("b.yaml", 5), ("b.yaml", 8)]
    assert errs[0].reason == f"flow 'f' is already defined in {a}"
    assert errs[1].reason == f"settings: are already given in {a}; give them in one file only"


def test_duplicate_intent_across_files(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", HEAD + "flows:\n  f:\n    trigger: hi\n    steps: [end]\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yml").write_text("# comment\nintents:\n  hi:\n    examples: [hey]\n")
    errs = errors_of(tmp_path)
    assert where(errs) == [("b.yml", 3)]
    assert errs[0].reason == f"intent 'hi' is already defined at {a}:2"


def test_intent_triggering_two_flows(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps: [end]
  g:
    trigger: hi
    steps: [end]
""")
    errs = errors_of(tmp_path)
    assert where(errs) == [("f.yaml", 8)]
    assert errs[0].reason == "intent 'hi' triggers both flow 'f' and 'g'"


def test_settings_errors(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps: [end]
settings:
  welcome_flow: nope
  handoff_message: "{{ team "
""")
    errs = errors_of(tmp_path)
    assert where(errs) == [("f.yaml", 9), ("f.yaml", 10)]
    assert errs[0].reason == "settings.welcome_flow: no flow named 'nope'"
    assert errs[1].reason.startswith("settings.handoff_message: template error:")


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a flow")
    errs = errors_of(tmp_path)
    assert len(errs) == 1
    assert errs[0].path == str(tmp_path)
    assert errs[0].reason == "no flow files (*.yaml) in this folder"


def test_folder_with_only_intents_has_no_flows(tmp_path: Path) -> None:
    write(tmp_path, "i.yaml", HEAD)
    write(tmp_path, "empty.yaml", "# nothing here\n")
    errs = errors_of(tmp_path)
    assert [e.reason for e in errs] == ["no flows defined (add a flows: section)"]


def test_missing_path(tmp_path: Path) -> None:
    errs = errors_of(tmp_path / "nope")
    assert [e.reason for e in errs] == ["no such file or folder"]


def test_several_errors_in_one_file_are_all_reported(tmp_path: Path) -> None:
    p = write(tmp_path, "many.yaml", HEAD + """\
flows:
  f:
    trigger: [hi, ghost]
    steps:
      - goto: nowhere
      - action: launch_rockets
      - handoff: {team: sales}
      - say: "Hi {{ slots.name"
      - collect: b
        type: regex
        pattern: '(unclosed'
        ask: B?
      - collect: c
        type: choice
        ask: C?
      - collect: e
        ask: E?
        regx: x
""")
    with pytest.raises(FlowValidationError) as ei:
        load_flows(tmp_path, teams=["support"])
    errs = ei.value.errors
    assert all(e.path == str(p) for e in errs)
    got = sorted((e.line, e.reason.split(":")[0]) for e in errs)
    assert got == [
        (6, "flow 'f'"),                    # trigger ghost
        (8, "goto"),
        (9, "action 'launch_rockets' is unknown (known"),
        (10, "handoff"),
        (11, "say"),
        (12, "collect 'b'"),
        (16, "collect 'c'"),
        (21, "flows.f.steps[6].regx"),
    ]
    assert str(ei.value).splitlines() == [str(e) for e in errs]


# -- YAML alias bombs ------------------------------------------------------------------------


def billion_laughs(levels: int = 9) -> str:
    """A few hundred bytes of anchors and aliases that expand to 10**levels strings."""
    lines = ['lol0: &lol0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_fast_with_file_and_line(tmp_path: Path) -> None:
    bomb = billion_laughs()
    assert len(bomb) < 1000
    p = write(tmp_path, "bomb.yaml", HEAD + "flows:\n  f:\n    trigger: hi\n    steps: [end]\n" + bomb)
    t0 = time.perf_counter()
    errs = errors_of(tmp_path)
    assert time.perf_counter() - t0 < 1.0
    (err,) = errs
    assert err.path == str(p)
    lines = p.read_text().splitlines()
    assert err.line is not None and lines[err.line - 1].startswith("lol") and "*lol" in lines[err.line - 1]
    assert "aliases expand to more than" in err.reason


def test_small_anchors_and_aliases_still_work(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps:
      - collect: a
        type: choice
        ask: A?
        choices: &yes_no [{value: "yes", synonyms: [yep, sure]}, {value: "no", synonyms: [nope]}]
      - collect: b
        type: choice
        ask: B?
        choices: *yes_no
""")
    fs = load_flows(tmp_path)
    a, b = fs.flows["f"].steps
    assert isinstance(a, CollectStep) and isinstance(b, CollectStep)
    assert a.choices == b.choices and len(b.choices) == 2


def test_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", HEAD + "flows: &loop\n  f: *loop\n")
    errs = errors_of(tmp_path)
    assert where(errs) == [("f.yaml", 5)]
    assert "alias *loop is used inside its own anchor" in errs[0].reason


# -- templates and conditions read only names that exist -------------------------------------


def test_undefined_slot_in_say_is_an_error_with_a_hint(tmp_path: Path) -> None:
    # at run time this says "Your reference number is ." to every customer
    write(tmp_path, "f.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps:
      - action: create_reference
        save_as: reference
      - say: "Your reference number is {{ slots.refrence }}."
      - say: "Thanks for {{ slots['ordr'] }} and {{ slots.get('nothing_like_it') }}"
""")
    errs = errors_of(tmp_path)
    assert where(errs) == [("f.yaml", 10), ("f.yaml", 11), ("f.yaml", 11)]
    assert errs[0].reason == ("say: slot 'refrence' is never filled: no flow collects, sets or saves it; "
                              "did you mean 'reference'?")
    assert errs[1].reason.startswith("say: slot 'ordr' is never filled")
    assert errs[2].reason == "say: slot 'nothing_like_it' is never filled: no flow collects, sets or saves it"


def test_slot_typo_in_a_branch_condition_is_an_error(tmp_path: Path) -> None:
    # at run time `slot` is undefined: the condition fails, is treated as false, the wrong branch runs
    write(tmp_path, "f.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps:
      - collect: want_human
        type: choice
        ask: Talk to a person?
        choices: ["yes", "no"]
      - branch:
          - if: slot.want_human == 'yes'
            then: handoff
          - if: slots.want_humen == 'no'
            then: end
          - else: true
            then: end
""")
    errs = errors_of(tmp_path)
    assert where(errs) == [("f.yaml", 13), ("f.yaml", 15)]
    assert errs[0].reason == ("branch case 1: unknown name 'slot' (known here: channel, customer, message, "
                              "payload, slots); did you mean 'slots'?")
    assert errs[1].reason.startswith("branch case 2: slot 'want_humen' is never filled")
    assert errs[1].reason.endswith("did you mean 'want_human'?")


def test_bad_names_in_handoff_reason_ask_invalid_and_set(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps:
      - collect: order
        ask: "Order number, {{ customer.name }} ({{ chanel }})?"
        invalid: "{{ slots.order }} is not {{ slots.format }}"
      - set: {note: "{{ mesage }}", count: 1}
      - handoff:
          team: support
          reason: "of order {{ order }}"
""")
    errs = errors_of(tmp_path)
    assert where(errs) == [("f.yaml", 9), ("f.yaml", 10), ("f.yaml", 11), ("f.yaml", 14)]   # the keys' lines
    assert [e.reason for e in errs] == [
        "collect 'order': ask: unknown name 'chanel' (known here: channel, customer, message, payload, slots); "
        "did you mean 'channel'?",
        "collect 'order': invalid: slot 'format' is never filled: no flow collects, sets or saves it",
        "set 'note': unknown name 'mesage' (known here: channel, customer, message, payload, slots); "
        "did you mean 'message'?",
        "handoff reason: unknown name 'order' (known here: channel, customer, message, payload, slots); "
        "did you mean 'slots.order'?",
    ]


def test_template_syntax_error_in_settings_points_at_its_line(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps: [end]
settings:
  fallback:
    messages:
      - "Sorry?"
      - "Still {{ not sure"
  complaints:
    offer: "{% if customer.name %}Hi"
""")
    errs = errors_of(tmp_path)
    assert where(errs) == [("f.yaml", 12), ("f.yaml", 14)]
    assert errs[0].reason.startswith("settings.fallback.messages[1]: template error:")
    assert errs[1].reason.startswith("settings.complaints.offer: template error:")


def test_unknown_names_in_settings_each_with_the_names_it_gets(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps:
      - collect: order
        ask: Order?
settings:
  handoff_message: "To {{ team }} ({{ channel }}) about {{ slots.order }} and {{ slots.ordr }}, {{ position }}"
  confirm_prefill: "Is {{ valeu }} your {{ label }}?"
  fallback:
    clarify: "{{ option | join(' or ') }}?"
    offer_human: "{{ customer.name }}, a person? {{ options }}"
  complaints:
    offer_button: "File it, {{ customer.name }}"
""")
    errs = errors_of(tmp_path)
    got = [(e.line, e.reason) for e in errs]
    assert got == [
        (11, "settings.handoff_message: unknown name 'channel' (known here: customer, position, reason, slots, "
             "team)"),
        (11, "settings.handoff_message: slot 'ordr' is never filled: no flow collects, sets or saves it; "
             "did you mean 'order'?"),
        (12, "settings.confirm_prefill: unknown name 'valeu' (known here: channel, customer, label, message, payload, "
             "slots, value); did you mean 'value'?"),
        (14, "settings.fallback.clarify: unknown name 'option' (known here: channel, customer, message, options, "
             "payload, slots); did you mean 'options'?"),
        (15, "settings.fallback.offer_human: unknown name 'options' (known here: channel, customer, message, "
             "payload, slots)"),
        (17, "settings.complaints.offer_button: 'File it, {{ customer.name }}' is shown as written, not rendered "
             "(only texts such as say, ask and invalid are templates)"),
    ]


def test_buttons_and_choice_titles_are_not_templates(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps:
      - say: Pick one
        buttons: ["{{ slots.a }}", {title: "Hi {{ customer.name }}", payload: x}, "plain {curly}"]
      - collect: a
        type: choice
        ask: A?
        choices: [{value: x, title: "{% if true %}X{% endif %}"}, "{{ y }}", plain]
""")
    errs = errors_of(tmp_path)
    assert where(errs) == [("f.yaml", 9), ("f.yaml", 9), ("f.yaml", 13), ("f.yaml", 13)]
    assert [e.reason.split(":")[0] + ":" + e.reason.split(":")[1] for e in errs] == [
        "say: button", "say: button", "collect 'a': choice", "collect 'a': choice"]
    assert all("is shown as written, not rendered" in e.reason for e in errs)


def test_slots_are_known_from_every_flow_and_every_source(tmp_path: Path) -> None:
    # The engine keeps slots for the whole conversation: a slot one flow fills, another may read.
    write(tmp_path, "f.yaml", """\
intents:
  a: {examples: [a]}
  b: {examples: [b]}
flows:
  a:
    trigger: a
    steps:
      - collect: order
        ask: Order?
      - set: {greeting: "Hi {{ customer.name }}"}
      - action: create_reference
        save_as: ref
  b:
    trigger: b
    steps:
      - say: >-
          {{ slots.greeting }} {{ slots.order }} {{ slots.ref }} due {{ slots.ticket_due }}
          at {{ slots.ticket_department }} ({{ slots.ticket_severity }}); {{ slots.reference }}
      - say: "{% set n = slots.order | length %}{{ n }}{% for t in [1, 2] %}{{ loop.index }}{{ t }}{% endfor %}"
      - say: "{{ range(2) | list }} {{ slots.items() | list }} {{ slots[channel] }} {{ slots }}"
      - branch:
          - if: slots.order and customer.id and channel == 'webchat' and message
            then: end
  satisfaction:                 # started by omnibot with the complaint's reference
    steps:
      - say: "How did we do on {{ slots.reference }}?"
""")
    fs = load_flows(tmp_path)
    assert set(fs.flows) == {"a", "b", "satisfaction"}


def test_reference_is_unknown_when_no_flow_omnibot_starts_exists(tmp_path: Path) -> None:
    write(tmp_path, "f.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps:
      - say: "{{ slots.reference }}"
""")
    errs = errors_of(tmp_path)
    assert where(errs) == [("f.yaml", 8)]
    assert errs[0].reason.startswith("say: slot 'reference' is never filled")


def test_every_templated_setting_is_checked() -> None:
    # a new settings text with {{ }} in its default must be added to SETTINGS_TEMPLATES
    from pydantic import BaseModel

    from flows.loader import SETTINGS_TEMPLATES
    from flows.schema import Settings

    def templated(model: BaseModel, path: tuple[str, ...]) -> set[tuple[str, ...]]:
        out: set[tuple[str, ...]] = set()
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                out |= templated(value, path + (name,))
            texts = value if isinstance(value, list) else [value]
            # a text by language (README "Languages"): each of its variants
            texts = [v for t in texts for v in (t.values() if isinstance(t, dict) else [t])]
            if any(isinstance(t, str) and ("{{" in t or "{%" in t) for t in texts):
                out.add(path + (name,))
        return out

    found = templated(Settings(), ())
    assert found == {("handoff_message",), ("confirm_prefill",), ("confirm_prefills",), ("fallback", "clarify")}
    assert found <= set(SETTINGS_TEMPLATES)


async def test_the_names_checked_are_those_the_engine_and_runtime_render_with(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Records the context of every real render (and renders it), while a say step and then the
    # handoff message run: the loader's name lists must match what they are rendered with.
    from bot.config import Config, HandoffConfig, TeamConfig
    from bot.events import EventBus
    from bot.locks import KeyedLock
    from bot.model import Inbound
    from bot.runtime import Runtime
    from bot.storage import open_store
    from flows import FlowEngine
    from flows.loader import HANDOFF_NAMES, SETTINGS_TEMPLATES, STEP_NAMES
    from flows.render import Renderer

    seen: list[tuple[str, frozenset[str]]] = []
    real_render = Renderer.render

    def recording_render(self: Renderer, source: str, context: dict[str, object]) -> str:
        seen.append((source, frozenset(context)))
        return real_render(self, source, context)

    monkeypatch.setattr(Renderer, "render", recording_render)
    write(tmp_path, "f.yaml", HEAD + """flows:
  f:
    trigger: hi
    steps:
      - say: "Hello {{ customer.name }}"
      - handoff: {team: support, reason: "you said {{ message }}"}
settings:
  handoff_message: "To {{ team }}: {{ reason }} ({{ position }})"
""")
    store = await open_store("sqlite:///:memory:")
    config = Config(handoff=HandoffConfig(teams={"support": TeamConfig(name="Support")}))
    runtime = Runtime(store=store, engine=FlowEngine(load_flows(tmp_path)), config=config, locks=KeyedLock(),
                      events=EventBus())
    try:
        await runtime.accept(Inbound("webchat", "v1", "m1", "hi", payload="intent:hi"))
        await runtime.drain()
    finally:
        await runtime.stop()
        await store.close()
    contexts = dict(seen)
    assert contexts["Hello {{ customer.name }}"] == set(STEP_NAMES)
    assert contexts["you said {{ message }}"] == set(STEP_NAMES)
    assert contexts["To {{ team }}: {{ reason }} ({{ position }})"] == set(HANDOFF_NAMES)
    assert SETTINGS_TEMPLATES[("handoff_message",)] == HANDOFF_NAMES


async def test_action_slots_are_what_create_reference_sets(memory_store: object) -> None:
    from bot.config import ComplaintsConfig
    from bot.model import Inbound
    from flows.engine import ActionContext
    from flows.loader import ACTION_SLOTS
    from handoff.tickets import Tickets, ticket_actions

    store = memory_store
    r = await store.record_inbound(Inbound("webchat", "ada", "m1", "my parcel is late"))  # type: ignore[attr-defined]
    ctx = ActionContext(r.conversation.id, "webchat", {"id": r.customer.id}, {"category": "shipping"})
    rules = ComplaintsConfig.model_validate({"departments": {"care": {"name": "Care"}},
                                             "default_department": "care"})
    await ticket_actions(Tickets(store, rules))["create_reference"](ctx)  # type: ignore[arg-type]
    assert set(ctx.updates) == set(ACTION_SLOTS["create_reference"])


def test_demo_flows_validate_clean_with_the_name_checks() -> None:
    # the demo reads slots set by actions (ticket_due), by other flows, and given by omnibot (reference)
    fs = load_flows(DEMO, teams=["support", "complaints"])
    assert {"complaint", "satisfaction", "follow_up", "link_accounts"} <= set(fs.flows)


def test_a_broken_step_still_fills_its_slot_for_the_name_checks(tmp_path: Path) -> None:
    # one mistake, one error: the collect's typo is reported, its slot's readers are not
    write(tmp_path, "f.yaml", HEAD + """\
flows:
  f:
    trigger: hi
    steps:
      - collect: order
        ask: Order?
        regx: x
      - say: "Order {{ slots.order }}"
""")
    write(tmp_path, "g.yaml", "flows:\n  g:\n    steps:\n      - say: '{{ slots.order }}'\n      - sya: x\n")
    errs = errors_of(tmp_path)
    assert [(Path(e.path).name, e.line, e.reason) for e in errs] == [
        ("f.yaml", 10, "flows.f.steps[0].regx: unknown key 'regx'"),
        ("g.yaml", 5, "flows.g.steps[1]: no step kind; a step has exactly one of say, collect, branch, set, "
                      "action, call, handoff, goto, end"),
    ]
