"""What the end-to-end tests set up before they talk to the app, written once: a fake platform server
as a fixture, the Telegram and WhatsApp config sections aimed at their fakes, and a copy of the demo
flows with changes (intent examples in other languages, another default language, other messages).
The app itself: ``serving(config)`` / ``start_app`` from tests/serving.py (also in conftest)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest
import yaml

from bot.config import Config
from conftest import DEMO_FLOWS, Running, make_config

LEXICAL = "nlu: {matcher: lexical}"     # the config section for the lexical matcher (no model to train)


def fake_server(cls: Callable[[], Any]) -> Any:
    """A fixture serving a fresh fake of ``cls`` on 127.0.0.1 for each test: ``fake = fake_server(FakeWhatsApp)``
    (the fixture takes the name it is given in the test module)."""

    @pytest.fixture
    async def fixture() -> AsyncIterator[Any]:
        async with cls() as f:
            yield f

    return fixture


# -- Telegram (tests/fakes/telegram_api.py) ----------------------------------------------------

SECRET = "s3cret_token-1"           # the webhook's secret token


def tg_config(tmp_path: Path, fake: Any, mode: str = "polling", *, sections: str = "", **extra: Any) -> Config:
    """A config whose Telegram connector talks to ``fake``; ``extra``: more keys of the telegram section,
    ``sections``: more config sections (YAML text)."""
    more = "".join(f"\n  {k}: {v}" for k, v in extra.items())
    return make_config(tmp_path, f"""{sections}
telegram:
  enabled: true
  token: "{fake.token}"
  mode: {mode}
  secret_token: {SECRET}
  api_url: "{fake.base_url}"
  file_url: "{fake.base_file_url}"
  poll_timeout: 1{more}
""")


# -- WhatsApp (tests/fakes/whatsapp_api.py) ----------------------------------------------------

APP_SECRET = "app-secret-4f7b1e"
VERIFY = "verify-me-123"
T0 = 1_790_000_000          # a fixed "now" for the 24-hour window


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def wa_config(tmp_path: Path, fake: Any, templates: str = "", *, sections: str = "") -> Config:
    """A config whose WhatsApp connector talks to ``fake``; ``sections``: more config sections (YAML text)."""
    return make_config(tmp_path, f"""{sections}
whatsapp:
  enabled: true
  access_token: "{fake.token}"
  phone_number_id: "{fake.phone_number_id}"
  app_secret: "{APP_SECRET}"
  verify_token: "{VERIFY}"
  api_url: "{fake.url}"
  api_version: {fake.version}
  {templates}
""")


def frozen_clock(r: Running) -> Clock:
    """Stop the WhatsApp connector's clock at ``T0`` (the test moves it by hand)."""
    clock = Clock(T0)
    r.services.connectors["whatsapp"].clock = clock       # type: ignore[attr-defined]
    return clock


def hook(r: Running) -> str:
    return r.url + "/whatsapp/webhook"


# -- flows -----------------------------------------------------------------------------------


def demo_copy(tmp_path: Path, *, examples: dict[str, list[str]] | None = None, default_language: str | None = None,
              messages: dict[str, Any] | None = None) -> Path:
    """A copy of the demo flows under ``tmp_path``, with more ``examples`` for some intents, another
    default language, or more ``settings.messages``."""
    flows = tmp_path / "flows"
    shutil.copytree(DEMO_FLOWS, flows)
    if examples:
        data = _load(flows / "intents.yaml")
        for name, more in examples.items():
            data["intents"][name]["examples"] += more
        _save(flows / "intents.yaml", data)
    if default_language or messages:
        data = _load(flows / "settings.yaml")
        if default_language:
            data["settings"]["languages"]["default"] = default_language
        if messages:
            data["settings"].setdefault("messages", {}).update(messages)
        _save(flows / "settings.yaml", data)
    return flows


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _save(path: Path, data: Any) -> None:
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def on_flows(config: Config, flows: Path, **sections: Any) -> Config:
    """``config`` with its flows read from ``flows`` (and other sections replaced by ``sections``)."""
    return config.model_copy(update={**sections, "flows": config.flows.model_copy(update={"path": str(flows)})})
