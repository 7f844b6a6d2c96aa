"""Admission: at most HTTP_MAX_REQUESTS requests handled at once; past it, 503 at once.

The HTTP side shares its process (its trio thread, its CPU) with the workers. Without a
bound, a flood of requests turns into as many concurrent handlers, each encoding its JSON
and waiting for a database connection, and the workers' heartbeats and outcome writes queue
behind them (a lease lost, a task run twice). So a request beyond the bound is answered 503
``overloaded`` with ``Retry-After: 1`` before it reaches the application: it costs parsing
its head and a few hundred bytes of answer. ``/events`` streams stay open for as long as the
client reads, and have their own bound (HTTP_MAX_STREAMS): they are not counted here.
(tests/acceptance/test_http_flood.py)
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import trio
from hypercorn.typing import (
    ASGIReceiveCallable,
    ASGISendCallable,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Scope,
)

from notifyq import logs
from notifyq.web.app import SECURITY_HEADERS

log = logs.get("notifyq.web")

ASGIApp = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]

STREAM_PATHS = frozenset({"/events"})
RETRY_AFTER_S = 1
LOG_EVERY_S = 10.0  # one http.overloaded line per this many seconds of refusals, at most


class Admission:
    """An ASGI application that runs ``app`` for at most ``limit`` requests at once."""

    def __init__(self, app: ASGIApp, *, limit: int, body_limit: int) -> None:
        self.app = app
        self.limit = limit
        self.body_limit = body_limit
        self.in_flight = 0
        self.refused = 0  # since the last http.overloaded line
        self._logged_at = -LOG_EVERY_S
        body = {
            "error": {
                "code": "overloaded",
                "message": f"this process is handling {limit} requests, the most it takes at "
                "once (HTTP_MAX_REQUESTS); try again shortly",
            }
        }
        self._body = json.dumps(body).encode()
        self._security_headers = [
            (name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()
        ]

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http" or scope["path"] in STREAM_PATHS:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            await self._refuse(receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _refuse(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        self.refused += 1
        now = trio.current_time()
        if now - self._logged_at >= LOG_EVERY_S:
            log.warning("http.overloaded", refused=self.refused, limit=self.limit)
            self._logged_at, self.refused = now, 0
        # Read the request's body first (up to the body limit): a connection closed with
        # unread data is reset, and the client would see the reset instead of this answer.
        read = 0
        while read <= self.body_limit:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client is gone
            read += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(self._body)).encode()),
                (b"retry-after", str(RETRY_AFTER_S).encode()),
                *self._security_headers,
            ],
            "trailers": False,
        }
        await send(start)
        body: HTTPResponseBodyEvent = {
            "type": "http.response.body",
            "body": self._body,
            "more_body": False,
        }
        await send(body)
