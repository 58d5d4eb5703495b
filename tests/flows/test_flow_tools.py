"""Admin tools for flows: validate's warnings, the Mermaid graph, the JSON Schema (in sync with the
code, and accepting every demo file), and docs/flows.md naming every step type and slot type."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bot.cli import main
from flows import load_flows
from flows.graph import mermaid
from flows.jsonschema import _FlowFile, flow_json_schema, flow_json_schema_text
from flows.lint import intent_lines, lint
from flows.schema import SLOT_TYPES, STEP_KINDS

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "flows" / "demo"

LINTED = """\
intents:
  hours:
    examples: [when are you open, opening hours, what time do you open, are you open today, hours please]
  hours_too:
    examples: [when are you open on sunday, opening hours sunday, what time do you open sunday, sunday hours,
               open on sunday]
  tiny:
    examples: [tiny]
flows:
  hours:
    trigger: hours
    steps:
      - set: {ghost: null, real: null}
      - collect: real
        ask: "Which day?"
      - say: "We are open 9 to 5 on {{ slots.real }}."
      - end
      - say: "nobody ever gets here"
      - id: target
        say: "reached by the goto"
  hours_too:
    trigger: hours_too
    steps:
      - goto: target
      - say: "skipped by the goto"
      - id: target
        say: "Sundays 10 to 4."
  tiny:
    trigger: tiny
    steps:
      - say: "tiny"
"""


def test_lint_warns_about_cleared_slots_unreached_steps_and_intents(tmp_path: Path) -> None:
    (tmp_path / "f.yaml").write_text(LINTED, encoding="utf-8")
    fs = load_flows(tmp_path)
    got = [(w.line, w.reason) for w in lint(fs, intent_files=intent_lines(fs.files))]
    reasons = "\n".join(r for _, r in got)
    assert (13, "slot 'ghost' is only ever cleared (set to null): nothing collects, sets or saves a value for it") in got
    assert "slot 'real'" not in reasons
    assert (18, "flow 'hours': step 5 (say) is never reached: no step before it goes on to it and nothing jumps "
                "to it") in got
    assert (19, "flow 'hours': step 6 (say, id target) is never reached: no step before it goes on to it and "
                "nothing jumps to it") in got
    assert (25, "flow 'hours_too': step 2 (say) is never reached: no step before it goes on to it and nothing "
                "jumps to it") in got
    assert "step 3 (say, id target)" not in reasons                      # the goto reaches it
    assert (7, "intent 'tiny' has 1 example; give at least 5 (about ten, written the way customers talk)") in got
    [overlap] = [r for _, r in got if "overlap" in r]
    assert overlap.startswith("intents 'hours' and 'hours_too' overlap: ")


def test_the_demo_has_no_warnings() -> None:
    fs = load_flows(DEMO)
    assert [str(w) for w in lint(fs, intent_files=intent_lines(fs.files))] == []


def test_validate_prints_warnings_and_exits_0(tmp_path: Path) -> None:
    (tmp_path / "f.yaml").write_text(LINTED, encoding="utf-8")
    res = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert f"warning: {tmp_path / 'f.yaml'}:7: intent 'tiny' has 1 example" in res.output
    assert "; 6 warning(s)" in res.output


def test_the_flow_drawn_as_svg() -> None:
    """The admin page's drawing: valid SVG, one box per step in order, a labelled arrow for every
    way out that is not simply the next step, and the places outside the flow."""
    import xml.etree.ElementTree as ET

    from flows.graph import svg
    from flows.lint import successors

    fs = load_flows(DEMO)
    pf = fs.flows["order_status"]
    root = ET.fromstring(svg(fs, "order_status"))
    ns = {"s": "http://www.w3.org/2000/svg"}
    steps = root.findall("s:g[@class='step']", ns)
    assert [g.get("data-step") for g in steps] == [str(i) for i in range(len(pf.steps))]
    assert steps[2].find("s:text", ns).text == "call shop: GET /orders/‹order_number›"   # type: ignore[union-attr]
    from flows.schema import EndStep, HandoffStep
    jumps = [(i, t, lab) for i in range(len(pf.steps)) for t, lab in successors(pf, i)
             if not (t == str(i + 1) and not lab)
             and not (isinstance(pf.steps[i], (EndStep, HandoffStep)) and t in ("end", "handoff"))]
    assert jumps and len(root.findall("s:path[@class='edge']", ns)) == len(jumps)
    texts = {t.text for t in root.iter("{http://www.w3.org/2000/svg}text")}
    assert {"404", "failure", "3 tries", "handoff to a person"} <= texts
    # customer-facing text in a label is escaped, never markup
    assert "<script" not in svg(fs, "faq" if "faq" in fs.flows else next(iter(fs.flows)))


def test_graph_of_a_demo_flow() -> None:
    res = CliRunner().invoke(main, ["graph", "order_status", "--flows", str(DEMO)])
    assert res.exit_code == 0, res.output
    out = res.output
    assert out.startswith("flowchart TD\n  start((\"order_status\")) --> s0\n")
    for line in ['s1[/"collect order_number (regex)"/]',
                 's2[["call shop: GET /orders/‹order_number›"]]',
                 's3{"branch"}',
                 's2 -->|"ok"| s3', 's2 -->|"404"| s8', 's2 -->|"failure"| HANDOFF', 's1 -->|"3 tries"| HANDOFF',
                 's3 -->|"slots.order_status == \'delivered\'"| s6', 's3 -->|"else"| s4',
                 'HANDOFF{{"handoff"}}', 'END((end))']:
        assert f"\n  {line}\n" in out, line
    res = CliRunner().invoke(main, ["graph", "nope", "--flows", str(DEMO)])
    assert res.exit_code == 1 and "no flow named 'nope'" in res.output


def test_graph_labels_are_escaped(tmp_path: Path) -> None:
    (tmp_path / "f.yaml").write_text(textwrap.dedent('''\
        intents: {a: {examples: [a]}}
        flows:
          a:
            trigger: a
            steps:
              - say: 'He said "hi" | <b> {hello}'
        '''), encoding="utf-8")
    out = mermaid(load_flows(tmp_path), "a")
    assert 's0["say: He said #quot;hi#quot; #124; #lt;b#gt; #123;hello#125;"]' in out


def test_the_committed_schema_is_the_generated_one() -> None:
    committed = (ROOT / "docs" / "flow.schema.json").read_text(encoding="utf-8")
    assert committed == flow_json_schema_text(), "run: omnibot schema > docs/flow.schema.json"
    res = CliRunner().invoke(main, ["schema"])
    assert res.exit_code == 0 and json.loads(res.output) == flow_json_schema()


def test_the_schema_describes_every_step_kind() -> None:
    schema = flow_json_schema()
    steps = schema["$defs"]["Flow"]["properties"]["steps"]["items"]["anyOf"]
    refs = {s.get("$ref", "").rsplit("/", 1)[-1] for s in steps}
    assert {m.__name__ for m in STEP_KINDS.values()} <= refs
    assert {"const": "end", "type": "string"} in steps
    assert schema["$defs"]["CallStep"]["additionalProperties"] is False
    assert set(schema["$defs"]["CollectStep"]["properties"]["type"]["enum"]) == set(SLOT_TYPES)


@pytest.mark.parametrize("name", sorted(p.name for p in DEMO.glob("*.yaml")))
def test_every_demo_file_fits_the_schema(name: str) -> None:
    _FlowFile.model_validate(yaml.safe_load((DEMO / name).read_text(encoding="utf-8")))


def test_the_reference_names_every_step_type_and_slot_type() -> None:
    doc = (ROOT / "docs" / "flows.md").read_text(encoding="utf-8")
    for kind in STEP_KINDS:
        assert f"### `{kind}`" in doc, kind
    for slot_type in SLOT_TYPES:
        assert f"#### `{slot_type}`" in doc, slot_type
    schema = flow_json_schema()["$defs"]
    for model in ("CollectStep", "CallStep"):
        for key in schema[model]["properties"]:
            assert f"`{key}`" in doc, (model, key)
    assert "yaml-language-server: $schema=" in doc
