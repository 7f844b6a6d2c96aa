"""`notifyq bench latency | drain`: pickup latency and drain throughput of an in-process
:class:`~notifyq.engine.service.Service`, measured on a real PostgreSQL.

Both run in a scratch database (see :mod:`notifyq.bench.common`). Everything runs in this
one process and trio thread, so the service, the inserter and the measurement share one
CPU core.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import trio

from notifyq import db, errors, limits, store
from notifyq.app import App, Task
from notifyq.bench import cpu
from notifyq.bench.common import (
    PROBE_TIMEOUT_S,
    STALL_TIMEOUT_S,
    percentile,
    progress,
    queries,
    running,
    scratch,
)
from notifyq.engine.service import Service
from notifyq.kinds import builtin_app
from notifyq.settings import Settings

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
        task_id = await conn.fetchval(queries["insert_probe"], {"seq": seq})
        # Autocommit: the statement's result is the commit's acknowledgement. Read the
        # clock here, on the asyncio side, before the hop back to trio (which would make
        # t_commit late and the latency look smaller).
        return int(task_id), time.monotonic()

    return insert


async def measure_latency(
    settings: Settings, count: int, spacing_s: float, warmup: int
) -> dict[str, Any]:
    """Pickup latency on an idle service: INSERT commit -> handler start.

    A second connection (not the service's; held, so no pool reset runs after each probe)
    inserts one ``bench_probe`` row at a time in autocommit; t_commit = time.monotonic() as
    soon as the INSERT's result (the commit's acknowledgement) arrives, in the asyncio
    coroutine, before the hop back to trio. The handler reads time.monotonic() at its start.

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
            db.open_database(s.settings.database_url or "", min_size=1, max_size=1) as pool,
            # Held: a pooled call would add the pool's reset round trip right after each
            # probe's commit, in this process, while the service picks the probe up (the
            # peers' probes use a plain connection; measured: +0.2 ms of p50 otherwise).
            pool.held() as inserter,
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


HANDLER_RUNTIMES = ("trio", "thread", "asyncio")


def noop_app(runtime: str) -> App:
    """The built-in kinds, with ``noop`` as a handler of ``runtime``: an ``async def`` on
    trio (the built-in one), a plain ``def`` (in a worker thread) or an asyncio coroutine."""
    app = builtin_app()
    if runtime == "thread":

        def noop_in_a_thread(task: Task) -> None:
            return None

        app.handler("noop")(noop_in_a_thread)
    elif runtime == "asyncio":

        async def noop_on_asyncio(task: Task) -> None:
            return None

        app.handler("noop", runtime="asyncio")(noop_on_asyncio)
    elif runtime != "trio":
        raise ValueError(f"handler runtime must be one of {HANDLER_RUNTIMES}, got {runtime!r}")
    return app


def transactional_noop_app(runtime: str) -> App:
    """:func:`noop_app`, with ``noop`` registered ``transactional=True``: each task holds a
    connection and commits its own ``done`` (README "Transactional handlers")."""
    app = noop_app(runtime)
    noop = app.handlers["noop"]
    app.handlers["noop"] = replace(noop, transactional=True)
    return app


async def measure_drain(
    settings: Settings,
    tasks: int,
    handler: str = "trio",
    *,
    concurrency: int | None = None,
    unique: bool = False,
    transactional: bool = False,
) -> dict[str, Any]:
    """Throughput: N ``noop`` rows enqueued first, then time from service start to all done.
    ``handler``: the runtime of the ``noop`` handler (trio, thread or asyncio);
    ``transactional``: registered ``transactional=True`` (no outcome batching).

    The end is seen from the service's own count of outcomes written ``done`` (read every
    5 ms, no load on the database), then verified with a count in the database. With
    ``concurrency`` the queue gets that fleet-wide limit (claims go through claim_limited);
    ``unique`` every task has a unique_key of its own. ``cpu_us_per_task``: user + system
    CPU of this process over the drain, per task; ``server_cpu_us_per_task``: the
    server's, when it runs on this machine (see :mod:`notifyq.bench.cpu`), else None.
    """
    async with scratch(settings) as s:
        if concurrency is not None:
            await store.set_queue_limits(
                s.database, limits.change(settings.queues[0], concurrency=concurrency)
            )
        enqueue = queries["enqueue_noops_unique"] if unique else queries["enqueue_noops"]
        await s.database.execute(enqueue, tasks)
        await s.database.execute(queries["analyze"])
        progress(f"drain: {tasks} noop tasks enqueued; starting the service")
        # CPU of this whole process: the service, and the 5 ms progress loop here.
        meter = cpu.Meter(int(await s.database.fetchval(queries["backend_pid"])))
        started = time.monotonic()
        app = transactional_noop_app(handler) if transactional else noop_app(handler)
        async with running(s.database, s.settings, app) as svc:
            await _wait_drained(svc, tasks, started)
            finished = time.monotonic()
            spent = meter.per_task(tasks)
            done = int(await s.database.fetchval(queries["count_done"]))
        header = s.header
    if done != tasks:
        raise errors.NotifyqError(f"the service reported {tasks} done; the database has {done}")
    seconds = finished - started
    return {
        "benchmark": "drain",
        **header,
        "unique_keys": unique,
        "handler": handler,
        "transactional": transactional,
        "tasks": tasks,
        "done": done,
        "concurrency_limit": concurrency,
        "seconds": round(seconds, 3),
        "tasks_per_s": round(tasks / seconds, 1),
        **spent,
    }


async def _wait_drained(svc: Service, total: int, started: float) -> None:
    reported, last, last_change = 0, 0, started
    while (done := svc.statistics().workers.done) < total:
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
