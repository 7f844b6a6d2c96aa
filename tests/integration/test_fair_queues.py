"""Fair queues: claims take due rows round-robin over concurrency_key, within priority."""

from __future__ import annotations

from notifyq import db, limits, store


async def _backlog(database: db.Database, queue: str) -> None:
    # Tenant a: 500 due tasks, the oldest first; tenant b: 10 added after them.
    await database.execute(
        "INSERT INTO notifyq.tasks (queue, kind, concurrency_key, run_at)"
        " SELECT $1, 'noop', 'a', now() - interval '1 hour' + n * interval '1 ms'"
        "   FROM generate_series(1, 500) n",
        queue,
    )
    await database.execute(
        "INSERT INTO notifyq.tasks (queue, kind, concurrency_key)"
        " SELECT $1, 'noop', 'b' FROM generate_series(1, 10)",
        queue,
    )


async def _claim_keys(database: db.Database, queue: str, n: int) -> list[str | None]:
    got = await store.claim_with_limits(
        database,
        limited=[queue],
        limited_limit=n,
        unlimited=[],
        kinds=["noop"],
        limit=n,
        owner="w",
        lease_s=30,
    )
    ids = [r.id for r in got.rows]
    rows = await database.fetch(
        "SELECT concurrency_key FROM notifyq.tasks WHERE id = ANY($1::bigint[])"
        " ORDER BY array_position($1::bigint[], id)",
        ids,
    )
    return [r["concurrency_key"] for r in rows]


async def test_a_fair_queue_interleaves_the_keys_whatever_the_backlog(
    database: db.Database,
) -> None:
    await store.set_queue_limits(database, limits.change("f", fair=True))
    await _backlog(database, "f")
    assert sorted(map(str, await _claim_keys(database, "f", 4))) == ["a", "a", "b", "b"]
    # One row per claim (one free worker each time): the keys take turns.
    singles = [(await _claim_keys(database, "f", 1))[0] for _ in range(6)]
    assert singles in (["a", "b"] * 3, ["b", "a"] * 3)
    # The same backlog in a plain queue: b waits behind all of a.
    await _backlog(database, "plain")
    plain = await store.claim(
        database, queues=["plain"], kinds=["noop"], limit=20, owner="w", lease_s=30
    )
    keys = await database.fetch(
        "SELECT DISTINCT concurrency_key FROM notifyq.tasks WHERE id = ANY($1::bigint[])",
        [r.id for r in plain],
    )
    assert [r["concurrency_key"] for r in keys] == ["a"]


async def test_fair_within_priority_and_with_a_per_key_limit(database: db.Database) -> None:
    await store.set_queue_limits(database, limits.change("f", fair=True, per_key_concurrency=2))
    await _backlog(database, "f")
    await database.execute(
        "INSERT INTO notifyq.tasks (queue, kind, concurrency_key, priority)"
        " VALUES ('f', 'noop', 'a', 10)"
    )
    # The urgent row of a first (priority), then a and b in turn, at most 2 running per key.
    first = await _claim_keys(database, "f", 10)
    assert first[0] == "a" and sorted(map(str, first)) == ["a", "a", "b", "b"]
    assert await _claim_keys(database, "f", 10) == []
    queues = {q.name: q for q in await store.list_queues(database)}
    assert queues["f"].fair is True


async def test_a_claim_fills_up_when_few_keys_have_tasks(database: db.Database) -> None:
    # One key and the lane without a key: each gives its share per round, and the rounds go
    # on until the claim is full (else the claimer would wait for a wake-up with rows due).
    await store.set_queue_limits(database, limits.change("f", fair=True))
    await database.execute(
        "INSERT INTO notifyq.tasks (queue, kind, concurrency_key)"
        " SELECT 'f', 'noop', 'a' FROM generate_series(1, 30)"
    )
    await database.execute("INSERT INTO notifyq.tasks (queue, kind) VALUES ('f', 'noop')")
    keys = await _claim_keys(database, "f", 10)
    assert sorted(map(str, keys)) == ["None", *["a"] * 9]
