"""Least-privilege roles (`notifyq roles`) and the worker container's check (`notifyq health`)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pytest

from notifyq import settings
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
        f"unique_key, concurrency_key) ON notifyq.tasks TO {roles.producer};",
        f"GRANT SELECT (id) ON notifyq.tasks TO {roles.producer};",
        f"GRANT INSERT (unique_key) ON notifyq.tasks TO {roles.producer};",
    ]
    # The dry run changed nothing.
    refused(roles.url(roles.producer), "INSERT INTO notifyq.tasks (kind) VALUES ('noop')")
    done = cli(roles.owner_url, "roles", "--producer", roles.producer, "--worker", roles.worker)
    assert done.returncode == 0, done.stderr
    # 4 producer lines, 5 worker lines, and since migration 0012 EXECUTE on the two
    # functions that fire schedules.
    assert len(done.stdout.splitlines()) == 11
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


def test_health_fails_without_a_live_process(database_url: str) -> None:
    result = cli(database_url, "health")
    assert result.returncode == 1
    assert '"live_processes": 0' in result.stdout
    assert "heart-beat within 30 s" in result.stderr
    down = cli("postgresql://nobody@/nothing?host=/nonexistent", "health")
    assert down.returncode == 1
    assert down.stderr.startswith("notifyq: ")
