"""The JSON API through Quart's test client, against a real database and a running service."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio

from notifyq import db, priorities
from notifyq.listen import Health
from notifyq.settings import load
from notifyq.web.app import create_app
from notifyq.web.context import Context as WebContext
from tests.helpers import Web, eventually, running_web, task_row

JSON = {"Content-Type": "application/json"}


async def post(client: Any, path: str, body: Any = None, **kwargs: Any) -> Any:
    if body is not None:
        kwargs["data"] = body if isinstance(body, str | bytes) else json.dumps(body)
        kwargs["headers"] = {**JSON, **kwargs.get("headers", {})}
    return await client.post(path, **kwargs)


async def error_of(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, await response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = await response.get_json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


@pytest.fixture
async def web(database: db.Database) -> Any:
    async with running_web(database) as web:
        yield web


@pytest.fixture
async def idle_web(database: db.Database) -> Any:
    """HTTP only (no workers), so that tasks stay where the test put them."""
    async with running_web(database, workers=False) as web:
        yield web


# --- POST /tasks ---------------------------------------------------------------------


async def test_create_returns_the_task_and_its_location(web: Web, database: db.Database) -> None:
    client = web.test_client()
    response = await post(
        client,
        "/tasks",
        {
            "kind": "reverse",
            "payload": "hello",
            "queue": "default",
            "priority": 5,
            "max_attempts": 2,
            "timeout": 9.5,
        },
    )
    assert response.status_code == 201
    task = await response.get_json()
    assert response.headers["Location"] == f"/tasks/{task['id']}"
    row = await task_row(database, task["id"])
    assert (row["kind"], row["payload"], row["priority"], row["max_attempts"]) == (
        "reverse",
        "hello",
        5,
        2,
    )
    assert row["timeout"] == timedelta(seconds=9.5)
    assert task["timeout"] == 9.5 and task["status"] == "pending"

    async def done() -> bool:
        return bool((await task_row(database, task["id"]))["status"] == "done")

    await eventually(done)
    assert (await task_row(database, task["id"]))["result"] == "olleh"


async def test_create_takes_named_priorities(idle_web: Web, database: db.Database) -> None:
    client = idle_web.test_client()
    for name, number in priorities.NAMED.items():
        task = await (await post(client, "/tasks", {"kind": "noop", "priority": name})).get_json()
        assert task["priority"] == number
        assert (await task_row(database, task["id"]))["priority"] == number
    schema = await (await client.get("/openapi.json")).get_json()
    body = schema["paths"]["/tasks"]["post"]["requestBody"]["content"]["application/json"]
    new_task = body["schema"]
    if "$ref" in new_task:
        new_task = schema["components"]["schemas"][new_task["$ref"].rsplit("/", 1)[1]]
    priority = new_task["properties"]["priority"]
    assert {"type": "string", "enum": list(priorities.NAMED)} in priority["anyOf"]
    assert any(s.get("type") == "integer" for s in priority["anyOf"])


async def test_create_schedules_with_delay_or_run_at(idle_web: Web) -> None:
    client = idle_web.test_client()
    before = datetime.now(UTC)
    delayed = await (await post(client, "/tasks", {"kind": "noop", "delay": 3600})).get_json()
    run_at = datetime.fromisoformat(delayed["run_at"])
    assert timedelta(minutes=59) < run_at - before < timedelta(minutes=61)

    at = "2031-05-06T07:08:09+02:00"
    timed = await (await post(client, "/tasks", {"kind": "noop", "run_at": at})).get_json()
    assert datetime.fromisoformat(timed["run_at"]) == datetime.fromisoformat(at)
    # null payload is stored as {}
    empty = await (await post(client, "/tasks", {"kind": "noop", "payload": None})).get_json()
    assert empty["payload"] == {}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "kind"),
        ({"kind": ""}, "kind"),
        ({"kind": "x" * 129}, "kind"),
        ({"kind": "a\u0000b"}, "kind"),
        ({"kind": "noop", "queue": ""}, "queue"),
        ({"kind": "noop", "priority": 2**31}, "priority"),
        ({"kind": "noop", "priority": "highest"}, "priority"),
        ({"kind": "noop", "max_attempts": 0}, "max_attempts"),
        ({"kind": "noop", "max_attempts": 1001}, "max_attempts"),
        ({"kind": "noop", "timeout": 0}, "timeout"),
        # PostgreSQL would round this interval to 0 (found by fuzzing).
        ({"kind": "noop", "timeout": 6.5e-267}, "timeout"),
        # A lone surrogate cannot be encoded for PostgreSQL (found by fuzzing).
        ({"kind": "\ud800"}, "kind"),
        ({"kind": "noop", "queue": "a\udfffb"}, "queue"),
        ({"kind": "noop", "delay": -1}, "delay"),
        ({"kind": "noop", "delay": 1e300}, "delay"),
        ({"kind": "noop", "run_at": "2030-01-01T00:00:00"}, "(body)"),
        ({"kind": "noop", "run_at": "yesterday"}, "run_at"),
        ({"kind": "noop", "run_at": "2030-01-01T00:00:00Z", "delay": 5}, "(body)"),
        ({"kind": "noop", "colour": "blue"}, "colour"),
        ({"kind": "noop", "payload": json.loads("[" * 65 + "]" * 65)}, "payload"),
        ([1, 2], "(body)"),
        ('"just a string"', "(body)"),
    ],
)
async def test_create_refuses_invalid_tasks_with_422(
    idle_web: Web, database: db.Database, body: Any, field: str
) -> None:
    response = await post(idle_web.test_client(), "/tasks", body)
    error = await error_of(response, 422, "validation_failed")
    assert field in [d["field"] for d in error["details"]], error
    assert await database.fetchval("SELECT count(*) FROM notifyq.tasks") == 0


@pytest.mark.parametrize("payload", ['"a\\u0000b"', '{"\\ud800": 1}', '["x\\udc00"]'])
async def test_create_maps_data_postgres_refuses_to_422(
    idle_web: Web, database: db.Database, payload: str
) -> None:
    # Valid JSON that jsonb cannot store: a NUL character or a lone surrogate.
    response = await post(
        idle_web.test_client(), "/tasks", f'{{"kind": "noop", "payload": {payload}}}'
    )
    # Refused by the task check before any statement runs.
    error = await error_of(response, 422, "validation_failed")
    assert error["message"].startswith("invalid payload "), error
    assert [d["field"] for d in error["details"]] == ["payload"]
    assert await database.fetchval("SELECT count(*) FROM notifyq.tasks") == 0


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        ('{"kind": ', JSON, 400, "malformed_json"),
        ('{"kind": "noop", "payload": NaN}', JSON, 400, "malformed_json"),
        (b"\xff\xfe\x00", JSON, 400, "malformed_json"),
        ("[" * 100_000 + "]" * 100_000, JSON, 400, "malformed_json"),
        ('{"kind": "noop"}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        ('{"kind": "noop"}', {}, 415, "unsupported_media_type"),
    ],
)
async def test_create_refuses_bad_bodies(
    idle_web: Web, body: Any, headers: dict[str, str], status: int, code: str
) -> None:
    client = idle_web.test_client()
    response = await client.post("/tasks", data=body, headers=headers)
    await error_of(response, status, code)


async def test_payloads_nested_deep_are_shown_without_a_500(
    idle_web: Web, database: db.Database
) -> None:
    client = idle_web.test_client()
    at_limit = json.loads("[" * 64 + "]" * 64)
    assert (await post(client, "/tasks", {"kind": "noop", "payload": at_limit})).status_code == 201
    # Deeper than pydantic's serializer walks, written by plain SQL.
    deep = "[" * 400 + "]" * 400
    task_id = await database.fetchval(
        "INSERT INTO notifyq.tasks (kind, payload) VALUES ('noop', $1::text::jsonb) RETURNING id",
        deep,
    )
    one = await client.get(f"/tasks/{task_id}")
    assert one.status_code == 200
    assert json.dumps((await one.get_json())["payload"]).replace(" ", "") == deep
    listed = await client.get("/tasks")
    assert listed.status_code == 200 and len((await listed.get_json())["tasks"]) == 2
    assert (await client.get("/")).status_code == 200


async def test_body_over_the_limit_is_413(database: db.Database) -> None:
    async with running_web(database, workers=False, http_body_limit=2048) as web:
        big = json.dumps({"kind": "noop", "payload": "x" * 4000})
        response = await post(web.test_client(), "/tasks", big)
        error = await error_of(response, 413, "request_entity_too_large")
        assert "2048 bytes" in error["message"]
        assert await database.fetchval("SELECT count(*) FROM notifyq.tasks") == 0


# --- reading tasks -------------------------------------------------------------------


async def test_list_filters_and_pages_with_keyset(idle_web: Web, database: db.Database) -> None:
    await database.execute(
        "INSERT INTO notifyq.tasks (queue, kind) SELECT q, k FROM "
        "(VALUES ('a', 'noop'), ('b', 'noop'), ('a', 'reverse'), ('a', 'noop'), ('b', 'sleep')) AS v(q, k)"
    )
    await database.execute(
        "UPDATE notifyq.tasks SET status = 'cancelled', finished_at = now() WHERE id = 2"
    )
    client = idle_web.test_client()

    async def ids(url: str) -> tuple[list[int], str | None]:
        response = await client.get(url)
        assert response.status_code == 200, await response.get_data(as_text=True)
        page = await response.get_json()
        return [t["id"] for t in page["tasks"]], page["next"]

    assert await ids("/tasks") == ([5, 4, 3, 2, 1], None)
    assert (await ids("/tasks?queue=a"))[0] == [4, 3, 1]
    assert (await ids("/tasks?queue=a&kind=noop"))[0] == [4, 1]
    assert (await ids("/tasks?status=cancelled"))[0] == [2]
    assert (await ids("/tasks?status=done"))[0] == []
    # Keyset pagination: follow next until it is null, every task once, newest first.
    seen, url = [], "/tasks?limit=2"
    pages = 0
    while url:
        page_ids, next_url = await ids(url)
        seen += page_ids
        url = next_url or ""
        pages += 1
    assert seen == [5, 4, 3, 2, 1] and pages == 3
    # Filters survive into the next link.
    first, next_url = await ids("/tasks?queue=a&limit=1")
    assert first == [4] and next_url is not None and "queue=a" in next_url
    assert (await ids(next_url))[0] == [3]


@pytest.mark.parametrize(
    "query",
    [
        "status=pending&status=done",
        "limit=0",
        "limit=501",
        "limit=x",
        "status=finished",
        "before=0",
        "before=-5",
        "before=99999999999999999999",
        "sort=id",
        "queue=",
    ],
)
async def test_list_refuses_bad_filters(idle_web: Web, query: str) -> None:
    await error_of(await idle_web.test_client().get(f"/tasks?{query}"), 422, "validation_failed")


async def test_filters_are_bound_parameters_not_sql(idle_web: Web, database: db.Database) -> None:
    await database.execute("INSERT INTO notifyq.tasks (kind) VALUES ('noop')")
    client = idle_web.test_client()
    response = await client.get("/tasks", query_string={"queue": "x' OR '1'='1"})
    assert response.status_code == 200
    assert (await response.get_json())["tasks"] == []
    assert await database.fetchval("SELECT count(*) FROM notifyq.tasks") == 1


async def test_get_task_history_and_404s(web: Web, database: db.Database) -> None:
    client = web.test_client()
    task = await (await post(client, "/tasks", {"kind": "reverse", "payload": "ab"})).get_json()

    async def done() -> bool:
        body = await (await client.get(f"/tasks/{task['id']}")).get_json()
        return bool(body["status"] == "done")

    await eventually(done)
    history = await (await client.get(f"/tasks/{task['id']}/history")).get_json()
    assert history["task_id"] == task["id"]
    assert [e["event"] for e in history["events"]][-2:] == ["started", "done"]
    for path in ["/tasks/424242", "/tasks/424242/history", "/tasks/99999999999999999999"]:
        await error_of(await client.get(path), 404, "task_not_found")
    await error_of(await client.get("/tasks/abc"), 404, "not_found")
    await error_of(await client.get("/nowhere"), 404, "not_found")


async def test_cancel_and_retry_follow_the_state_rules(
    idle_web: Web, database: db.Database
) -> None:
    client = idle_web.test_client()
    pending = await (await post(client, "/tasks", {"kind": "noop"})).get_json()
    response = await client.post(f"/tasks/{pending['id']}/cancel")
    assert response.status_code == 200
    assert await response.get_json() == {"id": pending["id"], "status": "cancelled"}
    assert (await task_row(database, pending["id"]))["status"] == "cancelled"
    # Cancelling twice is harmless; retry brings it back.
    assert (await (await client.post(f"/tasks/{pending['id']}/cancel")).get_json())[
        "status"
    ] == "cancelled"
    retried = await client.post(f"/tasks/{pending['id']}/retry")
    assert await retried.get_json() == {"id": pending["id"], "status": "pending"}
    # A pending task cannot be retried; a done one cannot be cancelled.
    error = await error_of(
        await client.post(f"/tasks/{pending['id']}/retry"), 409, "invalid_transition"
    )
    assert "pending" in error["message"]
    await database.execute(
        "UPDATE notifyq.tasks SET status = 'done', finished_at = now() WHERE id = $1", pending["id"]
    )
    await error_of(await client.post(f"/tasks/{pending['id']}/cancel"), 409, "invalid_transition")
    await error_of(await client.post("/tasks/777777/cancel"), 404, "task_not_found")
    await error_of(await client.post("/tasks/777777/retry"), 404, "task_not_found")


async def test_cancel_of_a_running_task_stops_it(web: Web, database: db.Database) -> None:
    client = web.test_client()
    task = await (await post(client, "/tasks", {"kind": "sleep", "payload": 30})).get_json()

    async def running() -> bool:
        return bool((await task_row(database, task["id"]))["status"] == "in_progress")

    await eventually(running)
    response = await client.post(f"/tasks/{task['id']}/cancel")
    assert (await response.get_json())["status"] == "cancelling"

    async def cancelled() -> bool:
        return bool((await task_row(database, task["id"]))["status"] == "cancelled")

    await eventually(cancelled)


async def test_wrong_method_is_405_json_with_allow(idle_web: Web) -> None:
    client = idle_web.test_client()
    response = await client.delete("/tasks")
    await error_of(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]
    await error_of(await client.put("/tasks/1/cancel"), 405, "method_not_allowed")


# --- who may ask ---------------------------------------------------------------------


async def test_a_foreign_host_header_is_refused_without_a_token(idle_web: Web) -> None:
    # DNS rebinding: a page on evil.example that resolves to 127.0.0.1.
    client = idle_web.test_client()
    response = await client.get("/tasks", headers={"Host": "evil.example:8080"})
    await error_of(response, 403, "forbidden_host")
    for host in ["localhost:8080", "127.0.0.1:8080", "[::1]:8080", "127.0.0.1"]:
        assert (await client.get("/tasks", headers={"Host": host})).status_code == 200, host


async def test_cross_origin_changes_are_refused(idle_web: Web, database: db.Database) -> None:
    client = idle_web.test_client()
    foreign = await post(
        client,
        "/tasks",
        {"kind": "noop"},
        headers={"Origin": "https://evil.example", "Host": "localhost"},
    )
    await error_of(foreign, 403, "cross_origin")
    await error_of(
        await client.post("/tasks/1/cancel", headers={"Origin": "null"}), 403, "cross_origin"
    )
    same = await post(
        client,
        "/tasks",
        {"kind": "noop"},
        headers={"Origin": "http://localhost", "Host": "localhost"},
    )
    assert same.status_code == 201
    assert await database.fetchval("SELECT count(*) FROM notifyq.tasks") == 1
    # Reads are not changes: a cross-origin GET is answered (the browser keeps it from the page).
    assert (
        await client.get("/stats", headers={"Origin": "https://evil.example"})
    ).status_code == 200


async def test_with_a_token_any_host_header_is_fine(database: db.Database) -> None:
    async with running_web(database, workers=False, api_token="t" * 20) as web:
        response = await web.test_client().get("/tasks", headers={"Host": "queue.internal:8080"})
        assert response.status_code == 200


# --- token ---------------------------------------------------------------------------


async def test_token_guards_every_change_but_not_reads(database: db.Database) -> None:
    token = "s3cret-token-0123456789"
    async with running_web(database, workers=False, api_token=token) as web:
        client = web.test_client()
        response = await post(client, "/tasks", {"kind": "noop"})
        await error_of(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        for header in [f"Bearer {token}x", f"Basic {token}", token, "Bearer "]:
            denied = await post(
                client, "/tasks", {"kind": "noop"}, headers={"Authorization": header}
            )
            await error_of(denied, 401, "unauthorized")
        await error_of(await client.post("/tasks/1/cancel"), 401, "unauthorized")
        await error_of(await client.post("/tasks/1/retry"), 401, "unauthorized")
        assert await database.fetchval("SELECT count(*) FROM notifyq.tasks") == 0
        ok = await post(
            client, "/tasks", {"kind": "noop"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert ok.status_code == 201
        assert (await client.get("/tasks")).status_code == 200
        assert (await client.get("/stats")).status_code == 200


# --- stats, workers, health, metrics -------------------------------------------------


async def test_stats_count_by_status_and_queue_and_since_start(
    web: Web, database: db.Database
) -> None:
    client = web.test_client()
    await database.execute(
        "INSERT INTO notifyq.tasks (queue, kind) SELECT 'default', 'noop' FROM generate_series(1, 4)"
    )
    await database.execute(
        "INSERT INTO notifyq.tasks (queue, kind, run_at) VALUES ('later', 'noop', now() + interval '1 day')"
    )

    async def all_done() -> dict[str, Any] | None:
        web.ctx._counts.expires = 0  # skip the one-second caches
        web.ctx._throughput.expires = 0
        await web.ctx.sample_ended()  # the sampler's round, now rather than in 10 s
        stats = await (await client.get("/stats")).get_json()
        # The sampling round above may have read the table just before the outcomes'
        # commit that the counts below see: wait until every figure has them.
        done = (
            stats["counts_by_status"]["done"],
            stats["since_start"]["done"],
            stats["ended_since_start"]["done"],
        )
        return stats if done == (4, 4, 4) else None

    stats = await eventually(all_done)
    assert stats["mode"] == stats["role"] == "serve"
    assert stats["counts_by_status"] == {
        "waiting": 0,
        "pending": 1,
        "in_progress": 0,
        "done": 4,
        "error": 0,
        "cancelled": 0,
    }
    assert stats["counts_by_queue"] == {"default": {"done": 4}, "later": {"pending": 1}}
    # Read from the table: every process's ends, per minute and over the last 60 s.
    assert stats["ended_since_start"] == {"done": 4, "error": 0, "cancelled": 0}
    assert stats["throughput_per_s"] == round(4 / 60, 3)
    assert len(stats["last_hour"]) == 60
    assert sum(p["ended"] for p in stats["last_hour"]) == 4
    web.ctx._latency.expires = 0
    stats = await (await client.get("/stats")).get_json()
    latency = stats["pickup_latency"]
    assert latency["samples"] == 4 and 0 <= latency["p50_ms"] <= latency["p95_ms"]


async def test_workers_lists_the_live_process(web: Web) -> None:
    body = await (await web.test_client().get("/workers")).get_json()
    assert [w["id"] for w in body["workers"]] == [web.service.worker_id]
    assert body["workers"][0]["concurrency"] == web.service.settings.worker_count


async def test_a_process_that_stopped_heartbeating_shows_as_gone(
    web: Web, database: db.Database
) -> None:
    # A process ended by kill -9 leaves its registry row (the reaper forgets it after
    # 3 x LEASE): once its heartbeat is older than LEASE it is shown as gone, not busy.
    await database.execute(
        "INSERT INTO notifyq.workers (id, host, pid, queues, concurrency, in_flight, version,"
        " started_at, last_seen) VALUES ('killed', 'h', 1, '{default}', 5, 5, 'x',"
        " now() - interval '5 minutes', now() - interval '45 seconds')"
    )
    client = web.test_client()
    body = await (await client.get("/workers")).get_json()
    assert {w["id"]: w["state"] for w in body["workers"]} == {
        "killed": "gone",
        web.service.worker_id: "alive",
    }
    summary = await (await client.get("/ui/summary")).get_json()
    assert {w["id"]: w["state"] for w in summary["workers"]} == {
        "killed": "gone",
        web.service.worker_id: "alive",
    }
    page = await (await client.get("/")).get_data(as_text=True)
    killed_row = next(line for line in page.splitlines() if "<td>killed</td>" in line)
    assert "<td>gone</td>" in killed_row and "5/5" not in killed_row


async def test_health_is_200_once_the_probe_came_back(web: Web) -> None:
    client = web.test_client()

    async def healthy() -> Any:
        response = await client.get("/health")
        return response if response.status_code == 200 else None

    body = await (await eventually(healthy)).get_json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] and body["checks"]["listener"]["ok"]


def standalone_client(database: db.Database, health: Health) -> Any:
    """An app whose listener state the test sets (no service changes it meanwhile)."""
    settings = load(database_url=database.dsn, log_level="warning")
    return create_app(WebContext(database, settings, mode="web", health=health)).test_client()


@pytest.mark.parametrize(
    ("health", "detail"),
    [
        (Health(listener_connected=False), "LISTEN connection down; reconnecting"),
        (Health(listener_connected=True), "no probe notification received yet"),
        (
            Health(listener_connected=True, last_probe_ok=-100.0),
            "no probe notification received yet",
        ),
    ],
)
async def test_health_is_503_with_why_when_the_listener_is_not_proven(
    database: db.Database, health: Health, detail: str
) -> None:
    response = await standalone_client(database, health).get("/health")
    assert response.status_code == 503
    body = await response.get_json()
    assert body["status"] == "unavailable"
    assert body["checks"]["listener"] == {"ok": False, "detail": detail}
    assert body["checks"]["database"]["ok"]


async def test_health_is_503_when_the_probe_is_stale(database: db.Database) -> None:
    health = Health(listener_connected=True, last_probe_ok=trio.current_time() - 10)
    response = await standalone_client(database, health).get("/health")
    assert response.status_code == 503
    detail = (await response.get_json())["checks"]["listener"]["detail"]
    assert detail.startswith("last probe notification 1") and detail.endswith(" s ago")


async def test_health_without_listen_needs_only_the_database(database: db.Database) -> None:
    response = await standalone_client(database, Health(listen_enabled=False)).get("/health")
    assert response.status_code == 200
    assert (await response.get_json())["checks"]["listener"]["ok"]


async def test_health_is_503_while_stopping(web: Web) -> None:
    web.ctx.stopping.set()
    response = await web.test_client().get("/health")
    assert response.status_code == 503
    assert (await response.get_json())["checks"]["process"]["detail"] == "shutting down"


async def test_metrics_count_outcomes_by_queue_and_kind(web: Web, database: db.Database) -> None:
    await database.execute(
        "INSERT INTO notifyq.tasks (kind, payload) VALUES ('noop', '{}'), ('noop', '{}'), ('reverse', '\"x\"')"
    )
    await database.execute(
        "INSERT INTO notifyq.tasks (kind, run_at) VALUES ('noop', now() + interval '1 hour')"
    )
    client = web.test_client()

    async def scraped() -> str | None:
        text = await (await client.get("/metrics")).get_data(as_text=True)
        return (
            text
            if 'notifyq_tasks_total{kind="noop",outcome="done",queue="default"} 2.0' in text
            else None
        )

    text = await eventually(scraped)
    assert 'notifyq_tasks_total{kind="reverse",outcome="done",queue="default"} 1.0' in text
    assert 'notifyq_pickup_latency_seconds_count{queue="default"} 3.0' in text
    assert 'notifyq_task_run_seconds_count{kind="reverse",queue="default"} 1.0' in text
    web.ctx._counts.expires = 0
    text = await (await client.get("/metrics")).get_data(as_text=True)
    assert 'notifyq_queue_depth{queue="default",status="pending"} 1.0' in text
    assert "notifyq_tasks_in_flight 0.0" in text
    assert "notifyq_listener_reconnects_total 0.0" in text
    assert "notifyq_listener_connected 1.0" in text


async def test_openapi_documents_every_endpoint(idle_web: Web) -> None:
    spec = await (await idle_web.test_client().get("/openapi.json")).get_json()
    assert spec["openapi"].startswith("3.")
    operations = {(m.upper(), p) for p, ms in spec["paths"].items() for m in ms}
    assert operations == {
        ("POST", "/tasks"),
        ("GET", "/tasks"),
        ("GET", "/tasks/{task_id}"),
        ("GET", "/tasks/{task_id}/history"),
        ("POST", "/tasks/{task_id}/cancel"),
        ("POST", "/tasks/{task_id}/retry"),
        ("GET", "/stats"),
        ("GET", "/workers"),
        ("GET", "/health"),
        ("GET", "/metrics"),
        ("GET", "/events"),
        ("GET", "/queues"),
        ("POST", "/queues/{name}"),
        ("GET", "/schedules"),
        ("POST", "/schedules"),
        ("POST", "/schedules/{name}/pause"),
        ("POST", "/schedules/{name}/resume"),
        ("DELETE", "/schedules/{name}"),
        ("POST", "/workflows"),
        ("GET", "/batches/{batch_id}"),
        # The console (docs/http.md, Console).
        ("GET", "/tasks/count"),
        ("POST", "/tasks/bulk/{action}"),
        ("POST", "/tasks/{task_id}/run-now"),
        ("POST", "/tasks/{task_id}/priority"),
        ("GET", "/tasks/{task_id}/payload"),
        ("GET", "/tasks/{task_id}/result"),
        ("GET", "/tasks/{task_id}/attempts"),
        ("GET", "/failures"),
        ("POST", "/schedules/{name}/run"),
    }
    create = spec["paths"]["/tasks"]["post"]
    assert create["security"] == [{"bearer": []}]
    assert {"200", "201", "400", "401", "413", "415", "422"} <= set(create["responses"])
    docs = await idle_web.test_client().get("/docs")
    assert docs.status_code == 200 and "/static/docs.js" in await docs.get_data(as_text=True)
