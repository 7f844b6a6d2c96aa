"""Structured logging with structlog: one event per major action, as JSON or console text.

Logs go to stderr so that commands such as ``notifyq dsn`` keep stdout for their output.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Protocol, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure(level: str = "info", fmt: str = "console") -> None:
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    # The driver logs through the standard library (asyncpg's pool: "Failed to restore the
    # pool connection floor; retrying" with a traceback, once per retry while the server
    # refuses connections). Render those as one structured line each, without traceback.
    driver = logging.getLogger("asyncpg")
    driver.handlers[:] = [_DriverHandler()]
    driver.propagate = False
    driver.setLevel(max(_LEVELS[level], logging.WARNING))


class _DriverHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        fields: dict[str, object] = {"message": record.getMessage()}
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            fields["error"] = f"{type(exc).__name__}: {exc}"
        log = get(record.name)
        if record.levelno >= logging.ERROR:
            log.error("driver.error", **fields)
        else:
            log.warning("driver.warning", **fields)


class Logger(Protocol):
    """What notifyq calls on a logger: an event name, then the event's fields by keyword.

    The object behind it is structlog's (filtered by level as ``configure`` set up); this
    type only lets mypy check every call.
    """

    def debug(self, event: str, /, **fields: object) -> None: ...
    def info(self, event: str, /, **fields: object) -> None: ...
    def warning(self, event: str, /, **fields: object) -> None: ...
    def error(self, event: str, /, **fields: object) -> None: ...
    def exception(self, event: str, /, **fields: object) -> None: ...


def get(name: str) -> Logger:
    return cast(Logger, structlog.get_logger(name))


def redact(url: str | None) -> str | None:
    """A database URL with its password (``user:pw@`` or ``?password=``) hidden."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None and "password=" not in parts.query.lower():
        return url
    if parts.password is not None:
        user = parts.username or ""
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{user}:***@{host}")
    if "password=" in parts.query.lower():
        query = [
            (k, "***" if k.lower() == "password" else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ]
        parts = parts._replace(query=urlencode(query, safe="/*"))
    return urlunsplit(parts)
