"""Queue limits across real processes: `notifyq worker` × 3 on one database.

Every limit is checked twice: sampled while the processes run (every 10 ms, from this
test's own connection) and recomputed afterwards from the rows' started_at/finished_at.
Drain times are printed, not asserted.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import trio

from notifyq import db
from tests.acceptance.proc import Notifyq, scalar, until
from tests.helpers import eventually

Start = Callable[..., Notifyq]
WORKERS = {"WORKER_COUNT": "10", "FETCH_LIMIT": "10", "LOG_LEVEL": "info"}


def queue_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "notifyq", "queue", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "warning"},
    )


def set_limits(url: str, *args: str) -> None:
    done = queue_cli(url, "set", *args)
    assert done.returncode == 0, done.stderr


def start(url: str, notifyq: Start, n: int, **env: str) -> list[Notifyq]:
    procs = [notifyq(url, "worker", env={**WORKERS, **env}) for _ in range(n)]
    for p in procs:
        p.wait_for("service.start", timeout=30)
    return procs


def max_overlap(spans: Sequence[tuple[dt.datetime, dt.datetime]]) -> int:
    """Most intervals [start, end) open at one instant (an end sorts before a start)."""
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    best = now = 0
    for _, step in points:
        now += step
        best = max(best, now)
    return best


async def sample(database: db.Database, query: str, until_done: str, *, timeout: float = 60) -> int:  # noqa: ASYNC109
    """Run ``query`` (a count) every 10 ms until ``until_done`` is true; the largest count."""
    seen = 0
    with trio.fail_after(timeout):
        while not await database.fetchval(until_done):
            seen = max(seen, await database.fetchval(query))
            await trio.sleep(0.01)
    return seen


ALL_DONE = "SELECT NOT EXISTS (SELECT 1 FROM notifyq.tasks WHERE status <> 'done')"


async def spans(database: db.Database) -> list[Any]:
    return await database.fetch(
        "SELECT concurrency_key, started_at, finished_at FROM notifyq.tasks ORDER BY id"
    )


async def test_concurrency_3_across_3_processes_of_10_workers(
    database: db.Database, notifyq: Start
) -> None:
    url = database.dsn
    set_limits(url, "work", "--concurrency", "3")
    start(url, notifyq, 3, QUEUES="work")
    began = time.monotonic()
    await database.execute(
        "INSERT INTO notifyq.tasks (queue, kind, payload) "
        "SELECT 'work', 'sleep', '0.2' FROM generate_series(1, 60)"
    )
    seen = await sample(
        database, "SELECT count(*) FROM notifyq.tasks WHERE status = 'in_progress'", ALL_DONE
    )
    seconds = time.monotonic() - began
    rows = await spans(database)
    print(f"\nLIMITS concurrency 3: 60 x 0.2 s in {seconds:.2f} s (ideal {60 * 0.2 / 3:.1f} s)")
    assert seen <= 3
    assert max_overlap([(r["started_at"], r["finished_at"]) for r in rows]) == 3


async def test_rate_20_per_second_across_3_processes(database: db.Database, notifyq: Start) -> None:
    url = database.dsn
    set_limits(url, "hooks", "--rate", "20/s")
    start(url, notifyq, 3, QUEUES="hooks")
    began = time.monotonic()
    await database.execute(
        "INSERT INTO notifyq.tasks (queue, kind) "
        "SELECT 'hooks', 'noop' FROM generate_series(1, 100)"
    )
    await eventually(lambda: database.fetchval(ALL_DONE), timeout=60, interval=0.05)
    seconds = time.monotonic() - began
    starts = sorted(r["started_at"] for r in await spans(database))
    second = dt.timedelta(seconds=1)
    busiest = max(sum(1 for t in starts if s <= t < s + second) for s in starts)
    print(f"\nLIMITS rate 20/s: 100 noops in {seconds:.2f} s, busiest second {busiest}")
    assert busiest <= 20


async def test_per_key_limit_1_with_5_keys(database: db.Database, notifyq: Start) -> None:
    url = database.dsn
    set_limits(url, "mail", "--per-key", "1")
    start(url, notifyq, 3, QUEUES="mail")
    await database.execute(
        "INSERT INTO notifyq.tasks (queue, kind, payload, concurrency_key) "
        "SELECT 'mail', 'sleep', '0.05', 'customer-' || (g % 5) FROM generate_series(1, 50) g"
    )
    seen = await sample(
        database,
        "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM notifyq.tasks "
        "WHERE status = 'in_progress' GROUP BY concurrency_key) k",
        ALL_DONE,
    )
    rows = await spans(database)
    assert seen <= 1
    for key in {r["concurrency_key"] for r in rows}:
        assert (
            max_overlap(
                [(r["started_at"], r["finished_at"]) for r in rows if r["concurrency_key"] == key]
            )
            == 1
        ), key


async def test_kill_9_gives_the_slots_back_within_the_lease(
    database: db.Database, notifyq: Start
) -> None:
    url = database.dsn
    lease = {"LEASE": "1.5"}
    set_limits(url, "work", "--concurrency", "2")
    victim = start(url, notifyq, 1, QUEUES="work", **lease)[0]
    # Two 2-second tasks take both slots in the victim.
    await database.execute(
        "INSERT INTO notifyq.tasks (queue, kind, payload, priority) "
        "SELECT 'work', 'sleep', '2', 10 FROM generate_series(1, 2)"
    )
    await eventually(
        lambda: database.fetchval(
            "SELECT count(*) = 2 FROM notifyq.tasks WHERE status = 'in_progress'"
        ),
        interval=0.01,
    )
    # More work, and the victim dies holding both slots (killed before its 2-second tasks
    # can end, however slowly the next process starts on a loaded machine).
    await database.execute(
        "INSERT INTO notifyq.tasks (queue, kind, payload) "
        "SELECT 'work', 'sleep', '0.1' FROM generate_series(1, 6)"
    )
    victim.proc.kill()
    killed = await database.fetchval("SELECT clock_timestamp()")
    # A second process: it waits for a slot until the victim's leases expire.
    start(url, notifyq, 1, QUEUES="work", **lease)
    await eventually(lambda: database.fetchval(ALL_DONE), timeout=30, interval=0.05)
    back = await database.fetchval(
        "SELECT min(at) FROM notifyq.task_events WHERE event = 'recovered'"
    )
    rows = await spans(database)
    print(
        f"\nLIMITS kill -9: slots back {(back - killed).total_seconds():.2f} s after the "
        "kill (LEASE 1.5 s)"
    )
    assert back is not None
    assert max_overlap([(r["started_at"], r["finished_at"]) for r in rows]) <= 2


async def test_paused_claims_nothing_resume_wakes_at_once_and_the_cli_shows_it(
    database: db.Database, notifyq: Start
) -> None:
    url = database.dsn
    set_limits(url, "q", "--paused")
    # A long sweep: only the notification can wake the processes in time.
    start(url, notifyq, 2, QUEUES="q", FETCH_INTERVAL="60")
    await database.execute(
        "INSERT INTO notifyq.tasks (queue, kind) SELECT 'q', 'noop' FROM generate_series(1, 10)"
    )
    # Both processes have looked (their claims ran and went idle) and claimed nothing.
    until(lambda: scalar(url, "SELECT count(*) FROM notifyq.waiters") == "2", timeout=20)
    assert (
        await database.fetchval("SELECT count(*) FROM notifyq.tasks WHERE status = 'pending'") == 10
    )
    set_limits(url, "q", "--resumed")
    await eventually(lambda: database.fetchval(ALL_DONE), timeout=20, interval=0.02)
    resumed = await database.fetchval("SELECT updated_at FROM notifyq.queues WHERE name = 'q'")
    first = await database.fetchval("SELECT min(started_at) FROM notifyq.tasks")
    print(
        f"\nLIMITS resume: first start {(first - resumed).total_seconds() * 1000:.0f} ms "
        "after the resume"
    )
    assert first > resumed
    # The CLI prints the queue after a change; list shows limits and live counts.
    shown = queue_cli(url, "set", "q", "--clear", "--rate", "5/10s", "--per-key", "2", "--paused")
    assert shown.stdout.strip() == "q: paused rate=5/10s per_key=2 (pending 0, in_progress 0)"
    listed = queue_cli(url, "list", "--json")
    assert json.loads(listed.stdout) == [
        {
            "name": "q",
            "concurrency": None,
            "rate": "5/10s",
            "per_key_concurrency": 2,
            "paused": True,
            "fair": False,
            "age_priority_after_s": None,
            "pending": 0,
            "in_progress": 0,
        }
    ]
