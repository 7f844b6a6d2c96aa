"""Typed tasks (``@app.task``): checked arguments in every producer path, checked again when
the task runs, the payload readable JSON."""

from __future__ import annotations

from datetime import date

import psycopg
import pytest

import notifyq
from notifyq import db
from notifyq.client import Client
from tests.helpers import insert, running_service, wait_ended
from tests.integration.test_producers import query, run_in
from tests.typed_app import app, fetch, record, resize, shift


@pytest.mark.parametrize("driver", ["psycopg", "psycopg-async", "asyncpg", "sqlalchemy-session"])
def test_enqueue_writes_the_checked_arguments_as_json(driver: str, database_url: str) -> None:
    ids = run_in(
        driver,
        database_url,
        lambda conn: resize.enqueue(conn, image_id=1, width="800"),  # type: ignore[call-overload]
    )
    (row,) = query(
        database_url, "SELECT kind, payload, queue FROM notifyq.tasks WHERE id = %s", ids
    )
    # The kind is module.qualname; "800" was coerced to the annotated int before any SQL.
    assert row == ("tests.typed_app.resize", {"image_id": 1, "width": 800}, "default")


def test_defaults_and_options_of_the_decorator_and_of_using(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        first = fetch.enqueue(conn, "https://example.org")
        second = fetch.using(queue="other", priority="high").enqueue(conn, url="u", tries=2)
    rows = query(
        database_url,
        "SELECT kind, payload, queue, priority FROM notifyq.tasks WHERE id = ANY(%s) ORDER BY id",
        [first, second],
    )
    assert rows == [
        ("typed.fetch", {"url": "https://example.org"}, "typed", 0),
        ("typed.fetch", {"url": "u", "tries": 2}, "other", 10),
    ]


def test_enqueue_unique_adds_nothing_while_a_live_task_holds_the_key(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        first = resize.enqueue_unique(conn, "image:1", image_id=1)
        again = resize.enqueue_unique(conn, "image:1", image_id=1, width=5)
        other = resize.enqueue_unique(conn, "image:2", image_id=2)
    assert isinstance(first, int) and again is None and isinstance(other, int)


async def test_enqueue_unique_on_the_client(database: db.Database) -> None:
    client = Client(database)
    first = await resize.enqueue_unique(client, "image:1", image_id=1)
    assert isinstance(first, int)
    assert await resize.enqueue_unique(client, "image:1", image_id=1) is None


def test_wrong_arguments_are_refused_before_any_sql(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        with pytest.raises(notifyq.InvalidTask) as wrong_type:
            resize.enqueue(conn, image_id="seven")  # type: ignore[call-overload]
        with pytest.raises(notifyq.InvalidTask) as unknown:
            resize.enqueue(conn, image_id=1, height=2)  # type: ignore[call-overload]
        with pytest.raises(notifyq.InvalidTask) as missing:
            resize.enqueue(conn)  # type: ignore[call-overload]
        # Nothing reached the database: the caller's transaction is still usable.
        assert conn.execute("SELECT count(*) FROM notifyq.tasks").fetchone() == (0,)
    assert str(wrong_type.value) == (
        "invalid arguments of tests.typed_app.resize {'image_id': 'seven'}: "
        "image_id: Input should be a valid integer, unable to parse string as an integer"
    )
    assert "got an unexpected keyword argument 'height'" in str(unknown.value)
    assert "missing a required argument: 'image_id'" in str(missing.value)


def test_a_typed_task_is_still_the_function() -> None:
    assert resize(3) == {"image_id": 3, "width": 100}
    assert resize.kind == "tests.typed_app.resize"


async def test_typed_tasks_run_in_every_runtime_from_the_client_and_in_chains(
    database: db.Database,
) -> None:
    client = Client(database)
    async with running_service(database, app, queues="default,typed"):
        first = await resize.enqueue(client, image_id=2, width=50)
        moved = await shift.enqueue(client, day=date(2026, 12, 31), days=1)
        fetched = await fetch.enqueue(client, url="x", tries=3)
        flow = await client.enqueue_workflow(
            notifyq.chain(resize.new_task(image_id=5), fetch.new_task(url="y"))
        )
        recorded = await record.enqueue(client, note="hi")
        rows = await wait_ended(database, first, moved, fetched, *flow.ids, recorded)
    assert [(r["status"], r["result"]) for r in rows] == [
        ("done", {"image_id": 2, "width": 50}),
        ("done", "2027-01-01"),
        ("done", "x x3"),
        ("done", {"image_id": 5, "width": 100}),
        ("done", "y x1"),
        ("done", 10),  # a transactional task read its attempt (1) and ran in its transaction
    ]


async def test_a_payload_written_by_plain_sql_is_checked_when_the_task_runs(
    database: db.Database,
) -> None:
    bad = await insert(database, "typed.shift", {"day": "not a date", "days": 1}, max_attempts=3)
    async with running_service(database, app):
        (row,) = await wait_ended(database, bad)
    # Another attempt would read the same payload: the task ends at its first attempt.
    assert (row["status"], row["attempts"]) == ("error", 1)
    assert row["error"].startswith(
        "PayloadError: invalid arguments of typed.shift {'day': 'not a date', 'days': 1}: day: "
    )
