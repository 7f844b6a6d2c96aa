"""What every command shares: exit codes, settings from flags, the trio runner, the
database opener and the duration options."""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, NoReturn, TypeVar

import click
import trio

from notifyq import db, embedded, errors, logs, migrations
from notifyq.durations import DURATION_HELP, DurationTooLong, parse_duration
from notifyq.settings import Settings, load

T = TypeVar("T")
log = logs.get("notifyq.cli")

EXIT_FAILED = 1  # the command ran and the answer is "no" (task failed, not found, ...)
EXIT_USAGE = 2
EXIT_TIMEOUT = 3

# The signals that stop a long-running command gracefully (a second one skips the grace).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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


@asynccontextmanager
async def open_db(
    settings: Settings, *, pool_size: int | None = None
) -> AsyncIterator[db.Database]:
    """Connect, and make sure the schema is ready: migrated on the embedded server,
    checked (never changed) on an external one."""
    dsn = await embedded.resolve_dsn(settings)
    log.debug("db.connect", url=logs.redact(dsn))
    size = pool_size or settings.pool_size
    async with db.open_database(
        dsn,
        min_size=min(2, size),
        max_size=size,
        statement_cache_size=settings.statement_cache_size,
    ) as database:
        log.info("db.connected", url=logs.redact(dsn))
        if settings.database_url is None:
            await migrations.migrate(database)
        else:
            await migrations.check(database)
        yield database


DB_WAIT_MAX_S = 10.0


@asynccontextmanager
async def open_db_when_ready(
    settings: Settings, stop: trio.Event, *, pool_size: int | None = None
) -> AsyncIterator[db.Database | None]:
    """:func:`open_db` for the long-running commands: while the database cannot be reached
    (down, or every connection slot taken), wait and try again, with one ``db.waiting``
    line per try (1, 2, 4, ... up to 10 s apart), instead of exiting. Yields None when
    ``stop`` is set meanwhile. Any other error (bad password, outdated schema) still ends
    the command."""
    delay = 1.0
    while True:
        async with AsyncExitStack() as stack:
            try:
                database = await stack.enter_async_context(open_db(settings, pool_size=pool_size))
            except errors.DatabaseUnavailable as exc:
                log.warning("db.waiting", error=str(exc), retry_in_s=delay)
            else:
                yield database
                return
        with trio.move_on_after(delay):
            await stop.wait()
        if stop.is_set():
            yield None
            return
        delay = min(delay * 2, DB_WAIT_MAX_S)


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
