"""`notifyq worker --no-listen` (NO_LISTEN): no LISTEN connection; the sweep finds the work."""

from __future__ import annotations

import signal
from collections.abc import Callable

from tests.acceptance.proc import Notifyq, scalar, until

Start = Callable[..., Notifyq]


def status(url: str, task_id: str) -> str:
    return scalar(url, f"SELECT status FROM notifyq.tasks WHERE id = {task_id}")


def test_no_listen_works_by_the_sweep_and_says_so(database_url: str, notifyq: Start) -> None:
    worker = notifyq(database_url, "worker", env={"NO_LISTEN": "true", "FETCH_INTERVAL": "0.3"})
    warning = worker.wait_for("listener.disabled")
    assert warning["level"] == "warning"
    assert "FETCH_INTERVAL sweep (every 0.3 s)" in warning["effect"]
    worker.wait_for("service.start")
    scalar(
        database_url, "INSERT INTO notifyq.tasks (kind) SELECT 'noop' FROM generate_series(1, 300)"
    )
    until(
        lambda: (
            scalar(database_url, "SELECT count(*) FROM notifyq.tasks WHERE status = 'done'")
            == "300"
        ),
        timeout=30,
    )
    # No session of this database LISTENs (the probe's channel is not there either).
    assert "listener.connected" not in worker.names()
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0


def test_no_listen_cancel_reaches_a_running_task_at_its_heartbeat(
    database_url: str, notifyq: Start
) -> None:
    # LEASE 1.5 s: a heartbeat every 0.5 s, which carries the cancel request.
    worker = notifyq(
        database_url, "worker", "--no-listen", env={"FETCH_INTERVAL": "0.2", "LEASE": "1.5"}
    )
    worker.wait_for("service.start")
    task = scalar(
        database_url,
        "INSERT INTO notifyq.tasks (kind, payload) VALUES ('sleep', '60') RETURNING id",
    )
    until(lambda: status(database_url, task) == "in_progress", timeout=15)
    assert scalar(database_url, f"SELECT notifyq.cancel({task})") == "cancelling"
    until(lambda: status(database_url, task) == "cancelled", timeout=10)
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0


def test_no_listen_flag_beats_environment(database_url: str, notifyq: Start) -> None:
    worker = notifyq(database_url, "worker", "--no-listen", env={"NO_LISTEN": "false"})
    worker.wait_for("listener.disabled")
    worker.signal(signal.SIGINT)
    assert worker.wait(timeout=20) == 0


def test_bad_no_listen_value_names_the_variable(database_url: str, notifyq: Start) -> None:
    worker = notifyq(database_url, "worker", env={"NO_LISTEN": "maybe"})
    assert worker.wait(timeout=20) == 2
    assert worker.stderr().strip().startswith("notifyq: invalid NO_LISTEN='maybe': expected true")
