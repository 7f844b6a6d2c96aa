"""Commands for running notifyq in production: `notifyq health` and `notifyq roles`.

`health` is the health check of a container that runs `notifyq worker` (no HTTP server,
so no ``/health`` to ask): the database answers, the schema is current, and a notifyq
process on this host has heart-beaten recently. `roles` grants least-privilege roles
what a producer or a worker needs (see docs/operations.md).
"""

from __future__ import annotations

import json
import socket
from typing import Any

import click

from notifyq import errors, sql
from notifyq.settings import DURATION_HELP, parse_duration


def _duration(_ctx: Any, _param: Any, value: str | None) -> float | None:
    try:
        return None if value is None else parse_duration(value)
    except ValueError:
        raise click.BadParameter(f"expected {DURATION_HELP}") from None


@click.command()
@click.option(
    "--max-age",
    "max_age_s",
    callback=_duration,
    help="A heartbeat older than this is stale [default: LEASE, i.e. three missed beats]",
)
@click.pass_context
def health(ctx: click.Context, max_age_s: float | None) -> None:
    """Exit 0 if the database answers and a notifyq process on this host is alive.

    For the health check of worker-only containers: a process registers in notifyq.workers
    and refreshes its row every LEASE/3. Prints one line of JSON; exit 1 when unhealthy.
    """
    from notifyq import cli  # notifyq.cli imports this module to register the commands

    settings = cli.settings_from(ctx)
    age_s = max_age_s or settings.lease_s
    host = socket.gethostname()

    async def go() -> int:
        async with cli.open_db(settings, pool_size=2) as database:
            return int(await database.fetchval(sql.queries["host_alive"], host, age_s))

    alive = cli.run(go)
    click.echo(json.dumps({"database": "ok", "host": host, "live_processes": alive}))
    if not alive:
        cli.fail(f"no notifyq process on {host} heart-beat within {age_s:g} s")


@click.command()
@click.option("--producer", "producers", multiple=True, help="Role that may only enqueue.")
@click.option("--worker", "workers", multiple=True, help="Role that runs notifyq worker/serve.")
@click.option("--dry-run", is_flag=True, help="Print the GRANT statements; change nothing.")
@click.pass_context
def roles(
    ctx: click.Context, producers: tuple[str, ...], workers: tuple[str, ...], dry_run: bool
) -> None:
    """Grant existing roles the privileges of a producer or a worker; print the GRANTs.

    A producer may INSERT tasks (and LISTEN) and nothing else: it cannot read, change or
    delete rows. Create the roles first (CREATE ROLE name LOGIN PASSWORD '...'); run this
    as the schema's owner, and again after `notifyq migrate`. Safe to repeat.
    """
    from notifyq import cli

    if not producers and not workers:
        raise click.UsageError("name at least one --producer or --worker role")
    settings = cli.settings_from(ctx)
    wanted = [("grant_producer", r) for r in producers] + [("grant_worker", r) for r in workers]

    async def go() -> list[str]:
        async with cli.open_db(settings, pool_size=2) as database, database.transaction() as tx:
            done: list[str] = []
            for query, role in wanted:
                try:
                    rows = await tx.fetch(sql.queries[query], role, not dry_run)
                except errors.QueryError as exc:
                    raise errors.NotifyqError(f"cannot grant to role {role!r}: {exc}") from None
                done += [f"{r['statement']};" for r in rows]
            return done

    for statement in cli.run(go):
        click.echo(statement)


def register(group: click.Group) -> None:
    group.add_command(health)
    group.add_command(roles)
