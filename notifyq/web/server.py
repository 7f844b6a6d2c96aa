"""Running the app: Hypercorn on trio, inside the caller's nursery, beside the workers."""

from __future__ import annotations

import logging
from functools import partial

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from notifyq import errors, logs
from notifyq.settings import Settings
from notifyq.web.admission import Admission
from notifyq.web.app import create_app
from notifyq.web.bind import check_bind
from notifyq.web.context import Context

log = logs.get("notifyq.web")

SAMPLE_INTERVAL_S = 10.0
GRACEFUL_TIMEOUT_S = 5.0
# Connections the kernel queues before Hypercorn accepts them (Hypercorn's default is
# 100; Linux caps it at net.core.somaxconn). Past it, a burst of new connections is
# dropped or reset instead of answered, if only with 503 (see admission.py).
BACKLOG = 2048


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    host = settings.http_host
    config.bind = [
        f"[{host}]:{settings.http_port}" if ":" in host else f"{host}:{settings.http_port}"
    ]
    config.graceful_timeout = GRACEFUL_TIMEOUT_S
    config.backlog = BACKLOG
    config.accesslog = None
    # Hypercorn's "Running on" line is replaced by notifyq's http.listening; its warnings
    # and errors (a failing stream, a bad client) go to notifyq's log.
    config.errorlog = _hypercorn_log()
    return config


class _ToStructlog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        method = log.error if record.levelno >= logging.ERROR else log.warning
        method("http.server", message=record.getMessage(), exc_info=record.exc_info)


def _hypercorn_log() -> logging.Logger:
    logger = logging.getLogger("notifyq.hypercorn")
    if not logger.handlers:
        logger.addHandler(_ToStructlog())
        logger.setLevel(logging.WARNING)
        logger.propagate = False
    return logger


async def serve_http(
    ctx: Context,
    stop: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``stop`` is set; ``task_status.started(urls)`` once the socket is bound."""
    check_bind(ctx.settings)
    app = Admission(
        create_app(ctx),
        limit=ctx.settings.http_max_requests,
        body_limit=ctx.settings.http_body_limit,
    )
    async with trio.open_nursery() as helpers:

        async def stopping() -> None:
            await stop.wait()
            ctx.stopping.set()
            ctx.live.close_all()  # open /events streams end now, not at the graceful timeout

        helpers.start_soon(stopping)
        helpers.start_soon(_serve_sampler, ctx)
        helpers.start_soon(ctx.live.run, ctx.database)  # /events: one message per window
        async with trio.open_nursery() as server:
            try:
                urls = await server.start(
                    partial(serve, app, hypercorn_config(ctx.settings), shutdown_trigger=stop.wait)
                )
            except* OSError as group:  # Hypercorn's own nursery wraps it
                exc = _first_leaf(group)
                s = ctx.settings
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise errors.ConfigError(
                    f"cannot serve HTTP on {s.http_host}:{s.http_port}: "
                    f"{reason}; choose another HTTP_PORT or HTTP_HOST"
                ) from None
            log.info("http.listening", urls=urls, mode=ctx.mode)
            task_status.started(urls)
        # Hypercorn has finished its graceful shutdown; the helpers go with it.
        helpers.cancel_scope.cancel()


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


async def _serve_sampler(ctx: Context) -> None:
    """Keep the last hour's series (tasks ended, pickup latency) filled while nobody looks,
    once somebody has looked: a fleet of `serve` processes whose pages nobody opens reads
    nothing (the first reader's round fills in the last hour of ended tasks)."""
    await ctx.watched.wait()
    while True:
        for sample in (ctx.sample_ended, ctx.pickup_latency):
            try:
                await sample()
            except errors.NotifyqError as exc:
                # A chart point is not worth stopping the process for (the workers would
                # go with it): say so and try again next round.
                log.warning("http.sample_failed", error=str(exc).splitlines()[0])
        await trio.sleep(SAMPLE_INTERVAL_S)
