"""SIGTERM to a real `notifyq serve` while a handler of each runtime runs."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from tests.acceptance.proc import Notifyq, scalar

Start = Callable[..., Notifyq]
APP = "tests.runtime_apps:app"
RUNTIMES = ["trio", "thread", "asyncio"]
DEBUG = {"LOG_LEVEL": "debug"}  # task.start lines, which Notifyq.wait_running counts


def start_one(url: str, kind: str, seconds: float) -> str:
    return scalar(
        url,
        f"INSERT INTO notifyq.tasks (kind, payload) VALUES ('{kind}', '{seconds}') RETURNING id",
    )


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_sigterm_lets_a_running_handler_finish(
    runtime: str, database_url: str, notifyq: Start
) -> None:
    serve = notifyq(database_url, "serve", "--app", APP, env={"SHUTDOWN_TIMEOUT": "20", **DEBUG})
    serve.wait_for("service.start")
    task_id = start_one(database_url, f"sleep_{runtime}", 1.5)
    # The handler has started (a row is in_progress a moment before: a signal then would
    # release the task unstarted, which is right, but not what this test is about).
    serve.wait_running(1)
    serve.signal(signal.SIGTERM)
    assert serve.wait(timeout=30) == 0
    assert (
        scalar(
            database_url, f"SELECT status, result, attempts FROM notifyq.tasks WHERE id = {task_id}"
        )
        == "done|1.5|1"
    )


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_sigterm_past_the_grace_releases_the_task(
    runtime: str, database_url: str, notifyq: Start
) -> None:
    # The handler would run 60 s: after the grace it is stopped (a thread is abandoned: the
    # process exits without waiting for it) and the task goes back to pending, uncounted.
    serve = notifyq(database_url, "serve", "--app", APP, env={"SHUTDOWN_TIMEOUT": "0.5", **DEBUG})
    serve.wait_for("service.start")
    task_id = start_one(database_url, f"sleep_{runtime}", 60)
    serve.wait_running(1)
    serve.signal(signal.SIGTERM)
    assert serve.wait(timeout=20) == 0
    assert (
        scalar(database_url, f"SELECT status, attempts FROM notifyq.tasks WHERE id = {task_id}")
        == "pending|0"
    )
    assert "released" in scalar(
        database_url,
        f"SELECT string_agg(event, ',') FROM notifyq.task_events WHERE task_id = {task_id}",
    )
