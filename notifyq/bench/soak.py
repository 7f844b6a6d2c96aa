"""`notifyq bench soak`: a steady offered rate for a long time, sampled every interval.

Two real ``notifyq worker`` processes (as in `bench harsh`, :mod:`notifyq.bench.harsh`)
serve a scratch database while this process inserts ``noop`` tasks at a steady rate. Every
``sample_s`` seconds it reads the workers' resident memory (``/proc/<pid>/status``), the
live and dead rows of ``notifyq.tasks`` and its size with indexes, the pending backlog and
autovacuum's count. After the run, for the tasks inserted in each interval: how many, the
pickup latency (first ``started`` event minus ``created_at``: the wake-up and the claim)
and the end-to-end latency (``done`` minus ``created_at``), p50 / p95 / p99. Then the
exact ledger, as in `bench harsh`: every task id done once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from notifyq import db, errors
from notifyq.bench import harsh
from notifyq.bench.common import progress, queries
from notifyq.bench.harsh_faults import FaultLog, harness_url
from notifyq.bench.harsh_report import event_counts
from notifyq.bench.worker_processes import Plan, open_worker_processes
from notifyq.vocabulary import Status


@dataclass(frozen=True)
class SoakPlan:
    minutes: float = 30.0
    rate: float = 100.0  # offered tasks per second
    sample_s: float = 10.0
    drain_timeout_s: float = 120.0


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process, MB (Linux: /proc); None when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def _ms(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)


async def run_soak(url: str, plan: SoakPlan) -> dict[str, Any]:
    """Run the soak against the migrated database at ``url``; the report."""
    ids: list[int] = []
    marks: list[int] = []  # len(ids) at each sample: the tasks of each interval
    samples: list[dict[str, Any]] = []
    notes = FaultLog()
    # The worker processes' settings (LEASE 30 s as in production; no fault here).
    workers_plan = Plan("soak", rate=plan.rate, lease_s=30.0)
    async with (
        db.open_database(harness_url(url), min_size=2, max_size=2) as database,
        open_worker_processes(url, workers_plan, 2) as processes,
    ):
        await harsh.wait_for_workers(database, processes, 2)
        stop, load_done = trio.Event(), trio.Event()

        async def load() -> None:
            await harsh.offer_load(database, workers_plan, ids, stop, notes)
            load_done.set()

        began = trio.current_time()
        end = began + plan.minutes * 60
        async with trio.open_nursery() as nursery:
            nursery.start_soon(load)
            while True:  # whole intervals; the load stops before the last mark
                await trio.sleep(plan.sample_s)
                last = trio.current_time() + plan.sample_s / 2 >= end or bool(processes.crashed())
                if last:
                    stop.set()
                    await load_done.wait()
                marks.append(len(ids))
                table = await database.fetchrow(queries["soak_table"])
                assert table is not None
                samples.append(
                    {
                        "t_s": round(trio.current_time() - began),
                        "worker_rss_mb": [rss_mb(w.proc.pid) for w in processes.workers],
                        **dict(table),
                    }
                )
                s = samples[-1]
                progress(
                    f"soak {s['t_s']:>5} s: rss {s['worker_rss_mb']} MB, dead rows "
                    f"{s['dead_rows']}, pending {s['pending']}"
                )
                if last:
                    break
        progress(f"soak: waiting for all {len(ids)} tasks")
        await harsh.wait_all_done(database, ids, plan.drain_timeout_s, every_s=0.5)
        ledger = await database.fetchrow(queries["harsh_ledger"], ids)
        lo = 0
        for sample, hi in zip(samples, marks, strict=True):
            lat = await database.fetchrow(queries["soak_latency"], ids[lo:hi])
            assert lat is not None
            sample["tasks"] = hi - lo
            sample.update({k: _ms(v) for k, v in dict(lat).items()})
            lo = hi
        crashed = processes.crashed()
        lines = processes.log_lines()
        server = await database.fetchrow(queries["server_facts"])
    assert ledger is not None
    if ledger["lost"] or ledger["twice"] or crashed:
        progress("soak: a task was lost or completed twice, or a worker crashed")
    return {
        "minutes": plan.minutes,
        "offered_per_s": plan.rate,
        "sample_s": plan.sample_s,
        **dict(server or {}),
        "tasks": ledger["tasks"],
        "lost": ledger["lost"],
        "twice": ledger["twice"],
        "worker_crashes": crashed,
        "log_events": event_counts(lines),
        "samples": samples,
    }


def table(report: dict[str, Any]) -> str:
    """The samples as a table, one row per interval."""
    head = (
        f"{'t s':>6} {'tasks':>6} {'pickup p50/p95/p99 ms':>23} {'done p50/p95/p99 ms':>23}"
        f" {'worker RSS MB':>14} {'live':>7} {'dead':>7} {Status.PENDING.value:>7} {'MB':>6} {'autovac':>7}"
    )
    rows = [head]
    for s in report["samples"]:
        pickup = "/".join(str(s.get(f"pickup_p{p}_ms")) for p in (50, 95, 99))
        done = "/".join(str(s.get(f"done_p{p}_ms")) for p in (50, 95, 99))
        rss = "/".join(str(v) for v in s["worker_rss_mb"])
        rows.append(
            f"{s['t_s']:>6} {s.get('tasks', 0):>6} {pickup:>23} {done:>23} {rss:>14}"
            f" {s['live_rows']:>7} {s['dead_rows']:>7} {s['pending']:>7}"
            f" {s['tasks_mb']:>6} {s['autovacuums']:>7}"
        )
    return "\n".join(rows)


def check(report: dict[str, Any]) -> None:
    if report["lost"] or report["twice"] or report["worker_crashes"]:
        raise errors.NotifyqError("a task was lost or completed twice, or a worker crashed")
