"""Handlers of each runtime, loaded by `notifyq serve --app tests.runtime_apps:app`."""

from __future__ import annotations

import asyncio
import time

import trio

import notifyq

app = notifyq.App()


@app.handler("sleep_trio")
async def sleep_trio(task: notifyq.Task) -> float:
    await trio.sleep(float(task.payload))
    return float(task.payload)


@app.handler("sleep_thread")
def sleep_thread(task: notifyq.Task) -> float:
    time.sleep(float(task.payload))  # blocking: runs in a worker thread
    return float(task.payload)


@app.handler("sleep_asyncio", runtime="asyncio")
async def sleep_asyncio(task: notifyq.Task) -> float:
    await asyncio.sleep(float(task.payload))
    return float(task.payload)
