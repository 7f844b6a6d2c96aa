"""The long-running commands and the schema: `notifyq serve | worker | web | migrate`.

Each parses its flags, builds the Settings and makes one call into :mod:`notifyq.serving`,
which owns the signals, the start-up and what the process runs."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import click

from notifyq import errors, logs
from notifyq.app import App, load_app
from notifyq.cli.common import EXIT_USAGE, fail, run, settings_from
from notifyq.kinds import builtin_app
from notifyq.serving import run as serving
from notifyq.serving import startup
from notifyq.settings import Settings
from notifyq.web.bind import check_bind


@click.command()
@click.option(
    "--check",
    is_flag=True,
    help="Change nothing: exit 0 if every migration is applied, else 1 (a pod's init check).",
)
@click.pass_context
def migrate(ctx: click.Context, check: bool) -> None:
    """Apply pending schema migrations (safe to run twice, or from two processes)."""
    settings = settings_from(ctx)
    # With --check, SchemaError: one line, exit 1.
    applied = run(partial(startup.migrate, settings, check=check))
    click.echo(f"applied {len(applied)} migration(s)" if applied else "schema is up to date")


def http_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Flags of the HTTP side, shared by serve and web."""
    for option in reversed(
        [
            click.option("--http-host", help="Address to serve HTTP on [HTTP_HOST=127.0.0.1]"),
            click.option("--http-port", type=int, help="HTTP port, 0 for any [HTTP_PORT=8080]"),
            click.option(
                "--insecure-http",
                is_flag=True,
                default=None,
                help="Allow a non-loopback HTTP_HOST without API_TOKEN [INSECURE_HTTP]",
            ),
        ]
    ):
        fn = option(fn)
    return fn


@click.command()
@click.option(
    "-w", "--workers", "worker_count", type=int, help="Concurrent handlers [WORKER_COUNT=5]"
)
@click.option("--fetch-limit", type=int, help="Largest batch one claim takes [FETCH_LIMIT=500]")
@click.option(
    "--fetch-interval", "fetch_interval_s", help="Safety-net sweep period [FETCH_INTERVAL=5]"
)
@click.option("-q", "--queues", help="Comma-separated queues to serve [QUEUES=default]")
@click.option(
    "--shutdown-timeout", "shutdown_timeout_s", help="Grace for running tasks [SHUTDOWN_TIMEOUT=30]"
)
@click.option("--task-timeout", "task_timeout_s", help="Default per-task limit [TASK_TIMEOUT]")
@click.option("--lease", "lease_s", help="Lease of a claimed task [LEASE=30]")
@click.option("--retention", "retention_s", help="Prune ended tasks older than this [RETENTION]")
@click.option("--app", help="module:attribute of your notifyq.App [NOTIFYQ_APP]")
@click.option(
    "--no-listen", is_flag=True, default=None, help="No LISTEN connection; sweeps only [NO_LISTEN]"
)
@click.option(
    "--seed",
    type=click.IntRange(0, 1_000_000),
    default=0,
    help="Enqueue this many demo tasks once started.",
)
@click.option(
    "--processes",
    type=int,
    help="Processes under one supervisor, each with its workers [PROCESSES=1]",
)
# Set by the supervisor on each child's command line: its number and the link's descriptor.
@click.option("--child", type=click.IntRange(1), hidden=True)
@click.option("--link-fd", type=click.IntRange(0), hidden=True)
@click.option("--no-http", is_flag=True, help="Run the workers only, without the HTTP side.")
@http_options
@click.pass_context
def serve(ctx: click.Context, /, seed: int, no_http: bool, **flags: Any) -> None:
    """Run the workers and the HTTP side until SIGINT, SIGTERM or SIGHUP (a second signal
    skips the grace period)."""
    child, link_fd = flags.pop("child"), flags.pop("link_fd")
    settings = settings_from(ctx, **flags)
    app = handlers_for(settings)
    if not no_http:
        _check_bind(settings)
    _run_role(settings, app, seed=seed, http=not no_http, child=child, link_fd=link_fd)


@click.command()
@http_options
@click.pass_context
def web(ctx: click.Context, /, **flags: Any) -> None:
    """Run only the HTTP side (API, status page, /events), to scale it apart from workers."""
    settings = settings_from(ctx, **flags)
    _check_bind(settings)
    run(partial(serving.serve, settings, App(), http=True, workers=False))


def _check_bind(settings: Settings) -> None:
    try:
        check_bind(settings)
    except errors.ConfigError as exc:
        fail(str(exc), EXIT_USAGE)


# Roles: `serve` runs workers and the HTTP server, `worker` the workers only, `web` the HTTP
# server only; all three take the same settings. `worker` takes serve's flags but the HTTP ones.
_HTTP_PARAMS = {"no_http", "http_host", "http_port", "insecure_http"}


@click.command("worker", params=[p for p in serve.params if p.name not in _HTTP_PARAMS])
@click.pass_context
def worker(ctx: click.Context, /, seed: int, **flags: Any) -> None:
    """Run the workers only (no HTTP server) until SIGINT, SIGTERM or SIGHUP."""
    child, link_fd = flags.pop("child"), flags.pop("link_fd")
    settings = settings_from(ctx, **flags)
    app = handlers_for(settings)
    _run_role(settings, app, seed=seed, http=False, child=child, link_fd=link_fd)


def _run_role(
    settings: Settings,
    app: App,
    *,
    seed: int,
    http: bool,
    child: int | None,
    link_fd: int | None,
) -> None:
    """One process (PROCESSES=1, or a supervisor's child), or the supervisor of several."""
    if child is not None:
        logs.bind(process=child)  # on every line of this child, to tell the children apart
    run(partial(serving.serve, settings, app, seed=seed, http=http, child=child, link_fd=link_fd))


def handlers_for(settings: Settings) -> App:
    app = builtin_app(
        demo_min_delay_s=settings.demo_min_delay_s,
        demo_max_delay_s=settings.demo_max_delay_s,
        demo_failure_rate=settings.demo_failure_rate,
    )
    try:
        if settings.app:
            app = app.merged(load_app(settings.app))
        app.check_schedules()
    except errors.ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    return app
