"""Prometheus metrics of one notifyq process (``GET /metrics``).

Counters and histograms are this process's own, so that Prometheus can sum them across
processes. Queue depth is the whole database's (every process reports the same value;
aggregate it with ``max``). Each app gets its own registry, so that several apps in one
test process do not collide.

The gauges of the engine are read from one frozen value, the engine's ``statistics()``,
that the ``/metrics`` handler passes to :meth:`Metrics.render`; the per-attempt counters
and histograms are fed by :meth:`Metrics.observe_end`, which the engine calls once an
outcome is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from notifyq.engine.service import ServiceStatistics
from notifyq.store import Backlog, BatchGauges
from notifyq.vocabulary import Status, Verdict

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The *_created series double every counter's output and nothing here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Pickup latency is milliseconds when a worker is free, seconds to minutes in a backlog.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
)
RUN_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class _Ended(Protocol):
    """What :meth:`Metrics.observe_end` reads of the task whose attempt ended."""

    @property
    def queue(self) -> str: ...

    @property
    def kind(self) -> str: ...


class _Count:
    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1


class _Gauges(Collector):
    """Gauges read at scrape time from the values :meth:`Metrics.render` was given."""

    def __init__(self, duplicates: _Count, statistics: ServiceStatistics) -> None:
        self.depth: Mapping[tuple[str, str], int] = {}
        self.batches = BatchGauges(live=0, done=0, failed=0, remaining=0)
        self.backlog: Mapping[str, Backlog] = {}
        self.duplicates = duplicates  # POST /tasks answered with the live task
        self.statistics = statistics
        self.listener_connected = False
        self.reconnects = 0
        self.subscribers = 0

    def collect(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily(
            "notifyq_queue_depth",
            "Tasks in the database by queue and status",
            labels=["queue", "status"],
        )
        for (queue, status), n in sorted(self.depth.items()):
            depth.add_metric([queue, status], n)
        yield depth
        # Of every queue the counts saw, 0 included: an alert on waiting work needs the
        # series to exist before the first task waits.
        waiting = GaugeMetricFamily(
            "notifyq_tasks_waiting",
            "Tasks waiting for their parents or batch, by queue (never claimed while waiting)",
            labels=["queue"],
        )
        for queue in sorted({queue for queue, _ in self.depth}):
            waiting.add_metric([queue], self.depth.get((queue, Status.WAITING), 0))
        yield waiting
        # For autoscalers (docs/operations.md, "Autoscaling"): of every queue the counts
        # saw, 0 included, so that a scaler reads 0 rather than no series once a queue empties.
        due = GaugeMetricFamily(
            "notifyq_queue_due",
            "Pending tasks whose run_at has passed (what workers would claim now), by queue",
            labels=["queue"],
        )
        oldest = GaugeMetricFamily(
            "notifyq_queue_oldest_due_seconds",
            "Seconds the oldest due pending task has waited since its run_at, by queue "
            "(0: none due)",
            labels=["queue"],
        )
        nothing = Backlog(0, 0.0)
        for queue in sorted({queue for queue, _ in self.depth} | set(self.backlog)):
            backlog = self.backlog.get(queue, nothing)
            due.add_metric([queue], backlog.due)
            oldest.add_metric([queue], round(backlog.oldest_s, 3))
        yield due
        yield oldest
        # Summed over the live batches, never a label per batch: the series stay three
        # however many batches there are (a batch's own progress: notifyq.batch_progress).
        batches = self.batches
        yield GaugeMetricFamily(
            "notifyq_batches_live",
            "Batches not complete yet (some member not ended, or no callback added yet)",
            value=batches.live,
        )
        members = GaugeMetricFamily(
            "notifyq_batch_members",
            "Members of the live batches: ended done, ended failed (error or cancelled), "
            "remaining (not ended yet)",
            labels=["state"],
        )
        for state in ("done", "failed", "remaining"):
            members.add_metric([state], getattr(batches, state))
        yield members
        yield GaugeMetricFamily(
            "notifyq_tasks_in_flight",
            "Tasks this process has claimed and not yet recorded",
            value=self.statistics.in_flight,
        )
        running, abandoned = self.statistics.threads.counts()
        yield GaugeMetricFamily(
            "notifyq_handler_threads",
            "Threads running sync (def) handlers now, abandoned ones included",
            value=running,
        )
        yield GaugeMetricFamily(
            "notifyq_abandoned_threads",
            "Threads of sync handlers still running after their attempt was given up "
            "(cancel, time limit, shutdown); each holds a worker thread slot until it returns",
            value=abandoned,
        )
        yield GaugeMetricFamily(
            "notifyq_listener_connected",
            "1 while the LISTEN connection is up",
            value=1 if self.listener_connected else 0,
        )
        yield GaugeMetricFamily(
            "notifyq_events_subscribers", "Open /events streams", value=self.subscribers
        )
        yield CounterMetricFamily(
            "notifyq_listener_reconnects",
            "Times the LISTEN connection was re-established since start",
            value=self.reconnects,
        )
        fired, missed, live = self.statistics.scheduler.ticks
        yield CounterMetricFamily(
            "notifyq_schedule_ticks_fired",
            "Schedule ticks this process enqueued (each tick is fired by one process)",
            value=fired,
        )
        yield CounterMetricFamily(
            "notifyq_schedule_ticks_missed",
            "Due schedule ticks skipped by the catch-up policy after downtime (counted by the "
            "process that fired the catch-up run)",
            value=missed,
        )
        yield CounterMetricFamily(
            "notifyq_tasks_expired",
            "Tasks this process's expiry sweep ended because they were not started by their "
            "expires_at (status cancelled, history expired)",
            value=self.statistics.workers.expired,
        )
        yield CounterMetricFamily(
            "notifyq_duplicates_skipped",
            "Tasks not added because a live task of the queue held the unique key: POST "
            "/tasks duplicates and schedule ticks whose task was still live",
            value=self.duplicates.value + live,
        )


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.tasks = Counter(
            "notifyq_tasks",
            "Attempts this process ended, by outcome",
            ["queue", "kind", "outcome"],
            registry=self.registry,
        )
        self.pickup = Histogram(
            "notifyq_pickup_latency_seconds",
            "From run_at (insert time for new tasks) to claim, per attempt",
            ["queue"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.run_time = Histogram(
            "notifyq_task_run_seconds",
            "Handler run time, per attempt",
            ["queue", "kind"],
            buckets=RUN_BUCKETS,
            registry=self.registry,
        )
        self.duplicates = _Count()  # POST /tasks answered with the live task
        self._gauges = _Gauges(self.duplicates, ServiceStatistics.idle())
        self.registry.register(self._gauges)
        # labels() validates and locks on every call; the hot path keeps the children.
        self._children: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}

    def observe_end(self, task: _Ended, outcome: str, lag_s: float, run_s: float) -> None:
        """Called by the engine's writer once an attempt's outcome is recorded."""
        queue, kind = task.queue, task.kind
        key = (queue, kind, outcome)
        children = self._children.get(key)
        if children is None:
            children = (
                self.tasks.labels(queue, kind, outcome),
                self.pickup.labels(queue),
                self.run_time.labels(queue, kind),
            )
            self._children[key] = children
        count, pickup, run_time = children
        count.inc()
        if outcome != Verdict.RELEASED:
            pickup.observe(max(0.0, lag_s))
            run_time.observe(max(0.0, run_s))

    def note_depth(self, depth: Mapping[tuple[str, str], int]) -> None:
        """Tasks by (queue, status), as last read: kept while the database is away."""
        self._gauges.depth = depth

    def note_backlog(self, backlog: Mapping[str, Backlog]) -> None:
        """Due work by queue, as last read: kept while the database is away."""
        self._gauges.backlog = backlog

    def note_batches(self, batches: BatchGauges) -> None:
        """The live batches, as last read: kept while the database is away."""
        self._gauges.batches = batches

    def render(
        self,
        statistics: ServiceStatistics,
        *,
        listener_connected: bool,
        reconnects: int,
        subscribers: int,
    ) -> bytes:
        """The text exposition, with the gauges of this instant."""
        gauges = self._gauges
        gauges.statistics = statistics
        gauges.listener_connected = listener_connected
        gauges.reconnects = reconnects
        gauges.subscribers = subscribers
        return generate_latest(self.registry)
