"""What the HTTP handlers share: the database, the process's engine and its LISTEN
connection's health, the live feed, caches.

The engine is read through one seam, :class:`Engine`: its ``statistics()``, a frozen value
composed of each stage's own. A process without workers (``notifyq web``) has none.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio
from quart import current_app

from notifyq import db, errors, logs, store, vocabulary
from notifyq.engine.service import ServiceStatistics
from notifyq.listen import Health
from notifyq.settings import Settings
from notifyq.vocabulary import STATUSES
from notifyq.web.live import LiveFeed
from notifyq.web.metrics import Metrics

log = logs.get("notifyq.web")

COUNTS_MAX_AGE_S = 1.0
COUNTS_MIN_AGE_S = 0.1  # however many notifications arrive
LATENCY_MAX_AGE_S = 5.0
LATENCY_WINDOW_S = 60.0
LATENCY_SAMPLE = 2000  # rows at most: the cost stays flat however busy the queue is
PROBE_STALE_S = 3.5  # the listener's probe runs every second with a 2 s timeout
THROUGHPUT_MAX_AGE_S = 5.0
ENDED = tuple(s for s in STATUSES if s in vocabulary.ENDED)  # in the page's order
HOUR_S = 3600
# Minutes this recent are read again each round (see EndedSeries.apply).
REREAD_S = 120


@dataclass
class EndedSeries:
    """Tasks every process ended, per minute, read from the table (not from notifications:
    a busy fleet ends thousands a second, and counting each notification costs each
    listening process a wake-up per task)."""

    start_minute: int  # unix seconds of the minute this process started in
    minutes: dict[int, dict[str, int]] = field(default_factory=dict)  # minute -> status -> n
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ENDED, 0))
    sampled_until: int | None = None  # the open minute of the last round
    final_until: int | None = None  # minutes before it are final and counted in totals

    def apply(self, lower: int, current: int, rows: list[tuple[int, str, int]]) -> None:
        """Store the counts of the minutes from ``lower`` up to ``current`` (still open).

        A minute is final, and added to the totals once, only REREAD_S after it ended: a
        task's ``finished_at`` is its outcome transaction's start, which may commit in a
        later minute than it names (seen at a minute's turn), so the recent minutes are
        read again each round (:meth:`reread_from`).
        """
        buckets = {m: dict.fromkeys(ENDED, 0) for m in range(lower, current + 60, 60)}
        for minute, status, n in rows:
            if minute in buckets:
                buckets[minute][status] = n
        self.minutes.update(buckets)
        final = current - REREAD_S
        for minute in range(self.final_until or lower, final, 60):
            if minute >= self.start_minute:  # final now, counted once
                for status, n in self.minutes.get(minute, {}).items():
                    self.totals[status] += n
        self.final_until = max(final, self.final_until or final)
        self.sampled_until = current
        for minute in [m for m in self.minutes if m <= current - HOUR_S]:
            del self.minutes[minute]

    def reread_from(self) -> int | None:
        """Where the next round reads from: the first minute that is not final yet."""
        return self.final_until

    def since_start(self) -> dict[str, int]:
        """Ended in the whole minutes since this process started (the open ones included)."""
        counts = dict(self.totals)
        if self.final_until is not None and self.sampled_until is not None:
            for minute in range(
                max(self.final_until, self.start_minute), self.sampled_until + 60, 60
            ):
                for status, n in self.minutes.get(minute, {}).items():
                    counts[status] += n
        return counts

    def last_hour(self) -> list[tuple[int, dict[str, int]]]:
        """The last 60 minutes, oldest first, the open minute last."""
        if self.sampled_until is None:
            return []
        first = self.sampled_until - HOUR_S + 60
        return [
            (m, self.minutes.get(m, dict.fromkeys(ENDED, 0)))
            for m in range(first, self.sampled_until + 60, 60)
        ]


@dataclass
class _Cached:
    """A value shared by concurrent readers, reloaded when old or when told it changed."""

    value: Any = None
    expires: float = -math.inf  # time.monotonic()
    loaded_at: float = -math.inf  # when the load that produced value began
    changes: int = 0
    lock: trio.Lock = field(default_factory=trio.Lock)

    def changed(self, min_age_s: float) -> None:
        """The data changed: reload as soon as the value is ``min_age_s`` old."""
        self.changes += 1
        self.expires = min(self.expires, max(time.monotonic(), self.loaded_at + min_age_s))


class Engine(Protocol):
    """This process's engine as the HTTP side sees it (:class:`~notifyq.engine.service.Service`)."""

    def statistics(self) -> ServiceStatistics: ...


IDLE = ServiceStatistics.idle()


@dataclass
class Context:
    # The primary: every action, and a task's own page (read right after its write).
    database: db.Database
    settings: Settings
    mode: str  # what the process runs: "serve" (workers and HTTP) or "web" (HTTP only)
    health: Health
    live: LiveFeed = field(default_factory=LiveFeed)
    metrics: Metrics = field(default_factory=Metrics)
    stopping: trio.Event = field(default_factory=trio.Event)
    # This process's workers and the stages around them; None without workers (`web`).
    engine: Engine | None = None
    # Kinds this process has handlers for (POST /schedules checks them); empty: unchecked.
    kinds: frozenset[str] = frozenset()
    started: float = field(default_factory=time.monotonic)
    _counts: _Cached = field(default_factory=_Cached)
    _batches: _Cached = field(default_factory=_Cached)
    _backlog: _Cached = field(default_factory=_Cached)
    _latency: _Cached = field(default_factory=_Cached)
    latency_by_minute: dict[int, float | None] = field(default_factory=dict)
    ended: EndedSeries = field(
        default_factory=lambda: EndedSeries(start_minute=int(time.time() // 60) * 60)
    )
    _throughput: _Cached = field(default_factory=_Cached)
    _sampling: trio.Lock = field(default_factory=trio.Lock)
    watched: trio.Event = field(default_factory=trio.Event)  # /stats or the page was read
    # READ_DATABASE_URL's pool (a replica), None without it: see `reads`.
    replica: db.Database | None = None
    _lag: _Cached = field(default_factory=_Cached)

    @property
    def reads(self) -> db.Database:
        """Where the lists, counts, stats and the page read: the replica of
        READ_DATABASE_URL, else the primary. New reads that may lag a little go here;
        actions and a read that must see the caller's own write use ``database``."""
        return self.database if self.replica is None else self.replica

    async def replica_lag_s(self) -> float | None:
        """How far the replica is behind (None: reads go to the primary), ≤ 1 s old."""
        replica = self.replica
        if replica is None:
            return None

        async def load() -> float:
            return await store.replica_lag_s(replica)

        lag: float = await _cached(self._lag, COUNTS_MAX_AGE_S, load)
        return lag

    def __post_init__(self) -> None:
        # A notification means the counts changed: the next reader (the page refreshing
        # because of that very event) must not get the older numbers.
        self.live.on_change = lambda: self._counts.changed(COUNTS_MIN_AGE_S)

    async def counts(self) -> list[tuple[str, str, int]]:
        """(queue, status, n), at most a second old: one query however many viewers."""

        async def load() -> list[tuple[str, str, int]]:
            return await store.counts(self.reads)

        counts: list[tuple[str, str, int]] = await _cached(self._counts, COUNTS_MAX_AGE_S, load)
        self.metrics.note_depth({(q, s): n for q, s, n in counts})
        return counts

    async def batch_gauges(self) -> store.BatchGauges:
        """The live batches' gauges for /metrics, at most a second old."""

        async def load() -> store.BatchGauges:
            return await store.batch_gauges(self.reads)

        gauges: store.BatchGauges = await _cached(self._batches, COUNTS_MAX_AGE_S, load)
        self.metrics.note_batches(gauges)
        return gauges

    async def backlog(self) -> dict[str, store.Backlog]:
        """Each queue's due work for /metrics (autoscalers), at most a second old."""

        async def load() -> dict[str, store.Backlog]:
            return await store.due_backlog(self.reads)

        backlog: dict[str, store.Backlog] = await _cached(self._backlog, COUNTS_MAX_AGE_S, load)
        self.metrics.note_backlog(backlog)
        return backlog

    def statistics(self) -> ServiceStatistics:
        """This process's engine now; every count zero without workers."""
        return IDLE if self.engine is None else self.engine.statistics()

    def render_metrics(self) -> bytes:
        """``/metrics``: this process's counters, with the gauges of this instant."""
        return self.metrics.render(
            self.statistics(),
            listener_connected=self.health.listener_connected,
            reconnects=self.health.reconnects,
            subscribers=self.live.subscribers,
        )

    async def pickup_latency(self) -> dict[str, Any]:
        """p50/p95 of claim − run_at over the tasks that ended in the last minute."""

        async def load() -> dict[str, Any]:
            sample = await store.pickup_sample(
                self.reads, window_s=LATENCY_WINDOW_S, limit=LATENCY_SAMPLE
            )
            result = {"p50_ms": sample.p50_ms, "p95_ms": sample.p95_ms, "samples": sample.samples}
            self.latency_by_minute[int(time.time() // 60)] = sample.p50_ms
            if len(self.latency_by_minute) > 90:
                oldest = sorted(self.latency_by_minute)[:-60]
                for minute in oldest:
                    del self.latency_by_minute[minute]
            return result

        latency: dict[str, Any] = await _cached(self._latency, LATENCY_MAX_AGE_S, load)
        return latency

    async def sample_ended(self) -> None:
        """Bring the per-minute series up to now: the first round reads the last hour (at
        most 5 s of the database's time), later rounds the minutes since the round before."""
        async with self._sampling:
            now = time.time()
            current = int(now // 60) * 60
            lower = self.ended.reread_from()
            if lower is None:
                lower = current - HOUR_S + 60
                try:
                    rows = await store.ended_per_minute(
                        self.reads, since=lower, until=now, bounded=True
                    )
                except errors.QueryError as exc:  # the statement timeout: a busy hour
                    log.warning("http.backfill_skipped", error=str(exc).splitlines()[0])
                    lower = current
                    rows = await store.ended_per_minute(self.reads, since=lower, until=now)
            else:
                rows = await store.ended_per_minute(self.reads, since=lower, until=now)
            self.ended.apply(lower, current, rows)

    async def throughput_per_s(self) -> float:
        """Tasks every process ended per second over the last 60 seconds."""

        async def load() -> float:
            return round(await store.ended_last_minute(self.reads) / 60, 3)

        value: float = await _cached(self._throughput, THROUGHPUT_MAX_AGE_S, load)
        return value

    def probe_age_s(self) -> float | None:
        if self.health.last_probe_ok < 0:
            return None
        return trio.current_time() - self.health.last_probe_ok


def current() -> Context:
    """The context of the app handling the current request."""
    context: Context = current_app.extensions["notifyq"]
    return context


async def _cached(slot: _Cached, max_age_s: float, load: Callable[[], Any]) -> Any:
    async with slot.lock:  # concurrent callers share one query
        if time.monotonic() >= slot.expires:
            started, changes = time.monotonic(), slot.changes
            slot.value = await load()
            slot.loaded_at = started
            # A change noted during the load may have missed it: reload soon, not late.
            age_s = max_age_s if slot.changes == changes else COUNTS_MIN_AGE_S
            slot.expires = started + age_s
        return slot.value
