"""Shared test helpers: an in-process service, waiting with a deadline."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog
import trio
from structlog.testing import capture_logs

from notifyq import db
from notifyq.app import App
from notifyq.engine.ledger import Attempt
from notifyq.engine.service import Service
from notifyq.kinds import builtin_app
from notifyq.serving import process
from notifyq.settings import load
from notifyq.web.app import create_app
from notifyq.web.context import Context as WebContext


@contextmanager
def captured_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Every event logged in the block, whatever level the process was configured with (a
    CLI command run earlier in this worker may have set ``warning``)."""
    saved = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with capture_logs() as events:
            yield events
    finally:
        structlog.configure(wrapper_class=saved)


@asynccontextmanager
async def running_service(
    database: db.Database, app: App | None = None, **settings: Any
) -> AsyncIterator[Service]:
    """A Service in this trio run; stopped gracefully (SIGINT-like) when the block ends."""
    s = load(database_url=database.dsn, log_level="warning", **settings)
    handlers = builtin_app(demo_min_delay_s=0.05, demo_max_delay_s=0.1, demo_failure_rate=0)
    if app is not None:
        handlers = handlers.merged(app)
    service = Service(database, s, handlers)
    stop, force = trio.Event(), trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(service.serve, stop, force)
        try:
            yield service
        finally:
            stop.set()


async def eventually(
    check: Callable[[], Awaitable[Any]],
    *,
    timeout: float = 10,  # noqa: ASYNC109
    interval: float = 0.02,
) -> Any:
    """Await ``check()`` until it returns something truthy; fail after ``timeout``."""
    with trio.fail_after(timeout):
        while True:
            value = await check()
            if value:
                return value
            await trio.sleep(interval)


async def task_row(database: db.Database, task_id: int) -> dict[str, Any]:
    row = await database.fetchrow("SELECT * FROM notifyq.tasks WHERE id = $1", task_id)
    assert row is not None
    return dict(row)


async def wait_ended(
    database: db.Database,
    *ids: int,
    timeout: float = 15,  # noqa: ASYNC109
) -> list[dict[str, Any]]:
    async def ended() -> list[dict[str, Any]] | None:
        rows = await database.fetch(
            "SELECT * FROM notifyq.tasks WHERE id = ANY($1::bigint[]) ORDER BY id", list(ids)
        )
        if all(r["status"] in ("done", "error", "cancelled") for r in rows):
            return [dict(r) for r in rows]
        return None

    result: list[dict[str, Any]] = await eventually(ended, timeout=timeout)
    return result


async def insert(database: db.Database, kind: str, payload: Any = None, **cols: Any) -> int:
    names = ["kind", "payload", *cols]
    values = [kind, {} if payload is None else payload, *cols.values()]
    placeholders = ", ".join(f"${i + 1}" for i in range(len(values)))
    task_id = await database.fetchval(
        f"INSERT INTO notifyq.tasks ({', '.join(names)}) VALUES ({placeholders}) RETURNING id",
        *values,
    )
    return int(task_id)


async def until_running(service: Service, task_id: int, timeout: float = 10) -> None:  # noqa: ASYNC109
    """Wait until ``service`` has started the handler of ``task_id``."""

    async def started() -> bool:
        entry = attempt_of(service, task_id)
        return entry is not None and entry.started > 0

    await eventually(started, timeout=timeout)


def attempt_of(service: Service, task_id: int) -> Attempt | None:
    """The newest attempt of ``task_id`` that ``service`` holds (its ledger is keyed by
    task id and claim token)."""
    held = [a for (i, _), a in service.ledger.attempts.items() if i == task_id]
    return max(held, key=lambda a: a.token, default=None)


@dataclass
class Web:
    """A service with its HTTP side, in this trio run (see running_web)."""

    ctx: WebContext
    url: str  # the real server, bound to a free port
    running: Service | None  # None with workers=False: the listener alone
    stop: trio.Event

    @property
    def service(self) -> Service:
        assert self.running is not None, "running_web(workers=False) runs no service"
        return self.running

    def test_client(self) -> Any:
        """Quart's test client for an app over the same context."""
        return create_app(self.ctx).test_client()


@asynccontextmanager
async def running_web(
    database: db.Database, *, workers: bool = True, app: App | None = None, **settings: Any
) -> AsyncIterator[Web]:
    """The wiring `notifyq serve` runs (or `web` with workers=False), HTTP on a free port."""
    s = load(database_url=database.dsn, log_level="warning", http_port=0, **settings)
    handlers = builtin_app(demo_min_delay_s=0.05, demo_max_delay_s=0.1, demo_failure_rate=0)
    if app is not None:
        handlers = handlers.merged(app)
    stop, force = trio.Event(), trio.Event()
    async with trio.open_nursery() as nursery:
        running = await nursery.start(
            partial(process.serve_process, database, s, handlers, stop, force, workers=workers)
        )
        assert running.web is not None
        try:
            yield Web(running.web, running.urls[0], running.service, stop)
        finally:
            stop.set()
