"""`notifyq bench scale-table | migrate-history`: big tables.

``scale-table`` fills a scratch database with N ended tasks and M history rows spread over
the last days (``generate_series`` in SQL, in chunks), then measures what a deployment
ending tens of millions of tasks a day cares about: the claim's latency and the drain rate
before and after the fill, how long retention takes (tasks deleted in batches, the
history's old days dropped whole), and the tables' and indexes' sizes.

``migrate-history`` measures the upgrade to the partitioned history (migration 0007) on a
history of N rows: how long the migration itself holds its lock, how long the attach of the
old rows takes afterwards, and how long an event insert waits meanwhile.
"""

from __future__ import annotations

import time
from typing import Any

import trio

from notifyq import db, errors, migrations, sql
from notifyq.bench.common import empty_database, progress, queries, running, scratch
from notifyq.bench.inprocess import _wait_drained
from notifyq.bench.load import _claim_times
from notifyq.engine import maintenance
from notifyq.kinds import builtin_app
from notifyq.settings import Settings

CHUNK = 1_000_000  # rows per INSERT statement while filling
SPREAD_DAYS = 8  # the fill covers the last 8 days; retention keeps 7 of them
RETENTION_S = 7 * 86400


async def _fill(database: db.Database, query: str, total: int, *extra: Any) -> float:
    """Run a fill statement in chunks of CHUNK rows; seconds taken."""
    started = time.monotonic()
    done = 0
    while done < total:
        n = min(CHUNK, total - done)
        await database.execute(query, done, n, total, *extra)
        done += n
        rate = done / (time.monotonic() - started)
        progress(f"  {done:,} / {total:,} rows ({rate:,.0f} rows/s)")
    return time.monotonic() - started


async def _drain(database: db.Database, settings: Settings, tasks: int) -> float:
    """Tasks per second of an in-process service draining ``tasks`` noop tasks."""
    await database.execute(queries["enqueue_noops"], tasks)
    await database.execute(queries["analyze"])
    app = builtin_app(demo_min_delay_s=0, demo_max_delay_s=0, demo_failure_rate=0)
    started = time.monotonic()
    async with running(database, settings, app) as svc:
        await _wait_drained(svc, tasks, started)
    return tasks / (time.monotonic() - started)


async def _sizes(database: db.Database) -> dict[str, Any]:
    rows = await database.fetch(queries["table_sizes"])
    return {r["name"]: {"table_mb": r["table_mb"], "indexes_mb": r["indexes_mb"]} for r in rows}


async def measure_scale_table(
    settings: Settings, ended: int, history: int, drain_tasks: int, rounds: int
) -> dict[str, Any]:
    want = settings.fetch_limit
    async with scratch(settings) as s:
        database = s.database
        await database.fetch(sql.queries["ensure_event_partitions"], 3)
        for row in await database.fetch(queries["past_event_partitions"]):
            await database.execute(row["ddl"])
        await database.execute(queries["enqueue_noops"], want * 10)
        await database.execute(queries["vacuum"])
        progress(f"scale-table: {rounds} claims of {want} on an empty table")
        empty_claim = await _claim_times(database, want, rounds)
        progress(f"scale-table: drain of {drain_tasks} noop tasks on an empty table")
        empty_drain = await _drain(database, s.settings, drain_tasks)

        progress(f"scale-table: {ended:,} ended tasks over the last {SPREAD_DAYS} days")
        await database.execute(queries["triggers_off"])
        fill_tasks_s = await _fill(database, queries["fill_ended_spread"], ended, SPREAD_DAYS)
        await database.execute(queries["triggers_on"])
        progress(f"scale-table: {history:,} history rows over the last {SPREAD_DAYS} days")
        fill_history_s = await _fill(database, queries["fill_history_spread"], history, SPREAD_DAYS)
        progress("scale-table: VACUUM ANALYZE")
        started = time.monotonic()
        await database.execute(queries["vacuum"])
        await database.execute(queries["vacuum_events"])
        vacuum_s = time.monotonic() - started
        sizes_before = await _sizes(database)

        progress(f"scale-table: {rounds} claims of {want} on the loaded table")
        loaded_claim = await _claim_times(database, want, rounds)
        progress(f"scale-table: drain of {drain_tasks} noop tasks on the loaded table")
        loaded_drain = await _drain(database, s.settings, drain_tasks)

        progress("scale-table: retention of 7 days (prune)")
        started = time.monotonic()
        deleted = 0
        while True:
            n = await _prune_batch(database)
            deleted += n
            if n < maintenance.RETENTION_BATCH:
                break
        prune_tasks_s = time.monotonic() - started
        started = time.monotonic()
        dropped = await database.fetch(sql.queries["prune_history"], float(RETENTION_S))
        prune_history_s = time.monotonic() - started
        events_left = await database.fetchval(queries["count_events"])
        sizes_after = await _sizes(database)
        header = s.header
    return {
        "benchmark": "scale-table",
        **header,
        "ended_tasks": ended,
        "history_rows": history,
        "claim_rows": want,
        "rounds": rounds,
        "fill_tasks_s": round(fill_tasks_s, 1),
        "fill_history_s": round(fill_history_s, 1),
        "vacuum_analyze_s": round(vacuum_s, 1),
        "claim_empty": empty_claim,
        "claim_loaded": loaded_claim,
        "drain_tasks": drain_tasks,
        "drain_empty_per_s": round(empty_drain, 1),
        "drain_loaded_per_s": round(loaded_drain, 1),
        "prune_tasks_deleted": deleted,
        "prune_tasks_s": round(prune_tasks_s, 2),
        "prune_history_dropped": [r["partition"] for r in dropped if r["dropped"]],
        "prune_history_s": round(prune_history_s, 3),
        "history_rows_left": events_left,
        "sizes_loaded": sizes_before,
        "sizes_after_prune": sizes_after,
    }


async def _prune_batch(database: db.Database) -> int:
    rows = await database.fetch(
        sql.queries["prune"], float(RETENTION_S), maintenance.RETENTION_BATCH
    )
    return len(rows)


async def measure_migrate_history(settings: Settings, rows: int) -> dict[str, Any]:
    """Migration 0007 on a history of ``rows`` rows, with an inserter running beside it."""
    async with (
        empty_database(settings) as (_dsn, url, _name),
        db.open_database(url, min_size=2, max_size=4) as database,
    ):
        await database.execute(sql.queries["migrate_bootstrap"])
        before = [m for m in migrations.available() if m.version < 7]
        for m in before:
            await database.execute(m.sql)
        progress(f"migrate-history: {rows:,} history rows (schema version {before[-1].version})")
        fill_s = await _fill(database, queries["fill_history_spread"], rows, SPREAD_DAYS)
        await database.execute(queries["vacuum_events"])
        (m7,) = [m for m in migrations.available() if m.version == 7]

        waits: list[float] = []

        async def insert_events(stop: trio.Event) -> None:
            while not stop.is_set():
                started = time.monotonic()
                await database.execute(queries["insert_event"])
                waits.append(time.monotonic() - started)
                await trio.sleep(0.01)

        async def timed(query: str) -> float:
            started = time.monotonic()
            await database.run_in_transaction(lambda conn: conn.execute(query))
            return time.monotonic() - started

        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(insert_events, stop)
            await trio.sleep(0.5)
            progress("migrate-history: migration 0007")
            migrate_s = await timed(m7.sql)
            await trio.sleep(0.5)
            migrate_waits = list(waits)
            waits.clear()
            progress("migrate-history: attaching the old rows (the partition job)")
            attach_s = await timed(sql.queries["attach_legacy_events"])
            await trio.sleep(0.5)
            stop.set()
        attach_waits = list(waits)
        count = await database.fetchval(queries["count_events"])
    if count < rows:
        raise errors.NotifyqError(f"migrate-history: {count} of {rows} rows after the upgrade")
    return {
        "benchmark": "migrate-history",
        "history_rows": rows,
        "fill_s": round(fill_s, 1),
        "migration_s": round(migrate_s, 3),
        "insert_wait_max_during_migration_ms": round(max(migrate_waits) * 1000, 1),
        "attach_s": round(attach_s, 3),
        "insert_wait_max_during_attach_ms": round(max(attach_waits) * 1000, 1),
        "inserts_during_attach": len(attach_waits),
        "rows_after": count,
    }
