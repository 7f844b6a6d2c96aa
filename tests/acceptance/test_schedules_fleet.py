"""A 1 s schedule served by three `notifyq serve` processes: one task per tick, none
missed; all stopped for 3 s and started again: the missed ticks coalesce into one run."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from tests.acceptance.proc import Notifyq, scalar, until

Start = Callable[..., Notifyq]
RUN_S = 8
DOWN_S = 3


def ticks(url: str) -> list[datetime]:
    """The ticks of schedule 'pulse' that got a task, oldest first."""
    text = scalar(
        url,
        "SELECT extract(epoch FROM schedule_tick)::bigint FROM notifyq.tasks"
        " WHERE schedule_name = 'pulse' ORDER BY schedule_tick",
    )
    return [datetime.fromtimestamp(int(s)) for s in text.split()] if text else []


def start_three(url: str, notifyq: Start) -> list[Notifyq]:
    procs = [notifyq(url, "serve") for _ in range(3)]
    for p in procs:
        p.wait_for("service.start", timeout=30)
    return procs


def stop(procs: list[Notifyq]) -> None:
    for p in procs:
        p.signal(signal.SIGTERM)
    assert [p.wait(timeout=30) for p in procs] == [0, 0, 0]


def test_three_processes_fire_each_tick_once_and_coalesce_after_downtime(
    database_url: str, notifyq: Start
) -> None:
    scalar(
        database_url,
        "INSERT INTO notifyq.schedules (name, every, kind)"
        " VALUES ('pulse', interval '1 second', 'noop')",
    )
    first = start_three(database_url, notifyq)
    until(lambda: len(ticks(database_url)) >= RUN_S, timeout=RUN_S + 15)
    stop(first)
    running = ticks(database_url)
    # Exactly one task per tick (the unique index would refuse a second live one, but the
    # tasks end at once: only the compare-and-set keeps them single), none missed.
    assert len(running) == len(set(running))
    assert running == [running[0] + timedelta(seconds=i) for i in range(len(running))]
    fired = sum(1 for p in first for e in p.events() if e.get("event") == "schedule.fired")
    assert fired == len(running)
    assert all(
        e.get("missed") == 0
        for p in first
        for e in p.events()
        if e.get("event") == "schedule.fired"
    )
    shares = [sum(e.get("event") == "schedule.fired" for e in p.events()) for p in first]
    print(f"ticks fired by each process (no leader; whoever wins the row): {shares}")

    time.sleep(DOWN_S)
    second = start_three(database_url, notifyq)
    until(lambda: len(ticks(database_url)) >= len(running) + 3, timeout=30)
    stop(second)
    after = ticks(database_url)[len(running) :]
    # Coalesce: the ticks of the downtime became one run, as the latest of them; then one
    # task per tick again.
    assert after[0] - running[-1] >= timedelta(seconds=DOWN_S)
    assert after == [after[0] + timedelta(seconds=i) for i in range(len(after))]
    catch_up = [
        e
        for p in second
        for e in p.events()
        if e.get("event") == "schedule.fired" and e.get("missed")
    ]
    assert len(catch_up) == 1
    gap = int((after[0] - running[-1]).total_seconds())
    assert catch_up[0]["missed"] == gap - 1
