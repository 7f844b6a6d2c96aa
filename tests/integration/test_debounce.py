"""Debounce and throttle: a unique key's live holder kept, replaced or updated, from SQL and
every producer; the races between a replace and a claim."""

from __future__ import annotations

import psycopg
import trio

import notifyq
from notifyq import db, sql, store
from notifyq.spec import new_task
from tests.helpers import eventually, running_web

WAITING_ON_A_LOCK = (
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    " AND query LIKE '%enqueue_unique%' AND datname = current_database()"
)
UPSERT = (
    "SELECT id, change FROM notifyq.enqueue_unique("
    "'default', 'noop', $1::text::jsonb, 'k', $2, run_at => now() + make_interval(secs => $3))"
)


async def _upsert(
    conn: db.TransactionConnection | db.Database, payload: str, mode: str, delay: float
) -> tuple[int, str]:
    row = await conn.fetchrow(UPSERT, payload, mode, delay)
    assert row is not None
    return int(row["id"]), str(row["change"])


async def _task(database: db.Database, task_id: int) -> tuple[str, object, float]:
    row = await database.fetchrow(
        "SELECT status, payload, extract(epoch FROM run_at - now())::float8 AS due_in,"
        " unique_key FROM notifyq.tasks WHERE id = $1",
        task_id,
    )
    assert row is not None
    return row["status"], row["payload"], round(row["due_in"])


async def test_from_sql_keep_replace_and_update_a_pending_holder(database: db.Database) -> None:
    first, change = await _upsert(database, '{"n": 1}', "replace", 60)
    assert change == "added"
    assert await _upsert(database, '{"n": 2}', "keep", 600) == (first, "kept")
    assert await _task(database, first) == ("pending", {"n": 1}, 60)
    # Debounce: the newest payload, and run_at pushed to now + its delay.
    assert await _upsert(database, '{"n": 3}', "replace", 120) == (first, "replaced")
    assert await _task(database, first) == ("pending", {"n": 3}, 120)
    # Throttle: the newest payload, run_at kept.
    assert await _upsert(database, '{"n": 4}', "update", 600) == (first, "updated")
    assert await _task(database, first) == ("pending", {"n": 4}, 120)
    assert await database.fetchval("SELECT count(*) FROM notifyq.tasks") == 1


async def test_a_running_holder_lets_go_of_the_key_and_a_new_task_follows(
    database: db.Database,
) -> None:
    first, _ = await _upsert(database, '{"n": 1}', "replace", 0)
    (claimed,) = await store.claim(
        database, queues=["default"], kinds=["noop"], limit=1, owner="w", lease_s=30
    )
    assert claimed.id == first
    second, change = await _upsert(database, '{"n": 2}', "replace", 0)
    assert change == "added" and second != first
    keys = await database.fetch("SELECT id, status, unique_key FROM notifyq.tasks ORDER BY id")
    assert [tuple(r) for r in keys] == [(first, "in_progress", None), (second, "pending", "k")]


async def test_a_replace_and_a_claim_never_both_take_the_old_payload(
    database: db.Database,
) -> None:
    """Either order: the claim first (then the replace adds a new task), or the replace
    first (then the claim, which skipped the locked row, takes the new payload)."""
    first, _ = await _upsert(database, '{"n": 1}', "replace", 0)
    claim = sql.queries["claim"]
    # 1. A claim holds the row: the replace waits for it, and adds a new task.
    claimed_it, replaced = trio.Event(), trio.Event()
    result: dict[str, object] = {}

    async def claimer() -> None:
        async with database.transaction() as tx:
            rows = await tx.fetch(claim, ["default"], 1, "w", 30.0, ["noop"])
            result["claimed"] = [(r["id"], r["payload_json"]) for r in rows]
            claimed_it.set()

            async def replace_waits_for_the_row() -> bool:
                return bool(await database.fetchval(WAITING_ON_A_LOCK))

            await eventually(replace_waits_for_the_row)
            result["replaced_before_commit"] = replaced.is_set()

    async def replacer() -> None:
        await claimed_it.wait()
        result["upsert"] = await _upsert(database, '{"n": 2}', "replace", 0)
        replaced.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(claimer)
        nursery.start_soon(replacer)
    assert result["claimed"] == [(first, '{"n": 1}')]
    assert result["replaced_before_commit"] is False
    upsert = result["upsert"]
    assert isinstance(upsert, tuple)
    second, change = upsert
    assert change == "added" and second != first

    # 2. A replace holds the row: the claim skips it, and takes the new payload afterwards.
    async with database.transaction() as tx:
        assert await _upsert(tx, '{"n": 3}', "replace", 0) == (second, "replaced")
        skipped = await store.claim(
            database, queues=["default"], kinds=["noop"], limit=1, owner="w", lease_s=30
        )
        assert skipped == []
    (taken,) = await store.claim(
        database, queues=["default"], kinds=["noop"], limit=1, owner="w", lease_s=30
    )
    assert (taken.id, taken.payload) == (second, {"n": 3})


def test_every_producer_chooses_what_a_conflict_does(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        first = notifyq.enqueue(conn, "noop", 1, unique_key="k", delay=60)
        same = notifyq.enqueue(conn, "noop", 2, unique_key="k", delay=5, on_conflict="replace")
        kept = notifyq.enqueue(conn, "noop", 3, unique_key="k")
        (many,) = notifyq.enqueue_many(
            conn, [{"kind": "noop", "payload": 4, "unique_key": "k", "on_conflict": "update"}]
        )
        row = conn.execute(
            "SELECT payload, round(extract(epoch FROM run_at - now()))::int FROM notifyq.tasks"
        ).fetchall()
    assert first == same == many and kept is None
    assert row == [(4, 5)]


async def test_the_client_and_the_store_report_the_change(database: db.Database) -> None:
    added = await store.enqueue(database, task=new_task("noop", 1, unique_key="c"))
    replaced = await store.enqueue(
        database, task=new_task("noop", 2, unique_key="c", on_conflict="replace")
    )
    assert (replaced.id, replaced.duplicate, replaced.change) == (added.id, True, "replaced")
    assert replaced.row.payload == 2


async def test_http_replaces_and_says_so(database: db.Database) -> None:
    async with running_web(database, workers=False) as web:
        client = web.test_client()
        body = {"kind": "noop", "payload": 1, "unique_key": "h", "delay": 60}
        first = await (await client.post("/tasks", json=body)).get_json()
        response = await client.post(
            "/tasks", json=body | {"payload": 2, "on_conflict": "update", "delay": 1}
        )
        assert response.status_code == 200
        updated = await response.get_json()
    assert (updated["id"], updated["change"], updated["payload"]) == (first["id"], "updated", 2)
    assert updated["run_at"] == first["run_at"]  # throttle: run_at kept
