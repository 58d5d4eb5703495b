"""One way to configure omnibot's Slack desk against the fake Slack, for tests and bench/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import make_config
from fakes.slack_api import FakeSlack

SECRET = "test-signing-secret"


def slack_config(tmp_path: Path, fake: FakeSlack, *, messages_per_minute: int = 1000, more_yaml: str = "",
                 **slack: Any) -> Any:
    """A config with the Slack desk on ``fake`` (HTTP mode, channels CSUP and CCOMP, agents UANNA
    and UBOB); keyword arguments override or add ``slack:`` keys, ``more_yaml`` adds sections."""
    opts = {"mode": "http", "bot_token": fake.bot_token, "signing_secret": SECRET, "api_url": fake.base_url,
            "default_channel": "CSUP", "team_channels": {"complaints": "CCOMP"}, "agents": ["UANNA", "UBOB"],
            "note_prefix": "//", "unclaimed_alert_after": 3600, "sync_interval": 0.3, **slack}
    keys = "".join(f"\n  {k}: {json.dumps(v)}" for k, v in opts.items())
    return make_config(tmp_path, f"""
slack:
  enabled: true{keys}
webchat: {{messages_per_minute: {messages_per_minute}}}
{more_yaml}""")
