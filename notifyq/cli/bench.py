"""`notifyq bench`: the commands. The measurements live in :mod:`notifyq.bench`
(``latency`` and ``drain`` in :mod:`~notifyq.bench.inprocess`; ``insert``, ``backlog``,
``rss`` in :mod:`~notifyq.bench.load`; ``peers``, ``all`` and ``scale`` in the modules of
those names).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from notifyq.bench import bigtables, harsh, inprocess, load, report
from notifyq.bench.common import scratch
from notifyq.bench.events import measure_events
from notifyq.bench.peers import measure_peers
from notifyq.bench.scale import describe, measure_scale
from notifyq.cli.common import EXIT_USAGE, fail, run, settings_from
from notifyq.settings import Settings


@click.group()
def bench() -> None:
    """Benchmarks on a real PostgreSQL: latency, drain, insert, backlog, rss, peers, all."""


# The subcommands below are added to `bench` in notifyq/cli/__init__.py.


def _settings(ctx: click.Context, **flags: Any) -> Settings:
    # LOG_LEVEL warning unless the flag or the environment says otherwise.
    level = (ctx.obj or {}).get("log_level") or os.environ.get("LOG_LEVEL") or "warning"
    return settings_from(ctx, log_level=level, **flags)


def _report(
    result: dict[str, Any], as_json: bool, rows: list[tuple[str, str]], note: str = ""
) -> None:
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    r = result
    click.echo(f"notifyq bench {r['benchmark']}: PostgreSQL {r['server_version']} ({r['server']})")
    click.echo(f"  server: fsync={r['fsync']} synchronous_commit={r['synchronous_commit']}")
    click.echo("  settings: " + " ".join(f"{k}={v}" for k, v in r["settings"].items()))
    click.echo("  " + "  ".join(f"{name:>9}" for name, _ in rows))
    click.echo("  " + "  ".join(f"{value:>9}" for _, value in rows))
    if note:
        click.echo(f"  {note}")


@click.command()
@click.option("--count", type=click.IntRange(1), default=200, show_default=True)
@click.option("--spacing", type=click.FloatRange(0, 60), default=0.02, show_default=True)
@click.option("--warmup", type=click.IntRange(0), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def latency(ctx: click.Context, count: int, spacing: float, warmup: int, as_json: bool) -> None:
    """Pickup latency on an idle service: INSERT commit -> handler start, in ms.

    COUNT probes are measured after WARMUP unmeasured ones; each is inserted SPACING
    seconds after the previous one started.
    """
    settings = _settings(ctx)
    r = run(lambda: inprocess.measure_latency(settings, count, spacing, warmup))
    names = ["p50", "p95", "p99", "max", "mean"]
    rows = [("probes", str(count))] + [(f"{n} ms", f"{r[n + '_ms']:.3f}") for n in names]
    note = (
        f"(from the INSERT's commit acknowledgement to the handler's start; the insert call"
        f" returned to trio {r['return_p50_ms']:.3f} ms after the acknowledgement, p50)"
    )
    _report(r, as_json, rows, note)


@click.command()
@click.option("--tasks", type=click.IntRange(1), default=10_000, show_default=True)
@click.option("-w", "--workers", "worker_count", type=int, help="[WORKER_COUNT=5]")
@click.option("--fetch-limit", type=int, help="[FETCH_LIMIT=10]")
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
    as_json: bool,
    **flags: int | None,
) -> None:
    """Throughput: enqueue TASKS noop tasks, then time a fresh service until all are done."""
    settings = _settings(ctx, **flags)
    if processes > 1:
        if unique:
            fail("--unique measures the in-process drain: leave out --processes", EXIT_USAGE)
        if handler != "trio":
            raise click.BadParameter("only with --processes 1", param_hint="--handler")
        if concurrency is not None:
            fail("--concurrency measures one process: leave out --processes", EXIT_USAGE)
        r = run(lambda: load.measure_drain_processes(settings, tasks, processes))
    elif unique:

        async def both() -> dict[str, Any]:
            plain = await inprocess.measure_drain(settings, tasks, handler)
            keyed = await inprocess.measure_drain(settings, tasks, handler, unique=True)
            return {**plain, "unique_keys": keyed}

        r = run(both)
    else:
        r = run(lambda: inprocess.measure_drain(settings, tasks, handler, concurrency=concurrency))
    rows = [("tasks", str(tasks)), ("seconds", f"{r['seconds']:.3f}")]
    rows += [("tasks/s", f"{r['tasks_per_s']:.1f}")]
    if unique:
        keyed = r["unique_keys"]
        rows += [("seconds, unique keys", f"{keyed['seconds']:.3f}")]
        rows += [("tasks/s, unique keys", f"{keyed['tasks_per_s']:.1f}")]
    _report(r, as_json, rows)


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
    settings = _settings(ctx, **flags)
    r = run(lambda: load.measure_insert(settings, clients, seconds, unique=unique))
    kinds = ("plain", "idle", "busy") + (("busy_unique", "busy_duplicate") if unique else ())
    rows = [(f"{k} /s", f"{r[k + '_per_s']:.0f}") for k in kinds]
    rows += [("idle", f"{r['idle_ratio']:.1%}"), ("busy", f"{r['busy_ratio']:.1%}")]
    _report(r, as_json, rows, "(ratios: inserts/s into notifyq.tasks / plain table)")


@click.command()
@click.option("--finished", type=click.IntRange(0), default=1_000_000, show_default=True)
@click.option("--pending", type=click.IntRange(1), default=100_000, show_default=True)
@click.option("--rounds", type=click.IntRange(1), default=300, show_default=True)
@click.option("--fetch-limit", type=int, help="rows per claim [FETCH_LIMIT=10]")
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
    settings = _settings(ctx, **flags)
    r = run(lambda: load.measure_backlog(settings, finished, pending, rounds))
    rows = [
        ("empty p50", f"{r['empty']['p50_ms']:.3f}"),
        ("loaded p50", f"{r['loaded']['p50_ms']:.3f}"),
        ("ratio", f"{r['ratio_p50']:.2f}"),
    ]
    _report(r, as_json, rows, "(ms per claim statement)")


@click.command()
@click.option("--tasks", type=click.IntRange(1), default=100_000, show_default=True)
@click.option("-w", "--workers", "worker_count", type=int, help="[WORKER_COUNT=5]")
@click.option("--fetch-limit", type=int, help="[FETCH_LIMIT=10]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def rss(ctx: click.Context, /, tasks: int, as_json: bool, **flags: int | None) -> None:
    """Resident memory of a `notifyq serve` process: idle, and after draining TASKS."""
    settings = _settings(ctx, **flags)
    r = run(lambda: load.measure_rss(settings, tasks))
    rows = [(k.replace("_mb", " MiB"), f"{r[k]:.1f}") for k in ("idle_mb", "peak_mb", "after_mb")]
    _report(r, as_json, [*rows, ("growth", f"{r['growth_pct']:+.1f}%")])


@click.command()
@click.option("--tasks", type=click.IntRange(1), default=20_000, show_default=True)
@click.option("--count", type=click.IntRange(1), default=200, show_default=True)
@click.option("--spacing", type=click.FloatRange(0, 60), default=0.02, show_default=True)
@click.pass_context
def peers(ctx: click.Context, tasks: int, count: int, spacing: float) -> None:
    """Drain and pickup latency of PgQueuer and procrastinate (pip install notifyq[bench]),
    each in its own scratch database on the same server, as JSON."""
    settings = _settings(ctx)
    r = run(lambda: measure_peers(settings, tasks, count, spacing, 5))
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
@click.option("--no-peers", is_flag=True, help="Skip PgQueuer and procrastinate.")
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
    no_peers: bool,
) -> None:
    """Every benchmark and the peers in one run: a table, bench.json and a chart."""
    settings = _settings(ctx)
    plan = report.Plan(
        drain_tasks=tasks,
        drain_fetch_limit=drain_fetch_limit,
        probes=count,
        insert_seconds=insert_seconds,
        finished=finished,
        pending=pending,
        rss_tasks=rss_tasks,
        processes=processes,
        peers=not no_peers,
    )
    r = run(lambda: report.measure_all(settings, plan))
    written = report.write(r, out)
    click.echo(report.table(r))
    click.echo("\nwritten: " + ", ".join(str(p) for p in written))


def _subscriber_counts(_ctx: Any, _param: Any, value: str) -> list[int]:
    try:
        counts = [int(v) for v in value.split(",")]
    except ValueError:
        counts = []
    if not counts or any(not 0 <= n <= 10_000 for n in counts):
        raise click.BadParameter("expected comma-separated numbers from 0 to 10000")
    return counts


@click.command()
@click.option(
    "--subscribers",
    default="0,10,300",
    show_default=True,
    callback=_subscriber_counts,
    help="Comma-separated numbers of open /events streams to measure with.",
)
@click.option("--tasks", type=click.IntRange(1), default=5000, show_default=True)
@click.option(
    "--baseline",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Also measure the notifyq package in this directory (e.g. an export of main).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def events(
    ctx: click.Context, subscribers: list[int], tasks: int, baseline: Path | None, as_json: bool
) -> None:
    """Drain of a `notifyq serve` process while N /events streams are open."""
    settings = _settings(ctx)
    if baseline is not None:
        baseline = baseline.resolve()
        if not (baseline / "notifyq" / "__init__.py").is_file():
            raise click.BadParameter(f"no notifyq package in {baseline}", param_hint="--baseline")
    r = run(lambda: measure_events(settings, tasks, subscribers, baseline))
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    click.echo(
        f"notifyq bench events: {tasks} noop tasks, PostgreSQL {r['server_version']} ({r['server']})"
    )
    click.echo(f"  server: fsync={r['fsync']} synchronous_commit={r['synchronous_commit']}")
    click.echo("  settings: " + " ".join(f"{k}={v}" for k, v in r["settings"].items()))
    click.echo(
        f"  {'version':>8}  {'streams':>7}  {'refused':>7}  {'seconds':>8}  {'tasks/s':>8}  "
        f"{'KiB/stream':>10}"
    )
    for row in r["runs"]:
        click.echo(
            f"  {row['version']:>8}  {row['open']:>7}  {row['refused']:>7}  "
            f"{row['seconds']:>8.3f}  {row['tasks_per_s']:>8.1f}  {row['kib_per_stream']:>10.1f}"
        )


def _counts(_ctx: Any, _param: Any, value: str) -> list[int]:
    try:
        counts = [int(v) for v in value.split(",")]
    except ValueError:
        counts = []
    if not counts or any(not 1 <= n <= 64 for n in counts):
        raise click.BadParameter("expected comma-separated process counts from 1 to 64")
    return counts


@click.command()
@click.option(
    "--processes",
    default="1,2,4",
    show_default=True,
    callback=_counts,
    help="Comma-separated numbers of worker processes to measure.",
)
@click.option("--tasks", type=click.IntRange(1), default=5000, show_default=True)
@click.option(
    "--sleep",
    "sleep_s",
    type=click.FloatRange(0, 60),
    default=0.0,
    help="Enqueue `sleep` tasks of this many seconds (handlers that wait) instead of `noop`.",
)
@click.option("-w", "--workers", "worker_count", type=click.IntRange(1), help="[WORKER_COUNT=5]")
@click.option("--fetch-limit", type=click.IntRange(1), help="[FETCH_LIMIT=10]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def scale(
    ctx: click.Context,
    processes: list[int],
    tasks: int,
    sleep_s: float,
    worker_count: int | None,
    fetch_limit: int | None,
    as_json: bool,
) -> None:
    """Scale-out: drain TASKS tasks with 1, 2, 4... `notifyq worker` processes."""
    settings_ = _settings(ctx)
    env = {}
    if worker_count:
        env["WORKER_COUNT"] = str(worker_count)
    if fetch_limit:
        env["FETCH_LIMIT"] = str(fetch_limit)
    r = run(lambda: measure_scale(settings_, processes, tasks, sleep_s, env))
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    click.echo(
        f"notifyq bench scale: {tasks} {describe(sleep_s)}, PostgreSQL {r['server_version']} "
        f"({r['server']}), {r['cpu_count']} cores shared by the server and the processes"
    )
    click.echo(f"  server: fsync={r['fsync']} synchronous_commit={r['synchronous_commit']}")
    click.echo(f"  per process: {' '.join(f'{k}={v}' for k, v in env.items()) or 'defaults'}")
    click.echo(f"  {'processes':>9}  {'seconds':>8}  {'tasks/s':>8}  {'per-proc':>8}  done by each")
    for row in r["runs"]:
        click.echo(
            f"  {row['processes']:>9}  {row['seconds']:>8.3f}  {row['tasks_per_s']:>8.1f}  "
            f"{row['speedup_per_process']:>7.2f}x  {' '.join(map(str, row['per_process_done']))}"
        )
    click.echo("  (per-proc: throughput per process relative to the first row; 1.00x is linear)")


@click.command("scale-table")
@click.option("--ended", type=click.IntRange(0), default=1_000_000, show_default=True)
@click.option("--history", type=click.IntRange(0), default=5_000_000, show_default=True)
@click.option("--drain", "drain_tasks", type=click.IntRange(1), default=5000, show_default=True)
@click.option("--rounds", type=click.IntRange(1), default=200, show_default=True)
@click.option("--fetch-limit", type=click.IntRange(1), help="[FETCH_LIMIT=10]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def scale_table(
    ctx: click.Context,
    ended: int,
    history: int,
    drain_tasks: int,
    rounds: int,
    fetch_limit: int | None,
    as_json: bool,
) -> None:
    """Big tables: claim p50, drain rate, prune time and sizes with ENDED ended tasks and
    HISTORY history rows spread over the last 8 days (a scratch database; 7 days kept)."""
    settings = _settings(ctx, fetch_limit=fetch_limit)
    r = run(lambda: bigtables.measure_scale_table(settings, ended, history, drain_tasks, rounds))
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    click.echo(f"notifyq bench scale-table: PostgreSQL {r['server_version']} ({r['server']})")
    click.echo(f"  {ended:,} ended tasks, {history:,} history rows over the last 8 days")
    click.echo(
        f"  fill: tasks {r['fill_tasks_s']} s, history {r['fill_history_s']} s,"
        f" VACUUM ANALYZE {r['vacuum_analyze_s']} s"
    )
    e, lo = r["claim_empty"], r["claim_loaded"]
    click.echo(
        f"  claim of {r['claim_rows']}: p50 {e['p50_ms']} -> {lo['p50_ms']} ms,"
        f" p95 {e['p95_ms']} -> {lo['p95_ms']} ms (empty -> loaded)"
    )
    click.echo(
        f"  drain of {r['drain_tasks']} noop: {r['drain_empty_per_s']} ->"
        f" {r['drain_loaded_per_s']} tasks/s"
    )
    click.echo(
        f"  prune 7d: {r['prune_tasks_deleted']:,} tasks deleted in {r['prune_tasks_s']} s;"
        f" history: dropped {', '.join(r['prune_history_dropped']) or 'nothing'} in"
        f" {r['prune_history_s']} s ({r['history_rows_left']:,} rows left)"
    )
    for label, key in (("loaded", "sizes_loaded"), ("after prune", "sizes_after_prune")):
        sizes = ", ".join(
            f"{name} {v['table_mb']:.0f} MB + indexes {v['indexes_mb']:.0f} MB"
            for name, v in r[key].items()
        )
        click.echo(f"  sizes {label}: {sizes}")


@click.command("migrate-history")
@click.option("--rows", type=click.IntRange(1), default=5_000_000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def migrate_history(ctx: click.Context, rows: int, as_json: bool) -> None:
    """The upgrade to the partitioned history (migration 0007) on ROWS history rows: how
    long the migration and the attach of the old rows take, and how long an event insert
    running beside them waits (a scratch database)."""
    settings = _settings(ctx)
    r = run(lambda: bigtables.measure_migrate_history(settings, rows))
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    click.echo(f"notifyq bench migrate-history: {rows:,} history rows")
    click.echo(
        f"  migration 0007: {r['migration_s']} s"
        f" (an insert beside it waited at most {r['insert_wait_max_during_migration_ms']} ms)"
    )
    click.echo(
        f"  attach of the old rows: {r['attach_s']} s ({r['inserts_during_attach']} inserts"
        f" beside it, the slowest {r['insert_wait_max_during_attach_ms']} ms)"
    )


@click.command("harsh")
@click.option(
    "--scenario",
    "scenarios",
    type=click.Choice([*harsh.SCENARIOS, "all"]),
    multiple=True,
    default=["all"],
    show_default=True,
    help="Repeat for several.",
)
@click.option(
    "--seconds",
    type=click.FloatRange(1),
    default=60,
    show_default=True,
    help="How long the fault lasts.",
)
@click.option(
    "--rate",
    type=click.FloatRange(1),
    default=100,
    show_default=True,
    help="Offered load, tasks per second.",
)
@click.option(
    "--kill-every",
    type=click.FloatRange(1),
    default=20,
    show_default=True,
    help="kill-9: seconds between two kills.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def harsh_(
    ctx: click.Context,
    scenarios: tuple[str, ...],
    seconds: float,
    rate: float,
    kill_every: float,
    as_json: bool,
) -> None:
    """The harsh-database scenarios with an exact per-task ledger: two `notifyq worker`
    processes under a steady offered load while a fault lasts SECONDS (a scratch database
    each); reports tasks, faults, rates, the seconds back to 90 % of the rate before, and
    tasks lost or completed twice (both must be 0)."""
    settings = _settings(ctx)
    chosen = harsh.SCENARIOS if "all" in scenarios else scenarios

    async def go() -> list[dict[str, Any]]:
        reports = []
        for name in chosen:
            plan = harsh.Plan(
                name,
                rate=rate,
                before_s=10,
                fault_s=seconds,
                after_s=15,
                kill_every_s=kill_every,
                lease_s=5,
                drain_timeout_s=120,
                # kill -9 matters when work is in flight: handlers that take 50 ms
                task_s=0.05 if name == "kill-9" else 0.0,
            )
            async with scratch(settings) as s:
                reports.append(await harsh.run_scenario(s.settings.database_url or "", plan))
        return reports

    reports = run(go)
    click.echo(json.dumps(reports, indent=2) if as_json else harsh.summary(reports))
    if any(r["lost"] or r["twice"] or r["worker_crashes"] for r in reports):
        fail("a task was lost or completed twice, or a worker crashed")
