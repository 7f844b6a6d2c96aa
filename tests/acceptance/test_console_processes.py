"""Bulk actions from several `notifyq tasks ...` processes while two `notifyq worker`
processes drain tasks that fail at random, then the ledger of outcomes from the history:
no task ends twice without a retry between, none is retried unless it had ended, none is
lost, and every retry names the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import pg
from tests.acceptance.proc import Notifyq, scalar, until
from tests.acceptance.test_cli import finish, start

pytestmark = pytest.mark.slow  # two worker processes and two rounds of three CLI processes

TASKS = 200
ENDINGS = {"done", "failed", "cancelled", "expired"}


def test_cli_bulk_actions_race_worker_processes(database_url: str, tmp_path: Path) -> None:
    url = database_url
    scalar(
        url,
        "INSERT INTO notifyq.tasks (kind, max_attempts) "
        f"SELECT 'demo', 1 FROM generate_series(1, {TASKS})",
    )
    env = {
        "WORKER_COUNT": "3",
        "DEMO_FAILURE_RATE": "0.3",
        "DEMO_MIN_DELAY": "0.005",
        "DEMO_MAX_DELAY": "0.03",
        "LOG_LEVEL": "warning",
    }
    workers = [Notifyq(url, "worker", env=env) for _ in range(2)]
    try:
        for _ in range(2):
            procs = [
                start(url, tmp_path, "tasks", "retry", "--status", "error", "--yes", "--step", "5")
                for _ in range(2)
            ] + [
                start(
                    url,
                    tmp_path,
                    "tasks",
                    "cancel",
                    "--status",
                    "pending",
                    "--kind",
                    "demo",
                    "--id",
                    ",".join(str(i) for i in range(1, TASKS, 9)),
                    "--yes",
                )
            ]
            for proc in procs:
                result = finish(proc, ["tasks", "..."], timeout=60)
                assert result.code == 0, result
        until(
            lambda: (
                scalar(
                    url,
                    "SELECT count(*) FROM notifyq.tasks WHERE status NOT IN "
                    "('done', 'error', 'cancelled')",
                )
                == "0"
            ),
            timeout=60,
        )
    finally:
        for w in workers:
            w.close()
    rows = json.loads(
        pg.psql(
            url,
            "SELECT json_agg(json_build_object('id', t.id, 'status', t.status, 'events', "
            "(SELECT coalesce(json_agg(json_build_array(e.event, e.actor) ORDER BY e.id), "
            "'[]') FROM notifyq.task_events e WHERE e.task_id = t.id))) FROM notifyq.tasks t",
        )
    )
    assert len(rows) == TASKS  # none lost
    requeued = 0
    for row in rows:
        ended = False
        history = [event for event, _ in row["events"]]
        for event, actor in row["events"]:
            if event in ENDINGS:
                assert not ended, row  # ended twice without a retry between
                ended = True
            elif event == "requeued":
                assert ended and actor == "cli", row  # retried only once it had ended
                ended = False
                requeued += 1
        assert ended, row
        last = [e for e in history if e in ENDINGS][-1]
        assert row["status"] == {"done": "done", "failed": "error"}.get(last, "cancelled"), row
    assert requeued > 0
