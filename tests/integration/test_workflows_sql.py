"""Workflows in SQL (migration 0014): tasks that wait for their parents (tasks.depends_on).

Every task is added with a plain INSERT and ended through notifyq's own statements (claim,
finish, recover_expired, cancel, retry); each test ends by checking the invariants of
tests/flows.py (no waiting task with nothing left to wait for, none released twice).
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from notifyq import db, errors, listen, sql, store
from tests import flows
from tests.flows import add, claim, finish, status, statuses


async def assert_sound(database: db.Database) -> None:
    assert await flows.broken_invariants(database) == []


async def test_a_task_waits_while_a_parent_has_not_ended_and_is_never_claimed(
    database: db.Database,
) -> None:
    parent = await add(database, "p")
    child = await add(database, "c", depends_on=[parent])
    assert await status(database, child) == "waiting"
    assert await database.fetchval("SELECT waiting_on FROM notifyq.tasks WHERE id = $1", child) == 1
    claimed = await claim(database, kinds=["p", "c"])
    assert [r["id"] for r in claimed] == [parent]
    assert await claim(database, kinds=["p", "c"]) == []
    await assert_sound(database)


async def test_a_task_whose_parents_all_ended_done_is_pending_at_once(
    database: db.Database,
) -> None:
    a, b = await add(database, "p"), await add(database, "p")
    await finish(database, await claim(database))
    child = await add(database, "c", depends_on=[a, b, a])
    assert await status(database, child) == "pending"
    assert await flows.events(database, child) == []
    assert [r["id"] for r in await claim(database)] == [child]


@pytest.mark.parametrize(
    ("parents", "message"),
    [
        ("{{0}}", "depends_on of task {id} names task 0, which does not exist"),
        ("{{{self}}}", "depends_on of task {id} names task {id}, which is not an earlier task"),
        ("{{{later}}}", "depends_on of task {id} names task {later}, which is not an earlier task"),
        ("{{{first},NULL}}", "depends_on of task {id} holds NULL"),
    ],
)
async def test_a_parent_that_is_not_an_earlier_task_is_refused_naming_it(
    database: db.Database, parents: str, message: str
) -> None:
    first = await add(database, "p")
    task_id = first + 1
    later = first + 5
    text = parents.format(self=task_id, later=later, first=first)
    with pytest.raises(errors.QueryError) as refused:
        await database.execute(
            "INSERT INTO notifyq.tasks (kind, depends_on) VALUES ('c', $1::text::bigint[])", text
        )
    assert str(refused.value) == message.format(id=task_id, later=later)
    assert refused.value.sqlstate in ("23503", "23514")
    assert await database.fetchval("SELECT count(*) FROM notifyq.tasks") == 1


async def test_the_last_parents_end_releases_the_dependent_in_its_transaction(
    database: db.Database,
) -> None:
    a, b = await add(database, "p"), await add(database, "p")
    child = await add(database, "c", depends_on=[a, b])
    [ra, rb] = await claim(database, kinds=["p"])
    await finish(database, [ra])
    assert await status(database, child) == "waiting"
    assert await database.fetchval("SELECT waiting_on FROM notifyq.tasks WHERE id = $1", child) == 1

    async def end_b_and_look(conn: db.Connection) -> str:
        async with conn.transaction():
            await conn.fetch(sql.queries["finish"], *flows.outcome_args("w", [rb], "done"))
            return str(await conn.fetchval("SELECT status FROM notifyq.tasks WHERE id = $1", child))

    assert await database.run(end_b_and_look) == "pending"
    assert await flows.events(database, child) == [("waiting", None, None), ("released", b, None)]
    assert [r["id"] for r in await claim(database, kinds=["c"])] == [child]
    await assert_sound(database)


async def test_a_release_wakes_waiting_processes_and_every_end_still_notifies_done(
    database: db.Database,
) -> None:
    parent = await add(database, "p")
    child = await add(database, "c", depends_on=[parent], policy="cancel")
    grandchild = await add(database, "g", depends_on=[child])
    rows = await claim(database, kinds=["p"])
    await database.fetchval(sql.queries["go_idle"], "idle-process", ["default"])
    channels = ["notifyq", "notifyq_done"]
    async with listen.open_listener(database.loop, database.dsn, channels) as listener:
        await finish(database, rows, "failed")
        await database.execute("SELECT pg_notify('notifyq_done', 'sentinel')")
        heard: list[tuple[str, str]] = []
        with trio.fail_after(10):
            async for note in listener:
                heard.append((note.channel, note.payload))
                if note.payload == "sentinel":
                    break
    ended = {p for c, p in heard if c == "notifyq_done"}
    assert any(f'"id" : {parent}' in p and '"error"' in p for p in ended)
    assert any(f'"id" : {child}' in p and '"cancelled"' in p for p in ended)
    assert any(f'"id" : {grandchild}' in p and '"cancelled"' in p for p in ended)

    # A released dependent wakes the processes waiting for its queue.
    other = await add(database, "p")
    waiter = await add(database, "c", depends_on=[other])
    rows = await claim(database, kinds=["p"])
    await database.fetchval(sql.queries["go_idle"], "idle-process", ["default"])
    async with listen.open_listener(database.loop, database.dsn, ["notifyq"]) as listener:
        await finish(database, rows)
        with trio.fail_after(10):
            note = await listener.__anext__()
    assert note.payload == "default"
    assert await status(database, waiter) == "pending"


async def test_a_failed_parent_cancels_its_dependents_transitively_each_naming_its_parent(
    database: db.Database,
) -> None:
    root = await add(database, "p")
    b = await add(database, "c", depends_on=[root])
    c = await add(database, "c", depends_on=[b])
    runs = await add(database, "c", depends_on=[c], policy="run")
    after_runs = await add(database, "c", depends_on=[runs])
    await finish(database, await claim(database, kinds=["p"]), "failed")
    assert await statuses(database, root, b, c, runs, after_runs) == [
        "error",
        "cancelled",
        "cancelled",
        "pending",
        "waiting",
    ]
    errors_ = await database.fetch(
        "SELECT id, error FROM notifyq.tasks WHERE id = ANY($1::bigint[]) ORDER BY id", [b, c]
    )
    assert [r["error"] for r in errors_] == [
        f"parent task {root} ended error",
        f"parent task {b} ended cancelled",
    ]
    assert (await flows.events(database, c))[-1] == ("cancelled", b, None)
    assert (await flows.events(database, runs))[-1] == ("released", c, None)
    await assert_sound(database)


async def test_a_dependent_of_a_parent_that_failed_already_is_cancelled_at_insert(
    database: db.Database,
) -> None:
    parent = await add(database, "p")
    await finish(database, await claim(database), "failed")
    async with listen.open_listener(database.loop, database.dsn, ["notifyq_done"]) as listener:
        child = await add(database, "c", depends_on=[parent])
        with trio.fail_after(10):
            note = await listener.__anext__()
    assert f'"id" : {child}' in note.payload
    row = await database.fetchrow("SELECT status, error FROM notifyq.tasks WHERE id = $1", child)
    assert row is not None
    assert (row["status"], row["error"]) == ("cancelled", f"parent task {parent} ended error")
    assert await flows.events(database, child) == [("cancelled", parent, None)]
    # With policy 'run' it runs anyway.
    runner = await add(database, "c", depends_on=[parent], policy="run")
    assert await status(database, runner) == "pending"


async def test_a_bad_policy_is_refused_by_a_named_constraint(database: db.Database) -> None:
    with pytest.raises(errors.QueryError, match="tasks_on_parent_failure_valid"):
        await database.execute("INSERT INTO notifyq.tasks (on_parent_failure) VALUES ('ignore')")


async def test_a_task_with_parents_has_no_unique_key(database: db.Database) -> None:
    parent = await add(database, "p")
    with pytest.raises(errors.QueryError, match="tasks_unique_key_without_parents"):
        await database.execute(
            "INSERT INTO notifyq.tasks (depends_on, unique_key) VALUES ($1, 'k')", [parent]
        )


async def test_cancel_of_a_waiting_task_cancels_it_and_its_dependents(
    database: db.Database,
) -> None:
    parent = await add(database, "p")
    child = await add(database, "c", depends_on=[parent])
    grandchild = await add(database, "g", depends_on=[child])
    assert await database.fetchval(sql.queries["cancel"], child) == "cancelled"
    assert await statuses(database, parent, child, grandchild) == [
        "pending",
        "cancelled",
        "cancelled",
    ]
    assert await database.fetchval("SELECT error FROM notifyq.tasks WHERE id = $1", grandchild) == (
        f"parent task {child} ended cancelled"
    )
    # The parent's end later finds nobody waiting.
    await finish(database, await claim(database, kinds=["p"]))
    assert await statuses(database, child, grandchild) == ["cancelled", "cancelled"]
    await assert_sound(database)


async def test_retry_of_a_cancelled_dependent_waits_for_its_retried_parent(
    database: db.Database,
) -> None:
    parent = await add(database, "p")
    child = await add(database, "c", depends_on=[parent])
    await finish(database, await claim(database, kinds=["p"]), "failed")
    assert await status(database, child) == "cancelled"
    # While the parent has failed, the dependent's policy holds: nothing changes.
    assert await database.fetchval(sql.queries["retry"], child) == "parent_failed"
    assert await status(database, child) == "cancelled"
    # Retry the parent, then the dependent: it waits for the parent's new run.
    assert await database.fetchval(sql.queries["retry"], parent) == "requeued"
    assert await database.fetchval(sql.queries["retry"], child) == "waiting"
    assert await status(database, child) == "waiting"
    await finish(database, await claim(database, kinds=["p"]))
    assert await status(database, child) == "pending"
    await assert_sound(database)


async def test_retry_of_an_ended_parent_makes_its_waiting_dependents_wait_for_it_again(
    database: db.Database,
) -> None:
    a, b = await add(database, "p"), await add(database, "q")
    child = await add(database, "c", depends_on=[a, b], policy="run")
    await finish(database, await claim(database, kinds=["p"]), "failed")
    assert await database.fetchval("SELECT waiting_on FROM notifyq.tasks WHERE id = $1", child) == 1
    assert await database.fetchval(sql.queries["retry"], a) == "requeued"
    assert await database.fetchval("SELECT waiting_on FROM notifyq.tasks WHERE id = $1", child) == 2
    await finish(database, await claim(database, kinds=["q"]))
    assert await status(database, child) == "waiting"
    await finish(database, await claim(database, kinds=["p"]))
    assert await status(database, child) == "pending"
    await assert_sound(database)


async def test_a_long_chain_is_cancelled_by_one_statement_without_nesting_deeply(
    database: db.Database,
) -> None:
    """The cascade is a loop over generations, not one trigger nested in another per
    generation (which would exceed max_stack_depth around a few hundred)."""
    root = await add(database, "p")
    await database.execute(
        """
        DO $$
        DECLARE
            previous bigint := (SELECT max(id) FROM notifyq.tasks);
        BEGIN
            FOR i IN 1..3000 LOOP
                INSERT INTO notifyq.tasks (kind, depends_on) VALUES ('c', ARRAY[previous])
                RETURNING id INTO previous;
            END LOOP;
        END
        $$
        """
    )
    await finish(database, await claim(database, kinds=["p"]), "failed")
    counts = dict(
        await database.fetch("SELECT status, count(*) FROM notifyq.tasks GROUP BY status")
    )
    assert counts == {"error": 1, "cancelled": 3000}
    last = await database.fetchval("SELECT max(id) FROM notifyq.tasks")
    assert (await flows.events(database, last))[-1] == ("cancelled", last - 1, None)
    assert root < last


async def test_a_chain_added_in_one_statement_is_released_step_by_step(
    database: db.Database,
) -> None:
    """Parents added earlier in the same statement count (a client that reserved ids)."""
    base = await database.fetchval("SELECT nextval(pg_get_serial_sequence('notifyq.tasks', 'id'))")
    await database.execute(
        "SELECT setval(pg_get_serial_sequence('notifyq.tasks', 'id'), $1::bigint + 3)", base
    )
    await database.execute(
        "INSERT INTO notifyq.tasks (id, kind, depends_on)"
        " VALUES ($1, 'a', NULL), ($1 + 1, 'b', ARRAY[$1]), ($1 + 2, 'c', ARRAY[$1 + 1])",
        base,
    )
    assert await statuses(database, base, base + 1, base + 2) == ["pending", "waiting", "waiting"]
    for kind in "abc":
        [row] = await claim(database, kinds=[kind])
        await finish(database, [row])
    assert await statuses(database, base, base + 1, base + 2) == ["done", "done", "done"]
    await assert_sound(database)


async def test_waiting_tasks_are_not_reaped_not_pending_and_not_unserved(
    database: db.Database,
) -> None:
    parent = await add(database, "p")
    child = await add(database, "c", depends_on=[parent])
    assert await database.fetch(sql.queries["recover_expired"], 100) == []
    counts = {(r["status"]) for r in await database.fetch(sql.queries["counts"])}
    assert counts == {"pending", "waiting"}
    unserved = await database.fetch(sql.queries["unserved"])
    assert [(r["kind"], r["n"]) for r in unserved] == [("p", 1)]
    assert await database.fetchval(sql.queries["testing_busy"], ["default"], ["c"]) == 0
    assert await status(database, child) == "waiting"


async def test_a_task_nobody_depends_on_runs_no_workflow_function_when_it_ends(
    database: db.Database,
) -> None:
    """The hot path: the triggers' WHEN (checked in C) keeps the workflow functions out of
    the outcome of a task without dependents (the statement-level trigger reads one setting
    and returns); a parent's end calls its function once."""
    lone = await add(database, "p")
    parent = await add(database, "q")
    await add(database, "c", depends_on=[parent])

    async def calls_while_finishing(conn: db.Connection, kind: str) -> dict[str, int]:
        # The backend's pending counts (not flushed within a transaction): the difference
        # around the statement is the statement's.
        calls = (
            "SELECT funcname, calls FROM pg_stat_xact_user_functions WHERE schemaname = 'notifyq'"
        )
        async with conn.transaction():
            await conn.execute("SET LOCAL track_functions = 'pl'")
            rows = await conn.fetch(
                sql.queries["claim"], ["default"], 10, "w", flows.LEASE_S, [kind]
            )
            before = {r["funcname"]: r["calls"] for r in await conn.fetch(calls)}
            await conn.fetch(sql.queries["finish"], *flows.outcome_args("w", list(rows), "done"))
            after = {r["funcname"]: r["calls"] for r in await conn.fetch(calls)}
            return {f: n - before.get(f, 0) for f, n in after.items() if n > before.get(f, 0)}

    # task_ended: notifyq_done, as before; tasks_release_dependents: once per statement.
    assert await database.run(lambda conn: calls_while_finishing(conn, "p")) == {
        "task_ended": 1,
        "tasks_release_dependents": 1,
    }
    with_dependent = await database.run(lambda conn: calls_while_finishing(conn, "q"))
    assert with_dependent["task_parent_changed"] == 1
    assert with_dependent["release_dependents"] == 1
    assert (
        await database.fetchval("SELECT has_dependents FROM notifyq.tasks WHERE id = $1", lone)
        is False
    )


async def test_the_claim_plan_is_the_same_with_waiting_tasks(database: db.Database) -> None:
    await database.execute(
        "INSERT INTO notifyq.tasks (kind, status, finished_at) "
        "SELECT 'noop', 'done', now() FROM generate_series(1, 20000)"
    )
    await database.execute(
        "INSERT INTO notifyq.tasks (kind) SELECT 'noop' FROM generate_series(1, 50)"
    )
    await database.execute("ANALYZE notifyq.tasks")

    def shape(node: dict[str, Any]) -> Any:
        return (
            node["Node Type"],
            node.get("Index Name"),
            [shape(child) for child in node.get("Plans", [])],
        )

    async def plan() -> Any:
        async def explain(conn: db.Connection) -> Any:
            async with conn.transaction():
                text = await conn.fetchval(
                    "EXPLAIN (FORMAT JSON) " + sql.queries["claim"],
                    ["default"],
                    10,
                    "w",
                    30.0,
                    ["noop"],
                )
            return shape(text[0]["Plan"])

        return await database.run(explain)

    before = await plan()
    parent = await add(database, "p")
    await database.execute(
        "INSERT INTO notifyq.tasks (kind, depends_on) SELECT 'noop', ARRAY[$1::bigint]"
        " FROM generate_series(1, 5000)",
        parent,
    )
    await database.execute("ANALYZE notifyq.tasks")
    after = await plan()
    assert after == before
    assert "tasks_claim_idx" in str(after) and "waiting" not in str(after)


async def test_history_shows_waiting_and_which_parent_released_the_task(
    database: db.Database,
) -> None:
    parent = await add(database, "p")
    child = await add(database, "c", depends_on=[parent])
    await finish(database, await claim(database, kinds=["p"]))
    history = await database.fetch(sql.queries["task_history"], child)
    assert [(r["event"], r["detail"]) for r in history] == [
        ("queued", None),
        ("waiting", None),
        ("released", f"parent task {parent}"),
    ]
    released_at = history[2]["at"]
    parent_done = await database.fetchval(
        "SELECT finished_at FROM notifyq.tasks WHERE id = $1", parent
    )
    assert released_at >= parent_done


def test_the_status_vocabulary_knows_waiting() -> None:
    assert store.Status("waiting") == "waiting"
    assert "waiting" not in store.ENDED


async def test_a_producer_role_adds_dependents_and_batches_with_its_insert_grant_only(
    database: db.Database,
) -> None:
    """Roles as `notifyq roles` makes them: the producer's INSERT and SELECT (id) grants
    are enough; the workflow triggers run as the schema's owner."""
    parent = await add(database, "p")
    await database.execute(
        "DROP ROLE IF EXISTS flows_producer; CREATE ROLE flows_producer;"
        "SELECT notifyq.grant_producer('flows_producer'::regrole)"
    )

    async def as_producer(conn: db.Connection) -> list[Any]:
        async with conn.transaction():
            await conn.execute("SET LOCAL ROLE flows_producer")
            child = await conn.fetchval(
                "INSERT INTO notifyq.tasks (kind, depends_on, on_parent_failure)"
                " VALUES ('c', $1, 'run') RETURNING id",
                [parent],
            )
            batch = await conn.fetchval("INSERT INTO notifyq.batches DEFAULT VALUES RETURNING id")
            await conn.execute(
                "INSERT INTO notifyq.tasks (kind, batch_id)"
                " SELECT 'm', $1 FROM generate_series(1, 3)",
                batch,
            )
            callback = await conn.fetchval(
                "INSERT INTO notifyq.tasks (kind, after_batch, depends_on)"
                " VALUES ('cb', $1, $2) RETURNING id",
                batch,
                [child],
            )
            return [child, batch, callback]

    try:
        child, batch, callback = await database.run(as_producer)
    finally:
        await database.execute("DROP OWNED BY flows_producer; DROP ROLE flows_producer")
    assert await statuses(database, child, callback) == ["waiting", "waiting"]
    assert (
        await database.fetchval("SELECT total FROM notifyq.batch_progress WHERE id = $1", batch)
        == 3
    )
    # It may not set what only notifyq writes.
    statements = [
        r[0]
        for r in await database.fetch("SELECT notifyq.grant_producer('pg_monitor'::regrole, false)")
    ]
    granted = " ".join(statements)
    for column in ("depends_on", "on_parent_failure", "batch_id", "after_batch"):
        assert column in granted
    for column in ("waiting_on", "has_dependents", "status"):
        assert column not in granted


async def test_a_worker_role_gets_the_batches_and_lock_parents(database: db.Database) -> None:
    worker = " ".join(
        r[0]
        for r in await database.fetch("SELECT notifyq.grant_worker('pg_monitor'::regrole, false)")
    )
    functions = " ".join(
        r[0]
        for r in await database.fetch(
            "SELECT notifyq.grant_worker_functions('pg_monitor'::regrole, false)"
        )
    )
    assert "notifyq.batches" in worker and "notifyq.batch_progress" in worker
    assert "notifyq.lock_parents(bigint,bigint[],bigint,boolean)" in functions
    public = await database.fetch(
        "SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'notifyq'::regnamespace"
        " AND has_function_privilege('public', p.oid, 'EXECUTE')"
    )
    assert public == []


async def test_a_chain_added_with_ctes_in_one_statement_needs_no_reserved_ids(
    database: db.Database,
) -> None:
    """Each step names the previous one's RETURNING id: a producer needs nothing but its
    INSERT (a step's trigger sees the rows the statement added before it)."""
    ids = await database.fetchrow(
        """
        WITH a AS (INSERT INTO notifyq.tasks (kind) VALUES ('a') RETURNING id),
             b AS (INSERT INTO notifyq.tasks (kind, depends_on)
                   SELECT 'b', ARRAY[a.id] FROM a RETURNING id)
        INSERT INTO notifyq.tasks (kind, depends_on)
        SELECT 'c', ARRAY[b.id] FROM b
        RETURNING (SELECT id FROM a) AS a, (SELECT id FROM b) AS b, id AS c
        """
    )
    assert ids is not None
    assert await statuses(database, ids["a"], ids["b"], ids["c"]) == [
        "pending",
        "waiting",
        "waiting",
    ]
    for kind in "abc":
        await finish(database, await claim(database, kinds=[kind]))
    assert await statuses(database, ids["a"], ids["b"], ids["c"]) == ["done", "done", "done"]
    await assert_sound(database)
