"""The workers: WORKER_COUNT tasks that take claimed attempts and run their handlers.

Each handler runs in a task of its own, in its own cancel scope, so that cancellation,
time limits and shutdown can stop it, and one that ignores cancellation is abandoned
instead of holding a worker forever. What the handler did becomes
:class:`~notifyq.engine.verdict.Facts`; :func:`~notifyq.engine.verdict.judge` decides the
outcome, which goes to the writer.

Where a handler runs depends on what it is (:mod:`notifyq.engine.runtimes`): an ``async
def`` on trio, a plain ``def`` in a worker thread (abandoned, not interrupted, when it must
stop), a ``runtime="asyncio"`` coroutine on the process's asyncio loop. Verdicts are the
same for all three.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any

import trio

from notifyq import budget, db, errors, logs, tracing
from notifyq.app import App, Handler, Task
from notifyq.engine.ledger import CANCEL_GRACE_S, Attempt, Ledger
from notifyq.engine.runtimes import Threads, run_asyncio
from notifyq.engine.transactions import HandlerTransaction, Transactions
from notifyq.engine.verdict import Facts, Retries, judge, no_handler
from notifyq.settings import Settings
from notifyq.store import Outcome, Verdict
from notifyq.vocabulary import CANCEL_CHANNEL

log = logs.get("notifyq.worker")


# How often the overseer looks for handlers to abandon: one is abandoned between
# CANCEL_GRACE_S and CANCEL_GRACE_S + OVERSEE_S after its time limit or stop.
OVERSEE_S = 0.25


class Runner:
    """WORKER_COUNT workers; each runs its attempts' handlers itself, one at a time.

    A worker calls the handler in its own task (no task, event or scope per attempt beyond
    the attempt's cancel scope, whose deadline is the time limit). A handler that ignores
    cancellation for CANCEL_GRACE_S after its limit or stop is abandoned by the overseer:
    its outcome goes to the writer without it, and a new worker takes the stuck one's
    place; the stuck worker ends when its handler does, and its late result goes nowhere.
    """

    def __init__(
        self,
        settings: Settings,
        app: App,
        ledger: Ledger,
        jobs: trio.MemoryReceiveChannel[Attempt],
        outcomes: trio.MemorySendChannel[tuple[Outcome, Attempt]],
        *,
        loop: Any = None,
        database: db.Database | None = None,
        owner: str = "",
    ) -> None:
        self.settings = settings
        # Transactional handlers: each holds a pool connection (engine/transactions.py);
        # their outcomes are written here, under this owner, not by the writer.
        self.transactions = Transactions(database, budget.transactional_slots(settings))
        self.owner = owner
        # The process's trio-asyncio loop (the database's), for runtime="asyncio" handlers.
        self.loop = loop
        # Sync handlers' threads: at most WORKER_COUNT at once, abandoned ones included.
        self.threads = Threads(settings.worker_count)
        self.app = app
        self.ledger = ledger
        self.retries = Retries(settings.retry_base_s, settings.retry_max_s)
        self._max_result = settings.max_result_bytes
        self.abandoned = 0  # handlers that ignored cancellation and were left running
        self._jobs = jobs
        self._outcomes = outcomes
        self._debug = settings.log_level == "debug"
        self._workers = 0  # workers not abandoned and not ended
        self._all_ended = trio.Event()

    async def serve(self, handlers: trio.Nursery) -> None:
        """Run WORKER_COUNT workers in ``handlers`` until the claimer closes the jobs
        channel and each has ended (abandoned ones aside)."""
        for _ in range(self.settings.worker_count):
            self._start_worker(handlers)
        async with trio.open_nursery() as overseer:
            overseer.start_soon(self._oversee, handlers)
            await self._all_ended.wait()
            overseer.cancel_scope.cancel()

    def _start_worker(self, handlers: trio.Nursery) -> None:
        self._workers += 1
        handlers.start_soon(self._serve_worker, handlers, name="notifyq worker")

    async def _serve_worker(self, handlers: trio.Nursery) -> None:
        """One worker: run attempts until the jobs channel is closed and empty."""
        async for attempt in self._jobs:
            if self.ledger.stopping:
                # Claimed but never started: straight back to pending.
                task = attempt.task
                self._hand_over(attempt, Outcome(task.id, task.attempt, Verdict.RELEASED))
                continue
            await self._run(attempt, handlers)
            if attempt.abandoned:
                return  # the overseer gave up on this handler; another worker took over
        self._workers -= 1
        if self._workers == 0:
            self._all_ended.set()

    async def _oversee(self, handlers: trio.Nursery) -> None:
        """Abandon handlers that ignore cancellation (see the class)."""
        while True:
            await trio.sleep(OVERSEE_S)
            give_up = trio.current_time() - CANCEL_GRACE_S
            for attempt in list(self.ledger.attempts.values()):
                if attempt.started and not attempt.over and attempt.stop_at <= give_up:
                    self._abandon(attempt, handlers)

    def _abandon(self, attempt: Attempt, handlers: trio.Nursery) -> None:
        task = attempt.task
        self.abandoned += 1
        log.error(
            "task.abandoned",
            task_id=task.id,
            kind=task.kind,
            reason="the handler ignored cancellation",
        )
        attempt.abandoned = True
        self._hand_over(attempt, judge(self._facts(attempt, None), self.retries))
        # The stuck worker leaves the count; a new one takes its place.
        self._workers -= 1
        self._start_worker(handlers)

    def on_cancel_notification(self, payload: str) -> None:
        """``notifyq_cancel``: stop the running attempt of that task, if it is ours."""
        try:
            task_id = int(payload)
        except ValueError:
            log.warning("notification.bad_payload", channel=CANCEL_CHANNEL, payload=payload[:100])
            return
        # A notification is only a hint (any database role may send one): the lease keeper
        # reads the row now and stops the attempt only if its cancel was really asked.
        if self.ledger.holds(task_id):
            self.ledger.recheck.ring()

    def stop_running(self) -> None:
        """Cancel every running handler; its task goes back to pending."""
        for attempt in list(self.ledger.attempts.values()):
            if attempt.started and not attempt.over:
                attempt.request_stop("shutdown")

    async def _run(self, attempt: Attempt, handlers: trio.Nursery) -> None:
        task = attempt.task
        handler = self.app.get(task.kind)
        if handler is None:
            # Every claim takes only the process's kinds, so this is not expected; should it
            # happen, another process may know the kind (a rolling deploy): a failure that
            # is retried.
            self._hand_over(attempt, no_handler(task, self.retries))
            return
        if attempt.undecodable is not None:
            # Retrying would not help: the task ends at once, and nothing else is touched.
            error = attempt.undecodable
            self._hand_over(attempt, Outcome(task.id, task.attempt, Verdict.FAILED, error=error))
            return
        timeout_s = attempt.timeout_s or handler.timeout_s or self.settings.task_timeout_s
        attempt.timeout_s = timeout_s
        attempt.started = trio.current_time()
        if timeout_s:
            attempt.stop_at = attempt.started + timeout_s
            attempt.handler_scope.deadline = attempt.stop_at
        if self._debug:  # the logger proxy costs ~5 µs per call even when filtered out
            log.debug(
                "task.start",
                task_id=task.id,
                kind=task.kind,
                attempt=task.attempt,
                lag_ms=round(attempt.lag_s * 1000, 2),
            )
        tracer = tracing.active
        if handler.transactional:
            if tracer is None:
                decided = await self._run_in_transaction(attempt, handler, handlers)
            else:
                with tracer.attempt(
                    task.id, task.kind, task.queue, task.attempt, task.meta
                ) as span:
                    decided = await self._run_in_transaction(attempt, handler, handlers)
                    if decided is not None:
                        tracer.outcome(span, decided.verdict.value, decided.error)
            if decided is not None:
                # The transaction is over (committed or rolled back): the writer hears now.
                self._hand_over(attempt, decided)
            return
        if tracer is None:
            box = await self.call(attempt, handler, handlers)
            if not attempt.over:
                self._hand_over(
                    attempt, judge(self._facts(attempt, box), self.retries, self._max_result)
                )
            return
        # Current while the handler runs: the handler's task (and thread, and asyncio task)
        # copies this context, so its own spans are children of the attempt's.
        with tracer.attempt(task.id, task.kind, task.queue, task.attempt, task.meta) as span:
            box = await self.call(attempt, handler, handlers)
            if attempt.over:
                return
            outcome = judge(self._facts(attempt, box), self.retries, self._max_result)
            tracer.outcome(span, outcome.verdict.value, outcome.error)
        self._hand_over(attempt, outcome)

    async def _invoke(self, handler: Handler, task: Task) -> Any:
        if handler.runtime == "trio":
            return await handler.fn(task)
        if handler.runtime == "thread":
            return await self.threads.run(handler.fn, task)
        if self.loop is None:
            raise RuntimeError("runtime='asyncio' handlers need the process's asyncio loop")
        return await run_asyncio(self.loop, handler.fn, task)

    async def call(
        self,
        attempt: Attempt,
        handler: Handler,
        handlers: trio.Nursery,
        invoke: Callable[[], Awaitable[Any]] | None = None,
    ) -> tuple[bool, Any] | None:
        """Run the handler (or ``invoke()``, which runs it): (returned, value or
        exception); None if its own cancel scope stopped it. (The loop watchdog finds the
        running task by this function's name.)"""
        task = attempt.task
        with attempt.handler_scope:
            try:
                if invoke is not None:
                    return True, await invoke()
                return True, await self._invoke(handler, task)
            except BaseException as exc:
                if _is_our_cancellation(exc, attempt.handler_scope, handlers):
                    raise  # the scope that was cancelled catches it
                # Any other exception, KeyboardInterrupt, SystemExit and a stray
                # trio.Cancelled included, is this attempt's failure: it must never end
                # the process (tests/integration/test_poison.py).
                return False, exc
        return None

    async def _run_in_transaction(
        self, attempt: Attempt, handler: Handler, handlers: trio.Nursery
    ) -> Outcome | None:
        """A transactional handler (engine/transactions.py): ``done`` is written and
        committed here with the handler's writes; any other outcome goes to the writer once
        the transaction has rolled back (the caller hands it over after this returns), so
        that a retry never meets this run's rows. None: abandoned, handed over already."""
        task = attempt.task
        opened: list[HandlerTransaction] = []  # the one transaction, once open
        async with AsyncExitStack() as stack:

            async def invoke() -> Any:
                # Inside the handler's cancel scope: a cancel or a time limit also stops the
                # wait for a connection (transactional_slots).
                tx = await stack.enter_async_context(self.transactions.open())
                opened.append(tx)
                return await self._invoke(
                    handler, replace(task, transaction=tx.for_runtime(handler.runtime))
                )

            box = await self.call(attempt, handler, handlers, invoke)
            if attempt.over:
                return None  # abandoned: its outcome went to the writer; the exit rolls back
            outcome = judge(self._facts(attempt, box), self.retries, self._max_result)
            # A handler that returned ends done even when a stop was asked meanwhile (as
            # any handler): its writes commit with that done; a lost lease is refused by
            # the fence in commit_done, and then nothing of this run is written.
            if outcome.verdict is Verdict.DONE and opened:
                try:
                    # Shielded like the writer's writes: once the handler is done, its
                    # outcome must land (or be known lost) even while the process stops.
                    with trio.CancelScope(shield=True), trio.fail_after(self.settings.lease_s):
                        status = await opened[0].commit_done(
                            owner=self.owner, outcome=replace(outcome, token=attempt.token)
                        )
                except (errors.QueryError, errors.StatementAborted) as exc:
                    # Nothing committed (the outcome or the handler's writes were refused,
                    # or a deadlock aborted the transaction): a failure, retried as any.
                    box = (False, exc)
                    outcome = judge(self._facts(attempt, box), self.retries, self._max_result)
                except (errors.DatabaseUnavailable, trio.TooSlowError) as exc:
                    log.error(
                        "outcome.dropped",
                        task_id=task.id,
                        outcome=outcome.verdict.value,
                        error=str(exc) or type(exc).__name__,
                        why="the transaction's connection was lost: the lease decides",
                    )
                    attempt.transacted = "lost"
                else:
                    attempt.transacted = "committed" if status is not None else "fenced"
        return outcome

    def _facts(self, attempt: Attempt, box: tuple[bool, Any] | None) -> Facts:
        """How the attempt ended; ``box`` None: stopped (or abandoned) without a result."""
        task, timeout_s = attempt.task, attempt.timeout_s
        overran = timeout_s is not None and trio.current_time() - attempt.started >= timeout_s
        if overran and attempt.stop_reason is None:
            attempt.stop_reason = "timeout"
        returned, value = box if box is not None else (False, None)
        return Facts(
            task.id,
            task.attempt,
            task.max_attempts,
            returned=returned,
            value=value if returned else None,
            raised=None if returned else value,
            stopped=attempt.stop_reason,
            overran=overran,
            timeout_s=timeout_s,
        )

    def _hand_over(self, attempt: Attempt, outcome: Outcome) -> None:
        """Give the outcome to the writer and free the worker slot."""
        if attempt.stop_reason == "lease_lost":
            # Another process owns the task now; the fenced write would be refused anyway.
            log.warning("task.lease_lost", task_id=attempt.task.id, outcome=outcome.verdict.value)
        attempt.over = True
        if attempt.started:
            self.ledger.handler_ran(trio.current_time() - attempt.started)
        self._outcomes.send_nowait((outcome, attempt))
        self.ledger.handed_over += 1
        self.ledger.doorbell.ring()


def _is_our_cancellation(
    exc: BaseException, scope: trio.CancelScope, handlers: trio.Nursery
) -> bool:
    """Whether ``exc`` is trio cancelling the handler (its scope, or the handlers' nursery
    at the very end), as opposed to a handler raising Cancelled on its own."""
    if not (scope.cancel_called or handlers.cancel_scope.cancel_called):
        return False
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        # Only Cancelled inside: trio's. Anything else inside is the handler's failure.
        return exc.split(trio.Cancelled)[1] is None
    return False
