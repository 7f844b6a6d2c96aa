"""No row a producer writes and no handler takes the process down (the engine side).

Each test is a finding of the adversarial pass: a row or a handler that used to crash-loop
the fleet, stall it, or let one producer cancel another's task.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import trio

from notifyq import db, errors
from notifyq.app import App, Task
from tests.helpers import (
    attempt_of,
    captured_logs,
    eventually,
    insert,
    running_service,
    task_row,
    wait_ended,
)


def nested(depth: int) -> str:
    """JSON text nested ``depth`` arrays deep (PostgreSQL's jsonb accepts it)."""
    return "[" * depth + "]" * depth


async def insert_json(database: db.Database, kind: str, payload_json: str) -> int:
    task_id = await database.fetchval(
        "INSERT INTO notifyq.tasks (kind, payload) VALUES ($1, $2::text::jsonb) RETURNING id",
        kind,
        payload_json,
    )
    return int(task_id)


# --- poison rows ----------------------------------------------------------------------------


async def test_a_deep_payload_fails_its_task_alone(database: db.Database) -> None:
    # Claimed in one batch with innocent rows: the claimer's JSON decoding raised
    # RecursionError and the process exited, the batch left in_progress under a dead owner.
    innocent = [await insert(database, "reverse", "abc") for _ in range(3)]
    poison = await insert_json(database, "reverse", nested(5000))
    innocent.append(await insert(database, "reverse", "xyz"))
    async with running_service(database, fetch_limit=10) as service:
        await eventually(lambda: _ended(database, [poison, *innocent]))
        assert service.statistics().workers.failed == 1
    rows = await database.fetch(  # not the payload: this test's driver cannot decode it either
        "SELECT id, status, error, attempts FROM notifyq.tasks ORDER BY id"
    )
    by_id = {r["id"]: r for r in rows}
    assert by_id[poison]["status"] == "error"
    assert "payload cannot be decoded: nested too deeply" in by_id[poison]["error"]
    assert by_id[poison]["attempts"] == 1  # not retried: decoding would fail again
    assert all(by_id[i]["status"] == "done" for i in innocent)


@pytest.mark.parametrize(
    ("column", "value", "constraint"),
    [
        ("attempts", 2147483647, "tasks_attempts_in_range"),
        ("run_at", "4000-01-01 BC", "tasks_run_at_in_range"),
        ("run_at", "10000-01-01", "tasks_run_at_in_range"),
        ("created_at", "infinity", "tasks_created_at_in_range"),
    ],
)
async def test_values_the_workers_cannot_handle_are_refused_at_insert(
    database: db.Database, column: str, value: Any, constraint: str
) -> None:
    cast = "::int" if column == "attempts" else "::timestamptz"
    with pytest.raises(errors.QueryError, match=constraint):
        await database.execute(
            f"INSERT INTO notifyq.tasks (kind, {column}) VALUES ('noop', $1::text{cast})",
            str(value),
        )


async def test_infinite_run_at_parks_or_runs_and_nothing_else_breaks(
    database: db.Database,
) -> None:
    parked = await database.fetchval(
        "INSERT INTO notifyq.tasks (kind, run_at) VALUES ('noop', 'infinity') RETURNING id"
    )
    overdue = await database.fetchval(
        "INSERT INTO notifyq.tasks (kind, run_at) VALUES ('noop', '-infinity') RETURNING id"
    )
    async with running_service(database, fetch_interval_s=0.3) as service:
        await wait_ended(database, overdue)
        later = await insert(database, "reverse", "ok")
        await wait_ended(database, later)
        await trio.sleep(0.7)  # two sweeps past the parked row
        assert service.statistics().workers.done == 2
    assert (await task_row(database, parked))["status"] == "pending"


async def test_a_deep_result_fails_its_task_alone(database: db.Database) -> None:
    app = App()

    @app.handler("deep")
    async def deep(task: Task) -> Any:
        value: Any = []
        for _ in range(3000):
            value = [value]
        return value

    async with running_service(database, app) as service:
        bad = await insert(database, "deep")
        good = await insert(database, "reverse", "abc")
        rows = await wait_ended(database, bad, good)
        assert service.statistics().workers.done == 1
    assert rows[0]["status"] == "error"
    assert rows[0]["error"] == "result is nested too deeply to encode as JSON"
    assert rows[1]["status"] == "done"


# --- handlers that used to end the process ---------------------------------------------------


class Custom(BaseException):
    pass


@pytest.mark.parametrize(
    "exc", [KeyboardInterrupt(), SystemExit(3), GeneratorExit(), Custom("odd")], ids=type
)
async def test_a_handler_raising_a_base_exception_fails_the_attempt(
    database: db.Database, exc: BaseException
) -> None:
    app = App()

    @app.handler("raiser")
    async def raiser(task: Task) -> None:
        raise exc

    async with running_service(database, app, retry_base_s=0, retry_max_s=0) as service:
        task_id = await insert(database, "raiser", max_attempts=2)
        [row] = await wait_ended(database, task_id)
        after = await insert(database, "reverse", "still up")
        [ok] = await wait_ended(database, after)
        assert service.statistics().workers.retried == 1
    assert row["status"] == "error" and row["attempts"] == 2
    assert row["error"].startswith(type(exc).__name__)
    assert ok["status"] == "done"


async def test_a_handler_raising_a_stray_cancelled_fails_the_attempt(
    database: db.Database,
) -> None:
    app = App()

    @app.handler("stray")
    async def stray(task: Task) -> None:
        saved: BaseException | None = None
        with trio.CancelScope() as scope:
            scope.cancel()
            try:
                await trio.sleep(1)
            except trio.Cancelled as cancelled:
                saved = cancelled
        assert saved is not None
        raise saved  # outside the scope that was cancelled

    async with running_service(database, app) as service:
        task_id = await insert(database, "stray", max_attempts=1)
        [row] = await wait_ended(database, task_id)
        after = await insert(database, "reverse", "still up")
        await wait_ended(database, after)
        assert service.statistics().workers.done == 1
    assert (row["status"], row["error"].split(":")[0]) == ("error", "Cancelled")


# --- producers ---------------------------------------------------------------------------------


async def test_an_open_producer_transaction_stalls_nobody(database: db.Database) -> None:
    # Producer A's trigger removes the idle process's waiters row and holds it locked until
    # A commits; the process's next go_idle used to wait for that lock with no limit.
    async with (
        running_service(database, fetch_interval_s=0.2),
        db.open_database(database.dsn, max_size=1) as producer_a,
    ):
        await trio.sleep(0.5)  # idle, recorded in notifyq.waiters
        async with producer_a.transaction() as a:
            await a.execute("INSERT INTO notifyq.tasks (kind, payload) VALUES ('reverse', '\"a\"')")
            await trio.sleep(0.6)  # sweeps: the process goes idle again while A is open
            b = await insert(database, "reverse", "b")  # producer B commits
            started = trio.current_time()
            [row] = await wait_ended(database, b, timeout=5)
            waited = trio.current_time() - started
    assert row["status"] == "done"
    print(f"B's task ended {waited * 1000:.0f} ms after its commit while A stayed open")


# --- notifications are hints -------------------------------------------------------------------


async def test_a_forged_cancel_notification_cancels_nothing(database: db.Database) -> None:
    async with running_service(database, lease_s=3) as service:
        task_id = await insert(database, "sleep", 1.0)

        async def running() -> bool:
            attempt = attempt_of(service, task_id)
            return attempt is not None and attempt.started > 0

        await eventually(running)
        # Any role may NOTIFY: the producer role could end anyone's running task this way.
        await database.execute("SELECT pg_notify('notifyq_cancel', $1)", str(task_id))
        [row] = await wait_ended(database, task_id)
    assert row["status"] == "done"


async def test_a_real_cancel_still_stops_a_running_task_at_once(database: db.Database) -> None:
    async with running_service(database, lease_s=30) as service:
        task_id = await insert(database, "sleep", 20)

        async def running() -> bool:
            attempt = attempt_of(service, task_id)
            return attempt is not None and attempt.started > 0

        await eventually(running)
        started = trio.current_time()
        assert await database.fetchval("SELECT notifyq.cancel($1)", task_id) == "cancelling"
        [row] = await wait_ended(database, task_id, timeout=5)
    assert row["status"] == "cancelled"
    assert trio.current_time() - started < 5  # not the next heartbeat (LEASE/3 = 10 s)


# --- leases -------------------------------------------------------------------------------------


async def test_a_row_owned_by_nobody_with_an_endless_lease_is_recovered(
    database: db.Database,
) -> None:
    ghost = await database.fetchval(
        "INSERT INTO notifyq.tasks (kind, payload, status, locked_by, locked_until, attempts)"
        " VALUES ('reverse', '\"boo\"', 'in_progress', 'ghost', 'infinity', 1) RETURNING id"
    )
    async with running_service(database, lease_s=1.5):
        [row] = await wait_ended(database, ghost, timeout=10)
    assert row["status"] == "done" and row["result"] == "oob"
    events = await database.fetch(
        "SELECT event, worker FROM notifyq.task_events WHERE task_id = $1 ORDER BY id", ghost
    )
    assert ("recovered", "ghost") in [(e["event"], e["worker"]) for e in events]


async def test_a_blocked_event_loop_is_reported_with_the_task_and_kind(
    database: db.Database,
) -> None:
    app = App()

    @app.handler("blocker")
    async def blocker(task: Task) -> str:
        time.sleep(1.2)  # noqa: ASYNC251  (the mistake under test)
        return "done"

    with captured_logs() as logs:
        async with running_service(database, app, lease_s=3) as service:
            task_id = await insert(database, "blocker")
            [row] = await wait_ended(database, task_id)
            await eventually(lambda: _async_true(service.watch.blocked))
    assert row["status"] == "done"
    [blocked] = [e for e in logs if e["event"] == "loop.blocked"]
    assert blocked["task_id"] == task_id and blocked["kind"] == "blocker"
    assert blocked["blocked_s"] >= 0.9
    assert "blocker" in blocked["where"]
    assert "def handler" in blocked["why"]


async def _ended(database: db.Database, ids: list[int]) -> bool:
    return bool(
        await database.fetchval(
            "SELECT bool_and(status IN ('done', 'error', 'cancelled')) FROM notifyq.tasks"
            " WHERE id = ANY($1::bigint[])",
            ids,
        )
    )


async def _async_true(value: object) -> bool:
    return bool(value)
