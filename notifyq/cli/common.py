"""What every command shares: exit codes, settings from flags, the trio runner and the
duration options. The database opener is :func:`notifyq.serving.startup.open_db`."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import click
import trio

from notifyq import errors, logs
from notifyq.durations import DURATION_HELP, DurationTooLong, parse_duration
from notifyq.settings import Settings, load

T = TypeVar("T")

EXIT_FAILED = 1  # the command ran and the answer is "no" (task failed, not found, ...)
EXIT_USAGE = 2
EXIT_TIMEOUT = 3


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"notifyq: {message}", err=True)
    sys.exit(code)


def settings_from(ctx: click.Context, **flags: Any) -> Settings:
    merged = {**ctx.obj, **flags}
    try:
        settings = load(**merged)
    except errors.ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    logs.configure(settings.log_level, settings.log_format)
    return settings


def run(fn: Callable[[], Awaitable[T]]) -> T:
    """trio.run with notifyq's errors turned into one line and an exit code."""
    try:
        return trio.run(fn)
    except BaseException as raised:
        exc = raised
        # A nursery wraps errors in groups; one error is still one error to the user.
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        # A refused connection is a wrong DATABASE_URL (database, role, password): bad input.
        if isinstance(exc, errors.ConfigError | errors.DatabaseRefused):
            fail(str(exc), EXIT_USAGE)
        if isinstance(exc, errors.NotifyqError):
            fail(str(exc) or type(exc).__name__, EXIT_FAILED)
        if isinstance(exc, trio.TooSlowError):
            fail(str(exc) or "timed out", EXIT_TIMEOUT)
        if isinstance(exc, KeyboardInterrupt):
            fail("interrupted", 130)
        raise


def duration(_ctx: Any, param: Any, value: str | None) -> float | None:
    """Option callback: a duration (``30s``, ``5m``, ...) in seconds."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except DurationTooLong as exc:
        name = param.opts[0] if isinstance(param, click.Parameter) and param.opts else "duration"
        fail(f"invalid {name} {value!r}: {exc}", EXIT_USAGE)
    except ValueError:
        raise click.BadParameter(f"expected {DURATION_HELP}") from None


def positive_duration(ctx: Any, param: Any, value: str | None) -> float | None:
    """Option callback: a duration above 0, in seconds."""
    seconds = duration(ctx, param, value)
    if seconds == 0:
        raise click.BadParameter(f"expected {DURATION_HELP}, above 0")
    return seconds
