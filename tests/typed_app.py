"""Typed tasks the suite runs (tests/integration/test_typed_tasks.py): one per runtime."""

from __future__ import annotations

import asyncio
from datetime import date

import trio

from notifyq.app import App, current_task

app = App()


@app.task
def resize(image_id: int, width: int = 100) -> dict[str, int]:
    """A def task (a worker thread), its kind the default one."""
    return {"image_id": image_id, "width": width}


@app.task(kind="typed.shift", timeout_s=30)
async def shift(day: date, days: int) -> date:
    """A trio task: its date argument arrives as a date, its date result is stored as JSON."""
    await trio.lowlevel.checkpoint()
    return date.fromordinal(day.toordinal() + days)


@app.task(kind="typed.fetch", runtime="asyncio", queue="typed")
async def fetch(url: str, *, tries: int = 1) -> str:
    """An asyncio task, with a keyword-only parameter and a default queue."""
    await asyncio.sleep(0)
    return f"{url} x{tries}"


@app.task(kind="typed.record", transactional=True)
async def record(note: str) -> int:
    """A transactional trio task: its attempt and transaction through current_task()."""
    task = current_task()
    await task.transaction.execute("SELECT pg_notify('typed_record', $1)", note)
    return int(await task.transaction.fetchval("SELECT $1::int * 10", task.attempt))
