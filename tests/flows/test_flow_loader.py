"""Loader: the demo flows load; every error is a FlowError with the right file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bot.errors import FlowError, FlowValidationError
from flows import FlowSet, load_flows
from flows.schema import CollectStep, EndStep, HandoffStep, SayStep

DEMO = Path(__file__).resolve().parents[2] / "flows" / "demo"


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
    expected = {"acknowledge", "complaint", "complaint_status", "link_accounts", "link_enter", "goodbye", "greet", "help", "human", "opening_hours", "payment_methods",
                "restart", "returns", "shipping_times", "thanks"}
    assert set(fs.flows) == expected | {"satisfaction", "follow_up"}   # started by omnibot, no trigger
    assert set(fs.intents) == expected
    for name in expected:  # every demo flow is triggered by the intent of the same name
        assert fs.flow_for_intent(name) is fs.flows[name]
    assert {n for n, f in fs.flows.items() if f.flow.interrupts} == {"human", "restart", "help"}
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
    assert where(errs) == [("f.yaml", 8), ("f.yaml", 10)]
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
      - say: fine {{ slots.a }}
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
