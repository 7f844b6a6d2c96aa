"""The JSON API of the fleet's configuration: queue limits and periodic schedules."""

from __future__ import annotations

from urllib.parse import urlencode

from quart import Blueprint, Response, request
from quart_schema import (
    document_querystring,
    document_request,
    document_response,
    security_scheme,
)

from notifyq import limits, schedules, store
from notifyq.web import bodies, fleet_models, models
from notifyq.web.context import current
from notifyq.web.replies import ApiError, json_response
from notifyq.web.views import schedule_out

blueprint = Blueprint("fleet", __name__)


# --- queue limits --------------------------------------------------------------------


def _queue_out(q: store.QueueInfo) -> fleet_models.QueueOut:
    return fleet_models.QueueOut(
        name=q.name,
        concurrency=q.concurrency,
        rate=str(q.rate) if q.rate else None,
        per_key_concurrency=q.per_key_concurrency,
        paused=q.paused,
        fair=q.fair,
        age_priority_after_s=q.age_priority_after_s,
        pending=q.pending,
        in_progress=q.in_progress,
    )


@blueprint.get("/queues")
@document_querystring(fleet_models.QueueFilter)
@document_response(fleet_models.Queues)
@document_response(models.ErrorOut, 422)
async def list_queues() -> Response:
    """Queues with limits or live tasks, by name: their limits, pending and in_progress
    counts; follow `next` for the following page."""
    query = bodies.validate(fleet_models.QueueFilter, request.args.to_dict(flat=True))
    queues = await store.list_queues(current().database, after=query.after, limit=query.limit)
    next_url = None
    if len(queues) == query.limit:
        next_url = "/queues?" + urlencode({"limit": query.limit, "after": queues[-1].name})
    return json_response(fleet_models.Queues(queues=[_queue_out(q) for q in queues], next=next_url))


@blueprint.post("/queues/<name>")
@document_request(fleet_models.QueueChange)
@document_response(fleet_models.QueueOut)
@document_response(models.ErrorOut, 400)
@document_response(models.ErrorOut, 401)
@document_response(models.ErrorOut, 415)
@document_response(models.ErrorOut, 422)
@security_scheme([{"bearer": []}])
async def set_queue(name: str) -> Response:
    """Set a queue's limits: the fields given change, null removes one, clear removes all."""
    body = await bodies.body(fleet_models.QueueChange)
    given = body.model_fields_set
    try:
        change = limits.change(
            bodies.validate(fleet_models.QueueName, {"name": name}).name,
            concurrency=body.concurrency if "concurrency" in given else limits.KEEP,
            rate=body.rate if "rate" in given else limits.KEEP,
            per_key_concurrency=(
                body.per_key_concurrency if "per_key_concurrency" in given else limits.KEEP
            ),
            paused=body.paused if "paused" in given else None,
            fair=body.fair if "fair" in given else None,
            age_priority_after=(
                body.age_priority_after if "age_priority_after" in given else limits.KEEP
            ),
        )
    except limits.LimitError as exc:
        raise ApiError(422, "validation_failed", str(exc)) from None
    database = current().database
    if body.clear:
        await store.clear_queue_limits(database, change.name)
    if change.fields:
        await store.set_queue_limits(database, change)
    shown = [q for q in await store.list_queues(database) if q.name == change.name]
    if shown:
        return json_response(_queue_out(shown[0]))
    return json_response(
        fleet_models.QueueOut(
            name=change.name,
            concurrency=None,
            rate=None,
            per_key_concurrency=None,
            paused=False,
            fair=False,
            age_priority_after_s=None,
            pending=0,
            in_progress=0,
        )
    )


# --- schedules -------------------------------------------------------------------------


@blueprint.get("/schedules")
@document_querystring(fleet_models.ScheduleFilter)
@document_response(fleet_models.Schedules)
@document_response(models.ErrorOut, 422)
async def list_schedules() -> Response:
    """Schedules by name with their last and next run, a page at a time (follow `next`);
    payloads longer than the preview are cut."""
    query = bodies.validate(fleet_models.ScheduleFilter, request.args.to_dict(flat=True))
    # One more than shown tells whether there is a next page.
    rows = await store.list_schedules(current().database, after=query.after, limit=query.limit + 1)
    next_url = None
    if len(rows) > query.limit:
        rows = rows[: query.limit]
        next_url = f"/schedules?{urlencode({'limit': query.limit, 'after': rows[-1].name})}"
    return json_response(
        fleet_models.Schedules(schedules=[schedule_out(r) for r in rows], next=next_url)
    )


@blueprint.post("/schedules")
@document_request(fleet_models.NewSchedule)
@document_response(fleet_models.ScheduleChange, 200)
@document_response(models.ErrorOut, 400)
@document_response(models.ErrorOut, 401)
@document_response(models.ErrorOut, 415)
@document_response(models.ErrorOut, 422)
@security_scheme([{"bearer": []}])
async def put_schedule() -> Response:
    """Add a schedule, or replace the definition of the one with that name (pausing is
    kept). 422 for a bad cron expression, interval or time zone."""
    new = await bodies.body(fleet_models.NewSchedule)
    try:
        definition = schedules.define(
            new.name,
            cron=new.cron,
            every=new.every,
            kind=new.kind,
            payload=new.payload,
            queue=new.queue,
            priority=new.priority,
            tz=new.tz,
            catch_up=new.catch_up,
            catch_up_limit=new.catch_up_limit,
        )
    except schedules.ScheduleError as exc:
        raise ApiError(422, "validation_failed", str(exc)) from None
    c = current()
    if c.kinds and new.kind not in c.kinds:
        raise ApiError(
            422,
            "validation_failed",
            f"no handler for kind {new.kind!r} (known: {', '.join(sorted(c.kinds))})",
        )
    change = await store.upsert_schedule(c.database, definition)
    row = await _existing_schedule(new.name)
    out = fleet_models.ScheduleChange(
        name=new.name,
        change=change or "unchanged",
        schedule=schedule_out(row),
    )
    return json_response(out, 200)


@blueprint.post("/schedules/<name>/pause")
@document_response(fleet_models.ScheduleOut)
@document_response(models.ErrorOut, 401)
@document_response(models.ErrorOut, 404)
@security_scheme([{"bearer": []}])
async def pause_schedule(name: str) -> Response:
    """Stop enqueueing the schedule's ticks."""
    return await _set_paused(name, True)


@blueprint.post("/schedules/<name>/resume")
@document_response(fleet_models.ScheduleOut)
@document_response(models.ErrorOut, 401)
@document_response(models.ErrorOut, 404)
@security_scheme([{"bearer": []}])
async def resume_schedule(name: str) -> Response:
    """Enqueue the schedule's ticks again, from the next one."""
    return await _set_paused(name, False)


@blueprint.delete("/schedules/<name>")
@document_response(fleet_models.ScheduleOut)
@document_response(models.ErrorOut, 401)
@document_response(models.ErrorOut, 404)
@security_scheme([{"bearer": []}])
async def remove_schedule(name: str) -> Response:
    """Delete the schedule (the tasks it added stay)."""
    database = current().database
    row = await _existing_schedule(name)
    if not await store.remove_schedule(database, name):
        raise ApiError(404, "not_found", f"no schedule named {name!r}")
    return json_response(schedule_out(row))


async def _existing_schedule(name: str) -> store.ScheduleRow:
    row = await store.get_schedule(current().database, name)
    if row is None:
        raise ApiError(404, "not_found", f"no schedule named {name!r}")
    return row


async def _set_paused(name: str, paused: bool) -> Response:
    await _existing_schedule(name)
    try:
        found = await store.pause_schedule(current().database, name, paused=paused)
    except schedules.ScheduleError as exc:
        raise ApiError(422, "validation_failed", str(exc)) from None
    if not found:
        raise ApiError(404, "not_found", f"no schedule named {name!r}")
    return json_response(schedule_out(await _existing_schedule(name)))
