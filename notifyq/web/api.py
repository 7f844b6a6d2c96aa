"""The JSON API: tasks, stats, workers, health, metrics and the /events stream."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import TypeVar
from urllib.parse import urlencode

import trio
from pydantic import BaseModel
from quart import Blueprint, Response, request
from quart_schema import document_querystring, document_request, document_response, security_scheme

from notifyq import errors, store
from notifyq.client import Client
from notifyq.vocabulary import DONE_CHANNEL, Action
from notifyq.web import console_api, console_models, models, process_models
from notifyq.web.bodies import body, validate
from notifyq.web.context import PROBE_STALE_S, Context, current
from notifyq.web.live import RESYNC, Subscription
from notifyq.web.metrics import CONTENT_TYPE
from notifyq.web.replies import ApiError, error_response, json_response
from notifyq.web.views import build_stats, existing_id, task_detail

blueprint = Blueprint("api", __name__)
M = TypeVar("M", bound=BaseModel)

HEALTH_DB_TIMEOUT_S = 2.0
SSE_PING_S = 15.0
STREAMS_RETRY_AFTER_S = 5
LISTEN_WAIT_S = 2.0  # no LISTEN at all (NO_LISTEN, reconnecting): start anyway


# --- tasks ---------------------------------------------------------------------------


@blueprint.post("/tasks")
@document_request(models.NewTask)
@document_response(models.CreatedTask, 201)
@document_response(models.CreatedTask, 200)
@document_response(models.ErrorOut, 400)
@document_response(models.ErrorOut, 401)
@document_response(models.ErrorOut, 413)
@document_response(models.ErrorOut, 415)
@document_response(models.ErrorOut, 422)
@security_scheme([{"bearer": []}])
async def create_task() -> Response:
    """Add a task: 201 with the task and its Location. With a unique_key that a live task
    of the queue holds: 200 with that task and duplicate true."""
    new = await body(models.NewTask)
    c = current()
    try:
        # The one check of every entry point (notifyq.spec), as for Python producers and
        # the CLI.
        task = new.checked()
    except errors.InvalidTask as exc:
        raise ApiError(
            422,
            "validation_failed",
            str(exc),
            details=[{"field": exc.option, "message": str(exc)}],
        ) from None
    try:
        found = await store.enqueue(c.database, task=task)
    except errors.QueryError as exc:
        # Data PostgreSQL refuses that the check let through: a bug of the check, but the
        # client still gets a 422 rather than a 500.
        if exc.sqlstate and exc.sqlstate[:2] in ("22", "23"):
            first_line = str(exc).splitlines()[0]
            raise ApiError(
                422, "validation_failed", f"the database refused the task: {first_line}"
            ) from None
        raise
    created = models.CreatedTask.from_enqueued(found)
    if found.duplicate:
        if found.change == "kept":
            c.metrics.duplicates.inc()
        return json_response(created, 200, {"Location": f"/tasks/{created.id}"})
    return json_response(created, 201, {"Location": f"/tasks/{created.id}"})


@blueprint.get("/tasks")
@document_querystring(console_models.TaskQuery)
@document_response(models.TaskPage)
@document_response(models.ErrorOut, 422)
async def list_tasks() -> Response:
    """Tasks newest first, filtered by the filter language (docs/http.md, Filters); follow
    `next` for older ones."""
    f = console_api.query_filter(ignore=console_models.PAGE_KEYS)
    paging = {k: v for k, v in request.args.items() if k in console_models.PAGE_KEYS}
    query = validate(console_models.TaskQuery, paging)
    rows = await store.find_tasks(current().reads, f, before=query.before, limit=query.limit)
    tasks = [models.TaskOut.from_row(r) for r in rows]
    next_url = None
    if len(tasks) == query.limit:
        args = f.as_query() | {"limit": str(query.limit), "before": str(tasks[-1].id)}
        next_url = f"/tasks?{urlencode(args)}"
    return json_response(models.TaskPage(tasks=tasks, next=next_url))


@blueprint.get("/tasks/<int:task_id>")
@document_response(models.TaskOut)
@document_response(models.ErrorOut, 404)
async def get_task(task_id: int) -> Response:
    """One task, with its first parents and children and, for a batch's callback, the
    batch's progress; previews of its payload and result (their first 4096 characters of
    JSON; the whole values: /payload and /result)."""
    out = await task_detail(current(), task_id)
    out.payload_preview, out.payload_truncated = preview(out.payload)
    out.result_preview, out.result_truncated = preview(out.result)
    return json_response(out)


def preview(value: object) -> tuple[str, bool]:
    """The first PREVIEW_CHARS characters of ``value`` as JSON text, and whether it is cut."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except RecursionError:
        return "", True
    return text[: store.PREVIEW_CHARS], len(text) > store.PREVIEW_CHARS


@blueprint.get("/tasks/<int:task_id>/history")
@document_response(models.History)
@document_response(models.ErrorOut, 404)
async def task_history(task_id: int) -> Response:
    """A task's events, oldest first."""
    events = await Client(current().database).events(existing_id(task_id))
    return json_response(
        models.History(task_id=task_id, events=[models.EventOut.from_row(e) for e in events])
    )


@blueprint.post("/tasks/<int:task_id>/cancel")
@document_response(models.ActionResult)
@document_response(models.ErrorOut, 401)
@document_response(models.ErrorOut, 404)
@document_response(models.ErrorOut, 409)
@security_scheme([{"bearer": []}])
async def cancel_task(task_id: int) -> Response:
    """Cancel: a pending task ends at once (`cancelled`); a running one is stopped by its
    process (`cancelling`). 409 if it already ended done or error."""
    return await console_api.act_on_one(Action.CANCEL, task_id)


@blueprint.post("/tasks/<int:task_id>/retry")
@document_response(models.ActionResult)
@document_response(models.ErrorOut, 401)
@document_response(models.ErrorOut, 404)
@document_response(models.ErrorOut, 409)
@security_scheme([{"bearer": []}])
async def retry_task(task_id: int) -> Response:
    """Put an `error` or `cancelled` task back to pending with a fresh attempt budget."""
    return await console_api.act_on_one(Action.RETRY, task_id)


# --- the fleet -----------------------------------------------------------------------


@blueprint.get("/stats")
@document_response(process_models.Stats)
async def stats() -> Response:
    """Counts, this process's work since start, throughput and pickup latency."""
    return json_response(await build_stats(current()))


@blueprint.get("/workers")
@document_response(process_models.Workers)
async def workers() -> Response:
    """The worker processes (the registry their heartbeats keep); `state` is `gone` for a
    process whose last heartbeat is older than LEASE."""
    c = current()
    rows = await store.workers(c.database, gone_after_s=c.settings.lease_s)
    return json_response(
        process_models.Workers(
            workers=[process_models.WorkerOut.model_validate(dict(r)) for r in rows]
        )
    )


@blueprint.get("/health")
@document_response(process_models.HealthOut)
@document_response(process_models.HealthOut, 503)
async def health() -> Response:
    """200 when the database answers and the listener got its own probe back; else 503.
    ``degraded`` (still 200): handlers that ignored their time limit hold every thread
    slot, so this process takes no ``def`` task until one returns."""
    c = current()
    checks: dict[str, process_models.Check] = {}
    started = time.perf_counter()
    try:
        with trio.fail_after(HEALTH_DB_TIMEOUT_S):
            await store.ping(c.database)
        ms = (time.perf_counter() - started) * 1000
        checks["database"] = process_models.Check(ok=True, detail=f"answered in {ms:.1f} ms")
    except trio.TooSlowError:
        checks["database"] = process_models.Check(
            ok=False, detail=f"no answer within {HEALTH_DB_TIMEOUT_S:g} s"
        )
    except errors.DatabaseUnavailable as exc:
        checks["database"] = process_models.Check(ok=False, detail=str(exc))
    checks["listener"] = _listener_check(c)
    if c.stopping.is_set():
        checks["process"] = process_models.Check(ok=False, detail="shutting down")
    ok = all(check.ok for check in checks.values())
    threads = _threads_check(c)
    if threads is not None:
        checks["threads"] = threads  # after `ok`: it degrades the process, never stops it
    body = process_models.HealthOut(
        status="unavailable" if not ok else "degraded" if threads and not threads.ok else "ok",
        checks=checks,
    )
    return json_response(body, 200 if ok else 503)


def _threads_check(c: Context) -> process_models.Check | None:
    threads = c.statistics().threads
    stuck, slots = threads.abandoned, threads.slots
    if not stuck:
        return None
    detail = f"{stuck} of {slots} thread slots held by handlers that ignored their time limit"
    if stuck < slots:
        return process_models.Check(ok=True, detail=detail)
    return process_models.Check(
        ok=False, detail=f"{detail}; def kinds are left to other processes until one returns"
    )


def _listener_check(c: Context) -> process_models.Check:
    h = c.health
    if not h.listen_enabled:
        return process_models.Check(ok=True, detail="NO_LISTEN: no LISTEN connection to check")
    age = c.probe_age_s()
    if not h.listener_connected:
        return process_models.Check(ok=False, detail="LISTEN connection down; reconnecting")
    if age is None:
        return process_models.Check(ok=False, detail="no probe notification received yet")
    if age > PROBE_STALE_S:
        return process_models.Check(ok=False, detail=f"last probe notification {age:.1f} s ago")
    return process_models.Check(ok=True, detail=f"probe notification {age:.1f} s ago")


@blueprint.get("/metrics")
async def metrics() -> Response:
    """Prometheus text format."""
    c = current()
    # The depth gauges keep their last value while the database is away; the counters
    # are still worth scraping.
    with contextlib.suppress(errors.DatabaseUnavailable):
        await c.counts()
        await c.batch_gauges()
        await c.backlog()
    return Response(c.render_metrics(), content_type=CONTENT_TYPE)


# --- live events ---------------------------------------------------------------------


@blueprint.get("/events")
@document_response(models.ErrorOut, 503)
async def events() -> Response:
    """Server-sent events, fed by this process's LISTEN connection: first `ready` (from then
    on no task end is missed), then `task` ({id, status, queue, kind}) when a task ends,
    `queued` ({queue}) when a queue got claimable rows while a worker waited,
    `cancel_requested` ({id}), `resync` (more happened than one message lists: read the
    table); a `: ping` comment every 15 s. Events come in batches, one per ~150 ms; what a
    notification claims is published only as the table confirms it. At most
    HTTP_MAX_STREAMS streams at once: 503 `too_many_streams` beyond."""
    c = current()
    limit = c.settings.http_max_streams
    subscription = c.live.open(limit=limit)
    if subscription is None:
        return error_response(
            503,
            "too_many_streams",
            f"{limit} /events streams are open, the most this process serves "
            "(HTTP_MAX_STREAMS); try again later",
            headers={"Retry-After": str(STREAMS_RETRY_AFTER_S)},
        )
    response = Response(
        _stream(c, subscription),
        content_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    response.timeout = None  # Quart would cut the stream after 60 s
    return response


async def _stream(c: Context, subscription: Subscription) -> AsyncIterator[bytes]:
    with subscription:
        # The first line says "subscribed": only once the LISTEN for task ends is in
        # effect (within a round trip), so a client that acts on it misses nothing.
        with trio.move_on_after(LISTEN_WAIT_S):
            await c.live.wait_listening(DONE_CHANNEL)
        yield b"retry: 2000\nevent: ready\ndata: {}\n\n"
        # Open until the HTTP side closes (after the workers have stopped): close_all()
        # then ends every stream at once.
        while True:
            message: bytes | None = None
            ended = False
            with trio.move_on_after(SSE_PING_S):
                try:
                    message = await subscription.receive.receive()
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    ended = True
            if ended:
                if not c.stopping.is_set():
                    yield RESYNC  # fell behind: start afresh
                return
            yield message if message is not None else b": ping\n\n"
