"""Start deadlines (tasks.expires_at): a task not started by then never starts, and ends
`cancelled`, history `expired`, promptly; a running task is not affected."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import trio

import notifyq
from notifyq import db, store
from notifyq.app import App, Task
from tests.helpers import (
    eventually,
    insert,
    running_service,
    running_web,
    until_running,
    wait_ended,
)


async def _expired_and_live(database: db.Database, queue: str) -> tuple[int, int, int]:
    expired = await insert(database, "noop", queue=queue, expires_at=await _db_now(database, -1.0))
    later = await insert(database, "noop", queue=queue, expires_at=await _db_now(database, 60.0))
    plain = await insert(database, "noop", queue=queue)
    return expired, later, plain


async def _db_now(database: db.Database, plus_s: float) -> object:
    return await database.fetchval("SELECT now() + make_interval(secs => $1::float8)", plus_s)


async def test_no_claim_starts_a_task_past_its_deadline(database: db.Database) -> None:
    expired, later, plain = await _expired_and_live(database, "default")
    claimed = await store.claim(
        database, queues=["default"], kinds=["noop"], limit=10, owner="w1", lease_s=30
    )
    assert sorted(c.id for c in claimed) == [later, plain]
    # A queue with limits is claimed by claim_limited: the same rule.
    await database.execute("INSERT INTO notifyq.queues (name, concurrency) VALUES ('lim', 5)")
    expired_l, later_l, plain_l = await _expired_and_live(database, "lim")
    limited = await store.claim_with_limits(
        database,
        limited=["lim"],
        limited_limit=10,
        unlimited=[],
        kinds=["noop"],
        limit=10,
        owner="w1",
        lease_s=30,
    )
    assert sorted(c.id for c in limited.rows) == [later_l, plain_l]
    statuses = await database.fetch(
        "SELECT status FROM notifyq.tasks WHERE id = ANY($1::bigint[])", [expired, expired_l]
    )
    assert [r["status"] for r in statuses] == ["pending", "pending"]


async def test_a_task_past_its_deadline_ends_expired_promptly_and_a_running_one_runs_on(
    database: db.Database,
) -> None:
    app = App()
    release = trio.Event()

    @app.handler("hold")
    async def hold(task: Task) -> str:
        await release.wait()
        return "finished"

    async with running_service(database, app=app) as service:
        running = await insert(database, "hold", expires_at=await _db_now(database, 0.3))
        await until_running(service, running)
        # Due only after its deadline: no claim may take it; the sweep ends it.
        late = await insert(
            database,
            "noop",
            run_at=await _db_now(database, 30.0),
            expires_at=await _db_now(database, 0.2),
        )
        (row,) = await wait_ended(database, late, timeout=10)
        assert row["status"] == "cancelled"
        assert row["error"].startswith("expired: not started by ")
        assert row["started_at"] is None and row["attempts"] == 0
        events = [e.event for e in await store.task_history(database, late)]
        assert events == ["queued", "expired"]

        async def counted() -> bool:
            return service.statistics().workers.expired >= 1

        await eventually(counted)
        # The running task went past its deadline while it ran: it is not affected.
        release.set()
        (done,) = await wait_ended(database, running)
    assert (done["status"], done["result"]) == ("done", "finished")


def test_every_producer_sets_the_deadline(database_url: str) -> None:
    at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    with psycopg.connect(database_url) as conn:
        notifyq.enqueue(conn, "noop", expires_in=60)
        absolute = notifyq.enqueue(conn, "noop", expires=at, unique_key="u")
        many = notifyq.enqueue_many(conn, [{"kind": "noop", "expires_in": 30}])
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM expires_at - created_at)::int, expires_at"
            " FROM notifyq.tasks ORDER BY id"
        ).fetchall()
    assert absolute is not None and many
    assert [rows[0][0], rows[2][0]] == [60, 30]
    assert rows[1][1] == at
    flow = notifyq.chain(notifyq.task("noop", expires_in=20), notifyq.task("noop", expires=at))
    with psycopg.connect(database_url) as conn:
        added = notifyq.enqueue_workflow(conn, flow)
        steps = conn.execute(  # the chain's two tasks, after the three above
            "SELECT extract(epoch FROM expires_at - created_at)::int, expires_at"
            " FROM notifyq.tasks WHERE id > 3 ORDER BY id"
        ).fetchall()
    assert added is not None
    assert steps[0][0] == 20 and steps[1][1] == at


async def test_http_takes_a_deadline_and_shows_it(database: db.Database) -> None:
    async with running_web(database, workers=False) as web:
        client = web.test_client()
        response = await client.post("/tasks", json={"kind": "noop", "expires_in": 90})
        assert response.status_code == 201
        task = await response.get_json()
        refused = await client.post(
            "/tasks", json={"kind": "noop", "expires_in": 5, "expires_at": "2030-01-01T00:00:00Z"}
        )
        assert refused.status_code == 422
    row = await database.fetchrow(
        "SELECT expires_at, extract(epoch FROM expires_at - created_at)::int AS s"
        " FROM notifyq.tasks WHERE id = $1",
        task["id"],
    )
    assert row is not None and row["s"] == 90
    assert datetime.fromisoformat(task["expires_at"]) == row["expires_at"]
