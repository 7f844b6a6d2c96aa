"""The roles of a process: workers, the HTTP side, or both, wired as siblings.

`notifyq serve` runs both, `notifyq worker` the workers, `notifyq web` the HTTP side; the
tests start the same wiring in-process. If one side crashes, the other is cancelled and the
process exits non-zero.

Shutdown order: on ``stop`` the HTTP side reports 503 on /health ("shutting down") but keeps
serving (the status page shows the running tasks finish); it closes once the workers have
written every outcome.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from notifyq import db, logs, service, sql
from notifyq.handlers import App
from notifyq.settings import Settings
from notifyq.web import Context, serve_http
from notifyq.web.live import LiveFeed

log = logs.get("notifyq.roles")


@dataclass
class Running:
    """What ``serve_roles`` hands to ``task_status.started``."""

    service: service.Service
    web: Context | None
    urls: list[str]


async def serve_roles(
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
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    feed = LiveFeed() if http else None
    svc = service.Service(database, settings, app, sink=feed, workers=workers)
    svc.exit_on_abandoned = exit_on_abandoned
    if seed:
        await database.fetch(sql.queries["seed"], seed)
        log.info("seed", tasks=seed)
    context: Context | None = None
    urls: list[str] = []
    async with trio.open_nursery() as roles:
        if feed is not None:
            context = Context(
                database,
                settings,
                role="serve" if workers else "web",
                health=svc.health,
                live=feed,
            )
            if workers:
                _observe_workers(context, svc)
            http_done = trio.Event()
            roles.start_soon(_close_http_after_service, stop, context, svc, http_done)
            urls = await roles.start(serve_http, context, http_done)
        await roles.start(svc.serve, stop, force)
        task_status.started(Running(svc, context, urls))


async def _close_http_after_service(
    stop: trio.Event, context: Context, svc: service.Service, http_done: trio.Event
) -> None:
    await stop.wait()
    context.stopping.set()  # /health answers 503 from now on; the rest keeps serving
    await svc.stopped.wait()
    http_done.set()


def _observe_workers(context: Context, svc: service.Service) -> None:
    context.worker_stats = lambda: {**svc.pool.stats, "recovered": svc.recovered}
    context.in_flight = lambda: svc.pool.in_flight
    metrics = context.metrics
    svc.pool.on_end = lambda task, outcome, lag_s, run_s: metrics.observe_end(
        task.queue, task.kind, outcome, lag_s, run_s
    )
