"""Names config shows customers, given per language (README "Languages").

A handoff team's or a complaint department's ``name`` is a plain string (the same in every
language: "Acme Care") or a mapping by ISO 639-1 code, like the flows' texts::

    handoff:
      teams:
        support: {name: {en: Customer Care, es: Atención al cliente, id: Layanan Pelanggan}}

The customer reads the name in their conversation's language (else the flows' fallback and default
language, else English, else the first one given); agents read it in the flows' default language
(:func:`for_agents`: agent accounts and desks have no language setting).
``omnibot validate`` reports a mapping that leaves out one of ``settings.languages.supported``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import AfterValidator

if TYPE_CHECKING:
    from bot.config import Config
    from bot.errors import FlowError
    from flows.i18n import LanguageSettings

_CODE = re.compile(r"^[a-z]{2}$")


def _check(v: Union[str, dict[str, str]]) -> Union[str, dict[str, str]]:
    if isinstance(v, dict):
        if not v:
            raise ValueError("give the name in at least one language ({en: ..., es: ...}) or as a string")
        for code, text in v.items():
            if not _CODE.match(code):
                raise ValueError(f"{code!r} is not a two-letter language code (en, es, id)")
            if not text.strip():
                raise ValueError(f"the name in {code!r} is empty")
    elif not v.strip():
        raise ValueError("the name is empty")
    return v


#: A name as config writes it: one string, or a mapping of language code to string.
LocalName = Annotated[Union[str, dict[str, str]], AfterValidator(_check)]


def localized(name: Union[str, dict[str, str]], lang: str | None = None,
              langs: "LanguageSettings | None" = None) -> str:
    """``name`` in ``lang`` (then ``langs``' fallback and default, else English, else the first)."""
    if isinstance(name, str):
        return name
    from flows.i18n import pick     # here: flows imports bot.config, which imports this module

    return pick(name, lang, langs)


def for_agents(name: Union[str, dict[str, str]], flows: Any = None) -> str:
    """``name`` as agents read it: in the flows' ``settings.languages.default`` (agents have no
    language of their own, README "Languages"); ``flows`` is the loaded FlowSet (or None: English,
    else the first given)."""
    langs = agent_languages(flows)
    return localized(name, langs.default if langs else None, langs)


def agent_languages(flows: Any) -> "LanguageSettings | None":
    """The flows' ``settings.languages`` (None without flows)."""
    settings = getattr(flows, "settings", None)
    return getattr(settings, "languages", None)


def team_for_agents(handoff: Any, team: str, flows: Any = None) -> str:
    """A handoff team's name (``handoff.teams.<team>.name``) in the flows' default language; the
    key itself for an unknown team."""
    t = handoff.teams.get(team)
    return for_agents(t.name, flows) if t else team


def name_errors(config: "Config", config_path: str | None, langs: "LanguageSettings") -> list["FlowError"]:
    """Each team or department name given by language that leaves out a supported language, at
    its line of the config file (``config_path``; ``./config.yaml`` when None)."""
    from bot.errors import FlowError
    from bot.yamlmarks import MarkedYamlError, load_marked

    places: list[tuple[tuple[str, ...], Any]] = [
        (("handoff", "teams", k, "name"), t.name) for k, t in config.handoff.teams.items()]
    places += [(("complaints", "departments", k, "name"), d.name) for k, d in config.complaints.departments.items()]
    wanted = langs.languages
    found = [(loc, [c for c in wanted if c not in name]) for loc, name in places if isinstance(name, dict)]
    found = [(loc, missing) for loc, missing in found if missing and langs.complete]
    if not found:
        return []
    path = Path(config_path or "config.yaml")
    try:
        _, marks = load_marked(path.read_text(encoding="utf-8"))
        line_for = marks.line_for
    except (OSError, UnicodeDecodeError, MarkedYamlError):
        line_for = lambda loc: None  # noqa: E731 - the config was read once already; no lines then
    return [FlowError(f"{'.'.join(loc)}: no name in {', '.join(map(repr, missing))} (settings.languages."
                      f"supported: {', '.join(wanted)}); give it by language, or as one string for every "
                      "language", path=str(path), line=line_for(loc))
            for loc, missing in found]
