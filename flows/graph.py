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


# -- SVG, drawn here (the admin page, /admin/api/flows/graph) ------------------------------------

_W, _BOX_W, _BOX_H, _GAP = 760, 340, 34, 26
_COLOURS = {CollectStep: "#e8f1fb", BranchStep: "#fff4e0", CallStep: "#eef7ee", HandoffStep: "#fde9e7",
            EndStep: "#eeeeee"}


def svg(fs: FlowSet, name: str) -> str:
    """Flow ``name`` drawn as SVG: its steps top to bottom in file order, "next" as a straight
    arrow down, every other way out (a branch, a goto, a failed call, a handoff, another flow) as
    a labelled arrow on the right. Self-contained (no script, no external font), so the admin
    page shows it as an image and it can be saved as a file."""
    from xml.sax.saxutils import escape

    pf = fs.flows[name]
    n = len(pf.steps)
    x0, y0 = 40, 60
    ys = [y0 + i * (_BOX_H + _GAP) for i in range(n)]
    specials: list[str] = []
    edges: list[tuple[int, str, str]] = []
    for i in range(n):
        for target, label in successors(pf, i):
            if isinstance(pf.steps[i], (EndStep, HandoffStep)) and target in ("end", "handoff"):
                continue
            if target == str(i + 1) and not label:
                continue                        # drawn as the arrow straight down
            if not target.isdigit() and target not in specials:
                specials.append(target)
            edges.append((i, target, label))
    sy = y0 + n * (_BOX_H + _GAP)
    spos = {t: (x0 + (k % 2) * (_BOX_W // 2 + 20), sy + (k // 2) * (_BOX_H + _GAP)) for k, t in enumerate(specials)}
    height = (max([p[1] for p in spos.values()], default=sy - _GAP) + _BOX_H + 40)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{height}" viewBox="0 0 {_W} {height}" '
           'font-family="system-ui, sans-serif" font-size="12">',
           '<defs><marker id="a" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
           f'<text x="{x0}" y="28" font-size="16" font-weight="600">flow {escape(name)}</text>']
    for i, step in enumerate(pf.steps):
        colour = next((c for t, c in _COLOURS.items() if isinstance(step, t)), "#ffffff")
        out.append(f'<g class="step" data-step="{i}"><rect x="{x0}" y="{ys[i]}" width="{_BOX_W}" height="{_BOX_H}" '
                   f'rx="6" fill="{colour}" stroke="#888"/><text x="{x0 + 10}" y="{ys[i] + 21}">'
                   f'{escape(_short(_label(fs, step)))}</text></g>')
        if i + 1 < n and any(t == str(i + 1) and not lab for t, lab in successors(pf, i)):
            out.append(f'<line x1="{x0 + 60}" y1="{ys[i] + _BOX_H}" x2="{x0 + 60}" y2="{ys[i + 1]}" '
                       'stroke="#555" marker-end="url(#a)"/>')
    for t, (sx, sy_) in spos.items():
        text = {"end": "end", "handoff": "handoff to a person"}.get(t, f"flow {t[5:]}")
        out.append(f'<g class="target"><rect x="{sx}" y="{sy_}" width="{_BOX_W // 2}" height="{_BOX_H}" rx="17" '
                   f'fill="#f4f4f4" stroke="#888" stroke-dasharray="4 3"/><text x="{sx + 12}" y="{sy_ + 21}">'
                   f'{escape(text)}</text></g>')
    for k, (i, target, label) in enumerate(edges):
        x1, y1 = x0 + _BOX_W, ys[i] + _BOX_H / 2
        if target.isdigit():
            x2, y2 = x0 + _BOX_W, ys[int(target)] + _BOX_H / 2
        else:
            sx, sy_ = spos[target]
            x2, y2 = sx + _BOX_W // 2, sy_ + _BOX_H / 2
        bend = x0 + _BOX_W + 40 + (k % 6) * 28
        out.append(f'<path class="edge" d="M{x1},{y1} C{bend},{y1} {bend},{y2} {x2},{y2}" fill="none" '
                   'stroke="#555" marker-end="url(#a)"/>')
        if label:    # at the curve's middle (a cubic Bezier at t = 0.5)
            mx = 0.75 * bend + 0.125 * (x1 + x2)
            out.append(f'<text x="{mx + 4:.0f}" y="{(y1 + y2) / 2 + 4:.0f}" fill="#333">'
                       f'{escape(label[:LABEL_CHARS])}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
