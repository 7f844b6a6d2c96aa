"""`notifyq schedule ...` and `notifyq enqueue --unique-key` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.acceptance.proc import scalar
from tests.acceptance.test_cli import nq, nq_all


def test_schedule_add_list_pause_resume_remove(database_url: str, tmp_path: Path) -> None:
    cron, every = nq_all(
        database_url,
        tmp_path,
        [
            "schedule",
            "add",
            "nightly",
            "--cron",
            "30 2 * * *",
            "--tz",
            "Europe/Berlin",
            "--kind",
            "noop",
            "--payload",
            '{"report": true}',
            "--priority",
            "5",
        ],
        [
            "schedule",
            "add",
            "often",
            "--every",
            "90s",
            "--kind",
            "reverse",
            "--payload",
            "hi",
            "--queue",
            "q",
            "--catch-up",
            "all",
            "--catch-up-limit",
            "3",
        ],
    )
    assert (cron.code, cron.out.strip()) == (
        0,
        "schedule 'nightly' added: cron '30 2 * * *' in Europe/Berlin",
    ), cron
    assert (every.code, every.out.strip()) == (0, "schedule 'often' added: every 90s"), every
    listed = nq(database_url, tmp_path, "schedule", "list", "--json")
    rows = {r["name"]: r for r in json.loads(listed.out)}
    assert rows["nightly"]["payload"] == {"report": True}
    assert rows["nightly"]["next_run_at"] is not None and rows["nightly"]["last_run_at"] is None
    assert (rows["often"]["every_s"], rows["often"]["queue"], rows["often"]["catch_up"]) == (
        90,
        "q",
        "all",
    )
    paused, again = nq_all(
        database_url,
        tmp_path,
        ["schedule", "pause", "often"],
        [
            "schedule",
            "add",
            "often",
            "--every",
            "90s",
            "--kind",
            "reverse",
            "--payload",
            "hi",
            "--queue",
            "q",
            "--catch-up",
            "all",
            "--catch-up-limit",
            "3",
        ],
    )
    assert paused.out.strip() == "schedule 'often' paused", paused
    assert again.out.strip() == "schedule 'often' unchanged: every 90s", again
    table = nq(database_url, tmp_path, "schedule", "list").out.splitlines()
    assert table[0].split() == [
        "name",
        "when",
        "kind",
        "queue",
        "state",
        "last",
        "run",
        "next",
        "run",
    ]
    assert "paused" in table[2] and table[2].startswith("often")
    resumed, removed = nq_all(
        database_url, tmp_path, ["schedule", "resume", "often"], ["schedule", "remove", "nightly"]
    )
    assert (resumed.out.strip(), removed.out.strip()) == (
        "schedule 'often' resumed",
        "schedule 'nightly' removed",
    )
    assert (
        scalar(database_url, "SELECT string_agg(name || ':' || paused, ',') FROM notifyq.schedules")
        == "often:false"
    )


def test_schedule_errors_exit_2_with_one_line(database_url: str, tmp_path: Path) -> None:
    results = nq_all(
        database_url,
        tmp_path,
        ["schedule", "add", "s", "--cron", "61 * * * *", "--kind", "noop"],
        ["schedule", "add", "s", "--cron", "* * * * *", "--tz", "Mars/Olympus", "--kind", "noop"],
        ["schedule", "add", "s", "--every", "1s", "--kind", "no_such_kind"],
        ["schedule", "add", "s", "--kind", "noop"],
        ["schedule", "remove", "nothing"],
    )
    assert [(r.code, r.err.strip()) for r in results] == [
        (2, "notifyq: invalid cron expression '61 * * * *': bad minute field"),
        (
            2,
            "notifyq: unknown time zone 'Mars/Olympus': expected an IANA name such as 'UTC' "
            "or 'Europe/Berlin'",
        ),
        (
            2,
            "notifyq: invalid --kind 'no_such_kind': no handler for it (known: demo, "
            "fetch_url, noop, reverse, sleep; give --app for your own kinds)",
        ),
        (2, "notifyq: schedule 's' needs exactly one of cron and every"),
        (1, "notifyq: no schedule named 'nothing'"),
    ]
    assert scalar(database_url, "SELECT count(*) FROM notifyq.schedules") == "0"
    # An app's own kinds are known with --app (run from the source tree, which has tests/).
    mine = nq(
        database_url,
        Path.cwd(),
        "schedule",
        "add",
        "mine",
        "--every",
        "1h",
        "--kind",
        "crash",
        "--app",
        "tests.apps:app",
    )
    assert (mine.code, mine.out.strip()) == (0, "schedule 'mine' added: every 3600s"), mine


def test_enqueue_unique_key_prints_the_live_task_and_says_so(
    database_url: str, tmp_path: Path
) -> None:
    first = nq(database_url, tmp_path, "enqueue", "noop", "--unique-key", "k1")
    assert first.code == 0 and first.err == "", first
    second = nq(database_url, tmp_path, "enqueue", "noop", "--unique-key", "k1")
    assert (second.code, second.out) == (0, first.out), second
    assert second.err.strip() == (
        f"notifyq: not added: task {first.out.strip()} with unique key 'k1' is pending in "
        "queue 'default'"
    )
    scalar(database_url, "UPDATE notifyq.tasks SET status = 'done'")
    third = nq(database_url, tmp_path, "enqueue", "noop", "--unique-key", "k1")
    assert third.code == 0 and third.out != first.out and third.err == "", third


def test_schedule_list_is_paged_and_previews_big_payloads(
    database_url: str, tmp_path: Path
) -> None:
    scalar(
        database_url,
        "INSERT INTO notifyq.schedules (name, every, kind, payload)"
        " SELECT 'big' || i, interval '1 h', 'noop', to_jsonb(repeat('x', 100000))"
        "   FROM generate_series(1, 3) AS i",
    )
    page, rest = nq_all(
        database_url,
        tmp_path,
        ["schedule", "list", "--limit", "2"],
        ["schedule", "list", "--json", "--after", "big2"],
    )
    assert page.code == 0, page.err
    lines = page.out.splitlines()
    assert [line.split()[0] for line in lines[1:3]] == ["big1", "big2"]
    assert lines[-1] == "more: --after big2"
    assert rest.code == 0, rest.err
    [shown] = json.loads(rest.out)
    assert shown["name"] == "big3" and shown["payload_truncated"] is True
    assert len(shown["payload"]) == 4096
