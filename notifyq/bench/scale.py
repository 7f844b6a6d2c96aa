"""`notifyq bench scale`: drain throughput of 1, 2, 4, ... `notifyq worker` processes.

Scale-out is many processes on one PostgreSQL. For each process count N this command
creates a scratch database ``notifyq_scale_<random>`` on the configured server (as `bench`
does), migrates it, starts N real `notifyq worker` subprocesses there, waits until all N
have registered, enqueues the same workload in one statement (``noop`` tasks, or with
``--sleep`` tasks whose handler waits, like I/O-bound work) and times until every task is
``done``; then it checks that each task was completed exactly once, stops the processes
with SIGTERM and drops the database.

The processes, the server and this command share the machine's cores: on a small machine
the figure says as much about the cores as about notifyq.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO, Any

import click
import trio

from notifyq import bench, db, errors, logs, migrations, settings, sql
from notifyq.settings import Settings

REGISTER_TIMEOUT_S = 60.0  # all N processes registered by then, or the run fails
STALL_TIMEOUT_S = 30.0  # a drain that finishes nothing for this long fails the run
STOP_TIMEOUT_S = 30.0
POLL_S = 0.02


@asynccontextmanager
async def scratch_database(dsn: str) -> AsyncIterator[str]:
    """A fresh, migrated database on the server of ``dsn``; dropped (FORCE) at the end."""
    async with bench.empty_database_at(dsn, "notifyq_scale_") as (_server, url, _name):
        async with db.open_database(url, min_size=1, max_size=2) as database:
            await migrations.migrate(database)
        yield url


@asynccontextmanager
async def worker_processes(
    url: str, count: int, env: dict[str, str]
) -> AsyncIterator[list[trio.Process]]:
    """``count`` `notifyq worker` subprocesses on ``url``; SIGTERM (then SIGKILL) at exit."""
    # The user's notifyq settings stay out, except the ones passed on purpose in ``env``.
    base = {k: v for k, v in os.environ.items() if k.upper() not in settings.ENV_NAMES}
    base.update({"DATABASE_URL": url, "LOG_LEVEL": "warning", "LOG_FORMAT": "json", **env})
    procs: list[trio.Process] = []
    logs_: list[IO[bytes]] = []
    try:
        for _ in range(count):
            log_file = tempfile.TemporaryFile()  # noqa: SIM115 (closed below)
            logs_.append(log_file)
            procs.append(
                await trio.lowlevel.open_process(
                    [sys.executable, "-m", "notifyq", "worker"],
                    env=base,
                    stdout=log_file,
                    stderr=log_file,
                )
            )
        yield procs
    finally:
        with trio.CancelScope(shield=True):
            for proc in procs:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
            with trio.move_on_after(STOP_TIMEOUT_S):
                for proc in procs:
                    await proc.wait()
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            for file in logs_:
                file.close()


async def _wait_registered(database: db.Database, procs: list[trio.Process]) -> None:
    with trio.move_on_after(REGISTER_TIMEOUT_S):
        while await database.fetchval(sql.queries["scale_workers"]) < len(procs):
            dead = [p.returncode for p in procs if p.returncode is not None]
            if dead:
                raise errors.NotifyqError(f"a worker process exited with status {dead[0]}")
            await trio.sleep(POLL_S)
        return
    raise errors.NotifyqError(
        f"{len(procs)} worker processes did not all register within {REGISTER_TIMEOUT_S:g} s"
    )


async def _wait_drained(database: db.Database, total: int, started: float) -> None:
    last, last_change = -1, started
    while (done := await database.fetchval(sql.queries["scale_count_done"])) < total:
        now = time.monotonic()
        if done != last:
            last, last_change = done, now
        elif now - last_change > STALL_TIMEOUT_S:
            raise errors.NotifyqError(
                f"drain stalled: {done}/{total} done, none finished for {STALL_TIMEOUT_S:g} s"
            )
        await trio.sleep(POLL_S)


async def measure_one(
    dsn: str, processes: int, tasks: int, sleep_s: float, env: dict[str, str]
) -> dict[str, Any]:
    """Drain ``tasks`` tasks (``noop``, or ``sleep`` for ``sleep_s`` when above 0) with
    ``processes`` worker processes; the figures as a dict."""
    async with (
        scratch_database(dsn) as url,
        db.open_database(url, min_size=1, max_size=2) as database,
        worker_processes(url, processes, env) as procs,
    ):
        await _wait_registered(database, procs)
        started = time.monotonic()
        if sleep_s:
            await database.execute(sql.queries["scale_enqueue_sleeps"], tasks, sleep_s)
        else:
            await database.execute(sql.queries["scale_enqueue_noops"], tasks)
        await _wait_drained(database, tasks, started)
        seconds = time.monotonic() - started
        check = await database.fetchrow(sql.queries["scale_exactly_once"])
        shares = [r["done"] for r in await database.fetch(sql.queries["scale_shares"])]
    assert check is not None
    if (check["tasks"], check["missing"], check["twice"]) != (tasks, 0, 0):
        raise errors.NotifyqError(f"not exactly once: {dict(check)}")
    return {
        "processes": processes,
        "seconds": round(seconds, 3),
        "tasks_per_s": round(tasks / seconds, 1),
        "per_process_done": shares,
    }


async def measure_scale(
    settings_: Settings, counts: list[int], tasks: int, sleep_s: float, env: dict[str, str]
) -> dict[str, Any]:
    from notifyq import cli  # notifyq.cli imports this module to register the command

    dsn = await cli.resolve_dsn(settings_)
    runs = []
    for n in counts:
        click.echo(f"scale: {n} process(es), {tasks} {_what(sleep_s)}", err=True)
        runs.append(await measure_one(dsn, n, tasks, sleep_s, env))
    base = runs[0]["tasks_per_s"] / runs[0]["processes"]
    for r in runs:
        r["speedup_per_process"] = round(r["tasks_per_s"] / (base * r["processes"]), 2)
    async with db.open_database(dsn, min_size=1, max_size=1) as database:
        server = await database.fetchrow(sql.queries["server_facts"])
    return {
        "benchmark": "scale",
        "server": logs.redact(dsn),
        **dict(server or {}),
        "cpu_count": os.cpu_count(),
        "tasks": tasks,
        "kind": "sleep" if sleep_s else "noop",
        "sleep_s": sleep_s,
        "worker_env": env,
        "runs": runs,
    }


def _what(sleep_s: float) -> str:
    return f"sleep tasks of {sleep_s:g} s" if sleep_s else "noop tasks"


def _counts(_ctx: Any, _param: Any, value: str) -> list[int]:
    try:
        counts = [int(v) for v in value.split(",")]
    except ValueError:
        counts = []
    if not counts or any(not 1 <= n <= 64 for n in counts):
        raise click.BadParameter("expected comma-separated process counts from 1 to 64")
    return counts


@click.command()
@click.option(
    "--processes",
    default="1,2,4",
    show_default=True,
    callback=_counts,
    help="Comma-separated numbers of worker processes to measure.",
)
@click.option("--tasks", type=click.IntRange(1), default=5000, show_default=True)
@click.option(
    "--sleep",
    "sleep_s",
    type=click.FloatRange(0, 60),
    default=0.0,
    help="Enqueue `sleep` tasks of this many seconds (handlers that wait) instead of `noop`.",
)
@click.option("-w", "--workers", "worker_count", type=click.IntRange(1), help="[WORKER_COUNT=5]")
@click.option("--fetch-limit", type=click.IntRange(1), help="[FETCH_LIMIT=10]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def scale(
    ctx: click.Context,
    processes: list[int],
    tasks: int,
    sleep_s: float,
    worker_count: int | None,
    fetch_limit: int | None,
    as_json: bool,
) -> None:
    """Scale-out: drain TASKS tasks with 1, 2, 4... `notifyq worker` processes."""
    from notifyq import cli

    level = (ctx.obj or {}).get("log_level") or os.environ.get("LOG_LEVEL") or "warning"
    settings_ = cli.settings_from(ctx, log_level=level)
    env = {}
    if worker_count:
        env["WORKER_COUNT"] = str(worker_count)
    if fetch_limit:
        env["FETCH_LIMIT"] = str(fetch_limit)
    r = cli.run(lambda: measure_scale(settings_, processes, tasks, sleep_s, env))
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    click.echo(
        f"notifyq bench scale: {tasks} {_what(sleep_s)}, PostgreSQL {r['server_version']} "
        f"({r['server']}), {r['cpu_count']} cores shared by the server and the processes"
    )
    click.echo(f"  server: fsync={r['fsync']} synchronous_commit={r['synchronous_commit']}")
    click.echo(f"  per process: {' '.join(f'{k}={v}' for k, v in env.items()) or 'defaults'}")
    click.echo(f"  {'processes':>9}  {'seconds':>8}  {'tasks/s':>8}  {'per-proc':>8}  done by each")
    for run in r["runs"]:
        click.echo(
            f"  {run['processes']:>9}  {run['seconds']:>8.3f}  {run['tasks_per_s']:>8.1f}  "
            f"{run['speedup_per_process']:>7.2f}x  {' '.join(map(str, run['per_process_done']))}"
        )
    click.echo("  (per-proc: throughput per process relative to the first row; 1.00x is linear)")
