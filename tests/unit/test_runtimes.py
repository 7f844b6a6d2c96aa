"""Handler runtimes without a database: detection, worker threads and their abandonment."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import pytest
import trio

from notifyq.app import runtime_of
from notifyq.engine.runtimes import Threads, ThreadStatistics
from tests.helpers import eventually


async def trio_handler(task: Any) -> None:
    return None


def sync_handler(task: Any) -> None:
    return None


class AsyncCallable:
    async def __call__(self, task: Any) -> None:
        return None


def test_runtime_follows_the_function() -> None:
    assert runtime_of("k", trio_handler, None) == "trio"
    assert runtime_of("k", AsyncCallable(), None) == "trio"
    assert runtime_of("k", sync_handler, None) == "thread"
    assert runtime_of("k", trio_handler, "asyncio") == "asyncio"


def test_bad_runtimes_are_named() -> None:
    with pytest.raises(TypeError, match="handler 'k': runtime='asyncio' needs an async def"):
        runtime_of("k", sync_handler, "asyncio")
    with pytest.raises(ValueError, match="runtime must be 'asyncio' or omitted, got 'trio'"):
        runtime_of("k", trio_handler, "trio")


async def test_a_thread_returns_its_value() -> None:
    threads = Threads(2)
    assert await threads.run(lambda task: task * 2, 21) == 42
    assert threads.statistics().running == 0


async def test_a_coroutine_from_a_thread_is_refused() -> None:
    threads = Threads(1)
    with pytest.raises(TypeError, match="returned an awaitable from a thread"):
        await threads.run(AsyncCallable(), None)


async def test_a_cancelled_thread_is_abandoned_and_counted_until_it_returns() -> None:
    threads = Threads(2)
    release, entered = threading.Event(), threading.Event()
    finished: list[str] = []

    def stuck(task: Any) -> str:
        entered.set()
        release.wait(30)
        finished.append("late result")
        return "late result"

    with trio.move_on_after(0.2) as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(threads.run, stuck, None)
            await trio.to_thread.run_sync(entered.wait, 10)
    assert scope.cancelled_caught
    assert threads.statistics() == ThreadStatistics(running=1, abandoned=1, slots=2)
    release.set()

    async def ended() -> bool:
        return threads.statistics() == ThreadStatistics(running=0, abandoned=0, slots=2)

    await eventually(ended)
    assert finished == ["late result"]


async def test_a_thread_given_up_before_it_started_never_runs() -> None:
    threads = Threads(1)
    release = threading.Event()
    ran: list[int] = []

    def first(task: Any) -> None:
        release.wait(30)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(threads.run, first, None)
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(0.05):  # waits for the one slot, then gives up
            await threads.run(ran.append, 1)
        release.set()
    assert ran == [] and threads.statistics().running == 0


def test_metrics_show_handler_and_abandoned_threads() -> None:
    from notifyq.engine.runtimes import ThreadStatistics
    from notifyq.engine.service import ServiceStatistics
    from notifyq.web.metrics import Metrics

    threads = ThreadStatistics(running=3, abandoned=1, slots=5)
    statistics = dataclasses.replace(ServiceStatistics.idle(), threads=threads)
    rendered = Metrics().render(statistics, listener_connected=True, reconnects=0, subscribers=0)
    text = rendered.decode()
    assert "notifyq_handler_threads 3.0" in text
    assert "notifyq_abandoned_threads 1.0" in text
