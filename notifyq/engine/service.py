"""One notifyq process: the nursery that holds the stages and the shutdown sequence.

Shutdown is a sequence, not one big cancellation, so that nothing is lost:

1. stop claiming (the claimer ends; claimed tasks that never started are released);
2. running handlers get SHUTDOWN_TIMEOUT seconds, or none after a second signal;
3. handlers still running are cancelled and their tasks released to pending;
4. the writer records every outcome (shielded), then heartbeat and listener stop;
5. the process leaves the worker registry.

The asyncio loop that drives asyncpg also runs ``runtime="asyncio"`` handlers. A handler
cannot stop it (:mod:`notifyq.db` refuses), but a callback it schedules that raises
``SystemExit`` or ``KeyboardInterrupt`` ends it, as in asyncio, and with it every database
call of the process. Then the process stops at once, without the sequence above (which
needs the database): the attempts of asyncio handlers running then fail (retried: a poison
task cannot stop the fleet forever), the others are released, through a connection of
their own; the process leaves the registry and, under the CLI, exits 1 with one line
(tests/acceptance/test_asyncio_loop_attacks.py).
"""

from __future__ import annotations

import dataclasses
import math
import os
import secrets
import socket
import sys
from dataclasses import dataclass

import trio

from notifyq import db, errors, listen, logs, store, tracing
from notifyq.app import App
from notifyq.engine import leases, maintenance
from notifyq.engine.capacity import Capacity
from notifyq.engine.claimer import Claimer
from notifyq.engine.ledger import Attempt, Ledger
from notifyq.engine.listener import (
    CANCEL_CHANNEL,
    LIMITS_CHANNEL,
    QUEUE_CHANNEL,
    Listener,
    NotificationSink,
)
from notifyq.engine.runner import Runner
from notifyq.engine.runtimes import ThreadStatistics
from notifyq.engine.scheduler import SCHEDULES_CHANNEL, Scheduler, SchedulerStatistics
from notifyq.engine.verdict import failed
from notifyq.engine.watchdog import LoopWatch
from notifyq.engine.writer import EndObserver, Writer
from notifyq.settings import Settings
from notifyq.store import Outcome, Verdict

log = logs.get("notifyq.service")

__all__ = [
    "NotificationSink",
    "Service",
    "ServiceStatistics",
    "WorkerStatistics",
    "new_worker_id",
]


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class WorkerStatistics:
    """What this process's workers did since it started (``/stats`` ``since_start``): the
    ledger's claims, the writer's outcomes, the reaper's recoveries."""

    claimed: int
    done: int
    failed: int
    retried: int
    cancelled: int
    released: int
    fenced: int
    recovered: int
    snoozed: int = 0
    expired: int = 0  # by its expiry sweep

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class ServiceStatistics:
    """One process's engine at one instant, composed of each stage's own ``statistics()``:
    what ``/stats``, ``/metrics``, ``/health`` and the page report about this process. The
    HTTP side reads this value and nothing else of the engine."""

    workers: WorkerStatistics
    in_flight: int  # attempts claimed and not yet written
    threads: ThreadStatistics  # the runner's threads for sync handlers (stuck ones included)
    scheduler: SchedulerStatistics

    @classmethod
    def idle(cls) -> ServiceStatistics:
        """A process without workers (``notifyq web``): every count zero."""
        return cls(
            workers=WorkerStatistics(0, 0, 0, 0, 0, 0, 0, 0),
            in_flight=0,
            threads=ThreadStatistics(running=0, abandoned=0, slots=0),
            scheduler=SchedulerStatistics(0, 0, 0, 0),
        )


class Service:
    """The stages of one process that runs workers (``notifyq serve`` and ``worker``; a
    process without workers, ``notifyq web``, runs a :class:`Listener` alone)."""

    def __init__(
        self,
        database: db.Database,
        settings: Settings,
        app: App,
        *,
        sink: NotificationSink | None = None,
        exit_on_abandoned: bool = False,
    ) -> None:
        self.db = database
        self.settings = settings
        self.worker_id = new_worker_id()
        # A process may end while handlers that ignore cancellation still run (the CLI
        # asks for it); otherwise the service waits for them.
        self.exit_on_abandoned = exit_on_abandoned
        self.stopped = trio.Event()  # set once serve() has returned (or failed)
        self.ledger = Ledger(settings.worker_count, settings.prefetch)
        self.registration = store.Registration(
            self.worker_id,
            tuple(settings.queues),
            settings.worker_count,
            tuple(sorted(app.handlers)),
        )
        jobs_send, jobs_receive = trio.open_memory_channel[Attempt](self.ledger.most)
        out_send, out_receive = trio.open_memory_channel[tuple[Outcome, Attempt]](math.inf)
        self._outcomes_send = out_send
        self.listener = Listener(database, settings, sink=sink)
        self.app = app
        self.runner = Runner(
            settings,
            app,
            self.ledger,
            jobs_receive,
            out_send,
            loop=database.loop,
            database=database,
            owner=self.worker_id,
        )
        self.capacity = Capacity(
            {kind: h.runtime for kind, h in app.handlers.items()}, self.runner.threads, self.ledger
        )
        self.claimer = Claimer(
            database, settings, self.ledger, self.worker_id, jobs_send, capacity=self.capacity
        )
        tracing.start()  # OpenTelemetry spans, if the extra is installed and configured
        self.writer = Writer(
            database, settings, self.ledger, self.worker_id, out_receive, handoff=self.claimer
        )
        self.reaper = maintenance.Reaper(database, settings)
        self.expirer = maintenance.Expirer(database)
        self.scheduler = Scheduler(
            database,
            queues=settings.queues,
            kinds=app.handlers,
            sweep_s=settings.fetch_interval_s,
            declared=app.schedules.values(),
        )
        self.watch = LoopWatch(threshold_s=min(1.0, settings.lease_s / 4))
        self.listener.subscribe(QUEUE_CHANNEL, self.claimer.on_queue_notification)
        self.listener.subscribe(CANCEL_CHANNEL, self.runner.on_cancel_notification)
        self.listener.subscribe(LIMITS_CHANNEL, self.claimer.on_limits_notification)
        self.listener.subscribe(SCHEDULES_CHANNEL, self.scheduler.on_schedules_changed)
        self.listener.on_gap(self.claimer.rows_appeared)
        self.listener.on_gap(self.scheduler.on_schedules_changed)

    @property
    def health(self) -> listen.Health:
        return self.listener.health

    @property
    def in_flight(self) -> int:
        """Attempts claimed and not yet written."""
        return len(self.ledger.attempts)

    def statistics(self) -> ServiceStatistics:
        """This process's engine now (see :class:`ServiceStatistics`)."""
        t = self.writer.tally()
        workers = WorkerStatistics(
            self.ledger.claimed,
            t.done,
            t.failed,
            t.retried,
            t.cancelled,
            t.released,
            t.fenced,
            self.reaper.recovered,
            t.snoozed,
            self.expirer.expired,
        )
        return ServiceStatistics(
            workers=workers,
            in_flight=self.in_flight,
            threads=self.runner.threads.statistics(),
            scheduler=self.scheduler.statistics(),
        )

    def observe_ends(self, observer: EndObserver) -> None:
        """Call ``observer`` for every attempt whose outcome is written (``/metrics``)."""
        self.writer.observe_ends(observer)

    async def serve(
        self,
        stop: trio.Event,
        force: trio.Event,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            async with trio.open_nursery() as guard:
                guard.start_soon(self._guard_loop)
                await self._serve_workers(stop, force, task_status)
                guard.cancel_scope.cancel()
        finally:
            self.stopped.set()

    async def _serve_workers(
        self, stop: trio.Event, force: trio.Event, task_status: trio.TaskStatus[None]
    ) -> None:
        s = self.settings
        await self.scheduler.declare()
        await store.register(self.db, self.registration)
        # The limits the code declares: for the fields it names, the code wins at each start
        # (README, "Queue limits"); the claimer reads the table after this.
        for change in self.app.queues.values():
            await store.set_queue_limits(self.db, change)
            log.info("limits.declared", queue=change.name, fields=sorted(change.fields))
        log.info(
            "service.start",
            worker_id=self.worker_id,
            queues=list(s.queues),
            workers=s.worker_count,
            fetch_limit=s.fetch_limit,
        )
        try:
            async with trio.open_nursery() as handlers:
                # The workers run here; one whose handler ignores cancellation is
                # abandoned (replaced by a new worker) and keeps only this nursery open.
                await self._run_stages(stop, force, handlers, task_status)
                if self.runner.abandoned and self.exit_on_abandoned:
                    log.error(
                        "service.abandoned_handlers",
                        count=self.runner.abandoned,
                        why="handlers ignored cancellation; exiting without them",
                    )
                    # Every outcome is written and the registry entry is gone: nothing is
                    # lost by leaving the stuck handlers behind.
                    await self._unregister()
                    os._exit(0)
                handlers.cancel_scope.cancel()
        finally:
            await self._unregister()
        log.info("service.stopped", **self.statistics().workers.as_dict())

    async def _run_stages(
        self,
        stop: trio.Event,
        force: trio.Event,
        handlers: trio.Nursery,
        task_status: trio.TaskStatus[None],
    ) -> None:
        s, ledger = self.settings, self.ledger
        async with trio.open_nursery() as housekeeping:
            # The first LISTEN connection may take a while (database down at start-up);
            # a stop signal meanwhile must still stop the process.
            with trio.CancelScope() as startup:
                housekeeping.start_soon(_cancel_when, stop, startup)
                await housekeeping.start(self.listener.serve)
            if startup.cancelled_caught:
                log.info("shutdown.before_start")
                housekeeping.cancel_scope.cancel()
                task_status.started()  # started, and already over
                return
            housekeeping.start_soon(leases.serve_heartbeat, self.db, s, ledger, self.registration)
            housekeeping.start_soon(self.reaper.serve)
            housekeeping.start_soon(self.expirer.serve)
            housekeeping.start_soon(maintenance.serve_partitioner, self.db)
            housekeeping.start_soon(self.scheduler.serve)
            housekeeping.start_soon(self.watch.serve)
            if s.retention_s:
                housekeeping.start_soon(maintenance.serve_retention, self.db, s.retention_s)
            async with trio.open_nursery() as writer:
                writer.start_soon(self.writer.serve, force)
                grace = trio.CancelScope()
                async with trio.open_nursery() as workers:
                    workers.start_soon(self.claimer.serve)
                    workers.start_soon(self.runner.serve, handlers)
                    task_status.started()
                    await stop.wait()
                    log.info("shutdown.stop_claiming", in_flight=ledger.busy)
                    ledger.stopping = True
                    ledger.doorbell.ring()
                    housekeeping.start_soon(self._enforce_grace, grace, force)
                    # The workers nursery now ends when the last running handler does.
                grace.cancel()
                self._outcomes_send.close()
                log.info("shutdown.writing_outcomes", pending=self.in_flight)
            housekeeping.cancel_scope.cancel()
        log.info("shutdown.done")

    async def _guard_loop(self) -> None:
        """Wait for the asyncio loop to stop under the service (see the module's doc), then
        hand back its attempts through a new connection and leave."""
        await self.db.loop.wait_stopped()
        # Shielded: trio-asyncio cancels everything inside the loop it lost, this included.
        with trio.CancelScope(shield=True):
            log.error("asyncio.loop_stopped", why=LOOP_DIED, running=len(self.ledger.attempts))
            outcomes = []
            for attempt in list(self.ledger.attempts.values()):
                task, handler = attempt.task, self.app.get(attempt.task.kind)
                if (
                    attempt.started
                    and not attempt.over
                    and handler
                    and handler.runtime == "asyncio"
                ):
                    message = f"the asyncio loop stopped while this handler ran: {LOOP_DIED}"
                    outcome = failed(task, message, self.runner.retries)
                else:
                    outcome = Outcome(task.id, task.attempt, Verdict.RELEASED)
                # Fenced on the attempt's claim token, as the writer's outcomes are.
                outcomes.append(dataclasses.replace(outcome, token=attempt.token))
            # Bounded: else (or if this fails) the reaper takes them back after LEASE.
            with trio.move_on_after(10):
                try:
                    async with db.open_database(self.db.dsn, min_size=1, max_size=1) as rescue:
                        if outcomes:
                            await store.finish(rescue, owner=self.worker_id, outcomes=outcomes)
                        await store.unregister(rescue, self.worker_id)
                except errors.NotifyqError as exc:
                    log.error("asyncio.hand_back_failed", error=str(exc), tasks=len(outcomes))
            if self.exit_on_abandoned:  # the CLI: nothing can unwind past the dead loop
                print(
                    f"notifyq: the asyncio loop stopped: {LOOP_DIED} (a runtime='asyncio' "
                    "handler?); running tasks were handed back",
                    file=sys.stderr,
                    flush=True,
                )
                os._exit(1)

    async def _enforce_grace(self, grace: trio.CancelScope, force: trio.Event) -> None:
        """Give running handlers SHUTDOWN_TIMEOUT (or until a second signal), then cancel."""
        with grace:
            if not force.is_set() and self.ledger.busy:
                log.info(
                    "shutdown.waiting",
                    running=self.ledger.busy,
                    timeout_s=self.settings.shutdown_timeout_s,
                )
            with trio.move_on_after(self.settings.shutdown_timeout_s):
                await force.wait()
            log.info("shutdown.cancelling", running=self.ledger.busy)
            self.runner.stop_running()

    async def _unregister(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            try:
                await store.unregister(self.db, self.worker_id)
            except errors.DatabaseUnavailable as exc:
                log.warning(
                    "service.unregister_failed",
                    error=str(exc),
                    why="the registry entry expires by itself",
                )


LOOP_DIED = "a callback raised SystemExit or KeyboardInterrupt"


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    """Cancel ``scope`` once ``event`` is set (a no-op if the scope has already exited)."""
    await event.wait()
    scope.cancel()
