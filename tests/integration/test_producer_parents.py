"""`after` and `on_parent_failure` through every producer: the row gets depends_on in the
order given and is waiting while a parent has not ended."""

from __future__ import annotations

from typing import Any

import pytest

import notifyq
from notifyq import db
from notifyq.client import Client
from tests.integration.test_producers import DRIVERS, query, run_in


@pytest.mark.parametrize("driver", DRIVERS)
def test_enqueue_with_after_waits_for_its_parents(driver: str, database_url: str) -> None:
    def add(conn: Any) -> Any:
        return notifyq.enqueue(conn, "noop")

    first = run_in(driver, database_url, add)
    second = run_in(driver, database_url, add)
    child = run_in(
        driver,
        database_url,
        lambda conn: notifyq.enqueue(conn, "noop", after=[second, first], on_parent_failure="run"),
    )
    assert query(
        database_url,
        "SELECT depends_on, on_parent_failure, status FROM notifyq.tasks WHERE id = %s",
        child,
    ) == [([second, first], "run", "waiting")]


@pytest.mark.parametrize("driver", ["psycopg", "asyncpg"])
def test_enqueue_many_with_after(driver: str, database_url: str) -> None:
    parent = run_in(driver, database_url, lambda conn: notifyq.enqueue(conn, "noop"))
    ids = run_in(
        driver,
        database_url,
        lambda conn: notifyq.enqueue_many(
            conn, [{"kind": "noop", "after": [parent]}, {"kind": "noop"}]
        ),
    )
    assert query(
        database_url,
        "SELECT depends_on, status FROM notifyq.tasks WHERE id = ANY(%s) ORDER BY id",
        ids,
    ) == [([parent], "waiting"), (None, "pending")]


async def test_the_client_adds_a_dependent(database: db.Database) -> None:
    client = Client(database)
    parent = await client.enqueue("noop")
    child = await client.enqueue("noop", after=[parent], on_parent_failure="run")
    row = await client.task(child)
    assert (
        row.status,
        await database.fetchval("SELECT depends_on FROM notifyq.tasks WHERE id = $1", child),
    ) == ("waiting", [parent])
