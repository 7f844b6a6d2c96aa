"""`notifyq bench drain --chord`: what a batch costs its members' drain.

Each run drains TASKS noop tasks in a fresh scratch database, by the real engine (an
in-process :class:`~notifyq.engine.service.Service`, or ``processes`` ``notifyq serve``
subprocesses): alternately plain tasks and a chord (the same tasks as members of one batch,
plus a noop callback, added in one statement). The members' drain is timed from the start
of the service (in-process) or the insert's commit (processes) until no member is pending
or running; the callback's run count and its delay after the last member are read from the
database afterwards.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any

from notifyq import errors
from notifyq.bench.common import STALL_TIMEOUT_S, progress, queries, running, scratch
from notifyq.bench.inprocess import _wait_drained, noop_app
from notifyq.bench.load import poll_until, serving
from notifyq.settings import Settings

KINDS = ("plain", "chord")


async def _drain_once(
    settings: Settings, tasks: int, processes: int, *, chord: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One drain of ``tasks`` noop tasks (``chord``: members of a batch with a callback);
    its figures, and the report's header."""
    async with scratch(settings) as s, contextlib.AsyncExitStack() as stack:
        database = s.database

        async def enqueue() -> int | None:
            if not chord:
                await database.execute(queries["enqueue_noops"], tasks)
                return None
            return int(await database.fetchval(queries["enqueue_chord"], tasks))

        async def members_drained() -> bool:
            return not await database.fetchval(queries["members_left"])

        timeout = STALL_TIMEOUT_S + tasks / 100
        if processes == 1:
            batch = await enqueue()
            await database.execute(queries["analyze"])
            started = time.monotonic()
            svc = await stack.enter_async_context(running(database, s.settings, noop_app("trio")))
            # The service's own count (no load on the database): members end before the
            # callback can start, so `tasks` done outcomes are the members.
            await _wait_drained(svc, tasks, started)
            seconds = time.monotonic() - started
            await poll_until(members_drained)
        else:
            for _ in range(processes):
                await stack.enter_async_context(serving(database, s.settings))
            started = time.monotonic()
            batch = await enqueue()
            await database.execute(queries["analyze"])
            await poll_until(members_drained, timeout_s=timeout)
            seconds = time.monotonic() - started
        one: dict[str, Any] = {"seconds": round(seconds, 3), "tasks_per_s": tasks / seconds}
        if batch is not None:

            async def callback_ended() -> bool:
                return bool(await database.fetchval(queries["callback_ended"], batch))

            await poll_until(callback_ended)
            row = await database.fetchrow(queries["chord_outcome"], batch)
            if row is None:
                raise errors.NotifyqError(f"batch {batch} has no callback")
            one.update(dict(row))
        await stack.aclose()
        done = int(await database.fetchval(queries["count_done"]))
        header = s.header
    expected = tasks + (1 if chord else 0)
    if done != expected:
        raise errors.NotifyqError(f"drain --chord: {done} of {expected} tasks done")
    return one, header


async def measure_chord(
    settings: Settings, tasks: int, processes: int, rounds: int
) -> dict[str, Any]:
    """``rounds`` drains of plain tasks and ``rounds`` of a chord, alternated (plain
    first); the medians of the members' rate, their ratio, and the callbacks' figures."""
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    header: dict[str, Any] = {}
    for n in range(rounds):
        for kind in KINDS:
            progress(f"drain --chord: round {n + 1}/{rounds}, {kind}, {tasks} tasks")
            one, header = await _drain_once(settings, tasks, processes, chord=kind == "chord")
            progress(f"  {one['tasks_per_s']:.0f} tasks/s")
            runs[kind].append(one)
    rates = {kind: statistics.median(r["tasks_per_s"] for r in runs[kind]) for kind in KINDS}
    chords = runs["chord"]
    return {
        "benchmark": "drain_chord",
        **header,
        "tasks": tasks,
        "processes": processes,
        "rounds": rounds,
        "plain_tasks_per_s": round(rates["plain"], 1),
        "chord_tasks_per_s": round(rates["chord"], 1),
        "ratio": round(rates["chord"] / rates["plain"], 3),
        "plain_runs_per_s": [round(r["tasks_per_s"], 1) for r in runs["plain"]],
        "chord_runs_per_s": [round(r["tasks_per_s"], 1) for r in chords],
        "callback_runs": [r["callback_runs"] for r in chords],
        "callback_done": [r["callback_done"] for r in chords],
        "callback_status": [r["callback_status"] for r in chords],
        "callback_start_after_ms": [round(r["start_after_s"] * 1000, 1) for r in chords],
        "callback_end_after_ms": [round(r["end_after_s"] * 1000, 1) for r in chords],
    }


def table(r: dict[str, Any]) -> tuple[list[tuple[str, str]], str]:
    """The report's cells and note for ``notifyq bench drain --chord``."""
    rows = [("tasks", str(r["tasks"])), ("processes", str(r["processes"]))]
    rows += [("plain/s", f"{r['plain_tasks_per_s']:.0f}")]
    rows += [("chord/s", f"{r['chord_tasks_per_s']:.0f}"), ("ratio", f"{r['ratio']:.1%}")]
    starts = ", ".join(f"{ms:g}" for ms in r["callback_start_after_ms"])
    runs = ", ".join(str(n) for n in r["callback_runs"])
    note = (
        f"(members' drain, medians of {r['rounds']} alternated runs each: plain"
        f" {r['plain_runs_per_s']}, chord {r['chord_runs_per_s']}; callback runs: {runs};"
        f" callback started {starts} ms after the last member ended)"
    )
    return rows, note
