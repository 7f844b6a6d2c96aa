"""`notifyq bench harsh`: the harsh-database scenarios, each with an exact per-task ledger.

Real ``notifyq worker`` processes serve a database while this process offers a steady rate
of ``noop`` tasks and, for a while, does something a database administrator dreads (the
faults are in :mod:`notifyq.bench.harsh_faults`):

- ``idle-in-transaction``: a session holds the xmin horizon (REPEATABLE READ, idle);
- ``repeatable-read``: four REPEATABLE READ readers scan the tasks table back to back;
- ``connections``: every free connection slot is taken by idle clients and notifyq's own
  backends are ended, so that notifyq has to wait for a slot (and a worker started during
  it must wait too);
- ``terminate``: notifyq's backends are ended (``pg_terminate_backend``) twice a second;
- ``kill-9``: one of the two worker processes is killed with SIGKILL (and restarted) at
  every interval;
- ``restart``: the PostgreSQL server is stopped and started again (a server the harness
  owns: :mod:`notifyq.bench.own_server`).

A caller may also pass a fault of its own (the upgrade test runs ``notifyq migrate``).
Then the offered load stops and every task id that was inserted is accounted for from the
history: ``lost`` (no 'done' event) and ``twice`` (more than one) must be 0. The report has
the tasks, the faults, the completion rate before, during and after, the seconds from the
end of the fault until the rate is back to 90 % of the rate before, the pickup latency
before and during, and for ``idle-in-transaction`` the dead rows of the tasks table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import trio

from notifyq import db, errors
from notifyq.bench.common import progress, queries
from notifyq.bench.harsh_faults import FAULTS, Fault, Faulting, FaultLog, Server, harness_url
from notifyq.bench.harsh_report import (
    event_counts,
    longest_gap,
    ms_of,
    rate_between,
    seconds_back_to_90,
)
from notifyq.bench.worker_processes import Plan, WorkerProcesses, open_worker_processes

SCENARIOS = tuple(FAULTS)
READY_TIMEOUT_S = 30.0
RECONNECT_TIMEOUT_S = 60.0  # the harness's own statements wait this long for the server
T = TypeVar("T")


# --- the run ----------------------------------------------------------------------------


async def wait_all_done(
    database: db.Database, ids: list[int], timeout_s: float, *, every_s: float
) -> None:
    """Until every task of ``ids`` has a 'done' event, or ``timeout_s`` (the ledger that
    follows then reports what is missing). A state of other processes: asked every
    ``every_s`` seconds."""
    with trio.move_on_after(timeout_s):
        while True:
            if int(await database.fetchval(queries["harsh_done_count"], ids)) == len(ids):
                return
            await trio.sleep(every_s)


async def retrying(fn: Callable[[], Awaitable[T]], timeout_s: float = RECONNECT_TIMEOUT_S) -> T:
    """``fn()``, tried again while the server cannot be reached (it is restarting)."""
    with trio.fail_after(timeout_s):
        while True:
            try:
                return await fn()
            except errors.DatabaseUnavailable:
                await trio.sleep(0.2)


async def offer_load(
    database: db.Database, plan: Plan, ids: list[int], stop: trio.Event, faults: FaultLog
) -> None:
    """Insert ``plan.rate`` tasks a second (one statement per 50 ms) until ``stop``; their
    ids go to ``ids``. While the server cannot be reached the tasks owed pile up and go in
    one statement once it is back (``notes['insert_retries']`` counts the failed tries; one
    whose connection dropped after its commit leaves tasks outside the ledger, not in
    it)."""
    kind, payload = ("sleep", plan.task_s) if plan.task_s else ("noop", {})
    owed = 0.0
    last = trio.current_time()
    while not stop.is_set():
        now = trio.current_time()
        owed += plan.rate * (now - last)
        last = now
        n = int(owed)
        if n:
            try:
                rows = await database.fetch(queries["harsh_enqueue"], n, kind, payload)
            except errors.DatabaseUnavailable:
                notes = faults.notes
                notes["insert_retries"] = notes.get("insert_retries", 0) + 1
            else:
                owed -= n
                ids.extend(r["id"] for r in rows)
        await trio.sleep(0.05)


async def wait_for_workers(database: db.Database, processes: WorkerProcesses, count: int) -> None:
    with trio.fail_after(READY_TIMEOUT_S):
        while int(await database.fetchval(queries["count_workers"])) < count:
            if processes.crashed():
                raise errors.NotifyqError(f"a worker exited: {processes.crashed()}")
            await trio.sleep(0.05)


async def run_scenario(
    url: str, plan: Plan, *, fault: Fault | None = None, server: Server | None = None
) -> dict[str, Any]:
    """Run one scenario against the migrated database at ``url``; the report. ``fault``
    replaces the scenario's own (any name then); ``restart`` needs ``server``."""
    if fault is None:
        if plan.scenario not in SCENARIOS:
            raise errors.ConfigError(f"unknown scenario {plan.scenario!r}: one of {SCENARIOS}")
        fault = FAULTS[plan.scenario]
    ids: list[int] = []
    faults = FaultLog()
    async with (
        db.open_database(harness_url(url), min_size=3, max_size=3) as database,
        open_worker_processes(url, plan, 2) as processes,
    ):
        await wait_for_workers(database, processes, 2)

        def now() -> Awaitable[datetime]:
            return retrying(lambda: database.fetchval(queries["harsh_now"]))

        t0 = await now()
        stop_load = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(offer_load, database, plan, ids, stop_load, faults)
            await trio.sleep(plan.before_s)
            fault_start = await now()
            progress(f"harsh {plan.scenario}: fault for {plan.fault_s:g} s")
            await fault(Faulting(database, url, plan, faults, processes, server))
            fault_end = await now()
            progress(f"harsh {plan.scenario}: fault over; load goes on for {plan.after_s:g} s")
            await trio.sleep(plan.after_s)
            stop_load.set()
        load_stopped = await now()
        ids.extend(faults.ids)
        dead_after = int(await database.fetchval(queries["harsh_dead_tuples"]) or 0)

        progress(f"harsh {plan.scenario}: waiting for all {len(ids)} tasks")
        await wait_all_done(database, ids, plan.drain_timeout_s, every_s=0.2)
        drained_at = await now()
        ledger = await database.fetchrow(queries["harsh_ledger"], ids)
        recovered = int(await database.fetchval(queries["harsh_recovered"], ids))
        missing = await database.fetchrow(queries["harsh_missing"], ids)
        rows = await database.fetch(queries["harsh_rate"], t0)
        per_tenth = {r["tenth"]: r["n"] for r in rows}
        pickup_before = await database.fetchrow(queries["harsh_pickup"], t0, fault_start)
        pickup_during = await database.fetchrow(queries["harsh_pickup"], fault_start, fault_end)
        crashed = processes.crashed()
        lines = processes.log_lines()

    assert (
        ledger is not None
        and missing is not None
        and pickup_before is not None
        and pickup_during is not None
    )
    start_s = (fault_start - t0).total_seconds()
    end_s = (fault_end - t0).total_seconds()
    # The rate before: the steady part of the load before the fault (its first half second
    # is the start-up).
    prev = rate_between(per_tenth, min(0.5, start_s / 2), start_s)
    back = seconds_back_to_90(per_tenth, prev, end_s)
    gap = longest_gap(per_tenth, max(0.0, start_s - 1), end_s + plan.after_s)
    report: dict[str, Any] = {
        "scenario": plan.scenario,
        "offered_per_s": plan.rate,
        "tasks": ledger["tasks"],
        "faults": faults.actions,
        "fault_s": round(end_s - start_s, 2),
        "rate_before_per_s": round(prev, 1),
        "rate_during_per_s": round(rate_between(per_tenth, start_s, end_s), 1),
        "rate_after_per_s": round(rate_between(per_tenth, end_s, end_s + plan.after_s), 1),
        "seconds_back_to_90pct": None if back is None else round(back, 2),
        "longest_gap_s": gap,
        "seconds_to_drain_after_load": round((drained_at - load_stopped).total_seconds(), 2),
        "pickup_before_ms": ms_of(pickup_before),
        "pickup_during_ms": ms_of(pickup_during),
        "task_kind": f"sleep {plan.task_s:g} s" if plan.task_s else "noop",
        "recovered": recovered,
        "lost": ledger["lost"],
        "twice": ledger["twice"],
        "rows_missing": missing["missing"],
        "ran_again": missing["ran_again"],
        "worker_crashes": crashed,
        "log_lines": len(lines),
        "log_events": event_counts(lines),
        "unstructured_log_lines": [ln for ln in lines if not ln.startswith("{")][:40],
    }
    if faults.dead_tuples:
        report["dead_tuples_during_max"] = max(faults.dead_tuples)
        report["dead_tuples_after"] = dead_after
    report.update(faults.notes)
    return report
