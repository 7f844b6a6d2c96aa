"""Least-privilege roles (`notifyq roles`) and the worker container's check (`notifyq health`)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

import notifyq
from notifyq import migrations, settings, sql
from tests import pg
from tests.acceptance.proc import Notifyq, scalar, until

Start = Callable[..., Notifyq]


def as_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in settings.ENV_NAMES}
    return subprocess.run(
        [sys.executable, "-m", "notifyq", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**env, "DATABASE_URL": url, "LOG_LEVEL": "warning"},
    )


def refused(url: str, statement: str) -> str:
    with pytest.raises(RuntimeError, match="permission denied") as caught:
        pg.psql(url, statement)
    return str(caught.value)


@dataclass
class Roles:
    producer: str
    worker: str
    owner_url: str  # the schema owner's (here: a superuser's) URL

    def url(self, role: str) -> str:
        return as_user(self.owner_url, role)


@pytest.fixture
def roles(server_url: str, database_url: str) -> Iterator[Roles]:
    # Roles belong to the whole server: unique names, dropped at the end.
    suffix = secrets.token_hex(3)
    producer, worker = f"test_producer_{suffix}", f"test_worker_{suffix}"
    pg.psql(server_url, f"CREATE ROLE {producer} LOGIN; CREATE ROLE {worker} LOGIN")
    try:
        yield Roles(producer, worker, database_url)
    finally:
        pg.psql(database_url, f"DROP OWNED BY {producer}, {worker}")
        pg.psql(server_url, f"DROP ROLE {producer}, {worker}")


def test_roles_prints_and_applies_the_grants(roles: Roles) -> None:
    dry = cli(roles.owner_url, "roles", "--producer", roles.producer, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        f"GRANT USAGE ON SCHEMA notifyq TO {roles.producer};",
        # Every column a producer may set (migration 0009), never a state or a lease.
        "GRANT INSERT (queue, kind, payload, priority, run_at, max_attempts, timeout, meta, "
        "unique_key, concurrency_key, depends_on, on_parent_failure, batch_id, after_batch, "
        f"max_snoozes, expires_at) ON notifyq.tasks TO {roles.producer};",
        f"GRANT SELECT (id) ON notifyq.tasks TO {roles.producer};",
        # A new batch: INSERT INTO notifyq.batches DEFAULT VALUES RETURNING id (0014).
        f"GRANT INSERT (created_at), SELECT (id) ON notifyq.batches TO {roles.producer};",
        # Debounce and throttle (0017): the one way a producer changes a task.
        "GRANT EXECUTE ON FUNCTION notifyq.enqueue_unique(text, text, jsonb, text, text, "
        "integer, timestamptz, integer, interval, jsonb, text, timestamptz) "
        f"TO {roles.producer};",
        f"GRANT INSERT (unique_key) ON notifyq.tasks TO {roles.producer};",
    ]
    # The dry run changed nothing.
    refused(roles.url(roles.producer), "INSERT INTO notifyq.tasks (kind) VALUES ('noop')")
    done = cli(roles.owner_url, "roles", "--producer", roles.producer, "--worker", roles.worker)
    assert done.returncode == 0, done.stderr
    # 6 producer lines (0014: batches; 0017: enqueue_unique); 8 worker lines (since migration 0012, EXECUTE on
    # the two functions that fire schedules among them; 0014: SELECT on batch_progress); the
    # worker's last: EXECUTE on its functions (0011).
    assert len(done.stdout.splitlines()) == 15
    again = cli(roles.owner_url, "roles", "--producer", roles.producer)  # safe to repeat
    assert again.returncode == 0, again.stderr


def test_roles_names_a_missing_role(database_url: str) -> None:
    result = cli(database_url, "roles", "--worker", "no_such_role_here")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "notifyq: cannot grant to role 'no_such_role_here': role \"no_such_role_here\" does not exist"
    )
    assert cli(database_url, "roles").returncode == 2  # no role named


def test_producer_can_only_insert_and_listen(roles: Roles) -> None:
    assert cli(roles.owner_url, "roles", "--producer", roles.producer).returncode == 0
    theirs = pg.psql(
        roles.owner_url,
        "INSERT INTO notifyq.tasks (kind, payload) VALUES ('reverse', '\"secret\"') RETURNING id",
    )
    producer = roles.url(roles.producer)
    # A process waits for 'mail': the producer's INSERT must wake it, which the trigger
    # (SECURITY DEFINER) does by deleting the waiters row and notifying.
    pg.psql(
        roles.owner_url,
        "INSERT INTO notifyq.waiters (worker_id, queues) VALUES ('host:1:abc', '{mail}')",
    )
    pg.psql(
        producer,
        "LISTEN notifyq; LISTEN notifyq_done; "
        "INSERT INTO notifyq.tasks (queue, kind, payload, priority) "
        "VALUES ('mail', 'reverse', '\"mine\"', 5)",
    )
    assert (
        pg.psql(roles.owner_url, "SELECT status FROM notifyq.tasks WHERE queue = 'mail'")
        == "pending"
    )
    assert pg.psql(roles.owner_url, "SELECT count(*) FROM notifyq.waiters") == "0"
    refused(producer, "SELECT * FROM notifyq.waiters")
    # Unique tasks: a producer skips a duplicate with a plain ON CONFLICT DO NOTHING. Naming
    # the index's columns would need SELECT on them, which a producer does not get.
    for _ in range(2):
        pg.psql(
            producer,
            "INSERT INTO notifyq.tasks (kind, unique_key) VALUES ('noop', 'once') "
            "ON CONFLICT DO NOTHING",
        )
    refused(
        producer,
        "INSERT INTO notifyq.tasks (kind, unique_key) VALUES ('noop', 'once') "
        "ON CONFLICT (queue, unique_key) WHERE status IN ('pending', 'in_progress') "
        "AND unique_key IS NOT NULL DO NOTHING",
    )
    assert (
        pg.psql(roles.owner_url, "SELECT count(*) FROM notifyq.tasks WHERE unique_key = 'once'")
        == "1"
    )
    # Nothing else: no reading, changing or deleting rows, its own or others'.
    refused(producer, "SELECT payload FROM notifyq.tasks")
    refused(producer, f"SELECT status FROM notifyq.tasks WHERE id = {theirs}")
    refused(producer, f"UPDATE notifyq.tasks SET payload = '\"x\"' WHERE id = {theirs}")
    refused(producer, f"DELETE FROM notifyq.tasks WHERE id = {theirs}")
    refused(producer, "SELECT * FROM notifyq.task_events")
    refused(producer, "INSERT INTO notifyq.task_events (task_id, event) VALUES (1, 'done')")
    refused(producer, "SELECT * FROM notifyq.workers")
    # A producer sets what a task is, never its state or its lease.
    refused(producer, "INSERT INTO notifyq.tasks (kind, status) VALUES ('noop', 'done')")
    refused(
        producer,
        "INSERT INTO notifyq.tasks (kind, locked_by, locked_until, status) "
        "VALUES ('noop', 'me', now(), 'in_progress')",
    )
    # RETURNING reads the row back: the id only (notifyq.enqueue returns it, migration 8).
    refused(producer, "INSERT INTO notifyq.tasks (kind) VALUES ('noop') RETURNING payload")
    assert pg.psql(
        producer, "INSERT INTO notifyq.tasks (kind, meta) VALUES ('noop', '{}') RETURNING id"
    ).isdigit()
    refused(producer, f"SELECT notifyq.cancel({theirs})")
    assert (
        pg.psql(roles.owner_url, f"SELECT payload FROM notifyq.tasks WHERE id = {theirs}")
        == '"secret"'
    )


def test_worker_role_runs_notifyq_worker(roles: Roles, notifyq: Start) -> None:
    assert (
        cli(
            roles.owner_url, "roles", "--producer", roles.producer, "--worker", roles.worker
        ).returncode
        == 0
    )
    worker_url = roles.url(roles.worker)
    worker = notifyq(worker_url, "worker", env={"LEASE": "3"})
    worker.wait_for("listener.connected")
    pg.psql(
        roles.url(roles.producer),
        "INSERT INTO notifyq.tasks (kind, payload) "
        "SELECT 'reverse', to_jsonb(g::text) FROM generate_series(10, 59) g",
    )
    until(
        lambda: (
            scalar(roles.owner_url, "SELECT count(*) FROM notifyq.tasks WHERE status = 'done'")
            == "50"
        ),
        timeout=30,
    )
    # The worker role's everyday commands work too; migrating does not.
    status = cli(worker_url, "status")
    assert status.returncode == 0, status.stderr
    health = cli(worker_url, "health")
    assert health.returncode == 0, health.stderr
    assert '"live_processes": 1' in health.stdout
    assert cli(worker_url, "prune", "--older-than", "1d").returncode == 0
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    errors = [e for e in worker.events() if e.get("level") in ("warning", "error")]
    assert errors == [], errors
    pg.psql(roles.owner_url, "CREATE TABLE notifyq.later (id int)")  # as a new migration would
    refused(worker_url, "SELECT * FROM notifyq.later")


def test_the_traceback_column_follows_the_history_grants(roles: Roles) -> None:
    # Migration 0019 grants nothing of its own: the worker role writes and reads a failed
    # attempt's traceback through its table-wide privileges on the history; a producer
    # still reads nothing of it.
    granted = cli(roles.owner_url, "roles", "--producer", roles.producer, "--worker", roles.worker)
    assert granted.returncode == 0, granted.stderr
    worker = roles.url(roles.worker)
    pg.psql(
        worker,
        "INSERT INTO notifyq.task_events (task_id, event, attempt, traceback)"
        " VALUES (1, 'failed', 1, 'Traceback ...')",
    )
    assert pg.psql(worker, "SELECT traceback FROM notifyq.task_events") == "Traceback ..."
    refused(roles.url(roles.producer), "SELECT traceback FROM notifyq.task_events")


def test_health_fails_without_a_live_process(database_url: str) -> None:
    result = cli(database_url, "health")
    assert result.returncode == 1
    assert '"live_processes": 0' in result.stdout
    assert "heart-beat within 30 s" in result.stderr
    down = cli("postgresql://nobody@/nothing?host=/nonexistent", "health")
    assert down.returncode == 1
    assert down.stderr.startswith("notifyq: ")


# What each role may do with every object of the schema: the docs' table (docs/operations.md,
# "Least-privilege database roles"). An object missing here (a later migration's) fails the
# audit below until its privileges are decided and written down.
ENQUEUE_UNIQUE = (
    "notifyq.enqueue_unique(text,text,jsonb,text,text,integer,timestamp with time zone,"
    "integer,interval,jsonb,text,timestamp with time zone)"
)
WORKER_FUNCTIONS = {
    "notifyq.attach_legacy_events()",
    "notifyq.cancel(bigint)",
    "notifyq.claim_limited(text[],integer,text,double precision,text[])",
    "notifyq.drop_event_partitions(interval)",
    "notifyq.ensure_event_partitions(integer)",
    "notifyq.fire_schedule(text,timestamp with time zone,timestamp with time zone,"
    "timestamp with time zone)",
    "notifyq.fire_schedules(text[],timestamp with time zone[],timestamp with time zone[],"
    "timestamp with time zone[],text[],timestamp with time zone[])",
    "notifyq.go_idle(text,text[])",
    "notifyq.lock_parents(bigint,bigint[],bigint,boolean)",
    "notifyq.next_event_id()",
    "notifyq.prune_event_partitions(interval)",
    "notifyq.queue_is_limited(notifyq.queues)",
    "notifyq.retry(bigint)",
    "notifyq.slots_freed(text[])",
    "notifyq.wake_waiters(text[])",
    # Fair queues, priority aging, debounce (migration 0017).
    "notifyq.fair_pick(text,integer,timestamp with time zone,text[],integer,text)",
    "notifyq.aged_pick(text,integer,timestamp with time zone,text[],double precision)",
    ENQUEUE_UNIQUE,
    # The console (migration 0018): the HTTP side of `notifyq serve` acts and groups failures.
    "notifyq.acting(text)",
    "notifyq.console_act(text,bigint[],text,text[],integer)",
    "notifyq.run_schedule(text,text)",
    "notifyq.error_shape(text)",
    "notifyq.error_fingerprint(text,text)",
}
# What `notifyq roles --operator` grants (migration 0018): run the console's actions and read.
OPERATOR_FUNCTIONS = {
    "notifyq.console_act(text,bigint[],text,text[],integer)",
    "notifyq.run_schedule(text,text)",
    "notifyq.error_shape(text)",
    "notifyq.error_fingerprint(text,text)",
}
OPERATOR_READS = {
    "notifyq.tasks",
    "notifyq.task_events",
    "notifyq.workers",
    "notifyq.queues",
    "notifyq.schedules",
    "notifyq.batches",
    "notifyq.batch_progress",
    "notifyq.schema_migrations",
}
# Run by triggers (PostgreSQL checks no EXECUTE privilege for those), by the functions
# above, or by the schema's owner only (`notifyq roles`).
NOBODYS_FUNCTIONS = {
    "notifyq.grant_producer(regrole,boolean)",
    "notifyq.grant_producer_unique(regrole,boolean)",
    "notifyq.grant_worker(regrole,boolean)",
    "notifyq.grant_worker_functions(regrole,boolean)",
    "notifyq.grant_worker_schedules(regrole,boolean)",
    "notifyq.grant_operator(regrole,boolean)",
    "notifyq.legacy_events_bound()",
    "notifyq.queue_changed()",
    "notifyq.schedules_changed()",
    "notifyq.task_became_claimable()",
    "notifyq.task_ended()",
    "notifyq.tasks_after_insert()",
    # Workflows (migration 0014).
    "notifyq.batch_completed()",
    "notifyq.count_batch_ends(bigint[],integer[],integer[])",
    "notifyq.release_dependents(bigint[])",
    "notifyq.task_after_insert_dependent()",
    "notifyq.task_before_insert_dependent()",
    "notifyq.task_member_changed()",
    "notifyq.task_parent_changed()",
    "notifyq.tasks_release_dependents()",
}
# SECURITY DEFINER (they run as the schema's owner): each with a fixed search_path.
DEFINERS = {
    "notifyq.attach_legacy_events()",
    "notifyq.ensure_event_partitions(integer)",
    "notifyq.next_event_id()",
    "notifyq.prune_event_partitions(interval)",
    "notifyq.tasks_after_insert()",
    "notifyq.batch_completed()",
    "notifyq.release_dependents(bigint[])",
    "notifyq.task_after_insert_dependent()",
    "notifyq.task_before_insert_dependent()",
    "notifyq.task_member_changed()",
    "notifyq.task_parent_changed()",
    "notifyq.tasks_release_dependents()",
    ENQUEUE_UNIQUE,  # debounce (migration 0017): a producer has no UPDATE of its own
    # The console (0018): an operator acts without UPDATE on the tables.
    "notifyq.console_act(text,bigint[],text,text[],integer)",
    "notifyq.run_schedule(text,text)",
}
READ_WRITE = {"SELECT", "INSERT", "UPDATE", "DELETE"}
WORKER_TABLES = {
    "notifyq.tasks": READ_WRITE,
    "notifyq.task_events": READ_WRITE,
    "notifyq.workers": READ_WRITE,
    "notifyq.waiters": READ_WRITE,
    "notifyq.queues": READ_WRITE,
    "notifyq.schedules": READ_WRITE,
    "notifyq.batches": READ_WRITE,
    "notifyq.batch_progress": {"SELECT"},
    "notifyq.maintenance": {"SELECT", "UPDATE"},
    "notifyq.schema_migrations": {"SELECT"},
}
PRODUCER_INSERTS = {
    "queue",
    "kind",
    "payload",
    "priority",
    "run_at",
    "max_attempts",
    "timeout",
    "meta",
    "unique_key",
    "concurrency_key",
    "depends_on",
    "on_parent_failure",
    "batch_id",
    "after_batch",
    "max_snoozes",
    "expires_at",
}
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")

AUDIT = """
SELECT 'function' AS what, p.oid::regprocedure::text AS name,
       has_function_privilege($1, p.oid, 'EXECUTE') AS may,
       p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0)
           AS public_may,
       p.prosecdef AS definer, coalesce(p.proconfig, '{}') AS config, NULL::text[] AS privileges
  FROM pg_proc p WHERE p.pronamespace = 'notifyq'::regnamespace
UNION ALL
SELECT CASE WHEN c.relkind = 'S' THEN 'sequence' ELSE 'relation' END, c.oid::regclass::text,
       NULL, NULL, NULL, NULL,
       ARRAY(SELECT p FROM unnest($2::text[]) p
              WHERE CASE WHEN c.relkind = 'S'
                         THEN p IN ('SELECT', 'UPDATE', 'USAGE')
                              AND has_sequence_privilege($1, c.oid, p)
                         ELSE p <> 'USAGE' AND has_table_privilege($1, c.oid, p) END)
  FROM pg_class c
 WHERE c.relnamespace = 'notifyq'::regnamespace AND c.relkind IN ('r', 'p', 'S', 'v', 'm', 'f')
"""


def audit(url: str, role: str) -> list[dict[str, Any]]:
    privileges = "{" + ",".join((*TABLE_PRIVILEGES, "USAGE")) + "}"
    rows = pg.psql(
        url,
        "SELECT json_agg(a) FROM ("
        + AUDIT.replace("$1", f"'{role}'").replace("$2", f"'{privileges}'")
        + ") a",
    )
    return list(json.loads(rows))


def test_every_object_of_the_schema_grants_exactly_what_the_docs_say(roles: Roles) -> None:
    done = cli(roles.owner_url, "roles", "--producer", roles.producer, "--worker", roles.worker)
    assert done.returncode == 0, done.stderr
    functions = {r["name"] for r in audit(roles.owner_url, roles.worker) if r["what"] == "function"}
    assert functions == WORKER_FUNCTIONS | NOBODYS_FUNCTIONS, "a function nobody decided on"
    for row in audit(roles.owner_url, roles.worker):
        name = row["name"]
        if row["what"] == "function":
            assert not row["public_may"], f"PUBLIC may execute {name}"
            assert row["may"] == (name in WORKER_FUNCTIONS), name
            assert row["definer"] == (name in DEFINERS), name
            if row["definer"]:
                assert "search_path=pg_catalog, pg_temp" in row["config"], name
        else:
            assert set(row["privileges"]) == WORKER_TABLES.get(name, set[str]()), name
    for row in audit(roles.owner_url, roles.producer):
        name = row["name"]
        if row["what"] == "function":
            assert row["may"] == (name == ENQUEUE_UNIQUE), f"a producer may execute {name}"
        else:  # notifyq.tasks too: column privileges only (below)
            assert row["privileges"] == [], name
    columns = json.loads(
        pg.psql(
            roles.owner_url,
            "SELECT json_object_agg(a.attname, json_build_array("
            f"has_column_privilege('{roles.producer}', a.attrelid, a.attnum, 'INSERT'), "
            f"has_column_privilege('{roles.producer}', a.attrelid, a.attnum, 'SELECT'), "
            f"has_column_privilege('{roles.producer}', a.attrelid, a.attnum, 'UPDATE'))) "
            "FROM pg_attribute a WHERE a.attrelid = 'notifyq.tasks'::regclass "
            "AND a.attnum > 0 AND NOT a.attisdropped",
        )
    )
    assert {c for c, (ins, _, _) in columns.items() if ins} == PRODUCER_INSERTS
    # RETURNING id of its own insert needs SELECT on the id (docs/operations.md says what
    # that lets a producer see).
    assert {c for c, (_, sel, _) in columns.items() if sel} == {"id"}
    assert not any(upd for _, _, upd in columns.values())


@pytest.mark.parametrize(
    "call",
    [
        "SELECT notifyq.drop_event_partitions('-100 days')",
        "SELECT notifyq.prune_event_partitions('-100 days')",
        "SELECT notifyq.ensure_event_partitions(400)",
        "SELECT notifyq.attach_legacy_events()",
        "SELECT notifyq.next_event_id()",
        "SELECT notifyq.go_idle('x', '{default}')",
        "SELECT notifyq.wake_waiters('{default}')",
        "SELECT notifyq.retry(1)",
        "SELECT * FROM notifyq.claim_limited('{default}', 1, 'x', 30)",
        "SELECT * FROM notifyq.fire_schedule('s', now(), now(), now())",
        "SELECT * FROM notifyq.fire_schedules('{s}', '{}', '{}', '{}', '{}', '{}')",
    ],
)
def test_a_producer_cannot_call_notifyq_functions(roles: Roles, call: str) -> None:
    assert cli(roles.owner_url, "roles", "--producer", roles.producer).returncode == 0
    pg.psql(roles.owner_url, "INSERT INTO notifyq.tasks (kind) VALUES ('noop')")
    before = pg.psql(roles.owner_url, "SELECT count(*) FROM pg_inherits")
    assert "permission denied for function" in refused(roles.url(roles.producer), call)
    assert pg.psql(roles.owner_url, "SELECT count(*) FROM pg_inherits") == before


def test_the_worker_cannot_hand_out_privileges(roles: Roles) -> None:
    assert cli(roles.owner_url, "roles", "--worker", roles.worker).returncode == 0
    refused(roles.url(roles.worker), f"SELECT notifyq.grant_producer('{roles.worker}')")
    refused(roles.url(roles.worker), f"SELECT notifyq.grant_worker_functions('{roles.worker}')")


def test_a_worker_role_keeps_every_function_it_needs_through_the_upgrade(
    server_url: str, roles: Roles
) -> None:
    # A database at migration 0010 whose worker role was set up by that version's `notifyq
    # roles`; the upgrade (0011 and on) must leave the role able to call every function a
    # worker of the new version calls, before anyone runs `notifyq roles` again (the
    # operations guide's upgrade order).
    name = f"notifyq_upgrade_{secrets.token_hex(3)}"
    pg.psql(server_url, f"CREATE DATABASE {name}")
    url = pg.with_database(server_url, name)
    try:
        shipped = sorted(migrations.available(), key=lambda m: m.version)
        pg.psql(url, sql.queries["migrate_bootstrap"])
        for m in (m for m in shipped if m.version <= 10):
            pg.psql(url, m.sql)
        pg.psql(
            url,
            f"SELECT notifyq.grant_worker('{roles.worker}');"
            f"SELECT notifyq.grant_worker_schedules('{roles.worker}')",
        )
        for m in (m for m in shipped if m.version > 10):
            pg.psql(url, m.sql)
        missing = [
            f
            for f in sorted(WORKER_FUNCTIONS)
            if pg.psql(url, f"SELECT has_function_privilege('{roles.worker}', '{f}', 'EXECUTE')")
            != "t"
        ]
        assert missing == [], "the upgrade took these from the worker role"
    finally:
        pg.psql(url, f"DROP OWNED BY {roles.worker}")
        pg.psql(server_url, f"DROP DATABASE {name} WITH (FORCE)")


def test_a_worker_role_that_may_not_fire_schedules_is_told_how_to_fix_it(
    roles: Roles, notifyq: Start
) -> None:
    # A grant missing (a role set up by hand): every due schedule would be refused alike.
    # That is not a bad row to skip one by one: the process says what to run, and goes on.
    assert cli(roles.owner_url, "roles", "--worker", roles.worker).returncode == 0
    pg.psql(
        roles.owner_url,
        f"REVOKE EXECUTE ON FUNCTION notifyq.fire_schedules(text[], timestamptz[], "
        f"timestamptz[], timestamptz[], text[], timestamptz[]) FROM {roles.worker};"
        "INSERT INTO notifyq.schedules (name, every, kind) VALUES ('tick', '1 second', 'noop')",
    )
    worker = notifyq(roles.url(roles.worker), "worker")
    failed = worker.wait_for("scheduler.query_failed", timeout=30)
    assert failed["why"] == "this role may not fire schedules: run `notifyq roles --worker ROLE`"
    assert "permission denied" in failed["error"]
    assert not [e for e in worker.events() if e.get("event") == "schedule.skipped"]
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0


def test_a_producer_adds_every_workflow_shape(roles: Roles) -> None:
    """notifyq.enqueue_workflow needs nothing but a producer's grants: INSERT on the tasks'
    columns and a batch, SELECT (id) for RETURNING."""
    assert cli(roles.owner_url, "roles", "--producer", roles.producer).returncode == 0
    parent = int(
        pg.psql(roles.owner_url, "INSERT INTO notifyq.tasks (kind) VALUES ('p') RETURNING id")
    )
    shapes: list[notifyq.Chain | notifyq.Group | notifyq.Chord] = [
        notifyq.chain(
            notifyq.task("a", after=[parent], on_parent_failure="run"),
            notifyq.group(notifyq.task("b"), notifyq.task("c")),
            notifyq.chord([notifyq.task("d"), notifyq.task("e")], notifyq.task("f")),
            notifyq.task("g"),
        ),
        notifyq.group(notifyq.task("h"), notifyq.task("i")),
        notifyq.chord([notifyq.task("j")], notifyq.task("k")),
    ]
    with psycopg.connect(roles.url(roles.producer)) as conn:
        added = [notifyq.enqueue_workflow(conn, shape) for shape in shapes]
        conn.commit()
    count = sum(len(a.ids) for a in added)
    assert count == 11
    assert pg.psql(roles.owner_url, "SELECT count(*) FROM notifyq.tasks") == str(count + 1)
    assert pg.psql(roles.owner_url, "SELECT count(*) FROM notifyq.batches WHERE sealed") == "2"


@pytest.fixture
def operator(server_url: str, database_url: str) -> Iterator[str]:
    name = f"test_operator_{secrets.token_hex(3)}"
    pg.psql(server_url, f"CREATE ROLE {name} LOGIN")
    try:
        yield name
    finally:
        pg.psql(database_url, f"DROP OWNED BY {name}")
        pg.psql(server_url, f"DROP ROLE {name}")


def test_an_operator_reads_and_acts_through_the_console_functions_only(
    database_url: str, operator: str
) -> None:
    done = cli(database_url, "roles", "--operator", operator)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 3
    for row in audit(database_url, operator):
        name = row["name"]
        if row["what"] == "function":
            assert row["may"] == (name in OPERATOR_FUNCTIONS), name
        elif name in OPERATOR_READS:
            assert row["privileges"] == ["SELECT"], name
        else:
            assert row["privileges"] == [], name
    mine = as_user(database_url, operator)
    task = pg.psql(database_url, "INSERT INTO notifyq.tasks (kind) VALUES ('noop') RETURNING id")
    refused(mine, f"UPDATE notifyq.tasks SET priority = 5 WHERE id = {task}")
    refused(mine, f"SELECT notifyq.cancel({task})")
    refused(mine, "CREATE TABLE notifyq.mine (id int)")
    answer = pg.psql(
        mine, f"SELECT answer FROM notifyq.console_act('cancel', ARRAY[{task}::bigint], 'alice')"
    )
    assert answer == "cancelled"
    assert (
        pg.psql(
            mine, f"SELECT event || ' ' || actor FROM notifyq.task_events WHERE task_id = {task}"
        )
        == "cancelled alice"
    )
    # The console's commands run as the operator: read, count, act through console_act.
    retried = cli(mine, "tasks", "retry", "--status", "cancelled", "--yes")
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.splitlines()[-1] == "retry: changed 1, skipped 0 (busy 0)"
    listed = cli(mine, "tasks", "list", "--status", "pending", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)["id"] == int(task), listed
    assert cli(mine, "cancel", task).stdout == "cancelled\n"
