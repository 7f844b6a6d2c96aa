"""`notifyq bench events`: what open ``/events`` streams cost a serve process's drain.

For each number of subscribers N: a fresh scratch database, one ``notifyq serve``
subprocess (workers and HTTP), N ``/events`` streams held open from here, each read as raw
bytes on a plain socket (so that reading costs this process almost nothing and the figure
is the server's), then TASKS noop tasks in one INSERT, timed from its commit until no row
is pending or running. ``--baseline DIR`` measures a second notifyq too, imported from DIR
(for example ``git archive main | tar -x -C DIR``), for a before/after table in one run.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from notifyq import errors
from notifyq.bench.common import STALL_TIMEOUT_S, progress, queries, scratch
from notifyq.bench.load import poll_until, serving
from notifyq.settings import Settings

STREAM_READY_TIMEOUT_S = 60.0


@dataclass
class Streams:
    ready: int = 0
    refused: int = 0
    bytes_after_ready: int = 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _subscriber(port: int, streams: Streams) -> None:
    """One /events stream, read until cancelled: bytes counted, nothing parsed."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = b""
        while b"event: ready" not in head:
            chunk = await stream.receive_some(65536)
            if not chunk or head.startswith(b"HTTP/1.1 503"):
                streams.refused += 1
                return
            head += chunk
        streams.ready += 1
        while chunk := await stream.receive_some(65536):
            streams.bytes_after_ready += len(chunk)


async def _http_up(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=2) as http:

        async def answers() -> bool:
            try:
                await http.get("/health")
            except httpx.HTTPError:
                return False
            return True

        await poll_until(answers)


async def _one(
    settings: Settings, tasks: int, subscribers: int, code: Path | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the report's header, this run's figures)."""
    async with scratch(settings) as s:
        port = _free_port()
        env = {"HTTP_PORT": str(port), "HTTP_MAX_STREAMS": str(subscribers + 10)}
        if code is not None:
            env["PYTHONPATH"] = str(code)
        async with serving(s.database, s.settings, env=env, cwd=code) as _proc:
            await _http_up(f"http://127.0.0.1:{port}")
            streams = Streams()
            async with trio.open_nursery() as nursery:
                for _ in range(subscribers):
                    nursery.start_soon(_subscriber, port, streams)

                async def all_open() -> bool:
                    return streams.ready + streams.refused == subscribers

                await poll_until(all_open, timeout_s=STREAM_READY_TIMEOUT_S)
                progress(
                    f"events: {streams.ready} streams open ({streams.refused} refused); "
                    f"enqueueing {tasks} noop tasks"
                )
                started = time.monotonic()
                await s.database.execute(queries["enqueue_noops"], tasks)
                await s.database.execute(queries["analyze"])

                async def drained() -> bool:
                    return not await s.database.fetchval(queries["unfinished"])

                await poll_until(drained, timeout_s=STALL_TIMEOUT_S + tasks / 10)
                seconds = time.monotonic() - started
                nursery.cancel_scope.cancel()
            done = int(await s.database.fetchval(queries["count_done"]))
        header = s.header
    if done != tasks:
        raise errors.NotifyqError(f"events: {done} of {tasks} tasks done")
    return header, {
        "subscribers": subscribers,
        "open": streams.ready,
        "refused": streams.refused,
        "seconds": round(seconds, 3),
        "tasks_per_s": round(tasks / seconds, 1),
        "kib_per_stream": round(streams.bytes_after_ready / 1024 / max(streams.ready, 1), 1),
    }


async def measure_events(
    settings: Settings, tasks: int, subscriber_counts: list[int], baseline: Path | None
) -> dict[str, Any]:
    """The drain with each number of open /events streams, for this notifyq and the
    baseline's (when given)."""
    versions: list[tuple[str, Path | None]] = [("this", None)]
    if baseline is not None:
        versions.insert(0, ("baseline", baseline))
    runs: list[dict[str, Any]] = []
    header: dict[str, Any] = {}
    for label, code in versions:
        for n in subscriber_counts:
            progress(f"events: {label}, {n} subscribers")
            header, run = await _one(settings, tasks, n, code)
            runs.append({"version": label, **run})
    return {"benchmark": "events", **header, "tasks": tasks, "runs": runs}
