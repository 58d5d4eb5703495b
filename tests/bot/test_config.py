"""config.yaml parsing: defaults, env substitution, located errors, secrets, paths."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bot.config import Config, load_config, parse_config
from bot.errors import ConfigError


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config()
    assert cfg.server.host == "127.0.0.1"
    assert cfg.server.port == 8080
    assert cfg.storage.url == "sqlite:///data/omnibot.sqlite3"
    assert cfg.flows.path == "flows/demo"
    assert cfg.handoff.default_team == "support"
    assert cfg.handoff.team_name("support") == "Customer Care"
    assert cfg.handoff.team_name("nope") == "nope"
    assert cfg.delivery.max_attempts == 8
    assert cfg.agent_desk.token.get_secret_value() == "demo-agent-token"
    assert cfg.webchat.secret is None
    assert Path(cfg.base_dir) == tmp_path
    assert cfg.storage_url() == f"sqlite:///{tmp_path / 'data' / 'omnibot.sqlite3'}"


def test_empty_text_is_all_defaults(tmp_path: Path) -> None:
    cfg = parse_config("# nothing here\n", path=str(tmp_path / "c.yaml"), env={})
    assert cfg.server == Config().server
    assert cfg.delivery == Config().delivery


def test_values_are_read(tmp_path: Path) -> None:
    text = """
server:
  host: 0.0.0.0
  port: 9000
handoff:
  default_team: complaints
  teams:
    complaints: {name: Complaints}
delivery: {max_attempts: 3, base_delay: 0.1}
"""
    cfg = parse_config(text, path=str(tmp_path / "config.yaml"), env={})
    assert (cfg.server.host, cfg.server.port) == ("0.0.0.0", 9000)
    assert cfg.handoff.team_name("complaints") == "Complaints"
    assert list(cfg.handoff.teams) == ["complaints"]
    assert (cfg.delivery.max_attempts, cfg.delivery.base_delay, cfg.delivery.max_delay) == (3, 0.1, 300.0)


def test_env_substitution() -> None:
    text = """
agent_desk:
  token: ${AGENT_TOKEN}
webchat:
  title: "${SHOP:-Acme} support (${REGION:-eu})"
server:
  public_url: https://${HOST}/chat
"""
    cfg = parse_config(text, env={"AGENT_TOKEN": "s3cret-token", "REGION": "us", "HOST": "example.org"})
    assert cfg.agent_desk.token.get_secret_value() == "s3cret-token"
    assert cfg.webchat.title == "Acme support (us)"
    assert cfg.server.public_url == "https://example.org/chat"


def test_env_default_used_when_variable_is_empty() -> None:
    cfg = parse_config("webchat: {title: '${T:-Help}'}\n", env={"T": ""})
    assert cfg.webchat.title == "Help"
    cfg = parse_config("webchat: {title: '${T:-}x'}\n", env={})
    assert cfg.webchat.title == "x"


def test_env_substitution_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNIBOT_TEST_TITLE", "From env")
    assert parse_config("webchat: {title: '${OMNIBOT_TEST_TITLE}'}\n").webchat.title == "From env"


def test_missing_env_var_names_key_and_line() -> None:
    text = "server:\n  port: 8080\nagent_desk:\n  enabled: true\n  token: ${NOPE_TOKEN}\n"
    with pytest.raises(ConfigError) as ei:
        parse_config(text, path="/etc/omnibot/config.yaml", env={})
    err = ei.value
    assert err.key == "agent_desk.token"
    assert err.line == 5
    assert "NOPE_TOKEN" in err.reason
    assert str(err).startswith("/etc/omnibot/config.yaml:5: agent_desk.token: environment variable NOPE_TOKEN")


def test_missing_env_var_inside_a_list() -> None:
    text = "webchat:\n  allowed_origins:\n    - https://a.example\n    - ${ORIGIN}\n"
    with pytest.raises(ConfigError) as ei:
        parse_config(text, env={})
    assert (ei.value.key, ei.value.line) == ("webchat.allowed_origins[1]", 4)


def test_unknown_key_flow_style() -> None:
    with pytest.raises(ConfigError) as ei:
        parse_config("# comment\nserver: {prot: 1}\n", path="c.yaml", env={})
    assert ei.value.key == "server.prot"
    assert ei.value.line == 2
    assert "unknown key" in ei.value.reason
    assert str(ei.value).startswith("c.yaml:2: server.prot: unknown key")


def test_unknown_key_block_style_points_at_its_line() -> None:
    text = "server:\n  host: 127.0.0.1\n  prot: 1\nstorage:\n  url: x\n"
    with pytest.raises(ConfigError) as ei:
        parse_config(text, env={})
    assert (ei.value.key, ei.value.line) == ("server.prot", 3)


def test_unknown_top_level_section() -> None:
    with pytest.raises(ConfigError) as ei:
        parse_config("server: {}\nsevrer: {port: 1}\n", env={})
    assert (ei.value.key, ei.value.line) == ("sevrer", 2)


def test_wrong_type() -> None:
    text = "server:\n  host: localhost\n  port: eighty\n"
    with pytest.raises(ConfigError) as ei:
        parse_config(text, env={})
    assert (ei.value.key, ei.value.line) == ("server.port", 3)
    assert "integer" in ei.value.reason


def test_out_of_range_and_literal() -> None:
    with pytest.raises(ConfigError) as ei:
        parse_config("\nserver: {port: 70000}\n", env={})
    assert (ei.value.key, ei.value.line) == ("server.port", 2)
    with pytest.raises(ConfigError) as ei:
        parse_config("logging:\n  level: LOUD\n", env={})
    assert (ei.value.key, ei.value.line) == ("logging.level", 2)


def test_several_problems_are_counted() -> None:
    with pytest.raises(ConfigError) as ei:
        parse_config("server: {port: x, prot: 1, hots: 2}\n", env={})
    assert ei.value.reason.endswith("(and 2 more problems)")


def test_empty_teams_rejected() -> None:
    with pytest.raises(ConfigError) as ei:
        parse_config("handoff:\n  teams: {}\n", env={})
    assert ei.value.key == "handoff.teams"
    assert ei.value.line == 2
    assert "at least one team" in ei.value.reason


@pytest.mark.parametrize("text", ["- server\n- storage\n", "just a string\n", "42\n"])
def test_non_mapping_top_level(text: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_config(text, path="c.yaml", env={})
    assert ei.value.line == 1
    assert "top level must be a mapping" in ei.value.reason


def test_invalid_yaml_reports_line() -> None:
    text = "server:\n  host: a\n  port: [1, 2\nstorage: {}\n"
    with pytest.raises(ConfigError) as ei:
        parse_config(text, path="c.yaml", env={})
    assert ei.value.reason.startswith("invalid YAML")
    assert ei.value.line == 4
    assert str(ei.value).startswith("c.yaml:4: invalid YAML")


def test_bad_indentation_reports_line() -> None:
    with pytest.raises(ConfigError) as ei:
        parse_config("server:\n  host: a\n    port: 1\n", env={})
    assert ei.value.line == 3


def test_repeated_key_is_an_error() -> None:
    with pytest.raises(ConfigError) as ei:
        parse_config("server: {}\nstorage: {}\nserver: {port: 1}\n", env={})
    assert ei.value.line == 3
    assert "'server' is given twice" in ei.value.reason


def test_secrets_are_hidden_in_repr_and_str() -> None:
    cfg = parse_config("agent_desk: {token: tok-abcdef-123}\nwebchat: {secret: web-zyxw-987}\n", env={})
    for text in (repr(cfg), str(cfg), repr(cfg.agent_desk), str(cfg.webchat), repr(cfg.model_dump())):
        assert "tok-abcdef-123" not in text
        assert "web-zyxw-987" not in text
    assert "**********" in repr(cfg.agent_desk)
    assert cfg.agent_desk.token.get_secret_value() == "tok-abcdef-123"
    assert cfg.secrets()[:2] == ["tok-abcdef-123", "web-zyxw-987"]
    assert "demo-shop-token" in cfg.secrets()     # integrations: the demo shop API's token (the default)


def test_config_is_frozen() -> None:
    cfg = Config()
    with pytest.raises(Exception):
        cfg.server.port = 1  # type: ignore[misc]


def test_storage_url_resolves_relative_sqlite_path_against_config_folder(tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    cfg = parse_config("storage: {url: 'sqlite:///db/bot.sqlite3'}\n", path=str(folder / "config.yaml"), env={})
    assert cfg.storage_url() == f"sqlite:///{folder / 'db' / 'bot.sqlite3'}"
    assert cfg.resolve("flows/x") == folder / "flows" / "x"
    assert cfg.resolve("/abs/x") == Path("/abs/x")


def test_storage_url_absolute_and_memory_unchanged(tmp_path: Path) -> None:
    p = str(tmp_path / "c.yaml")
    assert parse_config("storage: {url: 'sqlite:////var/lib/o.db'}\n", path=p,
                        env={}).storage_url() == "sqlite:////var/lib/o.db"
    assert parse_config("storage: {url: 'sqlite:///:memory:'}\n", path=p,
                        env={}).storage_url() == "sqlite:///:memory:"


def test_load_config_reads_the_file_and_uses_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMNIBOT_TEST_UNSET", raising=False)
    f = tmp_path / "conf" / "omnibot.yaml"
    f.parent.mkdir()
    f.write_text("server:\n  port: 9999\nwebchat: {title: '${OMNIBOT_TEST_UNSET:-Hi}'}\n", encoding="utf-8")
    cfg = load_config(f)
    assert cfg.server.port == 9999
    assert cfg.webchat.title == "Hi"
    assert Path(cfg.base_dir) == f.parent.resolve()


def test_load_config_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as ei:
        load_config(missing)
    assert ei.value.reason == "file not found"
    assert ei.value.path == str(missing)
    assert str(ei.value) == f"{missing}: file not found"


def test_load_config_default_file_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config.yaml").write_text("server: {port: 1234}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert load_config().server.port == 1234


def test_load_config_not_utf8(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_bytes(b"server: {host: \xff\xfe}\n")
    with pytest.raises(ConfigError) as ei:
        load_config(f)
    assert ei.value.reason.startswith("cannot read")


def test_os_environ_untouched() -> None:
    before = dict(os.environ)
    parse_config("webchat: {title: '${X_SOMETHING:-y}'}\n", env={})
    assert dict(os.environ) == before


def test_alias_bomb_in_config_is_refused_fast_with_line() -> None:
    levels = ['lol0: &lol0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 10) + "]" for i in range(1, 9)]
    text = "server: {port: 8080}\n" + "\n".join(levels) + "\n"
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as ei:
        parse_config(text, path="c.yaml", env={})
    assert time.perf_counter() - t0 < 1.0
    assert ei.value.line is not None and "*lol" in text.splitlines()[ei.value.line - 1]
    assert str(ei.value).startswith(f"c.yaml:{ei.value.line}: ")
    assert "aliases expand to more than" in ei.value.reason


def test_whatsapp_disabled_by_default_and_complete_when_enabled() -> None:
    assert parse_config("").whatsapp.enabled is False
    with pytest.raises(ConfigError) as ei:
        parse_config("whatsapp: {enabled: true, access_token: t0ken}")
    assert "phone_number_id, app_secret, verify_token are empty" in str(ei.value)
    ok = ("whatsapp: {enabled: true, access_token: t0ken, phone_number_id: '1098', app_secret: s3cret, "
          "verify_token: v3rify, templates: {default: {name: support_update, language: en_US}, agent: {name: reply}}}")
    cfg = parse_config(ok).whatsapp
    assert cfg.api_url == "https://graph.facebook.com" and cfg.api_version == "v21.0"
    assert cfg.template_for("agent").name == "reply" and cfg.template_for("bot").language == "en_US"
    assert {"t0ken", "s3cret", "v3rify"} <= set(parse_config(ok).secrets())
    with pytest.raises(ConfigError) as ei:
        parse_config(ok.replace("agent:", "customer:"))
    assert "unknown key 'customer'" in str(ei.value)
    with pytest.raises(ConfigError):
        parse_config("whatsapp: {api_version: '21'}")

def test_telegram_public_mode_and_the_old_allow_groups() -> None:
    assert parse_config("").telegram.public.mode == "private_link"        # complaints in groups go private
    cfg = parse_config("telegram: {public: {mode: ignore, message: 'DM us: {link}', link_minutes: 5}}")
    assert (cfg.telegram.public.mode, cfg.telegram.public.message, cfg.telegram.public.link_minutes) == (
        "ignore", "DM us: {link}", 5)
    assert parse_config("telegram: {allow_groups: true}").telegram.public.mode == "answer"
    with pytest.raises(ConfigError, match="allow_groups: true means public.mode: answer"):
        parse_config("telegram: {allow_groups: true, public: {mode: private_link}}")
    with pytest.raises(ConfigError, match="mode"):
        parse_config("telegram: {public: {mode: shout}}")
