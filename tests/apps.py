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
    """Ignores cancellation: shields itself and sleeps on regardless."""
    with trio.CancelScope(shield=True):
        await trio.sleep(float(task.payload))
    return "finished anyway"
