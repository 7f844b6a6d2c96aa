"""`notifyq bench`: the commands. The measurements live in :mod:`notifyq.bench`
(``latency`` and ``drain`` in :mod:`~notifyq.bench.inprocess`; ``insert``, ``backlog``,
``rss`` in :mod:`~notifyq.bench.load`; ``peers``, ``all`` and ``scale`` in the modules of
those names).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from notifyq.bench import chord as chord_
from notifyq.bench import floor as floor_
from notifyq.bench import inprocess, load, report
from notifyq.bench.peers import PEERS, measure_peers
from notifyq.cli.bench_common import bench_settings, print_report, rtt_option, run_at
from notifyq.cli.common import EXIT_USAGE, fail, run
from notifyq.settings import Settings

# The subcommands below are added to `bench` in notifyq/cli/__init__.py, when it runs.


@click.command()
@click.option("--count", type=click.IntRange(1), default=200, show_default=True)
@click.option("--spacing", type=click.FloatRange(0, 60), default=0.02, show_default=True)
@click.option("--warmup", type=click.IntRange(0), default=5, show_default=True)
@rtt_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def latency(
    ctx: click.Context, count: int, spacing: float, warmup: int, rtt_s: float | None, as_json: bool
) -> None:
    """Pickup latency on an idle service: INSERT commit -> handler start, in ms.

    COUNT probes are measured after WARMUP unmeasured ones; each is inserted SPACING
    seconds after the previous one started.
    """
    settings = bench_settings(ctx)
    r = run_at(settings, rtt_s, lambda s: inprocess.measure_latency(s, count, spacing, warmup))
    names = ["p50", "p95", "p99", "max", "mean"]
    rows = [("probes", str(count))] + [(f"{n} ms", f"{r[n + '_ms']:.3f}") for n in names]
    note = (
        f"(from the INSERT's commit acknowledgement to the handler's start; the insert call"
        f" returned to trio {r['return_p50_ms']:.3f} ms after the acknowledgement, p50)"
    )
    print_report(r, as_json, rows, note)


@click.command()
@click.option("--tasks", type=click.IntRange(1), default=10_000, show_default=True)
@click.option("-w", "--workers", "worker_count", type=int, help="[WORKER_COUNT=5]")
@click.option("--fetch-limit", type=int, help="[FETCH_LIMIT=500]")
@click.option(
    "-p",
    "--processes",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Above 1: that many `notifyq serve` subprocesses, woken by the INSERT.",
)
@click.option(
    "--handler",
    type=click.Choice(inprocess.HANDLER_RUNTIMES),
    default="trio",
    show_default=True,
    help="The noop handler: async def on trio, a plain def (thread) or an asyncio coroutine.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1_000_000),
    help="Give the queue this fleet-wide concurrency limit (one process only).",
)
@click.option(
    "--unique",
    is_flag=True,
    help="Measure twice in one run: without, then with a unique_key on every task.",
)
@click.option(
    "--transactional",
    is_flag=True,
    help="Register noop transactional=True: each task holds a connection and commits its own "
    "done (no outcome batching). One process only.",
)
@click.option(
    "--chord",
    is_flag=True,
    help="Alternate plain tasks and the same tasks as a batch with a callback (a chord).",
)
@click.option(
    "--rounds",
    type=click.IntRange(1, 100),
    default=2,
    show_default=True,
    help="With --chord: drains of each kind.",
)
@rtt_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def drain(
    ctx: click.Context,
    /,
    tasks: int,
    processes: int,
    handler: str,
    concurrency: int | None,
    unique: bool,
    transactional: bool,
    chord: bool,
    rounds: int,
    rtt_s: float | None,
    as_json: bool,
    **flags: int | None,
) -> None:
    """Throughput: enqueue TASKS noop tasks, then time a fresh service until all are done.

    With --chord, ROUNDS drains of TASKS plain tasks alternate with ROUNDS drains of a chord
    (TASKS members of one batch and a callback, added in one statement): the members' rate
    of each kind (medians), their ratio, and the callback's runs and delay after the last
    member.
    """
    settings = bench_settings(ctx, **flags)
    if chord:
        if unique or handler != "trio" or concurrency is not None or transactional:
            fail(
                "--chord measures noop tasks: leave out --unique, --handler, --concurrency, --transactional",
                EXIT_USAGE,
            )
        r = run_at(settings, rtt_s, lambda s: chord_.measure_chord(s, tasks, processes, rounds))
        print_report(r, as_json, *chord_.table(r))
        return
    if transactional and (processes > 1 or unique or concurrency is not None):
        fail(
            "--transactional measures one plain drain: leave out --processes, --unique and "
            "--concurrency",
            EXIT_USAGE,
        )
    if transactional:
        r = run_at(
            settings,
            rtt_s,
            lambda s: inprocess.measure_drain(s, tasks, handler, transactional=True),
        )
    elif processes > 1:
        if unique:
            fail("--unique measures the in-process drain: leave out --processes", EXIT_USAGE)
        if handler != "trio":
            raise click.BadParameter("only with --processes 1", param_hint="--handler")
        if concurrency is not None:
            fail("--concurrency measures one process: leave out --processes", EXIT_USAGE)
        r = run_at(settings, rtt_s, lambda s: load.measure_drain_processes(s, tasks, processes))
    elif unique:

        async def both(s: Settings) -> dict[str, Any]:
            plain = await inprocess.measure_drain(s, tasks, handler)
            keyed = await inprocess.measure_drain(s, tasks, handler, unique=True)
            return {**plain, "unique_keys": keyed}

        r = run_at(settings, rtt_s, both)
    else:
        r = run_at(
            settings,
            rtt_s,
            lambda s: inprocess.measure_drain(s, tasks, handler, concurrency=concurrency),
        )
    rows = [("tasks", str(tasks)), ("seconds", f"{r['seconds']:.3f}")]
    rows += [("tasks/s", f"{r['tasks_per_s']:.1f}"), ("cpu µs/task", cpu_us(r))]
    rows += [("db cpu µs/task", cpu_us(r, "server_cpu_us_per_task"))]
    if unique:
        keyed = r["unique_keys"]
        rows += [("seconds, unique keys", f"{keyed['seconds']:.3f}")]
        rows += [("tasks/s, unique keys", f"{keyed['tasks_per_s']:.1f}")]
    print_report(r, as_json, rows)


def cpu_us(r: dict[str, Any], key: str = "cpu_us_per_task") -> str:
    """A CPU-per-task figure for the table; '-' when not measured (a remote server)."""
    return "-" if r.get(key) is None else f"{r[key]:.1f}"


@click.command()
@click.option(
    "--rows", type=click.IntRange(100), default=20_000, show_default=True, help="Rows per run."
)
@click.option(
    "--batch",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    help="Rows per claim.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def floor(ctx: click.Context, rows: int, batch: int, as_json: bool) -> None:
    """The database's floor: a minimal SKIP LOCKED queue, then notifyq's own claim and
    finish statements (history included), drained by a bare asyncpg loop, BATCH rows per
    claim, on one connection and on two; rows/s and the ratio notifyq / minimal."""
    settings = bench_settings(ctx)
    r = run(lambda: floor_.measure_floor(settings, rows, batch))
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    click.echo(f"notifyq bench floor: PostgreSQL {r['server_version']} ({r['server']})")
    click.echo(f"  server: fsync={r['fsync']} synchronous_commit={r['synchronous_commit']}")
    click.echo(f"  {rows:,} rows per run, claimed {batch} at a time, marked done in one statement")
    header = ("queue", "conns", "rows/s", "cpu µs/row", "db cpu µs/row")
    click.echo("  " + f"{header[0]:<28}" + "".join(f"{h:>15}" for h in header[1:]))
    for queue, name in floor_.NAMES.items():
        for one in r[queue]:
            cells = [str(one["connections"]), f"{one['rows_per_s']:,.0f}", cpu_us(one)]
            cells.append(cpu_us(one, "server_cpu_us_per_task"))
            click.echo("  " + f"{name:<28}" + "".join(f"{c:>15}" for c in cells))
    ratios = ", ".join(f"{v:.0%} on {k} connection(s)" for k, v in r["ratio"].items())
    click.echo(f"  notifyq / minimal: {ratios} (the goal: at least 60%)")
    if r["server_cpu_ratio"]:
        costs = ", ".join(f"{v:.1f}x on {k}" for k, v in r["server_cpu_ratio"].items())
        click.echo(f"  server CPU per row, notifyq / minimal: {costs}")


@click.command()
@click.option("--clients", type=click.IntRange(1, 200), default=16, show_default=True)
@click.option("--seconds", type=click.FloatRange(0.1, 600), default=5.0, show_default=True)
@click.option("-w", "--workers", "worker_count", type=int, help="[WORKER_COUNT=5]")
@click.option(
    "--unique",
    is_flag=True,
    help="Also busy with a unique_key per row, and with one key for all (duplicates).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def insert(
    ctx: click.Context,
    /,
    clients: int,
    seconds: float,
    unique: bool,
    as_json: bool,
    **flags: int | None,
) -> None:
    """Producers' cost: CLIENTS single-row insert transactions at once into notifyq.tasks,
    against the same table without triggers, with a serve process idle and then busy."""
    settings = bench_settings(ctx, **flags)
    r = run(lambda: load.measure_insert(settings, clients, seconds, unique=unique))
    kinds = ("plain", "idle", "busy") + (("busy_unique", "busy_duplicate") if unique else ())
    rows = [(f"{k} /s", f"{r[k + '_per_s']:.0f}") for k in kinds]
    rows += [("idle", f"{r['idle_ratio']:.1%}"), ("busy", f"{r['busy_ratio']:.1%}")]
    print_report(r, as_json, rows, "(ratios: inserts/s into notifyq.tasks / plain table)")


@click.command()
@click.option("--finished", type=click.IntRange(0), default=1_000_000, show_default=True)
@click.option("--pending", type=click.IntRange(1), default=100_000, show_default=True)
@click.option("--rounds", type=click.IntRange(1), default=300, show_default=True)
@click.option("--fetch-limit", type=int, help="rows per claim [FETCH_LIMIT=500]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def backlog(
    ctx: click.Context,
    /,
    finished: int,
    pending: int,
    rounds: int,
    as_json: bool,
    **flags: int | None,
) -> None:
    """Claim latency on an empty table, then with FINISHED done and PENDING pending rows."""
    settings = bench_settings(ctx, **flags)
    r = run(lambda: load.measure_backlog(settings, finished, pending, rounds))
    rows = [
        ("empty p50", f"{r['empty']['p50_ms']:.3f}"),
        ("loaded p50", f"{r['loaded']['p50_ms']:.3f}"),
        ("ratio", f"{r['ratio_p50']:.2f}"),
    ]
    print_report(r, as_json, rows, "(ms per claim statement)")


@click.command()
@click.option("--tasks", type=click.IntRange(1), default=100_000, show_default=True)
@click.option("-w", "--workers", "worker_count", type=int, help="[WORKER_COUNT=5]")
@click.option("--fetch-limit", type=int, help="[FETCH_LIMIT=500]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def rss(ctx: click.Context, /, tasks: int, as_json: bool, **flags: int | None) -> None:
    """Resident memory of a `notifyq serve` process: idle, and after draining TASKS."""
    settings = bench_settings(ctx, **flags)
    r = run(lambda: load.measure_rss(settings, tasks))
    rows = [(k.replace("_mb", " MiB"), f"{r[k]:.1f}") for k in ("idle_mb", "peak_mb", "after_mb")]
    print_report(r, as_json, [*rows, ("growth", f"{r['growth_pct']:+.1f}%")])


@click.command()
@click.option("--tasks", type=click.IntRange(1), default=20_000, show_default=True)
@click.option("--count", type=click.IntRange(1), default=200, show_default=True)
@click.option("--spacing", type=click.FloatRange(0, 60), default=0.02, show_default=True)
@click.option(
    "--peer",
    "only",
    type=click.Choice(list(PEERS)),
    multiple=True,
    help="Only this peer configuration (repeatable); default: all.",
)
@rtt_option
@click.pass_context
def peers(
    ctx: click.Context,
    tasks: int,
    count: int,
    spacing: float,
    only: tuple[str, ...],
    rtt_s: float | None,
) -> None:
    """Drain and pickup latency of PgQueuer, procrastinate (pip install notifyq[bench]) and
    graphile-worker (make bench-peers), each in its own scratch database on the same server,
    as JSON."""
    settings = bench_settings(ctx)
    r = run_at(settings, rtt_s, lambda s: measure_peers(s, tasks, count, spacing, 5, only))
    click.echo(json.dumps(r, indent=2))


@click.command(name="all")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default="bench-results",
    show_default=True,
    help="Directory for bench.json, bench.md and bench.png.",
)
@click.option(
    "--tasks",
    type=click.IntRange(1),
    default=20_000,
    show_default=True,
    help="Tasks of each drain (notifyq and every peer).",
)
@click.option(
    "--drain-fetch-limit",
    type=click.IntRange(1, 10_000),
    default=200,
    show_default=True,
    help="FETCH_LIMIT and WORKER_COUNT of the drain and rss runs.",
)
@click.option(
    "--count", type=click.IntRange(1), default=200, show_default=True, help="Pickup-latency probes."
)
@click.option("--insert-seconds", type=click.FloatRange(0.1, 600), default=5.0, show_default=True)
@click.option("--finished", type=click.IntRange(0), default=1_000_000, show_default=True)
@click.option("--pending", type=click.IntRange(1), default=100_000, show_default=True)
@click.option("--rss-tasks", type=click.IntRange(1), default=100_000, show_default=True)
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="An extra drain with this many serve processes (1: skip it).",
)
@click.option(
    "--floor-rows",
    type=click.IntRange(0),
    default=20_000,
    show_default=True,
    help="Rows of each `bench floor` run (0: skip the floor).",
)
@click.option(
    "--no-peers", is_flag=True, help="Skip the peers (PgQueuer, procrastinate, graphile-worker)."
)
@click.pass_context
def all_(
    ctx: click.Context,
    out: Path,
    tasks: int,
    drain_fetch_limit: int,
    count: int,
    insert_seconds: float,
    finished: int,
    pending: int,
    rss_tasks: int,
    processes: int,
    floor_rows: int,
    no_peers: bool,
) -> None:
    """Every benchmark and the peers in one run: a table, bench.json and a chart."""
    settings = bench_settings(ctx)
    plan = report.Plan(
        drain_tasks=tasks,
        drain_fetch_limit=drain_fetch_limit,
        probes=count,
        insert_seconds=insert_seconds,
        finished=finished,
        pending=pending,
        rss_tasks=rss_tasks,
        processes=processes,
        floor_rows=floor_rows,
        peers=not no_peers,
    )
    r = run(lambda: report.measure_all(settings, plan))
    written = report.write(r, out)
    click.echo(report.table(r))
    click.echo("\nwritten: " + ", ".join(str(p) for p in written))
