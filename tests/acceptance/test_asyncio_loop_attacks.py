"""An asyncio handler that attacks the process's asyncio loop (the one that drives asyncpg)
never wedges the process: it stops gracefully, or goes on, and always honours SIGTERM."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from tests.acceptance.proc import Notifyq, scalar, until

Start = Callable[..., Notifyq]
APP = "tests.runtime_apps:app"


def insert(url: str, kind: str, payload: str) -> str:
    return scalar(
        url,
        f"INSERT INTO notifyq.tasks (kind, payload) VALUES ('{kind}', '{payload}') RETURNING id",
    )


def row(url: str, task_id: str) -> str:
    return scalar(url, f"SELECT status, attempts, error FROM notifyq.tasks WHERE id = {task_id}")


@pytest.mark.parametrize("kind", ["loop_system_exit", "loop_keyboard_interrupt"])
def test_a_callback_that_ends_the_loop_stops_the_process_gracefully(
    kind: str, database_url: str, notifyq: Start
) -> None:
    serve = notifyq(database_url, "serve", "--app", APP, env={"SHUTDOWN_TIMEOUT": "1"})
    serve.wait_for("service.start")
    other = insert(database_url, "sleep_trio", "60")
    until(lambda: row(database_url, other).startswith("in_progress"))
    attacker = insert(database_url, kind, "60")
    until(lambda: serve.proc.poll() is not None or "in_progress" in row(database_url, attacker))
    serve.signal(signal.SIGTERM)
    assert serve.wait(timeout=20) == 1
    # The attempt that ran on the loop counts (retried later: a poison task cannot stop the
    # fleet forever); the other task goes back to pending, its attempt not counted.
    assert row(database_url, attacker) == (
        "pending|1|the asyncio loop stopped while this handler ran: a callback raised "
        "SystemExit or KeyboardInterrupt"
    )
    assert row(database_url, other) == "pending|0|"
    assert scalar(database_url, "SELECT count(*) FROM notifyq.workers") == "0"
    lines = [e["text"] for e in serve.events() if e["event"] == "<text>"]
    assert lines == [
        "notifyq: the asyncio loop stopped: a callback raised SystemExit or KeyboardInterrupt "
        "(a runtime='asyncio' handler?); running tasks were handed back"
    ]


def test_a_handler_cannot_stop_the_loop(database_url: str, notifyq: Start) -> None:
    serve = notifyq(database_url, "serve", "--app", APP, env={"SHUTDOWN_TIMEOUT": "1"})
    serve.wait_for("service.start")
    attacker = scalar(
        database_url,
        "INSERT INTO notifyq.tasks (kind, payload, max_attempts) VALUES ('loop_stop', '60', 1) "
        "RETURNING id",
    )
    until(lambda: row(database_url, attacker).startswith("error"))
    assert row(database_url, attacker) == (
        "error|1|RuntimeError: a handler cannot stop notifyq's asyncio loop"
    )
    # The process goes on: the next task runs, and SIGTERM stops it as usual.
    after = insert(database_url, "sleep_asyncio", "0.01")
    until(lambda: row(database_url, after).startswith("done"))
    serve.signal(signal.SIGTERM)
    assert serve.wait(timeout=20) == 0
