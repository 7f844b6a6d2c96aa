"""The worker side of one notifyq process: claimer, workers and the outcome writer.

    listener ──wake──▶ claimer ──jobs channel──▶ WORKER_COUNT workers ──outcomes──▶ writer

The claimer sleeps until something can have changed (a notification, a freed worker, the
earliest known ``run_at``, the FETCH_INTERVAL safety-net sweep) and then claims up to
FETCH_LIMIT rows in one statement. A process holds at most max(WORKER_COUNT, FETCH_LIMIT)
claimed tasks: those beyond the free workers wait in the jobs channel, their leases kept by
the heartbeat, so that a worker that finishes finds its next task without a round trip.
When a claim comes back short the process records itself as waiting (``go_idle``, see
migration 0002): only then do producers' inserts notify. Workers run handlers in their own
cancel scopes (cancellation, time limits, shutdown). The writer records outcomes in batches
with one fenced statement, shielded from cancellation and retried while the database is
away, so that an outcome is never dropped while this process still owns the task.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import outcome as outcome_lib
import trio

from notifyq import db, errors, logs, sql
from notifyq.handlers import App, Handler, Task
from notifyq.outcomes import Outcome, as_columns, backoff_s, encode_result
from notifyq.settings import Settings

log = logs.get("notifyq.worker")

# How long a handler gets to react to cancellation before it is abandoned.
CANCEL_GRACE_S = 2.0
# Shortest sleep of the claimer when rows are due but were locked by another claimer.
MIN_CLAIM_GAP_S = 0.005
# Longest single wait while retrying a statement against a database that is away.
MAX_RETRY_SLEEP_S = 2.0
# First and longest pause before go_idle is tried again after a producer held its lock.
IDLE_RETRY_S = (0.002, 0.25)

StopReason = Literal["cancel", "shutdown", "lease_lost", "timeout"]


@dataclass(eq=False)
class Running:
    """A claimed attempt, from claim until its outcome is written."""

    task: Task
    handler_scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    wait_scope: trio.CancelScope | None = None
    stop_reason: StopReason | None = None
    lease_until: float = math.inf  # trio clock; the lease is surely valid before this
    started: float = 0.0
    lag_s: float = 0.0
    timeout_s: float | None = None  # the row's own limit

    def request_stop(self, reason: StopReason) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.handler_scope.cancel()
        if self.wait_scope is not None:
            self.wait_scope.deadline = min(
                self.wait_scope.deadline, trio.current_time() + CANCEL_GRACE_S
            )


class WorkerPool:
    def __init__(self, database: db.Database, settings: Settings, app: App, worker_id: str) -> None:
        self.db = database
        self.settings = settings
        self.app = app
        self.worker_id = worker_id
        self.queues = list(settings.queues)
        self.running: dict[int, Running] = {}
        self.busy = 0  # claimed and not yet handed to the writer
        self.unwritten = 0  # claimed and outcome not yet written (at most `capacity`)
        # Claimed tasks a process holds at most: claiming ahead of the free workers saves
        # a round trip per task when tasks are short.
        self.capacity = max(settings.worker_count, settings.fetch_limit)
        self.waiting = False  # our notifyq.waiters row is in place (go_idle got the lock)
        self._debug = settings.log_level == "debug"
        self._idle_failures = 0
        self.stopping = False
        self.abandoned = 0
        self.dirty = True  # "a claim may find rows"; the first claim runs at start
        self._due_at = math.inf
        self._next_sweep = math.inf
        self._claim_failures = 0
        self._wakes = 0  # counts "rows may have appeared" events
        self._kick = trio.Event()
        self._jobs_send, self._jobs_receive = trio.open_memory_channel[Running](self.capacity)
        self._outcomes_send, self._outcomes_receive = trio.open_memory_channel[
            tuple[Outcome, Running]
        ](math.inf)
        self.stats = {
            "claimed": 0,
            "done": 0,
            "failed": 0,
            "retried": 0,
            "cancelled": 0,
            "released": 0,
            "fenced": 0,
        }
        # Called once an attempt's outcome is recorded: (task, outcome, lag_s, run_s).
        self.on_end: Callable[[Task, str, float, float], None] | None = None

    # --- waking the claimer ----------------------------------------------------------

    def wake(self, *, dirty: bool = True) -> None:
        """Something changed: a queue got rows (``dirty``) or a worker became free."""
        if dirty:
            self.dirty = True
            self._wakes += 1
            # A notification means a producer removed our waiters row (or we may have
            # missed that): record ourselves again after the next short claim.
            self.waiting = False
        self._kick.set()

    def on_queue_notification(self, queue: str) -> None:
        if queue in self.queues:
            self.wake()

    def on_cancel_notification(self, payload: str) -> None:
        try:
            task_id = int(payload)
        except ValueError:
            log.warning("notification.bad_payload", channel="notifyq_cancel", payload=payload[:100])
            return
        entry = self.running.get(task_id)
        if entry is not None:
            log.info("task.cancel_requested", task_id=task_id)
            entry.request_stop("cancel")

    # --- claimer ---------------------------------------------------------------------

    async def serve_claimer(self) -> None:
        # The claimer is the only sender of jobs: closing on exit lets the workers drain
        # what is queued (releasing it, since we are stopping) and then end.
        async with self._jobs_send:
            self._next_sweep = trio.current_time() + self.settings.fetch_interval_s
            while not self.stopping:
                # Bounded by written outcomes, not by finished handlers: a writer that
                # falls behind holds the claimer back instead of piling up leases.
                room = self.capacity - self.unwritten
                # Claim when a worker is free, or when the buffer ahead of the workers has
                # room for half a batch (fewer, bigger claims while tasks are short).
                worth_it = self.busy < self.settings.worker_count or 2 * room >= self.capacity
                if self.dirty and room > 0 and worth_it:
                    await self._claim_once(min(room, self.settings.fetch_limit))
                else:
                    await self._sleep_until_woken()

    async def _claim_once(self, want: int) -> None:
        wakes_before = self._wakes
        try:
            rows = await self._claim(want)
        except (errors.DatabaseUnavailable, trio.TooSlowError) as exc:
            self._claim_failures += 1
            delay = min(MAX_RETRY_SLEEP_S, 0.05 * 2**self._claim_failures)
            log.warning("claim.failed", error=str(exc) or "timed out", retry_in_s=round(delay, 3))
            await trio.sleep(delay)
            return
        self._claim_failures = 0
        for row in rows:
            entry = self.running[row["id"]]
            if self.stopping:
                # Stopped while the claim was in flight: give the row straight back.
                self._finish(entry, Outcome(entry.task.id, entry.task.attempt, "release"))
            else:
                # Never blocks: the channel holds `capacity` jobs and unwritten <= capacity.
                self._jobs_send.send_nowait(entry)
        if len(rows) == want:
            return  # a full claim: more rows may be waiting, claim again at once
        # Only a wake-up that came before the claim is answered by it: one that arrived
        # while the claim ran may be for a row the claim could not see yet.
        self.dirty = self._wakes != wakes_before
        # Asked after the rows went to the workers, so that handlers do not wait for it.
        register = not self.waiting and not self.dirty
        wakes_before = self._wakes
        try:
            locked, due_in = await self.db.run(self._idle_statements(register))
        except errors.DatabaseUnavailable:
            locked, due_in = False, MAX_RETRY_SLEEP_S  # look again soon; the sweep too
        if register:
            if locked and self._wakes == wakes_before:
                # Every producer that did not see our row has committed: one more claim
                # sees its rows; every later producer notifies.
                self.waiting = True
                self._idle_failures = 0
            elif not locked:
                # A producer was between its trigger and its commit: its rows may need
                # no notification. Claim again after a short pause, then try again.
                self._idle_failures += 1
                first, longest = IDLE_RETRY_S
                pause = min(first * 2 ** min(self._idle_failures, 10), longest)
                due_in = pause if due_in is None else min(due_in, pause)
            self.dirty = self.dirty or locked
        if due_in is None:
            self._due_at = math.inf
        else:
            self._due_at = trio.current_time() + max(due_in, MIN_CLAIM_GAP_S)

    def _idle_statements(
        self, register: bool
    ) -> Callable[[db.Connection], Awaitable[tuple[bool, float | None]]]:
        """go_idle (when ``register``) and next_due, in one hop."""
        worker_id, queues = self.worker_id, self.queues

        async def statements(conn: db.Connection) -> tuple[bool, float | None]:
            locked = False
            if register:
                locked = bool(await conn.fetchval(sql.queries["go_idle"], worker_id, queues))
            due_in = await conn.fetchval(sql.queries["next_due"], queues)
            return locked, due_in

        return statements

    async def _sleep_until_woken(self) -> None:
        """Until a notification, a freed worker, the next due row or the sweep."""
        self._kick = trio.Event()
        with trio.move_on_at(min(self._due_at, self._next_sweep)):
            await self._kick.wait()
        now = trio.current_time()
        if now >= self._next_sweep:
            self.dirty = True  # the safety net for notifications lost on the way
            self.waiting = False
            self._next_sweep = now + self.settings.fetch_interval_s
        if now >= self._due_at:
            self.dirty = True
            self._due_at = math.inf

    async def _claim(self, want: int) -> list[db.Record]:
        lease_s = self.settings.lease_s
        started = time.perf_counter()
        sent_at = trio.current_time()
        # Shielded: cancelling a claim after the server committed it would leave rows
        # in_progress that nobody runs until their lease expires. The time limit still
        # bounds it (the server then cancels the statement and nothing was claimed).
        with trio.CancelScope(shield=True), trio.fail_after(lease_s / 2):
            rows = await self.db.fetch(
                sql.queries["claim"], self.queues, want, self.worker_id, lease_s
            )
        for row in rows:
            self.running[row["id"]] = Running(
                Task(
                    row["id"],
                    row["queue"],
                    row["kind"],
                    row["payload"],
                    row["attempts"],
                    row["max_attempts"],
                    row["priority"],
                ),
                lease_until=sent_at + lease_s,
                lag_s=row["lag_s"],
                timeout_s=row["timeout_s"],
            )
        self.busy += len(rows)
        self.unwritten += len(rows)
        self.stats["claimed"] += len(rows)
        if rows:
            log.debug("claim", rows=len(rows), ms=round((time.perf_counter() - started) * 1000, 2))
        return rows

    # --- workers ---------------------------------------------------------------------

    async def serve_worker(self, handlers_nursery: trio.Nursery) -> None:
        async for entry in self._jobs_receive:
            if self.stopping:
                # Claimed but never started: straight back to pending.
                self._finish(entry, Outcome(entry.task.id, entry.task.attempt, "release"))
                continue
            await self._run(entry, handlers_nursery)

    async def _run(self, entry: Running, handlers_nursery: trio.Nursery) -> None:
        task = entry.task
        handler = self.app.get(task.kind)
        if handler is None:
            self._finish(
                entry,
                Outcome(task.id, task.attempt, "error", error=f"no handler for kind {task.kind!r}"),
            )
            return
        timeout_s = entry.timeout_s or handler.timeout_s or self.settings.task_timeout_s
        entry.started = trio.current_time()
        if self._debug:  # the logger proxy costs ~5 µs per call even when filtered out
            log.debug(
                "task.start",
                task_id=task.id,
                kind=task.kind,
                attempt=task.attempt,
                lag_ms=round(entry.lag_s * 1000, 2),
            )
        result = await self._call(entry, handler, timeout_s, handlers_nursery)
        self._finish(entry, self._judge(entry, result, timeout_s))

    async def _call(
        self, entry: Running, handler: Handler, timeout_s: float | None, nursery: trio.Nursery
    ) -> outcome_lib.Outcome[Any] | None:
        """Run the handler; None if it had to be abandoned (it ignored cancellation)."""
        box: list[outcome_lib.Outcome[Any]] = []
        finished = trio.Event()

        async def call() -> None:
            # The handler runs in its own task so that one that ignores cancellation can
            # be abandoned instead of holding this worker forever.
            try:
                with entry.handler_scope:
                    try:
                        box.append(outcome_lib.Value(await handler.fn(entry.task)))
                    except Exception as exc:
                        box.append(outcome_lib.Error(exc))
            finally:
                finished.set()

        nursery.start_soon(call, name=f"notifyq task {entry.task.id}")
        deadline = entry.started + timeout_s if timeout_s else math.inf
        with trio.move_on_at(deadline) as entry.wait_scope:
            await finished.wait()
        if not finished.is_set():
            entry.request_stop("timeout")
            with trio.move_on_after(CANCEL_GRACE_S):
                await finished.wait()
        if not finished.is_set():
            self.abandoned += 1
            log.error(
                "task.abandoned",
                task_id=entry.task.id,
                kind=entry.task.kind,
                reason="the handler ignored cancellation",
            )
            return None
        return box[0] if box else None

    def _judge(
        self, entry: Running, result: outcome_lib.Outcome[Any] | None, timeout_s: float | None
    ) -> Outcome:
        task = entry.task
        tid, attempt = task.id, task.attempt
        overran = timeout_s is not None and trio.current_time() - entry.started >= timeout_s
        if isinstance(result, outcome_lib.Value) and not overran:
            try:
                return Outcome(tid, attempt, "done", result_json=encode_result(result.value))
            except ValueError as exc:
                return Outcome(tid, attempt, "error", error=str(exc))
        if isinstance(result, outcome_lib.Error) and not entry.handler_scope.cancel_called:
            return self._failure(task, result.error)
        # Stopped from outside (or abandoned): the reason decides.
        reason = entry.stop_reason or ("timeout" if overran else "cancel")
        if reason == "timeout":
            return self._retry_or_fail(task, f"timed out after {timeout_s:g} s")
        if reason == "shutdown" or reason == "lease_lost":
            return Outcome(tid, attempt, "release")
        return Outcome(tid, attempt, "cancelled", error="cancelled")

    def _failure(self, task: Task, exc: BaseException) -> Outcome:
        if isinstance(exc, errors.Fail):
            return Outcome(task.id, task.attempt, "error", error=f"{type(exc).__name__}: {exc}")
        message = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, errors.Retry):
            return self._retry_or_fail(task, message, delay_s=exc.delay_s)
        return self._retry_or_fail(task, message)

    def _retry_or_fail(self, task: Task, message: str, delay_s: float | None = None) -> Outcome:
        if task.attempt >= task.max_attempts:
            return Outcome(task.id, task.attempt, "error", error=message)
        if delay_s is None:
            delay_s = backoff_s(task.attempt, self.settings.retry_base_s, self.settings.retry_max_s)
        return Outcome(task.id, task.attempt, "retry", error=message, delay_s=delay_s)

    def _finish(self, entry: Running, result: Outcome) -> None:
        """Hand an outcome to the writer and free the worker slot."""
        if entry.stop_reason == "lease_lost":
            # Another process owns the task now; the fenced write would be refused anyway.
            log.warning("task.lease_lost", task_id=entry.task.id, outcome=result.kind)
        self._outcomes_send.send_nowait((result, entry))
        self.busy -= 1
        self.wake(dirty=False)

    # --- outcome writer --------------------------------------------------------------

    async def serve_writer(self, force: trio.Event) -> None:
        """Write outcomes until the workers are done and every outcome is written."""
        async for first in self._outcomes_receive:
            batch = [first]
            while len(batch) < 1000:
                try:
                    batch.append(self._outcomes_receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            await self._write(batch, force)
            self.unwritten -= len(batch)
            self.wake(dirty=False)

    async def _write(self, batch: list[tuple[Outcome, Running]], force: trio.Event) -> None:
        failures = 0
        while batch:
            try:
                # Shielded: an outcome in flight must land even while the process stops.
                with trio.CancelScope(shield=True), trio.fail_after(self.settings.lease_s):
                    rows = await self._write_rows([o for o, _ in batch])
            except (errors.DatabaseUnavailable, trio.TooSlowError) as exc:
                failures += 1
                now = trio.current_time()
                kept = []
                for item in batch:
                    if item[1].lease_until <= now or force.is_set():
                        # The lease has run out (or the operator insists on stopping): the
                        # reaper will give the task to another attempt. Say so loudly.
                        log.error(
                            "outcome.dropped",
                            task_id=item[0].task_id,
                            outcome=item[0].kind,
                            error=str(exc),
                            why="lease expired" if not force.is_set() else "forced stop",
                        )
                        self.running.pop(item[0].task_id, None)
                    else:
                        kept.append(item)
                batch = kept
                if batch:
                    delay = min(MAX_RETRY_SLEEP_S, 0.05 * 2**failures)
                    log.warning(
                        "outcome.write_failed",
                        tasks=len(batch),
                        error=str(exc),
                        retry_in_s=round(delay, 3),
                    )
                    with trio.move_on_after(delay):
                        await force.wait()
                continue
            written = {row["id"]: row["status"] for row in rows}
            for result, entry in batch:
                self.running.pop(result.task_id, None)
                self._log_end(result, entry, written.get(result.task_id))
            return

    async def _write_rows(
        self, outcomes: list[Outcome], *, substitute: bool = True
    ) -> list[db.Record]:
        try:
            return await self.db.fetch(sql.queries["finish"], self.worker_id, *as_columns(outcomes))
        except errors.QueryError as exc:
            # Bad data in one outcome must not block the others: write them one by one,
            # and store what PostgreSQL refused as that task's error instead.
            if len(outcomes) > 1:
                rows: list[db.Record] = []
                for one in outcomes:
                    rows.extend(await self._write_rows([one]))
                return rows
            if not substitute:
                raise
            o = outcomes[0]
            log.error("outcome.unstorable", task_id=o.task_id, error=str(exc))
            stand_in = Outcome(
                o.task_id, o.attempt, "error", error=f"could not store outcome: {exc}"
            )
            return await self._write_rows([stand_in], substitute=False)

    def _log_end(self, result: Outcome, entry: Running, status: str | None) -> None:
        task = entry.task
        duration_ms = round((trio.current_time() - entry.started) * 1000, 2) if entry.started else 0
        if status is None:
            self.stats["fenced"] += 1
            log.warning(
                "task.outcome_refused",
                task_id=task.id,
                kind=task.kind,
                attempt=task.attempt,
                outcome=result.kind,
                why="no longer owned by this process (lease lost)",
            )
            return
        key = {
            "done": "done",
            "error": "failed",
            "retry": "retried",
            "cancelled": "cancelled",
            "release": "released",
        }[result.kind]
        if status == "cancelled":
            key = "cancelled"
        self.stats[key] += 1
        if self.on_end is not None:
            run_s = trio.current_time() - entry.started if entry.started else 0.0
            self.on_end(task, key, entry.lag_s, run_s)
        log.info(
            "task.end",
            task_id=task.id,
            kind=task.kind,
            attempt=task.attempt,
            outcome=key,
            status=status,
            duration_ms=duration_ms,
            **({"error": result.error} if result.error and key != "done" else {}),
        )

    # --- shutdown --------------------------------------------------------------------

    def stop_claiming(self) -> None:
        self.stopping = True
        self._kick.set()

    def stop_running(self) -> None:
        """Cancel every running handler; its task goes back to pending."""
        for entry in list(self.running.values()):
            if entry.started:
                entry.request_stop("shutdown")

    def close_outcomes(self) -> None:
        self._outcomes_send.close()

    @property
    def in_flight(self) -> int:
        return len(self.running)
