"""Workflows over HTTP: a task's parents and children in GET /tasks/{id} and on its page,
waiting counts in /stats and /metrics, live batches on the status page."""

from __future__ import annotations

import re
from typing import Any

import pytest

from notifyq import db
from notifyq.web import views
from tests import flows
from tests.helpers import Web, running_web


@pytest.fixture
async def idle_web(database: db.Database) -> Any:
    """HTTP only (no workers), so that tasks stay where the test put them."""
    async with running_web(database, workers=False) as web:
        yield web


async def _get(web: Web, path: str) -> Any:
    response = await web.test_client().get(path)
    assert response.status_code == 200, await response.get_data(as_text=True)
    return response


async def test_get_task_has_its_parents_and_children(idle_web: Web, database: db.Database) -> None:
    first = await flows.add(database, "noop")
    second = await flows.add(database, "noop")
    child = await flows.add(database, "sum", depends_on=[second, first], policy="run")
    grandchild = await flows.add(database, "report", depends_on=[child])
    got = await (await _get(idle_web, f"/tasks/{child}")).get_json()
    assert got["status"] == "waiting"
    assert (got["depends_on"], got["on_parent_failure"], got["waiting_on"]) == (
        [second, first],
        "run",
        2,
    )
    assert got["children"] == [
        {"id": grandchild, "status": "waiting", "kind": "report", "via": "depends_on"}
    ]
    assert got["children_more"] is False
    parent = await (await _get(idle_web, f"/tasks/{first}")).get_json()
    assert (parent["depends_on"], [c["id"] for c in parent["children"]]) == (None, [child])
    # A list shows no children (one read per task would not be bounded).
    listed = await (await _get(idle_web, "/tasks?limit=1")).get_json()
    assert listed["tasks"][0]["children"] is None


async def test_children_are_bounded(
    idle_web: Web, database: db.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "CHILDREN_SHOWN", 2)
    parent = await flows.add(database, "noop")
    children = [await flows.add(database, "noop", depends_on=[parent]) for _ in range(3)]
    got = await (await _get(idle_web, f"/tasks/{parent}")).get_json()
    assert [c["id"] for c in got["children"]] == children[:2]
    assert got["children_more"] is True


async def test_a_batch_member_names_its_callback_and_the_callback_its_batch(
    idle_web: Web, database: db.Database
) -> None:
    batch = await flows.new_batch(database)
    member = await flows.add(database, "noop", batch_id=batch)
    callback = await flows.add(database, "collect", after_batch=batch)
    got = await (await _get(idle_web, f"/tasks/{member}")).get_json()
    assert got["batch_id"] == batch
    assert got["children"] == [
        {"id": callback, "status": "waiting", "kind": "collect", "via": "after_batch"}
    ]
    got = await (await _get(idle_web, f"/tasks/{callback}")).get_json()
    assert got["after_batch"] == batch
    assert got["batch"] == {"id": batch, "total": 1, "done": 0, "failed": 0, "remaining": 1}


async def test_stats_and_metrics_count_waiting_tasks(idle_web: Web, database: db.Database) -> None:
    parent = await flows.add(database, "noop")
    await flows.add(database, "noop", depends_on=[parent])
    await database.execute("INSERT INTO notifyq.tasks (queue, kind) VALUES ('other', 'noop')")
    stats = await (await _get(idle_web, "/stats")).get_json()
    assert stats["counts_by_status"]["waiting"] == 1
    assert stats["counts_by_queue"]["default"] == {"pending": 1, "waiting": 1}
    metrics = await (await _get(idle_web, "/metrics")).get_data(as_text=True)
    assert 'notifyq_tasks_waiting{queue="default"} 1.0' in metrics
    assert 'notifyq_tasks_waiting{queue="other"} 0.0' in metrics


def _text(html: str, element_id: str) -> str:
    """The text of the element with that id (tags dropped, spaces squeezed)."""
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</table>', html, re.S)
    assert match is not None, f"no #{element_id}"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split())


async def test_the_task_page_shows_parents_and_children(
    idle_web: Web, database: db.Database
) -> None:
    parent = await flows.add(database, "noop")
    child = await flows.add(database, "sum", depends_on=[parent])
    grandchild = await flows.add(database, "report", depends_on=[child])
    html = await (await _get(idle_web, f"/ui/tasks/{child}")).get_data(as_text=True)
    assert _text(html, "parents") == f"id kind status {parent} noop pending"
    assert _text(html, "children") == f"id kind status via {grandchild} report waiting depends_on"
    assert f'href="/ui/tasks/{parent}"' in html and f'href="/ui/tasks/{grandchild}"' in html


async def test_the_status_page_shows_live_batches(idle_web: Web, database: db.Database) -> None:
    batch = await flows.new_batch(database)
    members = [await flows.add(database, "noop", batch_id=batch) for _ in range(3)]
    callback = await flows.add(database, "collect", after_batch=batch)
    [claimed, *_] = await flows.claim(database, want=1)
    await flows.finish(database, [claimed])
    await database.execute("SELECT notifyq.cancel($1)", members[2])
    html = await (await _get(idle_web, "/")).get_data(as_text=True)
    assert _text(html, "batches") == (
        f"batch members done failed remaining callback {batch} 3 1 1 1 {callback}"
    )
    summary = await (await _get(idle_web, "/ui/summary")).get_json()
    assert summary["batches"] == [
        {"id": batch, "total": 3, "done": 1, "failed": 1, "remaining": 1, "callback_id": callback}
    ]
