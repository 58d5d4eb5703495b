"""Canned replies: ready answers agents insert and edit before sending, kept as files next to the flows.

Every ``*.yaml`` file in the ``canned/`` folder of the flows folder (``flows/demo/canned/``; the
flow loader skips that folder) holds a list under ``canned:``::

    canned:
      - name: refund_started          # what agents type after "/" (or /omnibot reply NAME on Slack)
        title: Refund started         # shown in the list
        text: |                       # a template, like a flow's say:
          Hi {{ customer.name }}, I've started the refund for {{ slots.order_number }}.

``text`` may be given by language like any flow text (``text: {en: ..., es: ..., id: ...}``, README
"Languages"): the agent gets it in the conversation's language. It is rendered in the same jinja2 sandbox as the flows (:mod:`flows.render`), with
:data:`CANNED_NAMES`: ``slots`` (what the conversation captured), ``customer`` (``id``, ``name``:
the first name), ``channel``, ``team`` (the team's display name) and ``agent`` (the inserting
agent's first name). What customers wrote only ever enters as a value: it is never rendered.

Files are loaded and checked when omnibot starts (and by ``omnibot validate``); a bad file stops the
start with ``file:line: reason`` for every problem, like a bad flow file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.errors import FlowError, FlowValidationError
from bot.runtime import first_name
from bot.yamlmarks import MarkedYamlError, describe_loc, load_marked
from flows.i18n import LanguageSettings, Text, pick, variants
from flows.render import Renderer, TemplateError

#: the folder of a flows folder that holds canned replies (never read as flows)
CANNED_DIR = "canned"
#: the names a canned reply's text is rendered with
CANNED_NAMES = ("slots", "customer", "channel", "team", "agent")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    title: str = Field(min_length=1, max_length=120)
    text: Text = Field(min_length=1)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    canned: list[_Reply] = Field(default_factory=list)


@dataclass(frozen=True)
class Canned:
    name: str
    title: str
    text: str            # template source, in the default language
    file: str
    line: int
    texts: dict[str, str] | None = None     # by language, when the file gives it so

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "text": self.text}


class CannedReplies:
    """The loaded canned replies: search and render."""

    def __init__(self, replies: dict[str, Canned] | None = None, languages: LanguageSettings | None = None) -> None:
        self.replies = dict(replies or {})
        self.renderer = Renderer()
        self.languages = languages

    def __len__(self) -> int:
        return len(self.replies)

    def get(self, name: str) -> Canned | None:
        return self.replies.get(name.strip().lower().lstrip("/"))

    def search(self, q: str = "", limit: int = 20) -> list[Canned]:
        """Replies whose name, title or text contain every word of ``q`` (any case); names that
        start with ``q`` first, then by name."""
        words = q.lower().split()
        hits = [c for c in self.replies.values()
                if all(w in f"{c.name} {c.title} {c.text}".lower() for w in words)]
        first = words[0] if words else ""
        hits.sort(key=lambda c: (not c.name.startswith(first), c.name))
        return hits[:max(1, min(limit, 100))]

    def render(self, name: str, context: dict[str, Any]) -> str:
        """The reply's text for ``context`` (see :func:`context_for`).

        Raises:
            KeyError: no such reply.
            TemplateError: it failed to render (a bug in the file; the loader catches most).
        """
        c = self.get(name)
        if c is None:
            raise KeyError(name)
        source = pick(c.texts, context.get("language"), self.languages) if c.texts else c.text
        return self.renderer.render(source, {k: v for k, v in context.items() if k != "language"})


def canned_dir(flows_path: str | Path) -> Path:
    """Where the canned replies of a flows folder (or of a single flow file) live."""
    p = Path(flows_path)
    return (p if p.is_dir() else p.parent) / CANNED_DIR


def load_canned(flows_path: str | Path, languages: LanguageSettings | None = None) -> CannedReplies:
    """Load and check every ``canned/*.yaml`` next to the flows (none: no canned replies).
    ``languages``: the flows' ``settings.languages``; a text by language must give each of them.

    Raises:
        FlowValidationError: every problem, as ``file:line: reason``.
    """
    folder = canned_dir(flows_path)
    errors: list[FlowError] = []
    out: dict[str, Canned] = {}
    renderer = Renderer()
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()) \
        if folder.is_dir() else []
    for fp in files:
        file = str(fp)
        try:
            data, marks = load_marked(fp.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(FlowError(f"cannot read: {exc}", path=file))
            continue
        except MarkedYamlError as exc:
            errors.append(FlowError(exc.reason, path=file, line=exc.line))
            continue
        if data is None:
            continue
        if not isinstance(data, dict):
            errors.append(FlowError("a canned replies file is a mapping with a canned: list of "
                                    "{name, title, text}", path=file, line=1))
            continue
        try:
            parsed = _File.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(err["loc"])
                reason = {"extra_forbidden": f"unknown key {loc[-1]!r} (a reply has name, title and text)",
                          "missing": f"missing key {loc[-1]!r}"}.get(err["type"], err["msg"])
                errors.append(FlowError(f"{describe_loc(loc)}: {reason}", path=file, line=marks.line_for(loc)))
            continue
        for i, reply in enumerate(parsed.canned):
            loc = ("canned", i)
            line = marks.line_for(loc) or 1
            name = reply.name.strip().lower()
            if not NAME_RE.match(name):
                errors.append(FlowError(f"canned[{i}].name: {reply.name!r} is not a name: use a-z, 0-9, _ "
                                        "and - (at most 40), e.g. refund_started", path=file,
                                        line=marks.line_for(loc + ("name",)) or line))
                continue
            if name in out:
                errors.append(FlowError(f"canned reply {name!r} is already defined at {out[name].file}:"
                                        f"{out[name].line}", path=file, line=line))
                continue
            tline = marks.line_for(loc + ("text",)) or line
            bad = False
            for lang, src in variants(reply.text):
                what = f"canned reply {name!r}" + (f" ({lang})" if lang else "")
                vline = marks.line_for(loc + ("text", lang)) if lang else tline
                if len(src) > 4000:
                    errors.append(FlowError(f"{what}: longer than 4000 characters", path=file, line=vline))
                    bad = True
                    continue
                try:
                    found = renderer.template_names(src)
                except TemplateError as exc:
                    errors.append(FlowError(f"{what}: {exc}", path=file, line=vline))
                    bad = True
                    continue
                unknown = sorted(found.names - set(CANNED_NAMES))
                if unknown:
                    errors.append(FlowError(f"{what}: unknown name {unknown[0]!r} (known here: "
                                            f"{', '.join(CANNED_NAMES)})", path=file, line=vline))
                    bad = True
            if isinstance(reply.text, dict) and languages is not None:
                supported = languages.languages
                missing = [c for c in supported if not str(reply.text.get(c) or "").strip()]
                extra = [c for c in reply.text if c not in supported]
                if extra:
                    errors.append(FlowError(f"canned reply {name!r}: language {extra[0]!r} is not in "
                                            f"settings.languages.supported ({', '.join(supported)})",
                                            path=file, line=tline))
                    bad = True
                if missing and languages.complete:
                    errors.append(FlowError(f"canned reply {name!r}: no text in {', '.join(map(repr, missing))} "
                                            f"(settings.languages.supported: {', '.join(supported)})",
                                            path=file, line=tline))
                    bad = True
            elif isinstance(reply.text, str) and languages is not None and languages.complete \
                    and len(languages.languages) > 1:
                others = [c for c in languages.languages if c != languages.default]
                errors.append(FlowError(f"canned reply {name!r}: a plain text is only in the default language "
                                        f"({languages.default}); give it by language "
                                        f"({', '.join(languages.languages)}), e.g. {{{languages.default}: ..., "
                                        f"{others[0]}: ...}}", path=file, line=tline))
                bad = True
            if bad:
                continue
            texts = {k: v.strip() for k, v in reply.text.items()} if isinstance(reply.text, dict) else None
            default = pick(reply.text, None, languages).strip()
            out[name] = Canned(name=name, title=reply.title.strip(), text=default, file=file, line=line, texts=texts)
    if errors:
        raise FlowValidationError(errors)
    return CannedReplies(out, languages)


async def context_for(store: Any, config: Any, h: Any, agent: str) -> dict[str, Any]:
    """What a canned reply is rendered with, for handoff ``h`` and the inserting ``agent``."""
    conv = await store.get_conversation(h.conversation_id)
    customer = await store.get_customer(conv.customer_id) if conv else None
    flow_state = (await store.load_flow_state(h.conversation_id) or {}) if conv else {}
    slots = {k: v for k, v in (h.context.get("slots") or {}).items() if v not in (None, "", [])}
    slots.update({k: v for k, v in (flow_state.get("slots") or {}).items() if v not in (None, "", [])})
    if h.context.get("reference") and not slots.get("reference"):
        slots["reference"] = h.context["reference"]
    return {"slots": slots,
            "customer": {"id": conv.customer_id if conv else None,
                         "name": first_name(customer.display_name if customer else "")},
            # the reply goes to the customer: the team's name in the conversation's language
            "channel": conv.channel if conv else "", "team": config.handoff.team_name(h.team, conv.language if conv
                                                                                      else None),
            "agent": first_name(agent),
            "language": conv.language if conv else None}      # which text (README "Languages"); not a name
