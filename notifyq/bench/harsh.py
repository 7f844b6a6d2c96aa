"""`notifyq bench harsh`: the harsh-database scenarios, each with an exact per-task ledger.

Real ``notifyq worker`` processes serve a database while this process offers a steady rate
of ``noop`` tasks and, for a while, does something a database administrator dreads:

- ``idle-in-transaction``: a session holds the xmin horizon (REPEATABLE READ, idle);
- ``repeatable-read``: four REPEATABLE READ readers scan the tasks table back to back;
- ``connections``: every free connection slot is taken by idle clients and notifyq's own
  backends are ended, so that notifyq has to wait for a slot (and a worker started during
  it must wait too);
- ``terminate``: notifyq's backends are ended (``pg_terminate_backend``) twice a second;
- ``kill-9``: one of the two worker processes is killed with SIGKILL (and restarted) at
  every interval.

Then the offered load stops and every task id that was inserted is accounted for from the
history: ``lost`` (no 'done' event) and ``twice`` (more than one) must be 0. The report has
the tasks, the faults, the completion rate before, during and after, the seconds from the
end of the fault until the rate is back to 90 % of the rate before, the pickup latency
before and during, and for ``idle-in-transaction`` the dead rows of the tasks table.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import trio

from notifyq import db, errors, settings
from notifyq.bench.common import progress, queries
from notifyq.bench.harsh_report import (
    event_counts,
    ms_of,
    rate_between,
    seconds_back_to_90,
)

SCENARIOS = ("idle-in-transaction", "repeatable-read", "connections", "terminate", "kill-9")
HARNESS_APP = "notifyq-harsh"  # the harness's own sessions, spared by harsh_terminate
READY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Plan:
    """How long each phase lasts and how hard the load is."""

    scenario: str
    rate: float = 100.0  # offered tasks per second
    before_s: float = 3.0  # steady load before the fault
    fault_s: float = 5.0
    after_s: float = 3.0  # steady load after the fault
    kill_every_s: float = 2.0  # kill-9: one kill per interval
    lease_s: float = 2.0  # workers' LEASE: a killed worker's tasks come back after it
    drain_timeout_s: float = 60.0
    task_s: float = 0.0  # 0: noop tasks; else `sleep` tasks of this long (work in flight)


def harness_url(url: str) -> str:
    """``url`` with application_name=notifyq-harsh (asyncpg sends it as a setting)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["application_name"] = HARNESS_APP
    return urlunsplit(parts._replace(query=urlencode(query)))


@dataclass
class Worker:
    """One ``notifyq worker`` subprocess with its JSON log in a temporary file."""

    proc: trio.Process
    log: IO[str]
    killed: bool = False


@dataclass
class Fleet:
    url: str
    plan: Plan
    workers: list[Worker] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        own = {k: v for k, v in os.environ.items() if k.upper() not in settings.ENV_NAMES}
        return {
            **own,
            "DATABASE_URL": self.url,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "warning",
            "LEASE": str(self.plan.lease_s),
            "WORKER_COUNT": "10",
            "FETCH_LIMIT": "50",
            "FETCH_INTERVAL": "1",
            "POOL_SIZE": "4",
        }

    async def start(self) -> Worker:
        log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed in stop_all)
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "notifyq", "worker"], env=self.env(), stderr=log
        )
        worker = Worker(proc, log)
        self.workers.append(worker)
        return worker

    def kill(self, worker: Worker) -> None:
        worker.killed = True
        worker.proc.kill()

    def crashed(self) -> list[int]:
        """Exit codes of workers that ended without being killed here."""
        return [
            w.proc.returncode
            for w in self.workers
            if w.proc.returncode is not None and not w.killed
        ]

    def log_lines(self) -> list[str]:
        return [line for w in self.workers for line in _read(w.log).splitlines()]

    async def stop_all(self) -> None:
        with trio.CancelScope(shield=True):
            for w in self.workers:
                if w.proc.returncode is None:
                    w.proc.send_signal(signal.SIGINT)
            with trio.move_on_after(10):
                for w in self.workers:
                    await w.proc.wait()
            for w in self.workers:
                if w.proc.returncode is None:
                    w.proc.kill()
                    await w.proc.wait()
            for w in self.workers:
                w.log.close()


@asynccontextmanager
async def fleet_of(url: str, plan: Plan, count: int) -> AsyncIterator[Fleet]:
    fleet = Fleet(url, plan)
    try:
        for _ in range(count):
            await fleet.start()
        yield fleet
    finally:
        await fleet.stop_all()


async def _connect(database: db.Database, url: str) -> asyncpg.Connection:
    conn: asyncpg.Connection = await database.loop.run_aio_coroutine(
        asyncpg.connect(harness_url(url))
    )
    return conn


async def _on(database: db.Database, coro: Awaitable[Any]) -> Any:
    return await database.loop.run_aio_coroutine(coro)


# --- the faults -----------------------------------------------------------------------


@dataclass
class FaultLog:
    actions: int = 0  # faults injected (kills, terminated backends, reader transactions, ...)
    dead_tuples: list[int] = field(default_factory=list)  # sampled during the fault
    notes: dict[str, Any] = field(default_factory=dict)


async def _idle_in_transaction(database: db.Database, url: str, plan: Plan, f: FaultLog) -> None:
    conn = await _connect(database, url)
    try:
        held = conn.transaction(isolation="repeatable_read")
        await _on(database, held.start())
        await _on(database, conn.fetchval(queries["harsh_xid"]))
        f.actions = 1
        deadline = trio.current_time() + plan.fault_s
        while trio.current_time() < deadline:
            f.dead_tuples.append(int(await database.fetchval(queries["harsh_dead_tuples"]) or 0))
            await trio.sleep(min(1.0, plan.fault_s / 4))
        await _on(database, held.rollback())
    finally:
        await _on(database, conn.close())


async def _repeatable_read(database: db.Database, url: str, plan: Plan, f: FaultLog) -> None:
    async def scan(conn: asyncpg.Connection) -> None:
        async with conn.transaction(isolation="repeatable_read"):
            await conn.fetch(queries["harsh_scan"])

    async def reader(conn: asyncpg.Connection, deadline: float) -> None:
        while trio.current_time() < deadline:
            await _on(database, scan(conn))
            f.actions += 1

    conns = [await _connect(database, url) for _ in range(4)]
    try:
        deadline = trio.current_time() + plan.fault_s
        async with trio.open_nursery() as nursery:
            for conn in conns:
                nursery.start_soon(reader, conn, deadline)
    finally:
        for conn in conns:
            await _on(database, conn.close())


async def _fill_slots(url: str, held: list[asyncpg.Connection], budget_s: float) -> None:
    """Open idle connections until the server refuses one (or ``budget_s`` runs out)."""
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        try:
            held.append(await asyncpg.connect(harness_url(url), timeout=5))
        except asyncpg.TooManyConnectionsError:
            if time.monotonic() + 0.05 > deadline:
                return
            continue  # a slot may free up (a backend we terminated); keep trying a bit


async def _connections(
    database: db.Database, url: str, plan: Plan, f: FaultLog, fleet: Fleet
) -> None:
    held: list[asyncpg.Connection] = []
    began = trio.current_time()
    try:
        await _on(database, _fill_slots(url, held, 0.5))
        # notifyq's own sessions hold slots too: end them and take the slots they free,
        # until notifyq holds none (it reconnects within milliseconds, so it takes a few
        # rounds).
        with trio.move_on_after(5):
            while True:
                ended = int(await database.fetchval(queries["harsh_terminate"]))
                f.actions += ended
                if not ended:
                    break
                await _on(database, _fill_slots(url, held, 0.3))
        f.notes["idle_clients"] = len(held)
        # A process that starts now finds no slot at all.
        late = await fleet.start()
        # Hold the slots until it has tried (its start-up takes a second or two).
        with trio.move_on_after(15):
            while True:  # a state in another process: its log, read every 100 ms
                if "db.waiting" in _read(late.log):
                    break
                await trio.sleep(0.1)
        f.notes["late_worker_waited"] = "db.waiting" in _read(late.log)
        await trio.sleep(max(0.0, plan.fault_s - (trio.current_time() - began)))
    finally:
        for conn in held:
            await _on(database, conn.close())


def _read(log: IO[str]) -> str:
    log.seek(0)
    return log.read()


async def _terminate(database: db.Database, url: str, plan: Plan, f: FaultLog) -> None:
    deadline = trio.current_time() + plan.fault_s
    while trio.current_time() < deadline:
        f.actions += int(await database.fetchval(queries["harsh_terminate"]))
        await trio.sleep(0.5)


async def _kill_9(plan: Plan, f: FaultLog, fleet: Fleet) -> None:
    deadline = trio.current_time() + plan.fault_s
    victim = 0
    while trio.current_time() < deadline:
        alive = [w for w in fleet.workers if w.proc.returncode is None and not w.killed]
        target = alive[victim % len(alive)]
        fleet.kill(target)
        await target.proc.wait()
        f.actions += 1
        victim += 1
        await fleet.start()  # a supervisor restarts it
        await trio.sleep(plan.kill_every_s)


# --- the run ----------------------------------------------------------------------------


async def run_scenario(url: str, plan: Plan) -> dict[str, Any]:
    """Run one scenario against the migrated database at ``url``; the report."""
    if plan.scenario not in SCENARIOS:
        raise errors.ConfigError(f"unknown scenario {plan.scenario!r}: one of {SCENARIOS}")
    ids: list[int] = []
    fault = FaultLog()
    async with (
        db.open_database(harness_url(url), min_size=3, max_size=3) as database,
        fleet_of(url, plan, 2) as fleet,
    ):
        with trio.fail_after(READY_TIMEOUT_S):
            while int(await database.fetchval(queries["count_workers"])) < 2:
                if fleet.crashed():
                    raise errors.NotifyqError(f"a worker exited: {fleet.crashed()}")
                await trio.sleep(0.05)

        kind, payload = ("sleep", plan.task_s) if plan.task_s else ("noop", {})
        t0: datetime = await database.fetchval(queries["harsh_now"])
        stop_load = trio.Event()

        async def offer_load() -> None:
            tick = 0.05
            owed = 0.0
            last = trio.current_time()
            while not stop_load.is_set():
                now = trio.current_time()
                owed += plan.rate * (now - last)
                last = now
                n = int(owed)
                if n:
                    owed -= n
                    rows = await database.fetch(queries["harsh_enqueue"], n, kind, payload)
                    ids.extend(r["id"] for r in rows)
                await trio.sleep(tick)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(offer_load)
            await trio.sleep(plan.before_s)
            fault_start: datetime = await database.fetchval(queries["harsh_now"])
            progress(f"harsh {plan.scenario}: fault for {plan.fault_s:g} s")
            if plan.scenario == "idle-in-transaction":
                await _idle_in_transaction(database, url, plan, fault)
            elif plan.scenario == "repeatable-read":
                await _repeatable_read(database, url, plan, fault)
            elif plan.scenario == "connections":
                await _connections(database, url, plan, fault, fleet)
            elif plan.scenario == "terminate":
                await _terminate(database, url, plan, fault)
            else:
                await _kill_9(plan, fault, fleet)
            fault_end: datetime = await database.fetchval(queries["harsh_now"])
            progress(f"harsh {plan.scenario}: fault over; load goes on for {plan.after_s:g} s")
            await trio.sleep(plan.after_s)
            stop_load.set()
        load_stopped: datetime = await database.fetchval(queries["harsh_now"])
        dead_after = int(await database.fetchval(queries["harsh_dead_tuples"]) or 0)

        progress(f"harsh {plan.scenario}: waiting for all {len(ids)} tasks")
        with trio.move_on_after(plan.drain_timeout_s):
            while True:  # a state in other processes: asked every 200 ms
                if int(await database.fetchval(queries["harsh_done_count"], ids)) == len(ids):
                    break
                await trio.sleep(0.2)
        drained_at: datetime = await database.fetchval(queries["harsh_now"])
        ledger = await database.fetchrow(queries["harsh_ledger"], ids)
        recovered = int(await database.fetchval(queries["harsh_recovered"], ids))
        rows = await database.fetch(queries["harsh_rate"], t0)
        per_tenth = {r["tenth"]: r["n"] for r in rows}
        pickup_before = await database.fetchrow(queries["harsh_pickup"], t0, fault_start)
        pickup_during = await database.fetchrow(queries["harsh_pickup"], fault_start, fault_end)
        crashed = fleet.crashed()
        lines = fleet.log_lines()

    assert ledger is not None and pickup_before is not None and pickup_during is not None
    start_s = (fault_start - t0).total_seconds()
    end_s = (fault_end - t0).total_seconds()
    # The rate before: the steady part of the load before the fault (its first half second
    # is the start-up).
    prev = rate_between(per_tenth, min(0.5, start_s / 2), start_s)
    back = seconds_back_to_90(per_tenth, prev, end_s)
    report: dict[str, Any] = {
        "scenario": plan.scenario,
        "offered_per_s": plan.rate,
        "tasks": ledger["tasks"],
        "faults": fault.actions,
        "fault_s": round(end_s - start_s, 2),
        "rate_before_per_s": round(prev, 1),
        "rate_during_per_s": round(rate_between(per_tenth, start_s, end_s), 1),
        "rate_after_per_s": round(rate_between(per_tenth, end_s, end_s + plan.after_s), 1),
        "seconds_back_to_90pct": None if back is None else round(back, 2),
        "seconds_to_drain_after_load": round((drained_at - load_stopped).total_seconds(), 2),
        "pickup_before_ms": ms_of(pickup_before),
        "pickup_during_ms": ms_of(pickup_during),
        "task_kind": kind if not plan.task_s else f"sleep {plan.task_s:g} s",
        "recovered": recovered,
        "lost": ledger["lost"],
        "twice": ledger["twice"],
        "worker_crashes": crashed,
        "log_lines": len(lines),
        "log_events": event_counts(lines),
        "unstructured_log_lines": [ln for ln in lines if not ln.startswith("{")][:40],
    }
    if fault.dead_tuples:
        report["dead_tuples_during_max"] = max(fault.dead_tuples)
        report["dead_tuples_after"] = dead_after
    report.update(fault.notes)
    return report
