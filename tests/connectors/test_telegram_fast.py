"""TelegramConnector.fast_text: the common update shape read without PTB's objects gives what
the full path (parse_update + normalize) gives, and every other shape is left to the full path."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from bot.config import TelegramConfig
from connectors.telegram import MalformedUpdate, TelegramConnector, parse_update


def _connector(**config: Any) -> TelegramConnector:
    return TelegramConnector(config=TelegramConfig(token="123:abc", **config), accept=lambda i: None,  # type: ignore[arg-type]
                             store=None, media=None)  # type: ignore[arg-type]


def _text(text: Any = "where is my parcel?", **msg: Any) -> dict:
    m: dict[str, Any] = {"message_id": 12, "from": {"id": 77, "is_bot": False, "first_name": "Putri",
                                                    "last_name": "Ayu", "username": "putri", "language_code": "id"},
                         "chat": {"id": 77, "type": "private", "first_name": "Putri", "last_name": "Ayu"},
                         "date": int(time.time()), "text": text}
    m.update(msg)
    return {"update_id": 900, "message": {k: v for k, v in m.items() if v is not _DROP}}


_DROP = object()

SAME = {
    "plain text": _text(),
    "no last name": _text(**{"from": {"id": 77, "is_bot": False, "first_name": "Putri"}}),
    "no sender": _text(**{"from": _DROP}),
    "null sender": _text(**{"from": None}),
    "empty text": _text(""),
    "/start payload": _text("/start campaign42"),
    "/start token": _text("/start pl_0123456789abcdef"),
    "/help": _text("/help"),
    "blank language": _text(**{"from": {"id": 77, "is_bot": False, "first_name": "A", "language_code": "  "}}),
    "language not a string": _text(**{"from": {"id": 77, "is_bot": False, "first_name": "A", "language_code": 5}}),
    "premium user, more chat fields": _text(**{"from": {"id": 77, "is_bot": False, "first_name": "A",
                                                        "is_premium": True},
                                               "chat": {"id": 77, "type": "private", "username": "a"}}),
}

FULL_PATH = {
    "entities": _text("/start", entities=[{"type": "bot_command", "offset": 0, "length": 6}]),
    "caption": _text(_DROP, caption="look"),
    "photo": _text(_DROP, photo=[{"file_id": "P", "file_unique_id": "u", "width": 1, "height": 1}]),
    "group": _text(chat={"id": -5, "type": "group", "title": "Shop fans"}),
    "edited": {"update_id": 900, "edited_message": _text()["message"]},
    "callback": {"update_id": 900, "callback_query": {"id": "c1", "from": {"id": 7, "is_bot": False,
                                                                           "first_name": "A"},
                                                      "chat_instance": "x", "data": "yes"}},
    "two kinds": {**_text(), "edited_message": _text()["message"]},
    "text not a string": _text(5),
    "message_id a string": _text(message_id="12"),
    "message_id a bool": _text(message_id=True),
    "date a string": _text(date="today"),
    "chat id a string": _text(chat={"id": "77", "type": "private"}),
    "chat without type": _text(chat={"id": 77}),
    "from a string": _text(**{"from": "Putri"}),
    "from without is_bot": _text(**{"from": {"id": 77, "first_name": "A"}}),
    "from without first_name": _text(**{"from": {"id": 77, "is_bot": False}}),
    "last_name a number": _text(**{"from": {"id": 77, "is_bot": False, "first_name": "A", "last_name": 3}}),
    "update_id a string": {**_text(), "update_id": "900"},
    "not an object": [1, 2],
}


def _full(tg: TelegramConnector, data: Any) -> Any:
    try:
        return tg.normalize(parse_update(data, tg.bot), data)
    except MalformedUpdate as exc:
        return MalformedUpdate(str(exc))


@pytest.mark.parametrize("name", list(SAME))
def test_the_common_shape_gives_what_the_full_path_gives(name: str) -> None:
    tg = _connector(start_payload="start", help_payload="help")
    data = SAME[name]
    before = copy.deepcopy(data)
    fast = tg.fast_text(data)
    assert fast is not None, "this shape should be read directly"
    full = _full(tg, data)
    assert fast == full and fast.inbound.sent_at == full.inbound.sent_at
    assert fast.inbound.raw == data == before                      # kept as it came, not changed


@pytest.mark.parametrize("name", list(FULL_PATH))
def test_every_other_shape_is_left_to_the_full_path(name: str) -> None:
    tg = _connector()
    assert tg.fast_text(FULL_PATH[name]) is None


def test_wrong_types_are_still_refused_by_the_full_path() -> None:
    tg = _connector()
    for name in ("text not a string", "message_id a string", "chat without type", "from a string",
                 "from without is_bot", "update_id a string", "not an object"):
        assert isinstance(_full(tg, FULL_PATH[name]), MalformedUpdate), name
