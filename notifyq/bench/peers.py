"""`notifyq bench peers`: the same drain and latency runs for PgQueuer, procrastinate and
graphile-worker.

Each peer runs in its own subprocess against its own scratch database on the same server,
used the way its documentation shows. The Python peers run as ``python -m
notifyq.bench.peers``, on plain asyncio (PgQueuer on uvloop, as its CLI does): PgQueuer's
``PgQueuer(AsyncpgDriver(conn))`` with an entrypoint and ``qm.run(batch_size=...)``;
procrastinate's ``App(PsycopgConnector)`` with a task and ``run_worker_async(concurrency=
...)``. graphile-worker runs as ``node graphile_runner.mjs`` (:mod:`notifyq.bench.graphile`):
``run({taskList, preset: {worker: {...}}})``, one process. All are optional (`pip install
notifyq[bench]`, `make bench-peers`); a peer that is not installed is reported as skipped,
with the reason, not faked.

Measured as notifyq is: drain = N no-op jobs enqueued in one call, then time from the
worker's start until all are done (verified in the database), with the CPU time of the
worker process and of the server per task (:mod:`notifyq.bench.cpu`); latency = one job at
a time from a separate connection, commit acknowledgement -> handler start on one
monotonic clock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.metadata
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import trio

from notifyq import errors
from notifyq.bench import cpu, graphile
from notifyq.bench.common import empty_database, percentile, progress, queries
from notifyq.settings import Settings

PEERS: dict[str, dict[str, Any]] = {
    # PgQueuer, tuned for throughput: batches of 100, no concurrency cap.
    "pgqueuer_b100": {"package": "pgqueuer", "batch_size": 100},
    # PgQueuer with its CLI defaults (batch 10).
    "pgqueuer_b10": {"package": "pgqueuer", "batch_size": 10},
    # procrastinate with 10 concurrent jobs per worker.
    "procrastinate_c10": {"package": "procrastinate", "concurrency": 10},
    # graphile-worker as the drain goal compares against it: one process, 24 concurrent jobs, a local queue of
    # 500 and batched completes (delay 0: what one turn of the event loop completed).
    "graphile_c24_lq500": {
        "package": "graphile-worker",
        "concurrency": 24,
        "local_queue": 500,
        "complete_batch_delay_ms": 0,
    },
    # The same without the local queue (each worker fetches its own job).
    "graphile_c24": {
        "package": "graphile-worker",
        "concurrency": 24,
        "local_queue": None,
        "complete_batch_delay_ms": 0,
    },
}


def skip_reason(peer: str) -> str | None:
    """Why ``peer`` cannot run here (None: it can)."""
    package = PEERS[peer]["package"]
    if package == "graphile-worker":
        return graphile.missing()
    if importlib.util.find_spec(package) is None:
        return f"{package} is not installed"
    return None


def latency_stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(x * 1000 for x in samples)
    stats = {f"p{p}_ms": round(percentile(ordered, p), 3) for p in (50, 95, 99)}
    return {
        **stats,
        "max_ms": round(ordered[-1], 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
    }


class Starts:
    """Handler start times by probe number, with a way to wait for one."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}
        self.changed = asyncio.Event()

    def record(self, seq: int) -> None:
        self.at[seq] = time.monotonic()
        self.changed.set()

    async def wait_for(self, seq: int) -> float:
        async with asyncio.timeout(10):
            while seq not in self.at:
                self.changed.clear()
                await self.changed.wait()
        return self.at.pop(seq)


async def probe_loop(
    insert: Any, starts: Starts, count: int, spacing_s: float, warmup: int
) -> list[float]:
    samples = []
    for seq in range(warmup + count):
        await insert(seq)
        acked = time.monotonic()
        started = await starts.wait_for(seq)
        if seq >= warmup:
            samples.append(started - acked)
        await asyncio.sleep(spacing_s)
    return samples


BACKEND_PID = queries["backend_pid"]

# --- PgQueuer -------------------------------------------------------------------------


async def pgqueuer_run(dsn: str, mode: str, opts: dict[str, Any]) -> dict[str, Any]:
    import asyncpg
    from pgqueuer import PgQueuer
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.domain.types import QueueExecutionMode
    from pgqueuer.models import Job
    from pgqueuer.queries import Queries

    conn = await asyncpg.connect(dsn)
    producer = await asyncpg.connect(dsn)
    await Queries(AsyncpgDriver(producer)).install()
    queries = Queries(AsyncpgDriver(producer))
    pgq = PgQueuer(AsyncpgDriver(conn))
    starts = Starts()

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        if job.payload:
            starts.record(int(job.payload))

    batch = opts["batch_size"]
    if mode == "drain":
        n = opts["tasks"]
        await queries.enqueue(["noop"] * n, [None] * n, [0] * n)
        meter = cpu.Meter(await producer.fetchval(BACKEND_PID))
        started = time.monotonic()
        await pgq.qm.run(batch_size=batch, mode=QueueExecutionMode.drain)
        seconds = time.monotonic() - started
        spent = meter.per_task(n)
        left = await producer.fetchval("SELECT count(*) FROM pgqueuer")
        done = await producer.fetchval(
            "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'"
        )
        return {"tasks": n, "done": done - left, "seconds": seconds, **spent}
    worker = asyncio.create_task(pgq.qm.run(batch_size=batch))

    async def insert(seq: int) -> None:
        await queries.enqueue("noop", str(seq).encode())

    await asyncio.sleep(0.5)
    samples = await probe_loop(insert, starts, opts["count"], opts["spacing"], opts["warmup"])
    pgq.qm.shutdown.set()
    await worker
    return latency_stats(samples)


# --- procrastinate ----------------------------------------------------------------------


async def procrastinate_run(dsn: str, mode: str, opts: dict[str, Any]) -> dict[str, Any]:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))
    starts = Starts()

    @app.task(name="noop")
    async def noop(seq: int | None = None) -> None:
        if seq is not None:
            starts.record(seq)

    worker_opts: dict[str, Any] = {
        "concurrency": opts["concurrency"],
        "install_signal_handlers": False,
    }
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        if mode == "drain":
            n = opts["tasks"]
            await noop.batch_defer_async(*([{}] * n))
            backend = await app.connector.execute_query_one_async(BACKEND_PID + " AS pid")
            meter = cpu.Meter(backend["pid"])
            started = time.monotonic()
            await app.run_worker_async(wait=False, **worker_opts)
            seconds = time.monotonic() - started
            spent = meter.per_task(n)
            row = await app.connector.execute_query_one_async(
                "SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'succeeded'"
            )
            return {"tasks": n, "done": row["n"], "seconds": seconds, **spent}
        worker = asyncio.create_task(app.run_worker_async(**worker_opts))

        async def insert(seq: int) -> None:
            await noop.defer_async(seq=seq)

        await asyncio.sleep(0.5)
        samples = await probe_loop(insert, starts, opts["count"], opts["spacing"], opts["warmup"])
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
    return latency_stats(samples)


# --- the parent side: scratch databases and subprocesses --------------------------------


async def measure_peers(
    settings: Settings,
    tasks: int,
    count: int,
    spacing_s: float,
    warmup: int,
    only: Sequence[str] = (),
) -> dict[str, Any]:
    """Drain and latency of every peer configuration (or of those in ``only``), each in a
    fresh database."""
    results: dict[str, Any] = {}
    for peer in only or PEERS:
        reason = skip_reason(peer)
        if reason is not None:
            results[peer] = {"skipped": reason}
            progress(f"peers: {peer} skipped ({reason})")
            continue
        entry: dict[str, Any] = {}
        runs: list[tuple[str, dict[str, Any]]] = [
            ("drain", {"tasks": tasks}),
            ("latency", {"count": count, "spacing": spacing_s, "warmup": warmup}),
        ]
        for mode, opts in runs:
            async with empty_database(settings) as (_, url, _):
                progress(f"peers: {peer} {mode}")
                call = functools.partial(run_peer, peer, url, mode, **opts)
                try:
                    entry[mode] = await trio.to_thread.run_sync(call)
                except RuntimeError as exc:
                    raise errors.NotifyqError(str(exc)) from None
        if entry["drain"]["done"] != tasks:
            raise errors.NotifyqError(f"{peer}: {entry['drain']['done']} of {tasks} done")
        results[peer] = entry
    return results


def run_peer(peer: str, dsn: str, mode: str, **opts: Any) -> dict[str, Any]:
    """Run one peer benchmark in a subprocess; its result, with the drain's rates per task."""
    if PEERS[peer]["package"] == "graphile-worker":
        raw = graphile.run(dsn, mode, {**PEERS[peer], **opts})
        result: dict[str, Any] = {"peer": peer, "version": raw["version"]}
        result["loop"] = f"node {raw['node']}"
        if mode == "latency":
            return {**result, **latency_stats(raw["samples_s"])}
        n = raw["tasks"]
        result |= {k: raw[k] for k in ("tasks", "done", "seconds")}
        result["cpu_us_per_task"] = cpu.per_task_us(raw["cpu_s"], n)
        result["server_cpu_us_per_task"] = cpu.per_task_us(raw["server_cpu_s"], n)
    else:
        args = [sys.executable, "-m", "notifyq.bench.peers", peer, mode, dsn, json.dumps(opts)]
        done = subprocess.run(args, capture_output=True, text=True, timeout=1800, check=False)
        if done.returncode != 0:
            tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"{peer} {mode} failed: {tail[0]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
    if mode == "drain":
        result["tasks_per_s"] = round(result["tasks"] / result["seconds"], 1)
        result["seconds"] = round(result["seconds"], 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m notifyq.bench.peers")
    python_peers = sorted(p for p, o in PEERS.items() if o["package"] != "graphile-worker")
    parser.add_argument("peer", choices=python_peers)
    parser.add_argument("mode", choices=["drain", "latency"])
    parser.add_argument("dsn")
    parser.add_argument("options", help="JSON: tasks | count, spacing, warmup")
    a = parser.parse_args()
    opts = {**PEERS[a.peer], **json.loads(a.options)}
    if opts["package"] == "pgqueuer":
        try:
            import uvloop
        except ImportError:  # plain asyncio then; the report names the loop
            result = asyncio.run(pgqueuer_run(a.dsn, a.mode, opts))
            loop = "asyncio"
        else:
            result = uvloop.run(pgqueuer_run(a.dsn, a.mode, opts))
            loop = "uvloop"
    else:
        result = asyncio.run(procrastinate_run(a.dsn, a.mode, opts))
        loop = "asyncio"
    version = importlib.metadata.version(opts["package"])
    print(json.dumps({"peer": a.peer, "version": version, "loop": loop, **result}))


if __name__ == "__main__":
    main()
