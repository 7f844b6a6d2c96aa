"""`notifyq bench console`: the operator console's filters on a big table.

Builds ENDED ended tasks and PENDING pending ones with ``generate_series`` (in chunks, the
triggers off: a scratch or a kept bench database only), settles them (VACUUM ANALYZE), then
times every filter the console offers through the store's own statements, the ones the
HTTP API and the CLI run (``store.console``): the first page of the list (``GET /tasks``),
the page after it, the count preview (``GET /tasks/count``), and a few batches of a bulk
action (``POST /tasks/bulk/retry``). Reports p50 and p95 per filter against the 100 ms aim.

With ``keep`` the database is kept under that name and reused by the next run when it
holds the sizes asked for (the build of 10 million rows takes minutes); without it a
scratch database is dropped at the end.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from notifyq import db, errors, filters, migrations
from notifyq.bench.common import _with_database, empty_database, percentile, progress, queries
from notifyq.serving import embedded
from notifyq.settings import Settings
from notifyq.store import console
from notifyq.vocabulary import Action, Status

CHUNK = 500_000  # rows per INSERT statement while building
TARGET_MS = 100.0  # the console's aim: p95 under this for every filter
PAGE = 50  # rows per page, as the page asks
BULK_BATCH = 1000
BUDGET_S = 5.0  # per statement and filter: a slow one is timed MIN_ROUNDS times only
MIN_ROUNDS = 3


@dataclass(frozen=True, slots=True)
class Case:
    """One filter as the HTTP query string carries it."""

    name: str
    query: dict[str, str]


PENDING, DONE, ERROR, CANCELLED = Status.PENDING, Status.DONE, Status.ERROR, Status.CANCELLED


def cases(probe: Any) -> list[Case]:
    """Every filter key of the console at least once, with values found in the rows, and
    the combinations the page's triage makes."""
    ids = ",".join(str(i) for i in (probe["ids"] or [1])[:20])
    return [
        Case("every task", {}),
        Case(f"status={PENDING}", {"status": PENDING}),
        Case(f"status={ERROR}", {"status": ERROR}),
        Case(f"status={CANCELLED}", {"status": CANCELLED}),
        Case(f"status={DONE},{ERROR}", {"status": f"{DONE},{ERROR}"}),
        Case("queue=mail", {"queue": "mail"}),
        Case("queue=rare", {"queue": "rare"}),
        Case("kind=kind_00", {"kind": "kind_00"}),
        Case("kind=kind_rare (100 rows)", {"kind": "kind_rare"}),
        Case("priority=high", {"priority": "10"}),
        Case("id=20 ids", {"id": ids}),
        Case("created_after=1h", {"created_after": "1h"}),
        Case("created_before=week ago", {"created_before": probe["week_ago"]}),
        Case("finished_after=24h", {"finished_after": "24h"}),
        Case("finished_before=week ago", {"finished_before": probe["week_ago"]}),
        Case("unique_key", {"unique_key": probe["unique_key"] or "none"}),
        Case("concurrency_key", {"concurrency_key": "tenant-42"}),
        Case("schedule", {"schedule": "nightly-report"}),
        Case("workflow", {"workflow": str(probe["workflow"] or 1)}),
        Case("batch", {"batch": str(probe["batch"] or 1)}),
        Case("error~timed out", {"error": "timed out"}),
        Case("error~rare text", {"error": "checksum mismatch in batch 42"}),
        Case("fingerprint", {"fingerprint": probe["fingerprint"] or "0" * 16}),
        Case(f"{ERROR},24h (triage)", {"status": ERROR, "finished_after": "24h"}),
        Case(f"{ERROR},kind,1h", {"status": ERROR, "kind": "kind_03", "finished_after": "1h"}),
        Case(f"{PENDING},queue=rare", {"status": PENDING, "queue": "rare"}),
        Case(
            f"{CANCELLED},queue=rare,7d",
            {"status": CANCELLED, "queue": "rare", "finished_after": "7d"},
        ),
    ]


@asynccontextmanager
async def bench_database(settings: Settings, keep: str | None) -> AsyncIterator[db.Database]:
    """A migrated database: ``keep`` (created if missing, kept) or a scratch one."""
    if keep is None:
        async with (
            empty_database(settings) as (_, url, _name),
            db.open_database(url, min_size=2, max_size=4) as database,
        ):
            await migrations.migrate(database)
            yield database
        return
    dsn = await embedded.resolve_dsn(settings)
    async with db.open_database(dsn, min_size=1, max_size=1) as admin:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", keep)
        if not exists:
            try:
                # A database name cannot be a bind parameter: the option is checked by the
                # command (letters, digits, underscores).
                await admin.execute(f"CREATE DATABASE {keep}")
            except errors.QueryError as exc:
                raise errors.NotifyqError(f"cannot create database {keep}: {exc}") from exc
    url = _with_database(dsn, keep)
    async with db.open_database(url, min_size=2, max_size=4) as database:
        await migrations.migrate(database)
        yield database


async def build(database: db.Database, ended: int, pending: int) -> dict[str, Any]:
    """Fill the table (unless it holds these sizes already); seconds taken."""
    have = await database.fetchrow(queries["sizes"])
    if have is not None and (have["ended"], have["pending"]) == (ended, pending):
        progress(f"console: reusing {ended:,} ended and {pending:,} pending tasks")
        return {"built": False}
    if have is not None and (have["ended"] or have["pending"]):
        raise errors.NotifyqError(
            f"the database holds {have['ended']:,} ended and {have['pending']:,} pending "
            "tasks, not the sizes asked for: drop it or name another"
        )
    started = time.monotonic()
    await database.execute(queries["triggers_off"])
    done = 0
    while done < ended:
        n = min(CHUNK, ended - done)
        await database.execute(queries["fill_ended"], done, n, ended)
        done += n
        rate = done / (time.monotonic() - started)
        progress(f"  {done:,} / {ended:,} ended tasks ({rate:,.0f} rows/s)")
    await database.execute(queries["fill_batches"], ended)
    await database.execute(queries["fill_pending"], pending)
    await database.execute(queries["triggers_on"])
    fill_s = time.monotonic() - started
    progress("console: VACUUM ANALYZE")
    started = time.monotonic()
    await database.execute(queries["vacuum"])
    return {
        "built": True,
        "fill_s": round(fill_s, 1),
        "vacuum_s": round(time.monotonic() - started, 1),
    }


async def timed(call: Callable[[], Awaitable[Any]], rounds: int) -> tuple[dict[str, float], Any]:
    """p50 / p95 / max of ``rounds`` calls (after one to warm up), and the last answer; a
    slow statement stops after MIN_ROUNDS once BUDGET_S is spent (``n`` says how many)."""
    answer = await call()
    took: list[float] = []
    spent = 0.0
    while len(took) < rounds and (spent < BUDGET_S or len(took) < MIN_ROUNDS):
        started = time.perf_counter()
        answer = await call()
        took.append((time.perf_counter() - started) * 1000)
        spent += took[-1] / 1000
    took.sort()
    return {
        "p50_ms": round(percentile(took, 50), 2),
        "p95_ms": round(percentile(took, 95), 2),
        "max_ms": round(took[-1], 2),
        "n": len(took),
    }, answer


async def measure_case(database: db.Database, case: Case, rounds: int) -> dict[str, Any]:
    f = filters.parse(case.query)
    first, rows = await timed(
        lambda: console.find_tasks(database, f, before=None, limit=PAGE), rounds
    )
    result: dict[str, Any] = {"filter": case.name, "query": case.query, "rows": len(rows)}
    result["page1"] = first
    if len(rows) == PAGE:
        last = rows[-1].id
        result["page2"], _ = await timed(
            lambda: console.find_tasks(database, f, before=last, limit=PAGE), rounds
        )
    result["count"], counted = await timed(lambda: console.count_tasks(database, f), rounds)
    result["matching"] = counted.count
    result["capped"] = counted.capped
    return result


async def measure_bulk(
    database: db.Database, query: dict[str, str], batches: int
) -> dict[str, Any]:
    """``batches`` batches of a bulk retry, each on the next BULK_BATCH matching tasks."""
    f = filters.parse(query)
    counted = await console.count_tasks(database, f)
    cursor = None
    took, changed = [], 0
    for _ in range(batches):
        if counted.upto is None:
            break
        started = time.perf_counter()
        step = await console.act_in_bulk(
            database,
            Action.RETRY,
            f,
            upto=counted.upto,
            cursor=cursor,
            batch=BULK_BATCH,
            actor="bench",
        )
        took.append((time.perf_counter() - started) * 1000)
        changed += step.changed
        cursor = step.cursor
        if cursor is None:
            break
    took.sort()
    return {
        "query": query,
        "batch": BULK_BATCH,
        "batches": len(took),
        "changed": changed,
        "p50_ms": round(percentile(took, 50), 2) if took else None,
        "p95_ms": round(percentile(took, 95), 2) if took else None,
    }


async def measure(
    settings: Settings, ended: int, pending: int, rounds: int, keep: str | None, bulk: int
) -> dict[str, Any]:
    async with bench_database(settings, keep) as database:
        progress(f"console: {ended:,} ended and {pending:,} pending tasks")
        built = await build(database, ended, pending)
        probe = dict(await database.fetchrow(queries["probes"]) or {})
        probe["fingerprint"] = await database.fetchval(
            "SELECT notifyq.error_fingerprint(kind, error) FROM notifyq.tasks"
            " WHERE status = 'error' ORDER BY id DESC LIMIT 1"
        )
        results = []
        for case in cases(probe):
            progress(f"console: {case.name}")
            results.append(await measure_case(database, case, rounds))
        bulk_result = None
        if bulk:
            progress(f"console: bulk retry, {bulk} batches of {BULK_BATCH}")
            bulk_result = await measure_bulk(database, {"status": "error", "kind": "kind_05"}, bulk)
        version = await database.fetchval("SHOW server_version")
    worst = max(max(r["page1"]["p95_ms"], r["count"]["p95_ms"]) for r in results)
    return {
        "benchmark": "console",
        "server_version": version,
        "ended": ended,
        "pending": pending,
        "rounds": rounds,
        **built,
        "target_p95_ms": TARGET_MS,
        "filters": results,
        "bulk": bulk_result,
        "worst_p95_ms": worst,
        "over_target": [
            r["filter"]
            for r in results
            if max(r["page1"]["p95_ms"], r["count"]["p95_ms"]) >= TARGET_MS
        ],
    }
