"""Scale-out on one database: several `notifyq worker` processes, every task done once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from notifyq import settings
from tests.acceptance.proc import Notifyq, scalar, until

pytestmark = pytest.mark.slow  # several worker processes draining thousands of tasks

Start = Callable[..., Notifyq]
INFO = {"LOG_LEVEL": "info"}  # service.start (worker id, queues) is logged at info


def done_events_per_task(url: str) -> tuple[int, int, int]:
    """(tasks, tasks without a 'done' event, tasks with more than one)."""
    row = scalar(
        url,
        """
        SELECT count(*), count(*) FILTER (WHERE n = 0), count(*) FILTER (WHERE n > 1) FROM (
          SELECT t.id, count(e.id) AS n FROM notifyq.tasks t
          LEFT JOIN notifyq.task_events e ON e.task_id = t.id AND e.event = 'done'
          GROUP BY t.id) x""",
    )
    total, missing, twice = (int(v) for v in row.split("|"))
    return total, missing, twice


def start_workers(url: str, notifyq: Start, queue_lists: list[str]) -> list[Notifyq]:
    procs = [notifyq(url, "worker", env={**INFO, "QUEUES": q}) for q in queue_lists]
    for p in procs:
        p.wait_for("service.start", timeout=30)
    until(lambda: scalar(url, "SELECT count(*) FROM notifyq.workers") == str(len(procs)))
    return procs


def stop_all(procs: list[Notifyq]) -> None:
    for p in procs:
        p.signal(signal.SIGTERM)
    assert [p.wait(timeout=20) for p in procs] == [0] * len(procs)


@pytest.mark.parametrize("processes", [1, 2, 4])
def test_worker_processes_drain_a_workload_exactly_once(
    database_url: str, notifyq: Start, processes: int
) -> None:
    procs = start_workers(database_url, notifyq, ["default"] * processes)
    n = 2000
    started = time.monotonic()
    scalar(
        database_url, f"INSERT INTO notifyq.tasks (kind) SELECT 'noop' FROM generate_series(1, {n})"
    )
    until(
        lambda: (
            scalar(database_url, "SELECT count(*) FROM notifyq.tasks WHERE status = 'done'")
            == str(n)
        ),
        timeout=90,
    )
    seconds = time.monotonic() - started
    stop_all(procs)
    print(f"\nSCALE {processes} process(es): {n} noop tasks in {seconds:.2f} s")
    assert done_events_per_task(database_url) == (n, 0, 0)
    assert scalar(database_url, "SELECT max(attempts) FROM notifyq.tasks") == "1"
    workers = int(
        scalar(
            database_url,
            "SELECT count(DISTINCT worker) FROM notifyq.task_events WHERE event = 'done'",
        )
    )
    # Every process takes a share (with 2,000 tasks; a share may be small on a busy machine).
    assert workers == processes
    assert scalar(database_url, "SELECT count(*) FROM notifyq.workers") == "0"


def test_processes_serving_different_queue_lists(database_url: str, notifyq: Start) -> None:
    lists = ["a", "a,b", "b,c", "c"]
    procs = start_workers(database_url, notifyq, lists)
    queues_of = {
        p.wait_for("service.start")["worker_id"]: set(q.split(","))
        for p, q in zip(procs, lists, strict=True)
    }
    n = 600  # per queue
    scalar(
        database_url,
        "INSERT INTO notifyq.tasks (queue, kind) SELECT q, 'noop' "
        f"FROM unnest(ARRAY['a', 'b', 'c']) q, generate_series(1, {n})",
    )
    # A queue nobody serves stays pending.
    scalar(database_url, "INSERT INTO notifyq.tasks (queue, kind) VALUES ('nobody', 'noop')")
    until(
        lambda: (
            scalar(database_url, "SELECT count(*) FROM notifyq.tasks WHERE status = 'done'")
            == str(3 * n)
        ),
        timeout=90,
    )
    stop_all(procs)
    assert (
        scalar(database_url, "SELECT status FROM notifyq.tasks WHERE queue = 'nobody'") == "pending"
    )
    scalar(database_url, "DELETE FROM notifyq.tasks WHERE queue = 'nobody'")
    assert done_events_per_task(database_url) == (3 * n, 0, 0)
    rows = scalar(
        database_url,
        """
        SELECT e.worker, t.queue, count(*) FROM notifyq.task_events e
          JOIN notifyq.tasks t ON t.id = e.task_id
         WHERE e.event = 'done' GROUP BY 1, 2""",
    )
    served: dict[str, set[str]] = {}
    for line in rows.splitlines():
        worker, queue, _count = line.split("|")
        served.setdefault(worker, set()).add(queue)
    for worker, queues in served.items():
        assert queues <= queues_of[worker], (worker, queues, queues_of[worker])


def test_bench_scale_reports_each_process_count(server_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k.upper() not in settings.ENV_NAMES}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "notifyq",
            "bench",
            "scale",
            "--processes",
            "1,2",
            "--tasks",
            "300",
            "-w",
            "3",
            "--json",
        ],
        env={**env, "DATABASE_URL": server_url},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["benchmark"] == "scale"
    assert report["worker_env"] == {"WORKER_COUNT": "3"}
    runs = report["runs"]
    assert [r["processes"] for r in runs] == [1, 2]
    for r in runs:
        assert sum(r["per_process_done"]) == 300
        assert len(r["per_process_done"]) == r["processes"]
        assert r["tasks_per_s"] > 0
    assert runs[0]["speedup_per_process"] == 1.0
    # The scratch databases are gone.
    assert (
        scalar(server_url, "SELECT count(*) FROM pg_database WHERE datname LIKE 'notifyq_scale_%'")
        == "0"
    )


def test_bench_scale_rejects_bad_process_counts(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "notifyq", "bench", "scale", "--processes", "1,0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "expected comma-separated process counts from 1 to 64" in result.stderr
