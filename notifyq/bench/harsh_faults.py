"""The faults of `notifyq bench harsh`: what happens to the database while the load runs.

Each fault is an async function of one :class:`Faulting` (the harness's pool, the server's
URL, the plan, the fault log and the worker processes). It returns when the fault is over;
:func:`notifyq.bench.harsh.run_scenario` measures around it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import trio

from notifyq import db, errors
from notifyq.bench.common import progress, queries
from notifyq.bench.worker_processes import Plan, WorkerProcesses, read_log

HARNESS_APP = "notifyq-harsh"  # the harness's own sessions, spared by harsh_terminate


def harness_url(url: str) -> str:
    """``url`` with application_name=notifyq-harsh (asyncpg sends it as a setting)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["application_name"] = HARNESS_APP
    return urlunsplit(parts._replace(query=urlencode(query)))


class Server(Protocol):
    """A PostgreSQL server the harness may stop and start (``restart`` needs one)."""

    async def stop(self) -> None: ...

    async def start(self) -> None: ...


@dataclass
class FaultLog:
    actions: int = 0  # faults injected (kills, terminated backends, reader transactions, ...)
    dead_tuples: list[int] = field(default_factory=list)  # sampled during the fault
    notes: dict[str, Any] = field(default_factory=dict)
    ids: list[int] = field(default_factory=list)  # tasks a fault inserted: in the ledger too


@dataclass
class Faulting:
    """What a fault works with."""

    database: db.Database  # the harness's own pool (application_name notifyq-harsh)
    url: str
    plan: Plan
    log: FaultLog
    processes: WorkerProcesses
    server: Server | None = None


Fault = Callable[[Faulting], Awaitable[None]]


async def _connect(database: db.Database, url: str) -> asyncpg.Connection:
    conn: asyncpg.Connection = await database.loop.run_aio_coroutine(
        asyncpg.connect(harness_url(url))
    )
    return conn


async def _on(database: db.Database, coro: Awaitable[Any]) -> Any:
    return await database.loop.run_aio_coroutine(coro)


async def idle_in_transaction(c: Faulting) -> None:
    conn = await _connect(c.database, c.url)
    try:
        held = conn.transaction(isolation="repeatable_read")
        await _on(c.database, held.start())
        await _on(c.database, conn.fetchval(queries["harsh_xid"]))
        c.log.actions = 1
        deadline = trio.current_time() + c.plan.fault_s
        while trio.current_time() < deadline:
            dead = await c.database.fetchval(queries["harsh_dead_tuples"])
            c.log.dead_tuples.append(int(dead or 0))
            await trio.sleep(min(1.0, c.plan.fault_s / 4))
        await _on(c.database, held.rollback())
    finally:
        await _on(c.database, conn.close())


async def repeatable_read(c: Faulting) -> None:
    async def scan(conn: asyncpg.Connection) -> None:
        async with conn.transaction(isolation="repeatable_read"):
            await conn.fetch(queries["harsh_scan"])

    async def reader(conn: asyncpg.Connection, deadline: float) -> None:
        while trio.current_time() < deadline:
            await _on(c.database, scan(conn))
            c.log.actions += 1

    conns = [await _connect(c.database, c.url) for _ in range(4)]
    try:
        deadline = trio.current_time() + c.plan.fault_s
        async with trio.open_nursery() as nursery:
            for conn in conns:
                nursery.start_soon(reader, conn, deadline)
    finally:
        for conn in conns:
            await _on(c.database, conn.close())


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


async def connections(c: Faulting) -> None:
    database, f = c.database, c.log
    held: list[asyncpg.Connection] = []
    began = trio.current_time()
    try:
        await _on(database, _fill_slots(c.url, held, 0.5))
        # notifyq's own sessions hold slots too: end them and take the slots they free,
        # until notifyq holds none (it reconnects within milliseconds, so it takes a few
        # rounds).
        with trio.move_on_after(5):
            while True:
                ended = int(await database.fetchval(queries["harsh_terminate"]))
                f.actions += ended
                if not ended:
                    break
                await _on(database, _fill_slots(c.url, held, 0.3))
        f.notes["idle_clients"] = len(held)
        # A process that starts now finds no slot at all.
        late = await c.processes.start()
        # Hold the slots until it has tried (its start-up takes a second or two, and
        # more than 15 on a loaded machine).
        with trio.move_on_after(60):
            while True:  # a state in another process: its log, read every 100 ms
                if "db.waiting" in read_log(late.log):
                    break
                await trio.sleep(0.1)
        f.notes["late_worker_waited"] = "db.waiting" in read_log(late.log)
        await trio.sleep(max(0.0, c.plan.fault_s - (trio.current_time() - began)))
    finally:
        for conn in held:
            await _on(database, conn.close())


async def terminate(c: Faulting) -> None:
    deadline = trio.current_time() + c.plan.fault_s
    while trio.current_time() < deadline:
        c.log.actions += int(await c.database.fetchval(queries["harsh_terminate"]))
        await trio.sleep(0.5)


async def kill_9(c: Faulting) -> None:
    deadline = trio.current_time() + c.plan.fault_s
    victim = 0
    while trio.current_time() < deadline:
        alive = [w for w in c.processes.workers if w.proc.returncode is None and not w.killed]
        target = alive[victim % len(alive)]
        c.processes.kill(target)
        await target.proc.wait()
        c.log.actions += 1
        victim += 1
        await c.processes.start()  # a supervisor restarts it
        await trio.sleep(c.plan.kill_every_s)


async def restart(c: Faulting) -> None:
    """Stop the server (fast shutdown: every session ended), keep it down for
    ``plan.down_s``, start it again; repeat until ``plan.fault_s`` is over."""
    if c.server is None:
        raise errors.ConfigError("the restart scenario needs a server the harness owns")
    deadline = trio.current_time() + c.plan.fault_s
    down: list[float] = []
    # The harness's own pool retries its connections while the server is down, each try a
    # warning with a traceback on this process's stderr; the workers' logs are what counts.
    pool_log = logging.getLogger("asyncpg.pool")
    level = pool_log.level
    pool_log.setLevel(logging.ERROR)
    try:
        await _restarts(c, deadline, down)
    finally:
        pool_log.setLevel(level)
    c.log.notes["seconds_down"] = down


async def _restarts(c: Faulting, deadline: float, down: list[float]) -> None:
    assert c.server is not None
    while True:
        began = trio.current_time()
        await c.server.stop()
        await trio.sleep(c.plan.down_s)
        await c.server.start()
        c.log.actions += 1
        down.append(round(trio.current_time() - began, 2))
        progress(f"harsh restart: server down for {down[-1]:g} s")
        if trio.current_time() + c.plan.down_s + 1 >= deadline:
            break
        await trio.sleep(min(c.plan.kill_every_s, max(0.0, deadline - trio.current_time())))


FAULTS: dict[str, Fault] = {
    "idle-in-transaction": idle_in_transaction,
    "repeatable-read": repeatable_read,
    "connections": connections,
    "terminate": terminate,
    "kill-9": kill_9,
    "restart": restart,
}
