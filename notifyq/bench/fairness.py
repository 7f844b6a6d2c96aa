"""`notifyq bench fairness`: what a fair queue does for a small tenant behind a big one.

Two figures, each in a fresh scratch database, by the real engine (an in-process
:class:`~notifyq.engine.service.Service` running noop tasks):

- **wait**: tenant ``a`` has BACKLOG pending tasks; once the service has run ``warmup`` of
  them, tenant ``b`` adds 10. Reported: b's wait (insert to start, p50 and p99) and a's
  throughput while it ran, for the plain queue and for the same queue set ``fair``.
- **claim cost**: with TENANTS keys and a backlog of each size given, the time of one claim
  of 10 rows (the engine's limited claim, ``claim_limited``) in a fair queue, mean of 50;
  flat as the backlog grows when the skip scan works.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import trio

from notifyq import errors, limits, store
from notifyq.bench.common import STALL_TIMEOUT_S, percentile, progress, queries, running, scratch
from notifyq.bench.inprocess import noop_app
from notifyq.bench.load import poll_until
from notifyq.settings import Settings

SMALL_TENANT_TASKS = 10
CLAIMS = 50
WINDOW_S = 5.0


async def _wait_of_b(
    settings: Settings, backlog: int, warmup: int, *, fair: bool
) -> dict[str, Any]:
    async with scratch(settings) as s:
        database = s.database
        if fair:
            await store.set_queue_limits(database, limits.change("default", fair=True))
        await database.execute(queries["enqueue_tenant"], backlog, "a")
        await database.execute(queries["analyze"])
        async with running(database, s.settings, noop_app("trio")) as svc:
            started = time.monotonic()

            async def warmed() -> bool:
                return svc.statistics().workers.done >= warmup

            await poll_until(warmed, timeout_s=STALL_TIMEOUT_S + warmup / 100)
            await database.execute(queries["enqueue_tenant"], SMALL_TENANT_TASKS, "b")
            added, done_then = time.monotonic(), svc.statistics().workers.done

            async def b_done() -> bool:
                done = await database.fetchval(queries["tenant_done"], "b")
                return int(done) == SMALL_TENANT_TASKS

            await poll_until(b_done, timeout_s=STALL_TIMEOUT_S + backlog / 100)
            b_seconds = time.monotonic() - added
            # a's rate over the same window in both modes: at least WINDOW_S after b came.
            await trio.sleep(max(0.0, added + WINDOW_S - time.monotonic()))
            seconds = time.monotonic() - added
            a_done = svc.statistics().workers.done - done_then - SMALL_TENANT_TASKS
            del started
        waits = [
            float(r["wait_s"]) * 1000 for r in await database.fetch(queries["tenant_waits"], "b")
        ]
        header = s.header
    if len(waits) != SMALL_TENANT_TASKS:
        raise errors.NotifyqError(f"bench fairness: {len(waits)} of b's tasks started")
    return {
        "header": header,
        "b_wait_p50_ms": round(percentile(waits, 50), 1),
        "b_wait_p99_ms": round(percentile(waits, 99), 1),
        "b_all_done_s": round(b_seconds, 3),
        "a_tasks_per_s": round(a_done / seconds, 1),
    }


async def _claim_ms(settings: Settings, tenants: int, backlog: int, *, fair: bool) -> float:
    async with scratch(settings) as s:
        database = s.database
        # Fair, or limited without fairness (a concurrency no claim reaches): the same path.
        change = (
            limits.change("default", fair=True)
            if fair
            else limits.change("default", concurrency=1_000_000)
        )
        await store.set_queue_limits(database, change)
        await database.execute(queries["enqueue_tenants"], backlog, tenants)
        await database.execute(queries["analyze"])
        times = []
        for _ in range(CLAIMS):
            began = time.perf_counter()
            await store.claim_with_limits(
                database,
                limited=["default"],
                limited_limit=10,
                unlimited=[],
                kinds=["noop"],
                limit=10,
                owner="bench",
                lease_s=300,
            )
            times.append((time.perf_counter() - began) * 1000)
    return round(statistics.mean(times), 2)


async def measure_fairness(
    settings: Settings, backlog: int, warmup: int, tenants: int, backlogs: list[int]
) -> dict[str, Any]:
    """The wait of a small tenant behind a big one, plain and fair; the fair claim's cost
    with ``tenants`` keys at each backlog size."""
    result: dict[str, Any] = {"benchmark": "fairness", "backlog": backlog, "warmup": warmup}
    for mode in ("plain", "fair"):
        progress(f"fairness: {mode} queue, a has {backlog} tasks, b adds {SMALL_TENANT_TASKS}")
        one = await _wait_of_b(settings, backlog, warmup, fair=mode == "fair")
        result.update(one.pop("header"))
        result[mode] = one
        progress(f"  b waited p50 {one['b_wait_p50_ms']} ms, a ran {one['a_tasks_per_s']}/s")
    result["tenants"] = tenants
    result["claim_ms"] = {}
    result["limited_claim_ms"] = {}
    for size in backlogs:
        progress(f"fairness: claim cost, {tenants} tenants, {size} pending")
        result["claim_ms"][str(size)] = await _claim_ms(settings, tenants, size, fair=True)
        result["limited_claim_ms"][str(size)] = await _claim_ms(settings, tenants, size, fair=False)
    return result


def table(r: dict[str, Any]) -> tuple[list[tuple[str, str]], str]:
    """The report's cells and note for ``notifyq bench fairness``."""
    rows = [("backlog", str(r["backlog"]))]
    for mode in ("plain", "fair"):
        m = r[mode]
        rows += [
            (f"{mode} p50", f"{m['b_wait_p50_ms']:.0f}ms"),
            (f"{mode} p99", f"{m['b_wait_p99_ms']:.0f}ms"),
        ]
        rows += [(f"{mode} a/s", f"{m['a_tasks_per_s']:.0f}")]
    costs = ", ".join(
        f"{size} pending: {ms} ms (limited, not fair: {r['limited_claim_ms'][size]} ms)"
        for size, ms in r["claim_ms"].items()
    )
    note = (
        f"(b's 10 tasks added after a's first {r['warmup']} ran: wait from insert to start;"
        f" a/s: a's tasks done per second in the {WINDOW_S:g} s after b's came. One claim of"
        f" 10 rows with {r['tenants']} tenants, mean of {CLAIMS}: {costs})"
    )
    return rows, note
