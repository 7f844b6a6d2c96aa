"""Helpers of the workflow tests (migration 0014): tasks with parents and batches, written
and ended through notifyq's own statements, and the checks every test ends with."""

from __future__ import annotations

from typing import Any

from notifyq import db, sql

LEASE_S = 30.0
ENDED = ("done", "error", "cancelled")

Runner = db.Database | db.TransactionConnection


async def add(
    conn: Runner,
    kind: str = "k",
    *,
    depends_on: list[int] | None = None,
    policy: str | None = None,
    batch_id: int | None = None,
    after_batch: int | None = None,
    max_attempts: int = 1,
) -> int:
    """A task (queue 'default'); its id."""
    task_id = await conn.fetchval(
        "INSERT INTO notifyq.tasks (kind, depends_on, on_parent_failure, batch_id, after_batch,"
        " max_attempts) VALUES ($1, $2, coalesce($3, 'cancel'), $4, $5, $6) RETURNING id",
        kind,
        depends_on,
        policy,
        batch_id,
        after_batch,
        max_attempts,
    )
    return int(task_id)


async def new_batch(conn: Runner) -> int:
    return int(await conn.fetchval("INSERT INTO notifyq.batches DEFAULT VALUES RETURNING id"))


async def claim(
    conn: Runner, worker: str = "w", want: int = 100, kinds: list[str] | None = None
) -> list[Any]:
    """Claim with the real `claim` statement (kinds: those given, else every kind in use)."""
    if kinds is None:
        kinds = [r["kind"] for r in await conn.fetch("SELECT DISTINCT kind FROM notifyq.tasks")]
    return list(await conn.fetch(sql.queries["claim"], ["default"], want, worker, LEASE_S, kinds))


def outcome_args(worker: str, rows: list[Any], outcome: str) -> list[Any]:
    n = len(rows)
    return [
        worker,
        [r["id"] for r in rows],
        [r["attempts"] for r in rows],
        [outcome] * n,
        ["null"] * n,
        [None if outcome == "done" else f"{outcome} by test"] * n,
        [0.0] * n,
        [r["claim_token"] for r in rows],
        [None] * n,
    ]


async def finish(
    conn: Runner, rows: list[Any], outcome: str = "done", worker: str = "w"
) -> list[Any]:
    """End claimed rows with the real `finish` statement."""
    return list(await conn.fetch(sql.queries["finish"], *outcome_args(worker, rows, outcome)))


async def status(conn: Runner, task_id: int) -> str:
    return str(await conn.fetchval("SELECT status FROM notifyq.tasks WHERE id = $1", task_id))


async def statuses(conn: Runner, *ids: int) -> list[str]:
    rows = await conn.fetch(
        "SELECT t.status FROM unnest($1::bigint[]) WITH ORDINALITY AS i(id, n)"
        " JOIN notifyq.tasks t ON t.id = i.id ORDER BY i.n",
        list(ids),
    )
    return [r["status"] for r in rows]


async def events(conn: Runner, task_id: int) -> list[tuple[str, int | None, int | None]]:
    """A task's stored events: (event, parent_id, batch_id), oldest first."""
    rows = await conn.fetch(
        "SELECT event, parent_id, batch_id FROM notifyq.task_events WHERE task_id = $1 ORDER BY id",
        task_id,
    )
    return [(r["event"], r["parent_id"], r["batch_id"]) for r in rows]


async def broken_invariants(conn: Runner) -> list[str]:
    """What must never be, read from the tables: a waiting task whose counter is not its
    parents not ended (+1 while its batch is not complete), so in particular one that waits
    for nothing; a task released twice; a batch whose counters are not its members'."""
    wrong_counters = await conn.fetch(
        """
        SELECT t.id, t.waiting_on,
               (SELECT count(*) FROM notifyq.tasks p
                 WHERE p.id = ANY (t.depends_on) AND p.status NOT IN ('done', 'error', 'cancelled'))
               + CASE WHEN t.after_batch IS NOT NULL
                           AND (SELECT b.completed_at FROM notifyq.batches b
                                 WHERE b.id = t.after_batch) IS NULL
                      THEN 1 ELSE 0 END AS open
          FROM notifyq.tasks t
         WHERE t.status = 'waiting'
        """
    )
    found = [
        f"task {r['id']} waits for {r['waiting_on']}, {r['open']} open"
        for r in wrong_counters
        if r["waiting_on"] != r["open"] or r["open"] == 0
    ]
    twice = await conn.fetch(
        "SELECT task_id, count(*) AS n FROM notifyq.task_events"
        " WHERE event = 'released' AND (parent_id IS NOT NULL OR batch_id IS NOT NULL)"
        " GROUP BY task_id HAVING count(*) > 1"
    )
    found += [f"task {r['task_id']} released {r['n']} times" for r in twice]
    batches = await conn.fetch(
        """
        SELECT b.id, b.total, b.done, b.failed, m.total AS m_total, m.done AS m_done,
               m.failed AS m_failed
          FROM notifyq.batches b
          LEFT JOIN LATERAL (
                SELECT count(*) AS total, count(*) FILTER (WHERE t.status = 'done') AS done,
                       count(*) FILTER (WHERE t.status IN ('error', 'cancelled')) AS failed
                  FROM notifyq.tasks t WHERE t.batch_id = b.id) AS m ON true
         WHERE b.completed_at IS NULL
        """
    )
    found += [
        f"batch {r['id']} counts {r['total']}/{r['done']}/{r['failed']},"
        f" members {r['m_total']}/{r['m_done']}/{r['m_failed']}"
        for r in batches
        if (r["total"], r["done"], r["failed"]) != (r["m_total"], r["m_done"], r["m_failed"])
    ]
    return found
