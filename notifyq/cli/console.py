"""The console's commands: `notifyq tasks list | count | show | failures | retry | cancel |
run-now | priority`, the same filter language as the HTTP side (notifyq/filters.py).

Reads go to READ_DATABASE_URL when it is set, actions (and the count that bounds one) to
DATABASE_URL. Every action's events name the actor ``cli``. A filter the language refuses
is one line and exit 2; an action on filters asks first (``--yes`` does not), ``--dry-run``
only says what it would touch.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import click

from notifyq import db, errors, filters, priorities, store
from notifyq.cli.common import EXIT_FAILED, EXIT_USAGE, fail, run, settings_from
from notifyq.serving.startup import open_db
from notifyq.settings import Settings
from notifyq.vocabulary import Action, Actor

T = TypeVar("T")
DRY_RUN_SHOWN = 10
ACTOR = Actor.CLI.value

_FILTER_OPTIONS = [
    ("--status", "status", "Statuses, comma-separated (error,cancelled)."),
    ("--queue", "queue", "Queues, comma-separated."),
    ("--kind", "kind", "Kinds, comma-separated."),
    ("--priority", "priority", "Priorities: integers or low, normal, high, urgent."),
    ("--id", "id", "Task ids, comma-separated."),
    ("--created-after", "created_after", "ISO 8601 time, or an age: 90s, 15m, 1h, 2d."),
    ("--created-before", "created_before", "As --created-after."),
    ("--finished-after", "finished_after", "As --created-after."),
    ("--finished-before", "finished_before", "As --created-after."),
    ("--unique-key", "unique_key", "Exact unique_key."),
    ("--concurrency-key", "concurrency_key", "Exact concurrency_key."),
    ("--schedule", "schedule", "A schedule's name: the tasks it added."),
    ("--workflow", "workflow", "A task id: it and its descendants."),
    ("--batch", "batch", "A batch id: its members."),
    ("--error", "error", "Case-insensitive substring of the error."),
    ("--fingerprint", "fingerprint", "A failure group (tasks failures)."),
]
_SINCE_HELP = (
    "finished after this when every --status asked for has ended (done, error, cancelled), "
    "else created after it: an age (1h) or an ISO 8601 time"
)


def filter_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The filter language's keys as options, plus --since and --until."""
    fn = click.option("--until", help=_SINCE_HELP.replace("after", "before"))(fn)
    fn = click.option("--since", help=_SINCE_HELP)(fn)
    for flag, name, help_text in reversed(_FILTER_OPTIONS):
        fn = click.option(flag, name, help=help_text)(fn)
    return fn


def filter_from(options: dict[str, Any]) -> filters.TaskFilter:
    """The filter the options describe; a bad one ends the command (exit 2)."""
    given = {name: options.pop(name) for _, name, _ in _FILTER_OPTIONS}
    since, until = options.pop("since"), options.pop("until")
    try:
        f = filters.parse(given)
        bounds = filters.parse({"created_after": since, "created_before": until})
    except filters.FilterError as exc:
        flag = "--" + exc.key.replace("_", "-")
        if exc.key.startswith("created_") and given.get(exc.key) is None:
            flag = "--since" if exc.key == "created_after" else "--until"
        fail(f"invalid {flag}: {exc.message}", EXIT_USAGE)
    return filters.with_since(f, bounds.created_after, bounds.created_before)


@asynccontextmanager
async def open_reads(settings: Settings) -> AsyncIterator[tuple[db.Database, db.Database]]:
    """(primary, reads): reads is READ_DATABASE_URL's pool when it is set."""
    async with open_db(settings, pool_size=2) as primary:
        if settings.read_database_url:
            async with primary.open_sibling(max_size=2, dsn=settings.read_database_url) as reads:
                yield primary, reads
        else:
            yield primary, primary


def _with(settings: Settings, fn: Callable[[db.Database, db.Database], Awaitable[T]]) -> T:
    async def go() -> T:
        async with open_reads(settings) as (primary, reads):
            return await fn(primary, reads)

    return run(go)


def _short(text: str | None, width: int) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _when(value: Any) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


@click.group()
def tasks() -> None:
    """Find tasks and act on many at once (the operator console's command line)."""


@tasks.command("list")
@filter_options
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--before", type=click.IntRange(1), help="Only ids below this (the next page).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def list_(
    ctx: click.Context, /, limit: int, before: int | None, as_json: bool, **options: Any
) -> None:
    """Tasks matching the filters, newest first."""
    f = filter_from(options)
    settings = settings_from(ctx)
    rows = _with(settings, lambda _, reads: store.find_tasks(reads, f, before=before, limit=limit))
    if as_json:
        for row in rows:
            fields = row.as_dict() | {
                "payload_preview": row.payload_preview,
                "result_preview": row.result_preview,
            }
            click.echo(json.dumps(fields, default=str))
    else:
        _table(rows)
    if len(rows) == limit:
        click.echo(f"(more: --before {rows[-1].id})", err=True)


def _table(rows: list[store.TaskRow]) -> None:
    click.echo(
        f"{'id':>10}  {'status':<11} {'queue':<12} {'kind':<16} {'prio':>5} "
        f"{'tries':>5}  {'created':<19}  {'finished':<19}  error"
    )
    for r in rows:
        click.echo(
            f"{r.id:>10}  {r.status:<11} {_short(r.queue, 12):<12} {_short(r.kind, 16):<16} "
            f"{r.priority:>5} {r.attempts:>2}/{r.max_attempts:<2}  {_when(r.created_at)}  "
            f"{_when(r.finished_at):<19}  {_short(r.error, 60)}"
        )


@tasks.command("count")
@filter_options
@click.pass_context
def count(ctx: click.Context, /, **options: Any) -> None:
    """How many tasks match the filters (counted up to 100,000)."""
    f = filter_from(options)
    counted = _with(settings_from(ctx), lambda _, reads: store.count_tasks(reads, f))
    click.echo(f"{counted.count}{'+' if counted.capped else ''}")


@tasks.command("show")
@click.argument("task_id", type=click.IntRange(1))
@click.pass_context
def show(ctx: click.Context, task_id: int) -> None:
    """A task and its attempts: status, error, and each attempt's worker, outcome, error
    and traceback (why did it fail?)."""

    async def go(primary: db.Database, _: db.Database) -> tuple[Any, list[store.EventRow]]:
        return await store.get_task(primary, task_id), await store.task_history(primary, task_id)

    row, events = _with(settings_from(ctx), go)
    if row is None:
        fail(f"task {task_id} not found")
    click.echo(
        f"task {row.id}: {row.kind} on {row.queue}, {row.status}, priority {row.priority}, "
        f"attempt {row.attempts} of {row.max_attempts}"
    )
    if row.error:
        click.echo(f"error: {row.error}")
    for e in events:
        who = f" by {e.actor}" if e.actor else ""
        worker = f" on {e.worker}" if e.worker else ""
        error = f": {e.error}" if e.error else ""
        click.echo(
            f"  {e.at:%Y-%m-%d %H:%M:%S.%f}  {e.event:<16} attempt {e.attempt}{worker}{who}{error}"
        )
        if e.traceback:
            for line in e.traceback.rstrip().splitlines():
                click.echo(f"      {line}")


@tasks.command("failures")
@filter_options
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def failures(ctx: click.Context, /, limit: int, as_json: bool, **options: Any) -> None:
    """Failed tasks grouped by kind and error shape, biggest group first (by default
    --status error --since 24h). Act on a group with --fingerprint."""
    f = filter_from(options)
    if f.status is None:
        f = filters.parse(f.as_query() | {"status": "error"})
    if f.finished_after is None:
        f = filters.parse(f.as_query() | {"finished_after": "24h"})
    groups = _with(settings_from(ctx), lambda _, reads: store.failure_groups(reads, f, limit=limit))
    for g in groups:
        if as_json:
            click.echo(json.dumps(dataclasses.asdict(g), default=str))
        else:
            click.echo(f"{g.count:>8}  {g.fingerprint}  {_short(g.kind, 16):<16} {g.message}")
            click.echo(
                f"{'':>8}  last {_when(g.last_seen)}, first {_when(g.first_seen)}, "
                f"e.g. task {g.example_id}"
            )


def _action_command(action: Action, name: str, summary: str) -> click.Command:
    takes_priority = action is Action.PRIORITY

    @click.argument("task_ids", nargs=-1, type=click.IntRange(1))
    @filter_options
    @click.option("--dry-run", is_flag=True, help="Say what it would touch; change nothing.")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask before acting on filters.")
    @click.option(
        "--step",
        type=click.IntRange(1, store.BATCH_MAX),
        default=1000,
        show_default=True,
        help="Tasks per transaction.",
    )
    @click.pass_context
    def command(
        ctx: click.Context,
        /,
        task_ids: tuple[int, ...],
        dry_run: bool,
        yes: bool,
        step: int,
        **options: Any,
    ) -> None:
        value: int | None = None
        if takes_priority:
            value = _priority(options.pop("new_priority"))
        f = filter_from(options)
        if task_ids and not f.is_empty():
            raise click.UsageError("give task ids or filter options, not both")
        if not task_ids and f.is_empty():
            raise click.UsageError("give task ids, or filter options (--status, --kind, ...)")
        settings = settings_from(ctx)
        if task_ids:
            _on_ids(settings, action, list(task_ids), value, dry_run)
        else:
            _on_filter(settings, action, f, value, dry_run=dry_run, yes=yes, step=step)

    command.__doc__ = summary
    if takes_priority:
        command = click.argument("new_priority")(command)
    return click.command(name)(command)


def _priority(text: str) -> int:
    try:
        return priorities.parse(text)
    except priorities.PriorityError as exc:
        fail(f"invalid priority {text!r}: expected {exc.expected}", EXIT_USAGE)


def _on_ids(
    settings: Settings, action: Action, ids: list[int], priority: int | None, dry_run: bool
) -> None:
    async def go(primary: db.Database, _: db.Database) -> list[str]:
        if dry_run:
            rows = [await store.get_task(primary, i) for i in ids]
            return [
                f"{i} {'not found' if r is None else r.status}"
                for i, r in zip(ids, rows, strict=True)
            ]
        lines = []
        acted = await store.act_on_ids(primary, action, ids, actor=ACTOR, priority=priority)
        for one in acted:
            try:
                status = store.one_task_status(action, one.id, one)
                lines.append(f"{one.id} {status or 'priority ' + str(priority)}")
            except errors.NotifyqError as exc:
                lines.append(f"{one.id} refused: {exc}")
        return lines

    lines = _with(settings, go)
    for line in lines:
        click.echo(line)
    if any(" refused: " in line for line in lines):
        sys.exit(EXIT_FAILED)


def _on_filter(
    settings: Settings,
    action: Action,
    f: filters.TaskFilter,
    priority: int | None,
    *,
    dry_run: bool,
    yes: bool,
    step: int,
) -> None:
    verb = action.value.replace("_", "-")

    async def preview(primary: db.Database, _: db.Database) -> tuple[store.Counted, list[int]]:
        counted = await store.count_tasks(primary, f)
        first = await store.find_tasks(primary, f, before=None, limit=DRY_RUN_SHOWN)
        return counted, [r.id for r in first]

    counted, first = _with(settings, preview)
    many = f"{counted.count}{' or more' if counted.capped else ''}"
    if counted.upto is None:
        click.echo(f"no task matches {f.describe()}")
        return
    if dry_run:
        click.echo(
            f"would {verb} up to {many} tasks matching {f.describe()} (ids up to "
            f"{counted.upto}); newest: {', '.join(map(str, first))}"
        )
        return
    if not yes and not click.confirm(f"{verb} {many} tasks matching {f.describe()}?"):
        fail("nothing done", EXIT_FAILED)

    async def act(primary: db.Database, _: db.Database) -> tuple[int, int, int]:
        changed = skipped = busy = 0
        cursor: int | None = None
        while True:
            done = await store.act_in_bulk(
                primary,
                action,
                f,
                upto=counted.upto or 0,
                cursor=cursor,
                batch=step,
                actor=ACTOR,
                priority=priority,
            )
            changed, skipped, busy = (
                changed + done.changed,
                skipped + done.skipped,
                busy + done.busy,
            )
            click.echo(
                f"\r{verb}: {changed + skipped}/{many} (changed {changed}, skipped {skipped})",
                err=True,
                nl=done.cursor is None,
            )
            if done.cursor is None:
                return changed, skipped, busy
            cursor = done.cursor

    changed, skipped, busy = _with(settings, act)
    click.echo(f"{verb}: changed {changed}, skipped {skipped} (busy {busy})")


retry = _action_command(
    Action.RETRY, "retry", "Put error and cancelled tasks back to pending (ids or filters)."
)
cancel = _action_command(
    Action.CANCEL, "cancel", "Cancel tasks: pending ones at once, running ones are asked to stop."
)
run_now = _action_command(
    Action.RUN_NOW, "run-now", "Make pending tasks that are due later due now."
)
priority = _action_command(
    Action.PRIORITY, "priority", "Set NEW_PRIORITY on pending and waiting tasks."
)
for _command in (retry, cancel, run_now, priority):
    tasks.add_command(_command)
