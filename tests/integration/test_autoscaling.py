"""For autoscalers: each queue's due backlog and the age of its oldest due task, in
/metrics and through the KEDA ScaledObject's queries (deploy/keda), against real rows."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from notifyq import db
from tests.helpers import Web, running_web

SCALED_OBJECT = Path(__file__).resolve().parents[2] / "deploy" / "keda" / "scaledobject.yaml"

# queue, status, run_at and created_at as seconds from now (None: '-infinity' run_at).
ROWS: list[tuple[str, str, float | None, float]] = [
    ("default", "pending", -30, -40),  # due for 30 s: the oldest of default
    ("default", "pending", -10, -10),
    ("default", "pending", 0, 0),
    ("default", "pending", 3600, 0),  # not due yet
    ("default", "done", -500, -500),  # ended: not backlog
    ("default", "error", -600, -600),
    ("mail", "pending", None, -100),  # run_at -infinity: due since it was created
    ("mail", "pending", -5, -5),
    ("idle", "done", -50, -50),  # a queue with nothing due: 0 and 0
]


@pytest.fixture
async def rows(database: db.Database) -> None:
    for queue, status, run_in, created_in in ROWS:
        await database.execute(
            "INSERT INTO notifyq.tasks (queue, kind, status, run_at, created_at, finished_at)"
            " VALUES ($1, 'noop', $2,"
            " CASE WHEN $3::float8 IS NULL THEN '-infinity'"
            "      ELSE now() + make_interval(secs => $3::float8) END,"
            " now() + make_interval(secs => $4::float8),"
            " CASE WHEN $2 <> 'pending' THEN now() END)",
            queue,
            status,
            run_in,
            created_in,
        )


@pytest.fixture
async def idle_web(database: db.Database, rows: None) -> Any:
    async with running_web(database, workers=False) as web:
        yield web


async def scrape(web: Web) -> dict[tuple[str, str], float]:
    text: str = await (await web.test_client().get("/metrics")).get_data(as_text=True)
    found = re.findall(
        r'^(notifyq_queue_due|notifyq_queue_oldest_due_seconds)\{queue="(\w+)"\} (\S+)$',
        text,
        re.MULTILINE,
    )
    return {(name, queue): float(value) for name, queue, value in found}


async def test_metrics_show_each_queues_due_tasks_and_the_oldest_ones_age(
    idle_web: Web,
) -> None:
    m = await scrape(idle_web)
    assert {k: v for k, v in m.items() if k[0] == "notifyq_queue_due"} == {
        ("notifyq_queue_due", "default"): 3,
        ("notifyq_queue_due", "mail"): 2,
        ("notifyq_queue_due", "idle"): 0,
    }
    assert 30 <= m[("notifyq_queue_oldest_due_seconds", "default")] < 40
    assert 100 <= m[("notifyq_queue_oldest_due_seconds", "mail")] < 110
    assert m[("notifyq_queue_oldest_due_seconds", "idle")] == 0


def keda_queries() -> dict[str, str]:
    scaled = yaml.safe_load(SCALED_OBJECT.read_text())
    return {t["name"]: t["metadata"]["query"] for t in scaled["spec"]["triggers"]}


async def test_the_keda_queries_return_one_integer_from_the_rows(
    database: db.Database, rows: None
) -> None:
    queries = keda_queries()
    # As KEDA's least-privileged role would run them (the grants the manifest names).
    role = f"test_keda_{secrets.token_hex(3)}"
    await database.execute(
        f"CREATE ROLE {role}; GRANT USAGE ON SCHEMA notifyq TO {role};"
        f" GRANT SELECT (queue, status, run_at) ON notifyq.tasks TO {role}"
    )
    try:

        async def as_keda(conn: db.Connection) -> list[list[Any]]:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL ROLE {role}")
                return [
                    [tuple(r.values()) for r in await conn.fetch(q)]
                    for q in (queries["due"], queries["oldest-due"])
                ]

        [[due], [oldest]] = await database.run(as_keda)
    finally:
        await database.execute(f"REVOKE ALL ON notifyq.tasks FROM {role}")
        await database.execute(f"REVOKE ALL ON SCHEMA notifyq FROM {role}; DROP ROLE {role}")
    assert len(due) == 1 and len(oldest) == 1
    assert isinstance(due[0], int) and isinstance(oldest[0], int)
    assert due[0] == 3
    assert 30 <= oldest[0] < 40
