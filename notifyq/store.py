"""The one data-access module: a typed function for every statement notifyq runs.

Every statement lives in ``queries.sql`` under a name; this module is the only place that
looks them up and passes their parameters, so callers read ``await store.claim(...)`` with
keyword arguments and get typed rows back. ``db.py`` (the driver wrapper), ``migrations.py``
and the ``bench`` package aside, no other module runs SQL or holds asyncpg objects.

The vocabulary the SQL and the Python share is defined here once: :class:`Status` (the
``status`` column's values, pinned to the table's CHECK constraint by
``tests/integration/test_store.py``) and :class:`Verdict` (what one attempt ended as, the
``finish`` statement's ``outcome`` values, which are also the history's event names).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from notifyq import db, errors, limits, schedules, sql
from notifyq.version import __version__

MAX_ERROR_CHARS = 4000
PREVIEW_CHARS = 4096
"""Lists show a payload or result whose JSON text is longer than this as a preview."""

Row = Mapping[str, Any]
"""A display row (tasks, workers, history) as the HTTP models and the CLI read it."""


class Status(StrEnum):
    """The ``notifyq.tasks.status`` values."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"


ENDED: frozenset[str] = frozenset({Status.DONE, Status.ERROR, Status.CANCELLED})
LIVE: frozenset[str] = frozenset({Status.PENDING, Status.IN_PROGRESS})


class Verdict(StrEnum):
    """What one attempt ended as: the ``finish`` statement's outcomes and the event names.

    ``retried`` and ``released`` put the task back to pending (a released attempt is not
    counted: shutdown, lease lost); a retry or release of a task whose cancel was asked
    ends it ``cancelled`` instead.
    """

    DONE = "done"
    FAILED = "failed"
    RETRIED = "retried"
    CANCELLED = "cancelled"
    RELEASED = "released"


# --- the engine -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    """A row the claim took: the attempt it starts."""

    id: int
    queue: str
    kind: str
    payload: Any
    priority: int
    attempt: int
    max_attempts: int
    timeout_s: float | None
    lag_s: float
    undecodable: str | None = None  # why the payload could not be decoded (payload is None)
    meta: Any = None  # the task's meta column (trace context); NULL or undecodable: None


def _decode_payload(text: str) -> tuple[Any, str | None]:
    """A claimed row's payload; a payload Python cannot decode is that row's problem."""
    try:
        return json.loads(text), None
    except RecursionError:
        return None, "payload cannot be decoded: nested too deeply for Python's JSON decoder"
    except ValueError as exc:  # not expected from jsonb text; never let it fail the batch
        return None, f"payload cannot be decoded: {exc}"


def _decode_meta(text: str | None) -> Any:
    """A claimed row's meta; one that cannot be decoded is dropped (it is only a hint)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except (RecursionError, ValueError):
        return None


async def claim(
    database: db.Database, *, queues: Sequence[str], limit: int, owner: str, lease_s: float
) -> list[Claimed]:
    """Claim up to ``limit`` due rows of ``queues`` for ``owner`` (see queries.sql)."""
    rows = await database.fetch(sql.queries["claim"], list(queues), limit, owner, lease_s)
    return [_claimed(r) for r in rows]


def _claimed(r: Any) -> Claimed:
    payload, undecodable = _decode_payload(r["payload_json"])
    return Claimed(
        r["id"],
        r["queue"],
        r["kind"],
        payload,
        r["priority"],
        r["attempts"],
        r["max_attempts"],
        r["timeout_s"],
        r["lag_s"],
        undecodable,
        _decode_meta(r["meta_json"]),
    )


@dataclass(frozen=True, slots=True)
class LimitedClaim:
    """What a claim over limited queues took, and which queues a limit held back."""

    rows: list[Claimed]
    held_s: dict[str, float]  # queue -> seconds until its next rate token; inf: a slot


async def claim_with_limits(
    database: db.Database,
    *,
    limited: Sequence[str],
    limited_limit: int,
    unlimited: Sequence[str],
    limit: int,
    owner: str,
    lease_s: float,
) -> LimitedClaim:
    """Claim up to ``limited_limit`` rows of the ``limited`` queues within their limits
    (claim_limited), then up to ``limit`` in all with ``unlimited`` (the plain claim); one hop."""
    limited_list, unlimited_list = list(limited), list(unlimited)

    async def statements(conn: db.Connection) -> LimitedClaim:
        rows: list[Claimed] = []
        held: dict[str, float] = {}
        if limited_list and limited_limit > 0:
            for r in await conn.fetch(
                sql.queries["claim_limited"], limited_list, limited_limit, owner, lease_s
            ):
                if r["id"] is None:
                    held[r["queue"]] = r["held_s"]
                else:
                    rows.append(_claimed(r))
        if unlimited_list and limit > len(rows):
            rows.extend(
                _claimed(r)
                for r in await conn.fetch(
                    sql.queries["claim"], unlimited_list, limit - len(rows), owner, lease_s
                )
            )
        return LimitedClaim(rows, held)

    return await database.run(statements)


async def limited_queues(database: db.Database) -> frozenset[str]:
    """The queues that have a limit (paused counts as one)."""
    return frozenset(r["name"] for r in await database.fetch(sql.queries["limited_queues"]))


@dataclass(frozen=True, slots=True)
class Idle:
    """What a claimer learns when a claim came back short."""

    registered: bool  # our waiters row is in place and no producer was mid-commit
    due_in_s: float | None  # seconds until the earliest pending row is due; None: none


async def go_idle(
    database: db.Database,
    *,
    owner: str,
    queues: Sequence[str],
    register: bool,
    due_queues: Sequence[str] | None = None,
) -> Idle:
    """Record ``owner`` as waiting for ``queues`` (when ``register``) and read the next due
    time of ``due_queues`` (default: ``queues``), one hop."""
    queue_list = list(queues)
    due_list = queue_list if due_queues is None else list(due_queues)

    async def statements(conn: db.Connection) -> Idle:
        registered = False
        if register:
            registered = bool(await conn.fetchval(sql.queries["go_idle"], owner, queue_list))
        due_in = None
        if due_list:
            due_in = await conn.fetchval(sql.queries["next_due"], due_list)
        return Idle(registered, due_in)

    return await database.run(statements)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt's verdict as the ``finish`` statement writes it."""

    task_id: int
    attempt: int
    verdict: Verdict
    result_json: str | None = None
    error: str | None = None
    delay_s: float = 0.0


async def finish(
    database: db.Database,
    *,
    owner: str,
    outcomes: Sequence[Outcome],
    freed_queues: Sequence[str] = (),
) -> dict[int, str]:
    """Write the outcomes of ``owner``'s attempts (fenced); returns {task id: new status}.

    An id missing from the result was no longer owned by ``owner`` at that attempt. With
    ``freed_queues`` (limited queues among the outcomes' queues) the processes waiting for
    a slot of those are woken after the write, in the same hop (``slots_freed``).
    The outcomes go in id order, as the heartbeat's ids do, so that the two lock the rows
    they both write in the same order and do not deadlock (found by `notifyq bench harsh
    --scenario kill-9`); one that happens anyway is a StatementAborted, retried.
    """
    outcomes = sorted(outcomes, key=lambda o: o.task_id)
    args = (
        owner,
        [o.task_id for o in outcomes],
        [o.attempt for o in outcomes],
        [o.verdict.value for o in outcomes],
        [o.result_json for o in outcomes],
        [clean_text(o.error) if o.error is not None else None for o in outcomes],
        [o.delay_s for o in outcomes],
    )
    if not freed_queues:
        rows = await database.fetch(sql.queries["finish"], *args)
        return {r["id"]: r["status"] for r in rows}
    freed = list(freed_queues)

    async def statements(conn: db.Connection) -> dict[int, str]:
        # Two transactions: the wake-up reads the waiters after the slots are free, so a
        # process either is woken or registered after the write (and claims once more).
        written = await conn.fetch(sql.queries["finish"], *args)
        await conn.execute(sql.queries["slots_freed"], freed)
        return {r["id"]: r["status"] for r in written}

    return await database.run(statements)


def clean_text(text: str) -> str:
    """Text that PostgreSQL accepts (no NUL), cut to a readable length."""
    text = text.replace("\x00", "\\0")
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 15] + "… (truncated)"
    return text


@dataclass(frozen=True, slots=True)
class Registration:
    """One process's row in the worker registry."""

    owner: str
    queues: tuple[str, ...]
    concurrency: int
    host: str = socket.gethostname()
    pid: int = os.getpid()


async def register(database: db.Database, me: Registration, *, in_flight: int = 0) -> None:
    await database.execute(sql.queries["register_worker"], *_registry_args(me, in_flight))


async def unregister(database: db.Database, owner: str) -> None:
    await database.execute(sql.queries["unregister_worker"], owner)


def _registry_args(me: Registration, in_flight: int) -> tuple[Any, ...]:
    return (me.owner, me.host, me.pid, list(me.queues), me.concurrency, in_flight, __version__)


async def heartbeat(
    database: db.Database, me: Registration, *, task_ids: Sequence[int], lease_s: float
) -> dict[int, bool]:
    """Extend the leases of ``task_ids`` and refresh the registry, in one hop.

    Returns {task id still owned: cancel requested}; an id missing has lost its lease.
    The ids go in ascending order, the order ``finish`` locks its rows in.
    """
    ids = sorted(task_ids)

    async def beat(conn: db.Connection) -> dict[int, bool]:
        kept: dict[int, bool] = {}
        if ids:
            rows = await conn.fetch(sql.queries["extend_leases"], me.owner, lease_s, ids)
            kept = {r["id"]: r["cancel_requested"] for r in rows}
        await conn.execute(sql.queries["register_worker"], *_registry_args(me, len(ids)))
        return kept

    return await database.run(beat)


@dataclass(frozen=True, slots=True)
class Recovered:
    """A task the reaper took back from a lost process."""

    id: int
    queue: str
    status: str
    lost_worker: str


async def reap(
    database: db.Database, *, every_s: float, limit: int, forget_after_s: float
) -> list[Recovered]:
    """If it is this process's turn: recover expired leases, forget stale registry rows."""

    async def turn(conn: db.Connection) -> list[Recovered]:
        if not await conn.fetchval(sql.queries["take_maintenance_turn"], "reaper", every_s):
            return []
        rows = await conn.fetch(sql.queries["recover_expired"], limit)
        await conn.execute(sql.queries["forget_stale_workers"], forget_after_s)
        if rows:
            # Their slots are free: wake the processes waiting for limited queues (rows
            # back to pending notify through their trigger; ended ones would not).
            await conn.execute(sql.queries["slots_freed"], sorted({r["queue"] for r in rows}))
        return [Recovered(r["id"], r["queue"], r["status"], r["lost_worker"]) for r in rows]

    return await database.run_in_transaction(turn)


async def take_turn(database: db.Database, job: str, every_s: float) -> bool:
    """Whether this process gets the fleet's turn for maintenance ``job`` now."""
    return bool(await database.fetchval(sql.queries["take_maintenance_turn"], job, every_s))


async def prune(database: db.Database, *, older_than_s: float, limit: int) -> int:
    """Delete up to ``limit`` tasks that ended more than ``older_than_s`` ago; how many."""
    return len(await database.fetch(sql.queries["prune"], older_than_s, limit))


async def prune_history(database: db.Database, *, older_than_s: float) -> list[str]:
    """Drop the history partitions older than ``older_than_s``; their names."""
    rows = await database.fetch(sql.queries["prune_history"], older_than_s)
    return [r["dropped"] for r in rows]


@dataclass(frozen=True, slots=True)
class Partitions:
    """What one turn of the partition job did."""

    created: list[str]
    legacy_attached: bool


async def maintain_partitions(database: db.Database, *, days_ahead: int) -> Partitions:
    """Create the history's missing day partitions, attach the pre-0007 rows if detached."""
    rows = await database.fetch(sql.queries["ensure_event_partitions"], days_ahead)
    attached = await database.fetchval(sql.queries["attach_legacy_events"])
    return Partitions([r["created"] for r in rows], attached is not None)


async def send_probe(listener: db.Listener, channel: str) -> None:
    """The listener's round-trip probe: NOTIFY ``channel`` on the LISTEN connection itself."""
    await listener.execute(sql.queries["probe"], channel)


# --- producers and the client -----------------------------------------------------------


async def enqueue(
    database: db.Database,
    *,
    queue: str,
    kind: str,
    payload: Any,
    priority: int,
    run_at: datetime | None,
    delay_s: float,
    max_attempts: int,
    timeout_s: float | None,
    concurrency_key: str | None = None,
) -> Row:
    row: Row | None = await database.fetchrow(
        sql.queries["enqueue"],
        queue,
        kind,
        payload,
        priority,
        run_at,
        delay_s,
        max_attempts,
        timeout_s,
        concurrency_key,
    )
    assert row is not None  # INSERT ... RETURNING always returns the row
    return row


@dataclass(frozen=True, slots=True)
class Enqueued:
    """What an enqueue with a unique key did: added ``row``, or found it live (duplicate)."""

    row: Row
    duplicate: bool

    @property
    def id(self) -> int:
        return int(self.row["id"])


# A duplicate whose live task ends (or commits) between the insert's check and its read
# makes the statement return nothing; running it again settles it.
UNIQUE_ATTEMPTS = 20


async def enqueue_unique(
    database: db.Database,
    *,
    queue: str,
    kind: str,
    payload: Any,
    priority: int,
    run_at: datetime | None,
    delay_s: float,
    max_attempts: int,
    timeout_s: float | None,
    unique_key: str,
    concurrency_key: str | None = None,
) -> Enqueued:
    """Add a task unless a live task of ``queue`` holds ``unique_key`` (then return that)."""
    for _ in range(UNIQUE_ATTEMPTS):
        row: Row | None = await database.fetchrow(
            sql.queries["enqueue_unique"],
            queue,
            kind,
            payload,
            priority,
            run_at,
            delay_s,
            max_attempts,
            timeout_s,
            unique_key,
            concurrency_key,
        )
        if row is not None:
            task = {k: v for k, v in row.items() if k != "added"}
            return Enqueued(task, duplicate=not row["added"])
    raise errors.NotifyqError(
        f"unique key {unique_key!r} of queue {queue!r} kept changing hands; try again"
    )


async def due_or_running(database: db.Database, queues: Sequence[str]) -> int:
    """Tasks of ``queues`` running, or pending and due now (notifyq.testing's "idle")."""
    return int(await database.fetchval(sql.queries["testing_busy"], list(queues)))


async def seed(database: db.Database, count: int) -> list[int]:
    """Add ``count`` demo tasks in one statement; their ids."""
    return [r["id"] for r in await database.fetch(sql.queries["seed"], count)]


async def get_task(database: db.Database, task_id: int) -> Row | None:
    row: Row | None = await database.fetchrow(sql.queries["get_task"], task_id)
    return row


async def task_history(database: db.Database, task_id: int) -> list[Row]:
    return list(await database.fetch(sql.queries["task_history"], task_id))


async def cancel(database: db.Database, task_id: int) -> str | None:
    """The SQL function's answer: 'cancelled', 'cancelling', an ended status, or None."""
    status: str | None = await database.fetchval(sql.queries["cancel"], task_id)
    return status


async def retry(database: db.Database, task_id: int) -> str | None:
    """'requeued', the status that refused the retry, or None (no such task)."""
    status: str | None = await database.fetchval(sql.queries["retry"], task_id)
    return status


# --- reading: status page, HTTP API, CLI ------------------------------------------------


async def counts(database: db.Database) -> list[tuple[str, str, int]]:
    """(queue, status, rows) for every queue and status present."""
    return [(r["queue"], r["status"], r["n"]) for r in await database.fetch(sql.queries["counts"])]


async def workers(database: db.Database) -> list[Row]:
    return list(await database.fetch(sql.queries["workers"]))


async def list_tasks(
    database: db.Database,
    *,
    status: str | None,
    queue: str | None,
    kind: str | None,
    before: int | None,
    limit: int,
    preview_chars: int = PREVIEW_CHARS,
) -> list[Row]:
    """Display rows whose payload or result, when longer than ``preview_chars`` characters
    of JSON text, is None with its first characters in ``payload_preview``/``result_preview``
    (cut in SQL: the big value never leaves the database)."""
    return list(
        await database.fetch(
            sql.queries["list_tasks"], status, queue, kind, before, limit, preview_chars
        )
    )


async def running_tasks(
    database: db.Database, limit: int, *, preview_chars: int = PREVIEW_CHARS
) -> list[Row]:
    """The longest-running tasks, with previews as :func:`list_tasks` has them."""
    return list(await database.fetch(sql.queries["running_tasks"], limit, preview_chars))


async def recent_failures(
    database: db.Database, limit: int, *, preview_chars: int = PREVIEW_CHARS
) -> list[Row]:
    """The latest failures, with previews as :func:`list_tasks` has them."""
    return list(await database.fetch(sql.queries["recent_failures"], limit, preview_chars))


@dataclass(frozen=True, slots=True)
class Confirmed:
    """A task as the table has it, for an id a notification named."""

    id: int
    status: str
    queue: str
    kind: str
    ended: bool  # ended (done, error, cancelled) recently
    cancel_requested: bool  # its cancel was requested recently


async def confirm_events(
    database: db.Database,
    *,
    ended: Sequence[int],
    cancel_requested: Sequence[int],
    within_s: float,
) -> dict[int, Confirmed]:
    """What the table says about ids that notifications named (one statement for all):
    {id: row} for the ids that exist; check ``ended`` / ``cancel_requested`` on each."""
    rows = await database.fetch(
        sql.queries["confirm_events"], list(ended), list(cancel_requested), within_s
    )
    return {
        r["id"]: Confirmed(
            r["id"], r["status"], r["queue"], r["kind"], r["ended"], r["cancel_requested"]
        )
        for r in rows
    }


@dataclass(frozen=True, slots=True)
class Pickup:
    samples: int
    p50_ms: float | None
    p95_ms: float | None


async def pickup_sample(database: db.Database, *, window_s: float, limit: int) -> Pickup:
    row = await database.fetchrow(sql.queries["pickup_sample"], window_s, limit)
    assert row is not None  # an aggregate always returns one row
    return Pickup(row["n"], row["p50_ms"], row["p95_ms"])


async def ended_per_minute(
    database: db.Database, *, since: float, until: float, bounded: bool = False
) -> list[tuple[int, str, int]]:
    """(minute, status, count) of tasks that ended in [since, until) (unix seconds).

    ``bounded`` runs it under a short statement timeout (a first read of a busy hour).
    """

    async def read(conn: db.Connection) -> list[tuple[int, str, int]]:
        if bounded:
            await conn.execute(sql.queries["sample_timeout"])
        rows = await conn.fetch(sql.queries["ended_per_minute"], since, until)
        return [(r["minute"], r["status"], r["n"]) for r in rows]

    return await database.run_in_transaction(read)


async def ended_last_minute(database: db.Database) -> int:
    return int(await database.fetchval(sql.queries["ended_last_minute"]))


async def ping(database: db.Database) -> None:
    await database.fetchval(sql.queries["ping"])


async def live_processes(database: db.Database, *, host: str, within_s: float) -> int:
    """Processes on ``host`` that heart-beat within ``within_s`` seconds."""
    return int(await database.fetchval(sql.queries["host_alive"], host, within_s))


async def grant(
    database: db.Database, wanted: Sequence[tuple[str, str]], *, apply: bool
) -> list[str]:
    """The GRANT statements for each (privileges, role) of ``wanted``, privileges being
    "producer" or "worker"; run (all or none, in one transaction) when ``apply``."""

    async def statements(conn: db.Connection) -> list[str]:
        done: list[str] = []
        for privileges, role in wanted:
            # Each role's base grants, then those of later features, which live in functions
            # of their own so that a migration replacing the base function keeps them.
            names = {
                "producer": ("grant_producer", "grant_producer_unique"),
                "worker": ("grant_worker", "grant_worker_schedules"),
            }[privileges]
            for query in names:
                try:
                    rows = await conn.fetch(sql.queries[query], role, apply)
                except db.CONNECTION_ERRORS:
                    raise
                except Exception as exc:  # PostgreSQL's refusal: no such role, no privilege
                    raise errors.NotifyqError(f"cannot grant to role {role!r}: {exc}") from None
                done += [f"{r['statement']};" for r in rows]
        return done

    return await database.run_in_transaction(statements)


# --- queue limits: CLI, HTTP, App declarations ---------------------------------------


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """A queue's limits (None: none of that kind) and its live task counts."""

    name: str
    concurrency: int | None
    rate: limits.Rate | None
    per_key_concurrency: int | None
    paused: bool
    pending: int
    in_progress: int
    updated_at: datetime | None  # None: the queue has tasks but no row in notifyq.queues


def _rate(count: int | None, period_s: float | None) -> limits.Rate | None:
    return None if count is None or period_s is None else limits.Rate(count, period_s)


async def list_queues(database: db.Database) -> list[QueueInfo]:
    """Every queue that has limits or live tasks, by name."""
    return [
        QueueInfo(
            r["name"],
            r["concurrency"],
            _rate(r["rate_count"], r["rate_period_s"]),
            r["per_key_concurrency"],
            r["paused"],
            r["pending"],
            r["in_progress"],
            r["updated_at"],
        )
        for r in await database.fetch(sql.queries["queue_list"])
    ]


async def set_queue_limits(database: db.Database, change: limits.LimitChange) -> None:
    """Apply ``change`` (only its fields; a queue without a row gets one)."""
    rate = change.rate
    await database.fetch(
        sql.queries["queue_set"],
        change.name,
        change.concurrency,
        rate.count if rate else None,
        rate.period_s if rate else None,
        change.per_key_concurrency,
        change.paused,
        sorted(change.fields),
    )


async def clear_queue_limits(database: db.Database, name: str) -> bool:
    """Remove every limit of queue ``name``; whether it had a row."""
    return bool(await database.fetch(sql.queries["queue_clear"], name))


# --- schedules --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """A row of ``notifyq.schedules`` as stored (not checked: see ``schedules.define``)."""

    name: str
    cron: str | None
    every_s: float | None
    kind: str
    payload: Any
    queue: str
    priority: int
    tz: str
    catch_up: str
    catch_up_limit: int
    paused: bool
    next_run_at: datetime | None
    last_run_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ScheduleTable:
    """Every schedule, and the database's clock when they were read (None: no rows)."""

    rows: list[ScheduleRow]
    now: datetime | None


async def list_schedules(database: db.Database) -> ScheduleTable:
    rows = await database.fetch(sql.queries["list_schedules"])
    now = rows[0]["db_now"] if rows else None
    return ScheduleTable(
        [
            ScheduleRow(
                r["name"],
                r["cron"],
                r["every_s"],
                r["kind"],
                r["payload"],
                r["queue"],
                r["priority"],
                r["tz"],
                r["catch_up"],
                r["catch_up_limit"],
                r["paused"],
                r["next_run_at"],
                r["last_run_at"],
                r["created_at"],
                r["updated_at"],
            )
            for r in rows
        ],
        now,
    )


async def schedule_first_run(database: db.Database, name: str, first: datetime) -> datetime | None:
    """Set schedule ``name``'s first tick unless a process did; the tick in force (None:
    the schedule is gone)."""
    tick: datetime | None = await database.fetchval(sql.queries["schedule_first_run"], name, first)
    return tick


@dataclass(frozen=True, slots=True)
class Fired:
    fired: bool  # this call advanced the schedule (exactly one caller per tick does)
    task_id: int | None  # the tick's new task; None if not fired or its task was live


async def fire_schedule(
    database: db.Database, *, name: str, due: datetime, tick: datetime, next_run_at: datetime
) -> Fired:
    """Fire ``tick`` of schedule ``name`` read as due at ``due``; move it to ``next_run_at``."""
    row = await database.fetchrow(sql.queries["fire_schedule"], name, due, tick, next_run_at)
    assert row is not None  # the function returns one row
    return Fired(bool(row["fired"]), row["task_id"])


async def upsert_schedule(
    database: db.Database, schedule: schedules.Schedule, *, first_run: datetime
) -> str | None:
    """Add or replace a schedule's definition: 'added', 'replaced' or None (unchanged).

    ``first_run`` is its next tick if it is new or its timing changed; pausing is kept."""
    t = schedule.timing
    change: str | None = await database.fetchval(
        sql.queries["upsert_schedule"],
        schedule.name,
        t.cron,
        t.every_s,
        schedule.kind,
        {} if schedule.payload is None else schedule.payload,  # null means {}, as for tasks
        schedule.queue,
        schedule.priority,
        t.tz,
        schedule.catch_up,
        schedule.catch_up_limit,
        first_run,
    )
    return change


async def pause_schedule(database: db.Database, name: str, *, paused: bool) -> bool:
    """Pause or resume; False if there is no such schedule."""
    return await database.fetchval(sql.queries["pause_schedule"], name, paused) is not None


async def remove_schedule(database: db.Database, name: str) -> bool:
    """Delete a schedule (its tasks stay); False if there is none such."""
    return await database.fetchval(sql.queries["remove_schedule"], name) is not None
