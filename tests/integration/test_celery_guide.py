"""docs/celery.md runs: its `python` blocks, in order, in one namespace, against a real
PostgreSQL and a real notifyq service running the guide's own app (the first block)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import trio

from notifyq import db
from tests.helpers import running_service

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "celery.md"


def blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", GUIDE.read_text(encoding="utf-8"), re.M | re.S)


async def test_the_celery_guide_runs(database: db.Database) -> None:
    app_block, *producer_blocks = blocks()
    assert len(producer_blocks) >= 7
    namespace: dict[str, Any] = {"__name__": "celery_guide"}
    exec(compile(app_block, f"{GUIDE}:app", "exec"), namespace)
    namespace["dsn"] = database.dsn

    def run_blocks() -> None:
        for n, block in enumerate(producer_blocks, start=1):
            exec(compile(block, f"{GUIDE}:block {n}", "exec"), namespace)

    async with running_service(database, namespace["app"]):
        await trio.to_thread.run_sync(run_blocks)
