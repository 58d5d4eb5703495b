"""The omnibot command line, through click's runner (validate, config errors, shell)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from bot.cli import main
from conftest import DEMO_FLOWS


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for cmd in ("run", "validate", "shell"):
        assert cmd in result.output


def test_validate_demo_flows_ok() -> None:
    result = CliRunner().invoke(main, ["validate", str(DEMO_FLOWS)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK: 17 flows")


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
