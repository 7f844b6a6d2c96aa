"""Queue limits through the engine, the App, the store and the HTTP API (one process)."""

from __future__ import annotations

import json
from typing import Any

import trio

from notifyq import db, limits, store
from notifyq.app import App, Task
from tests.helpers import eventually, running_service, running_web

JSON = {"Content-Type": "application/json"}


async def test_app_declared_limits_are_written_at_start_and_enforced(
    database: db.Database,
) -> None:
    await database.execute("INSERT INTO notifyq.queues (name, paused) VALUES ('api', true)")
    app = App()
    app.queue("api", concurrency=2, rate="1000/s")
    running: list[int] = []
    most = 0

    @app.handler("slow")
    async def slow(task: Task) -> None:
        nonlocal most
        running.append(task.id)
        most = max(most, len(running))
        await trio.sleep(0.05)
        running.remove(task.id)

    await database.execute(
        "INSERT INTO notifyq.tasks (queue, kind) SELECT 'api', 'slow' FROM generate_series(1, 3)"
    )
    async with running_service(database, app, queues=["api"], worker_count=5) as service:
        # The code declares no `paused`: the operator's pause holds across the start.
        row = await database.fetchrow("SELECT * FROM notifyq.queues WHERE name = 'api'")
        assert row is not None
        assert (row["concurrency"], row["rate_count"], row["paused"]) == (2, 1000, True)
        await trio.sleep(0.2)
        assert (
            await database.fetchval("SELECT count(*) FROM notifyq.tasks WHERE status = 'pending'")
            == 3
        )
        await store.set_queue_limits(database, limits.change("api", paused=False))
        await database.execute(
            "INSERT INTO notifyq.tasks (queue, kind) "
            "SELECT 'api', 'slow' FROM generate_series(1, 9)"
        )
        await eventually(
            lambda: database.fetchval(
                "SELECT NOT EXISTS (SELECT 1 FROM notifyq.tasks WHERE status <> 'done')"
            )
        )
        assert service.claimer.limited == {"api"}
    assert most == 2


async def test_unlimited_process_claims_with_the_plain_claim(database: db.Database) -> None:
    await database.execute("INSERT INTO notifyq.queues (name, concurrency) VALUES ('other', 1)")
    ids = [
        r["id"]
        for r in await database.fetch(
            "INSERT INTO notifyq.tasks (kind) SELECT 'noop' FROM generate_series(1, 20) RETURNING id"
        )
    ]
    async with running_service(database) as service:
        await eventually(
            lambda: database.fetchval(
                "SELECT count(*) = $1 FROM notifyq.tasks WHERE status = 'done'", len(ids)
            )
        )
        assert service.claimer.limited == frozenset()


async def test_store_sets_lists_and_clears_limits(database: db.Database) -> None:
    await store.set_queue_limits(database, limits.change("a", concurrency=3, rate="10/m"))
    await store.set_queue_limits(database, limits.change("a", per_key_concurrency=1))
    await store.set_queue_limits(database, limits.change("a", concurrency=None))
    await database.execute("INSERT INTO notifyq.tasks (queue, kind) VALUES ('b', 'noop')")
    queues = {q.name: q for q in await store.list_queues(database)}
    assert set(queues) == {"a", "b"}
    a = queues["a"]
    assert (a.concurrency, a.rate, a.per_key_concurrency, a.paused) == (
        None,
        limits.Rate(10, 60.0),
        1,
        False,
    )
    assert (queues["b"].pending, queues["b"].updated_at) == (1, None)
    assert await store.limited_queues(database) == {"a"}
    assert await store.clear_queue_limits(database, "a") is True
    assert await store.clear_queue_limits(database, "a") is False
    assert await store.limited_queues(database) == frozenset()


async def test_http_queues_set_and_list(database: db.Database) -> None:
    async with running_web(database, workers=False) as web:
        client = web.test_client()

        async def post(path: str, body: Any) -> Any:
            return await client.post(path, data=json.dumps(body), headers=JSON)

        response = await post("/queues/api", {"concurrency": 3, "rate": "20 / s"})
        assert response.status_code == 200, await response.get_data(as_text=True)
        body = await response.get_json()
        assert body == {
            "name": "api",
            "concurrency": 3,
            "rate": "20/s",
            "per_key_concurrency": None,
            "paused": False,
            "fair": False,
            "age_priority_after_s": None,
            "pending": 0,
            "in_progress": 0,
        }
        page = await (await client.get("/")).get_data(as_text=True)
        assert "<td>api</td>" in page and "≤ 3 at once, 20/s" in page
        summary = await (await client.get("/ui/summary")).get_json()
        assert summary["queue_limits"] == {"api": "≤ 3 at once, 20/s"}
        response = await post("/queues/api", {"paused": True, "concurrency": None})
        assert (await response.get_json())["paused"] is True
        response = await post("/queues/api", {"fair": True, "age_priority_after": 90})
        changed = await response.get_json()
        assert (changed["fair"], changed["age_priority_after_s"]) == (True, 90.0)
        listed = await (await client.get("/queues")).get_json()
        assert listed["queues"][0]["concurrency"] is None
        assert listed["queues"][0]["rate"] == "20/s"
        for bad, message in [
            ({"concurrency": 0}, "concurrency"),
            ({"rate": "fast"}, "invalid rate 'fast'"),
            ({"paused": None}, "paused: Input should be a valid boolean"),
            ({"what": 1}, "what"),
        ]:
            response = await post("/queues/api", bad)
            assert response.status_code == 422
            assert message in (await response.get_json())["error"]["message"]
        response = await post("/queues/api", {"clear": True})
        assert (await response.get_json())["rate"] is None
        response = await post("/tasks", {"kind": "noop", "queue": "api", "concurrency_key": "c1"})
        assert (await response.get_json())["concurrency_key"] == "c1"
        spec = await (await client.get("/openapi.json")).get_json()
        assert {"/queues", "/queues/{name}"} <= set(spec["paths"])


async def test_http_queue_list_is_paginated(database: db.Database) -> None:
    # Queue names are whatever producers write: the list comes in bounded pages.
    await database.execute(
        "INSERT INTO notifyq.queues (name, concurrency)"
        " SELECT 'q' || lpad(i::text, 3, '0'), i FROM generate_series(1, 120) AS i"
    )
    async with running_web(database, workers=False) as web:
        client = web.test_client()
        first = await (await client.get("/queues")).get_json()
        assert [q["name"] for q in first["queues"]] == [f"q{i:03}" for i in range(1, 101)]
        assert first["next"] == "/queues?limit=100&after=q100"
        second = await (await client.get(first["next"])).get_json()
        assert [q["name"] for q in second["queues"]] == [f"q{i:03}" for i in range(101, 121)]
        assert second["next"] is None
        small = await (await client.get("/queues?limit=2&after=q050")).get_json()
        assert [q["name"] for q in small["queues"]] == ["q051", "q052"]
        response = await client.get("/queues?limit=501")
        assert response.status_code == 422
        # A name PostgreSQL cannot store is the client's mistake, as in every other filter.
        response = await client.get("/queues?after=%00")
        assert response.status_code == 422, await response.get_data()


async def test_http_queue_changes_need_the_token(database: db.Database) -> None:
    async with running_web(database, workers=False, api_token="s" * 20) as web:
        client: Any = web.test_client()
        response = await client.post("/queues/api", data='{"paused": true}', headers=JSON)
        assert response.status_code == 401
        assert await database.fetchval("SELECT count(*) FROM notifyq.queues") == 0
