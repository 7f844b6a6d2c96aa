"""notifyq.chain / group / chord added through the enqueue family, in one statement inside the
caller's transaction: the rows the SQL contract expects (depends_on in chain order, member
ids ascending in member order, a chord's batch and callback), for every driver."""

from __future__ import annotations

from typing import Any

import pytest

import notifyq
from notifyq import db
from notifyq.client import Client
from tests.integration.test_producers import DRIVERS, query, run_in


def rows(dsn: str, ids: Any) -> list[tuple[Any, ...]]:
    return query(
        dsn,
        "SELECT id, kind, depends_on, status, batch_id, after_batch FROM notifyq.tasks"
        " WHERE id = ANY(%s) ORDER BY id",
        list(ids),
    )


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_chain_ending_in_a_chord_is_one_statement(driver: str, database_url: str) -> None:
    flow = notifyq.chain(
        notifyq.task("fetch", {"url": "u"}),
        notifyq.group(notifyq.task("resize", {"size": s}) for s in (64, 256)),
        notifyq.chord([{"kind": "tag", "payload": n} for n in range(3)], notifyq.task("collect")),
        notifyq.task("publish", on_parent_failure="run"),
    )
    added = run_in(driver, database_url, lambda conn: notifyq.enqueue_workflow(conn, flow))
    assert isinstance(added, notifyq.ChainIds)
    fetch, resize, tag, publish = added.steps
    assert isinstance(fetch, int)
    assert isinstance(resize, notifyq.GroupIds)
    assert isinstance(tag, notifyq.ChordIds)
    assert isinstance(publish, int)
    batch = tag.batch_id
    assert rows(database_url, added.ids) == [
        (fetch, "fetch", None, "pending", None, None),
        (resize.members[0], "resize", [fetch], "waiting", None, None),
        (resize.members[1], "resize", [fetch], "waiting", None, None),
        *[(m, "tag", list(resize.members), "waiting", batch, None) for m in tag.members],
        (tag.callback_id, "collect", None, "waiting", None, batch),
        (publish, "publish", [tag.callback_id], "waiting", None, None),
    ]
    assert query(
        database_url,
        "SELECT payload FROM notifyq.tasks WHERE id = ANY(%s) ORDER BY id",
        list(tag.members),
    ) == [(0,), (1,), (2,)]
    assert query(
        database_url, "SELECT total, sealed, callback_id FROM notifyq.batches WHERE id = %s", batch
    ) == [(3, True, tag.callback_id)]
    assert query(
        database_url, "SELECT on_parent_failure FROM notifyq.tasks WHERE id = %s", publish
    ) == [("run",)]


@pytest.mark.parametrize("driver", ["psycopg", "asyncpg", "sqlalchemy-session"])
def test_a_group_and_a_chord_alone(driver: str, database_url: str) -> None:
    def add(conn: Any) -> Any:
        return notifyq.enqueue_workflow(
            conn, notifyq.group(notifyq.task("a"), {"kind": "b", "queue": "q2"})
        )

    members = run_in(driver, database_url, add)
    assert isinstance(members, notifyq.GroupIds)
    assert [r[1:4] for r in rows(database_url, members.ids)] == [
        ("a", None, "pending"),
        ("b", None, "pending"),
    ]
    parent = run_in(driver, database_url, lambda conn: notifyq.enqueue(conn, "before"))
    big = notifyq.chord(
        (notifyq.task("m", n, after=[parent]) for n in range(2000)), notifyq.task("cb")
    )
    chord = run_in(driver, database_url, lambda conn: notifyq.enqueue_workflow(conn, big))
    assert isinstance(chord, notifyq.ChordIds)
    assert len(chord.members) == 2000
    assert list(chord.members) == sorted(chord.members)
    assert chord.callback_id > chord.members[-1]
    assert query(
        database_url,
        "SELECT count(*), min(depends_on::text), bool_and(payload::int = n - 1)"
        "  FROM (SELECT *, row_number() OVER (ORDER BY id) AS n"
        "          FROM notifyq.tasks WHERE batch_id = %s) m",
        chord.batch_id,
    ) == [(2000, f"{{{parent}}}", True)]
    assert query(
        database_url,
        "SELECT total, sealed FROM notifyq.batch_progress WHERE id = %s",
        chord.batch_id,
    ) == [(2000, True)]


@pytest.mark.parametrize("driver", ["psycopg", "asyncpg"])
def test_a_rolled_back_workflow_adds_nothing(driver: str, database_url: str) -> None:
    flow = notifyq.chain(notifyq.task("a"), notifyq.chord([notifyq.task("b")], notifyq.task("c")))
    run_in(driver, database_url, lambda conn: notifyq.enqueue_workflow(conn, flow), commit=False)
    assert query(database_url, "SELECT count(*) FROM notifyq.tasks") == [(0,)]
    assert query(database_url, "SELECT count(*) FROM notifyq.batches") == [(0,)]


async def test_the_client_adds_a_workflow(database: db.Database) -> None:
    client = Client(database)
    added = await client.enqueue_workflow(notifyq.chain(notifyq.task("a"), notifyq.task("b")))
    assert isinstance(added, notifyq.ChainIds)
    first, second = added.steps
    assert await database.fetchval(
        "SELECT depends_on FROM notifyq.tasks WHERE id = $1", second
    ) == [first]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: notifyq.group(notifyq.chain(notifyq.task("a"))),  # type: ignore[arg-type]
            "a group holds tasks, not a chain (add the inner workflow on its own",
        ),
        (
            lambda: notifyq.chord([notifyq.task("a")], notifyq.group(notifyq.task("b"))),  # type: ignore[arg-type]
            "a chord's callback is a task, not a group",
        ),
        (lambda: notifyq.group(), "a group needs at least one task"),
        (lambda: notifyq.chain(), "a chain needs at least one step"),
        (
            lambda: notifyq.chain(
                notifyq.group(notifyq.task("a") for _ in range(1001)), notifyq.task("b")
            ),
            "a step after a group waits for each member: at most 1000, got 1001 (make it a chord",
        ),
    ],
)
def test_shapes_notifyq_does_not_add_are_refused(build: Any, message: str) -> None:
    with pytest.raises(notifyq.InvalidWorkflow) as caught:
        build()
    assert str(caught.value).startswith(message)


def test_a_workflow_task_takes_no_unique_key() -> None:
    with pytest.raises(notifyq.InvalidTask) as caught:
        notifyq.group({"kind": "a", "unique_key": "k"})
    assert str(caught.value) == "invalid unique_key 'k': a workflow's tasks take no unique_key"


def test_a_bare_task_is_not_a_workflow(database_url: str) -> None:
    with pytest.raises(notifyq.InvalidWorkflow) as caught:
        bare: Any = notifyq.task("a")
        run_in("psycopg", database_url, lambda c: notifyq.enqueue_workflow(c, bare))
    assert "expected notifyq.chain, group or chord, got NewTask" in str(caught.value)
