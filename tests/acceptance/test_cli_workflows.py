"""`notifyq enqueue --after ... --on-parent-failure ...` and `notifyq batches show`."""

from __future__ import annotations

import json

import psycopg

import notifyq
from tests.acceptance.test_roles import cli


def test_enqueue_after_and_batches_show(database_url: str) -> None:
    first = cli(database_url, "enqueue", "a")
    second = cli(database_url, "enqueue", "b")
    parents = f"{first.stdout.strip()},{second.stdout.strip()}"
    child = cli(database_url, "enqueue", "c", "--after", parents, "--on-parent-failure", "run")
    assert child.returncode == 0, child.stderr
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT depends_on, on_parent_failure, status FROM notifyq.tasks WHERE id = %s",
            (int(child.stdout),),
        ).fetchone()
        assert row == ([int(p) for p in parents.split(",")], "run", "waiting")
        chord = notifyq.enqueue_workflow(
            conn, notifyq.chord([notifyq.task("m"), notifyq.task("m")], notifyq.task("cb"))
        )
    assert isinstance(chord, notifyq.ChordIds)
    shown = cli(database_url, "batches", "show", str(chord.batch_id), "--json")
    assert shown.returncode == 0, shown.stderr
    body = json.loads(shown.stdout)
    assert (body["total"], body["done"], body["failed"], body["remaining"]) == (2, 0, 0, 2)
    assert (body["callback_id"], body["callback_status"]) == (chord.callback_id, "waiting")
    table = cli(database_url, "batches", "show", str(chord.batch_id))
    assert table.returncode == 0, table.stderr
    assert "remaining  2" in table.stdout
    assert f"callback   {chord.callback_id} (waiting)" in table.stdout
    missing = cli(database_url, "batches", "show", "999999")
    assert (missing.returncode, missing.stderr.strip()) == (1, "notifyq: no batch 999999")
