"""The core loop against a real PostgreSQL: wake-up, claim order, outcomes."""

from __future__ import annotations

from datetime import timedelta

import trio

from notifyq import db, sql
from notifyq.app import App, Task
from tests.helpers import eventually, insert, running_service, task_row, wait_ended


async def test_sql_insert_is_picked_up_without_waiting_for_the_sweep(database: db.Database) -> None:
    async with running_service(database, fetch_interval_s=60) as service:
        # From an unrelated connection, as any client would.
        async with db.open_database(database.dsn, max_size=1) as other:
            with trio.fail_after(5):
                task_id = await insert(other, "reverse", "hello")
        started = trio.current_time()
        [row] = await wait_ended(database, task_id, timeout=5)
        elapsed = trio.current_time() - started
        # The row is done once the write commits; the writer counts it when the round trip
        # returns, a moment later.
        await eventually(lambda: _is(service.statistics().workers.done, 1))
    assert row["status"] == "done"
    assert row["result"] == "olleh"
    assert row["attempts"] == 1
    assert row["locked_by"] is None and row["finished_at"] is not None
    assert elapsed < 3, f"took {elapsed:.2f}s: the wake-up did not come from NOTIFY"


async def test_reverse_accepts_text_object(database: db.Database) -> None:
    async with running_service(database):
        task_id = await insert(database, "reverse", {"text": "abc"})
        [row] = await wait_ended(database, task_id)
    assert (row["status"], row["result"]) == ("done", "cba")


async def test_priority_order(database: db.Database) -> None:
    ids = {}
    for name, priority in [("low", -5), ("mid", 0), ("high", 10), ("mid2", 0)]:
        ids[name] = await insert(database, "noop", priority=priority)
    async with running_service(database, worker_count=1, fetch_limit=1):
        await wait_ended(database, *ids.values())
    rows = await database.fetch("SELECT id FROM notifyq.tasks ORDER BY started_at")
    by_id = {v: k for k, v in ids.items()}
    assert [by_id[r["id"]] for r in rows] == ["high", "mid", "mid2", "low"]


async def test_bad_payload_ends_error_saying_what_was_expected(database: db.Database) -> None:
    async with running_service(database):
        task_id = await insert(database, "reverse", [1, 2])
        [row] = await wait_ended(database, task_id)
    assert row["status"] == "error"
    assert row["error"] == 'PayloadError: expected a JSON string or {"text": string}, got an array'
    assert row["attempts"] == 1


class Boom(Exception):
    pass


async def test_handler_exception_is_recorded_and_the_worker_lives_on(database: db.Database) -> None:
    app = App()

    @app.handler("boom")
    async def boom(task: Task) -> None:
        raise Boom(f"bad thing {task.payload}")

    async with running_service(database, app=app, worker_count=1):
        failing = await insert(database, "boom", 7, max_attempts=1)
        after = await insert(database, "reverse", "ok")
        rows = await wait_ended(database, failing, after)
    assert rows[0]["status"] == "error"
    assert rows[0]["error"] == "Boom: bad thing 7"
    assert (rows[1]["status"], rows[1]["result"]) == ("done", "ko")


async def test_timeout_ends_the_task_and_the_worker_lives_on(database: db.Database) -> None:
    async with running_service(database, worker_count=1):
        slow = await insert(
            database, "sleep", 30, max_attempts=1, timeout=timedelta(milliseconds=200)
        )
        after = await insert(database, "reverse", "next")
        rows = await wait_ended(database, slow, after, timeout=10)
    assert rows[0]["status"] == "error"
    assert rows[0]["error"] == "timed out after 0.2 s"
    assert rows[1]["status"] == "done"


async def test_kind_default_and_process_default_timeouts(database: db.Database) -> None:
    app = App()

    @app.handler("slow_kind", timeout_s=0.1)
    async def slow_kind(task: Task) -> None:
        await trio.sleep(30)

    async with running_service(database, app=app, task_timeout_s=0.3):
        by_kind = await insert(database, "slow_kind", max_attempts=1)
        by_process = await insert(database, "sleep", 30, max_attempts=1)
        rows = await wait_ended(database, by_kind, by_process, timeout=10)
    assert [r["error"] for r in rows] == ["timed out after 0.1 s", "timed out after 0.3 s"]


async def test_unstorable_result_ends_error(database: db.Database) -> None:
    app = App()

    @app.handler("nan")
    async def nan(task: Task) -> float:
        return float("nan")

    @app.handler("nul")
    async def nul(task: Task) -> str:
        return "a\x00b"

    async with running_service(database, app=app):
        ids = [await insert(database, "nan"), await insert(database, "nul")]
        rows = await wait_ended(database, *ids)
    assert rows[0]["status"] == "error"
    assert rows[0]["error"].startswith("result is not JSON-serialisable")
    assert rows[1]["error"] == "result contains a NUL character, which jsonb cannot store"


async def test_fenced_outcome_from_a_stale_owner_is_refused(database: db.Database) -> None:
    task_id = await insert(database, "noop")
    rows = await database.fetch(sql.queries["claim"], ["default"], 1, "owner-a", 30.0, ["noop"])
    assert [r["id"] for r in rows] == [task_id]
    assert [r["claim_token"] for r in rows] == [1]
    args = ([task_id], [1], ["done"], ['"late"'], [None], [0.0], [1], [None])
    # Wrong owner, wrong attempt, wrong claim token: none may write.
    assert await database.fetch(sql.queries["finish"], "owner-b", *args) == []
    assert await database.fetch(sql.queries["finish"], "owner-a", [task_id], [2], *args[2:]) == []
    assert await database.fetch(sql.queries["finish"], "owner-a", *args[:-2], [2], [None]) == []
    assert (await task_row(database, task_id))["status"] == "in_progress"
    written = await database.fetch(sql.queries["finish"], "owner-a", *args)
    assert [(r["id"], r["status"]) for r in written] == [(task_id, "done")]
    assert (await task_row(database, task_id))["result"] == "late"


async def test_claim_takes_at_most_the_free_workers(database: db.Database) -> None:
    app = App()
    running = 0
    peak = 0

    @app.handler("track")
    async def track(task: Task) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await trio.sleep(0.05)
        running -= 1

    await database.execute(
        "INSERT INTO notifyq.tasks (kind) SELECT 'track' FROM generate_series(1, 40)"
    )
    async with running_service(database, app=app, worker_count=3, fetch_limit=10) as service:
        await eventually(
            lambda: database.fetchval("SELECT bool_and(status = 'done') FROM notifyq.tasks")
        )
        assert service.statistics().workers.claimed == 40
    assert peak == 3


async def _is(value: object, expected: object) -> bool:
    return value == expected
