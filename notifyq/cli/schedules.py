"""The schedule commands: `notifyq schedule add | list | pause | resume | remove | run`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from notifyq import store
from notifyq.cli.common import EXIT_FAILED, EXIT_USAGE, fail, run, settings_from
from notifyq.cli.serve import handlers_for
from notifyq.schedules import CATCH_UP_POLICIES, ScheduleError, define
from notifyq.serving.startup import open_db
from notifyq.vocabulary import Actor


@click.group()
def schedule() -> None:
    """Periodic schedules: one task per tick of a cron expression or an interval."""


@schedule.command("add")
@click.argument("name")
@click.option("--cron", help="Cron expression (5 fields, or 6 with seconds first; @daily ...).")
@click.option("--every", help="Interval: a whole number of seconds (30s, 5m, 1h, 1d).")
@click.option("--kind", required=True, help="Kind of the tasks it enqueues.")
@click.option("--payload", help="JSON payload of each task (text that is not JSON: a string).")
@click.option("--queue", default="default", show_default=True)
@click.option(
    "--priority",
    default="0",
    show_default=True,
    help="Higher runs first: an integer, or low (-10), normal (0), high (10), urgent (20).",
)
@click.option("--tz", default="UTC", show_default=True, help="IANA time zone of --cron.")
@click.option(
    "--catch-up",
    type=click.Choice(CATCH_UP_POLICIES),
    default="coalesce",
    show_default=True,
    help="After downtime: one run for all missed ticks, or every missed tick.",
)
@click.option(
    "--catch-up-limit",
    type=int,
    default=100,
    show_default=True,
    help="With --catch-up all: at most this many missed ticks (the latest).",
)
@click.option("--app", help="module:attribute of your notifyq.App, whose kinds are known.")
@click.pass_context
def add(
    ctx: click.Context,
    name: str,
    cron: str | None,
    every: str | None,
    kind: str,
    payload: str | None,
    queue: str,
    priority: str,
    tz: str,
    catch_up: str,
    catch_up_limit: int,
    app: str | None,
) -> None:
    """Add schedule NAME, or replace its definition (pausing is kept)."""
    settings = settings_from(ctx, app=app) if app else settings_from(ctx)
    try:
        definition = define(
            name,
            cron=cron,
            every=every,
            kind=kind,
            payload=_parse_payload(payload),
            queue=queue,
            priority=priority,
            tz=tz,
            catch_up=catch_up,
            catch_up_limit=catch_up_limit,
        )
    except ScheduleError as exc:
        fail(str(exc), EXIT_USAGE)
    known = handlers_for(settings).handlers
    if kind not in known:
        fail(
            f"invalid --kind {kind!r}: no handler for it (known: {', '.join(sorted(known))}; "
            "give --app for your own kinds)",
            EXIT_USAGE,
        )

    async def go() -> str | None:
        async with open_db(settings, pool_size=1) as database:
            return await store.upsert_schedule(database, definition)

    change = run(go)
    click.echo(f"schedule {name!r} {change or 'unchanged'}: {definition.timing.describe()}")


@schedule.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--limit",
    type=click.IntRange(1, store.SCHEDULES_PAGE_MAX),
    default=100,
    show_default=True,
    help="Show at most this many (by name).",
)
@click.option("--after", help="Start after this name (the previous page's last).")
@click.pass_context
def list_(ctx: click.Context, as_json: bool, limit: int, after: str | None) -> None:
    """Schedules by name with their last and next run, a page at a time; payloads longer
    than a preview are cut (`--json` marks them payload_truncated)."""
    settings = settings_from(ctx)

    async def go() -> list[store.ScheduleRow]:
        async with open_db(settings, pool_size=1) as database:
            # One more than shown tells whether there is more.
            return await store.list_schedules(database, after=after, limit=limit + 1)

    rows = run(go)
    more = len(rows) > limit
    rows = rows[:limit]
    if as_json:
        click.echo(json.dumps([_as_json(r) for r in rows], indent=2))
        if more:
            click.echo(f"more: --after {rows[-1].name}", err=True)
        return
    if not rows:
        click.echo("no schedules")
        return
    header = ("name", "when", "kind", "queue", "state", "last run", "next run")
    lines = [header] + [
        (
            r.name,
            f"cron {r.cron} ({r.tz})" if r.cron else f"every {r.every_s:g}s",
            r.kind,
            r.queue,
            "paused" if r.paused else "active",
            _when(r.last_run_at),
            _when(r.next_run_at),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    if more:
        click.echo(f"more: --after {rows[-1].name}")


def _set_paused(ctx: click.Context, name: str, paused: bool) -> None:
    settings = settings_from(ctx)

    async def go() -> bool:
        async with open_db(settings, pool_size=1) as database:
            return await store.pause_schedule(database, name, paused=paused)

    if not run(go):
        fail(f"no schedule named {name!r}", EXIT_FAILED)
    click.echo(f"schedule {name!r} {'paused' if paused else 'resumed'}")


@schedule.command()
@click.argument("name")
@click.pass_context
def pause(ctx: click.Context, name: str) -> None:
    """Stop enqueueing NAME's ticks until `resume`."""
    _set_paused(ctx, name, True)


@schedule.command()
@click.argument("name")
@click.pass_context
def resume(ctx: click.Context, name: str) -> None:
    """Enqueue NAME's ticks again, from the next one (ticks while paused are not caught up)."""
    _set_paused(ctx, name, False)


@schedule.command()
@click.argument("name")
@click.pass_context
def remove(ctx: click.Context, name: str) -> None:
    """Delete schedule NAME (the tasks it enqueued stay)."""
    settings = settings_from(ctx)

    async def go() -> bool:
        async with open_db(settings, pool_size=1) as database:
            return await store.remove_schedule(database, name)

    if not run(go):
        fail(f"no schedule named {name!r}", EXIT_FAILED)
    click.echo(f"schedule {name!r} removed")


@schedule.command("run")
@click.argument("name")
@click.pass_context
def run_now(ctx: click.Context, name: str) -> None:
    """Enqueue one tick of NAME now (paused or not); its next run does not move."""
    settings = settings_from(ctx)

    async def go() -> int | None:
        async with open_db(settings, pool_size=1) as database:
            return await store.run_schedule(database, name, actor=Actor.CLI.value)

    task_id = run(go)
    if task_id is None:
        fail(f"no schedule named {name!r}", EXIT_FAILED)
    click.echo(f"schedule {name!r} ran now: task {task_id}")


def _parse_payload(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _when(at: datetime | None) -> str:
    return "-" if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _as_json(r: store.ScheduleRow) -> dict[str, Any]:
    return {
        "name": r.name,
        "cron": r.cron,
        "every_s": r.every_s,
        "tz": r.tz,
        "kind": r.kind,
        "payload": r.payload if r.payload_preview is None else r.payload_preview,
        "payload_truncated": r.payload_truncated,
        "queue": r.queue,
        "priority": r.priority,
        "catch_up": r.catch_up,
        "catch_up_limit": r.catch_up_limit,
        "paused": r.paused,
        "last_run_at": None if r.last_run_at is None else r.last_run_at.isoformat(),
        "next_run_at": None if r.next_run_at is None else r.next_run_at.isoformat(),
    }
