"""`notifyq serve --processes N`: one supervisor, N processes, one shutdown."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.acceptance.proc import Notifyq, scalar, until
from tests.acceptance.test_embedded import data_dir as data_dir
from tests.acceptance.test_serve import counts

Start = Callable[..., Notifyq]


def child_pids(serve: Notifyq, process: int | None = None) -> list[int]:
    """The children's pids, from the supervisor's `supervisor.child_started` lines."""
    return [
        int(e["pid"])
        for e in serve.events()
        if e.get("event") == "supervisor.child_started"
        and (process is None or e.get("process") == process)
    ]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child that exited but was not reaped yet (its supervisor was killed) is a zombie.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def supervised(notifyq: Start) -> Iterator[Start]:
    """`notifyq` processes whose children are killed too when the test ends."""
    started: list[Notifyq] = []

    def start(url: str, *args: str, env: dict[str, str] | None = None) -> Notifyq:
        proc = notifyq(url, *args, env=env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        for pid in child_pids(proc):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def insert(url: str, n: int, kind: str, payload: str) -> None:
    scalar(
        url,
        f"INSERT INTO notifyq.tasks (kind, payload) "
        f"SELECT '{kind}', '{payload}' FROM generate_series(1, {n})",
    )


def test_two_processes_share_the_work_and_stop_together(
    database_url: str, supervised: Start
) -> None:
    serve = supervised(database_url, "serve", "--processes", "2", "-w", "10")
    serve.wait_for("supervisor.ready")
    assert scalar(database_url, "SELECT count(*) FROM notifyq.workers") == "2"
    insert(database_url, 500, "sleep", "0.002")
    until(lambda: counts(database_url) == {"done": 500}, timeout=60)
    serve.signal(signal.SIGTERM)
    assert serve.wait(timeout=20) == 0
    workers = scalar(
        database_url, "SELECT count(DISTINCT worker) FROM notifyq.task_events WHERE event = 'done'"
    )
    assert workers == "2", "both processes should have taken a share"
    assert scalar(database_url, "SELECT count(*) FROM notifyq.workers") == "0"
    events = serve.events()
    # One HTTP server (process 1's); every child's lines say which child wrote them.
    assert [e.get("process") for e in events if e.get("event") == "http.listening"] == [1]
    stopped = sorted(e["process"] for e in events if e.get("event") == "service.stopped")
    assert stopped == [1, 2]
    assert not any(alive(pid) for pid in child_pids(serve))
    assert serve.names()[-1] == "supervisor.stopped"


def test_sigterm_releases_the_running_tasks_of_every_process(
    database_url: str, supervised: Start
) -> None:
    serve = supervised(
        database_url, "serve", "--processes", "2", "-w", "2", "--shutdown-timeout", "0.5"
    )
    serve.wait_for("supervisor.ready")
    insert(database_url, 4, "sleep", "30")
    until(lambda: counts(database_url).get("in_progress") == 4)
    owners = scalar(database_url, "SELECT count(DISTINCT locked_by) FROM notifyq.tasks")
    assert owners == "2"  # two workers each: both processes hold tasks
    # Each child leads a session of its own: a Ctrl+C meant for the terminal's process
    # group reaches the supervisor alone, which forwards it once.
    assert [os.getsid(pid) for pid in child_pids(serve)] == child_pids(serve)
    serve.signal(signal.SIGTERM)
    assert serve.wait(timeout=15) == 0
    assert counts(database_url) == {"pending": 4}
    assert scalar(database_url, "SELECT DISTINCT attempts FROM notifyq.tasks") == "0"
    assert scalar(database_url, "SELECT count(*) FROM notifyq.workers") == "0"
    signals = [e for e in serve.events() if e.get("event") == "shutdown.signal"]
    assert sorted(e["process"] for e in signals) == [1, 2]  # forwarded once to each


def test_second_signal_reaches_every_process_and_skips_the_grace(
    database_url: str, supervised: Start
) -> None:
    serve = supervised(
        database_url, "serve", "--processes", "2", "-w", "1", env={"LOG_LEVEL": "debug"}
    )
    serve.wait_for("supervisor.ready")
    insert(database_url, 2, "sleep", "30")
    serve.wait_running(2)
    serve.signal(signal.SIGINT)
    until(lambda: serve.names().count("shutdown.waiting") == 2, timeout=10)
    serve.signal(signal.SIGINT)
    assert serve.wait(timeout=10) == 0  # SHUTDOWN_TIMEOUT is 30 s: the grace was skipped
    assert counts(database_url) == {"pending": 2}
    assert "supervisor.signal_again" in serve.names()


def test_a_killed_process_is_restarted_and_the_work_completes(
    database_url: str, supervised: Start
) -> None:
    # LEASE=1: the killed process's tasks are recovered by the reaper within a second or so.
    serve = supervised(database_url, "worker", "--processes", "2", "-w", "4", env={"LEASE": "1"})
    serve.wait_for("supervisor.ready")
    insert(database_url, 40, "sleep", "0.2")
    until(lambda: counts(database_url).get("done", 0) >= 4)
    [victim] = child_pids(serve, 2)
    os.kill(victim, signal.SIGKILL)
    restart = serve.wait_for("supervisor.restarting")
    assert (restart["process"], restart["pid"], restart["ended"]) == (
        2,
        victim,
        "killed by SIGKILL",
    )
    until(lambda: len(child_pids(serve, 2)) == 2, timeout=10)
    until(lambda: counts(database_url) == {"done": 40}, timeout=30)
    serve.signal(signal.SIGTERM)
    assert serve.wait(timeout=20) == 0
    assert not any(alive(pid) for pid in child_pids(serve))


def test_a_restarted_process_killed_before_it_is_ready_is_restarted_again(
    database_url: str, supervised: Start
) -> None:
    serve = supervised(database_url, "worker", "--processes", "2", "-w", "1")
    serve.wait_for("supervisor.ready")
    [first] = child_pids(serve, 2)
    os.kill(first, signal.SIGKILL)
    # Its restart is killed too, as soon as it started (it takes a second to get ready).
    until(lambda: len(child_pids(serve, 2)) == 2, timeout=20)
    os.kill(child_pids(serve, 2)[1], signal.SIGKILL)
    # A third start, which serves: the fleet was not given up.
    until(lambda: len(child_pids(serve, 2)) == 3, timeout=20)
    until(
        lambda: (
            sum(
                1
                for e in serve.events()
                if e.get("event") == "supervisor.child_ready" and e.get("process") == 2
            )
            >= 2
        ),
        timeout=30,
    )
    assert "supervisor.giving_up" not in serve.names()
    serve.signal(signal.SIGTERM)
    assert serve.wait(timeout=20) == 0
    assert not any(alive(pid) for pid in child_pids(serve))


def test_a_stopped_process_is_killed_after_the_shutdown_timeout(
    database_url: str, supervised: Start
) -> None:
    serve = supervised(
        database_url,
        "worker",
        "--processes",
        "2",
        "--shutdown-timeout",
        "0.5",
        "--lease",
        "1",
    )
    serve.wait_for("supervisor.ready")
    [frozen] = child_pids(serve, 2)
    os.kill(frozen, signal.SIGSTOP)  # it cannot see the SIGTERM the supervisor forwards
    serve.signal(signal.SIGTERM)
    # SHUTDOWN_TIMEOUT + LEASE + 10 s after the stop, it is killed and the supervisor exits.
    assert serve.wait(timeout=60) == 1
    assert serve.stderr().strip().splitlines()[-1] == (
        "notifyq: process 2 did not stop within 11.5s: killed with SIGKILL"
    )
    assert serve.wait_for("supervisor.killing")["pid"] == frozen
    assert not any(alive(pid) for pid in child_pids(serve))


def test_bad_setting_stops_the_supervisor_before_any_child(
    database_url: str, supervised: Start
) -> None:
    serve = supervised(database_url, "serve", "--processes", "2", env={"WORKER_COUNT": "many"})
    assert serve.wait(timeout=20) == 2
    lines = serve.stderr().strip().splitlines()
    assert lines == ["notifyq: invalid WORKER_COUNT='many': expected an integer from 1 to 10000"]
    serve = supervised(database_url, "worker", env={"PROCESSES": "65"})
    assert serve.wait(timeout=20) == 2
    assert serve.stderr().strip() == (
        "notifyq: invalid PROCESSES='65': expected an integer from 1 to 64"
    )


def test_a_process_failing_at_start_is_not_restarted(database_url: str, supervised: Start) -> None:
    # Process 1 cannot bind the HTTP port (taken): it fails the same way at every start.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        serve = supervised(database_url, "serve", "--processes", "2", "--http-port", port)
        assert serve.wait(timeout=30) == 2  # the child's own status: a bad setting
    lines = serve.stderr().splitlines()
    assert f"notifyq: cannot serve HTTP on 127.0.0.1:{port}: Address already in use" in "".join(
        lines
    )
    assert lines[-1] == "notifyq: process 1 ended (exit status 2) before it was ready"
    assert "supervisor.restarting" not in serve.names()
    assert len(child_pids(serve)) == 2  # started once each
    assert not any(alive(pid) for pid in child_pids(serve))
    assert scalar(database_url, "SELECT count(*) FROM notifyq.workers") == "0"


def test_processes_stop_when_the_supervisor_is_killed(database_url: str, supervised: Start) -> None:
    serve = supervised(database_url, "worker", "--processes", "2")
    serve.wait_for("supervisor.ready")
    serve.proc.kill()  # SIGKILL: no forwarding; each child reads the end of its link
    serve.wait(timeout=10)
    until(lambda: serve.names().count("service.stopped") == 2, timeout=15)
    assert serve.names().count("supervisor.gone") == 2
    until(lambda: not any(alive(pid) for pid in child_pids(serve)), timeout=10)
    assert scalar(database_url, "SELECT count(*) FROM notifyq.workers") == "0"


def test_more_processes_than_the_server_has_connections_for_are_refused(
    data_dir: Path, supervised: Start
) -> None:
    # The embedded server has 100 connections: 64 processes cannot fit, whatever their pools.
    serve = supervised("", "worker", "--processes", "64", env={"NOTIFYQ_DATA_DIR": str(data_dir)})
    assert serve.wait(timeout=90) == 2
    assert serve.stderr().strip().splitlines()[-1] == (
        "notifyq: --processes 64 needs at least 192 database connections (64 x (POOL_SIZE 2 + 1 "
        "LISTEN) + 0 HTTP) but the server allows 87 (max_connections 100 - 3 reserved - 10 "
        "kept for other clients); lower PROCESSES or raise max_connections"
    )
    assert child_pids(serve) == []
