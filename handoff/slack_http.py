"""Slack's HTTP requests to the desk: the signature, then the body's shape, before Bolt runs.

Bolt answers 500 (and logs a traceback) for a body it cannot parse, and its listeners run
after the 200 has gone out, so a field of the wrong type there is an ERROR nobody can act
on. Everything the desk reads from a request is therefore checked here, once:
:func:`check_signature` (401/400) and :func:`parse_body` (400), both raising
:class:`SlackRequestError`.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

from slack_bolt.request.internals import parse_body as bolt_parse_body
from slack_sdk.signature import SignatureVerifier

MAX_CLOCK_SKEW = 300     # seconds; Slack's replay window

# Fields of a message event the desk reads, and the type each must have when present.
_MESSAGE_STR_FIELDS = ("user", "text", "ts", "thread_ts", "subtype", "bot_id", "channel_type")


class SlackRequestError(Exception):
    """A request refused before Bolt sees it; ``reason`` names the problem, never the content."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def check_signature(verifier: SignatureVerifier, body: bytes, headers: Mapping[str, str]) -> None:
    """Slack's ``v0`` HMAC over timestamp and raw body, within the replay window.

    Raises:
        SlackRequestError: 401 unsigned, stale or forged; 400 a malformed timestamp.
    """
    ts = headers.get("X-Slack-Request-Timestamp", "")
    sig = headers.get("X-Slack-Signature", "")
    if not ts or not sig:
        raise SlackRequestError(401, "unsigned request")
    if not ts.isdigit():
        raise SlackRequestError(400, "malformed timestamp")
    if abs(time.time() - int(ts)) > MAX_CLOCK_SKEW:
        raise SlackRequestError(401, "stale timestamp")
    if not verifier.is_valid(body, ts, sig):
        raise SlackRequestError(401, "bad signature")


def parse_body(body: bytes, content_type: str | None) -> tuple[str, dict[str, Any]]:
    """The body as text (for Bolt) and as Bolt will parse it, checked for the shape of an
    Events API request, an interaction (``payload=``) or a slash command.

    Raises:
        SlackRequestError: 400, with what is wrong.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SlackRequestError(400, "body is not UTF-8") from None
    if not text.strip():
        raise SlackRequestError(400, "empty body")
    try:
        # Bolt's own parser, so what is checked is exactly what the listeners will get.
        parsed = bolt_parse_body(text, content_type)
    except (ValueError, RecursionError):
        raise SlackRequestError(400, "body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise SlackRequestError(400, "body is not a JSON object")
    if isinstance(parsed.get("type"), str):
        _check_typed(parsed)
    elif "command" in parsed or "ssl_check" in parsed:
        _check_command(parsed)
    elif "type" in parsed:
        raise SlackRequestError(400, "type is not a string")
    else:
        raise SlackRequestError(400, "neither an event, an interaction nor a slash command")
    return text, parsed


def _need(ok: bool, reason: str) -> None:
    if not ok:
        raise SlackRequestError(400, reason)


def _opt(value: Any, kind: type) -> bool:
    return value is None or isinstance(value, kind)


def _check_typed(body: dict[str, Any]) -> None:
    kind = body["type"]
    if kind == "url_verification":
        _need(isinstance(body.get("challenge"), str), "url_verification without a challenge")
    elif kind == "event_callback":
        _need(isinstance(body.get("event_id"), str), "event_callback without an event_id")
        event = body.get("event")
        _need(isinstance(event, dict) and isinstance(event.get("type"), str), "event is not an object with a type")
        if event["type"] == "message":
            _check_message(event)
    elif kind == "block_actions":
        _check_block_actions(body)


def _check_message(event: dict[str, Any]) -> None:
    _need(isinstance(event.get("channel"), str), "message event without a channel")
    for name in _MESSAGE_STR_FIELDS:
        _need(_opt(event.get(name), str), f"message event: {name} is not a string")
    inner = event.get("message")
    _need(_opt(inner, dict) and (inner is None or _opt(inner.get("user"), str)),
          "message event: message is not an object")


def _check_block_actions(body: dict[str, Any]) -> None:
    user = body.get("user")
    _need(isinstance(user, dict) and isinstance(user.get("id"), str), "block_actions without a user id")
    for name in ("channel", "container"):
        _need(_opt(body.get(name), dict), f"block_actions: {name} is not an object")
    _need(_opt((body.get("channel") or {}).get("id"), str), "block_actions: channel id is not a string")
    _need(_opt((body.get("container") or {}).get("channel_id"), str),
          "block_actions: container channel_id is not a string")
    actions = body.get("actions")
    _need(isinstance(actions, list) and bool(actions), "block_actions without a list of actions")
    for action in actions:
        _need(isinstance(action, dict) and isinstance(action.get("action_id"), str), "an action has no action_id")
        _need(_opt(action.get("value"), str), "an action's value is not a string")
        option = action.get("selected_option")
        _need(_opt(option, dict) and (option is None or _opt(option.get("value"), str)),
              "an action's selected_option is not an option")


def _check_command(body: dict[str, Any]) -> None:
    if "ssl_check" in body:
        return        # Slack's certificate check of a slash command URL; Bolt answers it
    for name in ("command", "user_id", "channel_id"):
        _need(isinstance(body.get(name), str) and bool(body[name]), f"slash command without {name}")
