"""The writer: records outcomes in batches, with one fenced statement per batch.

Writes are shielded from cancellation and retried while the database is away, so that an
outcome is never dropped while this process still owns the task. An outcome whose lease
ran out meanwhile is given up loudly (the reaper hands the task to another attempt).

The same statement may claim the next rows for the workers the outcomes free, through a
:class:`~notifyq.engine.ports.ClaimHandoff` the service hands it (the claimer): the writer
never imports the claimer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import trio

from notifyq import db, errors, logs, store, tracing
from notifyq.app import Task
from notifyq.engine.ledger import Attempt, Ledger, holds_connections
from notifyq.engine.ports import ClaimHandoff
from notifyq.settings import Settings
from notifyq.store import Outcome, Verdict

log = logs.get("notifyq.worker")

MAX_BATCH = 1000
MAX_RETRY_SLEEP_S = 2.0

# Called once an attempt's outcome is recorded: (task, verdict as stored, lag_s, run_s).
EndObserver = Callable[[Task, str, float, float], None]


@dataclass(frozen=True, slots=True)
class Tally:
    """Outcomes this process wrote, by verdict, and the writes the fence refused."""

    done: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0
    released: int = 0
    fenced: int = 0
    snoozed: int = 0


class Writer:
    """The stage that records outcomes: the only receiver of the outcomes channel.

    Owns the outcomes channel, its tally, and in the ledger ``written`` and the removal of
    each attempt from ``attempts`` once its outcome is written or given up. It never
    changes a running attempt, and claims only through its :class:`ClaimHandoff`, whose
    reservation it settles exactly once per statement (written or failed).

    Wake rule: it waits on the outcomes channel alone and writes whatever is queued as one
    batch (up to MAX_BATCH); the service closes the channel at shutdown, which ends it
    once every outcome is written. After each batch it rings the ledger's doorbell: room freed.
    """

    def __init__(
        self,
        database: db.Database,
        settings: Settings,
        ledger: Ledger,
        owner: str,
        outcomes: trio.MemoryReceiveChannel[tuple[Outcome, Attempt]],
        *,
        handoff: ClaimHandoff | None = None,
    ) -> None:
        self.db = database
        # Claims for the workers the outcomes free, in the same statement (None: never).
        self.handoff = handoff
        self.settings = settings
        self.ledger = ledger
        self.owner = owner
        self._outcomes = outcomes
        self._counts = dict.fromkeys((*Verdict, "fenced"), 0)
        self._observers: list[EndObserver] = []

    def tally(self) -> Tally:
        c = self._counts
        return Tally(
            c[Verdict.DONE],
            c[Verdict.FAILED],
            c[Verdict.RETRIED],
            c[Verdict.CANCELLED],
            c[Verdict.RELEASED],
            c["fenced"],
            c[Verdict.SNOOZED],
        )

    def observe_ends(self, observer: EndObserver) -> None:
        """Call ``observer`` for every attempt whose outcome is written."""
        self._observers.append(observer)

    async def serve(self, force: trio.Event) -> None:
        """Write outcomes until the workers are done and every outcome is written."""
        # One connection held for the writes (no pool round per statement: db.HeldConnection).
        async with self.db.held(hold=holds_connections(self.settings)) as self.db:
            await self._serve(force)

    async def _serve(self, force: trio.Event) -> None:
        async for first in self._outcomes:
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._outcomes.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            written = len(batch)
            if any(a.transacted for _, a in batch):
                batch = await self._record_transacted(batch)
            if batch:
                await self._write(batch, force)
            self.ledger.written += written
            self.ledger.doorbell.ring()

    async def _write(self, batch: list[tuple[Outcome, Attempt]], force: trio.Event) -> None:
        failures = 0
        # Outcomes of limited queues free slots: the same hop wakes whoever waits for one.
        limited = self.ledger.limited
        freed = sorted({a.task.queue for _, a in batch} & limited) if limited else []
        while batch:
            try:
                # Shielded: an outcome in flight must land even while the process stops.
                with trio.CancelScope(shield=True), trio.fail_after(self.settings.lease_s):
                    written = await self._write_and_claim(
                        [replace(o, token=a.token) for o, a in batch], freed
                    )
            except (errors.DatabaseUnavailable, trio.TooSlowError) as exc:
                failures += 1
                batch = self._give_up_expired(batch, exc, force)
                if batch:
                    delay = min(MAX_RETRY_SLEEP_S, 0.05 * 2**failures)
                    log.warning(
                        "outcome.write_failed",
                        tasks=len(batch),
                        error=str(exc) or type(exc).__name__,
                        retry_in_s=round(delay, 3),
                    )
                    with trio.move_on_after(delay):
                        await force.wait()
                continue
            ends = []
            for outcome, attempt in batch:
                self.ledger.attempts.pop(attempt.key, None)
                end = self._end(outcome, attempt, written.get(attempt.key))
                if end is not None:
                    ends.append(end)
            # One `task.end` line per task, written as one block per batch.
            logs.info_many(log, "task.end", ends)
            return

    async def _record_transacted(
        self, batch: list[tuple[Outcome, Attempt]]
    ) -> list[tuple[Outcome, Attempt]]:
        """Record the outcomes transactional handlers wrote in their own transactions
        (engine/transactions.py: no batching for those), and wake whoever waits for the
        slots those freed in limited queues; the others, to be written."""
        rest, ends = [], []
        freed: set[str] = set()
        for outcome, attempt in batch:
            if attempt.transacted is None:
                rest.append((outcome, attempt))
                continue
            self.ledger.attempts.pop(attempt.key, None)
            if attempt.transacted == "lost":
                continue  # logged by the runner; the reaper gives the task a new attempt
            status = store.Status.DONE if attempt.transacted == "committed" else None
            if status is not None and attempt.task.queue in self.ledger.limited:
                freed.add(attempt.task.queue)
            end = self._end(outcome, attempt, status)
            if end is not None:
                ends.append(end)
        logs.info_many(log, "task.end", ends)
        if freed:
            try:
                with trio.CancelScope(shield=True), trio.fail_after(self.settings.lease_s):
                    await store.wake_for_freed_slots(self.db, queues=sorted(freed))
            except (errors.DatabaseUnavailable, trio.TooSlowError) as exc:
                # The waiting processes' sweep (FETCH_INTERVAL) finds the slot instead.
                log.warning("slots_freed.failed", queues=sorted(freed), error=str(exc))
        return rest

    def _give_up_expired(
        self, batch: list[tuple[Outcome, Attempt]], exc: BaseException, force: trio.Event
    ) -> list[tuple[Outcome, Attempt]]:
        now = trio.current_time()
        kept = []
        for outcome, attempt in batch:
            if attempt.lease_until <= now or force.is_set():
                # The lease has run out (or the operator insists on stopping): the reaper
                # will give the task to another attempt. Say so loudly.
                log.error(
                    "outcome.dropped",
                    task_id=outcome.task_id,
                    outcome=outcome.verdict.value,
                    error=str(exc) or type(exc).__name__,
                    why="lease expired" if not force.is_set() else "forced stop",
                )
                self.ledger.attempts.pop(attempt.key, None)
            else:
                kept.append((outcome, attempt))
        return kept

    async def _write_and_claim(
        self, outcomes: list[Outcome], freed: list[str]
    ) -> dict[tuple[int, int], str]:
        """Write the outcomes; claim the claimer's next rows in the same statement when it
        wants some (no limited queues, no tracing: those keep their own statements)."""
        handoff = self.handoff
        reservation = None
        if handoff is not None and not freed and tracing.active is None:
            reservation = handoff.reserve(len(outcomes))
        if handoff is None or reservation is None:
            return await self._write_rows(outcomes, freed=freed)
        claimed = None
        try:
            exchange = await store.finish_and_claim(
                self.db,
                owner=self.owner,
                outcomes=outcomes,
                queues=handoff.queues,
                kinds=reservation.kinds,
                limit=reservation.want,
                lease_s=self.settings.lease_s,
            )
            claimed = exchange.claimed
            return exchange.written
        except errors.QueryError:
            # Bad data in an outcome: nothing was written or claimed. The plain path
            # writes them one by one and stores what PostgreSQL refused.
            handoff.settle(reservation, None)
            reservation = None
            return await self._write_rows(outcomes, freed=freed)
        finally:
            if reservation is not None:
                handoff.settle(reservation, claimed)

    async def _write_rows(
        self, outcomes: Sequence[Outcome], *, substitute: bool = True, freed: Sequence[str] = ()
    ) -> dict[tuple[int, int], str]:
        try:
            tracer = tracing.active
            if tracer is None:
                return await store.finish(
                    self.db, owner=self.owner, outcomes=outcomes, freed_queues=freed
                )
            with tracer.write([(o.task_id, o.verdict.value) for o in outcomes]):
                return await store.finish(
                    self.db, owner=self.owner, outcomes=outcomes, freed_queues=freed
                )
        except errors.QueryError as exc:
            # Bad data in one outcome must not block the others: write them one by one,
            # and store what PostgreSQL refused as that task's error instead.
            if len(outcomes) > 1:
                written: dict[tuple[int, int], str] = {}
                for one in outcomes:
                    written |= await self._write_rows([one], freed=freed)
                return written
            if not substitute:
                raise
            o = outcomes[0]
            log.error("outcome.unstorable", task_id=o.task_id, error=str(exc))
            stand_in = Outcome(
                o.task_id,
                o.attempt,
                Verdict.FAILED,
                error=f"could not store outcome: {exc}",
                token=o.token,
            )
            return await self._write_rows([stand_in], substitute=False)

    def _end(self, outcome: Outcome, attempt: Attempt, status: str | None) -> dict[str, Any] | None:
        """Count a written outcome and tell the observers; its `task.end` fields (None:
        the fence refused the write, which is logged here)."""
        task = attempt.task
        if status is None:
            self._counts["fenced"] += 1
            log.warning(
                "task.outcome_refused",
                task_id=task.id,
                kind=task.kind,
                attempt=task.attempt,
                outcome=outcome.verdict.value,
                why="no longer owned by this process (lease lost)",
            )
            return None
        verdict = outcome.verdict
        if status == store.Status.CANCELLED:
            verdict = Verdict.CANCELLED
        elif status == store.Status.ERROR:
            verdict = Verdict.FAILED  # a snooze beyond the task's max_snoozes
        self._counts[verdict] += 1
        run_s = trio.current_time() - attempt.started if attempt.started else 0.0
        for observer in self._observers:
            observer(task, verdict.value, attempt.lag_s, run_s)
        end = {
            "task_id": task.id,
            "kind": task.kind,
            "attempt": task.attempt,
            "outcome": verdict.value,
            "status": status,
            "duration_ms": round(run_s * 1000, 2),
        }
        if outcome.error and verdict != Verdict.DONE:
            end["error"] = outcome.error
        return end
