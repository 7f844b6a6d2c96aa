"""The store's vocabulary is the schema's: statuses, verdicts and event names agree."""

from __future__ import annotations

import re

from notifyq import db, sql, store


async def check_values(database: db.Database, constraint: str) -> set[str]:
    definition = await database.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = $1", constraint
    )
    assert definition is not None, constraint
    return set(re.findall(r"'([a-z_]+)'::text", definition))


async def test_status_is_the_tasks_check_constraint(database: db.Database) -> None:
    assert await check_values(database, "tasks_status_valid") == {s.value for s in store.Status}


async def test_every_verdict_is_a_history_event(database: db.Database) -> None:
    events = await check_values(database, "task_events_event_valid")
    assert {v.value for v in store.Verdict} <= events


def test_the_finish_statement_speaks_the_verdicts() -> None:
    # Each verdict the writer sends is one the statement handles by name (or passes on as
    # the event: done, cancelled), and no outcome name of another vocabulary is left in it.
    finish = sql.queries["finish"]
    named = set(re.findall(r"o\.outcome (?:=|IN) \(?'([a-z_]+)'(?:, '([a-z_]+)')?", finish))
    mentioned = {name for pair in named for name in pair if name}
    assert mentioned == {"retried", "released", "failed", "done"}
    assert "'retry'" not in finish and "'release'" not in finish
