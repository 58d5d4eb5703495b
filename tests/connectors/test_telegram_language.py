"""Telegram's from.language_code reaches the customer record as the language hint (README "Languages")."""

from __future__ import annotations

import time

from bot.config import TelegramConfig
from connectors.telegram import TelegramConnector, parse_update


def _connector() -> TelegramConnector:
    return TelegramConnector(config=TelegramConfig(token="123:abc"), accept=lambda i: None, store=None,  # type: ignore[arg-type]
                             media=None)  # type: ignore[arg-type]


def _update(language_code: str | None) -> dict:
    user = {"id": 77, "is_bot": False, "first_name": "Putri"}
    if language_code is not None:
        user["language_code"] = language_code
    return {"update_id": 1, "message": {"message_id": 5, "from": user, "date": int(time.time()),
                                        "chat": {"id": 77, "type": "private", "first_name": "Putri"},
                                        "text": "halo"}}


def test_the_app_language_is_kept_as_the_customers_language_hint() -> None:
    tg = _connector()
    got = tg.normalize(parse_update(_update("id"), None))
    assert got is not None and got.inbound.customer_attributes == {"language_code": "id"}
    got = tg.normalize(parse_update(_update("es-MX"), None))
    assert got is not None and got.inbound.customer_attributes == {"language_code": "es-MX"}
    got = tg.normalize(parse_update(_update(None), None))
    assert got is not None and "language_code" not in got.inbound.customer_attributes
