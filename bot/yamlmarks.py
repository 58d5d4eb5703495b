"""YAML loading that remembers where every value came from.

``load_marked`` returns plain Python data plus a map from each value's path
(``("flows", "complaint", "steps", 2, "ask")``) to its 1-based line, so
schema errors found later (by pydantic, or by our own checks) can be reported
as ``file:line: reason``.

Anchors and aliases are allowed for small repeated parts (a list of choices),
but a "billion laughs" (a few lines of aliases of aliases that expand to
millions of values) is refused while the text is parsed, before anything is
expanded, at the line of the alias that goes past :data:`MAX_ALIASED_VALUES`.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any, Sequence

import yaml

Path = tuple[Any, ...]

MAX_ALIASED_VALUES = 10_000
"""How many values (scalars, lists and mappings) aliases may add to one document, all together."""


class MarkedYamlError(Exception):
    """The text is not valid YAML (or repeats a key); has ``line`` and ``reason``."""

    def __init__(self, reason: str, line: int | None) -> None:
        self.reason = reason
        self.line = line
        super().__init__(f"line {line}: {reason}" if line else reason)


class Marks:
    """Line numbers by path; :meth:`line_for` falls back to the nearest parent."""

    def __init__(self) -> None:
        self.lines: dict[Path, int] = {}

    def line_for(self, path: Sequence[Any]) -> int | None:
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), None)


#: Texts whose parse is remembered: the same flow files are parsed by every app a process starts, by
#: each reload and by ``omnibot validate`` (pure-Python PyYAML: ~0.1 s for the demo flows' 65 KB).
PARSED_CACHE = 64


def load_marked(text: str) -> tuple[Any, Marks]:
    """Parse YAML text safely; return ``(data, marks)``: the caller's own copy (a text parsed before is
    not parsed again).

    Raises:
        MarkedYamlError: on a syntax error or a key repeated in one mapping.
    """
    data, lines = _parsed(text)
    marks = Marks()
    marks.lines = dict(lines)
    return copy.deepcopy(data), marks


@lru_cache(maxsize=PARSED_CACHE)
def _parsed(text: str) -> tuple[Any, dict[Path, int]]:
    """``(data, marks.lines)`` of ``text``; shared, never handed out (errors are not remembered)."""
    marks = Marks()
    try:
        node = yaml.compose(text, Loader=_BoundedLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        reason = " ".join(x for x in (exc.context, exc.problem) if x) or "invalid YAML"
        raise MarkedYamlError(f"invalid YAML: {reason}", line) from None
    except yaml.YAMLError as exc:
        raise MarkedYamlError(f"invalid YAML: {exc}", None) from None
    if node is None:
        return None, marks.lines
    constructor = yaml.SafeLoader("")
    return _convert(node, (), marks, constructor), marks.lines


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader whose composer counts what aliases expand to, and stops a bomb early.

    Composing keeps an alias as a second reference to its anchor's node, which costs
    nothing; the cost comes when the graph is walked as a tree (``_convert``). So each
    finished node's expanded size is recorded, and each alias adds its target's size.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._sizes: dict[int, int] = {}   # id(node) -> values in it once expanded
        self._aliased = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = super().compose_node(parent, index)
            line = event.start_mark.line + 1
            size = self._sizes.get(id(node))
            if size is None:    # PyYAML lets an alias point into its own, unfinished anchor
                raise MarkedYamlError(f"alias *{event.anchor} is used inside its own anchor "
                                      "(a value that contains itself)", line)
            self._aliased += size
            if self._aliased > MAX_ALIASED_VALUES:
                raise MarkedYamlError(f"alias *{event.anchor}: aliases expand to more than {MAX_ALIASED_VALUES} "
                                      "values (an alias bomb?); use anchors only for small repeated parts", line)
            return node
        node = super().compose_node(parent, index)
        if isinstance(node, yaml.MappingNode):
            size = 1 + sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._sizes[id(item)] for item in node.value)
        else:
            size = 1
        self._sizes[id(node)] = size
        return node


def _convert(node: yaml.Node, path: Path, marks: Marks, constructor: yaml.SafeLoader) -> Any:
    marks.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise MarkedYamlError("merge keys (<<) are not supported", key_node.start_mark.line + 1)
            key = constructor.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise MarkedYamlError("mapping keys must be plain values", key_node.start_mark.line + 1)
            if key in out:
                raise MarkedYamlError(f"key {key!r} is given twice", key_node.start_mark.line + 1)
            marks.lines[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _convert(value_node, path + (key,), marks, constructor)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, path + (i,), marks, constructor) for i, item in enumerate(node.value)]
    return constructor.construct_object(node, deep=True)


def describe_loc(loc: Sequence[Any]) -> str:
    """``("flows", "faq", "steps", 0, "say")`` -> ``flows.faq.steps[0].say``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
