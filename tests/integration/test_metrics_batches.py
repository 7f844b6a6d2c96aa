"""`/metrics`: live batches and their members' progress, without a label per batch."""

from __future__ import annotations

from typing import Any

import pytest

from notifyq import db
from tests.helpers import Web, running_web

# A chord of len($1) pending members; then member i ends with status $1[i] (NULL: live).
ADD_BATCH = """
WITH b AS (INSERT INTO notifyq.batches DEFAULT VALUES RETURNING id)
INSERT INTO notifyq.tasks (kind, batch_id, after_batch, payload)
SELECT 'noop', b.id, NULL, coalesce(to_jsonb(s), 'null') FROM b, unnest($1::text[]) AS s
UNION ALL
SELECT 'noop', NULL, b.id, 'null' FROM b
"""
END_MEMBERS = """
UPDATE notifyq.tasks SET status = payload #>> '{}', finished_at = now()
 WHERE batch_id IS NOT NULL AND status = 'pending' AND payload <> 'null'
"""


@pytest.fixture
async def idle_web(database: db.Database) -> Any:
    """HTTP only (no workers): the batches stay as the test put them."""
    async with running_web(database, workers=False) as web:
        yield web


async def scrape(web: Web) -> list[str]:
    text: str = await (await web.test_client().get("/metrics")).get_data(as_text=True)
    return [line for line in text.splitlines() if "batch" in line and not line.startswith("#")]


async def test_metrics_show_live_batches_and_their_members(
    idle_web: Web, database: db.Database
) -> None:
    assert await scrape(idle_web) == [
        "notifyq_batches_live 0.0",
        'notifyq_batch_members{state="done"} 0.0',
        'notifyq_batch_members{state="failed"} 0.0',
        'notifyq_batch_members{state="remaining"} 0.0',
    ]
    # Two live batches (5 and 3 members), and one complete (its members all ended).
    await database.execute(ADD_BATCH, [None, None, "done", "error", None])
    await database.execute(ADD_BATCH, [None, "done", "done"])
    await database.execute(ADD_BATCH, ["done", "cancelled"])
    await database.execute(END_MEMBERS)
    idle_web.ctx._batches.expires = 0  # the gauges are read at most once a second
    assert await scrape(idle_web) == [
        "notifyq_batches_live 2.0",
        'notifyq_batch_members{state="done"} 3.0',
        'notifyq_batch_members{state="failed"} 1.0',
        'notifyq_batch_members{state="remaining"} 4.0',
    ]
