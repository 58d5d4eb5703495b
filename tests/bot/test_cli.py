"""The omnibot command line, through click's runner (validate, config errors, shell)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from click.testing import CliRunner

from bot.cli import main
from conftest import DEMO_FLOWS


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for cmd in ("run", "validate", "shell", "graph", "schema"):
        assert cmd in result.output


def test_validate_demo_flows_ok() -> None:
    result = CliRunner().invoke(main, ["validate", str(DEMO_FLOWS)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK: 20 flows")   # no warnings either


def test_validate_reports_every_error_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("intents:\n  hi: {examples: [hi]}\nflows:\n  hi:\n    trigger: hello\n    steps:\n"
                   "      - say: '{{ oops'\n      - goto: nowhere\n")
    result = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert any(line.startswith(f"{bad}:5: flow 'hi': trigger intent 'hello' is not defined") for line in lines)
    assert any(line.startswith(f"{bad}:7: say: template error") for line in lines)
    assert any(line.startswith(f"{bad}:8: goto: unknown target 'nowhere'") for line in lines)
    assert lines[-1] == f"3 error(s) in {tmp_path}"


def test_bad_config_names_the_key_and_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("server:\n  host: 127.0.0.1\n  prot: 8080\n")
    result = CliRunner().invoke(main, ["validate", "-c", str(cfg)])
    assert result.exit_code == 2
    assert f"{cfg}:3: server.prot: unknown key" in result.output


def test_run_refuses_invalid_flows(tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "f.yaml").write_text("flows:\n  a:\n    steps:\n      - sya: hi\n")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"flows: {{path: flows}}\nstorage: {{url: 'sqlite:///{tmp_path}/x.db'}}\n")
    result = CliRunner().invoke(main, ["run", "-c", str(cfg), "--port", "0"])
    assert result.exit_code == 1
    assert "f.yaml:4: flows.a.steps[0]: no step kind" in result.output


def test_shell_chats_with_the_flows() -> None:
    result = CliRunner().invoke(main, ["shell", "--flows", str(DEMO_FLOWS)],
                                input="when are you open?\n/quit\n")
    assert result.exit_code == 0, result.output
    assert "Monday to Friday" in result.output


BOMB = "\n".join(['lol0: &lol0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'] + [
    f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 10) + "]" for i in range(1, 9)]) + "\n"


def _bomb_line(text: str, output: str, path: Path) -> int:
    """The line ``output`` reports for ``path``; it must be one of the bomb's alias lines."""
    m = re.search(re.escape(str(path)) + r":(\d+): .*aliases expand to more than", output)
    assert m, output
    line = int(m.group(1))
    assert "*lol" in text.splitlines()[line - 1]
    return line


def test_validate_refuses_an_alias_bomb_fast(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    text = "intents:\n  hi: {examples: [hi]}\nflows:\n  hi:\n    trigger: hi\n    steps: [end]\n" + BOMB
    bomb.write_text(text)
    t0 = time.perf_counter()
    result = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert time.perf_counter() - t0 < 1.0
    assert result.exit_code == 1
    _bomb_line(text, result.output, bomb)


def test_alias_bomb_in_config_exits_2_fast(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    text = "server: {port: 8080}\n" + BOMB
    cfg.write_text(text)
    t0 = time.perf_counter()
    result = CliRunner().invoke(main, ["validate", str(DEMO_FLOWS), "-c", str(cfg)])
    assert time.perf_counter() - t0 < 1.0
    assert result.exit_code == 2
    _bomb_line(text, result.output, cfg)


def test_run_refuses_an_alias_bomb_in_the_flows_fast(tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    bomb = tmp_path / "flows" / "f.yaml"
    text = "flows:\n  a:\n    steps: [end]\n" + BOMB
    bomb.write_text(text)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"flows: {{path: flows}}\nstorage: {{url: 'sqlite:///{tmp_path}/x.db'}}\n")
    t0 = time.perf_counter()
    result = CliRunner().invoke(main, ["run", "-c", str(cfg), "--port", "0"])
    assert time.perf_counter() - t0 < 1.0
    assert result.exit_code == 1
    _bomb_line(text, result.output, bomb)


def test_validate_reports_names_that_do_not_exist_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "f.yaml"
    bad.write_text("intents:\n  hi: {examples: [hi]}\nflows:\n  hi:\n    trigger: hi\n    steps:\n"
                   "      - action: create_reference\n        save_as: reference\n"
                   "      - say: 'Your reference number is {{ slots.refrence }}.'\n"
                   "      - branch:\n          - if: slot.reference\n            then: end\n")
    result = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines == [
        f"{bad}:9: say: slot 'refrence' is never filled: no flow collects, sets or saves it; "
        "did you mean 'reference'?",
        f"{bad}:11: branch case 1: unknown name 'slot' (known here: channel, customer, message, payload, slots); "
        "did you mean 'slots'?",
        f"2 error(s) in {tmp_path}",
    ]
