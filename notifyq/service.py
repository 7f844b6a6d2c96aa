"""One notifyq process: the nursery that holds listener, claimer, workers and housekeeping.

Shutdown is a sequence, not one big cancellation, so that nothing is lost:

1. stop claiming (the claimer ends; claimed tasks that never started are released);
2. running handlers get SHUTDOWN_TIMEOUT seconds, or none after a second signal;
3. handlers still running are cancelled and their tasks released to pending;
4. the writer records every outcome (shielded), then heartbeat and listener stop;
5. the process leaves the worker registry.
"""

from __future__ import annotations

import os
import random
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from notifyq import __version__, db, errors, logs, sql
from notifyq.handlers import App
from notifyq.settings import Settings
from notifyq.worker import WorkerPool

log = logs.get("notifyq.service")

PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 2.0
REAP_INTERVAL_S = 5.0
PRUNE_INTERVAL_S = 60.0
PRUNE_BATCH = 1000


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class Health:
    """What /health and the logs report about this process's connections."""

    listener_connected: bool = False
    listen_enabled: bool = True  # False under NO_LISTEN: no LISTEN connection, no probe
    last_probe_ok: float = -1.0  # trio clock
    reconnects: int = 0


class NotificationSink(Protocol):
    """Something else in the process that wants the listener's notifications (the web)."""

    def wanted_channels(self) -> tuple[str, ...]:
        """Channels to listen to besides the service's own, as of now."""
        ...

    async def wait_channels_changed(self) -> None: ...

    def now_listening(self, channels: frozenset[str]) -> None:
        """The extra channels are LISTENed to now (after a change, or a reconnect)."""
        ...

    def on_notification(self, channel: str, payload: str) -> None: ...


class Service:
    """Listener, claimer, workers and housekeeping of one process.

    With ``workers=False`` (``notifyq web``) it keeps only the listener, for the sink.
    """

    def __init__(
        self,
        database: db.Database,
        settings: Settings,
        app: App,
        *,
        sink: NotificationSink | None = None,
        workers: bool = True,
    ) -> None:
        self.db = database
        self.settings = settings
        self.worker_id = new_worker_id()
        self.pool = WorkerPool(database, settings, app, self.worker_id)
        self.health = Health()
        self.sink = sink
        self.workers = workers
        self.recovered = 0  # tasks this process's reaper gave back to pending or error
        self.stopped = trio.Event()  # set once serve() has returned (or failed)
        self._probe_channel = f"notifyq_probe_{os.getpid()}_{secrets.token_hex(4)}"
        self._probe_back = trio.Event()
        # A process may end while handlers that ignore cancellation still run (the CLI
        # sets this); otherwise the service waits for them.
        self.exit_on_abandoned = False

    async def serve(
        self,
        stop: trio.Event,
        force: trio.Event,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            await self._serve_role(stop, force, task_status)
        finally:
            self.stopped.set()

    async def _serve_role(
        self, stop: trio.Event, force: trio.Event, task_status: trio.TaskStatus[None]
    ) -> None:
        s = self.settings
        if not self.workers:
            await self._serve_listener_only(stop, task_status)
            return
        await self._register()
        log.info(
            "service.start",
            worker_id=self.worker_id,
            queues=list(s.queues),
            workers=s.worker_count,
            fetch_limit=s.fetch_limit,
        )
        try:
            async with trio.open_nursery() as handlers:
                # Handlers run here; one that ignores cancellation is abandoned by its worker
                # and keeps only this nursery open.
                await self._serve(stop, force, handlers, task_status)
                if self.pool.abandoned and self.exit_on_abandoned:
                    log.error(
                        "service.abandoned_handlers",
                        count=self.pool.abandoned,
                        why="handlers ignored cancellation; exiting without them",
                    )
                    # Every outcome is written and the registry entry is gone: nothing is
                    # lost by leaving the stuck handlers behind.
                    await self._unregister()
                    os._exit(0)
                handlers.cancel_scope.cancel()
        finally:
            await self._unregister()
        log.info("service.stopped", **self.pool.stats)

    async def _serve(
        self,
        stop: trio.Event,
        force: trio.Event,
        handlers: trio.Nursery,
        task_status: trio.TaskStatus[None],
    ) -> None:
        pool = self.pool
        async with trio.open_nursery() as housekeeping:
            # The first LISTEN connection may take a while (database down at start-up);
            # a stop signal meanwhile must still stop the process.
            with trio.CancelScope() as startup:
                housekeeping.start_soon(_cancel_when, stop, startup)
                await housekeeping.start(self._serve_listener)
            if startup.cancelled_caught:
                log.info("shutdown.before_start")
                housekeeping.cancel_scope.cancel()
                task_status.started()  # started, and already over
                return
            housekeeping.start_soon(self._serve_heartbeat)
            housekeeping.start_soon(self._serve_reaper)
            if self.settings.retention_s:
                housekeeping.start_soon(self._serve_pruner)
            async with trio.open_nursery() as writer:
                writer.start_soon(pool.serve_writer, force)
                grace = trio.CancelScope()
                async with trio.open_nursery() as workers:
                    workers.start_soon(pool.serve_claimer)
                    for _ in range(self.settings.worker_count):
                        workers.start_soon(pool.serve_worker, handlers)
                    task_status.started()
                    await stop.wait()
                    log.info("shutdown.stop_claiming", in_flight=pool.busy)
                    pool.stop_claiming()
                    housekeeping.start_soon(self._enforce_grace, grace, force)
                    # The workers nursery now ends when the last running handler does.
                grace.cancel()
                pool.close_outcomes()
                log.info("shutdown.writing_outcomes", pending=pool.in_flight)
            housekeeping.cancel_scope.cancel()
        log.info("shutdown.done")

    async def _serve_listener_only(
        self, stop: trio.Event, task_status: trio.TaskStatus[None]
    ) -> None:
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as startup:
                nursery.start_soon(_cancel_when, stop, startup)
                await nursery.start(self._serve_listener)
            task_status.started()
            await stop.wait()
            nursery.cancel_scope.cancel()

    async def _enforce_grace(self, grace: trio.CancelScope, force: trio.Event) -> None:
        """Give running handlers SHUTDOWN_TIMEOUT (or until a second signal), then cancel."""
        with grace:
            if not force.is_set() and self.pool.busy:
                log.info(
                    "shutdown.waiting",
                    running=self.pool.busy,
                    timeout_s=self.settings.shutdown_timeout_s,
                )
            with trio.move_on_after(self.settings.shutdown_timeout_s):
                await force.wait()
            log.info("shutdown.cancelling", running=self.pool.busy)
            self.pool.stop_running()

    # --- registry ----------------------------------------------------------------------

    async def _register(self) -> None:
        s = self.settings
        await self.db.execute(
            sql.queries["register_worker"],
            self.worker_id,
            socket.gethostname(),
            os.getpid(),
            list(s.queues),
            s.worker_count,
            0,
            __version__,
        )

    async def _unregister(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            try:
                await self.db.execute(sql.queries["unregister_worker"], self.worker_id)
            except errors.DatabaseUnavailable as exc:
                log.warning(
                    "service.unregister_failed",
                    error=str(exc),
                    why="the registry entry expires by itself",
                )

    # --- listener ----------------------------------------------------------------------

    async def _serve_listener(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep one LISTEN connection up; reconnect with backoff and jitter when it dies.

        ``task_status.started()`` is called once, when the first connection is up, or at
        once under NO_LISTEN, which opens no LISTEN connection at all.
        """
        if self.settings.no_listen:
            self.health.listen_enabled = False
            log.warning(
                "listener.disabled",
                why="NO_LISTEN is set: no LISTEN connection",
                effect=f"new tasks are found by the FETCH_INTERVAL sweep (every "
                f"{self.settings.fetch_interval_s:g} s) and when a worker frees up; a cancel "
                "reaches a running task at its next heartbeat (LEASE/3)",
            )
            task_status.started()
            return
        failures = 0
        connected_once = trio.Event()
        while True:
            try:
                await self._listen(failures, connected_once, task_status)
            except* errors.DatabaseUnavailable as group:
                lost = group.exceptions[0]
                self.health.listener_connected = False
                failures += 1
                delay = min(5.0, 0.05 * 2 ** min(failures, 7)) * random.uniform(0.5, 1.0)
                log.warning("listener.lost", error=str(lost), retry_in_s=round(delay, 3))
                await trio.sleep(delay)

    async def _listen(
        self, failures: int, connected_once: trio.Event, task_status: trio.TaskStatus[None]
    ) -> None:
        channels = ["notifyq", "notifyq_cancel", self._probe_channel]
        url = self.settings.listen_url or self.db.dsn
        async with db.open_listener(self.db.loop, url, channels) as listener:
            self.health.listener_connected = True
            if connected_once.is_set():
                self.health.reconnects += 1
                log.info("listener.reconnected", after_failures=failures)
            else:
                log.info("listener.connected", channels=channels[:2], after_failures=failures)
                connected_once.set()
                task_status.started()
            # Notifications sent while nobody listened are lost: claim once now.
            self.pool.wake()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._serve_probe, listener)
                if self.sink is not None:
                    nursery.start_soon(self._follow_sink, listener, self.sink)
                async for note in listener:
                    self._on_notification(note)
                    if listener.overflowed:
                        listener.overflowed = False
                        self.pool.wake()
            raise db.ListenerLost("the LISTEN connection closed")

    def _on_notification(self, note: db.Notification) -> None:
        if note.channel == "notifyq":
            log.debug("notification", queue=note.payload)
            self.pool.on_queue_notification(note.payload)
        elif note.channel == "notifyq_cancel":
            self.pool.on_cancel_notification(note.payload)
        elif note.channel == self._probe_channel:
            self._probe_back.set()
            return
        if self.sink is not None:
            self.sink.on_notification(note.channel, note.payload)

    async def _follow_sink(self, listener: db.Listener, sink: NotificationSink) -> None:
        """LISTEN to the sink's extra channels while it wants them, and only then."""
        listening: set[str] = set()
        while True:
            wanted = set(sink.wanted_channels())
            for channel in sorted(wanted - listening):
                await listener.listen(channel)
            for channel in sorted(listening - wanted):
                await listener.unlisten(channel)
            listening = wanted
            sink.now_listening(frozenset(listening))
            await sink.wait_channels_changed()

    async def _serve_probe(self, listener: db.Listener) -> None:
        """A NOTIFY round trip on the listening connection itself, every second.

        The driver reports a closed socket at once; this catches the silent cases (a
        network path that drops packets, a hung backend).
        """
        while True:
            self._probe_back = trio.Event()
            with trio.move_on_after(PROBE_TIMEOUT_S):
                await listener.execute(sql.queries["probe"], self._probe_channel)
                await self._probe_back.wait()
            if not self._probe_back.is_set():
                raise db.ListenerLost(f"no probe notification within {PROBE_TIMEOUT_S:g} s")
            self.health.last_probe_ok = trio.current_time()
            await trio.sleep(PROBE_INTERVAL_S)

    # --- leases --------------------------------------------------------------------------

    async def _serve_heartbeat(self) -> None:
        """One batched statement per LEASE/3 extends every lease this process holds."""
        s = self.settings
        interval = s.lease_s / 3
        while True:
            await trio.sleep(interval * random.uniform(0.9, 1.0))
            ids = list(self.pool.running)
            sent = trio.current_time()
            try:
                kept = await self.db.run(self._heartbeat_statements(ids))
            except errors.DatabaseUnavailable as exc:
                log.warning("heartbeat.failed", error=str(exc), tasks=len(ids))
                continue
            for task_id in ids:
                entry = self.pool.running.get(task_id)
                if entry is None:
                    continue
                if task_id in kept:
                    entry.lease_until = sent + s.lease_s
                    if kept[task_id]:
                        # A cancel whose notification never came (NO_LISTEN, lost LISTEN).
                        entry.request_stop("cancel")
                else:
                    log.warning("task.lease_lost", task_id=task_id)
                    entry.request_stop("lease_lost")

    def _heartbeat_statements(
        self, ids: list[int]
    ) -> Callable[[db.Connection], Awaitable[dict[int, bool]]]:
        s, worker_id, pool = self.settings, self.worker_id, self.pool

        async def beat(conn: db.Connection) -> dict[int, bool]:
            kept: dict[int, bool] = {}  # task id -> cancel requested
            if ids:
                rows = await conn.fetch(sql.queries["extend_leases"], worker_id, s.lease_s, ids)
                kept = {r["id"]: r["cancel_requested"] for r in rows}
            await conn.execute(
                sql.queries["register_worker"],
                worker_id,
                socket.gethostname(),
                os.getpid(),
                list(s.queues),
                s.worker_count,
                pool.in_flight,
                __version__,
            )
            return kept

        return beat

    # --- reaper and retention ------------------------------------------------------------

    async def _serve_reaper(self) -> None:
        """Return tasks of lost processes to pending. One process per interval does it."""
        interval = min(REAP_INTERVAL_S, self.settings.lease_s / 3)
        stale_after = self.settings.lease_s * 3

        async def reap(conn: db.Connection) -> list[db.Record]:
            if not await conn.fetchval(
                sql.queries["take_maintenance_turn"], "reaper", interval * 0.9
            ):
                return []
            rows: list[db.Record] = await conn.fetch(sql.queries["recover_expired"], 1000)
            await conn.execute(sql.queries["forget_stale_workers"], stale_after)
            return rows

        while True:
            await trio.sleep(interval * random.uniform(0.8, 1.2))
            try:
                rows = await self.db.run_in_transaction(reap)
            except errors.DatabaseUnavailable as exc:
                log.warning("reaper.failed", error=str(exc))
                continue
            self.recovered += len(rows)
            for row in rows:
                log.warning(
                    "task.recovered",
                    task_id=row["id"],
                    status=row["status"],
                    lost_worker=row["lost_worker"],
                )

    async def _serve_pruner(self) -> None:
        assert self.settings.retention_s is not None
        while True:
            await trio.sleep(PRUNE_INTERVAL_S * random.uniform(0.8, 1.2))
            try:
                got_turn = await self.db.fetchval(
                    sql.queries["take_maintenance_turn"], "prune", PRUNE_INTERVAL_S * 0.9
                )
                if got_turn:
                    await prune(self.db, self.settings.retention_s)
            except errors.DatabaseUnavailable as exc:
                log.warning("prune.failed", error=str(exc))


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    """Cancel ``scope`` once ``event`` is set (a no-op if the scope has already exited)."""
    await event.wait()
    scope.cancel()


async def prune(database: db.Database, older_than_s: float, batch: int = PRUNE_BATCH) -> int:
    """Delete tasks that ended more than ``older_than_s`` ago, in bounded batches."""
    total = 0
    while True:
        rows = await database.fetch(sql.queries["prune"], older_than_s, batch)
        total += len(rows)
        if len(rows) < batch:
            break
        await trio.lowlevel.checkpoint()  # let others run between batches
    if total:
        log.info("prune", deleted=total, older_than_s=older_than_s)
    return total
