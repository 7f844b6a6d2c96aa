"""What one process runs (notifyq.serving.process): the HTTP side without workers starts the
listener alone, and reads the engine only through its statistics."""

from __future__ import annotations

from notifyq import db, store
from tests.helpers import eventually, running_web


async def test_web_alone_runs_the_listener_and_no_service(database: db.Database) -> None:
    async with running_web(database, workers=False) as web:
        assert web.running is None and web.ctx.engine is None
        client = web.test_client()

        async def probed() -> bool:
            return web.ctx.health.listener_connected and web.ctx.probe_age_s() is not None

        await eventually(probed)
        health = await (await client.get("/health")).get_json()
        assert health["checks"]["listener"]["ok"]
        stats = await (await client.get("/stats")).get_json()
        assert stats["mode"] == "web" and stats["since_start"] == {}
        metrics = await (await client.get("/metrics")).get_data(as_text=True)
        assert "notifyq_listener_connected 1.0" in metrics
        assert "notifyq_tasks_in_flight 0.0" in metrics
        # No worker registration: the stages that register never ran.
        assert await store.workers(database, gone_after_s=60) == []


async def test_serve_reads_the_engine_through_its_statistics(database: db.Database) -> None:
    async with running_web(database) as web:
        assert web.ctx.engine is web.service
        client = web.test_client()
        stats = await (await client.get("/stats")).get_json()
        assert stats["since_start"] == web.service.statistics().workers.as_dict()
