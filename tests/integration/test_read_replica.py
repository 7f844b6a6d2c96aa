"""READ_DATABASE_URL: the HTTP side's lists, stats and page read from a replica; every
action stays on the primary. The "replica" here is a second database of the same server,
with rows of its own, so that each answer shows where it was read."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from notifyq import db
from tests import pg
from tests.helpers import insert, running_web


@pytest.fixture
async def replica(
    server_url: str, template_name: str, database_url: str, database: db.Database
) -> AsyncIterator[db.Database]:
    """A second migrated database, through a pool on the test's own loop."""
    name = f"{database_url.rsplit('/', 1)[1].split('?')[0]}_replica"
    pg.psql(server_url, f"CREATE DATABASE {name} TEMPLATE {template_name}")
    try:
        async with database.open_sibling(max_size=2, dsn=pg.with_database(server_url, name)) as r:
            yield r
    finally:
        pg.psql(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def test_lists_stats_and_page_read_the_replica_actions_write_the_primary(
    database: db.Database, replica: db.Database
) -> None:
    on_replica = await insert(replica, "noop", {"where": "replica"}, queue="replicated")
    on_primary = await insert(database, "noop", {"where": "primary"}, queue="primary_only")
    async with running_web(database, workers=False, read_database_url=replica.dsn) as web:
        client = web.test_client()
        listed = await (await client.get("/tasks")).get_json()
        assert [t["id"] for t in listed["tasks"]] == [on_replica]
        assert listed["tasks"][0]["payload"] == {"where": "replica"}

        stats = await (await client.get("/stats")).get_json()
        assert set(stats["counts_by_queue"]) == {"replicated"}
        assert stats["reads"] == {"source": "replica", "lag_s": 0.0}

        page = await (await client.get("/")).get_data(as_text=True)
        assert "replica lag" in page

        # An action, and a task's own page (read after its write): the primary.
        created = await client.post(
            "/tasks",
            data=json.dumps({"kind": "noop"}),
            headers={"Content-Type": "application/json"},
        )
        new_id = (await created.get_json())["id"]
        assert (
            await database.fetchval("SELECT count(*) FROM notifyq.tasks WHERE id = $1", new_id) == 1
        )
        shown = await (await client.get(f"/tasks/{on_primary}")).get_json()
        assert shown["payload"] == {"where": "primary"}
        cancelled = await client.post(f"/tasks/{on_primary}/cancel")
        assert cancelled.status_code == 200


async def test_without_read_database_url_everything_reads_the_primary(
    database: db.Database,
) -> None:
    task_id = await insert(database, "noop")
    async with running_web(database, workers=False) as web:
        client = web.test_client()
        listed = await (await client.get("/tasks")).get_json()
        assert [t["id"] for t in listed["tasks"]] == [task_id]
        stats = await (await client.get("/stats")).get_json()
        assert stats["reads"] == {"source": "primary", "lag_s": None}
