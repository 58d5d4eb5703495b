"""A small web-chat client speaking the widget's protocol, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp


class ChatClient:
    """One customer on a real WebSocket."""

    def __init__(self, http: aiohttp.ClientSession, ws_url: str) -> None:
        self.http = http
        self.ws_url = ws_url
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.token: str | None = None
        self.welcome: dict[str, Any] = {}
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.messages: dict[int, dict[str, Any]] = {}     # server messages by id (deduped)
        self.frames: list[dict[str, Any]] = []
        self._reader: asyncio.Task[None] | None = None

    async def connect(self, token: str | None = None, last_id: int = 0) -> dict[str, Any]:
        self.ws = await self.http.ws_connect(self.ws_url)
        await self.ws.send_json({"type": "hello", "token": token if token is not None else self.token,
                                 "last_id": last_id})
        while True:
            frame = await asyncio.wait_for(self.ws.receive_json(), 5)
            self.frames.append(frame)
            if frame["type"] == "welcome":
                break
        self.welcome = frame
        self.token = frame["token"]
        for m in frame["history"]:
            self.messages[m["id"]] = m
        self._reader = asyncio.create_task(self._read())
        return frame

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            frame = msg.json()
            self.frames.append(frame)
            if frame["type"] == "message":
                m = frame["message"]
                if m["id"] in self.messages:
                    continue
                self.messages[m["id"]] = m
            await self.inbox.put(frame)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def send(self, text: str, *, payload: str | None = None, client_id: str | None = None,
                   attachments: list[dict[str, str]] | None = None) -> dict[str, Any]:
        """Send a message and wait for its ack."""
        assert self.ws is not None
        cid = client_id or str(uuid.uuid4())
        frame: dict[str, Any] = {"type": "message", "client_id": cid, "text": text}
        if payload:
            frame["payload"] = payload
        if attachments:
            frame["attachments"] = attachments
        await self.ws.send_json(frame)
        return await self.expect(lambda f: f["type"] in ("ack", "error") and f.get("client_id") == cid)

    async def expect(self, pred: Any, timeout: float = 5.0) -> dict[str, Any]:
        """The next frame matching ``pred`` (other frames are skipped)."""
        async def loop() -> dict[str, Any]:
            while True:
                f = await self.inbox.get()
                if pred(f):
                    return f
        return await asyncio.wait_for(loop(), timeout)

    async def reply(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next bot/agent/system message."""
        f = await self.expect(lambda f: f["type"] == "message", timeout)
        return f["message"]

    async def replies_until(self, pred: Any, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Messages until one satisfies ``pred`` (included)."""
        out = []
        while True:
            m = await self.reply(timeout)
            out.append(m)
            if pred(m):
                return out

    async def say(self, text: str, *, payload: str | None = None, expect_text: str | None = None,
                  timeout: float = 5.0) -> list[dict[str, Any]]:
        """Send, then collect replies until one contains ``expect_text`` (or just the first)."""
        ack = await self.send(text, payload=payload)
        assert ack["type"] == "ack", ack
        if expect_text is None:
            return [await self.reply(timeout)]
        return await self.replies_until(lambda m: expect_text in m["text"], timeout)
