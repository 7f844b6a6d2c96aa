"""The engine's statements: claim, idle, finish, heartbeat, registry (the fleet's upkeep:
store/upkeep.py)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from notifyq import db, listen, sql
from notifyq.store.rows import clean_text
from notifyq.version import __version__
from notifyq.vocabulary import Verdict

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
    token: int = 0  # the claim token: (id, token) names this attempt (the fence)


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
    database: db.Database,
    *,
    queues: Sequence[str],
    kinds: Sequence[str],
    limit: int,
    owner: str,
    lease_s: float,
) -> list[Claimed]:
    """Claim up to ``limit`` due rows of ``queues`` and ``kinds`` for ``owner`` (see
    queries.sql)."""
    rows = await database.fetch(
        sql.queries["claim"], list(queues), limit, owner, lease_s, list(kinds)
    )
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
        r["claim_token"],
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
    kinds: Sequence[str],
    limit: int,
    owner: str,
    lease_s: float,
) -> LimitedClaim:
    """Claim up to ``limited_limit`` rows of the ``limited`` queues within their limits
    (claim_limited), then up to ``limit`` in all with ``unlimited`` (the plain claim); both
    of ``kinds`` only; one hop."""
    limited_list, unlimited_list, kind_list = list(limited), list(unlimited), list(kinds)

    async def statements(conn: db.Connection) -> LimitedClaim:
        rows: list[Claimed] = []
        held: dict[str, float] = {}
        if limited_list and limited_limit > 0:
            for r in await conn.fetch(
                sql.queries["claim_limited"],
                limited_list,
                limited_limit,
                owner,
                lease_s,
                kind_list,
            ):
                if r["id"] is None:
                    held[r["queue"]] = r["held_s"]
                else:
                    rows.append(_claimed(r))
        if unlimited_list and limit > len(rows):
            rows.extend(
                _claimed(r)
                for r in await conn.fetch(
                    sql.queries["claim"],
                    unlimited_list,
                    limit - len(rows),
                    owner,
                    lease_s,
                    kind_list,
                )
            )
        # Rows of two statements in one claim order: priority first (a stable sort).
        return LimitedClaim(sorted(rows, key=lambda r: -r.priority), held)

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
    kinds: Sequence[str],
    register: bool,
    due_queues: Sequence[str] | None = None,
) -> Idle:
    """Record ``owner`` as waiting for ``queues`` (when ``register``) and read the next due
    time of ``due_queues`` (default: ``queues``) for the ``kinds`` it claims, one hop."""
    queue_list, kind_list = list(queues), list(kinds)
    due_list = queue_list if due_queues is None else list(due_queues)

    async def statements(conn: db.Connection) -> Idle:
        registered = False
        if register:
            registered = bool(await conn.fetchval(sql.queries["go_idle"], owner, queue_list))
        due_in = None
        if due_list:
            due_in = await conn.fetchval(sql.queries["next_due"], due_list, kind_list)
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
    token: int = 0  # the attempt's claim token (Claimed.token): the write is fenced on it
    # The handler's exception, formatted and bounded (engine.verdict.format_traceback):
    # stored in the history row of this attempt (migration 0019). None for the rest.
    traceback: str | None = None


async def finish(
    database: db.Database,
    *,
    owner: str,
    outcomes: Sequence[Outcome],
    freed_queues: Sequence[str] = (),
) -> dict[tuple[int, int], str]:
    """Write the outcomes of ``owner``'s attempts (fenced); returns {(task id, claim
    token): new status}.

    An attempt missing from the result was no longer owned by ``owner``. With
    ``freed_queues`` (limited queues among the outcomes' queues) the processes waiting for
    a slot of those are woken after the write, in the same hop (``slots_freed``).
    The outcomes go in id order, as the heartbeat's ids do, so that the two lock the rows
    they both write in the same order and do not deadlock (found by `notifyq bench harsh
    --scenario kill-9`); one that happens anyway is a StatementAborted, retried.
    """
    args = _finish_args(owner, outcomes)
    if not freed_queues:
        rows = await database.fetch(sql.queries["finish"], *args)
        return _written(rows)
    freed = list(freed_queues)

    async def statements(conn: db.Connection) -> dict[tuple[int, int], str]:
        # Two transactions: the wake-up reads the waiters after the slots are free, so a
        # process either is woken or registered after the write (and claims once more).
        written = await conn.fetch(sql.queries["finish"], *args)
        await conn.execute(sql.queries["slots_freed"], freed)
        return _written(written)

    return await database.run(statements)


async def wake_for_freed_slots(database: db.Database, *, queues: Sequence[str]) -> None:
    """Wake the processes waiting for a slot of these limited queues (``slots_freed``):
    for outcomes written outside the batched ``finish`` (a transactional handler's)."""
    await database.execute(sql.queries["slots_freed"], list(queues))


async def finish_in_transaction(conn: db.Connection, *, owner: str, outcome: Outcome) -> str | None:
    """(asyncio side) Write one outcome with ``finish``, fenced, on ``conn`` inside the
    transaction it is in (a transactional handler's); the new status, or None when the
    fence refused it. Nothing is committed here."""
    rows = await conn.fetch(sql.queries["finish"], *_finish_args(owner, [outcome]))
    return _written(rows).get((outcome.task_id, outcome.token))


def _written(rows: Sequence[Any]) -> dict[tuple[int, int], str]:
    # Keyed by attempt, not task: a stale run's outcome and the re-claimed attempt's may be
    # in one batch, and only the one the fence let through was written.
    return {(r["id"], r["claim_token"]): r["status"] for r in rows}


def _finish_args(owner: str, outcomes: Sequence[Outcome]) -> tuple[Any, ...]:
    # Every claim gives a token of 1 or more: an outcome without one would be fenced off
    # without a word (the task left in_progress until the reaper takes it).
    if any(o.token < 1 for o in outcomes):
        raise ValueError("an outcome must carry its attempt's claim token (Outcome.token)")
    outcomes = sorted(outcomes, key=lambda o: o.task_id)
    return (
        owner,
        [o.task_id for o in outcomes],
        [o.attempt for o in outcomes],
        [o.verdict.value for o in outcomes],
        [o.result_json for o in outcomes],
        [clean_text(o.error) if o.error is not None else None for o in outcomes],
        [o.delay_s for o in outcomes],
        [o.token for o in outcomes],
        [o.traceback for o in outcomes],
    )


@dataclass(frozen=True, slots=True)
class Exchange:
    """What ``finish_and_claim`` did: the outcomes written, and the rows claimed."""

    written: dict[tuple[int, int], str]  # as `finish` returns it
    claimed: list[Claimed]  # in claim order


async def finish_and_claim(
    database: db.Database,
    *,
    owner: str,
    outcomes: Sequence[Outcome],
    queues: Sequence[str],
    kinds: Sequence[str],
    limit: int,
    lease_s: float,
) -> Exchange:
    """``finish`` the outcomes and ``claim`` up to ``limit`` rows, in one statement and one
    commit (see queries.sql); fenced and ordered as ``finish`` is."""
    rows = await database.fetch(
        sql.queries["finish_and_claim"],
        *_finish_args(owner, outcomes),
        list(queues),
        limit,
        lease_s,
        list(kinds),
    )
    written = _written([r for r in rows if r["claim_order"] is None])
    claimed = sorted((r for r in rows if r["claim_order"] is not None), key=_claim_order)
    return Exchange(written, [_claimed(r) for r in claimed])


def _claim_order(r: Any) -> int:
    return int(r["claim_order"])


@dataclass(frozen=True, slots=True)
class Registration:
    """One process's row in the worker registry."""

    owner: str
    queues: tuple[str, ...]
    concurrency: int
    kinds: tuple[str, ...] = ()  # the kinds it has a handler for (it claims only those)
    host: str = socket.gethostname()
    pid: int = os.getpid()


async def register(database: db.Database, me: Registration, *, in_flight: int = 0) -> None:
    await database.execute(sql.queries["register_worker"], *_registry_args(me, in_flight))


async def unregister(database: db.Database, owner: str) -> None:
    await database.execute(sql.queries["unregister_worker"], owner)


def _registry_args(me: Registration, in_flight: int) -> tuple[Any, ...]:
    return (
        me.owner,
        me.host,
        me.pid,
        list(me.queues),
        me.concurrency,
        in_flight,
        __version__,
        list(me.kinds),
    )


@dataclass(frozen=True)
class Beat:
    """What the heartbeat found of one attempt it still owns."""

    cancel_requested: bool
    # False when another transaction held the row (it was not waited for): the lease
    # keeps its old deadline until a later beat extends it.
    extended: bool


async def heartbeat(
    database: db.Database,
    me: Registration,
    *,
    attempts: Sequence[tuple[int, int]],
    lease_s: float,
) -> dict[tuple[int, int], Beat]:
    """Extend the leases of ``attempts`` (task id, claim token) and refresh the registry,
    in one hop.

    Returns {attempt still owned: its Beat}; one missing has lost its lease. The
    statement never waits for a row lock (see queries.sql), so it cannot deadlock with
    ``finish``.
    """
    held = sorted(attempts)

    async def beat(conn: db.Connection) -> dict[tuple[int, int], Beat]:
        kept: dict[tuple[int, int], Beat] = {}
        if held:
            rows = await conn.fetch(
                sql.queries["extend_leases"],
                me.owner,
                lease_s,
                [i for i, _ in held],
                [t for _, t in held],
            )
            kept = {
                (r["id"], r["claim_token"]): Beat(r["cancel_requested"], r["extended"])
                for r in rows
            }
        await conn.execute(sql.queries["register_worker"], *_registry_args(me, len(held)))
        return kept

    return await database.run(beat)


async def send_probe(listener: listen.ListenConnection, channel: str) -> None:
    """The listener's round-trip probe: NOTIFY ``channel`` on the LISTEN connection itself."""
    await listener.execute(sql.queries["probe"], channel)
