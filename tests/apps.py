"""Handlers used by the fault tests, loaded by `notifyq serve --app tests.apps:app`."""

from __future__ import annotations

import asyncio
import os
import time

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


# Transactional handlers (tests/acceptance/test_faults.py): each inserts its user row into
# `effects`, keyed by task id, then works a while ({"s": seconds}) and returns, or raises
# when {"fail": true}. The row must exist exactly for the tasks that end `done`.
EFFECT = "INSERT INTO effects (task_id, attempt) VALUES ($1, $2)"


def _effect_args(task: notifyq.Task) -> tuple[float, bool]:
    return float(task.payload["s"]), bool(task.payload.get("fail"))


class EffectFailed(Exception):
    """A transactional handler's planned failure, after it wrote its row."""


@app.handler("effect", transactional=True)
async def effect(task: notifyq.Task) -> int:
    seconds, fail = _effect_args(task)
    await task.transaction.execute(EFFECT, task.id, task.attempt)
    await trio.sleep(seconds)
    if fail:
        raise EffectFailed(f"task {task.id} fails after writing")
    return task.attempt


@app.handler("effect_thread", transactional=True)
def effect_thread(task: notifyq.Task) -> int:
    seconds, fail = _effect_args(task)
    task.transaction.execute(EFFECT, task.id, task.attempt)
    time.sleep(seconds)
    if fail:
        raise EffectFailed(f"task {task.id} fails after writing")
    return task.attempt


@app.handler("effect_asyncio", transactional=True, runtime="asyncio")
async def effect_asyncio(task: notifyq.Task) -> int:
    seconds, fail = _effect_args(task)
    await task.transaction.execute(EFFECT, task.id, task.attempt)
    await asyncio.sleep(seconds)
    if fail:
        raise EffectFailed(f"task {task.id} fails after writing")
    return task.attempt
