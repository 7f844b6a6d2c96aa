"""The fence of an attempt (its claim token) and the locks of the heartbeat and the claim.

Every claim of a task takes a new claim token, which never repeats for that task (a retry
resets `attempts`, never the token); outcomes and heartbeats name it, so a stale run can
never write over, extend or stop a newer attempt. The heartbeat never waits for a row lock
and the claim of limited queues locks their rows in one order: neither can deadlock.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import trio

from notifyq import db, errors, sql, store
from notifyq.app import App, Task
from tests.helpers import eventually, insert, running_service, task_row, wait_ended

LEASE_S = 30.0


async def deadlocks(database: db.Database) -> int:
    return int(
        await database.fetchval(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        )
    )


async def lose_and_retry(conn: db.Connection, task_id: int) -> None:
    """As if the process had stalled past its lease: the reaper ends the task (no attempts
    left), then an operator retries it (attempts back to 0)."""
    await conn.execute(
        "UPDATE notifyq.tasks SET locked_until = now() - interval '1 s' WHERE id = $1", task_id
    )
    [lost] = await conn.fetch(sql.queries["recover_expired"], 100)
    assert (lost["id"], lost["status"]) == (task_id, "error")
    assert await conn.fetchval(sql.queries["retry"], task_id) == "requeued"


class TwoRuns:
    """A handler whose first run waits for ``first`` and returns "stale", and whose second
    waits for ``second`` and returns "fresh"."""

    def __init__(self) -> None:
        self.runs = 0
        self.first, self.second = trio.Event(), trio.Event()
        self.first_stopped = False
        self.app = App()
        self.app.handler("twice")(self.handle)

    async def handle(self, task: Task) -> str:
        self.runs += 1
        if self.runs == 1:
            try:
                await self.first.wait()
            except trio.Cancelled:
                self.first_stopped = True
                raise
            return "stale"
        await self.second.wait()
        return "fresh"


async def test_a_stale_run_never_writes_over_the_retried_attempt(database: db.Database) -> None:
    handler = TwoRuns()
    async with running_service(database, app=handler.app, lease_s=LEASE_S) as service:
        task_id = await insert(database, "twice", max_attempts=1)
        await eventually(lambda: _true(handler.runs == 1))
        await database.run_in_transaction(lambda conn: lose_and_retry(conn, task_id))
        # The same process claims the task again: same owner, attempt 1 again.
        await eventually(lambda: _true(handler.runs == 2))
        row = await task_row(database, task_id)
        assert (row["status"], row["attempts"], row["locked_by"]) == (
            "in_progress",
            1,
            service.worker_id,
        )
        handler.first.set()  # the old run's late result: refused
        await eventually(lambda: _true(service.statistics().workers.fenced == 1))
        assert (await task_row(database, task_id))["status"] == "in_progress"
        handler.second.set()  # the new run's result: recorded
        [row] = await wait_ended(database, task_id)
    assert (row["status"], row["result"], row["attempts"]) == ("done", "fresh", 1)


async def test_the_heartbeat_keeps_a_reclaimed_attempt_and_stops_the_stale_one(
    database: db.Database,
) -> None:
    handler = TwoRuns()
    async with running_service(database, app=handler.app, lease_s=1.5) as service:
        task_id = await insert(database, "twice", max_attempts=1)
        await eventually(lambda: _true(handler.runs == 1))
        await database.run_in_transaction(lambda conn: lose_and_retry(conn, task_id))
        await eventually(lambda: _true(handler.runs == 2))
        # The next beat tells the stale run that its lease is gone (its outcome is then
        # refused by the fence), and keeps extending the new one's.
        await eventually(
            lambda: _true(handler.first_stopped and service.statistics().workers.fenced == 1)
        )
        lease = (await task_row(database, task_id))["locked_until"]
        for _ in range(2):
            lease = await eventually(partial(extended_after, database, task_id, lease))
        handler.second.set()
        [row] = await wait_ended(database, task_id)
    assert (row["status"], row["result"], row["attempts"]) == ("done", "fresh", 1)
    events = [e.event for e in await store.task_history(database, task_id)]
    assert "recovered" not in events and events.count("failed") == 1  # the first attempt only


async def test_the_heartbeat_never_waits_for_a_locked_row(database: db.Database) -> None:
    """The outcome writer (or anyone) holds one of the rows: the heartbeat extends the
    others and reports that one as still owned, without waiting; nothing can deadlock."""
    await insert(database, "noop")
    await insert(database, "noop")
    claimed = await store.claim(
        database, queues=["default"], kinds=["noop"], limit=2, owner="me", lease_s=LEASE_S
    )
    low, high = sorted(claimed, key=lambda c: c.id)
    me = store.Registration("me", ("default",), 5)
    before = await deadlocks(database)
    async with database.transaction() as writer:
        await writer.execute("UPDATE notifyq.tasks SET priority = 1 WHERE id = $1", high.id)
        with trio.fail_after(10):
            kept = await store.heartbeat(
                database, me, attempts=[(low.id, low.token), (high.id, high.token)], lease_s=60
            )
        # The writer goes on to the row the heartbeat locked: it is free again.
        await writer.execute("UPDATE notifyq.tasks SET priority = 1 WHERE id = $1", low.id)
    # The busy row is still owned, but its lease was not extended, and the beat says so
    # (the process keeps that attempt's old deadline).
    assert kept == {
        (low.id, low.token): store.Beat(cancel_requested=False, extended=True),
        (high.id, high.token): store.Beat(cancel_requested=False, extended=False),
    }
    leases = await database.fetch(
        "SELECT id, locked_until > now() + interval '45 s' AS extended FROM notifyq.tasks "
        "ORDER BY id"
    )
    assert [(r["id"], r["extended"]) for r in leases] == [(low.id, True), (high.id, False)]
    assert await deadlocks(database) == before


async def test_the_heartbeat_is_fenced_by_the_claim_token(database: db.Database) -> None:
    task_id = await insert(database, "noop")
    [old] = await store.claim(
        database, queues=["default"], kinds=["noop"], limit=1, owner="me", lease_s=LEASE_S
    )
    await database.run_in_transaction(lambda conn: _expire_and_recover(conn, task_id))
    [new] = await store.claim(
        database, queues=["default"], kinds=["noop"], limit=1, owner="me", lease_s=LEASE_S
    )
    assert (old.id, old.attempt) == (new.id, new.attempt - 1) and new.token > old.token
    me = store.Registration("me", ("default",), 5)
    kept = await store.heartbeat(
        database, me, attempts=[(task_id, old.token), (task_id, new.token)], lease_s=LEASE_S
    )
    assert kept == {(task_id, new.token): store.Beat(cancel_requested=False, extended=True)}


async def test_a_stale_and_a_current_outcome_in_one_write_count_once(
    database: db.Database,
) -> None:
    # The writer may batch a stale run's outcome with the re-claimed attempt's: the result
    # names the attempt written (task id and claim token), so only that one counts.
    task_id = await insert(database, "noop")
    [old] = await store.claim(
        database, queues=["default"], kinds=["noop"], limit=1, owner="me", lease_s=LEASE_S
    )
    await database.run_in_transaction(lambda conn: _expire_and_recover(conn, task_id))
    [new] = await store.claim(
        database, queues=["default"], kinds=["noop"], limit=1, owner="me", lease_s=LEASE_S
    )
    written = await store.finish(
        database,
        owner="me",
        outcomes=[
            store.Outcome(task_id, old.attempt, store.Verdict.DONE, "1", token=old.token),
            store.Outcome(task_id, new.attempt, store.Verdict.DONE, "2", token=new.token),
        ],
    )
    assert written == {(task_id, new.token): "done"}
    assert (await task_row(database, task_id))["result"] == 2


async def _expire_and_recover(conn: db.Connection, task_id: int) -> None:
    await conn.execute(
        "UPDATE notifyq.tasks SET locked_until = now() - interval '1 s' WHERE id = $1", task_id
    )
    await conn.fetch(sql.queries["recover_expired"], 100)


async def extended_after(database: db.Database, task_id: int, lease: Any) -> Any:
    """The task's lease if the heartbeat extended it beyond ``lease`` (else None)."""
    return await database.fetchval(
        "SELECT locked_until FROM notifyq.tasks WHERE id = $1 AND locked_until > $2",
        task_id,
        lease,
    )


async def _true(value: bool) -> bool:
    return value


# --- claim_limited: one lock order -------------------------------------------------------


async def _limit(database: db.Database, *queues: str) -> None:
    await database.execute(
        "INSERT INTO notifyq.queues (name, concurrency) SELECT q, 100 FROM unnest($1::text[]) q",
        list(queues),
    )


async def test_claims_of_limited_queues_in_opposite_orders_do_not_deadlock(
    database: db.Database,
) -> None:
    """Two processes claim the limited queues a and b, each rotating their order: the first
    holds a's row, the second locks b's then waits for a's, the first goes on to b's."""
    await _limit(database, "a", "b")
    before = await deadlocks(database)
    outcome: dict[str, Any] = {}

    async def second() -> None:
        try:
            outcome["second"] = await database.fetch(
                sql.queries["claim_limited"], ["b", "a"], 5, "p2", LEASE_S, None
            )
        except errors.StatementAborted as exc:
            outcome["second"] = exc

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery, database.transaction() as first:
            await first.fetch(sql.queries["claim_limited"], ["a"], 5, "p1", LEASE_S, None)
            nursery.start_soon(second)
            # The second claim waits for a lock (or, with the rows locked in one
            # order, for a's row before it takes b's).
            await eventually(
                lambda: database.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND query LIKE '%claim_limited%'"
                )
            )
            try:
                await first.fetch(sql.queries["claim_limited"], ["a", "b"], 5, "p1", LEASE_S, None)
                outcome["first"] = "claimed"
            except errors.StatementAborted as exc:
                outcome["first"] = exc
    assert outcome["first"] == "claimed", str(outcome)
    assert isinstance(outcome["second"], list), str(outcome)
    assert await deadlocks(database) == before


async def test_many_claimers_of_several_limited_queues_never_deadlock(
    database: db.Database,
) -> None:
    queues = ["a", "b", "c"]
    await _limit(database, *queues)
    await database.execute(
        "INSERT INTO notifyq.tasks (queue, kind) "
        "SELECT q, 'noop' FROM unnest($1::text[]) q, generate_series(1, 60)",
        queues,
    )
    before = await deadlocks(database)
    aborted: list[BaseException] = []

    async def claimer(n: int) -> None:
        turn = n
        while True:
            turn += 1
            order = queues[turn % 3 :] + queues[: turn % 3]
            try:
                rows = await database.fetch(
                    sql.queries["claim_limited"], order, 2, f"p{n}", 30.0, None
                )
            except errors.StatementAborted as exc:
                aborted.append(exc)
                continue
            claimed = [r for r in rows if r["id"] is not None]
            if not claimed and not any(r["held_s"] for r in rows):
                left = await database.fetchval(
                    "SELECT count(*) FROM notifyq.tasks WHERE status <> 'done'"
                )
                if not left:
                    return
            if claimed:
                await database.fetch(
                    sql.queries["finish"],
                    f"p{n}",
                    [r["id"] for r in claimed],
                    [r["attempts"] for r in claimed],
                    ["done"] * len(claimed),
                    ["null"] * len(claimed),
                    [None] * len(claimed),
                    [0.0] * len(claimed),
                    [r["claim_token"] for r in claimed],
                    [None] * len(claimed),
                )

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for n in range(4):
                nursery.start_soon(claimer, n)
    assert aborted == []
    assert await deadlocks(database) == before
    assert (
        await database.fetchval("SELECT count(*) FROM notifyq.tasks WHERE status = 'done'") == 180
    )
