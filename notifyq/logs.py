"""Structured logging with structlog: one event per major action, as JSON or console text.

Logs go to stderr so that commands such as ``notifyq dsn`` keep stdout for their output.
"""

from __future__ import annotations

import datetime
import json
import logging
import select
import sys
from collections.abc import Sequence
from typing import Any, Protocol, TextIO, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure(level: str = "info", fmt: str = "console") -> None:
    global _lines
    renderer: Any
    colors = sys.stderr.isatty()
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=colors)
    # Many lines of one event at once (`task.end`, one per task) skip structlog's chain;
    # on a terminal with colours they go through it (a person reads them: speed is moot).
    _lines = None if fmt == "console" and colors else _Lines(renderer, fmt, level, sys.stderr)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        # One write per line, newline included (PrintLogger's print() writes the newline
        # separately): processes sharing one pipe (serve --processes) never merge lines.
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    _route_stdlib_logging(level, renderer)


def info_many(log: Logger, event: str, records: Sequence[dict[str, Any]]) -> None:
    """``log.info(event, **fields)`` for every record, written as one block.

    The lines are the ones ``log.info`` writes (same format, fields and order; one
    timestamp for the block), without structlog's per-line chain: about 4 µs a line instead
    of 40 (`task.end`, logged once per task, cost a third of the drain rate). Falls back to
    ``log.info`` per record when structlog is configured otherwise (a test capturing logs,
    colours on a terminal).
    """
    lines = _lines
    if lines is None or not lines.current():
        for fields in records:
            log.info(event, **fields)
        return
    if lines.info and records:
        lines.write(event, records)


class _Lines:
    """Renders and writes many info lines of one event, as ``configure``'s chain would."""

    def __init__(self, renderer: Any, fmt: str, level: str, stream: TextIO) -> None:
        self.renderer = renderer
        self.json = fmt == "json"
        self.info = _LEVELS[level] <= logging.INFO
        self.stream = stream

    def current(self) -> bool:
        """Whether structlog still renders with our renderer (capture_logs replaces it)."""
        processors = structlog.get_config()["processors"]
        return bool(processors) and processors[-1] is self.renderer

    def write(self, event: str, records: Sequence[dict[str, Any]]) -> None:
        now = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
        context = structlog.contextvars.get_contextvars()
        if self.json:
            # structlog's order: the fields, the event, the context not overridden, then
            # the level and the time.
            tail = {"level": "info", "timestamp": now}
            lines = [
                json.dumps(
                    {**fields, "event": event}
                    | {k: v for k, v in context.items() if k not in fields}
                    | tail,
                    default=repr,
                )
                + "\n"
                for fields in records
            ]
        else:
            head = f"{now} [info     ] {event:<30} "
            lines = [
                head
                + " ".join(f"{k}={_console_repr(v)}" for k, v in sorted({**context, **f}.items()))
                + "\n"
                for f in records
            ]
        # Whole lines, at most PIPE_BUF bytes per write: several processes writing to one
        # pipe (`serve --processes`, a container's stderr) never cut into each other's lines.
        chunk: list[str] = []
        size = 0
        for line in lines:
            n = len(line.encode())
            if chunk and size + n > _ATOMIC_WRITE:
                self._write("".join(chunk))
                chunk, size = [], 0
            chunk.append(line)
            size += n
        if chunk:
            self._write("".join(chunk))

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


# Writes of at most this many bytes to a pipe are atomic (POSIX PIPE_BUF; 4096 on Linux).
_ATOMIC_WRITE = getattr(select, "PIPE_BUF", 512)

_SPECIAL = frozenset(" \t=\r\n\"'")


def _console_repr(value: object) -> str:
    """A value as structlog's ConsoleRenderer shows it."""
    if isinstance(value, str):
        return repr(value) if _SPECIAL.intersection(value) else value
    return repr(value)


_lines: _Lines | None = None


# Libraries that log through the standard library. Their info lines are chatty (the
# embedded server's wheel logs every command it runs), so they start at warning.
_LIBRARY_FLOOR = logging.WARNING


def _route_stdlib_logging(level: str, renderer: Any) -> None:
    """Send the standard library's log records (asyncpg's pool, asyncio, the embedded
    server's wheel, warnings) through the same renderer as notifyq's own events: under
    ``LOG_FORMAT=json`` a driver's warning and its traceback are one JSON line, not plain
    text in the middle of the log (tests/acceptance/test_faults.py::
    test_every_stderr_line_is_json_while_the_database_is_down)."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = _StderrHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)  # configured twice (tests): one handler, the latest
    root.addHandler(handler)
    root.setLevel(max(_LEVELS[level], _LIBRARY_FLOOR))


class _StderrHandler(logging.StreamHandler[TextIO]):
    """notifyq's handler on the root logger (a class of its own, to be found again). It
    writes to the ``sys.stderr`` of each moment, as ``print`` does (pytest swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


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


def bind(**fields: object) -> None:
    """Add ``fields`` to every later event of this process: called before ``trio.run``,
    every task inherits them (a supervisor's child binds ``process=N``)."""
    structlog.contextvars.bind_contextvars(**fields)


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
