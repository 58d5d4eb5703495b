"""Warnings about flows that load but are probably not what the author meant (``omnibot validate``).

Errors stop the flows from loading (:mod:`flows.loader`); these do not:

- a slot that is only ever cleared (``set: {x: null}``) and never given a value (a slot that is
  *read* but never filled is already an error);
- a step nothing reaches (no step before it goes on to it, and nothing jumps to its id);
- an intent with too few examples (:data:`MIN_EXAMPLES`);
- two intents whose examples the matcher confuses: each example is matched, leave-one-out, against
  all the other examples (the lexical matcher: fast and repeatable), and a pair is reported when
  :data:`MIN_CONFUSED` or more of their examples (and :data:`MIN_SHARE` of the smaller one's) go to
  the other with a score of at least :data:`MIN_SCORE`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

from .loader import ACTION_SLOTS, STARTED_FLOW_SLOTS, FlowSet, ParsedFlow
from .matcher import LexicalMatcher
from .schema import (RESERVED_TARGETS, ActionStep, BranchCase, BranchStep, CallStep, CollectStep, EndStep,
                     GotoStep, HandoffStep, SetStep, Step)

MIN_EXAMPLES = 5
MIN_CONFUSED = 3          # examples of a pair that go to the other intent ...
MIN_SHARE = 0.2           # ... and this share of the smaller intent's examples
MIN_SCORE = 0.3           # a leave-one-out match weaker than this is no match at all (an unseen word)


@dataclass(frozen=True, slots=True)
class FlowWarning:
    reason: str
    path: str = ""
    line: int | None = None

    def __str__(self) -> str:
        where = self.path + (f":{self.line}" if self.line else "")
        return f"{where}: {self.reason}" if where else self.reason


def lint(fs: FlowSet, *, intent_files: dict[str, tuple[str, int]] | None = None) -> list[FlowWarning]:
    """Every warning about ``fs`` (see the module docstring)."""
    return [*_cleared_only(fs), *_unreachable(fs), *_few_examples(fs, intent_files or {}),
            *_overlaps(fs, intent_files or {})]


# -- slots ---------------------------------------------------------------------------------


def _cleared_only(fs: FlowSet) -> list[FlowWarning]:
    given: set[str] = set(STARTED_FLOW_SLOTS) if any(
        f in fs.flows for f in (fs.settings.complaints.survey_flow, fs.settings.complaints.follow_up_flow) if f) else set()
    cleared: dict[str, tuple[str, int]] = {}
    for pf in fs.flows.values():
        for step, line in zip(pf.steps, pf.step_lines):
            if isinstance(step, CollectStep):
                given.add(step.collect)
            elif isinstance(step, SetStep):
                for k, v in step.set.items():
                    if v is None:
                        cleared.setdefault(k, (pf.file, line))
                    else:
                        given.add(k)
            elif isinstance(step, ActionStep):
                given.update(ACTION_SLOTS.get(step.action, ()))
                if step.save_as:
                    given.add(step.save_as)
            elif isinstance(step, CallStep):
                given.update(step.save)
    return [FlowWarning(f"slot {name!r} is only ever cleared (set to null): nothing collects, sets or saves a "
                        "value for it", file, line)
            for name, (file, line) in sorted(cleared.items()) if name not in given]


# -- steps ---------------------------------------------------------------------------------


def successors(pf: ParsedFlow, i: int) -> list[tuple[str, str]]:
    """Where step ``i`` of ``pf`` can go: (target, label) pairs; a target is a step index as text,
    ``end``, ``handoff`` or ``flow:NAME``; the label says when ("" for simply next)."""
    step = pf.steps[i]
    nxt = str(i + 1) if i + 1 < len(pf.steps) else "end"

    def to(target: str) -> str:
        if target in RESERVED_TARGETS or target.startswith("flow:"):
            return target
        return str(pf.ids[target]) if target in pf.ids else "end"

    out: list[tuple[str, str]] = []
    if isinstance(step, (EndStep,)):
        return [("end", "")]
    if isinstance(step, HandoffStep):
        return [("handoff", "")]
    if isinstance(step, GotoStep):
        return [(to(step.goto), "")]
    if isinstance(step, BranchStep):
        has_else = False
        for raw in step.branch:
            case = BranchCase.model_validate(raw)
            has_else = has_else or bool(case.else_)
            out.append((to(case.then), "else" if case.else_ else (case.if_ or "")))
        if not has_else:
            out.append((nxt, "no case"))
        return out
    if isinstance(step, CollectStep):
        return [(nxt, ""), (to(step.on_fail), f"{step.max_attempts} tries")]
    if isinstance(step, CallStep):
        out.append((to(step.on_success) if step.on_success else nxt, "ok"))
        if step.on_not_found:
            out.append((to(step.on_not_found), "404"))
        for code, target in step.on_status.items():
            out.append((to(target), str(code)))
        out.append((to(step.on_failure), "failure"))
        return out
    return [(nxt, "")]


def _unreachable(fs: FlowSet) -> list[FlowWarning]:
    out: list[FlowWarning] = []
    for pf in fs.flows.values():
        seen: set[int] = set()
        todo = [0] if pf.steps else []
        while todo:
            i = todo.pop()
            if i in seen:
                continue
            seen.add(i)
            for target, _ in successors(pf, i):
                if target.isdigit():
                    todo.append(int(target))
        for i, step in enumerate(pf.steps):
            if i not in seen:
                out.append(FlowWarning(f"flow {pf.name!r}: step {i + 1} ({describe(step)}) is never reached: no "
                                       "step before it goes on to it and nothing jumps to it", pf.file,
                                       pf.step_lines[i]))
    return out


def describe(step: Step) -> str:
    """A step in a few words: ``say``, ``collect order_number``, ``call shop``, ``id wrap_up``..."""
    kind = type(step).__name__.removesuffix("Step").lower()
    what = {"collect": getattr(step, "collect", ""), "call": getattr(step, "call", ""),
            "action": getattr(step, "action", ""), "goto": getattr(step, "goto", "")}.get(kind, "")
    text = f"{kind} {what}".strip()
    return f"{text}, id {step.id}" if step.id else text


# -- intents -------------------------------------------------------------------------------


def _few_examples(fs: FlowSet, where: dict[str, tuple[str, int]]) -> list[FlowWarning]:
    return [FlowWarning(f"intent {name!r} has {len(i.examples)} example{'s' * (len(i.examples) != 1)}; give at "
                        f"least {MIN_EXAMPLES} (about ten, written the way customers talk)", *where.get(name, ("", None)))
            for name, i in fs.intents.items() if len(i.examples) < MIN_EXAMPLES]


def confusions(examples: dict[str, list[str]]) -> dict[tuple[str, str], list[str]]:
    """Leave-one-out: for each example, the intent the matcher picks when trained on all the others.
    Returns (its intent, the intent picked instead) -> the examples so confused."""
    flat = [(intent, text) for intent, texts in examples.items() for text in texts]
    out: dict[tuple[str, str], list[str]] = defaultdict(list)
    m = LexicalMatcher()
    for k, (intent, text) in enumerate(flat):
        rest: dict[str, list[str]] = defaultdict(list)
        for j, (other, t) in enumerate(flat):
            if j != k:
                rest[other].append(t)
        m.fit(rest)
        ranked = m.rank_sync(text, top=1)
        if ranked and ranked[0][0] != intent and ranked[0][1] >= MIN_SCORE:
            out[(intent, ranked[0][0])].append(text)
    return dict(out)


def _overlaps(fs: FlowSet, where: dict[str, tuple[str, int]]) -> list[FlowWarning]:
    pairs: dict[frozenset[str], list[tuple[str, str, list[str]]]] = defaultdict(list)
    for (a, b), texts in confusions(fs.examples()).items():
        pairs[frozenset((a, b))].append((a, b, texts))
    out: list[FlowWarning] = []
    for key in sorted(pairs, key=sorted):
        found = pairs[key]
        total = sum(len(t) for _, _, t in found)
        a, b = sorted(key)
        smaller = min(len(fs.intents[a].examples), len(fs.intents[b].examples))
        if total < MIN_CONFUSED or total < MIN_SHARE * smaller:
            continue
        shown = "; ".join(f"{len(t)} of {x!r} go to {y!r} ({', '.join(repr(s) for s in t[:3])})" for x, y, t in found)
        out.append(FlowWarning(f"intents {a!r} and {b!r} overlap: {shown}. Make their examples more distinct, "
                               "or merge them", *where.get(a, ("", None))))
    return out


def intent_lines(files: Iterable[str]) -> dict[str, tuple[str, int]]:
    """Where each intent is defined (file, line), for the warnings' file:line."""
    from pathlib import Path

    from bot.yamlmarks import MarkedYamlError, load_marked

    out: dict[str, tuple[str, int]] = {}
    for f in files:
        try:
            data, marks = load_marked(Path(f).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, MarkedYamlError):
            continue
        if isinstance(data, dict) and isinstance(data.get("intents"), dict):
            for name in data["intents"]:
                out.setdefault(name, (f, marks.line_for(("intents", name)) or 1))
    return out
