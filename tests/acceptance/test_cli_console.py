"""`notifyq tasks ...` and `notifyq schedule run` as an operator runs them (subprocesses)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.acceptance.proc import scalar
from tests.acceptance.test_cli import insert, nq, nq_all, row


def failed(url: str, kind: str, error: str, finished: str = "now()") -> int:
    task_id = insert(url, kind, '"x"', status="error", finished=finished)
    scalar(url, f"UPDATE notifyq.tasks SET error = '{error}' WHERE id = {task_id}")
    return task_id


def test_list_count_show_and_failures(database_url: str, tmp_path: Path) -> None:
    url = database_url
    a = failed(url, "resize", "OSError: disk 3 full")
    b = failed(url, "resize", "OSError: disk 7 full", finished="now() - interval '3 hours'")
    c = insert(url, "mail", '"m"')
    # Four commands at a time at most: each start costs seconds on a loaded machine.
    table, as_json, count, since = nq_all(
        url,
        tmp_path,
        ["tasks", "list", "--kind", "resize"],
        ["tasks", "list", "--status", "error", "--json", "--limit", "1"],
        ["tasks", "count", "--status", "error,pending"],
        ["tasks", "count", "--status", "error", "--since", "1h"],
    )
    bad, show, groups = nq_all(
        url,
        tmp_path,
        ["tasks", "list", "--status", "nope"],
        ["tasks", "show", str(a)],
        ["tasks", "failures", "--since", "1d"],
    )
    lines = table.out.splitlines()
    assert table.code == 0 and lines[0].split()[:3] == ["id", "status", "queue"], table
    assert [int(line.split()[0]) for line in lines[1:]] == [b, a]
    assert "OSError: disk 3 full" in lines[2]
    assert as_json.code == 0 and json.loads(as_json.out)["id"] == b, as_json
    assert as_json.err == f"(more: --before {b})\n"
    assert count.out == "3\n", count
    assert since.out == "1\n", since  # --since means finished_after: every status ended
    assert (bad.code, bad.out) == (2, ""), bad
    assert bad.err.startswith("notifyq: invalid --status: 'nope' is not a status"), bad
    assert show.code == 0 and f"task {a}: resize on default, error" in show.out, show
    assert "error: OSError: disk 3 full" in show.out
    assert groups.code == 0, groups
    first = groups.out.splitlines()[0].split()
    assert first[0] == "2" and first[2] == "resize", groups  # one group: <n> replaced
    assert " ".join(first[3:]) == "OSError: disk <n> full"
    by_group = nq(url, tmp_path, "tasks", "count", "--fingerprint", first[1])
    assert by_group.out == "2\n", by_group
    assert row(url, c, "status") == ["pending"]


@pytest.mark.slow  # four rounds of CLI processes, one after the other (each round waits)
def test_bulk_actions_ask_show_progress_and_name_the_cli(database_url: str, tmp_path: Path) -> None:
    url = database_url
    ids = [failed(url, "resize", "boom") for _ in range(5)]
    dry, refused_by_user = nq_all(
        url,
        tmp_path,
        ["tasks", "retry", "--kind", "resize", "--status", "error", "--dry-run"],
        ["tasks", "retry", "--kind", "resize", "--status", "error"],  # no terminal: no
    )
    assert dry.code == 0 and dry.out.startswith("would retry up to 5 tasks"), dry
    assert str(ids[-1]) in dry.out
    assert refused_by_user.code == 1, refused_by_user
    assert scalar(url, "SELECT count(*) FROM notifyq.tasks WHERE status = 'error'") == "5"
    yes = nq(
        url,
        tmp_path,
        "tasks",
        "retry",
        "--kind",
        "resize",
        "--status",
        "error",
        "--step",
        "2",
        "--yes",
    )
    assert yes.code == 0, yes
    assert yes.out.splitlines()[-1] == "retry: changed 5, skipped 0 (busy 0)"
    assert "retry: 5/5 (changed 5, skipped 0)" in yes.err
    assert (
        scalar(
            url,
            "SELECT string_agg(DISTINCT event || ':' || actor, ',') FROM notifyq.task_events",
        )
        == "requeued:cli"
    )
    # Ids instead of filters: each answered; a refusal makes the exit 1.
    scalar(url, f"UPDATE notifyq.tasks SET status = 'done' WHERE id = {ids[0]}")
    by_ids, both = nq_all(
        url,
        tmp_path,
        ["tasks", "cancel", str(ids[1]), str(ids[0]), "999999"],
        ["tasks", "cancel", str(ids[1]), "--kind", "x"],
    )
    assert by_ids.code == 1, by_ids
    assert by_ids.out.splitlines() == [
        f"{ids[1]} cancelled",
        f"{ids[0]} refused: cannot cancel task {ids[0]}: it is done",
        "999999 refused: task 999999 does not exist",
    ]
    assert both.code == 2 and "not both" in both.err, both
    prio = nq(url, tmp_path, "tasks", "priority", "urgent", "--status", "pending", "--yes")
    assert prio.code == 0 and "changed 3" in prio.out, prio
    assert row(url, ids[2], "priority") == ["20"]


def test_single_id_commands_and_schedule_run_name_the_cli(
    database_url: str, tmp_path: Path
) -> None:
    url = database_url
    task_id = insert(url, "mail", '"m"')
    scalar(
        url,
        "INSERT INTO notifyq.schedules (name, every, kind, payload, next_run_at) "
        "VALUES ('hourly', interval '1 hour', 'tick', '{}', '2100-01-01T00:00:00Z')",
    )
    cancelled, ran, missing = nq_all(
        url,
        tmp_path,
        ["cancel", str(task_id)],
        ["schedule", "run", "hourly"],
        ["schedule", "run", "nope"],
    )
    assert (cancelled.code, cancelled.out) == (0, "cancelled\n"), cancelled
    assert ran.code == 0 and ran.out.startswith("schedule 'hourly' ran now: task "), ran
    assert (missing.code, missing.err) == (1, "notifyq: no schedule named 'nope'\n"), missing
    assert scalar(url, f"SELECT actor FROM notifyq.task_events WHERE task_id = {task_id}") == "cli"
    new_id = ran.out.split()[-1]
    assert (
        scalar(
            url, f"SELECT event || ':' || actor FROM notifyq.task_events WHERE task_id = {new_id}"
        )
        == "run_now:cli"
    )
    assert scalar(url, "SELECT next_run_at < '2100-01-02' FROM notifyq.schedules") == "t"
