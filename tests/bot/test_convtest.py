"""``omnibot test``: conversation tests in YAML on the real runtime, in-process (bot/convtest.py).

The demo's own conversation tests (flows/demo/tests) must pass; a failing test shows the
difference at the test step's file:line and exits 1; --junit writes valid JUnit XML; ``wait:``
moves the fake clock to SLA alerts and follow-ups; a test can start in the middle of a flow;
bad test files are refused with file:line errors.
"""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

from click.testing import CliRunner

from bot.cli import main
from conftest import DEMO_FLOWS, SHOP_FLOWS


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["test", *args])
    return result.exit_code, result.output


def _write(tmp_path: Path, text: str, name: str = "t.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def _lexical(path: Path, *more: str) -> tuple[int, str]:
    return _run(str(path), "--flows", str(SHOP_FLOWS), "--matcher", "lexical", *more)


def test_the_demo_flows_pass_their_own_conversation_tests(tmp_path: Path) -> None:
    # as an admin runs them: the demo's tests with the demo config's (learned) matcher
    junit = tmp_path / "demo.xml"
    code, out = _run(str(DEMO_FLOWS / "tests"), "--junit", str(junit))
    assert code == 0, out
    assert "failed" not in out and " passed in " in out
    suites = ET.parse(junit).getroot()
    assert int(suites.get("tests", "0")) >= 28 and suites.get("failures") == "0"
    # every flow of the demo is started by some test (named in a test or as a start:)
    texts = "".join(p.read_text(encoding="utf-8") for p in (DEMO_FLOWS / "tests").glob("*.yaml"))
    assert "flow: follow_up" in texts and "agent: {resolve:" in texts and "wait:" in texts
    # the order flows' calls are answered by the tests (endpoints:), the shop down included
    assert "flow: order_status" in texts and "flow: change_address" in texts
    assert "{fail: timeout}" in texts and "endpoints: {shop: demo}" in texts


PASSING = """
tests:
  - name: opening hours
    steps:
      - say: when are you open?
        bot: {contains: "Monday to Friday"}
        flow: null
  - name: a complaint to a person
    steps:
      - say: i want to make a complaint
        bot:
          - {contains: "sorry"}
          - {exact: "What is it about?", buttons: [Product, Shipping, Payment, Service, Pricing]}
      - press: shipping                   # by payload
        slots: {category: shipping}
"""


def test_passing_tests_print_dots_and_exit_0(tmp_path: Path) -> None:
    code, out = _lexical(_write(tmp_path, PASSING))
    assert code == 0, out
    assert f"{tmp_path / 't.yaml'} .." in out
    assert "2 passed in" in out


FAILING = """
tests:
  - name: opening hours
    steps:
      - say: when are you open?
        bot: "Our customer service is open Monday to Friday 9:00-17:00 and Saturday 9:00-17:00 (CET).
          This chat answers around the clock, and anything you leave here reaches the team."
      - say: thanks
        bot: {regex: "^You're welcome"}
        slots: {category: product}
"""


def test_a_failing_test_shows_the_difference_at_the_step_and_exits_1(tmp_path: Path) -> None:
    f = _write(tmp_path, FAILING)
    junit = tmp_path / "out.xml"
    code, out = _lexical(f, "--junit", str(junit))
    assert code == 1, out
    assert f"{f} F" in out
    # where (file:line of the expectation), which step, expected and got
    assert f"{f}:6: step 1 (say 'when are you open?'): bot reply" in out
    assert "expected: 'Our customer service is open Monday to Friday 9:00-17:00 and" in out
    assert "1. 'Our customer service is open Monday to Friday 8:00-20:00" in out
    assert "diff (- expected, + got):\n      - 9:00-17:00\n      + 8:00-20:00\n" in out
    # later checks still run: the slot line, expected and got
    assert f"{f}:10: step 2 (say 'thanks'): slot category" in out
    assert "expected: 'product'" in out and "got:      not set" in out
    assert "1 failed, 0 passed" in out
    root = ET.parse(junit).getroot()            # valid XML, the failure in it
    assert root.tag == "testsuites" and root.get("failures") == "1"
    [case] = root.iter("testcase")
    assert case.get("name") == "opening hours"
    [failure] = case.findall("failure")
    assert failure.get("message", "").startswith(f"{f}:6: step 1")
    assert "+ 8:00-20:00" in (failure.text or "")


WAIT = """
tests:
  - name: an unanswered complaint breaches its SLA
    start:
      flow: complaint
      at: photos
      slots: {category: shipping, order_number: AB123456, description: "The parcel never came, a week late."}
    steps:
      - say: skip
        ticket: {category: shipping, status: received}
      - press: Yes, talk to a person
        handoff: {team: complaints, state: queued}
        ticket: {category: shipping}
      - wait: 1h
        alerts: none
      - wait: %s
        alerts:
          - {step: acknowledge, level: breached, text: {contains: "was due to be taken by a person"}}
"""


def test_wait_moves_the_fake_clock_to_an_sla_alert(tmp_path: Path) -> None:
    code, out = _lexical(_write(tmp_path, WAIT % "1h"))
    assert code == 0, out
    # the same test with too little time: no alert yet, and the failure says so
    code, out = _lexical(_write(tmp_path, WAIT % "30m"))
    assert code == 1, out
    assert "step 4 (wait 30m): SLA alert" in out and "got:      no alert" in out


START = """
tests:
  - name: in the middle of the complaint
    start:
      flow: complaint
      at: order_number
      slots: {category: payment}
      bot: {contains: "What's your order number?"}
    steps:
      - say: AB123456
        slots: {order_number: AB123456, category: payment}
        flow: complaint
        bot: "Please tell me what happened, in your own words."
"""


def test_a_test_can_start_in_the_middle_of_a_flow(tmp_path: Path) -> None:
    code, out = _lexical(_write(tmp_path, START))
    assert code == 0, out
    code, out = _lexical(_write(tmp_path, START.replace("at: order_number", "at: description")))
    assert code == 1 and "start: bot reply" in out and "Please tell me what happened" in out


def test_the_agent_can_be_played(tmp_path: Path) -> None:
    code, out = _lexical(_write(tmp_path, """
tests:
  - name: person
    steps:
      - say: talk to a person
        handoff: {team: support, state: queued}
      - agent: {reply: "Hello, Anna here"}
        bot: ["Hello, Anna here"]
        handoff: {state: claimed}
      - agent: resolve
        handoff: none
      - agent: claim
"""))
    assert code == 1
    assert "step 4 (agent claim): agent" in out and "no handoff is open in this conversation" in out


def test_bad_test_files_are_refused_with_file_and_line(tmp_path: Path) -> None:
    f = _write(tmp_path, """
tests:
  - name: one
    steps:
      - say: hi
        bot: {contians: hello}
      - press: no
      - wait: soon
      - agent: dance
      - sya: hello
  - name: two
    start: {flow: nowhere}
    steps:
      - say: hi
""")
    code, out = _lexical(f)
    assert code == 2, out
    assert f"{f}:6: bot: a text, or one of" in out
    assert f'{f}:7: press: YAML reads an unquoted yes/no/on/off as true/false; quote it' in out
    assert f"{f}:8: wait: 'soon' is not a duration" in out
    assert f"{f}:9: agent: claim, reply TEXT, resolve OUTCOME or back" in out
    assert f"{f}:10: unknown key 'sya' in a step" in out
    assert f"{f}:12: start: no flow 'nowhere'" in out
    assert "nothing was run" in out


def test_k_selects_and_no_tests_exits_2(tmp_path: Path) -> None:
    f = _write(tmp_path, PASSING)
    code, out = _lexical(f, "-k", "complaint", "-v")
    assert code == 0 and "a complaint to a person PASSED" in out and "opening hours" not in out
    code, out = _lexical(f, "-k", "nothing like this")
    assert code == 2 and "no tests found" in out


def test_the_flow_loader_skips_the_tests_folder(tmp_path: Path) -> None:
    from flows import load_flows

    fs = load_flows(DEMO_FLOWS)
    assert not any("/tests/" in f for f in fs.files)


ENDPOINTS = """
defaults:
  endpoints:
    shop:
      "GET /orders/AB123456": {json: {number: AB123456, status: shipped, eta: "2030-05-02", carrier: DHL}}
tests:
  - name: the shop answers
    steps:
      - say: where is my order
      - say: AB123456
        bot: "Your order AB123456 is on its way with DHL. Expected delivery: 2030-05-02."
  - name: the shop is down
    endpoints:
      shop:
        "GET /orders/AB123456": {fail: timeout}
    steps:
      - say: where is my order
      - say: AB123456
        bot: "I'm sorry, I can't reach our order system right now."
        handoff: {state: queued}
"""


def test_endpoints_answer_the_flows_calls_over_http(tmp_path: Path) -> None:
    # the order flows of the demo, the shop's answers from the test file (a fake on 127.0.0.1)
    code, out = _run(str(_write(tmp_path, ENDPOINTS)), "--flows", str(DEMO_FLOWS), "--matcher", "lexical")
    assert code == 0, out
    assert "2 passed in" in out


def test_a_request_the_test_does_not_answer_is_named_in_the_failure(tmp_path: Path) -> None:
    f = _write(tmp_path, ENDPOINTS.replace("      - say: AB123456\n        bot: \"Your order",
                                           "      - say: CD234567\n        bot: \"Your order"))
    code, out = _run(str(f), "--flows", str(DEMO_FLOWS), "--matcher", "lexical")
    assert code == 1, out
    # an unanswered request is a 404: the flow says it does not know the order, and the failure names the request
    assert f"{f}:11: step 2 (say 'CD234567'): bot reply" in out
    assert "I can't find an order CD234567" in out
    assert "note: the test's endpoints: gave no answer to shop GET /orders/CD234567 (it got a 404; " \
           "add \"GET /orders/CD234567\" under endpoints.shop)" in out
    assert "1 failed, 1 passed" in out


def test_bad_endpoints_are_refused_with_file_and_line(tmp_path: Path) -> None:
    f = _write(tmp_path, """
defaults:
  endpoints: [shop]
tests:
  - name: one
    endpoints:
      shop:
        "FETCH /orders/1": {status: 200}
        "GET orders/1": {status: 200}
        "GET /orders/2": {status: 2000, fail: slow, jsn: {}}
      crm: demo
    steps:
      - say: hi
""")
    code, out = _run(str(f), "--flows", str(DEMO_FLOWS), "--matcher", "lexical")
    assert code == 2, out
    assert f"{f}:3: endpoints: a mapping of endpoint name: demo" in out
    assert f"{f}:8: endpoints.shop: 'FETCH /orders/1': a request is \"METHOD /path\"" in out
    assert f"{f}:9: endpoints.shop: 'GET orders/1': a request is" in out
    assert f"{f}:10: endpoints.shop.GET /orders/2: unknown key 'jsn'" in out
    assert f"{f}:10: endpoints.shop.GET /orders/2: status: an HTTP status, 100 to 599" in out
    assert f"{f}:10: endpoints.shop.GET /orders/2: fail: timeout" in out
    assert f"{f}:11: endpoints: no endpoint 'crm' in config integrations.endpoints (endpoints: shop)" in out
    assert "nothing was run" in out
