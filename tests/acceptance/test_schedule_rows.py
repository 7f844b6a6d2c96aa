"""One bad `notifyq.schedules` row is its own problem: `notifyq serve` skips what it cannot
read (`schedule.skipped`), keeps serving tasks and the other schedules, and stops gracefully.

The database's checks (migration 0012) refuse most of these rows; this test drops them, as a
database restored from an older dump or edited by hand may lack them, to show the process's
own defence."""

from __future__ import annotations

import signal
from collections.abc import Callable

from tests.acceptance.proc import Notifyq, scalar, until

Start = Callable[..., Notifyq]

CHECKS = (
    "schedules_tz_valid",
    "schedules_cron_length_valid",
    "schedules_every_max_valid",
    "schedules_next_run_at_valid",
    "schedules_last_run_at_valid",
)

BAD = {
    "zone_dir": "cron, tz) VALUES ('zone_dir', 'noop', '* * * * * *', 'Europe')",
    "zone_subdir": "cron, tz) VALUES ('zone_subdir', 'noop', '* * * * * *', 'America/Argentina')",
    "zone_long": "cron, tz) VALUES ('zone_long', 'noop', '* * * * * *', repeat('x', 300))",
    "cron_digits": "cron) VALUES ('cron_digits', 'noop', repeat('1', 4300) || ' * * * *')",
    "every_huge": "every) VALUES ('every_huge', 'noop', interval '9000 years')",
    "bc_next": "every, next_run_at) VALUES ('bc_next', 'noop', '1 s', '0044-03-15 BC')",
    "bc_last": "every, last_run_at) VALUES ('bc_last', 'noop', '1 s', '0044-03-15 BC')",
    "infinite": "every, next_run_at) VALUES ('infinite', 'noop', '1 s', 'infinity')",
    "minus_infinite": "every, next_run_at) VALUES ('minus_infinite', 'noop', '1 s', '-infinity')",
}


def test_serve_skips_bad_schedule_rows_and_keeps_serving(database_url: str, notifyq: Start) -> None:
    scalar(
        database_url,
        "ALTER TABLE notifyq.schedules "
        + ", ".join(f"DROP CONSTRAINT IF EXISTS {name}" for name in CHECKS),
    )
    for values in BAD.values():
        scalar(database_url, f"INSERT INTO notifyq.schedules (name, kind, {values}")
    # The same, paused and for a queue no process serves: still never a crash.
    scalar(
        database_url,
        "INSERT INTO notifyq.schedules (name, kind, every, paused, queue, next_run_at,"
        " last_run_at) VALUES"
        " ('bc_paused', 'noop', '1 s', true, 'default', '0044-03-15 BC', '0044-03-15 BC'),"
        " ('bc_elsewhere', 'noop', '1 s', false, 'elsewhere', '0044-03-15 BC', 'infinity'),"
        " ('good', 'noop', '1 s', false, 'default', NULL, NULL)",
    )
    p = notifyq(database_url, "serve")
    p.wait_for("service.start", timeout=30)
    good = "SELECT count(*) FROM notifyq.tasks WHERE schedule_name = 'good'"
    until(lambda: int(scalar(database_url, good)) >= 2, timeout=30)
    task_id = scalar(database_url, "INSERT INTO notifyq.tasks (kind) VALUES ('noop') RETURNING id")
    done = f"SELECT status FROM notifyq.tasks WHERE id = {task_id}"
    until(lambda: scalar(database_url, done) == "done", timeout=30)
    skipped = {e.get("schedule") for e in p.events() if e.get("event") == "schedule.skipped"}
    assert set(BAD) <= skipped, sorted(set(BAD) - skipped)
    p.signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 0, p.stderr()[-3000:]
    assert "Traceback" not in p.stderr()
    bad_tasks = "SELECT count(*) FROM notifyq.tasks WHERE schedule_name <> 'good'"
    assert scalar(database_url, bad_tasks) == "0"
