"""The claimer: sleeps until rows may be claimable, then claims them in one statement.

It wakes on a notification (rows appeared), a freed worker (the ledger's doorbell), the
earliest known ``run_at``, or the FETCH_INTERVAL safety-net sweep, and claims up to
FETCH_LIMIT rows, never more than the free workers plus PREFETCH (claimed tasks that wait
in the jobs channel for a worker, their leases kept by the heartbeat; by default as many as
the workers finish in a claim round trip, none for tasks longer than that: ledger.AutoPrefetch).
When a claim comes back short the process records itself as waiting
(``store.go_idle``, see migration 0002): only then do producers' inserts notify.

The writer often claims for it: the statement that records a batch's outcomes also claims
the rows for the workers they free (``store.finish_and_claim``). The writer knows the
claimer only as a :class:`~notifyq.engine.ports.ClaimHandoff`, which the service hands it:
the claimer reserves such a claim (:meth:`Claimer.reserve`), claims nothing itself
meanwhile, and takes its rows as its own (:meth:`Claimer.settle`), short claims and idling
included.

Only rows the process can start now are claimed (:mod:`notifyq.engine.capacity`).

Limited queues (``notifyq.queues``, migration 0006) are claimed by a second statement that
enforces their limits under a lock on the queue's row, and only for free workers (a slot
is never held by a task waiting in this process's buffer). The claimer knows which of its
queues are limited (read at start, on a ``notifyq_queues`` notification and at every
sweep); a process without limited queues runs the plain claim alone, as before. A queue
held back by a limit is left out of the claims and of the next-due question until it can
move: until its next rate token is due (a timer), or until a slot frees or its limits
change (a notification; the process is in ``notifyq.waiters`` like any idle process).
Those decisions are a pure policy (:mod:`notifyq.engine.limited`); the claimer does the
waiting and the statements.
"""

from __future__ import annotations

import math
import time

import trio

from notifyq import db, errors, logs, store, tracing
from notifyq.app import Task
from notifyq.engine.capacity import Capacity
from notifyq.engine.ledger import Attempt, Ledger, holds_connections
from notifyq.engine.limited import LimitedQueues
from notifyq.engine.ports import Reservation
from notifyq.settings import Settings

log = logs.get("notifyq.worker")

# Shortest sleep of the claimer when rows are due but were locked by another claimer.
MIN_CLAIM_GAP_S = 0.005
# Longest single wait while retrying a statement against a database that is away.
MAX_RETRY_SLEEP_S = 2.0
# First and longest pause before go_idle is tried again after a producer held its lock.
IDLE_RETRY_S = (0.002, 0.25)


class Claimer:
    """The stage that claims rows and hands them to the workers (the jobs channel).

    Owns its wake-up state (rows may exist, waiting in ``notifyq.waiters``, the next due
    row, the sweep), its :class:`~notifyq.engine.limited.LimitedQueues`, the jobs channel
    (its only sender) and, in the ledger, ``claimed``, ``limited`` and the entries it adds
    to ``attempts``. It never touches an attempt once handed out (the runner, the heartbeat
    and the writer own its fields then) and never writes an outcome.

    Wake rule: it sleeps on the ledger's doorbell (a notification or a lost connection, a
    freed worker or thread, a written batch, a settled claim of the writer's, shutdown)
    until the next due row or rate token, or the FETCH_INTERVAL sweep; it claims when rows
    may exist and a worker is free (or half a PREFETCH batch fits). While the writer claims
    for it (between :meth:`reserve` and :meth:`settle`, its side of the writer's
    :class:`~notifyq.engine.ports.ClaimHandoff`) it claims nothing.
    """

    def __init__(
        self,
        database: db.Database,
        settings: Settings,
        ledger: Ledger,
        owner: str,
        jobs: trio.MemorySendChannel[Attempt],
        *,
        capacity: Capacity,
    ) -> None:
        self.db = database
        # The pool itself (self.db becomes a held connection while serving): the handlers'
        # workflow reads (Task.parents(), ...) take a pooled connection each.
        self.pool = database
        self.settings = settings
        self.ledger = ledger
        self.owner = owner
        self.queues = tuple(settings.queues)
        # Which kinds, and how many rows, the process can start now.
        self.capacity = capacity
        capacity.on_thread_freed(self.rows_appeared)
        self._jobs = jobs
        self._rows_may_exist = True  # the first claim runs at start
        self._waiting = False  # our notifyq.waiters row is in place
        self._appeared = 0  # counts "rows may have appeared" events
        self._idle_failures = 0
        self._claim_failures = 0
        self._due_at = math.inf
        self._next_sweep = math.inf
        # Queue limits: which of our queues are limited, which are held back and until
        # when (trio clock), whose turn it is.
        self._limits = LimitedQueues(self.queues)
        # A claim is on its way: ours, or one the writer makes for us (`reserve`).
        self._claiming = False
        self._idle_due = False  # the writer's claim came back short: record us as waiting
        self.claims = 0  # claim statements answered so far (ours and the writer's for us)

    @property
    def limited(self) -> frozenset[str]:
        """Those of our queues that have limits (as last read)."""
        return self.ledger.limited

    def rows_appeared(self) -> None:
        """Rows may be claimable now: a notification, a reconnect, an overflow."""
        self._rows_may_exist = True
        self._appeared += 1
        # A notification means a producer removed our waiters row (or we may have missed
        # that): record ourselves again after the next short claim.
        self._waiting = False
        self.ledger.doorbell.ring()

    def on_queue_notification(self, queue: str) -> None:
        if queue in self.queues:
            self._limits.notified(queue)
            self.rows_appeared()

    def on_limits_notification(self, queue: str) -> None:
        """The limits of ``queue`` changed (channel notifyq_queues)."""
        if queue in self.queues:
            self._limits.limits_changed(queue)
            self.rows_appeared()

    async def serve(self) -> None:
        # The claimer is the only sender of jobs: closing on exit lets the workers drain
        # what is queued (releasing it, since we are stopping) and then end.
        ledger, s = self.ledger, self.settings
        # One connection held for the claims (no pool round per statement: db.HeldConnection).
        async with self._jobs, self.db.held(hold=holds_connections(s)) as self.db:
            self._next_sweep = trio.current_time() + s.fetch_interval_s
            while not ledger.stopping:
                if self._claiming:
                    await self._sleep()  # the writer claims for us; it rings when done
                    continue
                if self._idle_due:
                    self._idle_due = False
                    await self._go_idle()
                    continue
                if self._limits.stale:
                    await self._read_limits()
                room = ledger.room
                free = ledger.busy < s.worker_count
                # Claim when a worker is free, or when the PREFETCH buffer ahead of the
                # workers has room for half a batch (fewer, bigger claims).
                worth_it = free or 2 * room >= ledger.capacity
                may_exist = self._rows_may_exist or (self._limits.backlog and free)
                if may_exist and room > 0 and worth_it:
                    await self._claim_once(min(room, s.fetch_limit))
                else:
                    await self._sleep()
            # A claim the writer makes for us may still be on its way: its rows must reach
            # the workers (who give them straight back, as we stop) before the jobs
            # channel closes.
            while self._claiming:
                await ledger.doorbell.wait_until(math.inf)

    async def _read_limits(self) -> None:
        try:
            limited = await store.limited_queues(self.db)
        except errors.DatabaseUnavailable as exc:
            log.warning("limits.read_failed", error=str(exc))
            return  # keep what we knew; the next sweep reads them again
        mine = self._limits.read(limited)
        if mine != self.limited:
            log.info("limits.queues", limited=sorted(mine))
        self.ledger.limited = mine

    async def _claim_once(self, want: int) -> None:
        appeared_before = self._appeared
        kinds, want = self.capacity.claimable(want)
        self._claiming = True
        sent_at = trio.current_time()
        try:
            attempts = await self._claim(want, kinds)
        except (errors.DatabaseUnavailable, trio.TooSlowError) as exc:
            self._claim_failures += 1
            delay = min(MAX_RETRY_SLEEP_S, 0.05 * 2**self._claim_failures)
            log.warning("claim.failed", error=str(exc) or "timed out", retry_in_s=round(delay, 3))
            await trio.sleep(delay)
            return
        finally:
            self._claiming = False
        self._claim_failures = 0
        self.claims += 1
        self.ledger.claim_round_trip(trio.current_time() - sent_at)
        self._hand_out(attempts)
        if len(attempts) < want and self._short_claim(bool(attempts), appeared_before):
            await self._go_idle()

    def _hand_out(self, attempts: list[Attempt]) -> None:
        for attempt in attempts:
            # Never blocks: the channel holds `capacity` jobs and busy <= capacity.
            # Claimed while stopping: the worker gives the row straight back.
            self._jobs.send_nowait(attempt)

    def _short_claim(self, took_rows: bool, appeared_before: int) -> bool:
        """After a claim that took fewer rows than it asked for: whether to go idle now
        (record ourselves as waiting) rather than linger."""
        # Only a wake-up that came before the claim is answered by it: one that arrived
        # while the claim ran may be for a row the claim could not see yet.
        self._rows_may_exist = self._appeared != appeared_before
        linger = self.settings.claim_linger_s
        if took_rows and linger and not self._waiting and not self._rows_may_exist:
            # A short claim that took rows: producers are busy. Claim again after a
            # short linger instead of recording ourselves as waiting: meanwhile their
            # inserts send no notification (each one would, and NOTIFY serialises their
            # commits). An empty claim records us (README, CLAIM_LINGER).
            self._due_at = min(self._due_at, trio.current_time() + linger)
            return False
        return True

    # --- claims the writer makes for us (store.finish_and_claim) ---------------------

    def reserve(self, outcomes: int) -> Reservation | None:
        """How many rows the writer may claim for us in the statement that writes
        ``outcomes`` outcomes: what we would claim once they are written (None: none).

        Only the plain claim (no limited queues), only while rows may exist, and never
        while a claim of ours is on its way; until :meth:`settle`, we claim nothing.
        """
        ledger = self.ledger
        busy = self._claiming or ledger.stopping or self.limited or self._limits.stale
        want = min(ledger.room + outcomes, self.settings.fetch_limit)
        if busy or not self._rows_may_exist or want <= 0:
            return None
        kinds, want = self.capacity.claimable(want)
        self._claiming = True
        return Reservation(want, kinds, self._appeared, trio.current_time())

    def settle(self, reservation: Reservation, rows: list[store.Claimed] | None) -> None:
        """The writer's claim is over: ``rows`` it took for us (None: the statement failed,
        nothing was claimed)."""
        self._claiming = False
        if rows is not None:
            self.claims += 1
            self.ledger.claim_round_trip(trio.current_time() - reservation.sent_at)
            self._hand_out(self._attempts(rows, reservation.sent_at))
            if len(rows) < reservation.want and self._short_claim(bool(rows), reservation.appeared):
                self._idle_due = True
        self.ledger.doorbell.ring()

    async def _go_idle(self) -> None:
        # Asked after the rows went to the workers, so that handlers do not wait for it.
        register = not self._waiting and not self._rows_may_exist
        appeared_before = self._appeared
        try:
            idle = await store.go_idle(
                self.db,
                owner=self.owner,
                queues=self.queues,
                kinds=self.capacity.claimable(self.settings.fetch_limit)[0],
                register=register,
                due_queues=self._limits.due_queues() if self.limited else None,
            )
            registered, due_in = idle.registered, idle.due_in_s
        except errors.DatabaseUnavailable:
            registered, due_in = False, MAX_RETRY_SLEEP_S  # look again soon; the sweep too
        if register:
            if registered and self._appeared == appeared_before:
                # Every producer that did not see our row has committed: one more claim
                # sees its rows; every later producer notifies.
                self._waiting = True
                self._idle_failures = 0
            elif not registered:
                # A producer was between its trigger and its commit: its rows may need
                # no notification. Claim again after a short pause, then try again.
                self._idle_failures += 1
                first, longest = IDLE_RETRY_S
                pause = min(first * 2 ** min(self._idle_failures, 10), longest)
                due_in = pause if due_in is None else min(due_in, pause)
            self._rows_may_exist = self._rows_may_exist or registered
            if registered:
                # Now that a freed slot wakes us, look at every queue once more.
                self._limits.registered()
        next_token = self._limits.next_token_at()
        if next_token != math.inf:
            token_in = max(0.0, next_token - trio.current_time())
            due_in = token_in if due_in is None else min(due_in, token_in)
        if due_in is None:
            self._due_at = math.inf
        else:
            self._due_at = trio.current_time() + max(due_in, MIN_CLAIM_GAP_S)

    async def _sleep(self) -> None:
        """Until a notification, a freed worker, the next due row or the sweep."""
        await self.ledger.doorbell.wait_until(min(self._due_at, self._next_sweep))
        now = trio.current_time()
        if now >= self._next_sweep:
            self._rows_may_exist = True  # the safety net for notifications lost on the way
            self._waiting = False
            self._next_sweep = now + self.settings.fetch_interval_s
            self._limits.swept()
        if now >= self._due_at:
            self._rows_may_exist = True
            self._due_at = math.inf

    async def _claim(self, want: int, kinds: list[str]) -> list[Attempt]:
        lease_s = self.settings.lease_s
        started, started_ns = time.perf_counter(), time.time_ns()
        sent_at = trio.current_time()
        # Shielded: cancelling a claim after the server committed it would leave rows
        # in_progress that nobody runs until their lease expires. The time limit still
        # bounds it (the server then cancels the statement and nothing was claimed).
        with trio.CancelScope(shield=True), trio.fail_after(lease_s / 2):
            rows = await self._fetch(want, kinds, lease_s)
        tracer = tracing.active
        if tracer is not None and rows:
            # A span only for a claim that took rows: an idle process records no traces.
            tracer.claimed(self.queues, started_ns, [(row.id, row.meta) for row in rows])
        attempts = self._attempts(rows, sent_at)
        if rows:
            log.debug("claim", rows=len(rows), ms=round((time.perf_counter() - started) * 1000, 2))
        return attempts

    def _attempts(self, rows: list[store.Claimed], sent_at: float) -> list[Attempt]:
        """The attempts ``rows`` start (a claim sent at ``sent_at``), in the ledger."""
        lease_s = self.settings.lease_s
        attempts = []
        for row in rows:
            task = Task(
                row.id,
                row.queue,
                row.kind,
                row.payload,
                row.attempt,
                row.max_attempts,
                row.priority,
                row.meta,
                database=self.pool,  # for the workflow reads, made only if the handler asks
            )
            attempt = Attempt(task, sent_at + lease_s, row.lag_s, row.timeout_s)
            attempt.undecodable, attempt.token = row.undecodable, row.token
            self.ledger.attempts[attempt.key] = attempt
            attempts.append(attempt)
        self.ledger.claimed += len(rows)
        return attempts

    async def _fetch(self, want: int, kinds: list[str], lease_s: float) -> list[store.Claimed]:
        if self.limited:
            return await self._claim_with_limits(want, kinds, lease_s)
        return await store.claim(
            self.db, queues=self.queues, kinds=kinds, limit=want, owner=self.owner, lease_s=lease_s
        )

    async def _claim_with_limits(
        self, want: int, kinds: list[str], lease_s: float
    ) -> list[store.Claimed]:
        now = trio.current_time()
        free_workers = self.settings.worker_count - self.ledger.busy
        plan = self._limits.plan(now=now, want=want, free_workers=free_workers)
        got = await store.claim_with_limits(
            self.db,
            limited=plan.limited,
            limited_limit=plan.limited_limit,
            unlimited=plan.unlimited,
            kinds=kinds,
            limit=plan.limit,
            owner=self.owner,
            lease_s=lease_s,
        )
        took = [row.queue for row in got.rows]
        self._limits.claimed(plan, now=now, held_s=got.held_s, took=took)
        return got.rows
