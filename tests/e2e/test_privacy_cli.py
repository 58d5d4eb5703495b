"""omnibot customer export / erase / audit through the real CLI, with the Slack copies deleted in the
Slack fake through slack_sdk (the real AsyncWebClient), on a SQLite file."""

from __future__ import annotations

import asyncio
import json
import zipfile
from pathlib import Path

from click.testing import CliRunner
from slack_sdk.web.async_client import AsyncWebClient

from bot.cli import main
from bot.model import Inbound
from bot.storage import open_store
from fakes.slack_api import FakeSlack


async def _seed(url: str, fake: FakeSlack) -> tuple[str, str]:
    """Ann and Bob, each with a handoff whose card and thread omnibot posted to Slack."""
    client = AsyncWebClient(token=fake.bot_token, base_url=fake.base_url)
    store = await open_store(url)
    try:
        ids = []
        for who in ("ann", "bob"):
            r = await store.record_inbound(Inbound(channel="telegram", external_id=f"{who}-tg", platform_message_id=f"{who}1",
                                                   text=f"{who} needs help, mail {who}@shop.example", sender_name=who.title()))
            h = await store.create_handoff(r.conversation.id, team="support", reason="asked", priority=0, context={})
            card = await client.chat_postMessage(channel="CSUP", text=f"{who.title()} needs help")
            await client.chat_postMessage(channel="CSUP", thread_ts=card["ts"], text=f"{who}: mail {who}@shop.example")
            # the full transcript the desk shares in the thread (a file: files.delete on erase)
            await client.files_upload_v2(channel="CSUP", thread_ts=card["ts"], content=f"{who}: mail {who}@shop.example",
                                         filename="transcript.txt", title="Full transcript")
            await store.save_desk_thread("slack", h.id, channel="CSUP", ts=card["ts"], team="support", relayed_upto=0)
            ids.append(r.customer.id)
        return ids[0], ids[1]
    finally:
        await store.close()


def test_export_erase_and_audit_from_the_command_line(tmp_path: Path) -> None:
    db = tmp_path / "omnibot.sqlite3"

    async def scenario() -> None:
        async with FakeSlack() as fake:
            cfg = tmp_path / "config.yaml"
            cfg.write_text(f"""
storage: {{url: "sqlite:///{db}"}}
slack:
  enabled: true
  bot_token: {fake.bot_token}
  signing_secret: s3cret
  api_url: {fake.base_url}
  default_channel: CSUP
  agents: [U1]
""")
            ann, bob = await _seed(f"sqlite:///{db}", fake)
            # an agent's own reply in Ann's thread: the bot's token cannot delete it
            ann_card = [m for m in fake.messages.values() if m["text"] == "Ann needs help"][0]
            fake.messages[("CSUP", "9.1")] = {"type": "message", "user": "U1", "text": "on it", "ts": "9.1",
                                             "thread_ts": ann_card["ts"]}
            runner = CliRunner()

            def run(*args: str, input: str | None = None) -> str:
                res = runner.invoke(main, [*args, "-c", str(cfg)], input=input, catch_exceptions=False)
                assert res.exit_code == 0, res.output
                return res.output

            out = await asyncio.to_thread(run, "customer", "export", "--channel", "telegram", "--external-id", "ann-tg",
                                          "--out", str(tmp_path / "ann.zip"))
            assert f"exported {ann}" in out
            with zipfile.ZipFile(tmp_path / "ann.zip") as z:
                data = json.loads(z.read("customer.json"))
            assert data["messages"][0]["text"] == "ann needs help, mail ann@shop.example"
            # asked first: no means nothing is erased
            res = await asyncio.to_thread(runner.invoke, main, ["customer", "erase", "--id", ann, "-c", str(cfg)],
                                          input="n\n")
            assert res.exit_code == 1 and "Aborted" in res.output
            assert len([m for m in fake.messages.values() if "ann" in m["text"].lower()]) == 2
            out = await asyncio.to_thread(run, "customer", "erase", "--id", ann, input="y\n")
            # the card, the bot's reply and the file's share message; the file itself; the agent's reply left
            assert f"erased {ann}" in out and "slack deleted: 3" in out and "slack left: 1" in out
            assert "slack files: 1" in out
            files = [data.decode() for data in fake.files.values()]
            assert not [f for f in files if "ann" in f] and [f for f in files if "bob@shop.example" in f]
            assert "messages: 1" in out and "identities: 1" in out
            deletes = [c.args for c in fake.calls if c.method == "chat.delete"]
            assert {d["ts"] for d in deletes} >= {ann_card["ts"]}
            texts = [m["text"] for m in fake.messages.values()]
            assert not [t for t in texts if "ann" in t.lower()]           # Ann's card and the bot's reply: gone
            assert "Bob needs help" in texts and "bob: mail bob@shop.example" in texts   # Bob's untouched
            res = await asyncio.to_thread(runner.invoke, main, ["customer", "erase", "--id", ann, "-c", str(cfg),
                                                                "--yes"])
            assert res.exit_code == 0       # the customer row stays (anonymous), erasing again removes nothing
            out = await asyncio.to_thread(run, "audit", "--customer", ann)
            assert [line.split()[2] for line in out.splitlines()] == ["export", "erase", "erase"]
            out = await asyncio.to_thread(run, "audit", "--json")
            assert all(json.loads(line)["actor"].startswith("cli") for line in out.splitlines())
            res = await asyncio.to_thread(runner.invoke, main, ["customer", "erase", "-c", str(cfg)])
            assert res.exit_code == 2 and "--id, --email, --phone" in res.output
            res = await asyncio.to_thread(runner.invoke, main, ["customer", "export", "--email", "x@y.example",
                                                                "-c", str(cfg)])
            assert res.exit_code == 1 and "no customer matches" in res.output

    asyncio.run(scenario())
