"""Fault injection with real processes and a real PostgreSQL: nothing lost, nothing twice.

Each test prints a FAULT REPORT line (run pytest with -s to see them): tasks, faults
injected, time to recover, tasks lost, tasks completed twice.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from tests import pg
from tests.acceptance.proc import Notifyq, scalar, until

pytestmark = pytest.mark.slow  # fault injection: kills, restarts, a stopped server

Start = Callable[..., Notifyq]
APP = {"NOTIFYQ_APP": "tests.apps:app", "PYTHONPATH": os.getcwd()}


@pytest.fixture
def private_server() -> Iterator[pg.EmbeddedServer]:
    """A server of this test's own, which the test may stop and start."""
    server = pg.EmbeddedServer(pg.TEST_SERVER_SETTINGS)
    try:
        result = Notifyq(server.url, "migrate")
        assert result.wait(timeout=60) == 0, result.stderr()
        result.close()
        yield server
    finally:
        server.close()


def exactly_once(url: str) -> tuple[int, int, int]:
    """(tasks, tasks with no done event, tasks with more than one)."""
    row = scalar(
        url,
        """
        SELECT count(*), count(*) FILTER (WHERE n = 0), count(*) FILTER (WHERE n > 1) FROM (
          SELECT t.id, count(e.id) AS n FROM notifyq.tasks t
          LEFT JOIN notifyq.task_events e ON e.task_id = t.id AND e.event = 'done'
          GROUP BY t.id) x""",
    )
    total, lost, twice = (int(v) for v in row.split("|"))
    return total, lost, twice


def status_counts(url: str) -> dict[str, int]:
    rows = scalar(url, "SELECT status, count(*) FROM notifyq.tasks GROUP BY 1")
    return {r.split("|")[0]: int(r.split("|")[1]) for r in rows.splitlines()}


def report(name: str, **figures: object) -> None:
    print(f"\nFAULT REPORT {name}: {json.dumps(figures)}")


def all_done(url: str, n: int) -> bool:
    return status_counts(url) == {"done": n}


def test_kill_9_one_of_three_processes_every_second(database_url: str, notifyq: Start) -> None:
    env = {"LEASE": "2", "LOG_LEVEL": "warning"}
    procs = [notifyq(database_url, "serve", env=env) for _ in range(3)]
    until(lambda: scalar(database_url, "SELECT count(*) FROM notifyq.workers") == "3")
    n = 1200
    scalar(
        database_url,
        "INSERT INTO notifyq.tasks (kind, payload, max_attempts) "
        f"SELECT 'sleep', '0.04', 20 FROM generate_series(1, {n})",
    )
    started = time.monotonic()
    kills, last_kill = 0, started
    while not all_done(database_url, n) and time.monotonic() - started < 60:
        time.sleep(1.0)
        if status_counts(database_url).get("pending", 0) < 100:
            break  # near the end: let the last kill's tasks come back
        victim = kills % 3
        procs[victim].proc.kill()  # SIGKILL: no shutdown, leases left behind
        procs[victim].proc.wait(timeout=10)
        last_kill = time.monotonic()
        kills += 1
        procs[victim] = notifyq(database_url, "serve", env=env)
    until(lambda: all_done(database_url, n), timeout=60)
    finished = time.monotonic()
    total, lost, twice = exactly_once(database_url)
    recovered = int(
        scalar(database_url, "SELECT count(*) FROM notifyq.task_events WHERE event = 'recovered'")
    )
    report(
        "kill -9",
        tasks=n,
        kills=kills,
        recovered_tasks=recovered,
        seconds_to_last_task=round(finished - started, 2),
        seconds_after_last_kill=round(finished - last_kill, 2),
        lost=lost,
        twice=twice,
    )
    assert kills >= 3
    assert recovered > 0, "killed processes had tasks in flight that must come back"
    assert (total, lost, twice) == (n, 0, 0)
    assert (
        scalar(database_url, "SELECT count(*) FROM notifyq.tasks WHERE status = 'in_progress'")
        == "0"
    )


def test_pg_terminate_backend_of_every_notifyq_connection(
    database_url: str, notifyq: Start
) -> None:
    procs = [notifyq(database_url, "serve") for _ in range(2)]
    for p in procs:
        p.wait_for("listener.connected")
    n = 600
    scalar(
        database_url,
        "INSERT INTO notifyq.tasks (kind, payload, max_attempts) "
        f"SELECT 'sleep', '0.03', 20 FROM generate_series(1, {n})",
    )
    started = time.monotonic()
    terminated = 0
    for _ in range(2):
        time.sleep(0.5)
        terminated += int(
            scalar(
                database_url,
                """
            SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()""",
            )
        )
    last_fault = time.monotonic()
    until(lambda: all_done(database_url, n), timeout=60)
    finished = time.monotonic()
    assert [p.proc.poll() for p in procs] == [None, None], [p.stderr()[-3000:] for p in procs]
    for p in procs:
        assert "listener.reconnected" in p.names()
    total, lost, twice = exactly_once(database_url)
    report(
        "pg_terminate_backend",
        tasks=n,
        connections_terminated=terminated,
        seconds_to_recover=round(finished - last_fault, 2),
        seconds_total=round(finished - started, 2),
        lost=lost,
        twice=twice,
    )
    assert terminated >= 4  # at least the two listeners, twice
    assert (total, lost, twice) == (n, 0, 0)


def test_postgres_stop_and_start_mid_run(private_server: pg.EmbeddedServer, notifyq: Start) -> None:
    url = private_server.url
    procs = [notifyq(url, "serve") for _ in range(2)]
    for p in procs:
        p.wait_for("listener.connected")
    n = 500
    scalar(
        url,
        "INSERT INTO notifyq.tasks (kind, payload, max_attempts) "
        f"SELECT 'sleep', '0.05', 20 FROM generate_series(1, {n})",
    )
    until(lambda: status_counts(url).get("done", 0) > 20)
    private_server.stop()
    down_at = time.monotonic()
    time.sleep(2.0)
    assert [p.proc.poll() for p in procs] == [None, None], "no process may exit while it is down"
    private_server.start()
    up_at = time.monotonic()
    until(lambda: all_done(url, n), timeout=90)
    finished = time.monotonic()
    assert [p.proc.poll() for p in procs] == [None, None]
    total, lost, twice = exactly_once(url)
    report(
        "postgres restart",
        tasks=n,
        outage_seconds=round(up_at - down_at, 2),
        seconds_to_finish_after_restart=round(finished - up_at, 2),
        lost=lost,
        twice=twice,
    )
    assert (total, lost, twice) == (n, 0, 0)
    for p in procs:
        p.signal(signal.SIGTERM)
        assert p.wait(timeout=20) == 0


def test_handler_that_kills_its_process_ends_error_after_max_attempts(
    database_url: str, notifyq: Start
) -> None:
    env = {**APP, "LEASE": "1"}
    crash = scalar(
        database_url,
        "INSERT INTO notifyq.tasks (kind, max_attempts) VALUES ('crash', 2) RETURNING id",
    )
    scalar(
        database_url,
        "INSERT INTO notifyq.tasks (kind, payload, max_attempts) "
        "SELECT 'reverse', to_jsonb(g::text), 10 FROM generate_series(1, 20) g",
    )
    serve = notifyq(database_url, "serve", env=env)
    restarts = 0
    deadline = time.monotonic() + 60
    # A supervisor's job: restart the process whenever it dies.
    while scalar(database_url, f"SELECT status FROM notifyq.tasks WHERE id = {crash}") != "error":
        assert time.monotonic() < deadline, "the crashing task never ended"
        if serve.proc.poll() is not None:
            assert serve.proc.returncode == 17
            restarts += 1
            serve = notifyq(database_url, "serve", env=env)
        time.sleep(0.1)
    row = scalar(database_url, f"SELECT attempts, error FROM notifyq.tasks WHERE id = {crash}")
    assert row == "2|worker lost; 2 attempts"
    until(lambda: status_counts(database_url) == {"done": 20, "error": 1}, timeout=30)
    report(
        "handler calls os._exit",
        tasks=21,
        process_deaths=restarts,
        crash_attempts=2,
        others_done=20,
        lost=0,
    )
    assert restarts == 2


def test_handler_that_ignores_cancellation_is_abandoned(database_url: str, notifyq: Start) -> None:
    serve = notifyq(database_url, "serve", "--workers", "1", env=APP)
    serve.wait_for("service.start")
    stubborn = scalar(
        database_url,
        "INSERT INTO notifyq.tasks (kind, payload, timeout, max_attempts) "
        "VALUES ('stubborn', '60', '0.3 s', 1) RETURNING id",
    )
    after = scalar(
        database_url,
        "INSERT INTO notifyq.tasks (kind, payload) VALUES ('reverse', '\"next\"') RETURNING id",
    )
    until(
        lambda: (
            scalar(database_url, f"SELECT status FROM notifyq.tasks WHERE id = {after}") == "done"
        ),
        timeout=20,
    )
    assert scalar(
        database_url, f"SELECT status, error FROM notifyq.tasks WHERE id = {stubborn}"
    ) == ("error|timed out after 0.3 s")
    assert "task.abandoned" in serve.names()
    serve.signal(signal.SIGINT)
    assert serve.wait(timeout=20) == 0  # the stuck handler does not hold the process
    assert "service.abandoned_handlers" in serve.names()


def test_sigterm_during_a_database_outage(
    private_server: pg.EmbeddedServer, notifyq: Start
) -> None:
    url = private_server.url
    env = {"LEASE": "3", "SHUTDOWN_TIMEOUT": "0.5"}
    serve = notifyq(url, "serve", env={**env, "LOG_LEVEL": "debug"})
    serve.wait_for("listener.connected")
    scalar(
        url,
        "INSERT INTO notifyq.tasks (kind, payload) SELECT 'sleep', '60' FROM generate_series(1, 3)",
    )
    serve.wait_running(3)
    private_server.stop()
    signalled = time.monotonic()
    serve.signal(signal.SIGTERM)
    code = serve.wait(timeout=30)
    exit_s = time.monotonic() - signalled
    assert code == 0
    assert "outcome.dropped" in serve.names()
    private_server.start()
    # Another process recovers the tasks once their leases have run out.
    other = notifyq(url, "serve", env=env)
    until(
        lambda: (
            scalar(
                url,
                "SELECT count(DISTINCT task_id) FROM notifyq.task_events WHERE event = 'recovered'",
            )
            == "3"
        ),
        timeout=30,
    )
    report("SIGTERM during outage", tasks=3, exit_seconds=round(exit_s, 2), recovered=3, lost=0)
    other.signal(signal.SIGINT)
    other.signal(signal.SIGINT)
    assert other.wait(timeout=20) == 0


def test_every_stderr_line_is_json_while_the_database_is_down(
    private_server: pg.EmbeddedServer, notifyq: Start
) -> None:
    # asyncpg's own reports (its pool's "Failed to restore the pool connection floor"
    # warning, with a traceback) used to come out as plain text in the middle of the JSON log.
    url = private_server.url
    serve = notifyq(url, "serve", "--no-http")
    serve.wait_for("listener.connected")
    private_server.stop()
    until(lambda: "restore the pool connection" in serve.stderr(), timeout=30)
    private_server.start()
    scalar(url, "INSERT INTO notifyq.tasks (kind, payload) VALUES ('sleep', '0.01')")
    until(lambda: status_counts(url) == {"done": 1}, timeout=60)
    serve.signal(signal.SIGTERM)
    assert serve.wait(timeout=20) == 0
    lines = serve.stderr().splitlines()
    assert [line for line in lines if not _is_json_object(line)] == []
    [warning] = [json.loads(line) for line in lines if "restore the pool connection" in line][:1]
    assert warning["logger"] == "asyncpg.pool" and warning["level"] == "warning"
    assert "Traceback" in warning["exception"]


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def test_kill_9_with_transactional_handlers_exactly_once_effects(
    database_url: str, notifyq: Start
) -> None:
    """Transactional handlers of the three runtimes insert a row keyed by task id, and one
    of three processes is killed every 1.5 s: at the end every task has ended, each `done`
    task has exactly one row (written by its last attempt) and no other task has any."""
    scalar(database_url, "CREATE TABLE effects (task_id bigint NOT NULL, attempt int NOT NULL)")
    env = {**APP, "LEASE": "2", "LOG_LEVEL": "warning"}
    procs = [notifyq(database_url, "serve", env=env) for _ in range(3)]
    until(lambda: scalar(database_url, "SELECT count(*) FROM notifyq.workers") == "3")
    n = 450
    # One task in ten fails after writing (max_attempts 1: it ends `error`, rows rolled back).
    scalar(
        database_url,
        "INSERT INTO notifyq.tasks (kind, payload, max_attempts) "
        "SELECT (ARRAY['effect', 'effect_thread', 'effect_asyncio'])[i % 3 + 1], "
        "       jsonb_build_object('s', 0.25, 'fail', i % 10 = 0), "
        "       CASE WHEN i % 10 = 0 THEN 1 ELSE 20 END "
        f"FROM generate_series(1, {n}) i",
    )
    started = time.monotonic()
    kills = 0
    # 450 tasks of 0.25 s on 15 workers: at least 7.5 s of work, whatever the machine.
    while time.monotonic() - started < 16:
        time.sleep(1.5)
        if status_counts(database_url).get("pending", 0) < 60:
            break  # near the end: let the last kill's tasks come back
        victim = kills % 3
        procs[victim].proc.kill()  # SIGKILL: open transactions die with their connections
        procs[victim].proc.wait(timeout=10)
        kills += 1
        procs[victim] = notifyq(database_url, "serve", env=env)

    def ended() -> bool:
        counts = status_counts(database_url)
        return set(counts) <= {"done", "error"} and sum(counts.values()) == n

    killing_s = time.monotonic() - started
    until(ended, timeout=60)
    finished_s = time.monotonic() - started
    counts = status_counts(database_url)
    done_without_one_row = scalar(
        database_url,
        """SELECT count(*) FROM notifyq.tasks t
            WHERE t.status = 'done'
              AND (SELECT count(*) FROM effects e WHERE e.task_id = t.id) <> 1""",
    )
    rows_of_others = scalar(
        database_url,
        """SELECT count(*) FROM effects e JOIN notifyq.tasks t ON t.id = e.task_id
            WHERE t.status <> 'done'""",
    )
    rows_of_an_older_attempt = scalar(
        database_url,
        """SELECT count(*) FROM effects e JOIN notifyq.tasks t ON t.id = e.task_id
            WHERE e.attempt <> t.attempts""",
    )
    recovered = int(
        scalar(database_url, "SELECT count(*) FROM notifyq.task_events WHERE event = 'recovered'")
    )
    report(
        "kill -9 transactional",
        tasks=n,
        kills=kills,
        seconds_killing=round(killing_s, 2),
        seconds_to_last_task=round(finished_s, 2),
        recovered_tasks=recovered,
        statuses=counts,
        done_without_one_row=done_without_one_row,
        rows_of_others=rows_of_others,
    )
    assert kills >= 3
    assert recovered > 0, "killed processes had transactions open that must come back"
    assert counts == {"done": n - n // 10, "error": n // 10}
    assert (done_without_one_row, rows_of_others, rows_of_an_older_attempt) == ("0", "0", "0")
