"""Templates and conditions in a jinja2 sandbox.

Flow authors' text is template source; customer text only ever enters as a
variable. Rendered output is never rendered again, so ``{{ 7*7 }}`` typed by a
customer stays ``{{ 7*7 }}``.

A name the template is not given is an error (StrictUndefined; the loader
reports such names before any customer meets them). A key a mapping does not
have is None: ``slots.reference`` before anything filled it renders empty and
is false in ``{% if %}``, whichever template and whatever mapping type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import quote

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment


class TemplateError(Exception):
    """A template or expression failed to compile or render."""


@dataclass(frozen=True, slots=True)
class TemplateNames:
    """What a template or condition reads from its context.

    ``names`` are the top-level names it reads (``slots``, ``customer``, ``team`` ...; not the
    ones it sets itself, nor jinja's globals such as ``range``). ``slots`` are the slot names it
    reads literally: ``slots.NAME``, ``slots['NAME']`` and ``slots.get('NAME')``.
    """

    names: frozenset[str]
    slots: tuple[str, ...]


#: what a text without any jinja syntax reads
NO_NAMES = TemplateNames(frozenset(), ())


class _Env(ImmutableSandboxedEnvironment):
    """The sandbox, where a mapping's missing key is None rather than an undefined error."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if _missing_key(obj, attribute):
            return None
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if _missing_key(obj, argument):
            return None
        return super().getitem(obj, argument)


def _missing_key(obj: Any, key: Any) -> bool:
    # Only plain missing keys: a name the mapping's type has (items, __class__) goes on to the
    # sandbox, which allows it or refuses it as unsafe.
    return (isinstance(obj, Mapping) and isinstance(key, str) and key not in obj
            and not hasattr(type(obj), key))


def make_env() -> ImmutableSandboxedEnvironment:
    # finalize: a slot that is not filled yet renders as "" rather than "None".
    env = _Env(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False,
               finalize=lambda v: "" if v is None else v)
    return env


def url_value(v: Any) -> str:
    """A value put into a URL path: every reserved character encoded ("/" too), and "." or ".."
    encoded as well, so a value is always one path segment of its own."""
    if v is None:
        return ""
    text = quote(str(v), safe="")
    return text.replace(".", "%2E") if text in (".", "..") else text


class Renderer:
    """Compiles flow templates once and renders them with a context."""

    def __init__(self) -> None:
        self.env = make_env()
        self._templates: dict[str, Any] = {}
        self._exprs: dict[str, Callable[..., Any]] = {}
        # call: paths: each {{ value }} URL-encoded as it is written out (the template's own text is not)
        self.url_env = _Env(undefined=StrictUndefined, autoescape=False, finalize=url_value)
        self._url_templates: dict[str, Any] = {}

    def render_url(self, source: str, context: dict[str, Any]) -> str:
        """Render a URL path template: values are URL-encoded, so customer text stays data."""
        try:
            t = self._url_templates.get(source)
            if t is None:
                t = self._url_templates[source] = self.url_env.from_string(source)
            return t.render(context).strip()
        except Exception as exc:  # jinja raises many types; all mean "this template failed"
            raise TemplateError(f"cannot render {source[:60]!r}: {exc}") from exc

    def check_template(self, source: str) -> None:
        """Raise TemplateError if ``source`` does not compile."""
        try:
            self._compile(source)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template error: {exc.message}") from None

    def check_expression(self, source: str) -> None:
        try:
            self._expr(source)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"condition error: {exc.message}") from None

    def template_names(self, source: str) -> TemplateNames:
        """What the template ``source`` reads; raise TemplateError if it does not compile."""
        if "{" not in source:
            # no jinja syntax ({{ }}, {% %}, {# #}): plain text, which reads nothing and always
            # compiles (``render`` gives it as it is); most flow texts are (109 of the demo's 186),
            # and compiling each took ~0.1 s of every start (issue 20: time to ready)
            return NO_NAMES
        try:
            tree = self.env.parse(source)
            names = self._names(tree)     # before compiling: jinja's optimizer may rewrite the tree
            if source not in self._templates:
                self._templates[source] = self.env.from_string(tree)   # parsed once, not twice
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template error: {exc.message}") from None
        return names

    def expression_names(self, source: str) -> TemplateNames:
        """What the condition ``source`` reads; raise TemplateError if it does not compile."""
        self.check_expression(source)
        # the parse compile_expression does, kept as a tree
        parser = Parser(self.env, source, state="variable")
        tree = nodes.Template([nodes.Output([parser.parse_expression()])], lineno=1)
        tree.set_environment(self.env)
        return self._names(tree)

    def _names(self, tree: nodes.Template) -> TemplateNames:
        names = frozenset(meta.find_undeclared_variables(tree)) - set(self.env.globals)
        slots: dict[str, None] = {}
        if "slots" in names:   # else `slots` is the template's own variable ({% set slots = ... %})
            for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Call)):
                name = _slot_read(node)
                if name is not None:
                    slots.setdefault(name, None)
        return TemplateNames(names, tuple(slots))

    def _compile(self, source: str) -> Any:
        t = self._templates.get(source)
        if t is None:
            t = self.env.from_string(source)
            self._templates[source] = t
        return t

    def _expr(self, source: str) -> Callable[..., Any]:
        e = self._exprs.get(source)
        if e is None:
            e = self.env.compile_expression(source, undefined_to_none=False)
            self._exprs[source] = e
        return e

    def render(self, source: str, context: dict[str, Any]) -> str:
        if "{" not in source:
            return source
        try:
            return self._compile(source).render(context).strip()
        except Exception as exc:  # jinja raises many types; all mean "this template failed"
            raise TemplateError(f"cannot render {source[:60]!r}: {exc}") from exc

    def evaluate(self, source: str, context: dict[str, Any]) -> Any:
        try:
            return self._expr(source)(**context)
        except Exception as exc:
            raise TemplateError(f"cannot evaluate {source!r}: {exc}") from exc


_DICT_METHODS = frozenset(n for n in dir(dict) if not n.startswith("_"))


def _slot_read(node: nodes.Node) -> str | None:
    """The slot name ``node`` reads literally from ``slots``, if it does."""
    def is_slots(n: nodes.Node) -> bool:
        return isinstance(n, nodes.Name) and n.name == "slots" and n.ctx == "load"

    if isinstance(node, nodes.Getattr) and is_slots(node.node):
        # slots.get / slots.items are dict methods (no slot may have such a name; the loader checks)
        return None if node.attr in _DICT_METHODS else node.attr
    if isinstance(node, nodes.Getitem) and is_slots(node.node):
        arg = node.arg
        return arg.value if isinstance(arg, nodes.Const) and isinstance(arg.value, str) else None
    if (isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr) and is_slots(node.node.node)
            and node.node.attr == "get" and node.args):
        arg = node.args[0]
        return arg.value if isinstance(arg, nodes.Const) and isinstance(arg.value, str) else None
    return None
