"""HTTP: POST /tasks with after/on_parent_failure, POST /workflows (a chain, group or chord in
one transaction), GET /batches/{id} (a chord's progress and its callback)."""

from __future__ import annotations

from typing import Any

from notifyq import db
from tests.helpers import Web
from tests.integration.test_web_api import error_of, idle_web, post  # noqa: F401 (a fixture)


async def test_post_tasks_with_parents(idle_web: Web, database: db.Database) -> None:  # noqa: F811
    client = idle_web.test_client()
    parent = (await (await post(client, "/tasks", {"kind": "a"})).get_json())["id"]
    response = await post(
        client, "/tasks", {"kind": "b", "after": [parent], "on_parent_failure": "run"}
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    body = await response.get_json()
    assert body["status"] == "waiting"
    assert await database.fetchrow(
        "SELECT depends_on, on_parent_failure FROM notifyq.tasks WHERE id = $1", body["id"]
    ) == ([parent], "run")
    bad = await post(client, "/tasks", {"kind": "b", "after": [parent, parent]})
    error = await error_of(bad, 422, "validation_failed")
    assert error["message"] == (f"invalid after [{parent}, {parent}]: task {parent} is named twice")


async def test_post_workflows_and_get_a_batch(idle_web: Web, database: db.Database) -> None:  # noqa: F811
    client = idle_web.test_client()
    response = await post(
        client,
        "/workflows",
        {
            "chain": [
                {"kind": "fetch", "payload": {"url": "u"}},
                {"group": [{"kind": "resize", "payload": 64}, {"kind": "resize", "payload": 256}]},
                {
                    "chord": {
                        "group": [{"kind": "tag"}, {"kind": "tag"}],
                        "callback": {"kind": "cb"},
                    }
                },
            ]
        },
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    body: dict[str, Any] = await response.get_json()
    fetch, resize, tag = body["steps"]
    assert isinstance(fetch, int)
    assert list(resize) == ["members"]
    assert set(tag) == {"members", "batch_id", "callback_id"}
    assert body["ids"] == [fetch, *resize["members"], *tag["members"], tag["callback_id"]]
    assert (
        await database.fetchval(
            "SELECT depends_on FROM notifyq.tasks WHERE id = $1", tag["members"][0]
        )
        == resize["members"]
    )
    batch = await client.get(f"/batches/{tag['batch_id']}")
    assert batch.status_code == 200
    assert await batch.get_json() | {"created_at": None} == {
        "id": tag["batch_id"],
        "total": 2,
        "done": 0,
        "failed": 0,
        "remaining": 2,
        "sealed": True,
        "callback_id": tag["callback_id"],
        "callback_status": "waiting",
        "created_at": None,
        "completed_at": None,
    }
    await error_of(await client.get("/batches/999999"), 404, "not_found")
    group = await post(client, "/workflows", {"group": [{"kind": "a"}]})
    assert sorted(await group.get_json()) == ["ids", "members"]
    chord = await post(
        client, "/workflows", {"chord": {"group": [{"kind": "a"}], "callback": {"kind": "b"}}}
    )
    assert chord.status_code == 201


DEEP: dict[str, Any] = {"kind": "a"}
for _ in range(400):
    DEEP = {"chain": [DEEP]}


async def test_post_workflows_refuses_bad_shapes_and_adds_nothing(
    idle_web: Web,  # noqa: F811
    database: db.Database,
) -> None:
    client = idle_web.test_client()
    cases = [
        ({"group": [{"chain": [{"kind": "a"}]}]}, "a group holds tasks"),
        ({"chain": [{"kind": "a"}], "group": [{"kind": "b"}]}, "give one of chain, group"),
        ({"chain": [{"kind": "a", "unique_key": "k"}]}, "a workflow's tasks take no unique_key"),
        ({"chain": [{"kind": "a"}, {"kind": "b", "max_attempts": 0}]}, "invalid max_attempts 0"),
        (
            {"group": [{"kind": "a", "after": [999999]}]},
            "the database refused the workflow: depends_on of task ",
        ),
        ({"group": "a"}, "group: Input should be a valid list"),
        ({"chord": {"group": [{"kind": "a"}]}}, '(body).chord: expected {"group": [tasks]'),
        ({"chord": {"group": "ab", "callback": {"kind": "c"}}}, "chord.group: expected a list"),
        (DEEP, "workflows nest at most 16 levels"),
    ]
    for body, message in cases:
        error = await error_of(await post(client, "/workflows", body), 422, "validation_failed")
        assert message in error["message"], (str(body)[:80], error)
    assert await database.fetchval("SELECT count(*) FROM notifyq.tasks") == 0
