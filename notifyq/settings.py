"""Settings: one frozen object, built once at start-up and passed down.

Sources, strongest first: command-line flags, environment variables, a ``.env`` file in the
working directory, defaults. A bad value raises :class:`~notifyq.errors.ConfigError` whose
one-line message names the variable and what it accepts.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from notifyq.durations import DURATION_HELP, parse_duration
from notifyq.errors import ConfigError
from notifyq.settings_database import DatabaseSettings


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


# Each field's description says what it accepts; it becomes the error message.
class Settings(DatabaseSettings):
    """Every setting of a notifyq process, as one frozen value: built once at start-up
    (:func:`load`) and passed down, never read from the environment again.

    A field's name carries its unit (``lease_s``); its environment variable is the first
    alias (:func:`env_name`); its description says what it accepts and is the error message
    when a value is refused. The database group (URLs, the embedded server, the statement
    cache) is declared in :mod:`notifyq.settings_database` and comes first; the fields here
    follow it in groups: the process and its claims, retries and retention, the demo kinds,
    the HTTP side, logging. Field order is the order in which a start-up with several bad
    values reports them (the first one wins). A new setting is one field in its group (its
    variable, bounds and description), a row in the README's settings table, and a test in
    tests/unit/test_settings.py.
    """

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        case_sensitive=False,
    )

    app: str | None = Field(
        None,
        validation_alias=_env("NOTIFYQ_APP"),
        description="module:attribute naming a notifyq.App",
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
    )
    worker_count: int = Field(
        5,
        ge=1,
        le=10_000,
        validation_alias=_env("WORKER_COUNT"),
        description="an integer from 1 to 10000",
    )
    processes: int = Field(
        1,
        ge=1,
        le=64,
        validation_alias=_env("PROCESSES"),
        description="an integer from 1 to 64",
    )
    fetch_limit: int = Field(
        500,
        ge=1,
        le=10_000,
        validation_alias=_env("FETCH_LIMIT"),
        description="an integer from 1 to 10000",
    )
    # None: auto (the buffer follows the handlers' times; engine/ledger.py AutoPrefetch).
    prefetch: int | None = Field(
        None,
        ge=0,
        le=10_000,
        validation_alias=_env("PREFETCH"),
        description="auto, or an integer from 0 to 10000",
    )
    fetch_interval_s: float = Field(
        5.0,
        gt=0,
        validation_alias=_env("FETCH_INTERVAL"),
        description=f"{DURATION_HELP}, above 0",
    )
    claim_linger_s: float = Field(
        0.0,
        ge=0,
        le=1.0,
        validation_alias=_env("CLAIM_LINGER"),
        description=f"{DURATION_HELP}, at most 1 s",
    )
    queues: Annotated[tuple[str, ...], NoDecode] = Field(
        ("default",),
        validation_alias=_env("QUEUES"),
        description="a comma-separated list of queue names",
    )
    shutdown_timeout_s: float = Field(
        30.0,
        ge=0,
        validation_alias=_env("SHUTDOWN_TIMEOUT"),
        description=DURATION_HELP,
    )
    task_timeout_s: float | None = Field(
        None,
        gt=0,
        validation_alias=_env("TASK_TIMEOUT"),
        description=f"{DURATION_HELP}, above 0 (unset: no limit)",
    )
    lease_s: float = Field(
        30.0,
        ge=1,
        validation_alias=_env("LEASE"),
        description=f"{DURATION_HELP}, at least 1s",
    )
    retry_base_s: float = Field(
        1.0,
        ge=0,
        validation_alias=_env("RETRY_BASE"),
        description=DURATION_HELP,
    )
    retry_max_s: float = Field(
        3600.0,
        ge=0,
        validation_alias=_env("RETRY_MAX"),
        description=DURATION_HELP,
    )
    retention_s: float | None = Field(
        None,
        gt=0,
        validation_alias=_env("RETENTION"),
        description=f"{DURATION_HELP}, above 0 (unset: keep ended tasks)",
    )
    pool_size: int = Field(
        10,
        ge=2,
        le=1000,
        validation_alias=_env("POOL_SIZE"),
        description="an integer from 2 to 1000",
    )
    demo_min_delay_s: float = Field(
        1.0,
        ge=0,
        validation_alias=_env("DEMO_MIN_DELAY"),
        description=DURATION_HELP,
    )
    demo_max_delay_s: float = Field(
        4.0,
        ge=0,
        validation_alias=_env("DEMO_MAX_DELAY"),
        description=DURATION_HELP,
    )
    demo_failure_rate: float = Field(
        0.1,
        ge=0,
        le=1,
        validation_alias=_env("DEMO_FAILURE_RATE"),
        description="a number from 0 to 1",
    )
    http_host: str = Field(
        "127.0.0.1",
        min_length=1,
        max_length=255,
        pattern=r"^[A-Za-z0-9.:\[\]_-]+$",
        validation_alias=_env("HTTP_HOST"),
        description="an IP address or host name to serve HTTP on",
    )
    http_port: int = Field(
        8080,
        ge=0,
        le=65535,
        validation_alias=_env("HTTP_PORT"),
        description="a TCP port from 0 to 65535 (0: any free port)",
    )
    api_token: str | None = Field(
        None,
        min_length=16,
        max_length=1024,
        pattern=r"^[\x21-\x7e]+$",
        validation_alias=_env("API_TOKEN"),
        description="at least 16 printable ASCII characters without spaces",
    )
    api_tokens: str | None = Field(
        None,
        max_length=100_000,
        validation_alias=_env("API_TOKENS"),
        description="NAME=TOKEN pairs, comma-separated: names of 1 to 64 letters, digits, "
        "_ . - (not api, cli or sql), tokens as API_TOKEN's, without commas",
    )
    max_result_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        le=255 * 1024 * 1024,
        validation_alias=_env("MAX_RESULT_BYTES"),
        description="a size in bytes from 1024 to 267386880",
    )
    # Twice notifyq.spec.MAX_PAYLOAD_BYTES: room for a payload at that limit, escaped
    # non-ASCII text and the other fields; a payload over it is a 422 from the task check.
    http_body_limit: int = Field(
        2 * 1024 * 1024,
        ge=1024,
        le=1024**3,
        validation_alias=_env("HTTP_BODY_LIMIT"),
        description="a size in bytes from 1024 to 1073741824",
    )
    http_max_streams: int = Field(
        100,
        ge=1,
        le=100_000,
        validation_alias=_env("HTTP_MAX_STREAMS"),
        description="an integer from 1 to 100000 (open /events streams; 503 above it)",
    )
    http_max_requests: int = Field(
        64,
        ge=1,
        le=100_000,
        validation_alias=_env("HTTP_MAX_REQUESTS"),
        description="an integer from 1 to 100000 (requests handled at once; 503 above it)",
    )
    http_pool_size: int = Field(
        4,
        ge=1,
        le=1000,
        validation_alias=_env("HTTP_POOL_SIZE"),
        description="an integer from 1 to 1000",
    )
    insecure_http: bool = Field(
        False,
        validation_alias=_env("INSECURE_HTTP"),
        description="true or false",
    )
    http_read_only: bool = Field(
        False,
        validation_alias=_env("HTTP_READ_ONLY"),
        description="true or false (every POST is a 403)",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info",
        validation_alias=_env("LOG_LEVEL"),
        description="one of debug, info, warning, error",
    )
    log_format: Literal["console", "json"] = Field(
        "console",
        validation_alias=_env("LOG_FORMAT"),
        description="console or json",
    )

    @field_validator(
        "fetch_interval_s",
        "claim_linger_s",
        "shutdown_timeout_s",
        "task_timeout_s",
        "lease_s",
        "retry_base_s",
        "retry_max_s",
        "retention_s",
        "demo_min_delay_s",
        "demo_max_delay_s",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: object) -> object:
        if value is None or value == "":
            return None
        return parse_duration(value)

    @field_validator("prefetch", mode="before")
    @classmethod
    def _auto_is_unset(cls, value: object) -> object:
        # Blank is unset too (a child process's environment writes None so).
        return None if isinstance(value, str) and value.strip().lower() in ("auto", "") else value

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("app", "api_token", "api_tokens", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("api_tokens")
    @classmethod
    def _named_tokens(cls, value: str | None) -> str | None:
        if value is not None:
            parse_named_tokens(value)
        return value

    def tokens(self) -> dict[str, str]:
        """Every token the HTTP side accepts, by the actor its actions name: API_TOKEN's
        is ``api``; API_TOKENS' are their own names."""
        named = parse_named_tokens(self.api_tokens) if self.api_tokens else {}
        return ({"api": self.api_token} if self.api_token else {}) | named

    @field_validator("queues", mode="before")
    @classmethod
    def _split_queues(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            names = tuple(str(v).strip() for v in value)
            if not names or any(not n or len(n) > 128 for n in names):
                raise ValueError("empty queue name")
            return tuple(dict.fromkeys(names))  # drop duplicates, keep order
        return value


_TOKEN_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_TOKEN = re.compile(r"^[\x21-\x2b\x2d-\x7e]{16,1024}$")  # API_TOKEN's, without commas


def parse_named_tokens(text: str) -> dict[str, str]:
    """API_TOKENS: ``alice=TOKEN,bob=TOKEN`` -> {name: token}; ValueError when malformed."""
    found: dict[str, str] = {}
    for pair in text.split(","):
        name, sep, token = pair.strip().partition("=")
        if not sep or not _TOKEN_NAME.match(name) or name in ("api", "cli", "sql"):
            raise ValueError("a bad name")
        if not _TOKEN.match(token) or name in found or token in found.values():
            raise ValueError("a bad or repeated token")
        found[name] = token
    return found


def env_name(field: str) -> str:
    alias = Settings.model_fields[field].validation_alias
    assert isinstance(alias, AliasChoices)
    return str(alias.choices[0])


# Environment name -> field name, to explain errors whichever way the value came in.
_FIELD_BY_ENV = {env_name(name): name for name in Settings.model_fields}
ENV_NAMES = frozenset(_FIELD_BY_ENV)  # every environment variable notifyq reads


class _NoEnvironment(Settings):
    """Settings from the arguments and the defaults alone (``load(environment=False)``)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def load(**overrides: Any) -> Settings:
    """Build the settings; ``overrides`` (from CLI flags) win. ``None`` means "not given"."""
    return _build(Settings, overrides)


def load_without_environment(**overrides: Any) -> Settings:
    """:func:`load` reading neither the environment nor ``.env`` (the pytest plugin: a test
    gets the documented defaults and the settings it passes)."""
    return _build(_NoEnvironment, overrides)


def _build(cls: type[Settings], overrides: dict[str, Any]) -> Settings:
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = cls(**given)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = str(err["loc"][0]) if err["loc"] else ""
        field = _FIELD_BY_ENV.get(where.upper(), where)
        if field not in Settings.model_fields:
            raise ConfigError(f"invalid setting {where}: {err['msg']}") from None
        name = env_name(field)
        # Never echo a URL or a token: they hold secrets.
        shown = "" if name.endswith(("URL", "TOKEN", "TOKENS")) else f"={err.get('input')!r}"
        accepts = Settings.model_fields[field].description
        raise ConfigError(f"invalid {name}{shown}: expected {accepts}") from None
    if settings.demo_min_delay_s > settings.demo_max_delay_s:
        raise ConfigError(
            f"invalid DEMO_MIN_DELAY={settings.demo_min_delay_s}: "
            f"expected at most DEMO_MAX_DELAY ({settings.demo_max_delay_s})"
        )
    return settings
