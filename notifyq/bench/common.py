"""What every benchmark shares: the bench statements, scratch databases, an in-process
service, percentiles and progress lines.

Every benchmark resolves the server as every command does (DATABASE_URL, or the embedded
PostgreSQL when it is unset), creates a scratch database ``notifyq_bench_<random>`` on it,
migrates it, measures there and drops it afterwards (``WITH (FORCE)``): runs start from the
same empty state and the user's own data is never touched.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

import click
import trio

from notifyq import db, errors, logs, migrations, sql
from notifyq.app import App
from notifyq.bench import rtt
from notifyq.engine.service import Service
from notifyq.serving import embedded
from notifyq.settings import Settings

queries: Final = sql.load("notifyq.bench", "bench.sql")
"""The statements only the benchmarks run (``bench.sql``), by name."""

PROBE_TIMEOUT_S = 10.0  # a probe not started by then fails the run
STALL_TIMEOUT_S = 30.0  # a drain that finishes nothing for this long fails the run
REPORTED_SETTINGS = ("worker_count", "fetch_limit", "fetch_interval_s", "pool_size", "log_level")


T = TypeVar("T")


def progress(text: str) -> None:
    click.echo(text, err=True)


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty list."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@dataclass(frozen=True)
class Scratch:
    database: db.Database  # a pool on the scratch database, migrated
    settings: Settings  # the user's settings, pointed at the scratch database
    header: dict[str, Any]  # what the report names: server and settings


@asynccontextmanager
async def empty_database(settings: Settings) -> AsyncIterator[tuple[str, str, str]]:
    """A new, empty database on the configured server, dropped at the end.

    Yields (server URL, database URL, name).
    """
    async with empty_database_at(await embedded.resolve_dsn(settings)) as created:
        yield created


@asynccontextmanager
async def empty_database_at(
    dsn: str, prefix: str = "notifyq_bench_"
) -> AsyncIterator[tuple[str, str, str]]:
    """A new, empty database on the server of ``dsn``, dropped at the end (as above)."""
    name = f"{prefix}{secrets.token_hex(4)}"
    async with db.open_database(dsn, min_size=1, max_size=1) as admin:
        try:
            # A database name cannot be a bind parameter; this one is generated above.
            await admin.execute(f"CREATE DATABASE {name}")
        except errors.QueryError as exc:
            raise errors.NotifyqError(f"cannot create a scratch database: {exc}") from exc
        try:
            yield dsn, _with_database(dsn, name), name
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(30):
                await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@asynccontextmanager
async def scratch(settings: Settings) -> AsyncIterator[Scratch]:
    """A fresh, migrated database on the configured server; dropped at the end."""
    async with empty_database(settings) as (dsn, url, name):
        size = settings.pool_size
        async with db.open_database(url, min_size=min(2, size), max_size=size) as database:
            await migrations.migrate(database)
            listen = settings.listen_database_url
            ours = settings.model_copy(
                update={
                    "database_url": url,
                    "listen_database_url": listen and _with_database(listen, name),
                    "queues": ("default",),
                }
            )
            server = await database.fetchrow(queries["server_facts"])
            used = {k: getattr(ours, k) for k in REPORTED_SETTINGS}
            header = {"server": logs.redact(dsn), **dict(server or {}), "settings": used}
            yield Scratch(database, ours, header)


@asynccontextmanager
async def running(database: db.Database, settings: Settings, app: App) -> AsyncIterator[Service]:
    """An in-process Service, stopped gracefully (as by one SIGTERM) when the block ends."""
    svc = Service(database, settings, app)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(svc.serve, stop, trio.Event())
        try:
            yield svc
        finally:
            stop.set()


async def delayed(
    settings: Settings, rtt_s: float | None, measure: Callable[[Settings], Awaitable[T]]
) -> T:
    """``measure(settings)``; with ``rtt_s``, every connection it opens (to the server and,
    for the peers, theirs too) goes through a proxy adding that much to each round trip
    (:mod:`notifyq.bench.rtt`), and the result says so (``rtt_added_ms``)."""
    if not rtt_s:
        return await measure(settings)
    dsn = await embedded.resolve_dsn(settings)
    async with rtt.open_proxied(dsn, rtt_s) as url:
        listen = settings.listen_database_url
        progress(f"every connection goes through a proxy adding {rtt_s * 1000:g} ms per round trip")
        if listen:
            async with rtt.open_proxied(listen, rtt_s) as listen_url:
                ours = settings.model_copy(
                    update={"database_url": url, "listen_database_url": listen_url}
                )
                result = await measure(ours)
        else:
            result = await measure(settings.model_copy(update={"database_url": url}))
    if isinstance(result, dict):
        result["rtt_added_ms"] = rtt_s * 1000
    return result
