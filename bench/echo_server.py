"""The ceiling: a bare aiohttp WebSocket server that answers each message frame
the way the web chat does (an ack, then a message), with no storage or flows."""

from __future__ import annotations

import asyncio
import json
import sys

from aiohttp import WSMsgType, web

_counter = 0


async def ws_handler(request: web.Request) -> web.WebSocketResponse:
    global _counter
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type != WSMsgType.TEXT:
            continue
        frame = json.loads(msg.data)
        if frame.get("type") == "hello":
            await ws.send_json({"type": "welcome", "token": "t", "history": [], "state": "bot"})
        elif frame.get("type") == "message":
            _counter += 2
            await ws.send_json({"type": "ack", "client_id": frame["client_id"], "id": _counter - 1,
                                "duplicate": False})
            await ws.send_json({"type": "message", "message": {"id": _counter, "direction": "out", "role": "bot",
                                                               "text": frame["text"]}})
    return ws


async def serve(port: int) -> None:
    app = web.Application()
    app.router.add_get("/webchat/ws", ws_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)          # only once the socket is listening
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    try:
        asyncio.run(serve(int(sys.argv[1])))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
