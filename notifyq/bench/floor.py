"""`notifyq bench floor`: what the database alone allows, and what notifyq's statements cost it.

Two queues drained by the same bare asyncpg loop (claim a batch, mark it done in one
statement; no handler, no trio between the statements), on one connection and on two:

- **floor**: the minimal ``SKIP LOCKED`` queue, a three-column table (id, status, payload)
  with a partial index over its pending rows (``floor_*`` in ``bench.sql``).
- **notifyq**: notifyq's own ``claim`` and ``finish`` statements, read from
  ``notifyq/queries.sql`` through :mod:`notifyq.sql` as the engine reads them, so their
  history row (the ``done`` outcome, carrying the attempt's start) is written too.

The ratio notifyq / floor is the database's share of notifyq's cost per task (the goal in
docs/performance.md: at least 60 %). The runs on one connection share a scratch database,
and those on two another; each run starts from its table freshly filled and analysed, and is
timed from the loops' start until every loop found the queue empty, then verified with a
count.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import trio

from notifyq import db, errors, sql
from notifyq.bench import cpu
from notifyq.bench.common import progress, queries, scratch
from notifyq.kinds import builtin_app
from notifyq.settings import Settings

NAMES = {"floor": "minimal SKIP LOCKED queue", "notifyq": "notifyq claim + finish"}
BATCH = 100
OWNER = "bench-floor"
LEASE_S = 300.0

Loop = Callable[[asyncpg.Connection], Awaitable[int]]


def floor_loop(batch: int) -> Loop:
    """Claim ``batch`` rows of the minimal queue, mark them done; until none is left."""
    claim, done = queries["floor_claim"], queries["floor_done"]

    async def loop(conn: asyncpg.Connection) -> int:
        drained = 0
        while rows := await conn.fetch(claim, batch):
            await conn.execute(done, [r["id"] for r in rows])
            drained += len(rows)
        return drained

    return loop


def notifyq_loop(batch: int, owner: str) -> Loop:
    """notifyq's ``claim`` then ``finish`` (outcome done, result null) of ``batch`` rows,
    with the arguments the engine passes (store.claim, store.finish); until none is left."""
    claim, finish = sql.queries["claim"], sql.queries["finish"]
    kinds = sorted(builtin_app().handlers)  # what a process without --app claims

    async def loop(conn: asyncpg.Connection) -> int:
        drained = 0
        while rows := await conn.fetch(claim, ["default"], batch, owner, LEASE_S, kinds):
            n = len(rows)
            ids = sorted(r["id"] for r in rows)  # id order, as store.finish writes them
            attempts = {r["id"]: (r["attempts"], r["claim_token"]) for r in rows}
            await conn.execute(
                finish,
                owner,
                ids,
                [attempts[i][0] for i in ids],
                ["done"] * n,
                ["null"] * n,
                [None] * n,
                [0.0] * n,
                [attempts[i][1] for i in ids],
                [None] * n,
            )
            drained += n
        return drained

    return loop


# Per queue: the statements that fill it, analyse it and count its done rows.
_STATEMENTS = {
    "floor": (queries["floor_fill"], queries["floor_analyze"], queries["floor_count_done"]),
    "notifyq": (queries["enqueue_noops"], queries["analyze"], queries["count_done"]),
}


def _loops(queue: str, batch: int) -> Callable[[int], Loop]:
    """The loop of connection ``i`` for ``queue`` (each notifyq connection its own owner)."""
    if queue == "floor":
        return lambda _i: floor_loop(batch)
    return lambda i: notifyq_loop(batch, f"{OWNER}-{i}")


async def _drain(
    pool: db.Database, make_loop: Callable[[int], Loop], connections: int, rows: int
) -> dict[str, Any]:
    counts = [0] * connections
    meter = cpu.Meter(int(await pool.fetchval(queries["backend_pid"])))

    async def one(i: int) -> None:
        counts[i] = await pool.run(make_loop(i))

    meter.start()
    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        for i in range(connections):
            nursery.start_soon(one, i)
    seconds = time.monotonic() - started
    return {
        "connections": connections,
        "rows": sum(counts),
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds, 1),
        **meter.per_task(rows),
    }


async def measure_floor(
    settings: Settings, rows: int, batch: int = BATCH, connections: tuple[int, ...] = (1, 2)
) -> dict[str, Any]:
    """Rows/s of the minimal queue and of notifyq's statements, on each number of
    ``connections``, and their ratio."""
    runs: dict[str, list[dict[str, Any]]] = {"floor": [], "notifyq": []}
    header: dict[str, Any] = {}
    for n in connections:
        # One scratch database per number of connections, both queues in it: neither run
        # touches the other's table.
        async with (
            scratch(settings) as s,
            db.open_database(s.settings.database_url or "", min_size=n, max_size=n) as pool,
        ):
            await s.database.execute(queries["floor_table"])
            for queue in ("floor", "notifyq"):
                fill, analyze, count = _STATEMENTS[queue]
                await s.database.execute(fill, rows)
                await s.database.execute(analyze)
                progress(f"floor: {queue}, {rows} rows on {n} connection(s)")
                run = await _drain(pool, _loops(queue, batch), n, rows)
                done = int(await s.database.fetchval(count))
                if done != rows or run["rows"] != rows:
                    raise errors.NotifyqError(
                        f"floor: {queue} on {n} connection(s): {done} of {rows} rows done"
                    )
                runs[queue].append(run)
            header = s.header
    ratios = {
        str(f["connections"]): round(q["rows_per_s"] / f["rows_per_s"], 3)
        for f, q in zip(runs["floor"], runs["notifyq"], strict=True)
    }
    # The database's cost per row, notifyq / minimal (when the server's CPU was readable).
    server_ratios = {
        str(f["connections"]): round(q["server_cpu_us_per_task"] / f["server_cpu_us_per_task"], 2)
        for f, q in zip(runs["floor"], runs["notifyq"], strict=True)
        if q["server_cpu_us_per_task"] and f["server_cpu_us_per_task"]
    }
    return {
        "benchmark": "floor",
        **header,
        "rows": rows,
        "batch": batch,
        **runs,
        "ratio": ratios,
        "server_cpu_ratio": server_ratios,
    }
