"""The history partitioned by day (migration 0007): partitions made ahead, retention by
dropping them, and the upgrade of an existing history that keeps every row."""

from __future__ import annotations

import datetime as dt
import functools

import pytest
import trio

from notifyq import db, migrations, sql, store
from notifyq.engine import maintenance
from notifyq.engine.maintenance import apply_retention
from tests import pg
from tests.helpers import eventually, insert, running_service, wait_ended

PARTITIONS = """
    SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = 'notifyq.task_events'::regclass ORDER BY 1"""


def day_name(days_from_today: int) -> str:
    day = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=days_from_today)
    return f"task_events_p{day:%Y%m%d}"


async def partitions(database: db.Database) -> list[str]:
    return [r["relname"] for r in await database.fetch(PARTITIONS)]


async def test_a_new_history_is_partitioned_with_a_default(database: db.Database) -> None:
    kind = await database.fetchval(
        "SELECT relkind::text FROM pg_class WHERE oid = 'notifyq.task_events'::regclass"
    )
    assert kind == "p"
    assert await partitions(database) == ["task_events_default"]
    assert await database.fetchval("SELECT to_regclass('notifyq.task_events_legacy')") is None


async def test_partitions_are_made_ahead_and_catch_up_the_default(database: db.Database) -> None:
    task_id = await insert(database, "noop")
    # No day partition yet: the event lands in the default partition.
    await database.execute(
        "INSERT INTO notifyq.task_events (task_id, event) VALUES ($1, 'started')", task_id
    )
    done = await store.maintain_partitions(database, days_ahead=maintenance.PARTITION_DAYS_AHEAD)
    assert done.created == [day_name(d) for d in range(maintenance.PARTITION_DAYS_AHEAD + 1)]
    assert not done.legacy_attached
    again = await store.maintain_partitions(database, days_ahead=3)
    assert again.created == []
    # The event moved into today's partition, and the history still reads it.
    where = await database.fetchval(
        "SELECT tableoid::regclass::text FROM notifyq.task_events WHERE task_id = $1", task_id
    )
    assert where == f"notifyq.{day_name(0)}"
    history = await store.task_history(database, task_id)
    assert [r.event for r in history] == ["queued", "started"]


async def test_the_service_makes_the_partitions_and_tasks_run(database: db.Database) -> None:
    async with running_service(database) as _:
        task_id = await insert(database, "reverse", '"abc"')
        (row,) = await wait_ended(database, task_id)
    assert row["status"] == "done"
    assert day_name(0) in await partitions(database)
    counts = await database.fetch(
        "SELECT tableoid::regclass::text AS part, count(*) AS n FROM notifyq.task_events GROUP BY 1"
    )
    # One row per attempt: its outcome, which carries the attempt's start (migration 0010).
    assert {r["part"]: r["n"] for r in counts} == {f"notifyq.{day_name(0)}": 1}


async def test_prune_drops_old_partitions_whole(database: db.Database) -> None:
    await store.maintain_partitions(database, days_ahead=1)
    # An old day, as if made ahead back then, and an old row the default partition caught.
    await database.execute(
        "CREATE TABLE notifyq.task_events_p20000101 PARTITION OF notifyq.task_events "
        "FOR VALUES FROM ('2000-01-01 00:00+00') TO ('2000-01-02 00:00+00')"
    )
    await database.execute(
        "INSERT INTO notifyq.task_events (task_id, event, at) VALUES "
        "(1, 'done', '2000-01-01 12:00+00'), (2, 'done', '2001-06-01 12:00+00'), "
        "(3, 'done', now())"
    )
    assert await apply_retention(database, 7 * 86400) == 0  # no task rows to delete
    assert "task_events_p20000101" not in await partitions(database)
    assert await database.fetchval("SELECT array_agg(task_id) FROM notifyq.task_events") == [3]
    assert (await store.drop_history_days(database, older_than_s=7 * 86400)).dropped == []


async def apply(url: str, versions: range) -> None:
    """Apply the shipped migrations of ``versions``, each in one transaction, as psql would."""
    async with db.open_database(url, min_size=1, max_size=2) as database:
        for m in migrations.available():
            if m.version in versions:
                await database.run_in_transaction(functools.partial(_execute, text=m.sql))


async def _execute(conn: db.Connection, *, text: str) -> None:
    await conn.execute(text)


@pytest.mark.parametrize("rows", [10, 100_001])
async def test_upgrade_keeps_every_row_of_an_existing_history(
    empty_database_url: str, rows: int
) -> None:
    """Small histories are attached by the migration, big ones by the first partition turn;
    either way every row, its id and the grants stay, and new ids follow the old ones."""
    url = empty_database_url
    pg.psql(url, "CREATE SCHEMA notifyq")
    await apply(url, range(1, 7))
    role = f"notifyq_test_reader_{rows}"
    pg.psql(url, f"DROP ROLE IF EXISTS {role}; CREATE ROLE {role}")
    try:
        pg.psql(url, f"GRANT SELECT, INSERT ON notifyq.task_events TO {role}")
        pg.psql(
            url,
            "INSERT INTO notifyq.task_events (task_id, event, attempt, at) "
            f"SELECT g, 'done', 1, now() - interval '1 day' + g * interval '1 ms' "
            f"FROM generate_series(1, {rows}) g",
        )
        before = pg.psql(url, "SELECT count(*), sum(id), max(id) FROM notifyq.task_events")
        await apply(url, range(7, 1000))  # 0007 and every later one: the code reads those
        async with db.open_database(url, min_size=1, max_size=2) as database:
            legacy_attached = await store.maintain_partitions(database, days_ahead=1)
            assert legacy_attached.legacy_attached == (rows > 100_000)
            assert "task_events_legacy" in await partitions(database)
            await database.execute(
                "INSERT INTO notifyq.task_events (task_id, event) VALUES (0, 'started')"
            )
            new_id = await database.fetchval("SELECT id FROM notifyq.task_events WHERE task_id = 0")
            history = await store.task_history(database, 7)
        assert (
            pg.psql(
                url, "SELECT count(*), sum(id), max(id) FROM notifyq.task_events WHERE task_id > 0"
            )
            == before
        )
        assert new_id == rows + 1
        assert [r.event for r in history] == ["done"]  # (no task row: no 'queued')
        assert (
            pg.psql(
                url,
                f"SELECT has_table_privilege('{role}', 'notifyq.task_events', 'SELECT'), "
                f"has_table_privilege('{role}', 'notifyq.task_events', 'INSERT')",
            )
            == "t|t"
        )
    finally:
        pg.psql(url, f"REVOKE ALL ON ALL TABLES IN SCHEMA notifyq FROM {role}")
        pg.psql(url, f"DROP OWNED BY {role}; DROP ROLE {role}")


async def test_retention_never_stalls_outcome_writes_behind_a_long_reader(
    database: db.Database,
) -> None:
    """Dropping a day needs an ACCESS EXCLUSIVE lock on the history, which a long reader
    holds off; writers queued behind that lock request would wait too. Retention never
    queues for it (and says which days it left), and drops them once the reader is gone."""
    old_days = [f"task_events_p200001{d:02}" for d in range(1, 4)]
    for d, name in enumerate(old_days, start=1):
        await database.execute(
            f"CREATE TABLE notifyq.{name} PARTITION OF notifyq.task_events "
            f"FOR VALUES FROM ('2000-01-{d:02} 00:00+00') TO ('2000-01-{d + 1:02} 00:00+00')"
        )
    task_id = await insert(database, "noop")
    [claimed] = await store.claim(
        database, queues=["default"], kinds=["noop"], limit=1, owner="me", lease_s=30
    )
    outcome = store.Outcome(task_id, 1, store.Verdict.DONE, result_json="1", token=claimed.token)
    results: list[store.HistoryDrop] = []
    blocked: list[list[int]] = []

    async def retention() -> None:
        results.append(await store.drop_history_days(database, older_than_s=7 * 86400))

    async def retention_waits_or_ended() -> bool:
        return bool(results) or bool(
            await database.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND query LIKE '%event_partitions%'"
            )
        )

    async with database.transaction() as reader, database.transaction() as writer:
        await reader.fetchval("SELECT count(*) FROM notifyq.task_events")  # held till the end
        pid = await writer.fetchval("SELECT pg_backend_pid()")
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(retention)
                await eventually(retention_waits_or_ended)

                async def watch() -> None:
                    while True:
                        waits_for = await database.fetchval("SELECT pg_blocking_pids($1)", pid)
                        if waits_for:
                            blocked.append(waits_for)
                        await trio.sleep(0.01)

                nursery.start_soon(watch)
                # An outcome write while the reader holds the history and retention runs.
                written = await writer.fetch(
                    sql.queries["finish"], *store.engine._finish_args("me", [outcome])
                )
                nursery.cancel_scope.cancel()
        assert [(r["id"], r["status"]) for r in written] == [(task_id, "done")]
        assert blocked == []  # never queued behind retention's lock request
    [left] = results
    assert left.dropped == [] and left.busy == old_days
    gone = await store.drop_history_days(database, older_than_s=7 * 86400)
    assert gone.dropped == old_days and gone.busy == []
    assert not set(old_days) & set(await partitions(database))
