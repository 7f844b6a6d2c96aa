"""The asyncio loop under asyncpg reports its errors as structured events, not plain text."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator

import pytest
import structlog

from notifyq import db, logs


@pytest.fixture
def restore_logs() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.mark.usefixtures("restore_logs")
async def test_an_exception_nobody_retrieved_is_one_json_event(
    database: db.Database, capsys: pytest.CaptureFixture[str]
) -> None:
    async def fails() -> None:
        raise ValueError("lost in the loop")

    async def start_and_forget() -> None:
        task = asyncio.ensure_future(fails())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert task.done()

    # Configured here: the loggers write to the sys.stderr of that moment (capsys's).
    logs.configure("info", "json")
    capsys.readouterr()
    await database.loop.run_aio_coroutine(start_and_forget())
    gc.collect()  # the forgotten task's finaliser reports its exception to the loop
    lines = capsys.readouterr().err.splitlines()
    assert lines, "asyncio reported nothing"
    [event] = [json.loads(line) for line in lines]
    assert event["event"] == "asyncio.error" and event["level"] == "error"
    assert event["message"] == "Task exception was never retrieved"
    assert event["error"] == "ValueError: lost in the loop"
    assert "Traceback" in event["exception"]


@pytest.mark.usefixtures("restore_logs")
async def test_a_loop_report_without_an_exception_is_one_json_event(
    database: db.Database, capsys: pytest.CaptureFixture[str]
) -> None:
    # Configured here: the loggers write to the sys.stderr of that moment (capsys's).
    logs.configure("info", "json")
    capsys.readouterr()
    # What asyncpg reports when a pooled connection is reset inside a transaction.
    database.loop.call_exception_handler({"message": "Resetting connection with an active tx"})
    [line] = capsys.readouterr().err.splitlines()
    event = json.loads(line)
    assert (event["event"], event["message"], event["error"]) == (
        "asyncio.error",
        "Resetting connection with an active tx",
        None,
    )
