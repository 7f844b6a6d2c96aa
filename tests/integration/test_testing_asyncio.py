"""The pytest plugin in an asyncio test suite: notifyq_asyncio_queue from asyncio code."""

from __future__ import annotations

import asyncio

from notifyq.testing import AsyncioQueue
from tests.typed_app import app, resize


def test_the_queue_fixture_works_from_asyncio(notifyq_asyncio_queue: AsyncioQueue) -> None:
    queue = notifyq_asyncio_queue

    async def scenario() -> None:
        # Another asyncio task keeps running while the queue works on trio in a thread.
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        task_id = await queue.enqueue("reverse", "hello")
        typed = await queue.enqueue(resize.kind, {"image_id": 1})
        await queue.run_until_idle(app)
        await queue.assert_done(task_id, result="olleh")
        await queue.assert_done(typed, result={"image_id": 1, "width": 100})
        assert await queue.history(task_id) == ["queued", "started", "done"]
        ticker.cancel()
        assert ticks > 0

    asyncio.run(scenario())
