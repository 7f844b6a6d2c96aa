"""The stop signals, and what a long-running command (`serve`, `worker`, `web`) runs until
they come: one process, or the supervisor of ``PROCESSES`` of them.

SIGINT, SIGTERM and SIGHUP stop gracefully; a second one skips the grace. The receiver is
opened before anything else, so that a signal during start-up is a request to stop, not a
crash. SIGHUP (the terminal of `make run` closed, an SSH session dropped) is a stop request
too: its default action would end the process with tasks in progress, the registry row in
place and the embedded server left running
(tests/acceptance/test_serve.py::test_sighup_shuts_down_like_sigterm).

The supervisor, before any child starts, opens the database once: it starts the embedded
server (when ``DATABASE_URL`` is unset), applies the migrations there (on an external
database it checks them, as one process does), and waits while the database cannot be
reached. Then it runs the children (:mod:`notifyq.serving.supervisor`) with the database's
URL, and on the embedded server keeps its watchdog, so that the children need neither.
"""

from __future__ import annotations

import os
import signal
import sys
from functools import partial

import trio

from notifyq import budget, errors, logs, store
from notifyq.app import App
from notifyq.serving import embedded, supervisor
from notifyq.serving.startup import open_db_when_ready
from notifyq.settings import Settings

log = logs.get("notifyq.serving")

# The signals that stop a long-running command gracefully (a second one skips the grace).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

# After the stop, a child gets its SHUTDOWN_TIMEOUT, then up to a LEASE to write its
# outcomes (while the database is away), then this much (the HTTP side's graceful close)
# before the supervisor kills it.
STOP_MARGIN_S = 10.0


async def serve(
    settings: Settings,
    app: App,
    *,
    seed: int = 0,
    http: bool = True,
    workers: bool = True,
    child: int | None = None,
    link_fd: int | None = None,
) -> None:
    """Run until a stop signal: one process (``PROCESSES=1``, ``notifyq web``, or a
    supervisor's ``child``), or the supervisor of ``PROCESSES`` worker processes."""
    if child is None and workers and settings.processes > 1:
        await supervise_until_signalled(settings, seed=seed, http=http)
    else:
        await serve_until_signalled(
            settings, app, seed=seed, http=http, workers=workers, link_fd=link_fd
        )


async def serve_until_signalled(
    settings: Settings,
    app: App,
    *,
    seed: int = 0,
    http: bool = True,
    workers: bool = True,
    link_fd: int | None = None,
) -> None:
    """One process: its database, its embedded server's watchdog, and (with ``link_fd``)
    its link to the supervisor that started it."""
    # The engine and the HTTP side (Quart, Hypercorn): imported by the commands that serve
    # only, not by every `notifyq` start (tests/unit/test_cli_imports.py).
    from notifyq.serving import process

    stop, force = trio.Event(), trio.Event()
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if not stop.is_set():
                        log.info(
                            "shutdown.signal",
                            signal=name,
                            next="finishing running tasks; send again to skip the wait",
                        )
                        stop.set()
                    else:
                        log.info(
                            "shutdown.signal_again", signal=name, next="cancelling running tasks"
                        )
                        force.set()

            nursery.start_soon(watch)
            ready = trio.Event()
            if link_fd is not None:  # a supervisor's child: tell it when ready, watch it
                await nursery.start(supervisor.serve_link, link_fd, stop, ready)
            async with open_db_when_ready(settings, stop) as database:
                if database is None:
                    log.info("shutdown.before_start")
                    nursery.cancel_scope.cancel()
                    return
                if settings.database_url is None:
                    # This process uses the embedded server: it restarts it if it stops.
                    await nursery.start(
                        embedded.serve_watchdog, settings.data_dir, settings.embedded_restarts
                    )
                async with trio.open_nursery() as serving:
                    await serving.start(
                        partial(
                            process.serve_process,
                            database,
                            settings,
                            app,
                            stop,
                            force,
                            seed=seed,
                            http=http,
                            workers=workers,
                            exit_on_abandoned=True,
                        )
                    )
                    ready.set()
            nursery.cancel_scope.cancel()


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
    """The supervisor of ``PROCESSES`` children: it forwards each signal to them."""
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
