"""`notifyq bench scale`: drain throughput of 1, 2, 4, ... `notifyq worker` processes.

Scale-out is many processes on one PostgreSQL. For each process count N this command
creates a scratch database ``notifyq_scale_<random>`` on the configured server (as the
other benchmarks do), migrates it, starts N real `notifyq worker` subprocesses there, waits
until all N have registered, enqueues the same workload in one statement (``noop`` tasks, or with
``--sleep`` tasks whose handler waits, like I/O-bound work) and times until every task is
``done``; then it checks that each task was completed exactly once, stops the processes
with SIGTERM and drops the database.

The processes, the server and this command share the machine's cores: on a small machine
the figure says as much about the cores as about notifyq.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO, Any

import trio

from notifyq import db, errors, logs, migrations, settings
from notifyq.bench.common import STALL_TIMEOUT_S, empty_database_at, progress, queries
from notifyq.serving import embedded
from notifyq.settings import Settings

REGISTER_TIMEOUT_S = 60.0  # all N processes registered by then, or the run fails
STOP_TIMEOUT_S = 30.0
POLL_S = 0.02


@asynccontextmanager
async def scratch_database(dsn: str) -> AsyncIterator[str]:
    """A fresh, migrated database on the server of ``dsn``; dropped (FORCE) at the end."""
    async with empty_database_at(dsn, "notifyq_scale_") as (_server, url, _name):
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
        while await database.fetchval(queries["count_workers"]) < len(procs):
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
    while (done := await database.fetchval(queries["count_done"])) < total:
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
            await database.execute(queries["enqueue_sleeps"], tasks, sleep_s)
        else:
            await database.execute(queries["enqueue_noops"], tasks)
        await _wait_drained(database, tasks, started)
        seconds = time.monotonic() - started
        check = await database.fetchrow(queries["exactly_once"])
        shares = [r["done"] for r in await database.fetch(queries["done_by_worker"])]
    # A process that finished nothing is listed too, as 0: with PREFETCH=auto one process
    # may claim a whole small batch of short tasks before the others wake.
    shares += [0] * (processes - len(shares))
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
    dsn = await embedded.resolve_dsn(settings_)
    runs = []
    for n in counts:
        progress(f"scale: {n} process(es), {tasks} {describe(sleep_s)}")
        runs.append(await measure_one(dsn, n, tasks, sleep_s, env))
    base = runs[0]["tasks_per_s"] / runs[0]["processes"]
    for r in runs:
        r["speedup_per_process"] = round(r["tasks_per_s"] / (base * r["processes"]), 2)
    async with db.open_database(dsn, min_size=1, max_size=1) as database:
        server = await database.fetchrow(queries["server_facts"])
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


def describe(sleep_s: float) -> str:
    """The workload in words."""
    return f"sleep tasks of {sleep_s:g} s" if sleep_s else "noop tasks"
