"""`notifyq bench`: pickup latency and drain throughput, measured on a real PostgreSQL.

Both commands resolve the server as every other command does (DATABASE_URL, or the
embedded PostgreSQL when it is unset), create a scratch database ``notifyq_bench_<random>``
on it, migrate it, run an in-process :class:`~notifyq.service.Service` there and drop it
afterwards (``WITH (FORCE)``): runs start from the same empty state and the user's own data
is never touched. Everything runs in this one process and trio thread, so the service, the
inserter and the measurement share one CPU core.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click
import trio

from notifyq import db, errors, logs, migrations, service, sql
from notifyq.handlers import App, Task, builtin_app
from notifyq.settings import Settings

PROBE_TIMEOUT_S = 10.0  # a probe not started by then fails the run
STALL_TIMEOUT_S = 30.0  # a drain that finishes nothing for this long fails the run
REPORTED_SETTINGS = ("worker_count", "fetch_limit", "fetch_interval_s", "pool_size", "log_level")


@click.group()
def bench() -> None:
    """Benchmarks on a real PostgreSQL: latency, drain, insert, backlog, rss, peers, all."""


# --- shared: scratch database, settings, service --------------------------------------


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@dataclass(frozen=True)
class Scratch:
    database: db.Database  # a pool on the scratch database, migrated
    settings: Settings  # the user's settings, pointed at the scratch database
    header: dict[str, Any]  # what the report names: server and settings


@asynccontextmanager
async def empty_database(settings: Settings) -> AsyncIterator[tuple[str, str, str]]:
    """A new, empty database on the configured server, dropped at the end.

    Yields (server URL, database URL, name).
    """
    from notifyq import cli  # notifyq.cli imports this module to register `bench`

    async with empty_database_at(await cli.resolve_dsn(settings)) as created:
        yield created


@asynccontextmanager
async def empty_database_at(
    dsn: str, prefix: str = "notifyq_bench_"
) -> AsyncIterator[tuple[str, str, str]]:
    """A new, empty database on the server of ``dsn``, dropped at the end (as above)."""
    name = f"{prefix}{secrets.token_hex(4)}"
    async with db.open_database(dsn, min_size=1, max_size=1) as admin:
        try:
            # A database name cannot be a bind parameter; this one is generated above.
            await admin.execute(f"CREATE DATABASE {name}")
        except errors.QueryError as exc:
            raise errors.NotifyqError(f"cannot create a scratch database: {exc}") from exc
        try:
            yield dsn, _with_database(dsn, name), name
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(30):
                await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@asynccontextmanager
async def scratch(settings: Settings) -> AsyncIterator[Scratch]:
    """A fresh, migrated database on the configured server; dropped at the end."""
    async with empty_database(settings) as (dsn, url, name):
        size = settings.pool_size
        async with db.open_database(url, min_size=min(2, size), max_size=size) as database:
            await migrations.migrate(database)
            listen = settings.listen_database_url
            ours = settings.model_copy(
                update={
                    "database_url": url,
                    "listen_database_url": listen and _with_database(listen, name),
                    "queues": ("default",),
                }
            )
            server = await database.fetchrow(sql.queries["server_facts"])
            used = {k: getattr(ours, k) for k in REPORTED_SETTINGS}
            header = {"server": logs.redact(dsn), **dict(server or {}), "settings": used}
            yield Scratch(database, ours, header)


@asynccontextmanager
async def running(
    database: db.Database, settings: Settings, app: App
) -> AsyncIterator[service.Service]:
    """An in-process Service, stopped gracefully (as by one SIGTERM) when the block ends."""
    svc = service.Service(database, settings, app)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(svc.serve, stop, trio.Event())
        try:
            yield svc
        finally:
            stop.set()


def progress(text: str) -> None:
    click.echo(text, err=True)


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty list."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# --- latency --------------------------------------------------------------------------


class Probes:
    """The ``bench_probe`` handler: records time.monotonic() at its start, by task id."""

    def __init__(self) -> None:
        self.started: dict[int, float] = {}
        self._changed = trio.Event()

    async def handle(self, task: Task) -> None:
        self.started[task.id] = time.monotonic()
        self._changed.set()

    async def wait_for(self, task_id: int) -> float:
        while task_id not in self.started:
            self._changed = trio.Event()
            await self._changed.wait()
        return self.started.pop(task_id)


def _insert_probe(seq: int) -> Callable[[db.Connection], Awaitable[tuple[int, float]]]:
    async def insert(conn: db.Connection) -> tuple[int, float]:
        task_id = await conn.fetchval(sql.queries["bench_probe"], {"seq": seq})
        # Autocommit: the statement's result is the commit's acknowledgement. Read the
        # clock here, on the asyncio side, before the pool's reset query and the hop back
        # to trio (both would make t_commit late and the latency look smaller).
        return int(task_id), time.monotonic()

    return insert


async def measure_latency(
    settings: Settings, count: int, spacing_s: float, warmup: int
) -> dict[str, Any]:
    """Pickup latency on an idle service: INSERT commit -> handler start.

    A second pool of one connection (not the service's) inserts one ``bench_probe`` row at
    a time in autocommit; t_commit = time.monotonic() as soon as the INSERT's result (the
    commit's acknowledgement) arrives, in the asyncio coroutine, before the pool's reset
    query and the hop back to trio. The handler reads time.monotonic() at its start.

    Bias: the server commits a little before the client reads the acknowledgement, so the
    figure is optimistic by that reply's transit (µs on a local socket). Reading the clock
    once the call is back in trio instead would make every sample smaller (optimistic) by
    ``return_p50_ms``, which the report gives. Negative samples would be kept: real.
    Probes are ``spacing_s`` apart, so the service is idle at each insert; the first
    ``warmup`` (statement preparation on fresh connections) are not measured.
    """
    probes = Probes()
    app = builtin_app()
    app.handler("bench_probe")(probes.handle)
    samples: list[float] = []
    returns: list[float] = []
    async with scratch(settings) as s:
        progress(f"latency: {count} probes after {warmup} warm-up, {spacing_s * 1000:g} ms apart")
        async with (
            running(s.database, s.settings, app),
            db.open_database(s.settings.database_url or "", min_size=1, max_size=1) as inserter,
        ):
            for seq in range(warmup + count):
                task_id, acked = await inserter.run(_insert_probe(seq))
                returned = time.monotonic()
                try:
                    with trio.fail_after(PROBE_TIMEOUT_S):
                        started = await probes.wait_for(task_id)
                except trio.TooSlowError:
                    raise errors.NotifyqError(
                        f"probe task {task_id} did not start within {PROBE_TIMEOUT_S:g} s"
                    ) from None
                if seq >= warmup:
                    samples.append(started - acked)
                    returns.append(returned - acked)
                    if len(samples) * 10 // count > (len(samples) - 1) * 10 // count:
                        progress(f"  {len(samples)}/{count} probes")
                await trio.sleep(spacing_s)
        header = s.header
    ordered = sorted(x * 1000 for x in samples)
    stats = {f"p{p}_ms": round(percentile(ordered, p), 3) for p in (50, 95, 99)}
    return {
        "benchmark": "latency",
        **header,
        "count": count,
        "warmup": warmup,
        "spacing_s": spacing_s,
        **stats,
        "max_ms": round(ordered[-1], 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
        "min_ms": round(ordered[0], 3),
        "return_p50_ms": round(statistics.median(returns) * 1000, 3),
    }


# --- drain ----------------------------------------------------------------------------


async def measure_drain(settings: Settings, tasks: int) -> dict[str, Any]:
    """Throughput: N ``noop`` rows enqueued first, then time from service start to all done.

    The end is seen from the service's own count of outcomes written ``done`` (read every
    5 ms, no load on the database), then verified with a count in the database.
    """
    async with scratch(settings) as s:
        await s.database.execute(sql.queries["bench_enqueue_noops"], tasks)
        await s.database.execute(sql.queries["bench_analyze"])
        progress(f"drain: {tasks} noop tasks enqueued; starting the service")
        started = time.monotonic()
        async with running(s.database, s.settings, builtin_app()) as svc:
            await _wait_drained(svc, tasks, started)
            finished = time.monotonic()
            done = int(await s.database.fetchval(sql.queries["count_done"]))
        header = s.header
    if done != tasks:
        raise errors.NotifyqError(f"the service reported {tasks} done; the database has {done}")
    seconds = finished - started
    return {
        "benchmark": "drain",
        **header,
        "tasks": tasks,
        "done": done,
        "seconds": round(seconds, 3),
        "tasks_per_s": round(tasks / seconds, 1),
    }


async def _wait_drained(svc: service.Service, total: int, started: float) -> None:
    reported, last, last_change = 0, 0, started
    while (done := svc.pool.stats["done"]) < total:
        now = time.monotonic()
        if done != last:
            last, last_change = done, now
        elif now - last_change > STALL_TIMEOUT_S:
            raise errors.NotifyqError(
                f"drain stalled: {done}/{total} done, none finished for {STALL_TIMEOUT_S:g} s"
            )
        if done * 10 // total > reported:
            reported = done * 10 // total
            progress(f"  {done}/{total} done after {now - started:.2f} s")
        await trio.sleep(0.005)


# --- commands -------------------------------------------------------------------------


def _run(fn: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    from notifyq import cli

    return cli.run(fn)


def _settings(ctx: click.Context, **flags: Any) -> Settings:
    from notifyq import cli

    # LOG_LEVEL warning unless the flag or the environment says otherwise.
    level = (ctx.obj or {}).get("log_level") or os.environ.get("LOG_LEVEL") or "warning"
    return cli.settings_from(ctx, log_level=level, **flags)


def _report(
    result: dict[str, Any], as_json: bool, rows: list[tuple[str, str]], note: str = ""
) -> None:
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    r = result
    click.echo(f"notifyq bench {r['benchmark']}: PostgreSQL {r['server_version']} ({r['server']})")
    click.echo(f"  server: fsync={r['fsync']} synchronous_commit={r['synchronous_commit']}")
    click.echo("  settings: " + " ".join(f"{k}={v}" for k, v in r["settings"].items()))
    click.echo("  " + "  ".join(f"{name:>9}" for name, _ in rows))
    click.echo("  " + "  ".join(f"{value:>9}" for _, value in rows))
    if note:
        click.echo(f"  {note}")


@bench.command()
@click.option("--count", type=click.IntRange(1), default=200, show_default=True)
@click.option("--spacing", type=click.FloatRange(0, 60), default=0.02, show_default=True)
@click.option("--warmup", type=click.IntRange(0), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def latency(ctx: click.Context, count: int, spacing: float, warmup: int, as_json: bool) -> None:
    """Pickup latency on an idle service: INSERT commit -> handler start, in ms.

    COUNT probes are measured after WARMUP unmeasured ones; each is inserted SPACING
    seconds after the previous one started.
    """
    settings = _settings(ctx)
    r = _run(lambda: measure_latency(settings, count, spacing, warmup))
    names = ["p50", "p95", "p99", "max", "mean"]
    rows = [("probes", str(count))] + [(f"{n} ms", f"{r[n + '_ms']:.3f}") for n in names]
    note = (
        f"(from the INSERT's commit acknowledgement to the handler's start; the insert call"
        f" returned to trio {r['return_p50_ms']:.3f} ms after the acknowledgement, p50)"
    )
    _report(r, as_json, rows, note)


@bench.command()
@click.option("--tasks", type=click.IntRange(1), default=10_000, show_default=True)
@click.option("-w", "--workers", "worker_count", type=int, help="[WORKER_COUNT=5]")
@click.option("--fetch-limit", type=int, help="[FETCH_LIMIT=10]")
@click.option("-p", "--processes", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Above 1: that many `notifyq serve` subprocesses, woken by the INSERT.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def drain(
    ctx: click.Context, /, tasks: int, processes: int, as_json: bool, **flags: int | None
) -> None:
    """Throughput: enqueue TASKS noop tasks, then time a fresh service until all are done."""
    from notifyq import bench_load

    settings = _settings(ctx, **flags)
    if processes > 1:
        r = _run(lambda: bench_load.measure_drain_processes(settings, tasks, processes))
    else:
        r = _run(lambda: measure_drain(settings, tasks))
    rows = [("tasks", str(tasks)), ("seconds", f"{r['seconds']:.3f}")]
    _report(r, as_json, [*rows, ("tasks/s", f"{r['tasks_per_s']:.1f}")])



# The other subcommands (insert, backlog, rss, peers, all) register themselves on `bench`.
from notifyq import bench_commands  # noqa: E402, F401
