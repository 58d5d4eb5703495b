"""Templates and conditions in a jinja2 sandbox.

Flow authors' text is template source; customer text only ever enters as a
variable. Rendered output is never rendered again, so ``{{ 7*7 }}`` typed by a
customer stays ``{{ 7*7 }}``.
"""

from __future__ import annotations

from typing import Any, Callable

from jinja2 import StrictUndefined, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment


class TemplateError(Exception):
    """A template or expression failed to compile or render."""


def make_env() -> ImmutableSandboxedEnvironment:
    # finalize: a slot that is not filled yet renders as "" rather than "None".
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False,
                                       keep_trailing_newline=False,
                                       finalize=lambda v: "" if v is None else v)
    return env


class Renderer:
    """Compiles flow templates once and renders them with a context."""

    def __init__(self) -> None:
        self.env = make_env()
        self._templates: dict[str, Any] = {}
        self._exprs: dict[str, Callable[..., Any]] = {}

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
