"""The console's HTTP endpoints against real rows: every filter key, counts, bulk and
one-task actions with their actor, downloads, attempts, failure groups, a schedule's run,
and the 401/403/422 answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from notifyq import db, errors
from notifyq.settings import load
from tests.helpers import Web, insert, running_web, task_row
from tests.integration.test_web_api import error_of, post

BIG = "x" * 5000


@pytest.fixture
async def idle_web(database: db.Database) -> Any:
    async with running_web(database, workers=False) as web:
        yield web


async def ids(client: Any, query: str) -> list[int]:
    response = await client.get(f"/tasks?{query}")
    assert response.status_code == 200, await response.get_data(as_text=True)
    return [t["id"] for t in (await response.get_json())["tasks"]]


async def seed_rows(database: db.Database) -> dict[str, int]:
    """A few tasks covering every key: their ids by name."""
    t: dict[str, int] = {}
    t["resize_err"] = await insert(database, "resize", {"n": 1}, queue="img", priority=10)
    t["resize_pending"] = await insert(
        database, "resize", {"n": 2}, queue="img", unique_key="u1", concurrency_key="acme"
    )
    t["mail_done"] = await insert(database, "mail", BIG, queue="mail")
    t["old"] = await insert(database, "mail", None, queue="mail")
    await database.execute(
        "UPDATE notifyq.tasks SET status = 'error', finished_at = now() - interval '30 minutes',"
        " error = 'TimeoutError: resize of ''a.jpg'' took 31 s' WHERE id = $1",
        t["resize_err"],
    )
    await database.execute(
        "UPDATE notifyq.tasks SET status = 'done', finished_at = now(), result = to_jsonb($2::text)"
        " WHERE id = $1",
        t["mail_done"],
        BIG,
    )
    await database.execute(
        "UPDATE notifyq.tasks SET created_at = now() - interval '3 days', status = 'error',"
        " finished_at = now() - interval '2 days', error = 'TimeoutError: resize of ''b.jpg'' "
        "took 30 s', kind = 'resize' WHERE id = $1",
        t["old"],
    )
    # A workflow: parent -> child -> grandchild, and a batch of two.
    t["parent"] = await insert(database, "step")
    t["child"] = await insert(database, "step", depends_on=[t["parent"]])
    t["grandchild"] = await insert(database, "step", depends_on=[t["child"]])
    batch = await database.fetchval("INSERT INTO notifyq.batches DEFAULT VALUES RETURNING id")
    t["batch"] = int(batch)
    t["member"] = await insert(database, "member", batch_id=t["batch"])
    t["scheduled"] = await insert(database, "tick")
    await database.execute(
        "UPDATE notifyq.tasks SET schedule_name = 'nightly', schedule_tick = now() WHERE id = $1",
        t["scheduled"],
    )
    return t


async def test_every_filter_key_selects_its_rows(idle_web: Web, database: db.Database) -> None:
    t = await seed_rows(database)
    c = idle_web.test_client()
    assert await ids(c, "status=error") == [t["old"], t["resize_err"]]
    assert await ids(c, "status=error,done") == [t["old"], t["mail_done"], t["resize_err"]]
    assert await ids(c, "queue=img") == [t["resize_pending"], t["resize_err"]]
    assert await ids(c, "kind=resize&queue=img,mail") == [
        t["old"],
        t["resize_pending"],
        t["resize_err"],
    ]
    assert await ids(c, "priority=high") == [t["resize_err"]]
    assert await ids(c, f"id={t['old']},{t['member']}") == [t["member"], t["old"]]
    assert t["old"] not in await ids(c, "created_after=1d")
    assert await ids(c, "created_before=1d") == [t["old"]]
    assert await ids(c, "finished_after=1h") == [t["mail_done"], t["resize_err"]]
    assert await ids(c, "finished_after=1h&finished_before=10m") == [t["resize_err"]]
    assert await ids(c, "finished_before=2000-01-01T00:00:00Z") == []
    assert await ids(c, "unique_key=u1") == [t["resize_pending"]]
    assert await ids(c, "concurrency_key=acme") == [t["resize_pending"]]
    assert await ids(c, "schedule=nightly") == [t["scheduled"]]
    assert await ids(c, f"workflow={t['parent']}") == [t["grandchild"], t["child"], t["parent"]]
    assert await ids(c, f"workflow={t['child']}") == [t["grandchild"], t["child"]]
    assert await ids(c, f"batch={t['batch']}") == [t["member"]]
    assert await ids(c, "error=A.JPG") == [t["resize_err"]]
    assert await ids(c, "error=100%") == []  # % is a character, not a wildcard
    # Both timeouts are one failure group (numbers and quoted strings replaced).
    groups = (await (await c.get("/failures?finished_after=7d")).get_json())["groups"]
    assert [(g["kind"], g["count"], g["error_class"]) for g in groups] == [
        ("resize", 2, "TimeoutError")
    ]
    assert groups[0]["message"] == "TimeoutError: resize of <str> took <n> s"
    assert groups[0]["example_id"] == t["old"]
    fingerprint = groups[0]["fingerprint"]
    assert await ids(c, f"fingerprint={fingerprint}") == [t["old"], t["resize_err"]]
    # The default window of /failures is the last 24 hours.
    recent = (await (await c.get("/failures")).get_json())["groups"]
    assert [g["count"] for g in recent] == [1]
    count = await (await c.get("/tasks/count?kind=resize")).get_json()
    assert count == {"count": 3, "upto": t["old"], "capped": False}
    assert await (await c.get("/tasks/count?kind=nothing")).get_json() == {
        "count": 0,
        "upto": None,
        "capped": False,
    }
    # A list's next link keeps the filter.
    page = await (await c.get("/tasks?kind=resize&limit=1")).get_json()
    assert page["next"] == f"/tasks?kind=resize&limit=1&before={t['old']}"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/tasks?colour=red", "colour"),
        ("/tasks?status=broken", "status"),
        ("/tasks?created_after=yesterday", "created_after"),
        ("/tasks?workflow=abc", "workflow"),
        ("/tasks/count?priority=huge", "priority"),
        ("/failures?fingerprint=zz", "fingerprint"),
        ("/tasks?limit=0", "limit"),
    ],
)
async def test_bad_filters_are_422_naming_the_key(idle_web: Web, path: str, field: str) -> None:
    error = await error_of(await idle_web.test_client().get(path), 422, "validation_failed")
    assert error["details"][0]["field"] == field


async def test_bulk_retry_steps_through_the_matches_and_names_its_actor(
    idle_web: Web, database: db.Database
) -> None:
    c = idle_web.test_client()
    failed = [await insert(database, "resize") for _ in range(5)]
    await database.execute(
        "UPDATE notifyq.tasks SET status = 'error', finished_at = now(), error = 'boom'"
    )
    later = await insert(database, "resize")  # added after the count: never touched
    await database.execute(
        "UPDATE notifyq.tasks SET status = 'error', finished_at = now() WHERE id = $1", later
    )
    await database.execute(
        "UPDATE notifyq.tasks SET status = 'done' WHERE id = $1", failed[0]
    )  # matched by the count, done by the time the action comes: skipped
    counted = await (await c.get("/tasks/count?status=error,done&kind=resize")).get_json()
    assert counted["count"] == 6
    upto = failed[-1]
    body: dict[str, Any] = {"filter": {"status": "error,done", "kind": ["resize"]}}
    steps, cursor = [], None
    while True:
        response = await post(
            c, "/tasks/bulk/retry", body | {"upto": upto, "cursor": cursor, "batch": 2}
        )
        assert response.status_code == 200, await response.get_data(as_text=True)
        step = await response.get_json()
        steps.append(step)
        cursor = step["cursor"]
        if cursor is None:
            break
    assert sum(s["changed"] for s in steps) == 4
    assert sum(s["skipped"] for s in steps) == 1
    assert (await task_row(database, later))["status"] == "error"
    for task_id in failed[1:]:
        assert (await task_row(database, task_id))["status"] == "pending"
    actors = await database.fetch(
        "SELECT DISTINCT event, actor FROM notifyq.task_events WHERE task_id = ANY($1::bigint[])",
        failed,
    )
    assert {(r["event"], r["actor"]) for r in actors} == {("requeued", "api")}
    await error_of(await post(c, "/tasks/bulk/explode", body | {"upto": 1}), 404, "not_found")
    await error_of(
        await post(c, "/tasks/bulk/retry", {"filter": {"sort": "id"}, "upto": 1}),
        422,
        "validation_failed",
    )
    await error_of(
        await post(c, "/tasks/bulk/priority", {"filter": {}, "upto": 1}), 422, "validation_failed"
    )


async def test_one_task_run_now_priority_cancel_retry(idle_web: Web, database: db.Database) -> None:
    c = idle_web.test_client()
    later = await database.fetchval(
        "INSERT INTO notifyq.tasks (kind, run_at) VALUES ('x', now() + interval '1 hour')"
        " RETURNING id"
    )
    response = await c.post(f"/tasks/{later}/run-now")
    assert await response.get_json() == {"id": later, "status": "pending"}
    error = await error_of(await c.post(f"/tasks/{later}/run-now"), 409, "invalid_transition")
    assert "due already" in error["message"]
    response = await post(c, f"/tasks/{later}/priority", {"priority": "urgent"})
    assert await response.get_json() == {"id": later, "status": "pending"}
    assert (await task_row(database, later))["priority"] == 20
    await error_of(
        await post(c, f"/tasks/{later}/priority", {"priority": "huge"}), 422, "validation_failed"
    )
    assert (await (await c.post(f"/tasks/{later}/cancel")).get_json())["status"] == "cancelled"
    await error_of(
        await post(c, f"/tasks/{later}/priority", {"priority": 1}), 409, "invalid_transition"
    )
    assert (await (await c.post(f"/tasks/{later}/retry")).get_json())["status"] == "pending"
    await error_of(await c.post("/tasks/987654/run-now"), 404, "task_not_found")
    history = await (await c.get(f"/tasks/{later}/history")).get_json()
    assert [(e["event"], e["actor"]) for e in history["events"]] == [
        ("queued", None),
        ("run_now", "api"),
        ("priority_changed", "api"),
        ("cancelled", "api"),
        ("requeued", "api"),
    ]


async def test_downloads_previews_and_attempts(idle_web: Web, database: db.Database) -> None:
    c = idle_web.test_client()
    task_id = await insert(database, "mail", {"body": BIG})
    await database.execute(
        "UPDATE notifyq.tasks SET status = 'error', attempts = 1, finished_at = now(),"
        " error = 'ValueError: no', result = '[1, 2]' WHERE id = $1",
        task_id,
    )
    await database.execute(
        "INSERT INTO notifyq.task_events (task_id, event, attempt, worker, error, started_at)"
        " VALUES ($1, 'failed', 1, 'w1', 'ValueError: no', now() - interval '1 second')",
        task_id,
    )
    detail = await (await c.get(f"/tasks/{task_id}")).get_json()
    assert detail["payload_truncated"] is True and len(detail["payload_preview"]) == 4096
    assert detail["result_truncated"] is False and detail["result_preview"] == "[1, 2]"
    download = await c.get(f"/tasks/{task_id}/payload")
    assert download.headers["Content-Disposition"].startswith("attachment")
    assert json.loads(await download.get_data(as_text=True)) == {"body": BIG}
    assert json.loads(await (await c.get(f"/tasks/{task_id}/result")).get_data()) == [1, 2]
    await error_of(await c.get("/tasks/987654/payload"), 404, "task_not_found")
    attempts = await (await c.get(f"/tasks/{task_id}/attempts")).get_json()
    [only] = attempts["attempts"]
    assert (only["attempt"], only["worker"], only["outcome"], only["error"]) == (
        1,
        "w1",
        "failed",
        "ValueError: no",
    )
    await error_of(await c.get("/tasks/987654/attempts"), 404, "task_not_found")


async def test_a_schedule_runs_now_without_moving(idle_web: Web, database: db.Database) -> None:
    await database.execute(
        "INSERT INTO notifyq.schedules (name, every, kind, payload, paused, next_run_at)"
        " VALUES ('hourly', interval '1 hour', 'tick', '{\"a\": 1}', true,"
        " '2100-01-01T00:00:00Z')"
    )
    c = idle_web.test_client()
    response = await c.post("/schedules/hourly/run")
    assert response.status_code == 201
    task_id = (await response.get_json())["task_id"]
    row = await task_row(database, task_id)
    assert (row["kind"], row["payload"], row["schedule_name"]) == ("tick", {"a": 1}, "hourly")
    schedule = await database.fetchrow("SELECT * FROM notifyq.schedules")
    assert schedule is not None and schedule["next_run_at"].year == 2100
    assert schedule["last_run_at"] is None
    await error_of(await c.post("/schedules/nope/run"), 404, "schedule_not_found")


async def test_actions_need_the_token_and_read_only_refuses_them(database: db.Database) -> None:
    task_id = await insert(database, "x")
    async with running_web(database, workers=False, api_token="t" * 20) as web:
        c = web.test_client()
        await error_of(await c.post(f"/tasks/{task_id}/run-now"), 401, "unauthorized")
        await error_of(
            await post(c, "/tasks/bulk/cancel", {"filter": {}, "upto": task_id}),
            401,
            "unauthorized",
        )
        assert (await c.get("/tasks/count")).status_code == 200
        bearer = {"Authorization": "Bearer " + "t" * 20}
        response = await post(
            c, "/tasks/bulk/cancel", {"filter": {}, "upto": task_id}, headers=bearer
        )
        assert (await response.get_json())["changed"] == 1
    async with running_web(database, workers=False, http_read_only=True) as web:
        c = web.test_client()
        await error_of(await c.post(f"/tasks/{task_id}/retry"), 403, "read_only")
        await error_of(await post(c, "/tasks", {"kind": "x"}), 403, "read_only")
        assert (await c.get(f"/tasks/{task_id}/attempts")).status_code == 200


async def test_named_tokens_name_the_actor(database: db.Database) -> None:
    task_id = await insert(database, "x")
    alice, bob = "a" * 20, "b" * 20
    async with running_web(
        database, workers=False, api_token="t" * 20, api_tokens=f"alice={alice}, bob={bob}"
    ) as web:
        c = web.test_client()

        async def run_now(token: str) -> Any:
            return await c.post(
                f"/tasks/{task_id}/priority",
                data=json.dumps({"priority": len(token) + ord(token[0])}),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )

        assert (await run_now(alice)).status_code == 200
        assert (await run_now(bob)).status_code == 200
        assert (await run_now("t" * 20)).status_code == 200
        await error_of(await run_now("c" * 20), 401, "unauthorized")
    actors = await database.fetch(
        "SELECT actor FROM notifyq.task_events WHERE task_id = $1 ORDER BY id", task_id
    )
    assert [r["actor"] for r in actors] == ["alice", "bob", "api"]


@pytest.mark.parametrize(
    "value",
    ["alice", "api=" + "x" * 20, "alice=short", "a b=" + "x" * 20, f"x={'y' * 20},z={'y' * 20}"],
)
def test_bad_named_tokens_are_refused_without_echoing_them(value: str) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        load(api_tokens=value)
    assert str(caught.value).startswith("invalid API_TOKENS: expected NAME=TOKEN pairs")
    assert "y" * 20 not in str(caught.value)
