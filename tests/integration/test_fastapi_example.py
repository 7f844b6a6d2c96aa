"""The FastAPI example (examples/fastapi/): orders and their tasks in one transaction, on
asyncpg and on SQLAlchemy, and a request that waits for a task's result; in process (httpx's
ASGI transport), the worker run by the plugin's asyncio queue."""

from __future__ import annotations

import asyncio
import importlib
import sys
from pathlib import Path
from typing import Any

import httpx

from notifyq.testing import AsyncioQueue

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi"


def _example() -> tuple[Any, Any]:
    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))
    return importlib.import_module("shop_api"), importlib.import_module("shop_tasks")


def test_orders_and_their_tasks_commit_together_and_results_are_awaited(
    notifyq_asyncio_queue: AsyncioQueue,
) -> None:
    shop_api, shop_tasks = _example()
    api = shop_api.create_app(notifyq_asyncio_queue.dsn)
    queue = notifyq_asyncio_queue

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=api)
        async with (
            api.router.lifespan_context(api),
            httpx.AsyncClient(transport=transport, base_url="http://shop") as client,
        ):
            placed = (await client.post("/orders", json={"item": "tea", "quantity": 2})).json()
            via_sa = (await client.post("/orders/sqlalchemy", json={"item": "cup"})).json()
            refused = await client.post("/orders", json={"item": "unobtainium"})
            assert refused.status_code == 409
            # The request waits (LISTEN) while the worker runs the tasks.
            waited, _ = await asyncio.gather(
                client.get(f"/tasks/{placed['task']}", params={"wait_s": 30}),
                queue.run_until_idle(shop_tasks.app),
            )
            assert waited.json() == {
                "status": "done",
                "result": f"order {placed['order']}: 2 x tea confirmed",
                "error": None,
            }
            done = (await client.get(f"/tasks/{via_sa['task']}")).json()
            assert done["result"] == f"order {via_sa['order']}: 1 x cup confirmed"
            assert (await client.get("/tasks/999999")).status_code == 404
        assert (await queue.get(placed["task"]))["kind"] == "shop.confirm"

    asyncio.run(scenario())
    # Orders 1 and 2 were added; the refused third one rolled back with its task.
    assert _rows(queue.dsn) == [(1, "tea"), (2, "cup")]


def _rows(dsn: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        orders = conn.execute("SELECT id, item FROM orders ORDER BY id").fetchall()
        (tasks,) = conn.execute("SELECT count(*) FROM notifyq.tasks").fetchone() or (0,)
    assert tasks == 2
    return orders
