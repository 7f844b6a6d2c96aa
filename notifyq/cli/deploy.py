"""Commands for running notifyq in production: `notifyq health` and `notifyq roles`.

`health` is the health check of a container that runs `notifyq worker` (no HTTP server,
so no ``/health`` to ask): the database answers, the schema is current, and a notifyq
process on this host has heart-beaten recently. `roles` grants least-privilege roles
what a producer or a worker needs (see docs/operations.md).
"""

from __future__ import annotations

import json
import socket

import click

from notifyq import store
from notifyq.cli.common import duration, fail, run, settings_from
from notifyq.serving.startup import open_db


@click.command()
@click.option(
    "--max-age",
    "max_age_s",
    callback=duration,
    help="A heartbeat older than this is stale [default: LEASE, i.e. three missed beats]",
)
@click.pass_context
def health(ctx: click.Context, max_age_s: float | None) -> None:
    """Exit 0 if the database answers and a notifyq process on this host is alive.

    For the health check of worker-only containers: a process registers in notifyq.workers
    and refreshes its row every LEASE/3. Prints one line of JSON; exit 1 when unhealthy.
    """
    settings = settings_from(ctx)
    age_s = max_age_s or settings.lease_s
    host = socket.gethostname()

    async def go() -> int:
        async with open_db(settings, pool_size=2) as database:
            return await store.live_processes(database, host=host, within_s=age_s)

    alive = run(go)
    click.echo(json.dumps({"database": "ok", "host": host, "live_processes": alive}))
    if not alive:
        fail(f"no notifyq process on {host} heart-beat within {age_s:g} s")


@click.command()
@click.option("--producer", "producers", multiple=True, help="Role that may only enqueue.")
@click.option("--worker", "workers", multiple=True, help="Role that runs notifyq worker/serve.")
@click.option(
    "--operator",
    "operators",
    multiple=True,
    help="Role that reads everything and runs the console's actions (tasks retry, cancel...).",
)
@click.option("--dry-run", is_flag=True, help="Print the GRANT statements; change nothing.")
@click.pass_context
def roles(
    ctx: click.Context,
    producers: tuple[str, ...],
    workers: tuple[str, ...],
    operators: tuple[str, ...],
    dry_run: bool,
) -> None:
    """Grant existing roles the privileges of a producer or a worker; print the GRANTs.

    A producer may INSERT tasks (and LISTEN) and nothing else: it cannot read, change or
    delete rows. An operator may read every table and act on tasks through the console's
    functions (retry, cancel, run now, priority, a schedule's run), nothing else. Create the
    roles first (CREATE ROLE name LOGIN PASSWORD '...'); run this
    as the schema's owner, and again after `notifyq migrate`. Safe to repeat.
    """
    if not producers and not workers and not operators:
        raise click.UsageError("name at least one --producer, --worker or --operator role")
    settings = settings_from(ctx)
    wanted = (
        [("producer", r) for r in producers]
        + [("worker", r) for r in workers]
        + [("operator", r) for r in operators]
    )

    async def go() -> list[str]:
        async with open_db(settings, pool_size=2) as database:
            return await store.grant(database, wanted, apply=not dry_run)

    for statement in run(go):
        click.echo(statement)
