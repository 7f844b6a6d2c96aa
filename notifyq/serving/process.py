"""What one process runs: the workers, the HTTP side, or both, wired as siblings.

`notifyq serve` runs both, `notifyq worker` the workers, `notifyq web` the HTTP side (the
process's *mode*); the tests start the same wiring in-process. If one side crashes, the
other is cancelled and the process exits non-zero. The HTTP side without workers starts
the listener alone (the LISTEN connection that the page and /events follow), none of the
engine's other stages.

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
from notifyq.engine.listener import Listener
from notifyq.engine.service import Service
from notifyq.settings import Settings
from notifyq.web.context import Context
from notifyq.web.live import LiveFeed
from notifyq.web.server import serve_http

log = logs.get("notifyq.process")


@dataclass
class Started:
    """What ``serve_process`` hands to ``task_status.started``."""

    service: Service | None  # None without workers (`notifyq web`)
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
    svc: Service | None = None
    if workers:
        svc = Service(database, settings, app, sink=feed, exit_on_abandoned=exit_on_abandoned)
        listener = svc.listener
    else:
        # The LISTEN connection the page and /events need, and none of the stages.
        listener = Listener(database, settings, sink=feed)
    if seed:
        await store.seed(database, seed)
        log.info("seed", tasks=seed)
    context: Context | None = None
    urls: list[str] = []
    # Set once the workers have written every outcome (or the listener alone has stopped).
    stopped = trio.Event() if svc is None else svc.stopped
    async with contextlib.AsyncExitStack() as pools, trio.open_nursery() as sides:
        if feed is not None:
            # The HTTP side reads through a pool of its own (HTTP_POOL_SIZE): a flood of
            # requests waits for those connections, never for the ones the workers' outcome
            # writes and heartbeats use (tests/acceptance/test_http_flood.py).
            web_db = await pools.enter_async_context(
                database.open_sibling(max_size=settings.http_pool_size)
            )
            # READ_DATABASE_URL: the lists, stats and page read a replica (Context.reads);
            # actions and the engine stay on the primary.
            replica = None
            if settings.read_database_url:
                replica = await pools.enter_async_context(
                    database.open_sibling(
                        max_size=settings.http_pool_size, dsn=settings.read_database_url
                    )
                )
            context = Context(
                web_db,
                settings,
                mode="serve" if workers else "web",
                health=listener.health,
                live=feed,
                engine=svc,
                kinds=frozenset(app.handlers),
                replica=replica,
            )
            if svc is not None:
                svc.observe_ends(context.metrics.observe_end)
            http_done = trio.Event()
            sides.start_soon(_close_http_after, stop, context, stopped, http_done)
            urls = await sides.start(serve_http, context, http_done)
        if svc is not None:
            await sides.start(svc.serve, stop, force)
        else:
            await sides.start(_serve_listener_alone, listener, stop, stopped)
        task_status.started(Started(svc, context, urls))


async def _serve_listener_alone(
    listener: Listener,
    stop: trio.Event,
    stopped: trio.Event,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """`notifyq web`: keep the LISTEN connection up until ``stop``. Started once it is up,
    or once ``stop`` came first (the database may be down at start-up)."""
    try:
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as startup:
                nursery.start_soon(_cancel_when, stop, startup)
                await nursery.start(listener.serve)
            task_status.started()
            await stop.wait()
            nursery.cancel_scope.cancel()
    finally:
        stopped.set()


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _close_http_after(
    stop: trio.Event, context: Context, stopped: trio.Event, http_done: trio.Event
) -> None:
    await stop.wait()
    context.stopping.set()  # /health answers 503 from now on; the rest keeps serving
    await stopped.wait()
    http_done.set()
