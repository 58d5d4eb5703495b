"""Conversation tests: ``omnibot test`` (README "Testing your flows").

A test file (``flows/<yours>/tests/*.yaml``) lists conversations: what the customer does, step
by step (types, presses a button, sends a file; an agent claims, replies, resolves; time moves
on), and what must be true after each step (the replies, the slots, the handoff, the ticket,
the SLA alerts). Each test runs on the real runtime, flow engine, handoff queue, tickets, SLA
watch and follow-ups, in this process, on a fresh in-memory database, with a fake clock that
only ``wait:`` moves. Nothing is sent anywhere; the only listener is the test's own stand-in for
the business's systems (``endpoints:``, :mod:`bot.fake_endpoints`), on 127.0.0.1.

The file format is checked before anything runs; every problem is reported as
``file:line: reason`` (:mod:`bot.yamlmarks`). :func:`run_tests` runs the files and prints a
report like pytest's; :func:`junit_xml` writes the results for CI systems.
"""

from __future__ import annotations

import difflib
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence
from xml.etree import ElementTree as ET

from bot.config import Config, parse_duration
from bot.errors import FlowError
from bot.fake_endpoints import ANSWER_KEYS, FAILS, METHODS, TEST_TIMEOUT, FakeAnswer, FakeEndpoint, FakeServer
from bot.model import Attachment, Inbound, Outbound, utcnow
from bot.yamlmarks import Marks, MarkedYamlError, load_marked

log = logging.getLogger(__name__)

ACTIONS = ("say", "press", "attach", "wait", "agent")
EXPECTATIONS = ("bot", "slots", "flow", "language", "handoff", "ticket", "alerts")
STEP_KEYS = set(ACTIONS) | set(EXPECTATIONS) | {"name"}
CASE_KEYS = {"name", "steps", "start", "language", "customer", "channel", "skip", "endpoints"}
DEFAULT_KEYS = ("language", "customer", "channel", "endpoints")
START_KEYS = {"flow", "at", "slots", "language", "bot"}
HANDOFF_FIELDS = ("team", "reason", "priority", "cause", "agent_reason", "state", "agent")
TICKET_FIELDS = ("reference", "category", "severity", "department", "team", "status", "priority", "result")
ALERT_FIELDS = ("step", "level", "text")
AGENT_COMMANDS = ("claim", "reply", "resolve", "back")
NONE_WORDS = (None, False, "none", [])
AGENT_NAME = "Test Agent"
BOOL_HINT = "{key}: YAML reads an unquoted yes/no/on/off as true/false; quote it: {key}: \"no\""
VALUE = re.compile(r"\{\{\s*(slots|ticket)\.(\w+)\s*\}\}")


# -- the format -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """One expected text: exact (spaces and line breaks count as one space), contains, or regex."""

    kind: str
    value: str
    line: int
    buttons: tuple[str, ...] | None = None    # the reply's button titles, in order

    def with_values(self, values: Mapping[str, Any]) -> "Match":
        """This expectation with ``{{ slots.NAME }}`` and ``{{ ticket.FIELD }}`` filled in from the
        conversation now (a reference is only known once the ticket exists)."""
        if "{{" not in self.value:
            return self

        def fill(m: re.Match[str]) -> str:
            v = values.get(m.group(1), {}).get(m.group(2))
            v = "" if v is None else str(v)
            return re.escape(v) if self.kind == "regex" else v

        return Match(self.kind, VALUE.sub(fill, self.value), self.line, self.buttons)

    def text_ok(self, text: str) -> bool:
        if self.kind == "contains":
            return _squash(self.value) in _squash(text)
        if self.kind == "regex":
            return re.search(self.value, text, re.S) is not None
        return _squash(self.value) == _squash(text)

    def ok(self, text: str, buttons: Sequence[str] = ()) -> bool:
        return self.text_ok(text) and (self.buttons is None or tuple(buttons) == self.buttons)

    def describe(self) -> str:
        what = {"exact": repr(self.value), "contains": f"contains {self.value!r}",
                "regex": f"matches /{self.value}/"}[self.kind]
        return what + (f" with buttons [{', '.join(self.buttons)}]" if self.buttons is not None else "")


@dataclass
class Step:
    line: int
    index: int
    action: str | None = None           # say | press | attach | wait | agent (None: only checks)
    text: str = ""
    press: str = ""
    attachments: tuple[Attachment, ...] = ()
    wait: float = 0.0
    agent: tuple[str, str] = ("", "")   # (claim | reply | resolve | back, text)
    expect: dict[str, tuple[Any, int]] = field(default_factory=dict)   # key -> (parsed value, line)

    def title(self) -> str:
        if self.action == "say":
            return f"say {_short(self.text)}" + (f" + {len(self.attachments)} file(s)" if self.attachments else "")
        if self.action == "press":
            return f"press {_short(self.press)}"
        if self.action == "attach":
            return f"attach {', '.join(a.name for a in self.attachments)}"
        if self.action == "wait":
            return f"wait {_duration(self.wait)}"
        if self.action == "agent":
            return f"agent {self.agent[0]}" + (f" {_short(self.agent[1])}" if self.agent[1] else "")
        return "check"


@dataclass
class Start:
    flow: str
    at: str | None
    slots: dict[str, Any]
    language: str | None
    line: int
    bot: tuple[list[Match], int] | None = None


@dataclass
class Case:
    name: str
    file: str
    line: int
    steps: list[Step]
    start: Start | None = None
    language: str | None = None
    customer: str = "Alex Doe"
    channel: str = "webchat"
    skip: str | None = None
    endpoints: dict[str, "FakeEndpoint"] = field(default_factory=dict)   # call: steps answered by the test

    @property
    def id(self) -> str:
        return f"{self.file}::{self.name}"


class _Errors:
    def __init__(self, file: str) -> None:
        self.file = file
        self.errors: list[FlowError] = []

    def add(self, line: int | None, reason: str) -> None:
        self.errors.append(FlowError(reason, path=self.file, line=line))


def load_test_file(path: Path) -> tuple[list[Case], list[FlowError]]:
    """Parse one test file; every problem is a :class:`FlowError` with the file and line."""
    file = str(path)
    errs = _Errors(file)
    try:
        data, marks = load_marked(path.read_text(encoding="utf-8"))
    except MarkedYamlError as exc:
        errs.add(exc.line, exc.reason)
        return [], errs.errors
    except (OSError, UnicodeDecodeError) as exc:
        errs.add(None, f"cannot read: {exc}")
        return [], errs.errors
    if not isinstance(data, dict) or "tests" not in data:
        errs.add(1, "a test file is a mapping with a 'tests:' list (README \"Testing your flows\")")
        return [], errs.errors
    for k in data:
        if k not in ("tests", "defaults"):
            errs.add(marks.line_for((k,)), f"unknown key {k!r} (expected tests, defaults)")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        errs.add(marks.line_for(("defaults",)), "defaults: must be a mapping (language, customer, channel)")
        defaults = {}
    for k in defaults:
        if k not in DEFAULT_KEYS:
            errs.add(marks.line_for(("defaults", k)), f"defaults: unknown key {k!r} ({', '.join(DEFAULT_KEYS)})")
    default_endpoints = _endpoints(defaults["endpoints"], ("defaults", "endpoints"), marks, errs) \
        if "endpoints" in defaults else {}
    tests = data["tests"]
    if not isinstance(tests, list) or not tests:
        errs.add(marks.line_for(("tests",)), "tests: must be a non-empty list of tests")
        return [], errs.errors
    cases: list[Case] = []
    names: set[str] = set()
    for i, raw in enumerate(tests):
        case = _case(raw, ("tests", i), marks, errs, defaults, file, default_endpoints)
        if case is None:
            continue
        if case.name in names:
            errs.add(case.line, f"test name {case.name!r} is used twice in this file")
        names.add(case.name)
        cases.append(case)
    return cases, errs.errors


def _case(raw: Any, at: tuple[Any, ...], marks: Marks, errs: _Errors, defaults: Mapping[str, Any],
          file: str, default_endpoints: Mapping[str, "FakeEndpoint"]) -> Case | None:
    line = marks.line_for(at) or 1
    if not isinstance(raw, dict):
        errs.add(line, "a test is a mapping with name: and steps:")
        return None
    for k in raw:
        if k not in CASE_KEYS:
            errs.add(marks.line_for(at + (k,)), f"unknown key {k!r} in a test (expected {', '.join(sorted(CASE_KEYS))})")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        errs.add(line, "a test needs a name:")
        name = f"test {at[-1] + 1}"
    steps_raw = raw.get("steps")
    steps: list[Step] = []
    if not isinstance(steps_raw, list) or not steps_raw:
        errs.add(marks.line_for(at + ("steps",)) or line, f"test {name!r}: steps: must be a non-empty list")
    else:
        for j, s in enumerate(steps_raw):
            step = _step(s, at + ("steps", j), marks, errs, j + 1)
            if step is not None:
                steps.append(step)
    start = _start(raw["start"], at + ("start",), marks, errs) if "start" in raw else None
    opts = {**defaults, **{k: raw[k] for k in ("language", "customer", "channel") if k in raw}}
    for k in ("language", "customer", "channel"):
        if k in opts and not (isinstance(opts[k], str) and opts[k].strip()):
            errs.add(marks.line_for(at + (k,)) or marks.line_for(("defaults", k)), f"{k}: must be a text")
            opts.pop(k)
    skip = raw.get("skip")
    endpoints = dict(default_endpoints)
    if "endpoints" in raw:
        for ep_name, ep in _endpoints(raw["endpoints"], at + ("endpoints",), marks, errs).items():
            endpoints[ep_name] = endpoints[ep_name].merged(ep) if ep_name in endpoints else ep
    return Case(name=name.strip(), file=file, line=line, steps=steps, start=start, language=opts.get("language"),
                customer=str(opts.get("customer", "Alex Doe")), channel=str(opts.get("channel", "webchat")),
                skip=(str(skip) if skip not in (None, False) else None), endpoints=endpoints)


def _start(raw: Any, at: tuple[Any, ...], marks: Marks, errs: _Errors) -> Start | None:
    line = marks.line_for(at) or 1
    if not isinstance(raw, dict) or not isinstance(raw.get("flow"), str):
        errs.add(line, "start: needs flow: (and may give at:, slots:, language:, bot:)")
        return None
    for k in raw:
        if k not in START_KEYS:
            errs.add(marks.line_for(at + (k,)), f"start: unknown key {k!r} (expected {', '.join(sorted(START_KEYS))})")
    slots = raw.get("slots") or {}
    if not isinstance(slots, dict):
        errs.add(marks.line_for(at + ("slots",)), "start.slots: must be a mapping of slot: value")
        slots = {}
    at_step = raw.get("at")
    if at_step is not None and not isinstance(at_step, str):
        errs.add(marks.line_for(at + ("at",)), "start.at: the id of a step, or the slot a collect step asks for")
        at_step = None
    lang = raw.get("language")
    bot = _replies(raw["bot"], at + ("bot",), marks, errs) if "bot" in raw else None
    return Start(raw["flow"], at_step, dict(slots), str(lang) if lang else None, line,
                 (bot, marks.line_for(at + ("bot",)) or line) if bot is not None else None)


def _step(raw: Any, at: tuple[Any, ...], marks: Marks, errs: _Errors, index: int) -> Step | None:
    line = marks.line_for(at) or 1
    if not isinstance(raw, dict):
        errs.add(line, "a step is a mapping: say:, press:, attach:, wait: or agent:, and what to expect "
                       "(bot:, slots:, flow:, language:, handoff:, ticket:, alerts:)")
        return None
    step = Step(line=line, index=index)
    bad = [k for k in raw if k not in STEP_KEYS]
    for k in bad:
        errs.add(marks.line_for(at + (k,)), f"unknown key {k!r} in a step (actions: {', '.join(ACTIONS)}; "
                                            f"checks: {', '.join(EXPECTATIONS)})")
    acts = [k for k in ACTIONS if k in raw]
    if len(acts) > 1 and set(acts) != {"say", "attach"}:
        errs.add(line, f"one action per step, not {' and '.join(acts)} (say: with attach: is one message)")
    if not acts and not any(k in raw for k in EXPECTATIONS) and not bad:
        errs.add(line, "an empty step: give an action (say, press, attach, wait, agent) or a check")

    def where(k: str) -> int:
        return marks.line_for(at + (k,)) or line

    if "say" in raw:
        step.action = "say"
        if isinstance(raw["say"], bool):
            errs.add(where("say"), BOOL_HINT.format(key="say"))
        elif not isinstance(raw["say"], (str, int, float)):
            errs.add(where("say"), "say: the customer's message, a text")
        step.text = str(raw["say"])
    if "attach" in raw:
        step.action = step.action or "attach"
        files = raw["attach"] if isinstance(raw["attach"], list) else [raw["attach"]]
        atts = []
        for f in files:
            if isinstance(f, str) and f.strip():
                atts.append(_attachment(f.strip()))
            else:
                errs.add(where("attach"), "attach: a file name (photo.jpg) or a list of them")
        step.attachments = tuple(atts)
    if "press" in raw:
        step.action = "press"
        if isinstance(raw["press"], bool):
            errs.add(where("press"), BOOL_HINT.format(key="press"))
        elif not isinstance(raw["press"], (str, int)):
            errs.add(where("press"), "press: a button's title or payload")
        step.press = str(raw["press"])
    if "wait" in raw:
        step.action = "wait"
        try:
            step.wait = parse_duration(raw["wait"])
        except ValueError as exc:
            errs.add(where("wait"), f"wait: {exc}")
    if "agent" in raw:
        step.action = "agent"
        step.agent = _agent(raw["agent"], where("agent"), errs)
    for k in EXPECTATIONS:
        if k not in raw:
            continue
        v = raw[k]
        if k == "bot":
            parsed: Any = _replies(v, at + (k,), marks, errs)
        elif k == "slots":
            parsed = _slots(v, at + (k,), marks, errs)
        elif k in ("flow", "language"):
            if v is not None and not isinstance(v, str):
                errs.add(where(k), f"{k}: a name, or null")
            parsed = v
        elif k == "handoff":
            parsed = _fields(v, at + (k,), marks, errs, HANDOFF_FIELDS, "handoff")
        elif k == "ticket":
            parsed = _fields(v, at + (k,), marks, errs, TICKET_FIELDS, "ticket")
        else:
            parsed = _alerts(v, at + (k,), marks, errs)
        step.expect[k] = (parsed, where(k))
    return step


def _agent(v: Any, line: int, errs: _Errors) -> tuple[str, str]:
    if isinstance(v, dict) and len(v) == 1:
        cmd, text = next(iter(v.items()))
        text = "" if text in (None, True) else str(text)
    elif isinstance(v, str):
        cmd, _, text = v.strip().partition(" ")
    else:
        cmd, text = "", ""
    if cmd not in AGENT_COMMANDS:
        errs.add(line, "agent: claim, reply TEXT, resolve OUTCOME or back (e.g. agent: {reply: \"On it\"})")
    elif cmd == "reply" and not text.strip():
        errs.add(line, "agent: reply needs the text the agent sends")
    return cmd, text.strip()


def _attachment(name: str) -> Attachment:
    image = name.lower().rsplit(".", 1)[-1] in ("jpg", "jpeg", "png", "gif", "webp", "heic")
    mime = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif",
            "webp": "image/webp", "pdf": "application/pdf"}.get(name.lower().rsplit(".", 1)[-1], "")
    return Attachment(kind="image" if image else "file", url=f"test://{name}", name=name, mime=mime, size=1024)


def _matcher(v: Any, line: int, errs: _Errors, what: str) -> Match | None:
    """A text expectation: "exact", {contains: x}, {regex: x} (with buttons: for replies)."""
    if isinstance(v, (str, int, float)) and not isinstance(v, bool):
        return Match("exact", str(v), line)
    if isinstance(v, dict):
        kinds = [k for k in ("exact", "contains", "regex") if k in v]
        extra = [k for k in v if k not in ("exact", "contains", "regex", "buttons")]
        if len(kinds) != 1 or extra:
            errs.add(line, f"{what}: a text, or one of {{exact: ...}}, {{contains: ...}}, {{regex: ...}}"
                           + (" (and buttons: [titles])" if what == "bot" else ""))
            return None
        value = str(v[kinds[0]])
        if kinds[0] == "regex":
            try:
                re.compile(value)
            except re.error as exc:
                errs.add(line, f"{what}: bad regex {value!r}: {exc}")
                return None
        buttons = v.get("buttons")
        if buttons is not None and (what != "bot" or not isinstance(buttons, list)):
            errs.add(line, f"{what}: buttons: a list of button titles (replies only)")
            buttons = None
        return Match(kinds[0], value, line, tuple(str(b) for b in buttons) if buttons is not None else None)
    errs.add(line, f"{what}: a text, or {{contains: ...}} or {{regex: ...}}")
    return None


def _replies(v: Any, at: tuple[Any, ...], marks: Marks, errs: _Errors) -> list[Match]:
    """``bot:`` — a list of expected replies (one alone is fine); none / [] for no reply at all."""
    if v in NONE_WORDS:
        return []
    items = v if isinstance(v, list) else [v]
    out = []
    for i, item in enumerate(items):
        m = _matcher(item, marks.line_for(at + ((i,) if isinstance(v, list) else ())) or 1, errs, "bot")
        if m is not None:
            out.append(m)
    return out


def _slots(v: Any, at: tuple[Any, ...], marks: Marks, errs: _Errors) -> dict[str, Any]:
    if not isinstance(v, dict):
        errs.add(marks.line_for(at), "slots: a mapping of slot: expected value (null: not set)")
        return {}
    out: dict[str, Any] = {}
    for k, x in v.items():
        line = marks.line_for(at + (k,)) or 1
        if isinstance(x, dict) and set(x) == {"set"}:
            out[k] = ("set", bool(x["set"]), line)
        elif isinstance(x, dict):
            out[k] = ("match", _matcher(x, line, errs, f"slots.{k}"), line)
        else:
            out[k] = ("value", x, line)
    return out


def _fields(v: Any, at: tuple[Any, ...], marks: Marks, errs: _Errors, known: Sequence[str],
            what: str) -> dict[str, Any] | None:
    """``handoff:`` / ``ticket:`` — none (there is none), true (there is one), or fields to match."""
    if v in NONE_WORDS:
        return None
    if v is True:
        return {}
    if not isinstance(v, dict):
        errs.add(marks.line_for(at), f"{what}: none, true, or a mapping of {', '.join(known)}")
        return {}
    out: dict[str, Any] = {}
    for k, x in v.items():
        line = marks.line_for(at + (k,)) or 1
        if k not in known:
            errs.add(line, f"{what}: unknown field {k!r} (expected {', '.join(known)})")
            continue
        out[k] = _matcher(x, line, errs, f"{what}.{k}") if isinstance(x, dict) else ("value", x, line)
    return out


ENDPOINTS_HINT = ('endpoints: a mapping of endpoint name: demo, or of "METHOD /path": {status: 200, json: {...}} '
                  '(or {fail: timeout})')


def _endpoints(v: Any, at: tuple[Any, ...], marks: Marks, errs: _Errors) -> dict[str, FakeEndpoint]:
    """``endpoints:`` — what the business's systems answer in the test (README "Testing your flows")."""
    line = marks.line_for(at) or 1
    if not isinstance(v, dict) or not v:
        errs.add(line, ENDPOINTS_HINT)
        return {}
    out: dict[str, FakeEndpoint] = {}
    for name, spec in v.items():
        here = at + (name,)
        eline = marks.line_for(here) or line
        if not isinstance(name, str):
            errs.add(eline, f"endpoints: {name!r} is not an endpoint name")
            continue
        if spec == "demo":
            out[name] = FakeEndpoint(eline, demo=True)
            continue
        if not isinstance(spec, dict) or not spec:
            errs.add(eline, f"endpoints.{name}: demo (the demo shop), or a mapping of "
                            f'"METHOD /path": {{status: 200, json: {{...}}}}')
            continue
        answers: dict[tuple[str, str], FakeAnswer] = {}
        for key, ans in spec.items():
            aline = marks.line_for(here + (key,)) or eline
            method, _, path = str(key).strip().partition(" ")
            method, path = method.upper(), path.strip()
            if method not in METHODS or not path.startswith("/"):
                errs.add(aline, f"endpoints.{name}: {key!r}: a request is \"METHOD /path\" "
                                f"({', '.join(METHODS)}; the path as the call: step makes it, e.g. \"GET /orders/AB123456\")")
                continue
            if not isinstance(ans, dict):
                errs.add(aline, f"endpoints.{name}.{key}: the answer is a mapping: {{status: 200, json: {{...}}}} "
                                f"or {{fail: timeout}}")
                continue
            bad = [k for k in ans if k not in ANSWER_KEYS]
            for k in bad:
                errs.add(marks.line_for(here + (key, k)) or aline,
                         f"endpoints.{name}.{key}: unknown key {k!r} (expected {', '.join(ANSWER_KEYS)})")
            status = ans.get("status", 200)
            if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
                errs.add(marks.line_for(here + (key, "status")) or aline,
                         f"endpoints.{name}.{key}: status: an HTTP status, 100 to 599")
                status = 200
            fail = ans.get("fail")
            if fail is not None and fail not in FAILS:
                errs.add(marks.line_for(here + (key, "fail")) or aline,
                         f"endpoints.{name}.{key}: fail: {', '.join(FAILS)} (no answer within the timeout)")
                fail = None
            if fail is not None and ("status" in ans or "json" in ans):
                errs.add(aline, f"endpoints.{name}.{key}: fail: gives no answer; drop status: and json:")
            answers[(method, path)] = FakeAnswer(status, ans.get("json"), "json" in ans, fail)
        out[name] = FakeEndpoint(eline, answers=answers)
    return out


def _alerts(v: Any, at: tuple[Any, ...], marks: Marks, errs: _Errors) -> list[dict[str, Any]]:
    if v in NONE_WORDS:
        return []
    items = v if isinstance(v, list) else [v]
    out = []
    for i, item in enumerate(items):
        here = at + ((i,) if isinstance(v, list) else ())
        fields = _fields(item, here, marks, errs, ALERT_FIELDS, "alerts")
        if fields is not None:
            out.append({"fields": fields, "line": marks.line_for(here) or 1})
    return out


# -- finding the files ---------------------------------------------------------------------------------


def find_test_files(path: Path) -> list[Path]:
    """The test files at ``path``: the file itself, or every ``*.yaml``/``*.yml`` under the folder
    (a flows folder: under its ``tests/``)."""
    if path.is_file():
        return [path]
    if (path / "tests").is_dir():
        path = path / "tests"
    return sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def flows_folder_of(path: Path) -> Path | None:
    """The flows folder a test path belongs to: the folder holding the ``tests/`` folder it is in,
    or the folder itself when it holds a ``tests/`` folder."""
    p = path.resolve()
    if p.is_dir() and (p / "tests").is_dir():
        return p
    for parent in ([p] if p.is_dir() else []) + list(p.parents):
        if parent.name == "tests":
            return parent.parent
    return None


# -- running ----------------------------------------------------------------------------------------------


@dataclass
class Failure:
    line: int
    step: str            # "step 3 (say 'AB123456')"
    what: str            # "bot reply", "slot order_number", ...
    lines: list[str]     # expected / got, ready to print


@dataclass
class CaseResult:
    case: Case
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    skipped: str | None = None

    @property
    def passed(self) -> bool:
        return not self.failures and self.skipped is None


class _Stop(Exception):
    """The test cannot go on (its action failed)."""


class FakeClock:
    """The time the complaint clocks read: the real time plus every ``wait:`` so far (handoffs are
    stamped with the real time, so the clock starts there)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset


class _TurnErrors(logging.Handler):
    """Collects the runtime's "turn failed" errors, so a test shows them instead of the apology."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_config(config: Config, *, matcher: str | None = None) -> Config:
    """``config`` for tests: an in-memory database, no channel or desk listening or sending."""
    upd: dict[str, Any] = {"storage": config.storage.model_copy(update={"url": "sqlite:///:memory:"})}
    for name in ("webchat", "agent_desk", "telegram", "whatsapp", "email", "slack"):
        upd[name] = getattr(config, name).model_copy(update={"enabled": False})
    if matcher:
        upd["nlu"] = config.nlu.model_copy(update={"matcher": matcher})
    return config.model_copy(update=upd)


class Conversation:
    """One test's customer, driving the real services (:func:`bot.app.build_services`)."""

    def __init__(self, services: Any, case: Case, clock: FakeClock) -> None:
        self.s = services
        self.case = case
        self.clock = clock
        self.external_id = "test-customer"
        self.n = 0
        self.seen = 0          # the last message id already looked at
        self.conv_id = ""

    async def start_at(self, start: Start) -> list[Any]:
        """Put the conversation in the middle of ``start.flow`` (at its step ``start.at``) with
        ``start.slots``, as if the customer had got there; returns the bot's messages."""
        from flows.turn import Turn, TurnState
        from bot.runtime import turn_input

        engine = self.s.engine
        pf = engine.flows.flows[start.flow]
        r = await self.s.store.record_inbound(Inbound(self.case.channel, self.external_id, "test-start", "",
                                                      sender_name=self.case.customer, answer=False))
        self.conv_id = r.conversation.id
        lang = start.language or self.case.language
        if lang:
            await self.s.store.set_conversation_language(self.conv_id, lang)
        loaded = await self.s.store.load_turn(self.conv_id)
        conv, customer, state = loaded
        st = TurnState.load(state)
        engine.steps.start(st, pf)
        st.step = step_index(pf, start.at) if start.at else 0
        st.slots.update(start.slots)
        t = Turn(turn_input(conv, customer, language=lang or ""), st)
        await engine.steps.run(t)
        if t.handoff is not None:
            raise _Stop(f"start: flow {start.flow!r} hands over from {start.at!r} before asking anything")
        await self.s.store.commit_turn(self.conv_id, inbound_id=None, flow_state=st.dump(),
                                       replies=[Outbound(r.text, buttons=r.buttons) for r in t.replies])
        return await self._new_messages()

    async def send(self, text: str, *, payload: str | None = None,
                   attachments: tuple[Attachment, ...] = ()) -> None:
        self.n += 1
        attrs = {"language_code": self.case.language} if self.case.language and self.n == 1 else {}
        r = await self.s.runtime.accept(Inbound(self.case.channel, self.external_id, f"t{self.n}", text,
                                                sender_name=self.case.customer, payload=payload,
                                                attachments=attachments, customer_attributes=attrs))
        self.conv_id = r.conversation.id
        await self.s.runtime.drain()

    async def buttons(self) -> list[Any]:
        if not self.conv_id:
            return []
        history = await self.s.store.history(self.conv_id, limit=1000)
        outs = [m for m in history if m.direction == "out" and m.buttons]
        return list(outs[-1].buttons) if outs else []

    async def press(self, what: str) -> None:
        buttons = await self.buttons()
        want = _squash(what).lower()
        for b in buttons:
            if _squash(b.title).lower() == want or b.payload == what:
                await self.send(b.title, payload=b.payload)
                return
        shown = ", ".join(f"{b.title!r} ({b.payload})" for b in buttons) or "none"
        raise _Stop(f"no button {what!r} to press; the bot's last buttons: {shown}")

    async def agent(self, cmd: str, text: str) -> None:
        msg = await agent_act(self.s, self.conv_id, cmd, text, AGENT_NAME)
        if msg:
            raise _Stop(msg)
        await self.s.runtime.drain()

    async def wait(self, seconds: float) -> list[Any]:
        self.clock.offset += timedelta(seconds=seconds)
        alerts = await self.s.sla.check() if self.s.sla else []
        if self.s.followups:
            await self.s.followups.run_due()
        await self.s.runtime.drain()
        return [a for a in alerts if a.conversation_id == self.conv_id] if self.conv_id else alerts

    async def ticket(self) -> Any:
        """The conversation's open ticket, else the customer's latest one (resolved ones too)."""
        if not self.conv_id:
            return None
        t = await self.s.store.conversation_ticket(self.conv_id)
        if t is None:
            conv = await self.s.store.get_conversation(self.conv_id)
            mine = await self.s.store.customer_tickets(conv.customer_id) if conv else []
            t = mine[0] if mine else None
        return t

    async def _new_messages(self) -> list[Any]:
        if not self.conv_id:
            return []
        history = await self.s.store.history(self.conv_id, after_id=self.seen, limit=1000)
        if history:
            self.seen = max(m.id for m in history)
        return [m for m in history if m.direction == "out"]


def step_index(pf: Any, at: str) -> int:
    """The index of step ``at`` in a parsed flow: a step id, or the slot a collect step asks."""
    from flows.schema import CollectStep

    if at in pf.ids:
        return pf.index_of(at)
    for i, s in enumerate(pf.steps):
        if isinstance(s, CollectStep) and s.collect == at:
            return i
    raise KeyError(at)


async def agent_act(s: Any, conv_id: str, cmd: str, text: str, agent: str) -> str | None:
    """Play the agent on the conversation's open handoff: claim, reply TEXT, resolve OUTCOME or
    back (hand it back to the bot). Returns None when done, else why not (one line)."""
    from handoff.queue import DeskError

    h = await s.store.active_handoff(conv_id) if conv_id else None
    if h is None:
        return "no handoff is open in this conversation (nothing for an agent to do)"
    try:
        if cmd == "claim":
            await s.queue.claim(h.id, agent)
        elif cmd == "reply":
            if h.state == "queued":
                await s.queue.claim(h.id, agent)
            await s.queue.reply(h.id, agent, text)
        elif cmd == "resolve":
            await s.queue.resolve(h.id, agent, result=text or None)
        elif cmd == "back":
            await s.queue.hand_back(h.id, agent)
        else:
            return f"unknown agent command {cmd!r} (claim, reply TEXT, resolve OUTCOME, back)"
    except DeskError as exc:
        return f"the agent cannot {cmd}: {exc}"
    return None


async def run_case(case: Case, config: Config, *, services_factory: Callable[..., Any] | None = None) -> CaseResult:
    """Run one test on fresh services built from ``config`` (see :func:`test_config`)."""
    from bot.app import build_services

    result = CaseResult(case)
    if case.skip is not None:
        result.skipped = case.skip
        return result
    started = time.perf_counter()
    s = await (services_factory or build_services)(config)
    clock = FakeClock()
    if s.tickets is not None:
        s.tickets.clock = clock          # SLA watch, follow-ups and reviews read the tickets' clock
    errors = _TurnErrors()
    watched = [logging.getLogger(n) for n in ("bot.runtime", "flows")]
    saved = [(lg.level, lg.propagate) for lg in watched]
    for lg in watched:
        lg.addHandler(errors)
        if not lg.isEnabledFor(logging.ERROR):
            # the log is off (the CLI without --log): collect the errors here, print none
            lg.setLevel(logging.ERROR)
            lg.propagate = False
    c = Conversation(s, case, clock)
    servers: list[FakeServer] = []
    try:
        for name, spec in case.endpoints.items():
            fake = FakeServer(name, spec, config.integrations.demo_api)
            servers.append(fake)
            await fake.start()
            _point_at(s.integrations, name, fake, config)
        if case.start is not None:
            before = len(result.failures)
            try:
                got = await c.start_at(case.start)
            except _Stop as exc:
                result.failures.append(Failure(case.start.line, "start", "start", [str(exc)]))
                _note_unmatched(result.failures[before:], servers)
                return result
            if case.start.bot is not None:
                _check_replies(result, case.start.bot[0], got, case.start.bot[1], "start")
            _note_unmatched(result.failures[before:], servers)
        for step in case.steps:
            label = f"step {step.index} ({step.title()})"
            alerts: list[Any] = []
            errors.records.clear()
            before = len(result.failures)
            try:
                if step.action == "say":
                    await c.send(step.text, attachments=step.attachments)
                elif step.action == "attach":
                    await c.send("", attachments=step.attachments)
                elif step.action == "press":
                    await c.press(step.press)
                elif step.action == "agent":
                    await c.agent(*step.agent)
                elif step.action == "wait":
                    alerts = await c.wait(step.wait)
            except _Stop as exc:
                result.failures.append(Failure(step.line, label, step.action or "step", [str(exc)]))
                _note_unmatched(result.failures[before:], servers)
                break
            got = await c._new_messages()
            if errors.records:
                r = errors.records[0]
                why = f"{r.exc_info[0].__name__}: {r.exc_info[1]}" if r.exc_info and r.exc_info[1] else r.getMessage()
                result.failures.append(Failure(step.line, label, "the bot failed on this turn",
                                               [f"error: {why}", "(the customer got the apology; run with "
                                                                 "--log to see the traceback)"]))
                _note_unmatched(result.failures[before:], servers)
                break
            await _check_step(result, step, label, c, got, alerts)
            _note_unmatched(result.failures[before:], servers)
            if len(result.failures) > before and step.action is not None and _derails(result.failures[before:]):
                break
    finally:
        for fake in servers:
            await fake.stop()
        for lg, (level, propagate) in zip(watched, saved):
            lg.removeHandler(errors)
            lg.setLevel(level)
            lg.propagate = propagate
        await s.runtime.stop()
        if s.integrations is not None:
            await s.integrations.close()     # the calls' HTTP client
        await s.store.close()
        result.seconds = time.perf_counter() - started
    return result


def _point_at(integrations: Any, name: str, fake: FakeServer, config: Config) -> None:
    """Send the endpoint ``name``'s calls to the test's server; it waits at most TEST_TIMEOUT
    for an answer and retries at once, so a timeout costs no real time."""
    from pydantic import SecretStr

    from bot.config import EndpointConfig

    ep = integrations.endpoints.get(name) or EndpointConfig(base_url="http://127.0.0.1")
    update: dict[str, Any] = {"base_url": fake.base_url, "timeout": min(ep.timeout, TEST_TIMEOUT), "retry_delay": 0.0}
    if fake.spec.demo:
        update["auth_header"] = SecretStr("Bearer " + config.integrations.demo_api.token.get_secret_value())
    integrations.endpoints[name] = ep.model_copy(update=update)


def _note_unmatched(new: list[Failure], servers: list[FakeServer]) -> None:
    """Name the requests no ``endpoints:`` entry answered (they got a 404) under the step's first
    failure: the likely cause."""
    calls = [(f.name, m, p) for f in servers for m, p in f.unmatched]
    for f in servers:
        f.unmatched.clear()
    if new and calls:
        new[0].lines += [f"note: the test's endpoints: gave no answer to {name} {m} {p} (it got a 404; "
                         f"add \"{m} {p}\" under endpoints.{name})" for name, m, p in calls]


def _derails(failures: list[Failure]) -> bool:
    """After a failed check the test goes on (more differences are shown at once), except when
    the conversation went elsewhere (another flow): then every later step would fail too."""
    return any(f.what == "flow" for f in failures)


async def _check_step(result: CaseResult, step: Step, label: str, c: Conversation, got: list[Any],
                      alerts: list[Any]) -> None:
    s = c.s
    flow_state = (await s.store.load_flow_state(c.conv_id) or {}) if c.conv_id else {}
    t = await c.ticket()
    ticket = None if t is None else {
        "reference": t.reference, "category": t.category, "severity": t.severity,
        "department": t.department, "team": t.team, "status": t.status, "priority": t.priority,
        "result": t.result}
    values = {"slots": flow_state.get("slots") or {}, "ticket": ticket or {}}
    for key, (want, line) in step.expect.items():
        if key == "bot":
            _check_replies(result, [m.with_values(values) for m in want], got, line, label)
        elif key == "slots":
            slots = flow_state.get("slots") or {}
            for name, (kind, v, sline) in want.items():
                actual = slots.get(name)
                ok = (_empty(actual) != v if kind == "set" else
                      (v is not None and not _empty(actual) and v.ok(str(actual))) if kind == "match" else
                      _same(actual, v))
                if not ok:
                    exp = ("set" if v else "not set") if kind == "set" else v.describe() if kind == "match" else repr(v)
                    result.failures.append(Failure(sline, label, f"slot {name}",
                                                   [f"expected: {exp}", f"got:      {_shown(actual)}"]))
        elif key == "flow":
            actual = flow_state.get("flow")
            if actual != want:
                result.failures.append(Failure(line, label, "flow", [
                    f"expected: {want!r}", f"got:      {actual!r}"
                    + (f" (at step {flow_state.get('step')})" if actual else " (no flow running)")]))
        elif key == "language":
            conv = await s.store.get_conversation(c.conv_id) if c.conv_id else None
            actual = conv.language if conv else None
            if actual != want:
                result.failures.append(Failure(line, label, "language", [f"expected: {want!r}", f"got:      {actual!r}"]))
        elif key == "handoff":
            h = await s.store.active_handoff(c.conv_id) if c.conv_id else None
            record = None if h is None else {
                "team": h.team, "reason": h.reason, "priority": h.priority, "cause": h.cause, "state": h.state,
                "agent_reason": h.context.get("agent_reason") or "", "agent": h.agent}
            _check_record(result, "handoff", want, record, line, label)
        elif key == "ticket":
            _check_record(result, "ticket", want, ticket, line, label)
        elif key == "alerts":
            rows = [{"step": a.step, "level": a.level, "text": a.text(c.clock())} for a in alerts]
            if not want and rows:
                result.failures.append(Failure(line, label, "SLA alerts", ["expected: none",
                                                                           *[f"got:      {r['text']}" for r in rows]]))
            for exp in want:
                if not any(_fields_ok(exp["fields"], r) for r in rows):
                    result.failures.append(Failure(exp["line"], label, "SLA alert", [
                        f"expected: {_describe_fields(exp['fields'])}",
                        *([f"got:      {r['step']} {r['level']}: {r['text']}" for r in rows] or ["got:      no alert"])]))


def _check_replies(result: CaseResult, want: list[Match], got: list[Any], line: int, label: str) -> None:
    """Each expected reply, in order, among what was sent (other messages may come between);
    an empty list: nothing was sent."""
    texts = [(m.text, tuple(b.title for b in m.buttons)) for m in got]
    if not want:
        if texts:
            result.failures.append(Failure(line, label, "bot replies", ["expected: no reply",
                                                                        *_got_lines(texts)]))
        return
    i = 0
    for m in want:
        j = next((k for k in range(i, len(texts)) if m.ok(*texts[k])), None)
        if j is None:
            lines = [f"expected: {m.describe()}", *_got_lines(texts, mark_from=i)]
            near = _closest(m, texts[i:]) if m.kind == "exact" else None
            if near:
                lines += ["diff (- expected, + got):", *near]
            result.failures.append(Failure(m.line, label, "bot reply", lines))
            return      # the later ones would be looked for after a reply that did not come
        i = j + 1


def _got_lines(texts: list[tuple[str, tuple[str, ...]]], mark_from: int = 0) -> list[str]:
    if not texts:
        return ["got:      no reply"]
    out = ["got:"]
    for k, (t, b) in enumerate(texts, 1):
        out.append(f"  {k}. {t!r}" + (f" [buttons: {', '.join(b)}]" if b else "")
                   + ("  (before the replies already matched)" if k <= mark_from else ""))
    return out


def _closest(m: Match, texts: list[tuple[str, tuple[str, ...]]]) -> list[str] | None:
    """A word diff against the reply most like the expected text, when one is close."""
    best, ratio = None, 0.0
    for t, _ in texts:
        r = difflib.SequenceMatcher(None, _squash(m.value), _squash(t)).ratio()
        if r > ratio:
            best, ratio = t, r
    if best is None or ratio < 0.5:
        return None
    if m.text_ok(best):      # the text matches: the buttons differ
        return None
    a, b = _squash(m.value).split(" "), _squash(best).split(" ")
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b).get_opcodes():
        if op == "equal":
            continue
        if i2 > i1:
            out.append(f"  - {' '.join(a[i1:i2])}")
        if j2 > j1:
            out.append(f"  + {' '.join(b[j1:j2])}")
    return out[:12]


def _check_record(result: CaseResult, what: str, want: dict[str, Any] | None, record: dict[str, Any] | None,
                  line: int, label: str) -> None:
    if want is None:
        if record is not None:
            result.failures.append(Failure(line, label, what, ["expected: none",
                                                               f"got:      {_describe_fields_got(record)}"]))
        return
    if record is None:
        result.failures.append(Failure(line, label, what, [f"expected: {_describe_fields(want) or 'one'}",
                                                           "got:      none"]))
        return
    for k, exp in want.items():
        actual = record.get(k)
        ok = exp.ok(str(actual if actual is not None else "")) if isinstance(exp, Match) else _same(actual, exp[1])
        if not ok:
            xline = exp.line if isinstance(exp, Match) else exp[2]
            result.failures.append(Failure(xline, label, f"{what} {k}", [
                f"expected: {exp.describe() if isinstance(exp, Match) else repr(exp[1])}",
                f"got:      {_shown(actual)}"]))


def _fields_ok(want: dict[str, Any], row: Mapping[str, Any]) -> bool:
    for k, exp in want.items():
        actual = row.get(k)
        if isinstance(exp, Match):
            if not exp.ok(str(actual or "")):
                return False
        elif not _same(actual, exp[1]):
            return False
    return True


def _describe_fields(want: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v.describe() if isinstance(v, Match) else repr(v[1])}" for k, v in want.items())


def _describe_fields_got(record: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in record.items() if v not in (None, ""))


def _same(actual: Any, expected: Any) -> bool:
    if expected is None:
        return _empty(actual)
    if actual == expected:
        return True
    if isinstance(expected, (str, int, float, bool)) and isinstance(actual, (str, int, float, bool)):
        return str(actual).strip().lower() == str(expected).strip().lower() if isinstance(expected, bool) \
            else str(actual) == str(expected)
    return False


def _empty(v: Any) -> bool:
    return v in (None, "", [])


def _shown(v: Any) -> str:
    return "not set" if _empty(v) else repr(v)


def _squash(text: str) -> str:
    return " ".join(str(text).split())


def _short(text: str, n: int = 40) -> str:
    t = _squash(text)
    return repr(t if len(t) <= n else t[: n - 1] + "…")


def _duration(seconds: float) -> str:
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= n and seconds % n == 0:
            return f"{int(seconds // n)}{unit}"
    return f"{seconds:g}s"


# -- the report --------------------------------------------------------------------------------------------


@dataclass
class Report:
    results: list[CaseResult]
    seconds: float

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if r.failures]

    @property
    def passed(self) -> list[CaseResult]:
        return [r for r in self.results if r.passed]

    @property
    def skipped(self) -> list[CaseResult]:
        return [r for r in self.results if r.skipped is not None]


def format_failure(r: CaseResult) -> list[str]:
    out = [f"{'_' * 8} {Path(r.case.file).name}: {r.case.name} {'_' * 8}"]
    for f in r.failures:
        out.append(f"{r.case.file}:{f.line}: {f.step}: {f.what}")
        out += [f"    {x}" for x in f.lines]
    return out


def summary_line(report: Report) -> str:
    parts = []
    if report.failed:
        parts.append(f"{len(report.failed)} failed")
    parts.append(f"{len(report.passed)} passed")
    if report.skipped:
        parts.append(f"{len(report.skipped)} skipped")
    return f"{', '.join(parts)} in {report.seconds:.2f}s"


async def run_files(files: Sequence[Path], cases: Sequence[Case], config: Config, *,
                    echo: Callable[[str, bool], None] | None = None, verbose: bool = False,
                    exitfirst: bool = False) -> Report:
    """Run ``cases`` (from ``files``, in order), printing progress through ``echo(text, newline)``."""
    echo = echo or (lambda text, nl: None)
    started = time.perf_counter()
    results: list[CaseResult] = []
    by_file: dict[str, list[Case]] = {}
    for case in cases:
        by_file.setdefault(case.file, []).append(case)
    stop = False
    for f in files:
        mine = by_file.get(str(f), [])
        if not mine:
            continue
        echo(f"{f} ", verbose)
        for case in mine:
            r = await run_case(case, config)
            results.append(r)
            mark = "s" if r.skipped is not None else "F" if r.failures else "."
            if verbose:
                echo(f"  {case.name} {'SKIPPED' if mark == 's' else 'FAILED' if mark == 'F' else 'PASSED'}"
                     f" ({r.seconds:.2f}s)", True)
            else:
                echo(mark, False)
            if r.failures and exitfirst:
                stop = True
                break
        if not verbose:
            echo("", True)
        if stop:
            break
    return Report(results, time.perf_counter() - started)


def check_against_flows(cases: Iterable[Case], flowset: Any,
                        endpoints: Iterable[str] | None = None) -> list[FlowError]:
    """What the flows and config must have for the tests: the flows and steps ``start:`` names,
    the endpoints ``endpoints:`` names (config ``integrations.endpoints``)."""
    errors = []
    known = sorted(endpoints) if endpoints is not None else None
    for c in cases:
        for name, spec in c.endpoints.items():
            if known is not None and name not in known:
                errors.append(FlowError(f"endpoints: no endpoint {name!r} in config integrations.endpoints "
                                        f"(endpoints: {', '.join(known) or 'none'})", path=c.file, line=spec.line))
        if c.start is None:
            continue
        pf = flowset.flows.get(c.start.flow)
        if pf is None:
            errors.append(FlowError(f"start: no flow {c.start.flow!r} (flows: {', '.join(sorted(flowset.flows))})",
                                    path=c.file, line=c.start.line))
            continue
        if c.start.at:
            try:
                step_index(pf, c.start.at)
            except KeyError:
                errors.append(FlowError(f"start.at: flow {c.start.flow!r} has no step id or collect step "
                                        f"{c.start.at!r}", path=c.file, line=c.start.line))
        langs = flowset.settings.languages
        lang = c.start.language or c.language
        if lang and lang not in getattr(langs, "supported", [lang]):
            errors.append(FlowError(f"language {lang!r} is not one of the flows' languages", path=c.file,
                                    line=c.start.line))
    return errors


def junit_xml(report: Report) -> bytes:
    """The results as JUnit XML (one testsuite per file), which CI systems read."""
    root = ET.Element("testsuites", name="omnibot", tests=str(len(report.results)),
                      failures=str(len(report.failed)), skipped=str(len(report.skipped)),
                      time=f"{report.seconds:.3f}")
    by_file: dict[str, list[CaseResult]] = {}
    for r in report.results:
        by_file.setdefault(r.case.file, []).append(r)
    for file, results in by_file.items():
        suite = ET.SubElement(root, "testsuite", name=file, tests=str(len(results)),
                              failures=str(sum(1 for r in results if r.failures)),
                              skipped=str(sum(1 for r in results if r.skipped is not None)),
                              errors="0", time=f"{sum(r.seconds for r in results):.3f}")
        for r in results:
            tc = ET.SubElement(suite, "testcase", classname=Path(file).stem, name=r.case.name,
                               file=file, line=str(r.case.line), time=f"{r.seconds:.3f}")
            if r.skipped is not None:
                ET.SubElement(tc, "skipped", message=r.skipped)
            elif r.failures:
                first = r.failures[0]
                fail = ET.SubElement(tc, "failure", message=f"{file}:{first.line}: {first.step}: {first.what}")
                fail.text = "\n".join(format_failure(r)[1:])
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
