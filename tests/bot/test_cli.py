"""The omnibot command line, through click's runner (validate, config errors, shell)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from click.testing import CliRunner

from bot.cli import main
from conftest import DEMO_FLOWS, SHOP_FLOWS


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for cmd in ("run", "validate", "shell", "graph", "schema"):
        assert cmd in result.output


def test_validate_counts_flows_and_intents() -> None:
    result = CliRunner().invoke(main, ["validate", str(SHOP_FLOWS)])     # the frozen copy: known counts
    assert result.exit_code == 0, result.output
    # the copy predates the demo's rewording of two overlapping intents: validate warns, exit 0
    assert "warning:" in result.output and "intents 'help' and 'shipping_times' overlap" in result.output
    assert "\nOK: 18 flows" in result.output


def test_validate_demo_flows_ok() -> None:
    # the demo is the admins' starting point and grows: it validates, whatever it holds
    result = CliRunner().invoke(main, ["validate", str(DEMO_FLOWS)])
    assert result.exit_code == 0, result.output
    assert re.match(r"OK: \d+ flows \(\d+ steps\), \d+ intents", result.output)


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


def test_shell_plays_the_agent_after_a_handoff_and_shows_state() -> None:
    script = "\n".join([
        "/state", "i want to make a complaint", "2", "AB123456", "The parcel never arrived at all", "skip",
        "/state", "1", "hello?", "/agent reply Hi, on it", "/agent resolve a new parcel is on its way",
        "5", "skip", "/agent back", "/agent dance", "/nonsense", "/reset", "/state", "/help", "/quit"]) + "\n"
    result = CliRunner().invoke(main, ["shell", "--flows", str(DEMO_FLOWS)], input=script)
    out = result.output
    assert result.exit_code == 0, out
    assert "Traceback" not in out
    assert "--  no conversation yet: say something" in out
    assert "--  flow: complaint, step" in out and "(asking want_human)" in out
    assert '"order_number": "AB123456"' in out and "language en" in out
    # the handoff card, as the agent sees it: team, reason for the agent, captured fields, ticket
    assert "HANDOFF to Complaints (priority" in out
    assert re.search(r"why \(for the agent\): complaint C-\d+ \(shipping, normal\)", out)
    assert "Problem area: Shipping" in out and "Order number: AB123456" in out
    assert re.search(r"ticket: C-\d+ shipping severity normal", out)
    assert "kept for the agent" in out                        # hello? while waiting
    assert "Sam> Hi, on it" in out                            # the agent's reply reaches the customer
    assert "resolved your complaint" in out and "How satisfied are you" in out
    assert "Thanks for your feedback" in out                  # the bot answers again: never stuck
    assert "no handoff is open in this conversation" in out   # /agent back with nothing open
    assert "/agent claim | /agent reply TEXT" in out and "unknown command /nonsense" in out
    assert "a new conversation, as a new customer" in out
    assert "/agent resolve [OUTCOME]" in out                  # /help


def test_shell_errors_are_one_line_not_tracebacks(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from flows import FlowEngine

    async def broken(self, state, turn):  # type: ignore[no-untyped-def]
        raise RuntimeError("the engine broke")

    monkeypatch.setattr(FlowEngine, "handle", broken)
    result = CliRunner().invoke(main, ["shell", "--flows", str(DEMO_FLOWS)], input="hello\n/quit\n")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "--  error: turn for message" in result.output and "RuntimeError: the engine broke" in result.output
    assert "Sorry, something went wrong on our side" in result.output      # the customer's apology
