"""`serve --processes N` / `worker --processes N`: the supervisor's side of the command.

Before any child starts, the supervisor opens the database once: it starts the embedded
server (when ``DATABASE_URL`` is unset), applies the migrations there (on an external
database it checks them, as ``serve`` does), and waits while the database cannot be reached.
Then it runs the children (:mod:`notifyq.supervisor`) with the database's URL, and on the
embedded server keeps its watchdog, so that the children need neither.
"""

from __future__ import annotations

import os
import signal
import sys

import trio

from notifyq import budget, embedded, errors, store, supervisor
from notifyq.cli.common import STOP_SIGNALS, log, open_db_when_ready
from notifyq.settings import Settings

# After the stop, a child gets its SHUTDOWN_TIMEOUT, then up to a LEASE to write its
# outcomes (while the database is away), then this much (the HTTP side's graceful close)
# before the supervisor kills it.
STOP_MARGIN_S = 10.0


def child_argv(*, http: bool, seed: int) -> supervisor.ChildArgv:
    """Child ``index``'s command line: process 1 serves HTTP (when the command does), every
    child runs workers; ``--seed`` goes to process 1's first start only."""

    def argv(index: int, link_fd: int, first: bool) -> list[str]:
        command = "serve" if http and index == 1 else "worker"
        args = [sys.executable, "-m", "notifyq", command]
        args += ["--child", str(index), "--link-fd", str(link_fd)]
        if seed and index == 1 and first:
            args += ["--seed", str(seed)]
        return args

    return argv


async def supervise_until_signalled(settings: Settings, *, seed: int, http: bool) -> None:
    plan_settings = settings
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:
            stop_before_start = trio.Event()
            boss: supervisor.Supervisor | None = None

            async def watch() -> None:
                async for signum in signals:
                    if boss is not None:
                        boss.signal(signum)
                    elif not stop_before_start.is_set():
                        log.info("shutdown.signal", signal=signal.Signals(signum).name)
                        stop_before_start.set()

            nursery.start_soon(watch)
            # Migrated (embedded) or checked (external) once, before any child starts.
            async with open_db_when_ready(settings, stop_before_start, pool_size=2) as database:
                if database is None:
                    log.info("shutdown.before_start")
                    nursery.cancel_scope.cancel()
                    return
                url = database.dsn
                max_connections, reserved = await store.connection_limits(database)
            # ConfigError (exit 2, one line) when the fleet cannot fit in the server.
            pool_size = budget.fit_pool_size(
                settings,
                processes=settings.processes,
                http=http,
                limits=budget.ServerLimits(max_connections, reserved),
            )
            if pool_size != settings.pool_size:
                log.warning(
                    "supervisor.pool_sized",
                    pool_size=pool_size,
                    configured=settings.pool_size,
                    max_connections=max_connections,
                    why=f"{settings.processes} processes of POOL_SIZE {settings.pool_size} "
                    "would take more connections than the server allows",
                )
            plan_settings = settings.model_copy(update={"pool_size": pool_size})
            embedded_server = settings.database_url is None
            if embedded_server:  # the children use the server this process started
                plan_settings = plan_settings.model_copy(update={"database_url": url})
            boss = supervisor.Supervisor(
                supervisor.Plan(
                    count=settings.processes,
                    argv=child_argv(http=http, seed=seed),
                    env={**os.environ, **supervisor.child_environment(plan_settings)},
                    kill_after_s=settings.shutdown_timeout_s + settings.lease_s + STOP_MARGIN_S,
                )
            )
            if stop_before_start.is_set():
                nursery.cancel_scope.cancel()
                return
            if embedded_server:
                nursery.start_soon(_watch_embedded, settings, boss)
            await boss.run()
            nursery.cancel_scope.cancel()


async def _watch_embedded(settings: Settings, boss: supervisor.Supervisor) -> None:
    """The children use the embedded server through its URL: the supervisor, which
    started it, restarts it if it stops; when it cannot, every child stops."""
    try:
        await embedded.serve_watchdog(settings.data_dir, settings.embedded_restarts)
    except errors.DatabaseUnavailable as exc:
        boss.fail(str(exc))
