"""The console's JSON endpoints: counts and bulk actions over the filter language, one-task
run-now and priority, downloads, attempts, failure groups, a schedule's manual run.

Reads go to ``Context.reads`` (READ_DATABASE_URL's replica when set), actions to the
primary. Every action names its actor (``api``) in the events it writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from quart import Blueprint, Response, g, request
from quart_schema import document_request, document_response, security_scheme

from notifyq import errors, filters, priorities, store
from notifyq.client import Client
from notifyq.vocabulary import Action, Actor, Status
from notifyq.web import console_models as cm
from notifyq.web import models
from notifyq.web.bodies import body
from notifyq.web.context import current
from notifyq.web.replies import ApiError, json_response
from notifyq.web.views import existing_id

blueprint = Blueprint("console", __name__)

FAILURE_GROUPS = 100
FAILURES_DEFAULT_WINDOW = filters.Instant(age_s=86_400.0)
BULK_ACTIONS = {
    "retry": Action.RETRY,
    "cancel": Action.CANCEL,
    "run-now": Action.RUN_NOW,
    "priority": Action.PRIORITY,
}


def actor() -> str:
    """Who the events of this request's actions name: the name of the token it carried
    (API_TOKENS), else ``api``."""
    return str(g.get("notifyq_actor", Actor.API.value))


def parse_filter(values: dict[str, object], *, ignore: Iterable[str] = ()) -> filters.TaskFilter:
    """The filter language, or a 422 naming the key at fault."""
    try:
        return filters.parse(values, ignore=ignore)
    except filters.FilterError as exc:
        raise ApiError(
            422,
            "validation_failed",
            str(exc),
            details=[{"field": exc.key, "message": exc.message}],
        ) from None


def query_filter(*, ignore: Iterable[str] = ()) -> filters.TaskFilter:
    """The filter of this request's query string (each key given once)."""
    repeated = sorted(k for k, values in request.args.lists() if len(values) > 1)
    if repeated:
        raise ApiError(422, "validation_failed", f"give each filter once: {', '.join(repeated)}")
    return parse_filter(dict(request.args.to_dict(flat=True)), ignore=ignore)


def priority_of(value: object) -> int:
    try:
        return priorities.parse(value)
    except priorities.PriorityError as exc:
        raise ApiError(
            422,
            "validation_failed",
            f"priority: expected {exc.expected}",
            details=[{"field": "priority", "message": f"expected {exc.expected}"}],
        ) from None


async def act_on_one(action: Action, task_id: int, priority: int | None = None) -> Response:
    c = current()
    [acted] = await store.act_on_ids(
        c.database, action, [existing_id(task_id)], actor=actor(), priority=priority
    )
    status = store.one_task_status(action, task_id, acted)
    if not status:
        row = await Client(c.database).task(task_id)
        status = row.status
    return json_response(models.ActionResult(id=task_id, status=status))


@blueprint.get("/tasks/count")
@document_response(cm.CountOut)
@document_response(models.ErrorOut, 422)
async def count_tasks() -> Response:
    """How many tasks match the filter (up to a cap of 100,000), and the highest matching
    id (`upto`): the preview of a bulk action."""
    counted = await store.count_tasks(current().reads, query_filter())
    return json_response(cm.CountOut(count=counted.count, upto=counted.upto, capped=counted.capped))


@blueprint.post("/tasks/bulk/<action>")
@document_request(cm.BulkIn)
@document_response(cm.BulkOut)
@document_response(models.ErrorOut, 400)
@document_response(models.ErrorOut, 401)
@document_response(models.ErrorOut, 403)
@document_response(models.ErrorOut, 404)
@document_response(models.ErrorOut, 413)
@document_response(models.ErrorOut, 415)
@document_response(models.ErrorOut, 422)
@security_scheme([{"bearer": []}])
async def bulk(action: str) -> Response:
    """One short transaction of a bulk action (retry, cancel, run-now, priority) over the
    next `batch` matching tasks at most `upto` and below `cursor`, newest first. Loop with
    the reply's cursor until it is null."""
    chosen = BULK_ACTIONS.get(action)
    if chosen is None:
        raise ApiError(
            404,
            "not_found",
            f"no bulk action {action!r}; the actions are {', '.join(BULK_ACTIONS)}",
        )
    step_in = await body(cm.BulkIn)
    f = parse_filter(step_in.filter)
    priority = None
    if chosen is Action.PRIORITY:
        if step_in.priority is None:
            raise ApiError(422, "validation_failed", "priority: the priority action needs one")
        priority = priority_of(step_in.priority)
    step = await store.act_in_bulk(
        current().database,
        chosen,
        f,
        upto=step_in.upto,
        cursor=step_in.cursor,
        batch=step_in.batch,
        actor=actor(),
        priority=priority,
    )
    return json_response(
        cm.BulkOut(changed=step.changed, skipped=step.skipped, busy=step.busy, cursor=step.cursor)
    )


@blueprint.post("/tasks/<int:task_id>/run-now")
@document_response(models.ActionResult)
@document_response(models.ErrorOut, 401)
@document_response(models.ErrorOut, 404)
@document_response(models.ErrorOut, 409)
@security_scheme([{"bearer": []}])
async def run_now(task_id: int) -> Response:
    """Make a pending task that is due later (scheduled, backing off, snoozed) due now. 409
    when it is not pending, or due already."""
    return await act_on_one(Action.RUN_NOW, task_id)


@blueprint.post("/tasks/<int:task_id>/priority")
@document_request(cm.PriorityIn)
@document_response(models.ActionResult)
@document_response(models.ErrorOut, 400)
@document_response(models.ErrorOut, 401)
@document_response(models.ErrorOut, 404)
@document_response(models.ErrorOut, 409)
@document_response(models.ErrorOut, 413)
@document_response(models.ErrorOut, 415)
@document_response(models.ErrorOut, 422)
@security_scheme([{"bearer": []}])
async def set_priority(task_id: int) -> Response:
    """Change the priority of a pending or waiting task. 409 for any other status."""
    given = await body(cm.PriorityIn)
    return await act_on_one(Action.PRIORITY, task_id, priority_of(given.priority))


async def _download(task_id: int, column: str) -> Response:
    found, text = await store.task_json(current().database, existing_id(task_id), column=column)
    if not found:
        raise errors.TaskNotFound(task_id)
    return Response(
        "null" if text is None else text,
        content_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="task-{task_id}-{column}.json"'},
    )


@blueprint.get("/tasks/<int:task_id>/payload")
@document_response(models.ErrorOut, 404)
async def payload(task_id: int) -> Response:
    """The task's whole payload as a JSON download."""
    return await _download(task_id, "payload")


@blueprint.get("/tasks/<int:task_id>/result")
@document_response(models.ErrorOut, 404)
async def result(task_id: int) -> Response:
    """The task's whole result as a JSON download (null: none yet)."""
    return await _download(task_id, "result")


@blueprint.get("/tasks/<int:task_id>/attempts")
@document_response(cm.Attempts)
@document_response(models.ErrorOut, 404)
async def attempts(task_id: int) -> Response:
    """The task's attempts, built from its history: worker, start, end, outcome, error and,
    where the history keeps one, traceback."""
    events = await store.task_history(current().database, existing_id(task_id))
    if not events:
        raise errors.TaskNotFound(task_id)
    return json_response(cm.Attempts(task_id=task_id, attempts=cm.attempts_from(events)))


@blueprint.get("/failures")
@document_response(cm.Failures)
@document_response(models.ErrorOut, 422)
async def failures() -> Response:
    """Failed tasks grouped by kind and error shape, biggest group first (at most 100).
    Takes the filter; by default status=error and finished_after=24h."""
    f = query_filter()
    if f.status is None:
        f = replace(f, status=(Status.ERROR.value,))
    if f.finished_after is None:
        f = replace(f, finished_after=FAILURES_DEFAULT_WINDOW)
    groups = await store.failure_groups(current().reads, f, limit=FAILURE_GROUPS)
    return json_response(cm.Failures(groups=[cm.FailureGroupOut.from_group(g) for g in groups]))


@blueprint.post("/schedules/<name>/run")
@document_response(cm.ScheduleRun)
@document_response(models.ErrorOut, 401)
@document_response(models.ErrorOut, 404)
@security_scheme([{"bearer": []}])
async def run_schedule(name: str) -> Response:
    """One tick of the schedule now (paused or not), without moving its next run."""
    task_id = await store.run_schedule(current().database, name, actor=actor())
    if task_id is None:
        raise ApiError(404, "schedule_not_found", f"no schedule {name!r}")
    return json_response(cm.ScheduleRun(name=name, task_id=task_id), 201)
