"""`notifyq history` prints a failed attempt's traceback (migration 0019) under its event."""

from __future__ import annotations

from pathlib import Path

from tests.acceptance.proc import scalar
from tests.acceptance.test_cli import insert, nq_all

TRACE = 'Traceback (most recent call last):\n  File "app.py", line 3, in h\nValueError: bad\n'


def test_history_prints_the_traceback_of_a_failed_attempt(
    database_url: str, tmp_path: Path
) -> None:
    task_id = insert(database_url, "noop", "{}", status="error")
    scalar(
        database_url,
        "INSERT INTO notifyq.task_events (task_id, event, attempt, worker, error, traceback) "
        f"VALUES ({task_id}, 'failed', 1, 'w1', 'ValueError: bad', $${TRACE}$$)",
    )
    shown, hidden = nq_all(
        database_url,
        tmp_path,
        ["history", str(task_id)],
        ["history", "--no-tracebacks", str(task_id)],
    )
    assert shown.code == 0, shown
    lines = shown.out.splitlines()
    assert lines[1].split()[2:] == ["failed", "attempt=1", "w1", "ValueError:", "bad"], shown
    assert lines[2:] == [
        "    | Traceback (most recent call last):",
        '    |   File "app.py", line 3, in h',
        "    | ValueError: bad",
    ], shown
    assert hidden.code == 0, hidden
    assert len(hidden.out.splitlines()) == 2, hidden
