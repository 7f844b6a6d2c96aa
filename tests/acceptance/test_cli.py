"""The `notifyq` commands as a user runs them: real subprocesses on a real PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from notifyq import settings
from notifyq.cli import main
from tests.acceptance.proc import scalar

NOWHERE = "postgresql://nobody@127.0.0.1:1/nothing"  # for commands that must not connect


_SETTINGS_ENV = settings.ENV_NAMES


@dataclass(repr=False)
class Result:
    args: Sequence[str]
    code: int
    out: str
    err: str

    def __repr__(self) -> str:  # shown by pytest when an assertion about it fails
        return (
            f"notifyq {' '.join(self.args)} -> {self.code}\nstdout: {self.out}\nstderr: {self.err}"
        )


def _env(url: str) -> dict[str, str]:
    # Nothing from the developer's own settings leaks in; warnings only, on stderr.
    env = {k: v for k, v in os.environ.items() if k.upper() not in _SETTINGS_ENV}
    return {**env, "DATABASE_URL": url, "LOG_LEVEL": "warning", "LOG_FORMAT": "console"}


def start(url: str, cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "notifyq", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(url),
        cwd=cwd,
    )


def finish(proc: subprocess.Popen[str], args: Sequence[str], timeout: float = 30) -> Result:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return Result(args, proc.returncode, out, err)


def nq(url: str, cwd: Path, *args: str, timeout: float = 30) -> Result:
    return finish(start(url, cwd, *args), args, timeout)


def nq_all(url: str, cwd: Path, *commands: Sequence[str]) -> list[Result]:
    """Run independent commands at the same time (each start costs ~1 s of imports)."""
    procs = [(start(url, cwd, *args), args) for args in commands]
    return [finish(proc, args) for proc, args in procs]


def insert(
    url: str,
    kind: str,
    payload: str,
    *,
    status: str = "pending",
    queue: str = "default",
    finished: str | None = None,
) -> int:
    """A task row via SQL; ``finished`` is an SQL expression for finished_at when it ended."""
    task_id = int(
        scalar(
            url,
            "INSERT INTO notifyq.tasks (queue, kind, payload) "
            f"VALUES ('{queue}', '{kind}', '{payload}') RETURNING id",
        )
    )
    if status != "pending":
        scalar(
            url,
            f"UPDATE notifyq.tasks SET status = '{status}', "
            f"finished_at = {finished or 'now()'} WHERE id = {task_id}",
        )
    return task_id


def row(url: str, task_id: int, columns: str) -> list[str]:
    return scalar(url, f"SELECT {columns} FROM notifyq.tasks WHERE id = {task_id}").split("|")


# --- enqueue -------------------------------------------------------------------------------


def test_enqueue_stores_payload_and_options(database_url: str, tmp_path: Path) -> None:
    text, number, options = nq_all(
        database_url,
        tmp_path,
        ["enqueue", "reverse", "hello"],
        ["enqueue", "sleep", "5"],
        [
            "enqueue",
            "noop",
            '{"a":1}',
            "--queue",
            "q",
            "--priority",
            "3",
            "--delay",
            "30s",
            "--max-attempts",
            "2",
            "--timeout",
            "1m",
            "--expires-in",
            "1h",
        ],
    )
    ids = []
    for result in (text, number, options):
        assert result.code == 0, result
        assert re.fullmatch(r"\d+\n", result.out), result
        assert result.err == "", result
        ids.append(int(result.out))
    assert len(set(ids)) == 3

    cols = (
        "queue, kind, payload::text, jsonb_typeof(payload), priority, max_attempts, "
        "coalesce(timeout::text, 'NULL'), status, attempts, "
        "round(extract(epoch FROM run_at - now())::numeric, 1)"
    )
    assert row(database_url, ids[0], cols)[:9] == [
        "default",
        "reverse",
        '"hello"',
        "string",
        "0",
        "3",
        "NULL",
        "pending",
        "0",
    ]
    assert float(row(database_url, ids[0], cols)[9]) <= 0.0
    assert row(database_url, ids[1], cols)[:9] == [
        "default",
        "sleep",
        "5",
        "number",
        "0",
        "3",
        "NULL",
        "pending",
        "0",
    ]
    stored = row(database_url, ids[2], cols)
    assert stored[:9] == ["q", "noop", '{"a": 1}', "object", "3", "2", "00:01:00", "pending", "0"]
    assert 20.0 <= float(stored[9]) <= 30.0, stored  # run_at about 30 s ahead
    assert (
        scalar(
            database_url,
            "SELECT extract(epoch FROM run_at - created_at) "
            f"FROM notifyq.tasks WHERE id = {ids[2]}",
        )
        == "30.000000"
    )
    deadline = "SELECT extract(epoch FROM expires_at - created_at) FROM notifyq.tasks WHERE id = "
    assert scalar(database_url, deadline + str(ids[2])) == "3600.000000"


def test_enqueue_bad_delay_exits_2(database_url: str, tmp_path: Path) -> None:
    result = nq(database_url, tmp_path, "enqueue", "noop", "--delay", "soon")
    assert result.code == 2, result
    assert result.out == ""
    assert (
        "Error: Invalid value for '--delay': expected a duration: seconds, or a number "
        "with ms, s, m, h or d (e.g. 30, 2.5s, 7d)"
    ) in result.err, result
    assert scalar(database_url, "SELECT count(*) FROM notifyq.tasks") == "0"


def test_enqueue_zero_timeout_is_a_usage_error(database_url: str, tmp_path: Path) -> None:
    # Like a bad --delay: exit 2 and one line, not a traceback.
    result = nq(database_url, tmp_path, "enqueue", "noop", "--timeout", "0")
    assert result.code == 2, result
    assert "Traceback" not in result.err, result
    assert "--timeout" in result.err, result
    assert scalar(database_url, "SELECT count(*) FROM notifyq.tasks") == "0"


def test_enqueue_takes_named_priorities(database_url: str, tmp_path: Path) -> None:
    urgent, bad = nq_all(
        database_url,
        tmp_path,
        ["enqueue", "noop", "--priority", "urgent"],
        ["enqueue", "noop", "--priority", "highest"],
    )
    assert urgent.code == 0, urgent
    assert (
        scalar(database_url, f"SELECT priority FROM notifyq.tasks WHERE id = {urgent.out}") == "20"
    )
    assert bad.code == 2, bad
    assert (
        "Error: Invalid value for '--priority': expected an integer (higher runs first) "
        "or one of low (-10), normal (0), high (10), urgent (20)"
    ) in bad.err, bad


# --- status and history --------------------------------------------------------------------


def test_status_and_history(database_url: str, tmp_path: Path) -> None:
    first = insert(database_url, "reverse", '"a"')
    insert(database_url, "reverse", '"b"')
    insert(database_url, "noop", "{}", queue="q", status="done")
    insert(database_url, "noop", "{}", queue="q", status="error")

    table, as_json, history = nq_all(
        database_url, tmp_path, ["status"], ["status", "--json"], ["history", str(first)]
    )

    assert table.code == 0, table
    assert table.out.splitlines() == [
        "QUEUE                STATUS            TASKS",
        "default              pending               2",
        "q                    done                  1",
        "q                    error                 1",
        "",
        "0 worker process(es)",
    ]
    assert as_json.code == 0, as_json
    assert json.loads(as_json.out) == {
        "counts": [
            {"queue": "default", "status": "pending", "n": 2},
            {"queue": "q", "status": "done", "n": 1},
            {"queue": "q", "status": "error", "n": 1},
        ],
        "workers": [],
        "unserved": [],
    }
    assert history.code == 0, history
    lines = history.out.splitlines()
    assert len(lines) == 1, history
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}  queued     attempt=0  -", lines[0]
    ), history


def test_status_lists_pending_kinds_no_live_process_can_run(
    database_url: str, tmp_path: Path
) -> None:
    # A process that runs `noop` and `reverse` on the default queue (as a rolling deploy's
    # old version would be): a `new_kind` task, and any task of a queue nobody serves, wait.
    scalar(
        database_url,
        "INSERT INTO notifyq.workers (id, host, pid, queues, concurrency, version, kinds) "
        "VALUES ('old', 'h', 1, '{default}', 5, '0', '{noop,reverse}')",
    )
    insert(database_url, "noop", "{}")
    insert(database_url, "new_kind", "{}")
    insert(database_url, "new_kind", "{}")
    insert(database_url, "noop", "{}", queue="mail")
    table, as_json = nq_all(database_url, tmp_path, ["status"], ["status", "--json"])
    assert table.code == 0, table
    assert table.out.splitlines()[-3:] == [
        "pending tasks no live process can run (no process serves the queue or the kind)",
        "  default              new_kind                                2",
        "  mail                 noop                                    1",
    ]
    assert json.loads(as_json.out)["unserved"] == [
        {"queue": "default", "kind": "new_kind", "n": 2},
        {"queue": "mail", "kind": "noop", "n": 1},
    ]


def test_status_shows_a_process_that_stopped_heartbeating_as_gone(
    database_url: str, tmp_path: Path
) -> None:
    scalar(
        database_url,
        "INSERT INTO notifyq.workers (id, host, pid, queues, concurrency, in_flight, version,"
        " started_at, last_seen) VALUES ('killed', 'h', 1, '{default}', 5, 5, 'x',"
        " now() - interval '5 minutes', now() - interval '45 seconds')",
    )
    table, as_json = nq_all(database_url, tmp_path, ["status"], ["status", "--json"])
    assert table.code == 0, table
    line = next(x for x in table.out.splitlines() if "killed" in x)
    assert "gone" in line and "5/5" not in line, table
    assert [w["state"] for w in json.loads(as_json.out)["workers"]] == ["gone"], as_json


# --- cancel and retry ----------------------------------------------------------------------


def test_cancel_and_retry(database_url: str, tmp_path: Path) -> None:
    pending = insert(database_url, "reverse", '"x"')
    done = insert(database_url, "reverse", '"y"', status="done")

    cancelled, not_cancellable, missing = nq_all(
        database_url,
        tmp_path,
        ["cancel", str(pending)],
        ["cancel", str(done)],
        ["cancel", "999999"],
    )
    assert (cancelled.code, cancelled.out) == (0, "cancelled\n"), cancelled
    assert (not_cancellable.code, not_cancellable.out) == (1, ""), not_cancellable
    assert not_cancellable.err == f"notifyq: cannot cancel task {done}: it is done\n"
    assert (missing.code, missing.out) == (1, ""), missing
    assert missing.err == "notifyq: task 999999 does not exist\n"
    assert row(database_url, pending, "status, finished_at IS NOT NULL") == ["cancelled", "t"]
    assert row(database_url, done, "status") == ["done"]

    retried, not_retryable = nq_all(
        database_url, tmp_path, ["retry", str(pending)], ["retry", str(done)]
    )
    assert (retried.code, retried.out) == (0, "pending\n"), retried
    assert not_retryable.code == 1, not_retryable
    assert not_retryable.err == f"notifyq: cannot retry task {done}: it is done\n"
    assert row(database_url, pending, "status, attempts, finished_at IS NULL") == [
        "pending",
        "0",
        "t",
    ]
    history = nq(database_url, tmp_path, "history", str(pending))
    assert [line.split()[2] for line in history.out.splitlines()] == [
        "queued",
        "cancelled",
        "requeued",
    ], history


# --- wait ------------------------------------------------------------------------------------


def test_wait_times_out_with_exit_3(database_url: str, tmp_path: Path) -> None:
    task_id = insert(database_url, "reverse", '"x"')
    timed_out, missing = nq_all(
        database_url,
        tmp_path,
        ["wait", str(task_id), "--timeout", "0.5"],
        ["wait", "999999", "--timeout", "5"],
    )
    assert timed_out.code == 3, timed_out
    assert timed_out.out == ""
    assert f"notifyq: task {task_id} did not end within 0.5 s" in timed_out.err.splitlines()
    assert missing.code == 1, missing
    assert missing.err == "notifyq: task 999999 does not exist\n"
    assert row(database_url, task_id, "status") == ["pending"]


def test_wait_timeout_is_reported_in_one_line(database_url: str, tmp_path: Path) -> None:
    task_id = insert(database_url, "reverse", '"x"')
    result = nq(database_url, tmp_path, "wait", str(task_id), "--timeout", "0.2")
    assert result.code == 3, result
    assert result.err == f"notifyq: task {task_id} did not end within 0.2 s\n"


def test_wait_for_a_task_completed_by_serve(database_url: str, tmp_path: Path) -> None:
    # Due in 2 s: `wait` is (almost certainly) listening by the time serve runs it.
    task_id = int(
        scalar(
            database_url,
            "INSERT INTO notifyq.tasks (kind, payload, run_at) "
            "VALUES ('reverse', '\"hello\"', now() + interval '2 s') "
            "RETURNING id",
        )
    )
    serve = start(database_url, tmp_path, "serve", "--workers", "2")
    try:
        waiting = start(database_url, tmp_path, "wait", str(task_id), "--timeout", "25")
        result = finish(waiting, ["wait", str(task_id)])
        assert result.code == 0, result
        task = json.loads(result.out)
        assert task["id"] == task_id
        assert task["status"] == "done"
        assert task["result"] == "olleh"
        assert task["payload"] == "hello"
        assert task["attempts"] == 1
        assert task["finished_at"] is not None
        serve.send_signal(signal.SIGTERM)
        served = finish(serve, ["serve"], timeout=20)
        assert served.code == 0, served
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.communicate()


def test_wait_for_a_cancelled_task_exits_1(database_url: str, tmp_path: Path) -> None:
    task_id = insert(database_url, "reverse", '"x"', status="cancelled")
    result = nq(database_url, tmp_path, "wait", str(task_id), "--timeout", "5")
    assert result.code == 1, result
    assert json.loads(result.out)["status"] == "cancelled"


# --- prune, dsn, help ---------------------------------------------------------------------------


def test_prune_deletes_old_ended_tasks(database_url: str, tmp_path: Path) -> None:
    old_done = insert(
        database_url, "noop", "{}", status="done", finished="now() - interval '8 days'"
    )
    old_error = insert(
        database_url, "noop", "{}", status="error", finished="now() - interval '30 days'"
    )
    recent = insert(database_url, "noop", "{}", status="done", finished="now() - interval '6 days'")
    pending = insert(database_url, "noop", "{}")
    # History goes by its own age (whole day partitions, migration 0007), not by task.
    for task_id, age in ((old_done, "8 days"), (old_error, "30 days"), (recent, "6 days")):
        scalar(
            database_url,
            "INSERT INTO notifyq.task_events (task_id, event, at) "
            f"VALUES ({task_id}, 'started', now() - interval '{age}') RETURNING 1",
        )
    scalar(
        database_url,
        f"INSERT INTO notifyq.task_events (task_id, event) VALUES ({pending}, 'started') RETURNING 1",
    )

    result = nq(database_url, tmp_path, "prune", "--older-than", "7d")
    assert (result.code, result.out) == (0, "deleted 2 task(s)\n"), result
    assert (
        scalar(database_url, "SELECT string_agg(id::text, ',' ORDER BY id) FROM notifyq.tasks")
        == f"{recent},{pending}"
    )
    assert (
        scalar(
            database_url,
            f"SELECT count(*) FROM notifyq.task_events WHERE task_id IN ({old_done}, {old_error})",
        )
        == "0"
    )
    assert (
        scalar(
            database_url,
            f"SELECT count(*) FROM notifyq.task_events WHERE task_id IN ({recent}, {pending})",
        )
        == "2"
    )


def test_dsn_prints_database_url_unchanged(tmp_path: Path) -> None:
    url = "postgresql://app:s3cr%40t@db.example:6543/app?sslmode=require&application_name=x"
    from_env, from_flag = nq_all(
        url, tmp_path, ["dsn"], ["--database-url", "postgres://other@h/db", "dsn"]
    )
    assert (from_env.code, from_env.out, from_env.err) == (0, url + "\n", ""), from_env
    assert (from_flag.code, from_flag.out) == (0, "postgres://other@h/db\n"), from_flag


def test_malformed_database_url_exits_2_with_one_line(tmp_path: Path) -> None:
    # Before: asyncpg's ValueError while parsing the port, an 86-line traceback.
    bad_port, bad_host = nq_all(
        NOWHERE,
        tmp_path,
        ["--database-url", "postgresql://u@127.0.0.1:notaport/db", "status"],
        ["--database-url", "postgresql://u@[::1/db", "serve"],
    )
    expected = (
        "notifyq: invalid DATABASE_URL: expected a postgresql:// URL "
        "(unset: the embedded PostgreSQL)\n"
    )
    assert (bad_port.code, bad_port.err) == (2, expected), bad_port
    assert (bad_host.code, bad_host.err) == (2, expected), bad_host


def _all_commands() -> list[list[str]]:
    found: list[list[str]] = [[]]

    def walk(group: click.Command, prefix: list[str]) -> None:
        if not isinstance(group, click.Group):
            return
        ctx = click.Context(group)
        for name in group.list_commands(ctx):  # `bench` loads its subcommands here
            command = group.get_command(ctx, name)
            assert command is not None, name
            found.append([*prefix, name])
            walk(command, [*prefix, name])

    walk(main, [])
    return found


def test_every_command_has_help() -> None:
    commands = _all_commands()
    names = {" ".join(c) for c in commands}
    assert {
        "enqueue",
        "status",
        "history",
        "cancel",
        "retry",
        "wait",
        "prune",
        "dsn",
        "serve",
        "migrate",
        "seed",
        "bench latency",
        "bench harsh",
    } <= names
    runner = CliRunner()
    for command in commands:
        result = runner.invoke(main, [*command, "--help"], env={"DATABASE_URL": NOWHERE})
        assert result.exit_code == 0, (command, result.output)
        assert result.output.startswith("Usage: "), (command, result.output)
        assert " ".join(["main", *command]) in result.output.splitlines()[0]


def test_help_of_the_real_program(tmp_path: Path) -> None:
    top, sub = nq_all(NOWHERE, tmp_path, ["--help"], ["enqueue", "-h"])
    assert top.code == 0, top
    assert top.out.startswith("Usage: python -m notifyq [OPTIONS] COMMAND [ARGS]...")
    for name in (
        "cancel",
        "dsn",
        "enqueue",
        "history",
        "migrate",
        "prune",
        "retry",
        "seed",
        "serve",
        "status",
        "wait",
    ):
        assert re.search(rf"^  {name} ", top.out, re.MULTILINE), name
    assert sub.code == 0, sub
    assert sub.out.startswith("Usage: python -m notifyq enqueue [OPTIONS] KIND [PAYLOAD]")
    assert "--max-attempts" in sub.out


@pytest.mark.parametrize("args", [["nosuchcommand"], ["cancel", "0"], ["cancel", "abc"]])
def test_bad_arguments_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(main, args, env={"DATABASE_URL": NOWHERE})
    assert result.exit_code == 2, result.output


def test_enqueue_on_conflict_replace_debounces(database_url: str, tmp_path: Path) -> None:
    first = nq(database_url, tmp_path, "enqueue", "noop", "1", "--unique-key", "k", "--delay", "1h")
    again = nq(
        database_url,
        tmp_path,
        *("enqueue", "noop", "2", "--unique-key", "k", "--delay", "10s"),
        *("--on-conflict", "replace"),
    )
    assert (first.code, again.code) == (0, 0), (first, again)
    assert again.out == first.out
    assert again.err == f"notifyq: replaced task {int(first.out)} (unique key 'k')\n"
    assert row(database_url, int(first.out), "payload::text, run_at - created_at < '1 min'") == [
        "2",
        "t",
    ]


def test_queue_set_fair(database_url: str, tmp_path: Path) -> None:
    result = nq(
        database_url,
        tmp_path,
        *("queue", "set", "tenants", "--fair", "--per-key", "2", "--age-priority-after", "30s"),
    )
    assert result.code == 0, result
    assert result.out == (
        "tenants: fair age_priority_after=30s per_key=2 (pending 0, in_progress 0)\n"
    )
    assert scalar(database_url, "SELECT fair FROM notifyq.queues WHERE name = 'tenants'") == "t"
