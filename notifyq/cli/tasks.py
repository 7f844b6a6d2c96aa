"""The task commands: `notifyq enqueue | seed | status | cancel | retry | history | wait |
prune | dsn`."""

from __future__ import annotations

import json
import math
import sys
import textwrap
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import click
import trio

from notifyq import errors, priorities, spec, store
from notifyq.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    duration,
    fail,
    positive_duration,
    run,
    settings_from,
)
from notifyq.client import Client
from notifyq.durations import DurationTooLong, parse_duration
from notifyq.engine import maintenance
from notifyq.serving.startup import open_db
from notifyq.settings import Settings
from notifyq.vocabulary import Action, Actor, Status

T = TypeVar("T")


@click.command()
@click.option("-n", "--count", type=click.IntRange(1, 10_000_000), default=20, show_default=True)
@click.pass_context
def seed(ctx: click.Context, count: int) -> None:
    """Enqueue COUNT demo tasks in one statement."""
    settings = settings_from(ctx)

    async def go() -> None:
        async with open_db(settings, pool_size=2) as database:
            ids = await store.seed(database, count)
        click.echo(f"enqueued {len(ids)} demo tasks ({ids[0]}..{ids[-1]})")

    run(go)


def _parse_payload(text: str | None) -> Any:
    """JSON if it parses, else the text itself as a JSON string."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _parse_json(option: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        fail(f"invalid {option} {text!r}: expected JSON ({exc})", EXIT_USAGE)


def _task_seconds(option: str, low: float, high: float) -> Callable[[Any, Any, str | None], Any]:
    """A callback for --delay/--timeout: the format is the CLI's durations (30s, 7d), the
    bounds the task check's, also for a duration longer than any the CLI parses."""
    parse = duration if low == 0 else positive_duration

    def callback(ctx: Any, param: Any, value: str | None) -> float | None:
        try:
            parse_duration(value)
        except DurationTooLong:
            fail(str(errors.InvalidTask(option, value, spec.seconds_rule(low, high))), EXIT_USAGE)
        except ValueError:
            pass  # not a duration at all: the parse below says so
        return parse(ctx, param, value)

    return callback


def _priority(_ctx: Any, _param: Any, value: str) -> int:
    try:
        return priorities.parse(value)
    except priorities.PriorityError as exc:
        raise click.BadParameter(f"expected {exc.expected}") from None


def _ids(text: str) -> list[Any]:
    """``--after 3,5``: the ids; a piece that is not an integer is left for the check to
    name."""
    pieces = [p.strip() for p in text.split(",")]
    return [int(p) if p.isdigit() else p for p in pieces]


@click.command()
@click.argument("kind")
@click.argument("payload", required=False)
@click.option("--queue", default="default", show_default=True)
@click.option(
    "--priority",
    default="0",
    show_default=True,
    callback=_priority,
    help="Higher runs first: an integer, or low (-10), normal (0), high (10), urgent (20).",
)
@click.option(
    "--delay",
    callback=_task_seconds("delay", 0, spec.MAX_DELAY_S),
    help="Run no sooner than this from now (e.g. 30s).",
)
@click.option(
    "--at",
    "run_at",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
    help="Run no sooner than this time (ISO 8601; no zone: local time).",
)
@click.option("--max-attempts", type=int, default=3, show_default=True)
@click.option(
    "--timeout",
    callback=_task_seconds("timeout", spec.MIN_TIMEOUT_S, spec.MAX_TIMEOUT_S),
    help="Time limit of one attempt.",
)
@click.option("--concurrency-key", help="What the queue's per-key limit counts by.")
@click.option(
    "--unique-key",
    help="Add nothing while a live task of the queue has this key; print that task's id.",
)
@click.option("--meta", help="A JSON object that travels with the task (task.meta).")
@click.option(
    "--after",
    metavar="ID[,ID...]",
    help="Wait for these tasks to end first (status waiting until then).",
)
@click.option(
    "--on-parent-failure",
    default="cancel",
    show_default=True,
    help="cancel: cancelled when a parent ends error or cancelled; run: runs anyway.",
)
@click.option(
    "--expires-in",
    callback=_task_seconds("expires_in", spec.MIN_TIMEOUT_S, spec.MAX_DELAY_S),
    help="Start deadline: never started after this long (then cancelled, history expired).",
)
@click.option(
    "--on-conflict",
    type=click.Choice(spec.ON_CONFLICT),
    default="keep",
    show_default=True,
    help="With --unique-key a live task holds: keep it, replace its payload and run_at "
    "(debounce), or update its payload but keep run_at (throttle).",
)
@click.pass_context
def enqueue(
    ctx: click.Context,
    kind: str,
    payload: str | None,
    queue: str,
    priority: int,
    delay: float | None,
    run_at: datetime | None,
    max_attempts: int,
    timeout: float | None,
    concurrency_key: str | None,
    unique_key: str | None,
    meta: str | None,
    after: str | None,
    on_parent_failure: str,
    expires_in: float | None,
    on_conflict: str,
) -> None:
    """Add a task. PAYLOAD is JSON; text that is not JSON is taken as a string."""
    settings = settings_from(ctx)
    if run_at is not None and run_at.tzinfo is None:
        run_at = run_at.astimezone()  # naive: local time
    try:
        # The one check of every entry point, before any connection is made.
        task = spec.new_task(
            kind,
            _parse_payload(payload),
            queue=queue,
            priority=priority,
            delay=delay,
            run_at=run_at,
            max_attempts=max_attempts,
            timeout=timeout,
            unique_key=unique_key,
            concurrency_key=concurrency_key,
            meta=None if meta is None else _parse_json("--meta", meta),
            after=None if after is None else _ids(after),
            on_parent_failure=on_parent_failure,
            expires_in=expires_in,
            on_conflict=on_conflict,
        )
    except errors.InvalidTask as exc:
        fail(str(exc), EXIT_USAGE)

    async def go() -> None:
        async with open_db(settings, pool_size=2) as database:
            found = await store.enqueue(database, task=task)
        if found.change in ("replaced", "updated"):
            click.echo(
                f"notifyq: {found.change} task {found.id} (unique key {unique_key!r})", err=True
            )
        elif found.duplicate:
            click.echo(
                f"notifyq: not added: task {found.id} with unique key {unique_key!r} is "
                f"{found.row.status} in queue {queue!r}",
                err=True,
            )
        click.echo(found.id)

    run(go)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Task counts by queue and status, and the live worker processes."""
    settings = settings_from(ctx)

    async def go() -> None:
        async with open_db(settings, pool_size=2) as database:
            counts = [{"queue": q, "status": s, "n": n} for q, s, n in await store.counts(database)]
            workers = await store.workers(database, gone_after_s=settings.lease_s)
            # With no process at all, every pending task waits: that says nothing more.
            unserved = [dict(r) for r in await store.unserved(database)] if workers else []
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "counts": [dict(r) for r in counts],
                        "workers": [dict(r) for r in workers],
                        "unserved": unserved,
                    },
                    default=str,
                    indent=2,
                )
            )
            return
        click.echo(f"{'QUEUE':<20} {'STATUS':<12} {'TASKS':>10}")
        for r in counts:
            click.echo(f"{r['queue']:<20} {r['status']:<12} {r['n']:>10}")
        click.echo(f"\n{len(workers)} worker process(es)")
        for w in workers:
            # A process that stopped heart-beating is not busy, whatever its row last said.
            busy = (
                "gone" if w["state"] == "gone" else f"in_flight={w['in_flight']}/{w['concurrency']}"
            )
            click.echo(
                f"  {w['id']}  queues={','.join(w['queues'])}  "
                f"{busy}  last_seen={w['last_seen']:%H:%M:%S}"
            )
        if unserved:
            click.echo(
                "\npending tasks no live process can run (no process serves the queue or the kind)"
            )
            for u in unserved:
                click.echo(f"  {u['queue']:<20} {u['kind']:<30} {u['n']:>10}")

    run(go)


def _task_command(action: str) -> Callable[[Callable[..., Any]], click.Command]:
    def decorate(fn: Callable[..., Any]) -> click.Command:
        return click.command(name=action)(
            click.argument("task_id", type=click.IntRange(1))(click.pass_context(fn))
        )

    return decorate


@_task_command("cancel")
def cancel(ctx: click.Context, task_id: int) -> None:
    """Cancel a task: pending ends at once, running is stopped by its process."""
    click.echo(run(lambda: _act_on_one(settings_from(ctx), Action.CANCEL, task_id)))


@_task_command("retry")
def retry(ctx: click.Context, task_id: int) -> None:
    """Put an 'error' or 'cancelled' task back to pending (or waiting, for a dependent
    whose parent has not ended)."""
    click.echo(run(lambda: _act_on_one(settings_from(ctx), Action.RETRY, task_id)))


@_task_command("history")
@click.option(
    "--tracebacks/--no-tracebacks",
    default=True,
    show_default=True,
    help="Print each failed attempt's traceback under its event.",
)
def history(ctx: click.Context, task_id: int, tracebacks: bool) -> None:
    """Print a task's events, oldest first (a failed attempt's traceback under it)."""
    settings = settings_from(ctx)
    events = run(lambda: _with_client(settings, lambda c: c.history(task_id)))
    for e in events:
        worker = e["worker"] or "-"
        error = f"  {e['error']}" if e["error"] else ""
        detail = f"  ({e['detail']})" if e.get("detail") else ""
        click.echo(
            f"{e['at']:%Y-%m-%d %H:%M:%S.%f}  {e['event']:<10} attempt={e['attempt']}  "
            f"{worker}{error}{detail}"
        )
        if tracebacks and e.get("traceback"):
            click.echo(textwrap.indent(e["traceback"].rstrip("\n"), "    | "))


@click.command()
@click.argument("task_id", type=click.IntRange(1))
@click.option("--timeout", callback=duration, help="Give up after this long (exit 3).")
@click.pass_context
def wait(ctx: click.Context, task_id: int, timeout: float | None) -> None:
    """Wait for a task to end; print it as JSON. Exit 0 if done, 1 if error or cancelled."""
    settings = settings_from(ctx)

    async def go() -> dict[str, Any]:
        try:
            # The deadline sits outside the client so that it is not wrapped in the
            # trio-asyncio loop's exception group.
            with trio.fail_after(timeout if timeout is not None else math.inf):
                return await _with_client(settings, lambda c: c.wait(task_id))
        except trio.TooSlowError:
            raise trio.TooSlowError(f"task {task_id} did not end within {timeout:g} s") from None

    task = run(go)
    click.echo(json.dumps(task, default=str))
    if task["status"] != Status.DONE:
        sys.exit(EXIT_FAILED)


@click.command()
@click.option(
    "--older-than",
    required=True,
    callback=duration,
    help="Age of ended tasks to delete (e.g. 7d).",
)
@click.pass_context
def prune(ctx: click.Context, older_than: float) -> None:
    """Delete ended tasks older than --older-than, in batches, and drop the history's day
    partitions whose every event is older than that."""
    settings = settings_from(ctx)

    async def go() -> int:
        async with open_db(settings, pool_size=2) as database:
            return await maintenance.apply_retention(database, older_than)

    click.echo(f"deleted {run(go)} task(s)")


async def _act_on_one(settings: Settings, action: Action, task_id: int) -> str:
    """The console's one-task action (its events name the actor ``cli``): the status it
    leaves, or TaskNotFound / InvalidTransition as the client raises them."""
    async with open_db(settings, pool_size=2) as database:
        [acted] = await store.act_on_ids(database, action, [task_id], actor=Actor.CLI.value)
    return store.one_task_status(action, task_id, acted)


async def _with_client(settings: Settings, fn: Callable[[Client], Awaitable[T]]) -> T:
    async with open_db(settings, pool_size=2) as database:
        return await fn(Client(database, listen_dsn=settings.listen_database_url))
