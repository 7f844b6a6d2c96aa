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


# Handlers that attack the process's asyncio loop itself (the one that drives asyncpg).


def _raise(exc: BaseException) -> None:
    raise exc


@app.handler("loop_system_exit", runtime="asyncio")
async def loop_system_exit(task: notifyq.Task) -> None:
    asyncio.get_running_loop().call_soon(_raise, SystemExit(3))
    await asyncio.sleep(float(task.payload))


@app.handler("loop_keyboard_interrupt", runtime="asyncio")
async def loop_keyboard_interrupt(task: notifyq.Task) -> None:
    asyncio.get_running_loop().call_soon(_raise, KeyboardInterrupt())
    await asyncio.sleep(float(task.payload))


@app.handler("loop_stop", runtime="asyncio")
async def loop_stop(task: notifyq.Task) -> None:
    asyncio.get_running_loop().stop()
    await asyncio.sleep(float(task.payload))
