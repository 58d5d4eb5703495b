"""A flow as a Mermaid diagram (``omnibot graph FLOW``): ``flowchart TD``, one node per step.

Paste the output into any Mermaid viewer (https://mermaid.live, a GitHub ```mermaid block, the
Mermaid plugin of your editor). Shapes: a question (collect) is a parallelogram, a branch a rhombus,
a call a subroutine box, the end a circle, a handoff a hexagon; another flow is a stadium.
"""

from __future__ import annotations

import re

from .i18n import pick
from .lint import successors
from .loader import FlowSet, ParsedFlow
from .schema import (ActionStep, BranchStep, CallStep, CollectStep, EndStep, GotoStep, HandoffStep, SayStep, SetStep,
                     Step)

LABEL_CHARS = 48


def mermaid(fs: FlowSet, name: str) -> str:
    """Flow ``name`` of ``fs`` as Mermaid ``flowchart TD`` source."""
    pf = fs.flows[name]
    lines = ["flowchart TD", f"  start((\"{_esc(name)}\")) --> {_node(pf, 0)}"]
    specials: dict[str, str] = {}
    for i, step in enumerate(pf.steps):
        lines.append("  " + _node(pf, i) + _shape(step, _label(fs, step)))
    for i in range(len(pf.steps)):
        for target, label in successors(pf, i):
            if isinstance(pf.steps[i], (EndStep, HandoffStep)) and target in ("end", "handoff"):
                continue     # the step is itself the end / the handoff
            if target.isdigit():
                dest = _node(pf, int(target))
            else:
                dest = _special(target)
                specials[dest] = target
            edge = f" -->|\"{_esc(label[:LABEL_CHARS])}\"| " if label else " --> "
            lines.append(f"  {_node(pf, i)}{edge}{dest}")
    for dest, target in specials.items():
        if dest == "END":
            lines.append("  END((end))")
        elif dest == "HANDOFF":
            lines.append('  HANDOFF{{"handoff"}}')
        else:
            lines.append(f"  {dest}([\"flow {_esc(target[5:])}\"])")
    return "\n".join(lines) + "\n"


def _node(pf: ParsedFlow, i: int) -> str:
    return f"s{i}"


def _special(target: str) -> str:
    if target == "end":
        return "END"
    if target == "handoff":
        return "HANDOFF"
    return "flow_" + re.sub(r"\W", "_", target[5:])


def _shape(step: Step, label: str) -> str:
    text = f"\"{_esc(label)}\""
    if isinstance(step, CollectStep):
        return f"[/{text}/]"
    if isinstance(step, BranchStep):
        return "{" + text + "}"
    if isinstance(step, CallStep):
        return f"[[{text}]]"
    if isinstance(step, EndStep):
        return f"(({text}))"
    if isinstance(step, HandoffStep):
        return "{{" + text + "}}"
    return f"[{text}]"


def _label(fs: FlowSet, step: Step) -> str:
    langs = fs.settings.languages
    if isinstance(step, SayStep):
        text = "say: " + _short(pick(step.say, None, langs))
    elif isinstance(step, CollectStep):
        text = f"collect {step.collect} ({step.type})"
    elif isinstance(step, BranchStep):
        text = "branch"
    elif isinstance(step, SetStep):
        text = "set " + ", ".join(step.set)
    elif isinstance(step, ActionStep):
        text = f"action {step.action}" + (f" → {step.save_as}" if step.save_as else "")
    elif isinstance(step, CallStep):
        text = f"call {step.call}: {step.method} {_untemplated(step.path) or '/'}"
    elif isinstance(step, HandoffStep):
        text = "handoff" + (f" to {step.handoff.team}" if step.handoff.team else "")
    elif isinstance(step, GotoStep):
        text = f"goto {step.goto}"
    else:
        text = "end"
    return (f"{step.id}: " if step.id else "") + text


def _short(text: str) -> str:
    text = _untemplated(" ".join(text.split()))
    return text if len(text) <= LABEL_CHARS else text[:LABEL_CHARS - 1] + "…"


def _untemplated(text: str) -> str:
    """Template markup made short for a label: ``{{ slots.order_number }}`` -> ``‹order_number›``."""
    text = re.sub(r"\{\{\s*slots\.(\w+)[^}]*\}\}", r"‹\1›", text)
    text = re.sub(r"\{\{\s*([\w.]+)[^}]*\}\}", r"‹\1›", text)
    text = re.sub(r"\{%.*?%\}|\{#.*?#\}", "", text)
    return " ".join(text.split())


def _esc(text: str) -> str:
    # inside a quoted Mermaid label: quotes and the characters Mermaid reads as markup
    return (text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
            .replace("{", "#123;").replace("}", "#125;").replace("|", "#124;"))
