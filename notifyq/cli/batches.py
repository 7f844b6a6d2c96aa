"""``notifyq batches show ID``: a batch's progress (a chord's members) and its callback."""

from __future__ import annotations

import json

import click

from notifyq import store
from notifyq.cli.common import fail, run, settings_from
from notifyq.serving.startup import open_db


@click.group()
def batches() -> None:
    """Batches: a chord's members, counted as they end."""


@batches.command("show")
@click.argument("batch_id", type=click.IntRange(1, 2**63 - 1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def show(ctx: click.Context, batch_id: int, as_json: bool) -> None:
    """Total, done, failed and remaining members, and the callback's id and status."""
    settings = settings_from(ctx)

    async def go() -> store.BatchInfo | None:
        async with open_db(settings, pool_size=1) as database:
            return await store.batch_progress(database, batch_id)

    info = run(go)
    if info is None:
        fail(f"no batch {batch_id}")
    if as_json:
        fields = {name: getattr(info, name) for name in info.__slots__}
        click.echo(json.dumps(fields, default=str))
        return
    callback = "-" if info.callback_id is None else f"{info.callback_id} ({info.callback_status})"
    for label, value in (
        ("batch", info.id),
        ("total", info.total),
        ("done", info.done),
        ("failed", info.failed),
        ("remaining", info.remaining),
        ("sealed", "yes" if info.sealed else "no"),
        ("callback", callback),
        ("created", f"{info.created_at:%Y-%m-%d %H:%M:%S}"),
        (
            "completed",
            "-" if info.completed_at is None else f"{info.completed_at:%Y-%m-%d %H:%M:%S}",
        ),
    ):
        click.echo(f"{label:<10} {value}")
