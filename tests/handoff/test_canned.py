"""Canned replies: loaded from the flows folder's canned/, every bad file refused with file:line:
reason (like flows), searched, rendered with customer text as data; and the take-over rule."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot.errors import FlowValidationError
from bot.storage.base import AgentAccount
from flows import load_flows
from handoff.canned import load_canned
from handoff.roles import take_over_rule

DEMO = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "flows" / "shop"  # conftest.SHOP_FLOWS


def test_the_demo_canned_replies_load_and_the_flows_skip_them() -> None:
    canned = load_canned(DEMO)
    assert {"greeting", "need_order_number", "refund_started", "replacement_sent", "closing"} <= set(canned.replies)
    assert load_flows(DEMO).flows      # canned/ is not read as flows


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "canned").mkdir(exist_ok=True)
    (tmp_path / "canned" / "team.yaml").write_text(text)
    return tmp_path


@pytest.mark.parametrize(("text", "line", "reason"), [
    ("canned:\n  - name: a\n    title: A\n    text: hi\n    colour: red\n", 5, "unknown key 'colour'"),
    ("canned:\n  - name: a\n    title: A\n", 2, "missing key 'text'"),
    ("canned:\n  - name: Bad Name\n    title: A\n    text: hi\n", 2, "is not a name"),
    ("canned:\n  - name: a\n    title: A\n    text: 'Hi {{ slot.x }}'\n", 4, "unknown name 'slot'"),
    ("canned:\n  - name: a\n    title: A\n    text: 'Hi {{ customer.name'\n", 4, "template error"),
    ("canned:\n  - name: a\n    title: A\n    text: hi\n  - name: a\n    title: B\n    text: ho\n", 5,
     "already defined"),
    ("canned: [\n", 2, "invalid YAML"),
    ("- just a list\n", 1, "a canned replies file is a mapping"),
])
def test_a_bad_file_is_refused_with_file_line_and_reason(tmp_path: Path, text: str, line: int, reason: str) -> None:
    with pytest.raises(FlowValidationError) as exc:
        load_canned(write(tmp_path, text))
    [err] = exc.value.errors
    assert err.path.endswith("canned/team.yaml") and err.line == line and reason in err.reason, str(err)


def test_search_and_render(tmp_path: Path) -> None:
    canned = load_canned(write(tmp_path, "canned:\n  - name: hi\n    title: Greeting\n    text: 'Hi {{ customer.name }},"
                                         " {{ agent }} here about {{ slots.order }}'\n"
                                         "  - name: bye\n    title: Closing\n    text: Bye\n"))
    assert [c.name for c in canned.search("greet")] == ["hi"]
    assert [c.name for c in canned.search("")] == ["bye", "hi"]
    assert canned.search("nothing like it") == []
    out = canned.render("hi", {"slots": {"order": "{{ 7*7 }}"}, "customer": {"name": "Jo"}, "channel": "webchat",
                               "team": "Care", "agent": "Anna"})
    assert out == "Hi Jo, Anna here about {{ 7*7 }}"
    (tmp_path / "empty").mkdir()
    assert len(load_canned(tmp_path / "empty")) == 0    # no canned/ folder: none


def account(role: str, teams: tuple[str, ...], disabled: bool = False) -> AgentAccount:
    return AgentAccount(id="a", name="X", email="x@x", teams=teams, role=role, disabled=disabled,
                        created_at=datetime.now(timezone.utc))


def test_take_over_rule() -> None:
    held = SimpleNamespace(team="support", agent="Someone Else")
    assert take_over_rule(account("supervisor", ("support",)), held) == "any time"
    assert take_over_rule(account("admin", ()), held) == "any time"
    assert take_over_rule(account("agent", ("support",)), held) == "when idle"
    assert take_over_rule(account("agent", ("complaints",)), held) is None
    assert take_over_rule(account("supervisor", ("complaints",)), held) is None
    assert take_over_rule(account("agent", ("support",), disabled=True), held) is None
