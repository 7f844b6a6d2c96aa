"""``notifyq queue set`` and ``notifyq queue list``: per-queue limits (migration 0006)."""

from __future__ import annotations

import json

import click

from notifyq import errors, limits, store
from notifyq.cli.common import EXIT_USAGE, fail, run, settings_from
from notifyq.durations import parse_duration
from notifyq.serving.startup import open_db
from notifyq.vocabulary import Status


@click.group()
def queue() -> None:
    """Per-queue limits: concurrency, rate, per-key concurrency, pause."""


def _count(option: str, text: str | None) -> int | limits.Keep:
    """An option's integer, or KEEP when not given; one line and exit 2 when bad."""
    if text is None:
        return limits.KEEP
    try:
        return int(text)
    except ValueError:
        fail(
            f"invalid {option} {text!r}: expected an integer from 1 to {limits.MAX_LIMIT}",
            EXIT_USAGE,
        )


def _age(text: str | None) -> float | limits.Keep | None:
    """--age-priority-after: a duration, ``off`` (no aging), or KEEP when not given."""
    if text is None:
        return limits.KEEP
    if text == "off":
        return None
    try:
        return parse_duration(text)
    except ValueError:
        fail(
            f"invalid --age-priority-after {text!r}: expected a duration (30s, 5m) or off",
            EXIT_USAGE,
        )


@queue.command("set")
@click.argument("name")
@click.option("--concurrency", help="At most N tasks of the queue in_progress at once.")
@click.option("--rate", help="At most COUNT claims per PERIOD: 100/s, 10/m, 1000/h, 5/10s.")
@click.option("--per-key", "per_key", help="At most N in_progress per concurrency_key.")
@click.option("--paused", "paused", flag_value=True, default=None, help="Claim nothing.")
@click.option("--resumed", "paused", flag_value=False, help="Claim again.")
@click.option(
    "--fair/--no-fair",
    default=None,
    help="Claim round-robin over concurrency_key, within priority (README: Fair queues).",
)
@click.option(
    "--age-priority-after",
    "age",
    help="Priority aging: a due task gains one priority per this long waited (30s, 5m; off: none).",
)
@click.option("--clear", is_flag=True, help="Remove every limit of the queue first.")
@click.pass_context
def set_(
    ctx: click.Context,
    name: str,
    concurrency: str | None,
    rate: str | None,
    per_key: str | None,
    paused: bool | None,
    fair: bool | None,
    age: str | None,
    clear: bool,
) -> None:
    """Set limits of queue NAME; the options not given keep their value."""
    try:
        change = limits.change(
            name,
            concurrency=_count("--concurrency", concurrency),
            rate=limits.KEEP if rate is None else rate,
            per_key_concurrency=_count("--per-key", per_key),
            paused=paused,
            fair=fair,
            age_priority_after=_age(age),
        )
    except errors.ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    if not clear and not change.fields:
        fail(
            "nothing to set: give --concurrency, --rate, --per-key, --paused, --resumed, "
            "--fair, --no-fair, --age-priority-after or --clear",
            EXIT_USAGE,
        )
    settings = settings_from(ctx)

    async def go() -> None:
        async with open_db(settings, pool_size=2) as database:
            if clear:
                await store.clear_queue_limits(database, name)
            if change.fields:
                await store.set_queue_limits(database, change)
            shown = [q for q in await store.list_queues(database) if q.name == name]
        click.echo(_line(shown[0]) if shown else f"{name}: no limits")

    run(go)


@queue.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """Queues with limits or live tasks: their limits, pending and in_progress."""
    settings = settings_from(ctx)

    async def go() -> None:
        async with open_db(settings, pool_size=2) as database:
            queues = await store.list_queues(database)
        if as_json:
            click.echo(json.dumps([as_dict(q) for q in queues], indent=2))
            return
        for q in queues:
            click.echo(_line(q))

    run(go)


def as_dict(q: store.QueueInfo) -> dict[str, object]:
    return {
        "name": q.name,
        "concurrency": q.concurrency,
        "rate": str(q.rate) if q.rate else None,
        "per_key_concurrency": q.per_key_concurrency,
        "paused": q.paused,
        "fair": q.fair,
        "age_priority_after_s": q.age_priority_after_s,
        Status.PENDING.value: q.pending,
        Status.IN_PROGRESS.value: q.in_progress,
    }


def _line(q: store.QueueInfo) -> str:
    parts = []
    if q.paused:
        parts.append("paused")
    if q.fair:
        parts.append("fair")
    if q.age_priority_after_s is not None:
        parts.append(f"age_priority_after={q.age_priority_after_s:g}s")
    if q.concurrency is not None:
        parts.append(f"concurrency={q.concurrency}")
    if q.rate is not None:
        parts.append(f"rate={q.rate}")
    if q.per_key_concurrency is not None:
        parts.append(f"per_key={q.per_key_concurrency}")
    shown = " ".join(parts) or "no limits"
    return f"{q.name}: {shown} ({Status.PENDING} {q.pending}, {Status.IN_PROGRESS} {q.in_progress})"
