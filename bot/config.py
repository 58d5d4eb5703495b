"""config.yaml: parsed into frozen pydantic models, validated at start.

Secrets come from the environment with ``${VAR}`` or ``${VAR:-default}``
inside any string value; they are kept as ``SecretStr`` so they print as
``**********``. Every problem is a :class:`ConfigError` naming the key and
line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from bot.errors import ConfigError
from bot.names import LocalName, localized
from bot.yamlmarks import MarkedYamlError, Marks, describe_loc, load_marked

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    public_url: str | None = Field(None, description="URL customers reach the bot at, if behind a proxy")


class StorageConfig(_Model):
    url: str = "sqlite:///data/omnibot.sqlite3"
    synchronous: Literal["normal", "full"] = "normal"
    media_dir: str = Field("data/media", description="where files of versions before 11 are imported from "
                           "(uploads live in the database)")


class FlowsConfig(_Model):
    path: str = "flows/demo"


class WebchatConfig(_Model):
    enabled: bool = True
    secret: SecretStr | None = Field(None, description="signs session tokens; generated and stored if empty")
    title: str = "Support"
    max_frame_bytes: int = Field(16 * 1024, ge=256)
    max_upload_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    allowed_origins: list[str] = Field(default_factory=list,
                                       description="Origin allow-list for the socket; empty = same host only")
    messages_per_minute: int = Field(60, ge=1)


class TeamConfig(_Model):
    name: LocalName = Field(description="what customers are told ('passing you to <name>'): a string, or "
                            "by language code {en: ..., es: ...} (bot/names.py)")
    description: str = ""


class HandoffConfig(_Model):
    default_team: str = "support"
    teams: dict[str, TeamConfig] = Field(
        default_factory=lambda: {"support": TeamConfig(name="Customer Care")})

    @field_validator("teams")
    @classmethod
    def _teams_not_empty(cls, v: dict[str, TeamConfig]) -> dict[str, TeamConfig]:
        if not v:
            raise ValueError("at least one team is needed")
        return v

    def team_name(self, team: str, lang: str | None = None, langs: Any = None) -> str:
        """The team's name in ``lang`` (bot/names.py); the key itself for an unknown team."""
        t = self.teams.get(team)
        return localized(t.name, lang, langs) if t else team


class AgentDeskConfig(_Model):
    enabled: bool = True
    token: SecretStr = Field(SecretStr("demo-agent-token"),
                             description="first run only: while no agent account exists, anyone with it "
                             "logs in to /agent under any name; set OMNIBOT_AGENT_TOKEN")
    session_hours: float = Field(12, gt=0, le=24 * 30, description="how long an agent's login lasts")
    takeover_idle_minutes: float = Field(15, ge=0, le=24 * 60, description="an agent (not a supervisor) may "
                                         "take over a conversation another agent holds once that agent has not "
                                         "replied for this long")


class PublicConfig(_Model):
    """What the bot does in a public place it is part of (a Telegram group), see README "Telegram"."""

    mode: Literal["private_link", "ignore", "answer"] = Field(
        "private_link", description="private_link: a complaint (or a message to the bot) gets a short public "
        "apology with a one-time link to a private chat that carries it; ignore: say nothing in groups; "
        "answer: answer in the group like in a private chat (personal data is then written in public)")
    message: str | None = Field(None, min_length=1,
                                description="the public reply (never the customer's words); default: the flows' "
                                "message public_reply in the customer's language (README \"Languages\"); a "
                                "text here is used in every language: {link} is replaced by the one-time link, "
                                "which is appended when missing")
    link_minutes: int = Field(30, ge=1, le=7 * 24 * 60, description="how long the one-time link works")


class TelegramConfig(_Model):
    """Telegram as a customer channel (see README "Telegram")."""

    enabled: bool = False
    token: SecretStr = Field(SecretStr(""), description="from @BotFather")
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str = Field("", description="public https URL of /telegram/webhook to register; empty: don't register")
    secret_token: SecretStr = Field(SecretStr(""), description="checked on every webhook request")
    api_url: str = "https://api.telegram.org/bot"
    file_url: str = "https://api.telegram.org/file/bot"
    allow_groups: bool = Field(False, description="old spelling of public.mode: answer (kept for existing configs)")
    public: PublicConfig = Field(default_factory=PublicConfig, description="group chats: see PublicConfig")
    poll_timeout: int = Field(25, ge=0, le=50)
    start_payload: str = Field("intent:greet", description="what /start means to the flows")
    help_payload: str = Field("intent:help", description="what /help means to the flows")

    @model_validator(mode="after")
    def _complete(self) -> "TelegramConfig":
        if self.allow_groups:
            if "public" in self.model_fields_set and self.public.mode != "answer":
                raise ValueError("allow_groups: true means public.mode: answer; set only public.mode")
            object.__setattr__(self, "public", PublicConfig(mode="answer"))   # frozen model
        if not self.enabled:
            return self
        if not self.token.get_secret_value():
            raise ValueError("telegram is enabled but token is empty (set it from the environment, "
                             "e.g. ${TELEGRAM_BOT_TOKEN})")
        secret = self.secret_token.get_secret_value()
        if self.mode == "webhook" and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise ValueError("webhook mode needs secret_token: 1-256 characters of A-Z a-z 0-9 _ -")
        return self


class WhatsAppTemplate(_Model):
    """An approved message template, for messages outside WhatsApp's 24-hour window."""

    name: str = Field(min_length=1, description="the template's name as approved in WhatsApp Manager")
    language: str = Field("en", min_length=2, description="the approved translation's code (en, en_US, de)")
    text_parameter: bool = Field(True, description="pass the message text as the body's one parameter {{1}}")


class WhatsAppConfig(_Model):
    """WhatsApp (Cloud API) as a customer channel (see README "WhatsApp")."""

    enabled: bool = False
    access_token: SecretStr = Field(SecretStr(""), description="a system user's permanent token")
    phone_number_id: str = Field("", description="the business number's id (not the number itself)")
    app_secret: SecretStr = Field(SecretStr(""), description="checks X-Hub-Signature-256 on every webhook POST")
    verify_token: SecretStr = Field(SecretStr(""), description="any string; the same as in the Meta app's "
                                    "webhook settings")
    api_url: str = Field("https://graph.facebook.com", description="Graph API host (tests point it at a fake)")
    api_version: str = Field("v21.0", pattern=r"^v\d+\.\d+$")
    templates: dict[str, WhatsAppTemplate] = Field(
        default_factory=dict, description="by message role (bot, agent, system), else 'default': used outside "
        "the 24-hour window; none: such messages are not sent")

    @model_validator(mode="after")
    def _complete(self) -> "WhatsAppConfig":
        if not self.enabled:
            return self
        missing = [k for k in ("access_token", "phone_number_id", "app_secret", "verify_token")
                   if not (getattr(self, k) if k == "phone_number_id" else getattr(self, k).get_secret_value())]
        if missing:
            raise ValueError(f"whatsapp is enabled but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                             "empty (set them from the environment, e.g. ${WHATSAPP_ACCESS_TOKEN})")
        unknown = set(self.templates) - {"default", "bot", "agent", "system"}
        if unknown:
            raise ValueError(f"whatsapp.templates: unknown key {sorted(unknown)[0]!r} "
                             "(use default, bot, agent or system)")
        return self

    def template_for(self, role: str) -> WhatsAppTemplate | None:
        return self.templates.get(role) or self.templates.get("default")

_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")


class ImapConfig(_Model):
    """The mailbox customers write to."""

    host: str = ""
    port: int = Field(993, ge=1, le=65535)
    tls: Literal["ssl", "starttls", "none"] = Field("ssl", description="ssl: TLS from the start (993); "
                                                    "starttls: upgrade a plain connection (143); none: tests only")
    user: str = ""
    password: SecretStr = SecretStr("")
    folder: str = "INBOX"
    poll_interval: float = Field(60, gt=0, description="seconds between looks when the server has no IDLE, "
                                 "and between IDLE renewals (at most 29 minutes)")
    timeout: float = Field(30, gt=0, description="seconds a connect or command may take")

    @field_validator("poll_interval", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)


class SmtpConfig(_Model):
    """Where replies are sent from."""

    host: str = ""
    port: int = Field(465, ge=1, le=65535)
    security: Literal["ssl", "starttls", "none"] = Field("ssl", description="ssl: TLS from the start (465); "
                                                         "starttls: upgrade (587); none: tests only")
    user: str = Field("", description="empty: send without logging in")
    password: SecretStr = SecretStr("")
    from_address: str = ""
    from_name: str = "Support"
    timeout: float = Field(30, gt=0, description="seconds a connect or command may take")


class EmailConfig(_Model):
    """E-mail as a customer channel (see README "E-mail")."""

    enabled: bool = False
    imap: ImapConfig = ImapConfig()
    smtp: SmtpConfig = SmtpConfig()

    @model_validator(mode="after")
    def _complete(self) -> "EmailConfig":
        if not self.enabled:
            return self
        missing = [k for k, v in (("imap.host", self.imap.host), ("imap.user", self.imap.user),
                                  ("imap.password", self.imap.password.get_secret_value()),
                                  ("smtp.host", self.smtp.host), ("smtp.from_address", self.smtp.from_address))
                   if not v]
        if missing:
            raise ValueError(f"email is enabled but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                             "empty (set passwords from the environment, e.g. ${EMAIL_IMAP_PASSWORD})")
        if not _ADDRESS.match(self.smtp.from_address):
            raise ValueError(f"smtp.from_address {self.smtp.from_address!r} is not an e-mail address")
        if self.smtp.user and not self.smtp.password.get_secret_value():
            raise ValueError("smtp.user is set but smtp.password is empty")
        if self.imap.poll_interval > 29 * 60:
            raise ValueError("imap.poll_interval must be at most 29 minutes (RFC 2177: IDLE is renewed within 29)")
        return self


class SlackConfig(_Model):
    """Slack as the agent desk (see README "Slack agent desk")."""

    enabled: bool = False
    mode: Literal["http", "socket"] = "http"
    bot_token: SecretStr = SecretStr("")
    signing_secret: SecretStr = SecretStr("")
    app_token: SecretStr = Field(SecretStr(""), description="xapp- token, for socket mode")
    api_url: str = Field("https://slack.com/api/", description="Web API base URL (tests point it at a fake)")
    default_channel: str = Field("", description="channel id for teams without their own")
    team_channels: dict[str, str] = Field(default_factory=dict, description="team -> channel id")
    agents: list[str] = Field(default_factory=list, description="Slack user ids allowed to act")
    members: dict[str, str] = Field(default_factory=dict, description="Slack user id -> agent account e-mail: "
                                    "that member acts on Slack as the account (its name, role and teams)")
    agent_usergroup: str = Field("", description="or a user group id whose members may act")
    manager_channel: str = Field("", description="channel id where breached complaint SLAs escalate")
    note_prefix: str = Field("//", min_length=1, description="thread messages starting with it stay internal")
    unclaimed_alert_after: float = Field(600, gt=0, description="seconds before an unclaimed handoff pings the team")
    transcript_lines: int = Field(8, ge=1, le=40)
    sync_interval: float = Field(30, gt=0, description="seconds between sweeps for anything not yet in Slack")
    posts_per_second: float = Field(1, gt=0, description="chat.postMessage calls per second per channel")
    updates_per_second: float = Field(0.8, gt=0, description="card updates (chat.update) per second, all channels")

    @model_validator(mode="after")
    def _complete(self) -> "SlackConfig":
        if not self.enabled:
            return self
        missing = [k for k in ("bot_token", "signing_secret") if not getattr(self, k).get_secret_value()]
        if self.mode == "socket" and not self.app_token.get_secret_value():
            missing.append("app_token")
        if missing:
            raise ValueError(f"slack is enabled but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                             "empty (set them from the environment, e.g. ${SLACK_BOT_TOKEN})")
        if not self.default_channel and not self.team_channels:
            raise ValueError("slack is enabled but no channel is set: give default_channel or team_channels")
        if not self.agents and not self.agent_usergroup and not self.members:
            raise ValueError("slack is enabled but nobody may act: give agents (user ids), agent_usergroup "
                             "or members (user id -> agent e-mail)")
        return self

    def channel_for(self, team: str) -> str:
        return self.team_channels.get(team) or self.default_channel


class DeliveryConfig(_Model):
    max_attempts: int = Field(8, ge=1)
    base_delay: float = Field(0.5, gt=0)
    max_delay: float = Field(300.0, gt=0)
    concurrency: int = Field(32, ge=1)


class NluConfig(_Model):
    matcher: Literal["learned", "lexical"] = Field(
        "learned", description="learned: sentence model + classifier; lexical: word overlap only (no model)")
    cache_dir: str = Field("data/nlu-cache", description="trained models, reused while the flows don't change, "
                           "and the embeddings of their examples (a reload encodes only new ones)")
    model: Literal["dynamic", "shipped"] = Field(
        "dynamic", description="dynamic: the model re-quantised for this CPU once (faster, less RAM); "
        "shipped: the package's graph as is")
    threads: int = Field(2, ge=1, le=64, description="model threads (they sleep when idle)")
    max_batch: int = Field(32, ge=1, le=512, description="most messages one model call takes under load")


class EndpointConfig(_Model):
    """One of the business's HTTP APIs that flows call by name (``call: NAME``; README "Calling your systems")."""

    base_url: str = Field(min_length=1, description="http(s)://host/prefix the step's path is appended to; a "
                          "path alone (/demo/api) means this omnibot itself")
    auth_header: SecretStr = Field(SecretStr(""), description="Authorization header value, e.g. "
                                   "\"Bearer ${SHOP_API_TOKEN}\" (never logged); empty: none")
    headers: dict[str, str] = Field(default_factory=dict, description="more headers sent on every call")
    timeout: float = Field(5.0, gt=0, le=120, description="seconds per attempt")
    retries: int = Field(1, ge=0, le=5, description="attempts after the first, on timeouts, connection "
                         "errors and 5xx answers")
    retry_delay: float = Field(0.3, ge=0, le=30, description="seconds before a retry (doubled each time)")

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^(https?://[^/\s]+|/)", v):
            raise ValueError("base_url is http(s)://host[/prefix], or a path (/demo/api) on this omnibot")
        return v.rstrip("/")


class DemoApiConfig(_Model):
    enabled: bool = Field(True, description="serve the demo shop's orders API at /demo/api (loopback callers only)")
    token: SecretStr = Field(SecretStr("demo-shop-token"), description="the bearer token it expects")


def _demo_endpoints() -> dict[str, EndpointConfig]:
    return {"shop": EndpointConfig(base_url="/demo/api", auth_header=SecretStr("Bearer demo-shop-token"))}


class IntegrationsConfig(_Model):
    """The business's systems flows call (``call:`` steps; README "Calling your systems")."""

    endpoints: dict[str, EndpointConfig] = Field(default_factory=_demo_endpoints,
                                                 description="by the name flows call them; default: the demo shop")
    demo_api: DemoApiConfig = Field(default_factory=DemoApiConfig)

    @field_validator("endpoints")
    @classmethod
    def _names(cls, v: dict[str, EndpointConfig]) -> dict[str, EndpointConfig]:
        for name in v:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", name):
                raise ValueError(f"endpoint name {name!r}: use letters, digits, _ and -")
        return v


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)\s*$", re.I)
_UNIT = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(v: Any) -> float:
    """Seconds from "90s", "30m", "2h", "3d" (or a number of seconds)."""
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0:
        return float(v)
    m = _DURATION.match(str(v)) if isinstance(v, str) else None
    if not m:
        raise ValueError(f"{v!r} is not a duration like 30m, 2h or 3d")
    return float(m.group(1)) * _UNIT[m.group(2).lower()]


SEVERITIES = ("low", "normal", "high", "critical")
Severity = Literal["low", "normal", "high", "critical"]


class SlaConfig(_Model):
    """Time limits of a complaint, from the moment it is filed."""

    acknowledge: float = Field(2 * 3600, description="a person has taken the complaint's handoff")
    resolve: float = Field(24 * 3600, description="resolved (told to the customer as the deadline)")
    warn_at: float = Field(0.8, gt=0, lt=1, description="share of a time limit at which the team is warned")
    follow_up: float = Field(3 * 86400, description="after resolving, ask whether it stayed solved")
    review: float = Field(4 * 3600, description="a supervisor approves or returns a proposed resolution "
                          "(complaints.review), from the proposal")
    communicate: float = Field(2 * 3600, description="the customer is told an approved resolution, from "
                               "the approval")

    @field_validator("acknowledge", "resolve", "follow_up", "review", "communicate", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class BusinessHours(_Model):
    """When complaint clocks run; outside these hours they stand still."""

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"])
    start: str = "09:00"
    end: str = "17:00"
    timezone: str = "UTC"

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not _HHMM.match(v):
            raise ValueError(f"{v!r} is not a time like 09:00")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (like Europe/Berlin)") from None
        return v

    @model_validator(mode="after")
    def _order(self) -> "BusinessHours":
        if self.start >= self.end:
            raise ValueError(f"start {self.start} must be before end {self.end}")
        if not self.days:
            raise ValueError("days must not be empty")
        return self


class RouteMatch(_Model):
    """All given conditions must hold (an empty match always holds)."""

    category: list[str] = Field(default_factory=list, description="any of these categories")
    keywords: list[str] = Field(default_factory=list, description="any of these words in what the customer wrote")
    tier: list[str] = Field(default_factory=list, description="customer attribute 'tier' is one of these")
    slots: dict[str, str] = Field(default_factory=dict, description="captured fields equal to these values")

    @field_validator("category", "keywords", "tier", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class RouteRule(_Model):
    when: RouteMatch = RouteMatch()
    department: str | None = Field(None, description="the first matching rule with a department decides")
    severity: Severity | None = Field(None, description="at least this severity")
    priority: int = Field(0, ge=-10, le=10, description="added to the ticket's priority")


class DepartmentConfig(_Model):
    name: LocalName = Field(description="a string, or by language code {en: ..., es: ...} (bot/names.py)")
    team: str | None = Field(None, description="the handoff team (handoff.teams) that works this department's "
                             "tickets; empty: the team the flow's handoff step names")


class ReviewConfig(_Model):
    """Which complaints a supervisor reviews before the customer is told (handoff.review)."""

    enabled: bool = Field(True, description="resolving a complaint at or above min_severity proposes the "
                          "result to a supervisor of its team instead")
    min_severity: Severity = Field("high", description="the lowest severity that needs review")


class AuthorityConfig(_Model):
    """Up to what amount each role grants a compensation at once (handoff.compensation); above it,
    a supervisor of the ticket's team (or an admin) approves or rejects. Empty (null): no limit."""

    currency: str = Field("EUR", min_length=1, max_length=8, description="the currency of the amounts")
    agent: float | None = Field(50, ge=0)
    supervisor: float | None = Field(500, ge=0)
    admin: float | None = Field(None, ge=0)
    kinds: list[str] = Field(default_factory=lambda: ["refund", "replacement", "discount"],
                             description="what may be granted")

    def limit(self, role: str) -> float | None:
        """The role's limit (None: unlimited); an unknown role may grant nothing at once."""
        return getattr(self, role) if role in ("agent", "supervisor", "admin") else 0.0


class ComplaintsConfig(_Model):
    """Tickets: routing rules, severities, SLA targets."""

    default_department: str = "customer_care"
    departments: dict[str, DepartmentConfig] = Field(
        default_factory=lambda: {"customer_care": DepartmentConfig(name="Customer Care")})
    rules: list[RouteRule] = Field(default_factory=list)
    repeat_window: float = Field(30 * 86400, description="an earlier ticket of the same category within "
                                 "this window makes a repeat complaint (one severity up)")
    sla: SlaConfig = SlaConfig()
    business_hours: BusinessHours | None = Field(None, description="clocks run only in these hours; "
                                                 "empty: around the clock")
    check_every: float = Field(60, description="how often due follow-ups are looked for")
    review: ReviewConfig = ReviewConfig()
    authority: AuthorityConfig = AuthorityConfig()

    @field_validator("repeat_window", "check_every", mode="before")
    @classmethod
    def _window(cls, v: Any) -> float:
        return parse_duration(v)

    @model_validator(mode="after")
    def _known_departments(self) -> "ComplaintsConfig":
        known = set(self.departments)
        if self.default_department not in known:
            raise ValueError(f"default_department {self.default_department!r} is not in departments "
                             f"({', '.join(sorted(known))})")
        for i, rule in enumerate(self.rules, 1):
            if rule.department is not None and rule.department not in known:
                raise ValueError(f"rule {i}: department {rule.department!r} is not in departments "
                                 f"({', '.join(sorted(known))})")
        return self


class ReportConfig(_Model):
    """How ``omnibot report`` and /admin/metrics count bot containment (README "Metrics")."""

    containment_window_days: float = Field(3, gt=0, description="a customer who writes again within this many "
                                           "days after a bot-only visit came back: not contained")
    visit_gap_minutes: float = Field(30, gt=0, description="a silence this long ends a visit")


class LoggingConfig(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"
    customer_text: bool = False      # let what customers write (text, names, e-mails, slots) into log lines


_KIND_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class PrivacyPattern(_Model):
    """Personal data of a format an admin names (a national id), found like the built-in kinds."""

    name: str = Field(description="the kind's name in privacy.policy and in masks (lower case, like national_id)")
    pattern: str = Field(min_length=1, description="a Python regular expression for the whole value")
    mask: str = Field("", description="what a masked value shows; empty: [name]")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _KIND_NAME.match(v):
            raise ValueError(f"{v!r}: use lower-case letters, digits and _ (like national_id)")
        if v in ("card", "cvc", "iban", "email", "phone"):
            raise ValueError(f"{v!r} is a built-in kind; pick another name")
        return v

    @field_validator("pattern")
    @classmethod
    def _regex(cls, v: str) -> str:
        try:
            rx = re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        if rx.match(""):
            raise ValueError("the pattern matches empty text; it must match the value itself")
        return v


def _keep_for(v: Any) -> float | None:
    if v is None or v == 0 or (isinstance(v, str) and v.strip().lower() in ("never", "forever", "")):
        return None
    return parse_duration(v)


class RetentionConfig(_Model):
    """How long personal data is kept (README "Privacy"); "never" (or 0) keeps it forever.
    Ages count from a conversation's last activity (closed conversations only) and an audit entry's time."""

    message_texts: float | None = Field(180 * 86400, description="what customers and agents wrote in closed "
                                        "conversations is replaced by [removed]")
    attachments: float | None = Field(90 * 86400, description="files of closed conversations are deleted")
    closed_conversations: float | None = Field(2 * 365 * 86400, description="closed conversations are deleted "
                                              "whole (messages, handoffs, notes); tickets stay, anonymous, "
                                              "for the figures; a customer with nothing left is deleted")
    audit: float | None = Field(3 * 365 * 86400, description="audit entries older than this are deleted")
    check_every: float = Field(3600, gt=0, description="how often one instance of the cluster looks")

    @field_validator("message_texts", "attachments", "closed_conversations", "audit", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float | None:
        return _keep_for(v)

    @field_validator("check_every", mode="before")
    @classmethod
    def _every(cls, v: Any) -> float:
        return parse_duration(v)


Place = Literal["stored", "logs", "slack", "desk"]


class PrivacyConfig(_Model):
    """Personal data in what customers write (README "Privacy"): detection, where it is masked, retention."""

    phone_regions: list[str] = Field(default_factory=lambda: ["GB", "DE", "FR", "US"],
                                     description="countries whose national phone formats are recognised "
                                     "(international +NN numbers always are)")
    patterns: list[PrivacyPattern] = Field(default_factory=list, description="more kinds (a national id ...)")
    policy: dict[str, dict[Place, Literal["clear", "mask", "owner"]]] = Field(
        default_factory=dict, description="per kind (card, cvc, iban, email, phone, or a pattern's name) and "
        "place (stored, logs, slack, desk): clear, mask, or for the desk owner (clear to the agent who owns "
        "the conversation); what is not named keeps its default")
    notice: str | dict[str, str] | None = Field(
        None, description="told to a customer (once per conversation) whose message had card data; default: the "
        "flows' message card_removed in the conversation's language (built in for en, es, id; "
        "settings.messages.card_removed overrides it); a string here is used in every language")
    retention: RetentionConfig = RetentionConfig()

    @field_validator("phone_regions")
    @classmethod
    def _regions(cls, v: list[str]) -> list[str]:
        import phonenumbers

        bad = [r for r in v if r.upper() not in phonenumbers.SUPPORTED_REGIONS]
        if bad:
            raise ValueError(f"unknown region {bad[0]!r} (two-letter country codes like DE, GB, US)")
        return [r.upper() for r in v]

    @field_validator("notice")
    @classmethod
    def _notice(cls, v: Any) -> Any:
        texts = v.items() if isinstance(v, dict) else [] if v is None else [(None, v)]
        for code, text in texts:
            if code is not None and not re.fullmatch(r"[a-z]{2}", code):
                raise ValueError(f"{code!r} is not a two-letter language code (en, es, id)")
            if not text.strip():
                raise ValueError("the notice is empty" + (f" in {code!r}" if code else ""))
        return v

    @model_validator(mode="after")
    def _known_kinds(self) -> "PrivacyConfig":
        known = ["card", "cvc", "iban", "email", "phone", *(p.name for p in self.patterns)]
        for kind, places in self.policy.items():
            if kind not in known:
                raise ValueError(f"policy: unknown kind {kind!r} (one of {', '.join(known)})")
            for place, rule in places.items():
                if rule == "owner" and place != "desk":
                    raise ValueError(f"policy.{kind}.{place}: owner is for the desk only (use clear or mask)")
        names = [p.name for p in self.patterns]
        if len(set(names)) != len(names):
            raise ValueError("patterns: two patterns have the same name")
        return self


class Config(_Model):
    """The whole configuration. Paths are resolved against ``base_dir``."""

    server: ServerConfig = ServerConfig()
    storage: StorageConfig = StorageConfig()
    flows: FlowsConfig = FlowsConfig()
    webchat: WebchatConfig = WebchatConfig()
    handoff: HandoffConfig = HandoffConfig()
    agent_desk: AgentDeskConfig = AgentDeskConfig()
    slack: SlackConfig = SlackConfig()
    telegram: TelegramConfig = TelegramConfig()
    whatsapp: WhatsAppConfig = WhatsAppConfig()
    email: EmailConfig = EmailConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    nlu: NluConfig = NluConfig()
    complaints: ComplaintsConfig = ComplaintsConfig()
    report: ReportConfig = ReportConfig()
    logging: LoggingConfig = LoggingConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    integrations: IntegrationsConfig = IntegrationsConfig()
    base_dir: str = Field(".", exclude=True)

    @model_validator(mode="after")
    def _department_teams(self) -> "Config":
        for key, dep in self.complaints.departments.items():
            if dep.team is not None and dep.team not in self.handoff.teams:
                raise ValueError(f"complaints.departments.{key}.team {dep.team!r} is not in handoff.teams "
                                 f"({', '.join(sorted(self.handoff.teams))})")
        return self

    def resolve(self, p: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        path = Path(p)
        return path if path.is_absolute() else Path(self.base_dir) / path

    def storage_url(self) -> str:
        url = self.storage.url
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            rest = url[len("sqlite:///"):]
            if not rest.startswith("/"):
                return "sqlite:///" + str(self.resolve(rest))
        return url

    def secrets(self) -> list[str]:
        """Every secret value, for the log redaction filter."""
        out = [self.agent_desk.token.get_secret_value(), self.slack.bot_token.get_secret_value(),
               self.slack.signing_secret.get_secret_value(), self.slack.app_token.get_secret_value(),
               self.telegram.token.get_secret_value(), self.telegram.secret_token.get_secret_value(),
               self.whatsapp.access_token.get_secret_value(), self.whatsapp.app_secret.get_secret_value(),
               self.whatsapp.verify_token.get_secret_value(),
               self.email.imap.password.get_secret_value(), self.email.smtp.password.get_secret_value()]
        if self.webchat.secret:
            out.append(self.webchat.secret.get_secret_value())
        if self.integrations.demo_api.enabled:
            out.append(self.integrations.demo_api.token.get_secret_value())
        for ep in self.integrations.endpoints.values():
            header = ep.auth_header.get_secret_value()
            out += [header, header.split(" ", 1)[-1]]      # "Bearer TOKEN" and TOKEN alone
        return list(dict.fromkeys(s for s in out if s))


def _expand_env(data: Any, path: tuple[Any, ...], marks: Marks, file: str,
                env: dict[str, str]) -> Any:
    if isinstance(data, dict):
        return {k: _expand_env(v, path + (k,), marks, file, env) for k, v in data.items()}
    if isinstance(data, list):
        return [_expand_env(v, path + (i,), marks, file, env) for i, v in enumerate(data)]
    if isinstance(data, str) and "${" in data:
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env and env[name] != "":
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"environment variable {name} is not set (write ${{{name}:-default}} "
                              "to give a default)", path=file, key=describe_loc(path),
                              line=marks.line_for(path))
        return _ENV.sub(sub, data)
    return data


def parse_config(text: str, *, path: str = "config.yaml", env: dict[str, str] | None = None) -> Config:
    """Parse config text; raise :class:`ConfigError` naming the bad key and line."""
    try:
        data, marks = load_marked(text)
    except MarkedYamlError as exc:
        raise ConfigError(exc.reason, path=path, line=exc.line) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of sections (server:, storage:, ...)", path=path,
                          line=1)
    data = _expand_env(data, (), marks, path, dict(os.environ) if env is None else env)
    base_dir = str(Path(path).resolve().parent)
    try:
        return Config.model_validate({**data, "base_dir": base_dir})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        reason = err["msg"]
        if err["type"] == "extra_forbidden":
            reason = "unknown key (check the spelling; see the config reference in README.md)"
        more = len(exc.errors()) - 1
        if more:
            reason += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise ConfigError(reason, path=path, key=describe_loc(loc), line=marks.line_for(loc)) from None


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load config.yaml (or the given file); a missing default file means all defaults."""
    if path is None:
        p = Path("config.yaml")
        if not p.exists():
            return Config(base_dir=str(Path.cwd()))
    else:
        p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", path=str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", path=str(p)) from None
    return parse_config(text, path=str(p))
