"""The one seam from the engine to the HTTP side: a frozen statistics value."""

from __future__ import annotations

import dataclasses

import pytest

from notifyq.engine.scheduler import SchedulerStatistics
from notifyq.engine.service import ServiceStatistics
from notifyq.web.metrics import Metrics


def test_idle_statistics_count_nothing() -> None:
    idle = ServiceStatistics.idle()
    assert set(idle.workers.as_dict().values()) == {0}
    assert (idle.in_flight, idle.threads.counts(), idle.scheduler.ticks) == (0, (0, 0), (0, 0, 0))


def test_statistics_are_frozen() -> None:
    idle = ServiceStatistics.idle()
    with pytest.raises(dataclasses.FrozenInstanceError):
        idle.in_flight = 1  # type: ignore[misc]


def test_metrics_gauges_come_from_the_statistics_passed_to_render() -> None:
    statistics = dataclasses.replace(
        ServiceStatistics.idle(),
        in_flight=4,
        scheduler=SchedulerStatistics(
            ticks_fired=2, ticks_missed=1, duplicates_skipped=3, bad_schedules=0
        ),
    )
    metrics = Metrics()
    metrics.duplicates.inc()
    text = metrics.render(statistics, listener_connected=True, reconnects=2, subscribers=1)
    lines = set(text.decode().splitlines())
    assert {
        "notifyq_tasks_in_flight 4.0",
        "notifyq_schedule_ticks_fired_total 2.0",
        "notifyq_schedule_ticks_missed_total 1.0",
        "notifyq_duplicates_skipped_total 4.0",
        "notifyq_listener_connected 1.0",
        "notifyq_listener_reconnects_total 2.0",
        "notifyq_events_subscribers 1.0",
    } <= lines
