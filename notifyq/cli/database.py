"""`notifyq dsn` and `notifyq db start|stop|status`: the database URL, and the embedded
PostgreSQL's lifetime.

A notifyq process that uses the embedded server starts it if need be and, as the last one
to exit, stops it. ``dsn`` and ``db start`` *hold* it instead: it stays up, whoever exits,
until ``db stop`` (see :mod:`notifyq.serving.embedded`).
"""

from __future__ import annotations

import os

import click
import trio

from notifyq.cli.common import EXIT_FAILED, EXIT_USAGE, fail, run, settings_from
from notifyq.serving import embedded
from notifyq.serving.startup import open_db
from notifyq.settings import Settings


def _quiet_settings(ctx: click.Context) -> Settings:
    # LOG_LEVEL warning unless the flag or the environment says otherwise: the output of
    # these commands is read by scripts (psql "$(notifyq dsn)").
    level = (ctx.obj or {}).get("log_level") or os.environ.get("LOG_LEVEL") or "warning"
    return settings_from(ctx, log_level=level)


async def _hold(settings: Settings) -> str:
    """Start the embedded server, keep it up, and migrate its database; its URL."""
    url = await embedded.hold(settings.data_dir)
    async with open_db(settings, pool_size=1):  # migrates the embedded server's database
        pass
    return url


@click.command()
@click.pass_context
def dsn(ctx: click.Context) -> None:
    """Print the database URL: DATABASE_URL, or the embedded server's, started (migrated) and
    kept up until `notifyq db stop`. psql "$(notifyq dsn)"."""
    settings = _quiet_settings(ctx)
    click.echo(settings.database_url or run(lambda: _hold(settings)))


@click.group()
def db() -> None:
    """The embedded PostgreSQL (DATABASE_URL unset): start, stop, status."""


def _embedded_settings(ctx: click.Context) -> Settings:
    settings = _quiet_settings(ctx.find_root())
    if settings.database_url:
        fail(
            "notifyq db manages the embedded PostgreSQL; DATABASE_URL names another server",
            EXIT_USAGE,
        )
    return settings


@db.command()
@click.pass_context
def start(ctx: click.Context) -> None:
    """Start the embedded server (migrated) and keep it up until `notifyq db stop`; print its
    URL."""
    settings = _embedded_settings(ctx)
    click.echo(run(lambda: _hold(settings)))


@db.command()
@click.pass_context
def stop(ctx: click.Context) -> None:
    """Stop the embedded server; while notifyq processes use it, the last of them stops it
    as it exits (exit 1)."""
    settings = _embedded_settings(ctx)
    users = run(lambda: trio.to_thread.run_sync(embedded.release, settings.data_dir))
    if users:
        noun = "process" if len(users) == 1 else "processes"
        verb = "uses" if len(users) == 1 else "use"
        pids = ", ".join(str(p) for p in users)
        fail(
            f"the embedded PostgreSQL stays up while notifyq {noun} {pids} {verb} it; "
            "the last to exit stops it",
            EXIT_FAILED,
        )
    click.echo("stopped")


@db.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Whether the embedded server runs (exit 0, with its URL) or not (exit 1)."""
    settings = _embedded_settings(ctx)
    found = run(lambda: trio.to_thread.run_sync(embedded.status, settings.data_dir))
    if found.url is None:
        click.echo("stopped")
        raise SystemExit(EXIT_FAILED)
    n = len(found.users)
    users = (
        "no notifyq process uses it"
        if n == 0
        else f"used by {n} notifyq process{'es' if n > 1 else ''}"
    )
    held = "kept up until `notifyq db stop`" if found.held else "stopped by the last user to exit"
    click.echo(f"running: {found.url} ({held}; {users})")
