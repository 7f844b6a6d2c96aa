"""What the JSON API and the status page both show: the stats, and the id check of a path."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from notifyq import errors, store
from notifyq.client import Client
from notifyq.vocabulary import Status
from notifyq.web import fleet_models, models, process_models
from notifyq.web.context import Context

PARENTS_SHOWN = 100
CHILDREN_SHOWN = 100


def existing_id(task_id: int) -> int:
    """An id from the path; one beyond bigint names no task (404, not a driver error)."""
    if task_id > models.BIGINT_MAX:
        raise errors.TaskNotFound(task_id)
    return task_id


async def build_stats(c: Context) -> process_models.Stats:
    counts = await c.counts()
    latency = await c.pickup_latency()
    by_status: dict[str, int] = {status.value: 0 for status in store.Status}
    by_queue: dict[str, dict[str, int]] = {}
    for queue, status, n in counts:
        by_status[status] = by_status.get(status, 0) + n
        by_queue.setdefault(queue, {})[status] = n
    if c.ended.sampled_until is None:
        await c.sample_ended()  # the first reader fills the series (then the sampler does)
    c.watched.set()
    points = [
        process_models.MinutePoint(
            minute=minute,
            ended=sum(counts.values()),
            errors=counts[Status.ERROR],
            pickup_p50_ms=c.latency_by_minute.get(minute // 60),
        )
        for minute, counts in c.ended.last_hour()
    ]
    return process_models.Stats(
        mode=c.mode,
        role=c.mode,
        now=datetime.now(UTC),
        uptime_s=round(time.monotonic() - c.started, 3),
        counts_by_status=by_status,
        counts_by_queue=by_queue,
        since_start={} if c.engine is None else c.engine.statistics().workers.as_dict(),
        ended_since_start=c.ended.since_start(),
        throughput_per_s=await c.throughput_per_s(),
        pickup_latency=process_models.Latency(**latency),
        last_hour=points,
        reads=process_models.Reads(
            source="primary" if c.replica is None else "replica", lag_s=await c.replica_lag_s()
        ),
    )


def schedule_out(row: store.ScheduleRow) -> fleet_models.ScheduleOut:
    return fleet_models.ScheduleOut(
        name=row.name,
        cron=row.cron,
        every_s=row.every_s,
        tz=row.tz,
        kind=row.kind,
        payload=row.payload if row.payload_preview is None else row.payload_preview,
        payload_truncated=row.payload_truncated,
        queue=row.queue,
        priority=row.priority,
        catch_up=row.catch_up,
        catch_up_limit=row.catch_up_limit,
        paused=row.paused,
        last_run_at=row.last_run_at,
        next_run_at=row.next_run_at,
    )


def related_out(rows: list[store.Related]) -> list[models.RelatedOut]:
    return [models.RelatedOut(id=r.id, status=r.status, kind=r.kind, via=r.via) for r in rows]


def batch_out(b: store.BatchProgress) -> models.BatchOut:
    return models.BatchOut(
        id=b.id, total=b.total, done=b.done, failed=b.failed, remaining=b.remaining
    )


async def task_detail(c: Context, task_id: int) -> models.TaskOut:
    """One task as GET /tasks/{id} and its page show it: the row, its first parents and
    children (bounded: PARENTS_SHOWN, CHILDREN_SHOWN) and, for a callback, its batch.
    A task outside any workflow costs one statement more (one probe of tasks_pkey)."""
    row = await Client(c.database).task(existing_id(task_id))
    out = models.TaskOut.from_row(row)
    children = await store.task_children(c.database, task_id, limit=CHILDREN_SHOWN + 1)
    out.children = related_out(children[:CHILDREN_SHOWN])
    out.children_more = len(children) > CHILDREN_SHOWN
    if row.depends_on:
        parents = await store.task_parents_brief(c.database, task_id, limit=PARENTS_SHOWN)
        out.parents = related_out(parents)
    else:
        out.parents = []
    if row.after_batch is not None:
        batch = await store.task_batch(c.database, task_id)
        out.batch = None if batch is None else batch_out(batch)
    return out
