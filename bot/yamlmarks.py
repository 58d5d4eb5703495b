"""YAML loading that remembers where every value came from.

``load_marked`` returns plain Python data plus a map from each value's path
(``("flows", "complaint", "steps", 2, "ask")``) to its 1-based line, so
schema errors found later (by pydantic, or by our own checks) can be reported
as ``file:line: reason``.
"""

from __future__ import annotations

from typing import Any, Sequence

import yaml

Path = tuple[Any, ...]


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


def load_marked(text: str) -> tuple[Any, Marks]:
    """Parse YAML text safely; return ``(data, marks)``.

    Raises:
        MarkedYamlError: on a syntax error or a key repeated in one mapping.
    """
    marks = Marks()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        reason = " ".join(x for x in (exc.context, exc.problem) if x) or "invalid YAML"
        raise MarkedYamlError(f"invalid YAML: {reason}", line) from None
    except yaml.YAMLError as exc:
        raise MarkedYamlError(f"invalid YAML: {exc}", None) from None
    if node is None:
        return None, marks
    constructor = yaml.SafeLoader("")
    return _convert(node, (), marks, constructor), marks


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
