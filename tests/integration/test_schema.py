"""Migrations, triggers and the claim plan against a real PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import trio

from notifyq import db, listen, migrations, sql
from tests import pg

SHIPPED = migrations.available()


def run_migrate(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "notifyq", "migrate"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DATABASE_URL": url, "LOG_FORMAT": "json"},
        check=False,
    )


@pytest.mark.slow
def test_migrate_from_empty_then_again(empty_database_url: str) -> None:
    first = run_migrate(empty_database_url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"applied {len(SHIPPED)} migration(s)"
    again = run_migrate(empty_database_url)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "schema is up to date"
    ledger = pg.psql(
        empty_database_url, "SELECT version, name FROM notifyq.schema_migrations ORDER BY version"
    )
    assert ledger == "\n".join(f"{m.version}|{m.name}" for m in SHIPPED)
    assert ledger.startswith("1|init")


@pytest.mark.slow
def test_migrate_from_two_processes_at_once(empty_database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": empty_database_url, "LOG_LEVEL": "warning"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "notifyq", "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sorted(out.strip() for out, _ in outputs) == [
        f"applied {len(SHIPPED)} migration(s)",
        "schema is up to date",
    ]
    count = pg.psql(empty_database_url, "SELECT count(*) FROM notifyq.schema_migrations")
    assert count == str(len(SHIPPED))


def test_serve_refuses_an_unmigrated_external_database(empty_database_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "notifyq", "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DATABASE_URL": empty_database_url, "LOG_LEVEL": "warning"},
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "notifyq: the database schema is at version 0, this notifyq needs "
        f"{SHIPPED[-1].version}: run `notifyq migrate`"
    )


@pytest.mark.slow
@pytest.mark.skipif(pg.pg15_bindir() is None, reason="no PostgreSQL 15 server binaries here")
def test_migration_applies_on_postgresql_15() -> None:
    bindir = pg.pg15_bindir()
    assert bindir is not None
    # Not pytest's tmp_path: its parents are private to root, and the server runs as
    # another user when the tests run as root.
    tmp_path = Path(tempfile.mkdtemp(prefix="notifyq-pg15-"))
    data, sock = tmp_path / "data", tmp_path / "sock"
    sock.mkdir()
    user = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        user = ["runuser", "-u", "embedded_postgres", "--"]
        subprocess.run(["chown", "-R", "embedded_postgres", str(tmp_path)], check=True)
        tmp_path.chmod(0o777)
    subprocess.run(
        [*user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    subprocess.run(
        [
            *user,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-o",
            f"-h '' -k {sock} -c fsync=off",
            "-l",
            str(tmp_path / "log"),
            "start",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    try:
        url = f"postgresql://postgres@/postgres?host={sock}"
        result = run_migrate(url)
        assert result.returncode == 0, result.stderr
        assert pg.psql(url, "SHOW server_version_num").startswith("15")
        assert (
            pg.psql(url, "INSERT INTO notifyq.tasks (payload) VALUES ('\"x\"') RETURNING status")
            == "pending"
        )
        # 'infinity' (parked) and '-infinity' (due now) in the next-due and claim
        # arithmetic: PostgreSQL 15 cannot subtract infinite timestamps.
        pg.psql(url, "DELETE FROM notifyq.tasks")
        pg.psql(
            url,
            "INSERT INTO notifyq.tasks (kind, run_at) VALUES ('noop', 'infinity'), "
            "('noop', '-infinity')",
        )
        due = pg.psql(
            url,
            f"PREPARE due(text[], text[]) AS {sql.queries['next_due']}; "
            "EXECUTE due('{default}', '{noop}')",
        )
        assert float(due) < 0  # the '-infinity' row is overdue
        claimed = pg.psql(
            url,
            f"PREPARE c(text[], int, text, float8, text[]) AS {sql.queries['claim']}; "
            "EXECUTE c('{default}', 10, 'pg15', 30, '{noop}')",
        )
        assert len(claimed.splitlines()) == 1  # the '-infinity' row; the parked one waits
        assert pg.psql(url, "SELECT count(*) FROM notifyq.tasks WHERE status = 'pending'") == "1"
        parked_only = pg.psql(
            url,
            f"PREPARE due(text[], text[]) AS {sql.queries['next_due']}; "
            "EXECUTE due('{default}', '{noop}')",
        )
        assert parked_only == ""  # NULL: nothing will come due
        # The history's partitions (migration 0007): made ahead, the outcome's event moved
        # from the default partition into today's.
        running = pg.psql(url, "SELECT id FROM notifyq.tasks WHERE status = 'in_progress'")
        finished = pg.psql(
            url,
            f"PREPARE f(text, bigint[], int[], text[], text[], text[], float8[], bigint[], "
            f"text[]) AS {sql.queries['finish']}; "
            f"EXECUTE f('pg15', '{{{running}}}', '{{1}}', '{{done}}', '{{null}}', '{{NULL}}', "
            "'{0}', '{1}', '{NULL}')",
        )
        assert finished == f"{running}|1|done"  # the task, its claim token, its status
        assert pg.psql(url, "SELECT count(*) FROM notifyq.ensure_event_partitions(1)") == "2"
        partition, has_start = pg.psql(
            url,
            "SELECT tableoid::regclass::text || ' ' || (started_at IS NOT NULL) "
            "FROM notifyq.task_events WHERE event = 'done'",
        ).split()
        assert partition.startswith("notifyq.task_events_p")
        assert has_start == "true"
        # Retention with its NOWAIT locks (migration 0011): a cut-off a day ahead drops today.
        dropped = pg.psql(url, "SELECT * FROM notifyq.prune_event_partitions('-1 day')")
        assert dropped == f"{partition.removeprefix('notifyq.')}|t"
        # Workflows (migration 0014): a cancelled parent cancels its dependent, naming it.
        parent = pg.psql(url, "INSERT INTO notifyq.tasks (kind) VALUES ('noop') RETURNING id")
        child = pg.psql(
            url,
            "INSERT INTO notifyq.tasks (kind, depends_on) "
            f"VALUES ('noop', '{{{parent}}}') RETURNING id",
        )
        assert pg.psql(url, f"SELECT notifyq.cancel({parent})") == "cancelled"
        assert pg.psql(url, f"SELECT status, error FROM notifyq.tasks WHERE id = {child}") == (
            f"cancelled|parent task {parent} ended cancelled"
        )
    finally:
        subprocess.run(
            [*user, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(tmp_path, ignore_errors=True)


async def test_bulk_insert_sends_one_notification_per_queue(database: db.Database) -> None:
    assert await database.fetchval(sql.queries["go_idle"], "w", ["even", "odd"]) is True
    async with listen.open_listener(database.loop, database.dsn, ["notifyq"]) as listener:
        await database.execute(
            "INSERT INTO notifyq.tasks (queue, kind) "
            "SELECT CASE WHEN g % 2 = 0 THEN 'even' ELSE 'odd' END, 'noop' "
            "FROM generate_series(1, 10000) g"
        )
        received = []
        with trio.move_on_after(1.0):
            async for note in listener:
                received.append(note.payload)
    assert sorted(received) == ["even", "odd"]
    # 'queued' is derived from created_at, not stored once per row.
    [queued, *_] = await database.fetch(sql.queries["task_history"], 1)
    assert (queued["event"], queued["attempt"]) == ("queued", 0)
    assert await database.fetchval("SELECT count(*) FROM notifyq.task_events") == 0


async def test_insert_notifies_only_while_a_process_waits(database: db.Database) -> None:
    async def notes_after(statement: str) -> list[str]:
        async with listen.open_listener(database.loop, database.dsn, ["notifyq"]) as listener:
            await database.execute(statement)
            received = []
            with trio.move_on_after(0.3):
                async for note in listener:
                    received.append(note.payload)
            return received

    insert = "INSERT INTO notifyq.tasks (kind) VALUES ('noop')"
    assert await notes_after(insert) == []  # nobody waits: no NOTIFY, no commit lock
    await database.fetchval(sql.queries["go_idle"], "w1", ["default"])
    await database.fetchval(sql.queries["go_idle"], "w2", ["other"])
    assert await notes_after(insert) == ["default"]  # w1 waited for 'default'
    # w1 was woken once and forgotten; w2 waits for another queue.
    assert await database.fetchval("SELECT array_agg(worker_id) FROM notifyq.waiters") == ["w2"]
    assert await notes_after(insert) == []
    # A producer in REPEATABLE READ reads an older snapshot: it always notifies.
    assert await notes_after("BEGIN ISOLATION LEVEL REPEATABLE READ; " + insert + "; COMMIT") == [
        "default"
    ]


async def test_go_idle_fails_while_a_producer_has_not_committed(database: db.Database) -> None:
    async with database.transaction() as producer:
        await producer.execute("INSERT INTO notifyq.tasks (kind) VALUES ('noop')")
        # The producer read "nobody waits" and has not committed: the waiting process
        # must not trust a claim made now.
        assert await database.fetchval(sql.queries["go_idle"], "w", ["default"]) is False
    assert await database.fetchval(sql.queries["go_idle"], "w", ["default"]) is True


async def test_task_end_notifies_notifyq_done(database: db.Database) -> None:
    task_id = await database.fetchval(
        "INSERT INTO notifyq.tasks (kind) VALUES ('noop') RETURNING id"
    )
    await database.fetch(sql.queries["claim"], ["default"], 1, "me", 30.0, ["noop"])
    async with listen.open_listener(database.loop, database.dsn, ["notifyq_done"]) as listener:
        await database.fetch(
            sql.queries["finish"],
            "me",
            [task_id],
            [1],
            ["done"],
            ["null"],
            [None],
            [0.0],
            [1],
            [None],
        )
        with trio.fail_after(2):
            note = await listener.__anext__()
    assert json.loads(note.payload) == {
        "id": task_id,
        "status": "done",
        "queue": "default",
        "kind": "noop",
    }


async def test_bad_rows_are_refused_with_named_constraints(database: db.Database) -> None:
    from notifyq import errors

    cases = {
        "INSERT INTO notifyq.tasks (status) VALUES ('weird')": "tasks_status_valid",
        "INSERT INTO notifyq.tasks (queue) VALUES ('')": "tasks_queue_valid",
        "INSERT INTO notifyq.tasks (max_attempts) VALUES (0)": "tasks_max_attempts_valid",
        "INSERT INTO notifyq.tasks (timeout) VALUES ('-1 s')": "tasks_timeout_positive",
        "INSERT INTO notifyq.tasks (status) VALUES ('in_progress')": "tasks_lease_matches_status",
    }
    for statement, constraint in cases.items():
        with pytest.raises(errors.QueryError, match=constraint):
            await database.execute(statement)


async def test_claim_uses_the_partial_index_with_many_finished_rows(database: db.Database) -> None:
    await database.execute(
        "INSERT INTO notifyq.tasks (kind, status, finished_at) "
        "SELECT 'noop', 'done', now() FROM generate_series(1, 20000)"
    )
    await database.execute(
        "INSERT INTO notifyq.tasks (kind) SELECT 'noop' FROM generate_series(1, 50)"
    )
    await database.execute("ANALYZE notifyq.tasks")

    async def explain(conn: db.Connection) -> str:
        async with conn.transaction():
            rows = await conn.fetch(
                "EXPLAIN (FORMAT JSON) " + sql.queries["claim"],
                ["default"],
                10,
                "w",
                30.0,
                ["noop"],
            )
            raise_rollback = rows[0][0]
            await conn.execute("SELECT 1")
        return str(raise_rollback)

    plan = await database.run(explain)
    assert "tasks_claim_idx" in plan
    assert "Seq Scan" not in plan


def test_migration_files_are_shipped_in_order() -> None:
    found = migrations.available()
    assert [m.version for m in found] == sorted(m.version for m in found)
    assert found[0].name == "init"


async def test_at_once_takes_notifications_as_they_arrive(database: db.Database) -> None:
    """``at_once`` gets each notification in the driver's callback and it is not queued;
    one that ``at_once`` raises on is queued, for the consumer's own dispatch to meet."""
    taken: list[str] = []
    arrived = trio.Event()

    def at_once(note: listen.Notification) -> None:
        if note.payload == "bad":
            raise ValueError("a subscriber's bug")
        taken.append(note.payload)
        arrived.set()  # the callback runs on the trio thread: trio calls are allowed

    async with listen.open_listener(
        database.loop, database.dsn, ["notifyq_test"], at_once=at_once
    ) as listener:
        await database.execute("SELECT pg_notify('notifyq_test', 'good')")
        with trio.fail_after(2):
            await arrived.wait()
        await database.execute("SELECT pg_notify('notifyq_test', 'bad')")
        with trio.fail_after(2):
            queued = await listener.__anext__()
    assert taken == ["good"]
    assert queued == listen.Notification("notifyq_test", "bad")
