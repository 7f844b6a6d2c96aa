"""`notifyq bench insert | backlog | rss`: what notifyq costs producers, the claim on a
large table, and a serve process's memory.

``insert`` and ``rss`` run the service as a real ``notifyq serve`` subprocess (its own
process and core, as deployed); the producers and measurements run here. All three work
in a scratch database (see :mod:`notifyq.bench.common`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import trio

from notifyq import db, errors, sql
from notifyq.bench import cpu
from notifyq.bench.common import STALL_TIMEOUT_S, percentile, progress, queries, scratch
from notifyq.kinds import builtin_app
from notifyq.settings import Settings

READY_TIMEOUT_S = 30.0


async def poll_until(
    check: Callable[[], Awaitable[bool]], timeout_s: float = READY_TIMEOUT_S
) -> None:
    """Ask ``check`` every 50 ms until it says yes (a state in another process)."""
    with trio.fail_after(timeout_s):
        while True:
            if await check():
                return
            await trio.sleep(0.05)


# --- a serve subprocess -----------------------------------------------------------------


def rss_mb(pid: int) -> float:
    """Resident set size of a process (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise errors.NotifyqError(f"no VmRSS for process {pid}")


@asynccontextmanager
async def serving(
    database: db.Database,
    settings: Settings,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> AsyncIterator[trio.Process]:
    """``notifyq serve`` on the scratch database, ready (registered) when the block starts;
    ``env`` adds to (or overrides) its environment, ``cwd`` is its working directory.

    Stopped with two SIGINTs (the second skips the grace for running handlers).
    """
    extra = env or {}
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "LISTEN_DATABASE_URL": settings.listen_database_url or settings.database_url or "",
        "WORKER_COUNT": str(settings.worker_count),
        "FETCH_LIMIT": str(settings.fetch_limit),
        "LOG_LEVEL": "warning",
        "HTTP_PORT": "0",  # several processes at once: each on a free port
        **extra,
    }
    command = [sys.executable, "-m", "notifyq", "serve"]
    async with trio.open_nursery() as nursery:
        run = functools.partial(
            trio.run_process, command, env=env, cwd=cwd, check=False, stdout=subprocess.DEVNULL
        )
        proc: trio.Process = await nursery.start(run)
        try:

            async def registered() -> bool:
                if proc.returncode is not None:
                    raise errors.NotifyqError(f"notifyq serve exited {proc.returncode}")
                return bool(await database.fetchval(queries["count_workers"]))

            await poll_until(registered)
            yield proc
        finally:
            with trio.CancelScope(shield=True):
                for _ in range(2):
                    if proc.returncode is None:
                        proc.send_signal(signal.SIGINT)
                        with trio.move_on_after(5):
                            await proc.wait()
                if proc.returncode is None:
                    proc.kill()


# --- insert -----------------------------------------------------------------------------


def _client(query: str, i: int, deadline: float) -> Callable[[asyncpg.Connection], Awaitable[int]]:
    """One producer on its own connection: one row per transaction until ``deadline``."""

    async def client(conn: asyncpg.Connection) -> int:
        n = 0
        while time.monotonic() < deadline:
            await conn.execute(query, {"client": i, "n": n})  # prepared, cached
            n += 1
        return n

    return client


async def _storm(producers: db.Database, query: str, clients: int, seconds: float) -> int:
    """``clients`` connections of ``producers`` at once, each inserting one row per
    transaction for ``seconds``; the rows inserted."""
    deadline = time.monotonic() + seconds
    counts = [0] * clients

    async def client(i: int) -> None:
        counts[i] = await producers.run(_client(query, i, deadline))

    async with trio.open_nursery() as nursery:
        for i in range(clients):
            nursery.start_soon(client, i)
    return sum(counts)


async def measure_insert(
    settings: Settings, clients: int, seconds: float, *, unique: bool = False
) -> dict[str, Any]:
    """Producers' single-row insert rate into notifyq.tasks vs the same table without
    triggers, with the service's workers idle (waiting) and busy. With ``unique``, also busy
    with a unique_key per row, and busy with one key for all (skipped duplicates)."""
    phases: dict[str, float] = {}
    async with scratch(settings) as s:
        await s.database.execute(queries["plain_table"])
        url = s.settings.database_url or ""
        async with db.open_database(url, min_size=clients, max_size=clients) as producers:

            async def phase(name: str, query: str) -> None:
                progress(f"insert: {name}, {clients} clients for {seconds:g} s")
                rows = await _storm(producers, query, clients, seconds)
                phases[name] = rows / seconds

            plain, tasks = queries["insert_plain"], queries["insert_task"]
            async with serving(s.database, s.settings):
                await phase("plain", plain)
                await phase("idle", tasks)  # the service waits: inserts notify and wake it
                await phase("plain_again", plain)
                # Occupy every slot (workers and the claim-ahead buffer) for the phase.
                slots = max(s.settings.worker_count, s.settings.fetch_limit)
                await s.database.execute(queries["occupy"], slots, seconds * 3 + 30)

                async def occupied() -> bool:
                    running = await s.database.fetchval(queries["count_running"])
                    # Every worker busy. The claim-ahead buffer may stay part empty: the
                    # claimer tops it up only when half a batch fits (engine/claimer.py).
                    return bool(running >= s.settings.worker_count)

                await poll_until(occupied)
                await phase("busy", tasks)  # nobody waits: inserts never notify
                if unique:
                    await phase("busy_unique", queries["insert_task_unique"])
                    await phase("busy_duplicate", queries["insert_task_duplicate"])
        header = s.header
    baseline = (phases["plain"] + phases["plain_again"]) / 2
    return {
        "benchmark": "insert",
        **header,
        "clients": clients,
        "seconds_per_phase": seconds,
        "plain_per_s": round(baseline, 1),
        "idle_per_s": round(phases["idle"], 1),
        "busy_per_s": round(phases["busy"], 1),
        "plain_runs_per_s": [round(phases["plain"], 1), round(phases["plain_again"], 1)],
        "idle_ratio": round(phases["idle"] / baseline, 3),
        "busy_ratio": round(phases["busy"] / baseline, 3),
        **(
            {
                "busy_unique_per_s": round(phases["busy_unique"], 1),
                "busy_duplicate_per_s": round(phases["busy_duplicate"], 1),
                "busy_unique_ratio": round(phases["busy_unique"] / baseline, 3),
            }
            if unique
            else {}
        ),
    }


# --- backlog ----------------------------------------------------------------------------


def _claim_loop(
    worker_id: str, want: int, rounds: int
) -> Callable[[asyncpg.Connection], Awaitable[list[float]]]:
    """Claim ``want`` rows and release them again, ``rounds`` times; the claims' times."""
    claim, finish = sql.queries["claim"], sql.queries["finish"]
    kinds = sorted(builtin_app().handlers)  # what a process without --app claims

    async def loop(conn: asyncpg.Connection) -> list[float]:
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            rows = await conn.fetch(claim, ["default"], want, worker_id, 30.0, kinds)
            times.append(time.perf_counter() - started)
            n = len(rows)
            await conn.execute(
                finish,
                worker_id,
                [r["id"] for r in rows],
                [r["attempts"] for r in rows],
                ["released"] * n,
                [None] * n,
                [None] * n,
                [0.0] * n,
                [r["claim_token"] for r in rows],
                [None] * n,
            )
        return times

    return loop


async def _claim_times(database: db.Database, want: int, rounds: int) -> dict[str, float]:
    await database.run(_claim_loop("bench", want, 20))  # prepare, warm the cache
    times = sorted(t * 1000 for t in await database.run(_claim_loop("bench", want, rounds)))
    return {
        "p50_ms": round(statistics.median(times), 3),
        "p95_ms": round(percentile(times, 95), 3),
    }


async def measure_backlog(
    settings: Settings, finished: int, pending: int, rounds: int
) -> dict[str, Any]:
    """Claim latency (FETCH_LIMIT rows, then released) on a table holding only a few
    pending rows, then with ``finished`` done rows and ``pending`` pending ones."""
    want = settings.fetch_limit
    async with scratch(settings) as s:
        database = s.database
        await database.execute(queries["enqueue_noops"], want * 10)
        await database.execute(queries["vacuum"])
        progress(f"backlog: {rounds} claims of {want} on an empty table")
        empty = await _claim_times(database, want, rounds)
        progress(f"backlog: loading {finished} finished and {pending} pending rows")
        await database.execute(queries["triggers_off"])
        await database.execute(queries["fill_finished"], finished)
        await database.execute(queries["enqueue_noops"], pending)
        await database.execute(queries["triggers_on"])
        await database.execute(queries["vacuum"])
        progress(f"backlog: {rounds} claims of {want} on the loaded table")
        loaded = await _claim_times(database, want, rounds)
        header = s.header
    return {
        "benchmark": "backlog",
        **header,
        "claim_rows": want,
        "rounds": rounds,
        "finished_rows": finished,
        "pending_rows": pending,
        "empty": empty,
        "loaded": loaded,
        "ratio_p50": round(loaded["p50_ms"] / empty["p50_ms"], 3),
    }


# --- drain with serve processes ----------------------------------------------------------


async def measure_drain_processes(settings: Settings, tasks: int, processes: int) -> dict[str, Any]:
    """Throughput of ``processes`` serve subprocesses: all start idle, then ``tasks`` noop
    rows arrive in one INSERT (whose NOTIFY wakes them); timed from that commit until the
    database has no pending or running row, then verified with a count."""
    async with scratch(settings) as s, contextlib.AsyncExitStack() as stack:
        pids = []
        for _ in range(processes):
            pids.append((await stack.enter_async_context(serving(s.database, s.settings))).pid)
        progress(f"drain: {processes} serve processes up; enqueueing {tasks} noop tasks")
        meter = cpu.Meter(int(await s.database.fetchval(queries["backend_pid"])), pids)
        started = time.monotonic()
        await s.database.execute(queries["enqueue_noops"], tasks)
        await s.database.execute(queries["analyze"])

        async def drained() -> bool:
            return not await s.database.fetchval(queries["unfinished"])

        await poll_until(drained, timeout_s=STALL_TIMEOUT_S + tasks / 100)
        seconds = time.monotonic() - started
        spent = meter.per_task(tasks)
        done = int(await s.database.fetchval(queries["count_done"]))
        header = s.header
    if done != tasks:
        raise errors.NotifyqError(f"drain: {done} of {tasks} tasks done")
    return {
        "benchmark": "drain",
        **header,
        "processes": processes,
        "tasks": tasks,
        "done": done,
        "seconds": round(seconds, 3),
        "tasks_per_s": round(tasks / seconds, 1),
        **spent,  # the serve processes' CPU (from /proc), and the server's
    }


# --- rss --------------------------------------------------------------------------------


async def measure_rss(settings: Settings, tasks: int) -> dict[str, Any]:
    """A serve subprocess's resident memory: idle, during and after draining ``tasks``."""
    async with scratch(settings) as s:
        database = s.database
        async with serving(database, s.settings) as proc:
            await trio.sleep(1.0)
            idle = rss_mb(proc.pid)
            progress(f"rss: idle serve process {idle:.1f} MiB; enqueueing {tasks} noop tasks")
            await database.execute(queries["enqueue_noops"], tasks)
            await database.execute(queries["analyze"])
            started, peak, last_report = time.monotonic(), idle, time.monotonic()
            while await database.fetchval(queries["unfinished"]):
                peak = max(peak, rss_mb(proc.pid))
                if time.monotonic() - last_report > 5:
                    last_report = time.monotonic()
                    progress(
                        f"  rss {rss_mb(proc.pid):.1f} MiB after {last_report - started:.0f} s"
                    )
                await trio.sleep(0.25)
            seconds = time.monotonic() - started
            await trio.sleep(1.0)
            after = rss_mb(proc.pid)
            done = int(await database.fetchval(queries["count_done"]))
        header = s.header
    if done != tasks:
        raise errors.NotifyqError(f"rss: {done} of {tasks} tasks done")
    return {
        "benchmark": "rss",
        **header,
        "tasks": tasks,
        "done": done,
        "drain_seconds": round(seconds, 3),
        "drain_tasks_per_s": round(tasks / seconds, 1),
        "idle_mb": round(idle, 1),
        "peak_mb": round(peak, 1),
        "after_mb": round(after, 1),
        "growth_pct": round((after / idle - 1) * 100, 1),
    }
