"""The pages for people: the status page ``/``, a task's page, and the API docs ``/docs``.

Rendered on the server for the first paint; ``static/page.js`` then keeps them live through
``/events`` (no reloads, no external CDN: the scripts and styles are served from here).
"""

from __future__ import annotations

import json
import re
from typing import Any

from quart import Blueprint, Response, redirect, render_template, request
from quart_schema import hide
from werkzeug.wrappers.response import Response as WerkzeugResponse

from notifyq import errors, store
from notifyq.client import Client
from notifyq.version import __version__
from notifyq.vocabulary import STATUSES, Status
from notifyq.web import models, process_models, replies
from notifyq.web.context import Context, current
from notifyq.web.views import build_stats, schedule_out, task_detail

blueprint = Blueprint("page", __name__)
# The queues table's column heads where a status reads better as another word.
STATUS_LABELS = {Status.IN_PROGRESS.value: "running"}

# The filter form of the task browser: key, label, placeholder (the filter language's keys).
FILTER_FIELDS = (
    ("status", "status", "error,cancelled"),
    ("queue", "queue", "default"),
    ("kind", "kind", "resize"),
    ("priority", "priority", "high or 10"),
    ("id", "id", "12,40"),
    ("created_after", "created after", "1h or 2026-12-01T09:00Z"),
    ("created_before", "created before", "15m or an ISO time"),
    ("finished_after", "finished after", "1h or an ISO time"),
    ("finished_before", "finished before", "15m or an ISO time"),
    ("error", "error contains", "timeout"),
)
# Those a details element folds away until one is used.
MORE_FILTER_FIELDS = (
    ("unique_key", "unique key", "exact"),
    ("concurrency_key", "concurrency key", "exact"),
    ("schedule", "schedule", "schedule name"),
    ("workflow", "workflow", "its root task's id"),
    ("batch", "batch", "batch id"),
    ("fingerprint", "failure group", "from the failures page"),
)
PREVIEW_CHARS = 4096  # as the API's previews (models.PREVIEW_CHARS)

RUNNING_SHOWN = 20
FAILURES_SHOWN = 10
SCHEDULES_SHOWN = 50
BATCHES_SHOWN = 20


async def summary(c: Context) -> dict[str, Any]:
    """Everything the status page shows, from bounded queries over partial indexes."""
    stats = await build_stats(c)
    running = await store.running_tasks(c.reads, RUNNING_SHOWN)
    failures = await store.recent_failures(c.reads, FAILURES_SHOWN)
    workers = await store.workers(c.reads, gone_after_s=c.settings.lease_s)
    queues = await store.list_queues(c.reads)
    shown = await store.list_schedules(c.reads, limit=SCHEDULES_SHOWN)
    batches = await store.live_batches(c.reads, limit=BATCHES_SHOWN)
    return {
        "stats": stats,
        "queue_limits": {q.name: limits_text(q) for q in queues if q.updated_at is not None},
        "schedules": [schedule_out(r) for r in shown],
        "running": [models.TaskOut.from_row(r) for r in running],
        "failures": [models.TaskOut.from_row(r) for r in failures],
        "workers": [process_models.WorkerOut.model_validate(dict(r)) for r in workers],
        "batches": [
            models.LiveBatchOut(
                id=b.id,
                total=b.total,
                done=b.done,
                failed=b.failed,
                remaining=b.remaining,
                callback_id=b.callback_id,
            )
            for b in batches
        ],
    }


def limits_text(q: store.QueueInfo) -> str:
    """A queue's limits in a few words, as the page shows them."""
    parts = ["paused"] if q.paused else []
    if q.concurrency is not None:
        parts.append(f"≤ {q.concurrency} at once")
    if q.rate is not None:
        parts.append(str(q.rate))
    if q.per_key_concurrency is not None:
        parts.append(f"≤ {q.per_key_concurrency} per key")
    return ", ".join(parts) or "none"


@blueprint.get("/")
@hide
async def status_page() -> Response:
    data = await summary(current())
    html = await render_template(
        "status.html",
        **data,
        now=data["stats"].now,
        initial=_script_json(data),
        statuses=STATUSES,
        status_labels=STATUS_LABELS,
        version=__version__,
        limits={
            "running": RUNNING_SHOWN,
            "failures": FAILURES_SHOWN,
            "schedules": SCHEDULES_SHOWN,
            "batches": BATCHES_SHOWN,
        },
    )
    return Response(html, content_type="text/html; charset=utf-8")


@blueprint.get("/ui/summary")
@hide
async def summary_json() -> Response:
    """The status page's data in one request (the page's own; the API has the same parts)."""
    return Response(_script_json(await summary(current())), content_type="application/json")


@blueprint.get("/ui/tasks/<int:task_id>")
@hide
async def task_page(task_id: int) -> Response:
    c = current()
    try:
        task = await task_detail(c, task_id)
        events = [models.EventOut.from_row(e) for e in await Client(c.database).events(task_id)]
    except errors.TaskNotFound as exc:
        html = await render_template(
            "task.html",
            task=None,
            task_id=task_id,
            message=str(exc),
            version=__version__,
            initial="null",
        )
        return Response(html, status=404, content_type="text/html; charset=utf-8")
    payload, payload_cut = preview(task.payload)
    result, result_cut = preview(task.result)
    html = await render_template(
        "task.html",
        task=task,
        task_id=task_id,
        events=events,
        payload=payload,
        payload_cut=payload_cut,
        result=result,
        result_cut=result_cut,
        preview_chars=PREVIEW_CHARS,
        initial=_script_json({"page": "task", "id": task_id, "status": task.status}),
        version=__version__,
        message=None,
    )
    return Response(html, content_type="text/html; charset=utf-8")


def preview(value: Any) -> tuple[str, bool]:
    """A value's pretty JSON, cut at PREVIEW_CHARS; and whether it was cut."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    if len(text) <= PREVIEW_CHARS:
        return text, False
    return text[:PREVIEW_CHARS] + "\n…", True


@blueprint.get("/ui/tasks")
@hide
async def tasks_page() -> Response:
    """The task browser: the filter lives in the query string (a pasted link opens the same
    view); the script reads the list from ``GET /tasks`` with that same query."""
    return await _console_page(
        "tasks.html",
        fields=FILTER_FIELDS,
        more_fields=MORE_FILTER_FIELDS,
        statuses=STATUSES,
        args=request.args.to_dict(),
    )


@blueprint.get("/ui/failures")
@hide
async def failures_page() -> Response:
    """Failure triage: groups from ``GET /failures``, each with its tasks and bulk actions."""
    return await _console_page("failures.html", args=request.args.to_dict())


@blueprint.get("/ui/queues")
@hide
async def queues_page() -> Response:
    """Queues (pause, resume, limits) and schedules (pause, resume, run once now)."""
    return await _console_page("queues.html")


async def _console_page(template: str, **values: Any) -> Response:
    page = template.removesuffix(".html")
    html = await render_template(
        template, **values, version=__version__, initial=_script_json({"page": page})
    )
    return Response(html, content_type="text/html; charset=utf-8")


@blueprint.app_context_processor
def console_context() -> dict[str, Any]:
    """Every page knows whether actions are off (HTTP_READ_ONLY), to say so up front."""
    return {"read_only": current().settings.http_read_only}


@blueprint.get("/ui/task")
@hide
async def goto_task() -> WerkzeugResponse:
    """The status page's "task id" form without JavaScript."""
    raw = request.args.get("id", "").strip()
    return redirect(f"/ui/tasks/{int(raw)}" if re.fullmatch(r"[0-9]{1,19}", raw) else "/")


@blueprint.get("/docs")
@hide
async def docs() -> Response:
    html = await render_template("docs.html", version=__version__)
    return Response(html, content_type="text/html; charset=utf-8")


def _script_json(value: Any) -> str:
    """JSON safe inside <script type="application/json">: no "</script>" can close it."""
    return (
        json.dumps(value, default=replies.plain)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )
