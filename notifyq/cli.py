"""The ``notifyq`` command line (click).

Settings come from flags, then the environment, then ``.env``, then defaults. A bad value
exits with status 2 and one line naming the setting.
"""

from __future__ import annotations

import json
import math
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, NoReturn, TypeVar

import click
import trio

from notifyq import db, embedded, errors, logs, migrations, priorities, roles, service, sql
from notifyq.client import ENDED, Client
from notifyq.handlers import App, builtin_app, load_app
from notifyq.settings import DURATION_HELP, Settings, load, parse_duration
from notifyq.web import check_bind

T = TypeVar("T")
log = logs.get("notifyq.cli")

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
        if isinstance(exc, errors.ConfigError):
            fail(str(exc), EXIT_USAGE)
        if isinstance(exc, errors.NotifyqError):
            fail(str(exc) or type(exc).__name__, EXIT_FAILED)
        if isinstance(exc, trio.TooSlowError):
            fail(str(exc) or "timed out", EXIT_TIMEOUT)
        if isinstance(exc, KeyboardInterrupt):
            fail("interrupted", 130)
        raise


async def resolve_dsn(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    return await embedded.start(settings.data_dir)


@asynccontextmanager
async def open_db(
    settings: Settings, *, pool_size: int | None = None
) -> AsyncIterator[db.Database]:
    """Connect, and make sure the schema is ready: migrated on the embedded server,
    checked (never changed) on an external one."""
    dsn = await resolve_dsn(settings)
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


# --- the group and its shared options -------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--database-url", help="PostgreSQL URL [DATABASE_URL; unset: embedded server]")
@click.option("--data-dir", help="Embedded server data directory [NOTIFYQ_DATA_DIR=.notifyq]")
@click.option("--log-level", help="debug, info, warning or error [LOG_LEVEL=info]")
@click.option("--log-format", help="console or json [LOG_FORMAT=console]")
@click.version_option(package_name="notifyq")
@click.pass_context
def main(
    ctx: click.Context,
    database_url: str | None,
    data_dir: str | None,
    log_level: str | None,
    log_format: str | None,
) -> None:
    """notifyq: a PostgreSQL task queue woken by NOTIFY, run on trio."""
    ctx.obj = {
        "database_url": database_url,
        "data_dir": data_dir,
        "log_level": log_level,
        "log_format": log_format,
    }


@main.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Apply pending schema migrations (safe to run twice, or from two processes)."""
    settings = settings_from(ctx)

    async def go() -> None:
        dsn = await resolve_dsn(settings)
        async with db.open_database(dsn, min_size=1, max_size=2) as database:
            applied = await migrations.migrate(database)
        click.echo(f"applied {len(applied)} migration(s)" if applied else "schema is up to date")

    run(go)


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


@main.command()
@click.option(
    "-w", "--workers", "worker_count", type=int, help="Concurrent handlers [WORKER_COUNT=5]"
)
@click.option("--fetch-limit", type=int, help="Largest batch one claim takes [FETCH_LIMIT=10]")
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
@click.option("--no-http", is_flag=True, help="Run the workers only, without the HTTP side.")
@http_options
@click.pass_context
def serve(ctx: click.Context, /, seed: int, no_http: bool, **flags: Any) -> None:
    """Run the workers and the HTTP side until SIGINT or SIGTERM (a second signal skips
    the grace period)."""
    settings = settings_from(ctx, **flags)
    app = handlers_for(settings)
    if not no_http:
        _check_bind(settings)
    run(lambda: serve_until_signalled(settings, app, seed=seed, http=not no_http))


@main.command()
@http_options
@click.pass_context
def web(ctx: click.Context, /, **flags: Any) -> None:
    """Run only the HTTP side (API, status page, /events), to scale it apart from workers."""
    settings = settings_from(ctx, **flags)
    _check_bind(settings)
    run(lambda: serve_until_signalled(settings, App(), http=True, workers=False))


def _check_bind(settings: Settings) -> None:
    try:
        check_bind(settings)
    except errors.ConfigError as exc:
        fail(str(exc), EXIT_USAGE)


# Roles: `serve` runs workers and the HTTP server, `worker` the workers only, `web` the HTTP
# server only; all three take the same settings. `worker` takes serve's flags but the HTTP ones.
_HTTP_PARAMS = {"no_http", "http_host", "http_port", "insecure_http"}


@main.command("worker", params=[p for p in serve.params if p.name not in _HTTP_PARAMS])
@click.pass_context
def worker(ctx: click.Context, /, seed: int, **flags: Any) -> None:
    """Run the workers only (no HTTP server) until SIGINT or SIGTERM."""
    settings = settings_from(ctx, **flags)
    app = handlers_for(settings)
    run(lambda: serve_until_signalled(settings, app, seed=seed, http=False))


def handlers_for(settings: Settings) -> App:
    app = builtin_app(
        demo_min_delay_s=settings.demo_min_delay_s,
        demo_max_delay_s=settings.demo_max_delay_s,
        demo_failure_rate=settings.demo_failure_rate,
    )
    if settings.app:
        try:
            app = app.merged(load_app(settings.app))
        except errors.ConfigError as exc:
            fail(str(exc), EXIT_USAGE)
    return app


async def serve_until_signalled(
    settings: Settings, app: App, *, seed: int = 0, http: bool = True, workers: bool = True
) -> None:
    stop, force = trio.Event(), trio.Event()
    # Opened first, so that a signal during start-up is a request to stop, not a crash.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if not stop.is_set():
                        log.info(
                            "shutdown.signal",
                            signal=name,
                            next="finishing running tasks; send again to skip the wait",
                        )
                        stop.set()
                    else:
                        log.info(
                            "shutdown.signal_again", signal=name, next="cancelling running tasks"
                        )
                        force.set()

            nursery.start_soon(watch)
            async with open_db(settings) as database:
                await roles.serve_roles(
                    database,
                    settings,
                    app,
                    stop,
                    force,
                    seed=seed,
                    http=http,
                    workers=workers,
                    exit_on_abandoned=True,
                )
            nursery.cancel_scope.cancel()


@main.command()
@click.option("-n", "--count", type=click.IntRange(1, 10_000_000), default=20, show_default=True)
@click.pass_context
def seed(ctx: click.Context, count: int) -> None:
    """Enqueue COUNT demo tasks in one statement."""
    settings = settings_from(ctx)

    async def go() -> None:
        async with open_db(settings, pool_size=2) as database:
            rows = await database.fetch(sql.queries["seed"], count)
        click.echo(f"enqueued {len(rows)} demo tasks ({rows[0]['id']}..{rows[-1]['id']})")

    run(go)


def _parse_payload(text: str | None) -> Any:
    """JSON if it parses, else the text itself as a JSON string."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _duration(_ctx: Any, _param: Any, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError:
        raise click.BadParameter(f"expected {DURATION_HELP}") from None


def _priority(_ctx: Any, _param: Any, value: str) -> int:
    try:
        return priorities.parse(value)
    except priorities.PriorityError as exc:
        raise click.BadParameter(f"expected {exc.expected}") from None


def _positive_duration(ctx: Any, param: Any, value: str | None) -> float | None:
    seconds = _duration(ctx, param, value)
    if seconds == 0:
        raise click.BadParameter(f"expected {DURATION_HELP}, above 0")
    return seconds


@main.command()
@click.argument("kind")
@click.argument("payload", required=False)
@click.option("--queue", default="default", show_default=True)
@click.option(
    "--priority",
    default="0",
    show_default=True,
    callback=_priority,
    help="Higher runs first: an integer, or low (-10), normal (0), high (10), urgent (20).",
)
@click.option("--delay", callback=_duration, help="Run no sooner than this from now (e.g. 30s).")
@click.option(
    "--at",
    "run_at",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
    help="Run no sooner than this time (ISO 8601; no zone: local time).",
)
@click.option("--max-attempts", type=click.IntRange(1, 1000), default=3, show_default=True)
@click.option("--timeout", callback=_positive_duration, help="Time limit of one attempt.")
@click.pass_context
def enqueue(
    ctx: click.Context,
    kind: str,
    payload: str | None,
    queue: str,
    priority: int,
    delay: float | None,
    run_at: datetime | None,
    max_attempts: int,
    timeout: float | None,
) -> None:
    """Add a task. PAYLOAD is JSON; text that is not JSON is taken as a string."""
    settings = settings_from(ctx)
    if run_at is not None and run_at.tzinfo is None:
        run_at = run_at.astimezone()  # naive: local time

    async def go() -> None:
        async with open_db(settings, pool_size=2) as database:
            task_id = await Client(database).enqueue(
                kind,
                _parse_payload(payload),
                queue=queue,
                priority=priority,
                delay_s=delay or 0.0,
                run_at=run_at,
                max_attempts=max_attempts,
                timeout_s=timeout,
            )
        click.echo(task_id)

    run(go)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Task counts by queue and status, and the live worker processes."""
    settings = settings_from(ctx)

    async def go() -> None:
        async with open_db(settings, pool_size=2) as database:
            counts = await database.fetch(sql.queries["counts"])
            workers = await database.fetch(sql.queries["workers"])
        if as_json:
            click.echo(
                json.dumps(
                    {"counts": [dict(r) for r in counts], "workers": [dict(r) for r in workers]},
                    default=str,
                    indent=2,
                )
            )
            return
        click.echo(f"{'QUEUE':<20} {'STATUS':<12} {'TASKS':>10}")
        for r in counts:
            click.echo(f"{r['queue']:<20} {r['status']:<12} {r['n']:>10}")
        click.echo(f"\n{len(workers)} worker process(es)")
        for w in workers:
            click.echo(
                f"  {w['id']}  queues={','.join(w['queues'])}  "
                f"in_flight={w['in_flight']}/{w['concurrency']}  last_seen={w['last_seen']:%H:%M:%S}"
            )

    run(go)


@main.command()
@click.pass_context
def dsn(ctx: click.Context) -> None:
    """Print the database URL (starting the embedded server if needed): psql "$(notifyq dsn)"."""
    settings = settings_from(ctx)
    click.echo(settings.database_url or run(lambda: resolve_dsn(settings)))


def _task_command(action: str) -> Callable[[Callable[..., Any]], click.Command]:
    def decorate(fn: Callable[..., Any]) -> click.Command:
        return main.command(name=action)(
            click.argument("task_id", type=click.IntRange(1))(click.pass_context(fn))
        )

    return decorate


@_task_command("cancel")
def cancel(ctx: click.Context, task_id: int) -> None:
    """Cancel a task: pending ends at once, running is stopped by its process."""
    settings = settings_from(ctx)
    click.echo(run(lambda: _with_client(settings, lambda c: c.cancel(task_id))))


@_task_command("retry")
def retry(ctx: click.Context, task_id: int) -> None:
    """Put an 'error' or 'cancelled' task back to pending."""
    settings = settings_from(ctx)
    click.echo(run(lambda: _with_client(settings, lambda c: c.retry(task_id))))


@_task_command("history")
def history(ctx: click.Context, task_id: int) -> None:
    """Print a task's events, oldest first."""
    settings = settings_from(ctx)
    events = run(lambda: _with_client(settings, lambda c: c.history(task_id)))
    for e in events:
        worker = e["worker"] or "-"
        error = f"  {e['error']}" if e["error"] else ""
        click.echo(
            f"{e['at']:%Y-%m-%d %H:%M:%S.%f}  {e['event']:<10} attempt={e['attempt']}  {worker}{error}"
        )


@main.command()
@click.argument("task_id", type=click.IntRange(1))
@click.option("--timeout", callback=_duration, help="Give up after this long (exit 3).")
@click.pass_context
def wait(ctx: click.Context, task_id: int, timeout: float | None) -> None:
    """Wait for a task to end; print it as JSON. Exit 0 if done, 1 if error or cancelled."""
    settings = settings_from(ctx)

    async def go() -> dict[str, Any]:
        try:
            # The deadline sits outside the client so that it is not wrapped in the
            # trio-asyncio loop's exception group.
            with trio.fail_after(timeout if timeout is not None else math.inf):
                return await _with_client(settings, lambda c: c.wait(task_id))
        except trio.TooSlowError:
            raise trio.TooSlowError(f"task {task_id} did not end within {timeout:g} s") from None

    task = run(go)
    click.echo(json.dumps(task, default=str))
    if task["status"] != "done":
        sys.exit(EXIT_FAILED)
    assert task["status"] in ENDED


@main.command()
@click.option(
    "--older-than",
    required=True,
    callback=_duration,
    help="Age of ended tasks to delete (e.g. 7d).",
)
@click.pass_context
def prune(ctx: click.Context, older_than: float) -> None:
    """Delete ended tasks (and their history) older than --older-than, in batches."""
    settings = settings_from(ctx)

    async def go() -> int:
        async with open_db(settings, pool_size=2) as database:
            return await service.prune(database, older_than)

    click.echo(f"deleted {run(go)} task(s)")


async def _with_client(settings: Settings, fn: Callable[[Client], Awaitable[T]]) -> T:
    async with open_db(settings, pool_size=2) as database:
        return await fn(Client(database, listen_dsn=settings.listen_database_url))


def _register_bench() -> None:
    from notifyq.bench import bench
    from notifyq.bench_scale import scale

    bench.add_command(scale)
    main.add_command(bench)


_register_bench()


def _register_ops() -> None:
    from notifyq import ops  # `health` and `roles`

    ops.register(main)


_register_ops()
