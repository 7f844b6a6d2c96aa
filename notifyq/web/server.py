"""Running the app: Hypercorn on trio, inside the caller's nursery, beside the workers."""

from __future__ import annotations

import ipaddress
import logging
from functools import partial

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from notifyq import errors, logs
from notifyq.settings import Settings
from notifyq.web.app import create_app
from notifyq.web.context import Context

log = logs.get("notifyq.web")

SAMPLE_INTERVAL_S = 30.0
GRACEFUL_TIMEOUT_S = 5.0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(settings: Settings) -> None:
    """Refuse to serve a non-loopback address without a token, unless told to."""
    host = settings.http_host
    if is_loopback(host) or settings.api_token or settings.insecure_http:
        return
    raise errors.ConfigError(
        f"refusing to serve HTTP on {host} without API_TOKEN: anyone who reaches it could "
        "add and cancel tasks; set API_TOKEN, or pass --insecure-http to accept that"
    )


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    host = settings.http_host
    config.bind = [f"[{host}]:{settings.http_port}" if ":" in host else f"{host}:{settings.http_port}"]
    config.graceful_timeout = GRACEFUL_TIMEOUT_S
    config.accesslog = None
    # Hypercorn's own lines go through logging; notifyq logs its start line itself.
    quiet = logging.getLogger("notifyq.hypercorn")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    config.errorlog = quiet
    return config


async def serve_http(
    ctx: Context,
    stop: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``stop`` is set; ``task_status.started(urls)`` once the socket is bound."""
    check_bind(ctx.settings)
    app = create_app(ctx)
    async with trio.open_nursery() as helpers:

        async def stopping() -> None:
            await stop.wait()
            ctx.stopping.set()
            ctx.live.close_all()  # open /events streams end now, not at the graceful timeout

        helpers.start_soon(stopping)
        helpers.start_soon(_serve_sampler, ctx)
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
            log.info("http.listening", urls=urls, role=ctx.role)
            task_status.started(urls)
        # Hypercorn has finished its graceful shutdown; the helpers go with it.
        helpers.cancel_scope.cancel()


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


async def _serve_sampler(ctx: Context) -> None:
    """Keep the pickup-latency series of the last hour filled while nobody looks."""
    while True:
        try:
            await ctx.pickup_latency()
        except errors.DatabaseUnavailable as exc:
            log.debug("http.sample_failed", error=str(exc))
        await trio.sleep(SAMPLE_INTERVAL_S)
