"""`notifyq bench console`: the operator console's filters on a big table (see
:mod:`notifyq.bench.console`)."""

from __future__ import annotations

import json
import re

import click

from notifyq.bench import console
from notifyq.cli.bench_common import bench_settings
from notifyq.cli.common import run


def _database_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
        raise click.BadParameter("lower-case letters, digits and underscores only")
    return value


@click.command("console")
@click.option("--ended", type=click.IntRange(0), default=10_000_000, show_default=True)
@click.option("--pending", type=click.IntRange(0), default=100_000, show_default=True)
@click.option("--rounds", type=click.IntRange(1), default=20, show_default=True)
@click.option(
    "--bulk",
    type=click.IntRange(0),
    default=5,
    show_default=True,
    help="Batches of a bulk retry to time (each retries 1,000 error tasks of the data).",
)
@click.option(
    "--keep",
    callback=_database_name,
    help="Build into this database and keep it; a later run with the same sizes reuses it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def console_(
    ctx: click.Context,
    ended: int,
    pending: int,
    rounds: int,
    bulk: int,
    keep: str | None,
    as_json: bool,
) -> None:
    """The console's filters on ENDED ended and PENDING pending tasks: p50 / p95 of the
    list's first two pages and of the count preview per filter, and of bulk batches."""
    settings = bench_settings(ctx)
    r = run(lambda: console.measure(settings, ended, pending, rounds, keep, bulk))
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    click.echo(
        f"notifyq bench console: PostgreSQL {r['server_version']}, {ended:,} ended and"
        f" {pending:,} pending tasks, {rounds} rounds (aim: p95 < {r['target_p95_ms']:g} ms)"
    )
    if r["built"]:
        click.echo(f"  built in {r['fill_s']} s, VACUUM ANALYZE {r['vacuum_s']} s")
    click.echo(
        f"  {'filter':<28} {'matching':>9}  {'page 1 p50/p95':>16}  {'page 2 p50/p95':>16}"
        f"  {'count p50/p95':>16}"
    )
    for f in r["filters"]:

        def both(key: str, f: dict = f) -> str:  # type: ignore[type-arg]
            t = f.get(key)
            return f"{t['p50_ms']:7.1f}/{t['p95_ms']:7.1f}" if t else f"{'-':>15}"

        matching = f"{f['matching']:,}{'+' if f['capped'] else ''}"
        click.echo(
            f"  {f['filter']:<28} {matching:>9}  {both('page1')}  {both('page2')}  {both('count')}"
        )
    b = r["bulk"]
    if b and b["batches"]:
        click.echo(
            f"  bulk retry ({b['query']}): {b['batches']} batches of {b['batch']},"
            f" {b['changed']:,} changed, p50 {b['p50_ms']} ms, p95 {b['p95_ms']} ms"
        )
    over = r["over_target"]
    click.echo(f"  over {r['target_p95_ms']:g} ms at p95: {', '.join(over) if over else 'none'}")
