"""The database group of the settings: where PostgreSQL is and how notifyq connects to it.

:class:`notifyq.settings.Settings` derives from :class:`DatabaseSettings`, so these fields
come first among its fields, as they always have (a start-up with several bad values
reports the first one in that order), and every variable keeps its name. Use
``notifyq.settings.Settings``; this class is not built on its own.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings

_HOST_PORT = re.compile(r"^(\[[^\[\]]*\]|[^\[\]:]*)(:(\d*))?$")


def _is_postgres_url(url: str) -> bool:
    """A postgresql:// URL the driver can parse: a bad port or bracket fails here, at
    start-up, instead of deep inside the driver. Several hosts (``h1:5432,h2:5433``) are
    allowed, as libpq and asyncpg take them."""
    try:
        parts = urlsplit(url)  # raises on an unbalanced [ or ]
    except ValueError:
        return False
    if parts.scheme not in ("postgres", "postgresql") or not url.startswith(f"{parts.scheme}://"):
        return False
    hosts = parts.netloc.rpartition("@")[2]
    for spec in hosts.split(",") if hosts else []:
        match = _HOST_PORT.match(spec)
        if match is None:
            return False
        port = match.group(3)
        if port and not 0 < int(port) <= 65535:
            return False
    return True


# Each field's description says what it accepts; it becomes the error message.
class DatabaseSettings(BaseSettings):
    """The server (a URL, or the embedded one's data directory and restarts) and the
    connections to it (the LISTEN connection's own URL, or none; the statement cache)."""

    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("DATABASE_URL"),
        description="a postgresql:// URL (unset: the embedded PostgreSQL)",
    )
    listen_database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("LISTEN_DATABASE_URL"),
        description="a postgresql:// URL for the LISTEN connection (unset: DATABASE_URL)",
    )
    read_database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("READ_DATABASE_URL"),
        description="a postgresql:// URL of a replica for the HTTP side's lists, stats and "
        "page (unset: DATABASE_URL)",
    )
    no_listen: bool = Field(
        False,
        validation_alias=AliasChoices("NO_LISTEN"),
        description="true or false (true: no LISTEN connection; FETCH_INTERVAL sweeps only)",
    )
    statement_cache_size: int = Field(
        100,
        ge=0,
        le=10_000,
        validation_alias=AliasChoices("DATABASE_STATEMENT_CACHE"),
        description="an integer from 0 to 10000 (0 behind a transaction-pooling PgBouncer)",
    )
    data_dir: Path = Field(
        Path(".notifyq"),
        validation_alias=AliasChoices("NOTIFYQ_DATA_DIR"),
        description="a directory for the embedded PostgreSQL's data",
    )
    embedded_restarts: int = Field(
        5,
        ge=0,
        le=1000,
        validation_alias=AliasChoices("EMBEDDED_RESTARTS"),
        description="an integer from 0 to 1000 (restarts of a stopped embedded PostgreSQL)",
    )

    @field_validator("database_url", "listen_database_url", "read_database_url", mode="before")
    @classmethod
    def _blank_url_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("database_url", "listen_database_url", "read_database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not _is_postgres_url(value):
            raise ValueError("not a postgresql:// URL")
        return value

    @property
    def listen_url(self) -> str | None:
        """The URL of the LISTEN connection: its own, else the database's (None: the
        embedded server, whose URL is known once it runs)."""
        return self.listen_database_url or self.database_url
