"""Handlers used by the fault tests, loaded by `notifyq serve --app tests.apps:app`."""

from __future__ import annotations

import os

import trio

import notifyq

app = notifyq.App()


@app.handler("crash")
async def crash(task: notifyq.Task) -> None:
    """Kills its own process, every time."""
    os._exit(17)


@app.handler("stubborn")
async def stubborn(task: notifyq.Task) -> str:
    """Ignores cancellation: swallows every Cancelled and keeps sleeping."""
    end = trio.current_time() + float(task.payload)
    while trio.current_time() < end:
        try:
            await trio.sleep(end - trio.current_time())
        except trio.Cancelled:
            await trio.to_thread.run_sync(lambda: None, abandon_on_cancel=False)
    return "finished anyway"
