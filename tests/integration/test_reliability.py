"""Retries, scheduling, leases, cancellation and fencing, in-process on a real PostgreSQL."""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta
from typing import Any

import pytest
import trio

from notifyq import db, errors, sql, store
from notifyq.app import App, Task
from notifyq.client import Client
from notifyq.engine.service import Service
from notifyq.kinds import builtin_app
from notifyq.settings import load
from tests.helpers import (
    eventually,
    insert,
    running_service,
    task_row,
    until_running,
    wait_ended,
)


async def events_of(database: db.Database, task_id: int) -> list[dict[str, Any]]:
    return [r.as_dict() for r in await store.task_history(database, task_id)]


async def test_failures_retry_with_exponential_backoff_then_error(database: db.Database) -> None:
    app = App()

    @app.handler("always_fails")
    async def always_fails(task: Task) -> None:
        raise RuntimeError(f"attempt {task.attempt} failed")

    async with running_service(database, app=app, retry_base_s=0.3, retry_max_s=10):
        task_id = await insert(database, "always_fails", max_attempts=3)
        [row] = await wait_ended(database, task_id, timeout=10)
    assert row["status"] == "error"
    assert row["attempts"] == 3
    assert row["error"] == "RuntimeError: attempt 3 failed"
    history = await events_of(database, task_id)
    assert [e["event"] for e in history] == [
        "queued",
        "started",
        "retried",
        "started",
        "retried",
        "started",
        "failed",
    ]
    starts = [e["at"] for e in history if e["event"] == "started"]
    retries = [e["at"] for e in history if e["event"] == "retried"]
    # base 0.3 s, doubled, ±25 % jitter; never early, and not much later. The delay counts
    # from the outcome statement's start (run_at = now() + delay), while a history row's
    # time is when it was written: an outcome statement that waited for a lock (the
    # partitions made at start-up) writes `retried` later than the delay's origin. So "never
    # early" is read from the attempt's own start, "not much later" from `retried`.
    for n, delay in ((1, 0.3), (2, 0.6)):
        assert (starts[n] - starts[n - 1]).total_seconds() >= delay * 0.75 - 0.01
        assert (starts[n] - retries[n - 1]).total_seconds() <= delay * 1.25 + 0.5


async def test_handler_can_ask_for_a_delay_or_fail_at_once(database: db.Database) -> None:
    app = App()

    @app.handler("later")
    async def later(task: Task) -> str:
        if task.attempt == 1:
            raise errors.Retry("not yet", delay_s=0.5)
        return "now"

    @app.handler("never")
    async def never(task: Task) -> None:
        raise errors.Fail("this cannot work")

    async with running_service(database, app=app):
        later_id = await insert(database, "later")
        never_id = await insert(database, "never", max_attempts=5)
        rows = await wait_ended(database, later_id, never_id, timeout=10)
    assert (rows[0]["status"], rows[0]["result"], rows[0]["attempts"]) == ("done", "now", 2)
    assert rows[0]["error"] == "Retry: not yet"  # the last error stays on the row
    history = await events_of(database, later_id)
    gap = (history[3]["at"] - history[2]["at"]).total_seconds()  # retried -> started
    # run_at is the outcome write's now() + 0.5 s; the event's time is the clock a moment
    # later (clock_timestamp), so on a loaded machine the gap can be a few ms under 0.5 s.
    assert gap >= 0.4
    assert (rows[1]["status"], rows[1]["attempts"]) == ("error", 1)
    assert rows[1]["error"] == "Fail: this cannot work"


async def test_scheduled_task_is_not_started_early(database: db.Database) -> None:
    async with running_service(database, fetch_interval_s=60) as service:
        client = Client(database)
        task_id = await client.enqueue("reverse", "later", delay_s=1.5)
        now_id = await client.enqueue("reverse", "now")
        rows = await wait_ended(database, task_id, now_id, timeout=10)
        assert service.statistics().workers.done == 2
    late = (rows[0]["started_at"] - rows[0]["created_at"]).total_seconds()
    assert 1.5 <= late < 2.5, late
    assert rows[1]["started_at"] < rows[0]["started_at"]


async def test_cancel_pending_task(database: db.Database) -> None:
    client = Client(database)
    task_id = await client.enqueue("noop", delay_s=60)
    assert await client.cancel(task_id) == "cancelled"
    row = await task_row(database, task_id)
    assert row["status"] == "cancelled" and row["finished_at"] is not None
    assert [e["event"] for e in await events_of(database, task_id)] == ["queued", "cancelled"]
    with pytest.raises(errors.TaskNotFound, match="task 999999 does not exist"):
        await client.cancel(999999)


async def test_cancel_running_task_cancels_its_handler(database: db.Database) -> None:
    client = Client(database)
    async with running_service(database) as service:
        task_id = await client.enqueue("sleep", 30)
        await until_running(service, task_id)
        assert await client.cancel(task_id) == "cancelling"
        with trio.fail_after(5):
            row = await client.wait(task_id)
    assert row["status"] == "cancelled"
    assert row["locked_by"] is None
    assert [e["event"] for e in await events_of(database, task_id)][-1] == "cancelled"
    with pytest.raises(errors.InvalidTransition, match="cannot retry task"):
        await client.retry(await client.enqueue("noop", delay_s=60))
    assert await client.retry(task_id) == "pending"
    assert (await task_row(database, task_id))["attempts"] == 0


async def test_cancel_of_a_finished_task_is_refused(database: db.Database) -> None:
    client = Client(database)
    async with running_service(database):
        task_id = await client.enqueue("noop")
        with trio.fail_after(5):
            await client.wait(task_id)
    with pytest.raises(errors.InvalidTransition, match=f"cannot cancel task {task_id}: it is done"):
        await client.cancel(task_id)


async def test_late_outcome_of_a_lost_lease_is_not_written(database: db.Database) -> None:
    release = trio.Event()
    app = App()

    @app.handler("slow")
    async def slow(task: Task) -> str:
        await release.wait()
        return "stale"

    async def expire_and_steal(conn: db.Connection) -> list[db.Record]:
        # As if this process had stalled past its lease: the reaper recovers the task and
        # another process claims it, in one transaction so that ours cannot claim it first.
        await conn.execute(
            "UPDATE notifyq.tasks SET locked_until = now() - interval '1 s' WHERE id = $1", task_id
        )
        await conn.fetch(sql.queries["recover_expired"], 100)
        return list(await conn.fetch(sql.queries["claim"], ["default"], 1, "thief", 30.0, ["slow"]))

    async with running_service(database, app=app, lease_s=30) as service:
        task_id = await insert(database, "slow")
        await until_running(service, task_id)
        [taken] = await database.run_in_transaction(expire_and_steal)
        assert (taken["id"], taken["attempts"]) == (task_id, 2)
        release.set()

        async def refused() -> bool:
            return service.statistics().workers.fenced == 1

        await eventually(refused)
    row = await task_row(database, task_id)
    assert (row["status"], row["locked_by"], row["result"]) == ("in_progress", "thief", None)


async def test_reaper_recovers_then_errors_at_the_attempt_limit(database: db.Database) -> None:
    task_id = await insert(database, "noop", max_attempts=2)
    for attempt in (1, 2):
        [row] = await database.fetch(sql.queries["claim"], ["default"], 1, "doomed", 0.01, ["noop"])
        assert row["attempts"] == attempt
        await trio.sleep(0.05)
        [reaped] = await database.fetch(sql.queries["recover_expired"], 100)
        assert reaped["status"] == ("pending" if attempt == 1 else "error")
    row = await task_row(database, task_id)
    assert row["error"] == "worker lost; 2 attempts"
    events = [e["event"] for e in await events_of(database, task_id)]
    assert events == ["queued", "started", "recovered", "started", "failed"]


async def test_heartbeat_extends_leases_and_registers_the_process(database: db.Database) -> None:
    async with running_service(database, lease_s=1.5) as service:
        task_id = await insert(database, "sleep", 2.5)
        await until_running(service, task_id)
        first = (await task_row(database, task_id))["locked_until"]
        await eventually(
            lambda: database.fetchval(
                "SELECT locked_until > $2 FROM notifyq.tasks WHERE id = $1", task_id, first
            ),
            timeout=3,
        )
        worker = await database.fetchrow(
            "SELECT * FROM notifyq.workers WHERE id = $1", service.worker_id
        )
        assert worker is not None and worker["concurrency"] == 5
        [row] = await wait_ended(database, task_id, timeout=10)
    assert row["status"] == "done" and row["attempts"] == 1  # never lost to the reaper
    assert await database.fetchval("SELECT count(*) FROM notifyq.workers") == 0


async def test_handler_that_swallows_its_timeout_still_times_out(database: db.Database) -> None:
    app = App()

    @app.handler("swallow")
    async def swallow(task: Task) -> str:
        with contextlib.suppress(trio.Cancelled):  # wrong, but it happens
            await trio.sleep(30)
        return "too late"

    async with running_service(database, app=app, worker_count=1):
        task_id = await insert(database, "swallow", max_attempts=1, timeout=timedelta(seconds=0.2))
        after = await insert(database, "reverse", "ok")
        rows = await wait_ended(database, task_id, after, timeout=10)
    assert (rows[0]["status"], rows[0]["error"]) == ("error", "timed out after 0.2 s")
    assert rows[1]["status"] == "done"


async def test_prune_deletes_old_ended_tasks_and_old_history(database: db.Database) -> None:
    from notifyq.engine.maintenance import apply_retention

    old = await insert(database, "noop")
    await database.execute(
        "UPDATE notifyq.tasks SET status = 'done', finished_at = now() - interval '8 days' "
        "WHERE id = $1",
        old,
    )
    await database.execute(
        "INSERT INTO notifyq.task_events (task_id, event, at) "
        "VALUES ($1, 'done', now() - interval '8 days')",
        old,
    )
    pending = await insert(database, "noop")
    await database.execute(
        "INSERT INTO notifyq.task_events (task_id, event) VALUES ($1, 'started')", pending
    )
    assert await apply_retention(database, 7 * 86400, batch=1) == 1
    assert await database.fetchval("SELECT count(*) FROM notifyq.tasks WHERE id = $1", old) == 0
    # History goes by its own age (day partitions, migration 0007), not task by task.
    assert await database.fetchval("SELECT array_agg(task_id) FROM notifyq.task_events") == [
        pending
    ]
    assert await database.fetchval("SELECT count(*) FROM notifyq.tasks WHERE id = $1", pending) == 1


async def test_bad_cancel_notification_is_dropped(database: db.Database) -> None:
    async with running_service(database) as service:
        await database.execute("SELECT pg_notify('notifyq_cancel', 'not-a-number')")
        await database.execute("SELECT pg_notify('notifyq', 'some-other-queue')")
        task_id = await insert(database, "reverse", json.dumps("still works"))
        [row] = await wait_ended(database, task_id)
        assert service.health.listener_connected
    assert row["status"] == "done"


@pytest.mark.parametrize("pool_size", [2, 4])
async def test_a_small_pool_still_keeps_leases(database: db.Database, pool_size: int) -> None:
    """From POOL_SIZE 4 the claimer and the writer hold a connection each; the heartbeat
    still gets one. Below 4 nothing is held. Either way a task longer than its lease ends
    `done` at its first attempt."""
    async with (
        db.open_database(database.dsn, min_size=1, max_size=pool_size) as small,
        running_service(small, pool_size=pool_size, lease_s=1) as service,
    ):
        long = await insert(database, "sleep", 2.2)
        short = [await insert(database, "noop") for _ in range(20)]
        # The heartbeat extends the lease beyond the first one while the task runs (read
        # until seen: a loaded machine may start the task late).
        extended = False
        with trio.move_on_after(15):
            while not extended:
                extended = bool(
                    await database.fetchval(
                        "SELECT locked_until - started_at > interval '1.2 s'"
                        " FROM notifyq.tasks WHERE id = $1 AND status = 'in_progress'",
                        long,
                    )
                )
                await trio.sleep(0.05)
        assert extended, "the lease was not extended: the heartbeat got no connection"
        [row, *rows] = await wait_ended(database, long, *short, timeout=20)
        assert service.statistics().workers.recovered == 0
    assert (row["status"], row["attempts"]) == ("done", 1)
    assert all(r["status"] == "done" for r in rows)


async def test_stopping_while_the_writer_claims_for_the_claimer(database: db.Database) -> None:
    """The writer's statement records A's outcome and claims B for the worker it frees. A
    stop arrives while that statement waits (a lock held on A's row): B still reaches the
    worker, which gives it back (released), and the process stops cleanly."""
    a = await insert(database, "sleep", 0.3)
    settings = load(database_url=database.dsn, worker_count=1, pool_size=6)
    stop, force = trio.Event(), trio.Event()
    with trio.fail_after(20):
        async with (
            db.open_database(database.dsn, max_size=settings.pool_size) as own,
            trio.open_nursery() as nursery,
        ):
            service = Service(own, settings, builtin_app())
            await nursery.start(service.serve, stop, force)
            await until_running(service, a)
            b = await insert(database, "noop")  # pending: the only worker runs A
            async with database.transaction() as blocker:
                await blocker.execute("SELECT 1 FROM notifyq.tasks WHERE id = $1 FOR UPDATE", a)

                async def writer_waits() -> bool:
                    return bool(
                        await database.fetchval(
                            "SELECT count(*) FROM pg_stat_activity"
                            " WHERE wait_event_type = 'Lock' AND query LIKE '%WITH outcome AS%'"
                        )
                    )

                await eventually(writer_waits, timeout=10)
                stop.set()
                await trio.sleep(0.2)  # the claimer has seen the stop meanwhile
    assert (await task_row(database, a))["status"] == "done"
    row_b = await task_row(database, b)
    assert (row_b["status"], row_b["attempts"]) == ("pending", 0)
    assert service.statistics().workers.released == 1


async def test_stopping_mid_drain_gives_back_the_buffer_ahead_of_the_workers(
    database: db.Database,
) -> None:
    """PREFETCH=auto claims short tasks ahead of the workers; a stop mid-drain writes every
    outcome and gives the buffered tasks back unstarted (pending, the attempt not counted)."""
    total = 3000
    await database.execute(
        "INSERT INTO notifyq.tasks (kind) SELECT 'noop' FROM generate_series(1, $1::int)", total
    )
    async with running_service(database, worker_count=2) as service:
        with trio.fail_after(30):
            # Until the buffer has grown past the workers and the drain is under way.
            while service.ledger.capacity <= 2 or service.statistics().workers.done < 500:  # noqa: ASYNC110
                await trio.sleep(0.005)
    counts = dict(
        await database.fetch("SELECT status, count(*) FROM notifyq.tasks GROUP BY status")
    )
    stats = service.statistics().workers
    assert set(counts) <= {"done", "pending"}, counts  # nothing left in_progress
    assert counts["done"] == stats.done
    assert counts.get("pending", 0) == total - stats.done
    assert stats.released > 0  # there was a buffer to give back
    assert (
        await database.fetchval(
            "SELECT count(*) FROM notifyq.tasks WHERE status = 'pending' AND attempts > 0"
        )
        == 0
    )
