"""Load a folder of flow YAML files into a validated :class:`FlowSet`.

Every problem is collected (not just the first) and reported as
``file:line: reason``; :class:`FlowValidationError` carries them all.

Templates and conditions are checked for what would go wrong only when a
customer reaches them: syntax, names the engine does not pass (``slot.x``
for ``slots.x``), and slots nothing ever fills (``slots.refrence``). The engine
keeps slots for the whole conversation (until ``action: reset``), so a slot is
known if any flow collects, sets or saves it, or omnibot fills it itself.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Any, Callable, Iterable

from pydantic import BaseModel, ValidationError

from bot.errors import FlowError, FlowValidationError
from bot.yamlmarks import MarkedYamlError, Marks, describe_loc, load_marked

from .i18n import SYSTEM_MESSAGES, SYSTEM_NAMES, LanguageSettings, Text, variants
from .render import Renderer, TemplateError, TemplateNames
from .schema import (RESERVED_TARGETS, STEP_KINDS, BranchCase, BranchStep, CallStep, CollectStep, FlowFile,
                     GotoStep, HandoffStep, Intent, SayStep, Settings, SetStep, ActionStep, Flow, Step)

KNOWN_ACTIONS = ("create_reference", "ticket_status", "record_csat", "reopen_ticket", "link_code",
                 "link_with_code", "reset")
# Slots an action sets besides its save_as (handoff/tickets.py ticket_actions: ctx.updates).
ACTION_SLOTS: dict[str, tuple[str, ...]] = {
    "create_reference": ("ticket_department", "ticket_severity", "ticket_due"),
}
# Slots omnibot gives the flows it starts itself: settings.complaints.survey_flow and
# follow_up_flow get the resolved complaint's reference (handoff/resolution.py, followups.py).
STARTED_FLOW_SLOTS = ("reference",)

# The names each kind of template is rendered with.
STEP_NAMES = ("slots", "customer", "channel", "message", "payload")   # flows/turn.py Turn.context()
HANDOFF_NAMES = ("team", "reason", "position", "customer", "slots")  # bot/runtime.py _handoff_spec
# settings: templates, by their path under settings:, with the names each one sees
SETTINGS_TEMPLATES: dict[tuple[str, ...], tuple[str, ...]] = {
    ("handoff_message",): HANDOFF_NAMES,
    ("confirm_prefill",): STEP_NAMES + ("value", "label"),
    ("confirm_prefills",): STEP_NAMES + ("items",),
    ("fallback", "clarify"): STEP_NAMES + ("options",),
    ("fallback", "offer_human"): STEP_NAMES,
    ("fallback", "messages"): STEP_NAMES,                           # each message
    ("complaints", "offer"): STEP_NAMES,
}
# settings: texts shown as written (button titles)
SETTINGS_PLAIN = (("complaints", "offer_button"),)


@dataclass(frozen=True)
class ParsedFlow:
    name: str
    flow: Flow
    steps: tuple[Step, ...]
    file: str
    line: int
    step_lines: tuple[int, ...]
    ids: dict[str, int] = field(default_factory=dict)

    def index_of(self, step_id: str) -> int:
        return self.ids[step_id]


@dataclass(frozen=True)
class FlowSet:
    intents: dict[str, Intent]
    flows: dict[str, ParsedFlow]
    settings: Settings
    files: tuple[str, ...] = ()

    def flow_for_intent(self, intent: str) -> ParsedFlow | None:
        return self._by_trigger.get(intent)

    @cached_property
    def _by_trigger(self) -> dict[str, ParsedFlow]:
        """Intent -> the first flow it triggers (looked up twice a message: not a scan of every flow)."""
        out: dict[str, ParsedFlow] = {}
        for f in self.flows.values():
            for t in f.flow.triggers():
                out.setdefault(t, f)
        return out

    def examples(self) -> dict[str, list[str]]:
        return {name: list(i.examples) for name, i in self.intents.items()}

    def content_hash(self) -> str:
        import hashlib
        h = hashlib.sha256()
        for name in sorted(self.intents):
            h.update(name.encode())
            for e in self.intents[name].examples:
                h.update(b"\0" + e.encode())
        return h.hexdigest()


class _Collector:
    def __init__(self) -> None:
        self.errors: list[FlowError] = []

    def add(self, reason: str, file: str, line: int | None) -> None:
        self.errors.append(FlowError(reason, path=file, line=line))

    def pydantic(self, exc: ValidationError, file: str, marks: Marks, prefix: tuple[Any, ...]) -> None:
        for err in exc.errors():
            loc = prefix + tuple(err["loc"])
            reason = err["msg"]
            if err["type"] == "extra_forbidden":
                reason = f"unknown key {loc[-1]!r}"
                loc = loc[:-1] + (loc[-1],)
            elif err["type"] == "missing":
                reason = f"missing key {loc[-1]!r}"
            self.add(f"{describe_loc(loc)}: {reason}", file, marks.line_for(loc))


#: folders of a flows folder whose YAML files are no flows: the desk's canned replies and the
#: conversation tests (``omnibot test``)
NOT_FLOWS = ("canned", "tests")


def load_flows(path: str | Path, *, teams: Iterable[str] | None = None,
               endpoints: Iterable[str] | None = None) -> FlowSet:
    """Load and validate every ``*.yaml``/``*.yml`` file under ``path`` (a folder or one file).

    Args:
        path: folder of flow files, or a single file.
        teams: team names known to the config; handoff steps naming others are errors.
        endpoints: endpoint names in config integrations.endpoints; call steps naming others are errors.

    Raises:
        FlowValidationError: with every error found.
    """
    root = Path(path)
    errs = _Collector()
    if root.is_dir():
        # canned/ holds the desk's canned replies (handoff/canned.py), tests/ the conversation
        # tests (bot/convtest.py), not flows
        files = sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
                       and p.relative_to(root).parts[0] not in NOT_FLOWS)
        if not files:
            errs.add("no flow files (*.yaml) in this folder", str(root), None)
    elif root.is_file():
        files = [root]
    else:
        raise FlowValidationError([FlowError("no such file or folder", path=str(root))])

    intents: dict[str, tuple[Intent, str, int]] = {}
    flows: dict[str, tuple[Flow, str, Marks]] = {}
    settings: tuple[Settings, str] | None = None
    marks_by_file: dict[str, Marks] = {}
    raw_flows: list[tuple[Any, Any]] = []   # every flows: entry as written, for the slots they fill
    unreadable = False
    for fp in files:
        file = str(fp)
        try:
            text = fp.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            errs.add(f"cannot read: {exc}", file, None)
            unreadable = True
            continue
        try:
            data, marks = load_marked(text)
        except MarkedYamlError as exc:
            errs.add(exc.reason, file, exc.line)
            unreadable = True
            continue
        marks_by_file[file] = marks
        if data is None:
            continue
        if isinstance(data, dict) and isinstance(data.get("flows"), dict):
            raw_flows.extend(data["flows"].items())
        if not isinstance(data, dict):
            errs.add("a flow file is a mapping with intents:, flows: and/or settings:", file, 1)
            continue
        try:
            ff = FlowFile.model_validate(data)
        except ValidationError as exc:
            errs.pydantic(exc, file, marks, ())
            continue
        for name, intent in ff.intents.items():
            line = marks.line_for(("intents", name))
            if name in intents:
                _, f0, l0 = intents[name]
                errs.add(f"intent {name!r} is already defined at {f0}:{l0}", file, line)
            else:
                intents[name] = (intent, file, line or 1)
        for name, flow in ff.flows.items():
            if name in flows:
                f0 = flows[name][1]
                errs.add(f"flow {name!r} is already defined in {f0}", file, marks.line_for(("flows", name)))
            else:
                flows[name] = (flow, file, marks)
        if ff.settings is not None:
            if settings is not None:
                errs.add(f"settings: are already given in {settings[1]}; give them in one file only",
                         file, marks.line_for(("settings",)))
            else:
                settings = (ff.settings, file)

    renderer = Renderer()
    st = settings[0] if settings else Settings()
    team_set = set(teams) if teams is not None else None
    endpoint_set = set(endpoints) if endpoints is not None else None
    parsed: dict[str, ParsedFlow] = {}
    step_locs: dict[str, list[tuple[Any, ...]]] = {}    # each parsed step's path in its file
    for name, (flow, file, marks) in flows.items():
        base = ("flows", name)
        steps: list[Step] = []
        lines: list[int] = []
        ids: dict[str, int] = {}
        for i, raw in enumerate(flow.steps):
            loc = base + ("steps", i)
            line = marks.line_for(loc) or 1
            step = _parse_step(raw, loc, file, marks, errs)
            if step is None:
                continue
            if step.id:
                if step.id in ids:
                    errs.add(f"step id {step.id!r} is used twice in flow {name!r}", file, line)
                ids[step.id] = len(steps)
            steps.append(step)
            lines.append(line)
            step_locs.setdefault(name, []).append(loc)
        for trig in flow.triggers():
            if trig not in intents:
                errs.add(f"flow {name!r}: trigger intent {trig!r} is not defined (intents: "
                         f"{', '.join(sorted(intents)) or 'none'})", file, marks.line_for(base + ("trigger",)))
        parsed[name] = ParsedFlow(name, flow, tuple(steps), file, marks.line_for(base) or 1, tuple(lines), ids)

    # A file that did not parse may fill any slot: then reads of slots are not checked.
    templates = _Templates(renderer, None if unreadable else _filled_slots(raw_flows, st), errs, st.languages)
    for pf in parsed.values():
        marks = flows[pf.name][2]
        for step, line, loc in zip(pf.steps, pf.step_lines, step_locs.get(pf.name, [])):
            _check_step(step, pf, parsed, templates, team_set, errs, line, partial(_line_in, marks, loc, line),
                        endpoint_set)

    for name, (intent, ifile, _) in intents.items():
        if intent.description:       # shown on "did you mean" buttons
            loc = ("intents", name, "description")
            imarks = marks_by_file[ifile]
            templates.text(intent.description, f"intents.{name}.description", ifile,
                           partial(_line_in, imarks, loc, imarks.line_for(loc)), plain=True)

    triggered: dict[str, str] = {}
    for pf in parsed.values():
        for trig in pf.flow.triggers():
            if trig in triggered:
                errs.add(f"intent {trig!r} triggers both flow {triggered[trig]!r} and {pf.name!r}", pf.file,
                         pf.line)
            triggered[trig] = pf.name

    if settings:
        sfile = settings[1]
        smarks = marks_by_file[sfile]
        for i, topic in enumerate(st.fallback.topics):
            if topic not in intents:
                errs.add(f"settings.fallback.topics: no intent named {topic!r}", sfile,
                         smarks.line_for(("settings", "fallback", "topics", i)))
        if st.welcome_flow and st.welcome_flow not in parsed:
            errs.add(f"settings.welcome_flow: no flow named {st.welcome_flow!r}", sfile,
                     smarks.line_for(("settings", "welcome_flow")))
        cflow = st.complaints.flow
        if cflow and cflow not in intents and "flow" in st.complaints.model_fields_set:
            errs.add(f"settings.complaints.flow: no intent named {cflow!r}", sfile,
                     smarks.line_for(("settings", "complaints", "flow")))
        written = smarks.lines     # a setting not written in the file is a built-in default: not checked
        for key, names in SETTINGS_TEMPLATES.items():
            value = _setting(st, key)
            for i, src in enumerate(value) if isinstance(value, list) else [(None, value)]:
                loc = ("settings",) + (key if i is None else key + (i,))
                templates.text(src, describe_loc(loc), sfile, partial(_line_in, smarks, loc, smarks.line_for(loc)),
                               names=names, languages=loc in written)
        for key in SETTINGS_PLAIN:
            loc = ("settings",) + key
            templates.text(_setting(st, key), describe_loc(loc), sfile,
                           partial(_line_in, smarks, loc, smarks.line_for(loc)), plain=True, languages=loc in written)
        for key, src in st.messages.items():
            loc = ("settings", "messages", key)
            if key not in SYSTEM_MESSAGES:
                errs.add(f"settings.messages: no message {key!r} (messages: {', '.join(SYSTEM_MESSAGES)})",
                         sfile, smarks.line_for(loc))
                continue
            at = partial(_line_in, smarks, loc, smarks.line_for(loc))
            templates.text(src, describe_loc(loc), sfile, at, names=SYSTEM_NAMES[key], languages=False)
            if key.startswith("widget_"):       # filled in by the browser: {{ name }} and nothing else
                for code, text in variants(src):
                    if re.search(r"\{%|\{#|\{\{(?!\s*\w+\s*\}\})", text):
                        errs.add(f"{describe_loc(loc + ((code,) if code else ()))}: the web chat widget fills in "
                                 "plain {{ name }} placeholders only (no filters, conditions or comments)",
                                 sfile, at(*((code,) if code else ())))
            # a language the override leaves out keeps the built-in text: only one neither gives is missing
            given = {st.languages.default: src} if isinstance(src, str) else src
            built_in = {c: v for c, v in SYSTEM_MESSAGES[key].items() if c in st.languages.languages}
            templates.languages({**built_in, **given}, describe_loc(loc), sfile, at())
        # omnibot's own messages (the card notice, the agent joined, a complaint's status ...) are built
        # in for en, es and id: another supported language needs them under settings.messages
        if st.languages.complete:
            for code in st.languages.languages:
                missing = [k for k, v in SYSTEM_MESSAGES.items()
                           if code not in v and not _message_given(st.messages.get(k), code, st.languages.default)]
                if missing:
                    errs.add(f"settings.languages.supported: {code!r} has no built-in text for omnibot's own "
                             f"messages; give settings.messages.<name>.{code} for: {', '.join(missing)}", sfile,
                             smarks.line_for(("settings", "languages", "supported"))
                             or smarks.line_for(("settings", "languages")))
    if not parsed and not errs.errors:
        errs.add("no flows defined (add a flows: section)", str(root), None)
    if errs.errors:
        raise FlowValidationError(errs.errors)
    return FlowSet(intents={k: v[0] for k, v in intents.items()}, flows=parsed, settings=st,
                   files=tuple(str(f) for f in files))


def _parse_step(raw: Any, loc: tuple[Any, ...], file: str, marks: Marks, errs: _Collector) -> Step | None:
    line = marks.line_for(loc)
    if raw == "end":
        raw = {"end": True}
    if not isinstance(raw, dict):
        errs.add(f"{describe_loc(loc)}: a step is a mapping like `say: ...` or `collect: slot`", file, line)
        return None
    kinds = [k for k in raw if k in STEP_KINDS]
    if len(kinds) != 1:
        what = "no step kind" if not kinds else f"several step kinds ({', '.join(kinds)})"
        errs.add(f"{describe_loc(loc)}: {what}; a step has exactly one of {', '.join(STEP_KINDS)}", file, line)
        return None
    model: type[BaseModel] = STEP_KINDS[kinds[0]]
    try:
        return model.model_validate(raw)  # type: ignore[return-value]
    except ValidationError as exc:
        errs.pydantic(exc, file, marks, loc)
        return None


def _check_target(target: str, pf: ParsedFlow, flows: dict[str, ParsedFlow], what: str,
                  errs: _Collector, line: int) -> None:
    if target in RESERVED_TARGETS or target in pf.ids:
        return
    if target.startswith("flow:"):
        if target[5:] not in flows:
            errs.add(f"{what}: no flow named {target[5:]!r}", pf.file, line)
        return
    known = sorted(pf.ids) + list(RESERVED_TARGETS)
    errs.add(f"{what}: unknown target {target!r} (a step id in this flow, flow:NAME, handoff or end; "
             f"step ids here: {', '.join(known)})", pf.file, line)


_RESERVED_SLOTS = frozenset(n for n in dir(dict) if not n.startswith("_"))


def _check_slot_name(name: str, pf: ParsedFlow, errs: _Collector, line: int) -> None:
    # Templates read slots as `slots.NAME`; a name like `items` would reach dict.items instead.
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        errs.add(f"slot name {name!r}: use letters, digits and _ (starting with a letter)", pf.file, line)
    elif name in _RESERVED_SLOTS:
        errs.add(f"slot name {name!r} is reserved (templates would read dict.{name}); choose another",
                 pf.file, line)


def _line_in(marks: Marks, loc: tuple[Any, ...], default: int, *sub: Any) -> int:
    """The line of ``loc + sub`` (a key inside a step), else ``default``."""
    return marks.line_for(loc + sub) or default


def _setting(st: Settings, key: tuple[str, ...]) -> Any:
    value: Any = st
    for part in key:
        value = getattr(value, part)
    return value


def _filled_slots(raw_flows: list[tuple[Any, Any]], st: Settings) -> frozenset[str]:
    """The slots something fills: a step's collect, set, save_as, what its action sets itself, and
    what omnibot gives the flows it starts. Read from the flows as written, before validation, so
    that one broken step does not make every read of its slot an error too."""
    out: set[str] = set()
    for _, flow in raw_flows:
        steps = flow.get("steps") if isinstance(flow, dict) else None
        for raw in steps if isinstance(steps, list) else ():
            if not isinstance(raw, dict):
                continue
            if isinstance(raw.get("collect"), str):
                out.add(raw["collect"])
            if isinstance(raw.get("set"), dict):
                out.update(str(k) for k in raw["set"])
            if isinstance(raw.get("save_as"), str):
                out.add(raw["save_as"])
            if isinstance(raw.get("call"), str) and isinstance(raw.get("save"), dict):
                out.update(str(k) for k in raw["save"])
            if isinstance(raw.get("action"), str):
                out.update(ACTION_SLOTS.get(raw["action"], ()))
    names = {name for name, _ in raw_flows}
    if any(f in names for f in (st.complaints.survey_flow, st.complaints.follow_up_flow) if f):
        out.update(STARTED_FLOW_SLOTS)
    return frozenset(out)


_TEMPLATE_PART = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)


def _has_words(text: str) -> bool:
    """Words a reader would need translated, once the template's own parts are taken out
    ("{{ slots.status_text }}" and "1" have none)."""
    return bool(re.search(r"[^\W\d_]{2,}", _TEMPLATE_PART.sub(" ", text)))


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _message_given(src: Text | None, code: str, default: str) -> bool:
    """``settings.messages.<name>`` gives a text in ``code`` (a plain string is the default language's)."""
    if isinstance(src, str):
        return code == default and bool(src.strip())
    return isinstance(src, dict) and isinstance(src.get(code), str) and bool(src[code].strip())


class _Templates:
    """Checks templates and conditions: they compile, and read only names that will exist."""

    def __init__(self, renderer: Renderer, slots: frozenset[str] | None, errs: _Collector,
                 languages: LanguageSettings | None = None) -> None:
        self.renderer = renderer
        self.slots = slots
        self.errs = errs
        self.langs = languages or LanguageSettings()

    def text(self, src: Text | None, what: str, file: str, at: Callable[..., int | None], *,
             names: tuple[str, ...] = STEP_NAMES, plain: bool = False, languages: bool = True) -> None:
        """A text the customer reads, as a string or a mapping by language (README "Languages"):
        each variant is a template (or, ``plain``, shown as written), at the line of its own key;
        and, with ``languages``, it is given in every supported language."""
        for lang, v in variants(src):
            label = what if lang is None else f"{what}.{lang}"
            line = at() if lang is None else at(lang)
            if plain:
                self.plain(v, label, file, line)
            else:
                self.template(v, label, file, line, names=names)
        if languages and src is not None:
            self.languages(src, what, file, at())

    def languages(self, src: Text, what: str, file: str, line: int | None) -> None:
        """A text missing in a supported language, or given in one that is not supported."""
        langs = self.langs
        supported = langs.languages
        if isinstance(src, dict):
            for code in src:
                if code not in supported:
                    self.errs.add(f"{what}: language {code!r} is not in settings.languages.supported "
                                  f"({', '.join(supported)})", file, line)
            missing = [c for c in supported if not (isinstance(src.get(c), str) and src[c].strip())]
            if missing and langs.complete:
                self.errs.add(f"{what}: no text in {', '.join(map(repr, missing))} (settings.languages.supported: "
                              f"{', '.join(supported)})", file, line)
        elif len(supported) > 1 and langs.complete and _has_words(src):
            others = [c for c in supported if c != langs.default]
            self.errs.add(f"{what}: a plain text is only in the default language ({langs.default}); give it by "
                          f"language ({', '.join(supported)}), e.g. {{{langs.default}: ..., {others[0]}: ...}}",
                          file, line)

    def template(self, src: Any, what: str, file: str, line: int | None, *,
                 names: tuple[str, ...] = STEP_NAMES) -> None:
        if isinstance(src, str) and src:
            self._parsed(self.renderer.template_names, src, what, file, line, names)

    def expression(self, src: str, what: str, file: str, line: int | None, *,
                   names: tuple[str, ...] = STEP_NAMES) -> None:
        self._parsed(self.renderer.expression_names, src, what, file, line, names)

    def _parsed(self, parse: Callable[[str], Any], src: str, what: str, file: str, line: int | None,
                names: tuple[str, ...]) -> None:
        try:
            found = parse(src)
        except TemplateError as exc:
            self.errs.add(f"{what}: {exc}", file, line)
            return
        self._check(found, what, file, line, names)

    def plain(self, text: Any, what: str, file: str, line: int | None) -> None:
        """``text`` is shown as written: template syntax in it would reach the customer as typed."""
        if isinstance(text, str) and ("{{" in text or "{%" in text):
            self.errs.add(f"{what}: {text!r} is shown as written, not rendered (only texts such as say, "
                          "ask and invalid are templates)", file, line)

    def _check(self, found: TemplateNames, what: str, file: str, line: int | None,
               names: tuple[str, ...]) -> None:
        for name in sorted(found.names - set(names)):
            # jinja would raise UndefinedError here: a reply is lost, or a branch is silently false
            if "slots" in names and self.slots and name in self.slots:
                hint = f"; did you mean 'slots.{name}'?"
            else:
                hint = _did_you_mean(name, names)
            self.errs.add(f"{what}: unknown name {name!r} (known here: {', '.join(sorted(names))}){hint}",
                          file, line)
        if "slots" not in names or self.slots is None:   # None: some file did not parse
            return
        for slot in found.slots:
            if slot not in self.slots:
                # slots.NAME of a slot nothing fills is always empty: "Your reference is ."
                self.errs.add(f"{what}: slot {slot!r} is never filled: no flow collects, sets or saves it"
                              f"{_did_you_mean(slot, self.slots)}", file, line)


def _check_step(step: Step, pf: ParsedFlow, flows: dict[str, ParsedFlow], templates: _Templates,
                teams: set[str] | None, errs: _Collector, line: int, at: Callable[..., int],
                endpoints: set[str] | None = None) -> None:
    """Check one step; ``at(*keys)`` is the line of a key inside it (templates are reported there)."""
    def tpl(src: Text | None, what: str, *key: Any) -> None:
        templates.text(src, what, pf.file, partial(at, *key))

    def plain(src: Text | None, what: str, *key: Any) -> None:
        templates.text(src, what, pf.file, partial(at, *key), plain=True)

    if isinstance(step, SayStep):
        tpl(step.say, "say", "say")
        for j, b in enumerate(step.buttons):
            if isinstance(b, str):
                plain(b, "say: button", "buttons", j)
            else:
                plain(b.title, "say: button", "buttons", j, "title")
    elif isinstance(step, CollectStep):
        _check_slot_name(step.collect, pf, errs, line)
        tpl(step.ask, f"collect {step.collect!r}: ask", "ask")
        tpl(step.invalid, f"collect {step.collect!r}: invalid", "invalid")
        for j, c in enumerate(step.choices):
            if isinstance(c, str):
                plain(c, f"collect {step.collect!r}: choice", "choices", j)
            else:
                plain(c.title, f"collect {step.collect!r}: choice", "choices", j, "title")
        if step.type == "choice" and not step.choices:
            errs.add(f"collect {step.collect!r}: type choice needs choices:", pf.file, line)
        if step.type == "regex":
            if not step.pattern:
                errs.add(f"collect {step.collect!r}: type regex needs pattern:", pf.file, line)
            else:
                try:
                    re.compile(step.pattern)
                except re.error as exc:
                    errs.add(f"collect {step.collect!r}: bad pattern: {exc}", pf.file, line)
        _check_target(step.on_fail, pf, flows, f"collect {step.collect!r}: on_fail", errs, line)
    elif isinstance(step, BranchStep):
        if not step.branch:
            errs.add("branch: needs at least one case", pf.file, line)
        for i, case in enumerate(step.branch):
            try:
                c = BranchCase.model_validate(case)
            except ValidationError as exc:
                errs.add(f"branch case {i + 1}: " + "; ".join(
                    f"{describe_loc(e['loc'])}: {e['msg']}" for e in exc.errors()), pf.file, line)
                continue
            if (c.if_ is None) == (c.else_ is None):
                errs.add(f"branch case {i + 1}: give either `if: CONDITION` or `else: true`, with `then:`",
                         pf.file, line)
            if c.if_:
                templates.expression(c.if_, f"branch case {i + 1}", pf.file, at("branch", i, "if"))
            _check_target(c.then, pf, flows, f"branch case {i + 1}", errs, line)
    elif isinstance(step, SetStep):
        for k in step.set:
            _check_slot_name(k, pf, errs, line)
        for k, v in step.set.items():
            if isinstance(v, str):      # a value, not a text the customer reads: any language
                templates.template(v, f"set {k!r}", pf.file, at("set", k))
    elif isinstance(step, ActionStep):
        if step.action not in KNOWN_ACTIONS:
            errs.add(f"action {step.action!r} is unknown (known: {', '.join(KNOWN_ACTIONS)})", pf.file, line)
    elif isinstance(step, HandoffStep):
        templates.text(step.handoff.reason, "handoff reason", pf.file, partial(at, "handoff", "reason"),
                       languages="reason" in step.handoff.model_fields_set)   # else the built-in one
        if teams is not None and step.handoff.team and step.handoff.team not in teams:
            errs.add(f"handoff: team {step.handoff.team!r} is not in config handoff.teams "
                     f"({', '.join(sorted(teams))})", pf.file, line)
    elif isinstance(step, GotoStep):
        _check_target(step.goto, pf, flows, "goto", errs, line)
    elif isinstance(step, CallStep):
        what = f"call {step.call!r}"
        if endpoints is not None and step.call not in endpoints:
            errs.add(f"{what}: no endpoint named {step.call!r} in config integrations.endpoints "
                     f"({', '.join(sorted(endpoints)) or 'none'}){_did_you_mean(step.call, endpoints)}", pf.file, line)
        if step.path and not step.path.startswith("/"):
            errs.add(f"{what}: path starts with / (it is appended to the endpoint's base_url)", pf.file, at("path"))
        templates.template(step.path, f"{what}: path", pf.file, at("path"))
        for k, v in step.query.items():
            templates.template(v, f"{what}: query {k!r}", pf.file, at("query", k))
        if step.body is not None and step.method == "GET":
            errs.add(f"{what}: a GET has no body (use query:, or method: POST)", pf.file, at("body"))
        for keys, v in _strings(step.body, ()):
            templates.template(v, f"{what}: body {'.'.join(map(str, keys))}", pf.file, at("body", *keys))
        for slot in step.save:
            _check_slot_name(slot, pf, errs, at("save", slot))
        for code in step.on_status:
            if not 100 <= code <= 599 or code == 404 or 200 <= code < 300:
                errs.add(f"{what}: on_status {code}: give statuses 300-599 other than 404 (2xx is on_success, "
                         "404 on_not_found)", pf.file, at("on_status", code))
        for key, target in (("on_success", step.on_success), ("on_not_found", step.on_not_found),
                            ("on_failure", step.on_failure),
                            *((f"on_status {c}", t) for c, t in step.on_status.items())):
            if target is not None:
                _check_target(target, pf, flows, f"{what}: {key}", errs, line)
        tpl(step.failure_message, f"{what}: failure_message", "failure_message")


def _strings(value: Any, keys: tuple[Any, ...]) -> Iterable[tuple[tuple[Any, ...], str]]:
    """Every string inside a JSON-like value, with its keys."""
    if isinstance(value, str):
        yield keys, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, keys + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, keys + (i,))
