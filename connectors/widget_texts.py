"""The web chat widget's words in the visitor's language (README "Languages").

The welcome frame carries them (``language``, ``texts``): the conversation's language, else the
browser's (the hello frame's ``lang``, e.g. ``navigator.language``) when the flows support it, else
the flows' default. When the conversation's language changes, a ``texts`` frame brings them again
in the new one (connectors/webchat.py, on the runtime's ``language`` event). The texts are
``widget_*`` system messages (flows/i18n_widget.py), so ``settings.messages`` overrides them; their
``{{ name }}`` placeholders are left for the widget.
"""

from __future__ import annotations

from typing import Any

from flows.i18n_widget import WIDGET_MESSAGES, WIDGET_NAMES


class WidgetTexts:
    """``texts(conversation_language, browser_language) -> {"language", "texts"}``.

    Args:
        engine: the flow engine (its ``settings.languages`` and ``system_text``).
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def __call__(self, language: str | None, hint: Any = None) -> dict[str, Any]:
        langs = self.engine.settings.languages
        lang = language or langs.normalize(hint if isinstance(hint, str) else None) or langs.default
        texts = {}
        for key in WIDGET_MESSAGES:
            # each placeholder is rendered as itself (a value is data, never a template)
            keep = {n: "{{ " + n + " }}" for n in WIDGET_NAMES[key]}
            texts[key.removeprefix("widget_")] = self.engine.system_text(key, lang, **keep)
        return {"language": lang, "texts": texts}
