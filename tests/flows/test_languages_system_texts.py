"""System texts the engine itself writes, routed through the catalog (flows/i18n.py) so the flows'
settings.messages can override them per language: the handoff reason after a question failed."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows import FlowEngine, TurnInput, load_flows

FLOWS = """\
settings:
  languages: {default: en, supported: [en, es, id]}
  messages:
    couldnt_get: {es: "no he conseguido tu {{ label }}", id: "{{ label }} Anda belum saya terima"}
intents:
  pin: {examples: [pin], description: {en: PIN, es: PIN, id: PIN}}
flows:
  pin:
    trigger: pin
    steps:
      - collect: pin
        ask: {en: "PIN?", es: "¿PIN?", id: "PIN?"}
        type: regex
        pattern: '^\\d{4}$'
        invalid: {en: "Four digits.", es: "Cuatro cifras.", id: "Empat angka."}
        max_attempts: 2
"""


@pytest.mark.parametrize(("lang", "reason"), [("es", "no he conseguido tu pin"), ("id", "pin Anda belum saya terima"),
                                              ("en", "I couldn't get your pin")])
async def test_the_reason_after_failed_tries_is_a_system_text_the_flows_override(tmp_path: Path, lang: str,
                                                                                 reason: str) -> None:
    (tmp_path / "f.yaml").write_text(FLOWS, encoding="utf-8")
    engine = FlowEngine(load_flows(tmp_path))
    res = await engine.handle(None, TurnInput("", payload="intent:pin", language=lang))
    res = await engine.handle(res.state, TurnInput("12", language=lang))
    res = await engine.handle(res.state, TurnInput("abcd", language=lang))
    assert res.handoff is not None and res.handoff.reason == reason


def test_validate_reports_a_widget_text_the_browser_cannot_fill_in(tmp_path: Path) -> None:
    """The web chat widget's words (widget_*) are filled in by the browser: plain {{ name }} only."""
    from bot.errors import FlowValidationError

    (tmp_path / "f.yaml").write_text(FLOWS.replace('''  messages:
''', '''  messages:
    widget_position: {es: "eres el {{ position }}º", id: "nomor {{ position | string }}"}
    widget_waiting: {es: "{% if true %}Esperando{% endif %}"}
'''), encoding="utf-8")
    with pytest.raises(FlowValidationError) as ei:
        load_flows(tmp_path)
    assert [(e.line, e.reason.split(":")[0]) for e in ei.value.errors] == [
        (4, "settings.messages.widget_position.id"), (5, "settings.messages.widget_waiting.es")]
    assert "plain {{ name }} placeholders only" in ei.value.errors[0].reason
