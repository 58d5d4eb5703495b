"""Erasing what omnibot posted to Slack about a customer (``omnibot customer erase``).

For each desk thread of the customer's handoffs (``desk_threads``: the card's channel and ts), the
thread's replies are listed (``conversations.replies``, scope ``channels:history`` or
``groups:history``) and the bot's own are deleted (``chat.delete``), with the files shared in the
thread (the full transcript: ``files.delete``, scope ``files:write``), then the card. Replies agents
wrote themselves cannot be deleted with the bot's token (Slack allows that only to their author or
a workspace admin's user token): they are counted as ``left`` for an admin to remove.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

log = logging.getLogger(__name__)


async def delete_slack_copies(client: Any, threads: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Delete the cards and the bot's thread messages of ``threads`` (rows of ``desk_threads`` with
    desk ``slack``) through ``client`` (a ``slack_sdk.web.async_client.AsyncWebClient``).

    Returns:
        ``deleted`` messages, ``files`` deleted, ``left`` (written by people, not deletable with the bot token) and
        ``failed`` (the API refused or could not be reached; the message may still be there).
    """
    from slack_sdk.errors import SlackApiError

    counts = {"deleted": 0, "files": 0, "left": 0, "failed": 0}

    async def delete_file(file_id: str) -> None:
        try:
            await client.files_delete(file=file_id)
            counts["files"] += 1
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else "error"
            if error in ("file_not_found", "file_deleted"):
                return
            counts["left" if error in ("cant_delete_file", "not_authorized") else "failed"] += 1
            log.warning("Slack files.delete of a file in a thread failed: %s", error)
        except OSError as exc:
            counts["failed"] += 1
            log.warning("Slack files.delete of a file in a thread failed: %s", exc)

    async def delete(channel: str, ts: str) -> None:
        try:
            await client.chat_delete(channel=channel, ts=ts)
            counts["deleted"] += 1
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else "error"
            if error == "message_not_found":
                return          # gone already (erased before, or deleted by hand)
            if error in ("cant_delete_message", "not_authorized"):
                counts["left"] += 1
            else:
                counts["failed"] += 1
            log.warning("Slack chat.delete of a message in %s failed: %s", channel, error)
        except OSError as exc:
            counts["failed"] += 1
            log.warning("Slack chat.delete of a message in %s failed: %s", channel, exc)

    for t in threads:
        if t.get("desk", "slack") != "slack":
            continue
        channel, ts = t["channel"], t["ts"]
        cursor = None
        replies: list[dict[str, Any]] = []
        try:
            while True:
                resp = await client.conversations_replies(channel=channel, ts=ts, cursor=cursor, limit=200)
                replies += [m for m in resp.get("messages", []) if m.get("ts") != ts]
                cursor = (resp.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    break
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else "error"
            if error != "thread_not_found":
                counts["failed"] += 1
                log.warning("Slack conversations.replies of a thread in %s failed: %s", channel, error)
        except OSError as exc:
            counts["failed"] += 1
            log.warning("Slack conversations.replies of a thread in %s failed: %s", channel, exc)
        for m in replies:
            for f in m.get("files") or []:       # the transcript file the desk shared in the thread
                if f.get("id"):
                    await delete_file(f["id"])
            if m.get("bot_id"):
                await delete(channel, m["ts"])
            else:
                counts["left"] += 1
        await delete(channel, ts)
    return counts


def slack_client(config: Any) -> Any:
    """An AsyncWebClient on the configured Slack (``slack.bot_token``, ``slack.api_url``), or None."""
    if not config.slack.enabled:
        return None
    from slack_sdk.web.async_client import AsyncWebClient

    return AsyncWebClient(token=config.slack.bot_token.get_secret_value(), base_url=config.slack.api_url)
