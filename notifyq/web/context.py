"""What the HTTP handlers share: the database, the service's health, the live feed, caches."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from quart import current_app

from notifyq import db, sql
from notifyq.service import Health
from notifyq.settings import Settings
from notifyq.web.live import LiveFeed
from notifyq.web.metrics import Metrics

COUNTS_MAX_AGE_S = 1.0
COUNTS_MIN_AGE_S = 0.1  # however many notifications arrive
LATENCY_MAX_AGE_S = 5.0
LATENCY_WINDOW_S = 60.0
LATENCY_SAMPLE = 2000  # rows at most: the cost stays flat however busy the queue is
PROBE_STALE_S = 3.5  # the listener's probe runs every second with a 2 s timeout


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


@dataclass
class Context:
    database: db.Database
    settings: Settings
    role: str  # "serve" or "web"
    health: Health
    live: LiveFeed = field(default_factory=LiveFeed)
    metrics: Metrics = field(default_factory=Metrics)
    stopping: trio.Event = field(default_factory=trio.Event)
    # This process's worker counters (empty for a web-only process).
    worker_stats: Callable[[], dict[str, int]] = dict
    in_flight: Callable[[], int] = lambda: 0
    started: float = field(default_factory=time.monotonic)
    _counts: _Cached = field(default_factory=_Cached)
    _latency: _Cached = field(default_factory=_Cached)
    latency_by_minute: dict[int, float | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        snap = self.metrics.snapshot
        snap.in_flight = lambda: self.in_flight()
        snap.listener_connected = lambda: self.health.listener_connected
        snap.subscribers = lambda: self.live.subscribers
        snap.reconnects = lambda: self.health.reconnects
        # A notification means the counts changed: the next reader (the page refreshing
        # because of that very event) must not get the older numbers.
        self.live.on_change = lambda: self._counts.changed(COUNTS_MIN_AGE_S)

    async def counts(self) -> list[tuple[str, str, int]]:
        """(queue, status, n), at most a second old: one query however many viewers."""

        async def load() -> list[tuple[str, str, int]]:
            rows = await self.database.fetch(sql.queries["counts"])
            return [(r["queue"], r["status"], r["n"]) for r in rows]

        counts: list[tuple[str, str, int]] = await _cached(self._counts, COUNTS_MAX_AGE_S, load)
        self.metrics.snapshot.depth = {(q, s): n for q, s, n in counts}
        return counts

    async def pickup_latency(self) -> dict[str, Any]:
        """p50/p95 of claim − run_at over the tasks that ended in the last minute."""

        async def load() -> dict[str, Any]:
            row = await self.database.fetchrow(
                sql.queries["pickup_sample"], LATENCY_WINDOW_S, LATENCY_SAMPLE
            )
            assert row is not None
            result = {"p50_ms": row["p50_ms"], "p95_ms": row["p95_ms"], "samples": row["n"]}
            self.latency_by_minute[int(time.time() // 60)] = row["p50_ms"]
            if len(self.latency_by_minute) > 90:
                oldest = sorted(self.latency_by_minute)[:-60]
                for minute in oldest:
                    del self.latency_by_minute[minute]
            return result

        latency: dict[str, Any] = await _cached(self._latency, LATENCY_MAX_AGE_S, load)
        return latency

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
