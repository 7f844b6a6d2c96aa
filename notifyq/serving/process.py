"""What one process runs: the workers, the HTTP side, or both, wired as siblings.

`notifyq serve` runs both, `notifyq worker` the workers, `notifyq web` the HTTP side (the
process's *mode*); the tests start the same wiring in-process. If one side crashes, the
other is cancelled and the process exits non-zero.

Shutdown order: on ``stop`` the HTTP side reports 503 on /health ("shutting down") but keeps
serving (the status page shows the running tasks finish); it closes once the workers have
written every outcome.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import trio

from notifyq import db, logs, store
from notifyq.app import App
from notifyq.engine.service import Service
from notifyq.settings import Settings
from notifyq.web.context import Context
from notifyq.web.live import LiveFeed
from notifyq.web.server import serve_http

log = logs.get("notifyq.process")


@dataclass
class Started:
    """What ``serve_process`` hands to ``task_status.started``."""

    service: Service
    web: Context | None
    urls: list[str]


async def serve_process(
    database: db.Database,
    settings: Settings,
    app: App,
    stop: trio.Event,
    force: trio.Event,
    *,
    seed: int = 0,
    http: bool = True,
    workers: bool = True,
    exit_on_abandoned: bool = False,
    task_status: trio.TaskStatus[Started] = trio.TASK_STATUS_IGNORED,
) -> None:
    feed = LiveFeed() if http else None
    svc = Service(
        database, settings, app, sink=feed, workers=workers, exit_on_abandoned=exit_on_abandoned
    )
    if seed:
        await store.seed(database, seed)
        log.info("seed", tasks=seed)
    context: Context | None = None
    urls: list[str] = []
    async with contextlib.AsyncExitStack() as pools, trio.open_nursery() as sides:
        if feed is not None:
            # The HTTP side reads through a pool of its own (HTTP_POOL_SIZE): a flood of
            # requests waits for those connections, never for the ones the workers' outcome
            # writes and heartbeats use (tests/acceptance/test_http_flood.py).
            web_db = await pools.enter_async_context(
                database.open_sibling(max_size=settings.http_pool_size)
            )
            context = Context(
                web_db,
                settings,
                mode="serve" if workers else "web",
                health=svc.health,
                live=feed,
                engine=svc if workers else None,
                kinds=frozenset(app.handlers),
            )
            if workers:
                svc.observe_ends(context.metrics.observe_end)
            http_done = trio.Event()
            sides.start_soon(_close_http_after_service, stop, context, svc, http_done)
            urls = await sides.start(serve_http, context, http_done)
        await sides.start(svc.serve, stop, force)
        task_status.started(Started(svc, context, urls))


async def _close_http_after_service(
    stop: trio.Event, context: Context, svc: Service, http_done: trio.Event
) -> None:
    await stop.wait()
    context.stopping.set()  # /health answers 503 from now on; the rest keeps serving
    await svc.stopped.wait()
    http_done.set()
