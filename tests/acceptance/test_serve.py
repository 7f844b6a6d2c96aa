"""`notifyq serve` as a user runs it: signals, exit codes, several processes."""

from __future__ import annotations

import signal
from collections.abc import Callable

from tests.acceptance.proc import Notifyq, scalar, until

Start = Callable[..., Notifyq]
# LOG_LEVEL=debug for the task.start lines that Notifyq.wait_running counts.
DEBUG = {"LOG_LEVEL": "debug"}
DEMO = {"DEMO_MIN_DELAY": "1", "DEMO_MAX_DELAY": "1.5", "DEMO_FAILURE_RATE": "0", **DEBUG}


def counts(url: str) -> dict[str, int]:
    rows = scalar(url, "SELECT status, count(*) FROM notifyq.tasks GROUP BY 1")
    return {line.split("|")[0]: int(line.split("|")[1]) for line in rows.splitlines()}


def test_sigint_lets_running_demo_tasks_finish(database_url: str, notifyq: Start) -> None:
    serve = notifyq(database_url, "serve", "--seed", "5", env=DEMO)
    serve.wait_for("service.start")
    serve.wait_running(5)
    serve.signal(signal.SIGINT)
    assert serve.wait(timeout=20) == 0
    assert counts(database_url) == {"done": 5}
    names = serve.names()
    for step in [
        "shutdown.signal",
        "shutdown.stop_claiming",
        "shutdown.waiting",
        "shutdown.writing_outcomes",
        "shutdown.done",
        "service.stopped",
    ]:
        assert step in names, names
    assert scalar(database_url, "SELECT count(*) FROM notifyq.workers") == "0"


def test_sigterm_after_shutdown_timeout_releases_running_tasks(
    database_url: str, notifyq: Start
) -> None:
    serve = notifyq(database_url, "serve", "--shutdown-timeout", "0.5", env=DEBUG)
    serve.wait_for("service.start")
    scalar(
        database_url,
        "INSERT INTO notifyq.tasks (kind, payload) SELECT 'sleep', '30' FROM generate_series(1, 3)",
    )
    serve.wait_running(3)
    serve.signal(signal.SIGTERM)
    assert serve.wait(timeout=15) == 0
    assert counts(database_url) == {"pending": 3}
    # Released by shutdown: the attempt does not count against max_attempts.
    assert scalar(database_url, "SELECT DISTINCT attempts FROM notifyq.tasks") == "0"
    assert (
        scalar(database_url, "SELECT count(*) FROM notifyq.task_events WHERE event = 'released'")
        == "3"
    )
    assert "shutdown.cancelling" in serve.names()


def test_sighup_shuts_down_like_sigterm(database_url: str, notifyq: Start) -> None:
    # Closing the terminal of `make run`, or an SSH session dropping, sends SIGHUP.
    serve = notifyq(database_url, "serve", "--shutdown-timeout", "0.5", env=DEBUG)
    serve.wait_for("service.start")
    scalar(database_url, "INSERT INTO notifyq.tasks (kind, payload) VALUES ('sleep', '30')")
    serve.wait_running(1)
    serve.signal(signal.SIGHUP)
    assert serve.wait(timeout=15) == 0
    assert counts(database_url) == {"pending": 1}
    assert scalar(database_url, "SELECT count(*) FROM notifyq.workers") == "0"
    assert serve.wait_for("shutdown.signal")["signal"] == "SIGHUP"
    assert "service.stopped" in serve.names()


def test_second_signal_skips_the_grace_period(database_url: str, notifyq: Start) -> None:
    serve = notifyq(database_url, "serve", env=DEBUG)  # SHUTDOWN_TIMEOUT defaults to 30 s
    serve.wait_for("service.start")
    scalar(database_url, "INSERT INTO notifyq.tasks (kind, payload) VALUES ('sleep', '30')")
    serve.wait_running(1)
    serve.signal(signal.SIGINT)
    serve.wait_for("shutdown.waiting")
    serve.signal(signal.SIGINT)
    assert serve.wait(timeout=10) == 0
    assert counts(database_url) == {"pending": 1}


def test_bad_setting_exits_2_with_one_line(database_url: str, notifyq: Start) -> None:
    serve = notifyq(database_url, "serve", env={"WORKER_COUNT": "many"})
    assert serve.wait(timeout=20) == 2
    lines = serve.stderr().strip().splitlines()
    assert lines == ["notifyq: invalid WORKER_COUNT='many': expected an integer from 1 to 10000"]


def test_bad_flag_beats_good_environment(database_url: str, notifyq: Start) -> None:
    serve = notifyq(database_url, "serve", "--fetch-limit", "0", env={"FETCH_LIMIT": "10"})
    assert serve.wait(timeout=20) == 2
    assert serve.stderr().strip() == (
        "notifyq: invalid FETCH_LIMIT=0: expected an integer from 1 to 10000"
    )


def test_two_processes_complete_each_task_exactly_once(database_url: str, notifyq: Start) -> None:
    servers = [notifyq(database_url, "serve", env={"LOG_LEVEL": "warning"}) for _ in range(2)]
    until(lambda: scalar(database_url, "SELECT count(*) FROM notifyq.workers") == "2")
    scalar(
        database_url,
        "INSERT INTO notifyq.tasks (kind, payload) "
        "SELECT 'sleep', '0.002' FROM generate_series(1, 2000)",
    )
    until(lambda: counts(database_url) == {"done": 2000}, timeout=60)
    for serve in servers:
        serve.signal(signal.SIGTERM)
    assert [s.wait(timeout=20) for s in servers] == [0, 0]
    per_task = scalar(
        database_url,
        """
        SELECT count(*) FILTER (WHERE n <> 1), count(*) FROM (
          SELECT t.id, count(e.id) AS n FROM notifyq.tasks t
          LEFT JOIN notifyq.task_events e ON e.task_id = t.id AND e.event = 'done'
          GROUP BY t.id) x""",
    )
    assert per_task == "0|2000"
    assert scalar(database_url, "SELECT max(attempts) FROM notifyq.tasks") == "1"
    workers = scalar(
        database_url, "SELECT count(DISTINCT worker) FROM notifyq.task_events WHERE event = 'done'"
    )
    assert workers == "2", "both processes should have taken a share"


def test_signal_while_the_database_cannot_be_listened_to(database_url: str, notifyq: Start) -> None:
    # The pool connects, but the LISTEN connection points nowhere: start-up waits for it.
    serve = notifyq(
        database_url,
        "serve",
        env={"LISTEN_DATABASE_URL": "postgresql://nobody@/nothing?host=/nonexistent"},
    )
    serve.wait_for("listener.lost")
    serve.signal(signal.SIGTERM)
    assert serve.wait(timeout=15) == 0
    assert "shutdown.before_start" in serve.names()
    assert scalar(database_url, "SELECT count(*) FROM notifyq.workers") == "0"
