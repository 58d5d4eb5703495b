"""Small flows for the reload tests: every text the bot says starts with the version's tag."""

from __future__ import annotations

from pathlib import Path

from bot.config import Config
from conftest import make_config

FLOWS = """\
intents:
  order:
    examples: ["I want to order", "order a pizza please", "place an order"]
  hours:
    examples: ["when are you open", "opening hours"]
flows:
  order:
    trigger: order
    steps:
      - collect: name
        ask: "@V what is your name?"
      - collect: size
        ask: "@V which size?"
      - say: "@V done for {{ slots.name }}"
  hours:
    trigger: hours
    steps:
      - say: "@V open nine to five"
"""

# line 14 holds a step that names a slot nothing fills: `omnibot validate` refuses it
BROKEN = FLOWS.replace('      - say: "@V done for {{ slots.name }}"', '      - say: "@V done for {{ slots.nmae }}"')


def write_flows(folder: Path, tag: str, text: str = FLOWS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.yaml").write_text(text.replace("@V", tag), encoding="utf-8")
    return folder


def reload_config(tmp_path: Path, extra: str = "") -> Config:
    """The test config with the flows above (version V1) and the lexical matcher (no model)."""
    flows = write_flows(tmp_path / "flows", "V1")
    config = make_config(tmp_path, "nlu: {matcher: lexical}\n" + extra)
    return config.model_copy(update={"flows": config.flows.model_copy(update={"path": str(flows)})})
