"""`omnibot reload`, SIGHUP and `omnibot flows history|rollback|export` against a real `omnibot run`
subprocess (README "Changing flows on a running bot")."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from conftest import AGENT_TOKEN, ROOT
from e2e.chat import ChatClient
from e2e.reload_flows import BROKEN, FLOWS, write_flows


def _config(tmp_path: Path) -> Path:
    flows = write_flows(tmp_path / "flows", "V1")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"""
server: {{host: 127.0.0.1, port: 0}}
storage: {{url: "sqlite:///{tmp_path / 'bot.sqlite3'}", media_dir: "{tmp_path / 'media'}"}}
flows: {{path: "{flows}"}}
agent_desk: {{token: {AGENT_TOKEN}}}
nlu: {{matcher: lexical}}
handoff: {{teams: {{support: {{name: Customer Care}}}}}}
""")
    return cfg


def _omnibot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


@pytest.fixture
def bot(tmp_path: Path):  # type: ignore[no-untyped-def]
    cfg = _config(tmp_path)
    log = tmp_path / "run.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "run", "-c", str(cfg)], cwd=ROOT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"}, stderr=err, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        url = None
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            m = re.search(r"web chat:\s+(http://127\.0\.0\.1:\d+)/", log.read_text())
            url = m.group(1) if m else None
            time.sleep(0.1)
        assert url, "omnibot did not start:\n" + log.read_text()
        yield proc, url, cfg, log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def _ask(url: str, text: str, expect: str, *, timeout: float = 10.0) -> None:
    """A new customer asks ``text`` until the answer contains ``expect`` (a reload takes a moment)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            c = ChatClient(http, url + "/webchat/ws")
            await c.connect()
            try:
                [m] = await c.say(text)
            finally:
                await c.close()
            if expect in m["text"]:
                return
            assert time.monotonic() < deadline, f"still {m['text']!r}, not {expect!r}"
            await asyncio.sleep(0.2)


async def test_sighup_reload_history_rollback_export(bot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc, url, cfg, log = bot
    flows = tmp_path / "flows"
    await _ask(url, "when are you open", "V1 open nine to five", timeout=0)

    # SIGHUP: the files are loaded without a restart
    write_flows(flows, "V2")
    proc.send_signal(signal.SIGHUP)
    await _ask(url, "when are you open", "V2 open nine to five")
    assert proc.poll() is None

    # an invalid version: exit 1, every error as file:line: reason, the old version keeps serving
    write_flows(flows, "V3", BROKEN)
    r = _omnibot("reload", "-c", str(cfg), "--url", url)
    assert r.returncode == 1, r
    assert f"{flows / 'main.yaml'}:14: say: slot 'nmae' is never filled" in r.stderr
    assert "version 2 keeps serving" in r.stderr and r.stdout == ""
    assert "reload by shared token refused; version 2 keeps serving" in log.read_text()
    await _ask(url, "when are you open", "V2 open nine to five", timeout=0)
    # ...and SIGHUP with the same files: refused too, logged, still serving
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload by SIGHUP refused" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        await asyncio.sleep(0.1)
    assert proc.poll() is None

    write_flows(flows, "V3")
    r = _omnibot("reload", "-c", str(cfg), "--url", url)
    assert r.returncode == 0 and r.stdout.startswith("version 3 serves (was 2)"), r
    await _ask(url, "when are you open", "V3 open nine to five", timeout=0)
    r = _omnibot("reload", "-c", str(cfg), "--url", url)
    assert r.returncode == 0 and r.stdout.startswith("unchanged: version 3 serves"), r

    r = _omnibot("flows", "history", "-c", str(cfg))
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["VERSION", "HASH", "LOADED", "(UTC)", "BY", "NOTE"]
    assert [ln.split()[0] for ln in lines[1:4]] == ["3", "2", "1"] and lines[1].split()[1] == "*"
    assert "shared token" in lines[1] and "reload" in lines[1] and "SIGHUP" in lines[2] and "startup" in lines[3]

    r = _omnibot("flows", "rollback", "1", "-c", str(cfg), "--url", url)
    assert r.returncode == 0 and r.stdout.startswith("version 4 serves (was 3)"), r
    await _ask(url, "when are you open", "V1 open nine to five", timeout=0)
    r = _omnibot("flows", "rollback", "99", "-c", str(cfg), "--url", url)
    assert r.returncode == 1 and "there is no version 99" in r.stderr, r

    out = tmp_path / "v2"
    r = _omnibot("flows", "export", "2", str(out), "-c", str(cfg))
    assert r.returncode == 0, r
    assert (out / "main.yaml").read_text() == FLOWS.replace("@V", "V2")

    # the token is checked; an unreachable bot is exit 2 with the reason
    r = _omnibot("reload", "-c", str(cfg), "--url", url, "--token", "wrong")
    assert r.returncode == 2 and "not authorised" in r.stderr, r
    r = _omnibot("reload", "-c", str(cfg), "--url", url, env={"OMNIBOT_ADMIN_TOKEN": "wrong"})
    assert r.returncode == 2, r
    r = _omnibot("reload", "-c", str(cfg), "--url", "http://127.0.0.1:9")
    assert r.returncode == 2 and "cannot reach the running bot at http://127.0.0.1:9" in r.stderr, r


def test_reload_help_explains_exit_statuses() -> None:
    r = _omnibot("reload", "--help")
    assert r.returncode == 0 and "SIGHUP" in r.stdout and "1 the files were" in r.stdout
    r = _omnibot("flows", "--help")
    assert all(c in r.stdout for c in ("history", "rollback", "export"))
