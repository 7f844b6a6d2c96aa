"""`notifyq bench insert | backlog | rss | peers | all`: the commands; the measurements
live in :mod:`notifyq.bench_load`, :mod:`notifyq.bench_peers` and :mod:`notifyq.bench_report`.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from notifyq.bench import _report, _run, _settings, bench


@bench.command()
@click.option("--clients", type=click.IntRange(1, 200), default=16, show_default=True)
@click.option("--seconds", type=click.FloatRange(0.1, 600), default=5.0, show_default=True)
@click.option("-w", "--workers", "worker_count", type=int, help="[WORKER_COUNT=5]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def insert(
    ctx: click.Context, /, clients: int, seconds: float, as_json: bool, **flags: int | None
) -> None:
    """Producers' cost: CLIENTS single-row insert transactions at once into notifyq.tasks,
    against the same table without triggers, with a serve process idle and then busy."""
    from notifyq import bench_load

    settings = _settings(ctx, **flags)
    r = _run(lambda: bench_load.measure_insert(settings, clients, seconds))
    rows = [(f"{k} /s", f"{r[k + '_per_s']:.0f}") for k in ("plain", "idle", "busy")]
    rows += [("idle", f"{r['idle_ratio']:.1%}"), ("busy", f"{r['busy_ratio']:.1%}")]
    _report(r, as_json, rows, "(ratios: inserts/s into notifyq.tasks / plain table)")


@bench.command()
@click.option("--finished", type=click.IntRange(0), default=1_000_000, show_default=True)
@click.option("--pending", type=click.IntRange(1), default=100_000, show_default=True)
@click.option("--rounds", type=click.IntRange(1), default=300, show_default=True)
@click.option("--fetch-limit", type=int, help="rows per claim [FETCH_LIMIT=10]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def backlog(
    ctx: click.Context, /, finished: int, pending: int, rounds: int, as_json: bool,
    **flags: int | None,
) -> None:
    """Claim latency on an empty table, then with FINISHED done and PENDING pending rows."""
    from notifyq import bench_load

    settings = _settings(ctx, **flags)
    r = _run(lambda: bench_load.measure_backlog(settings, finished, pending, rounds))
    rows = [
        ("empty p50", f"{r['empty']['p50_ms']:.3f}"),
        ("loaded p50", f"{r['loaded']['p50_ms']:.3f}"),
        ("ratio", f"{r['ratio_p50']:.2f}"),
    ]
    _report(r, as_json, rows, "(ms per claim statement)")


@bench.command()
@click.option("--tasks", type=click.IntRange(1), default=100_000, show_default=True)
@click.option("-w", "--workers", "worker_count", type=int, help="[WORKER_COUNT=5]")
@click.option("--fetch-limit", type=int, help="[FETCH_LIMIT=10]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def rss(ctx: click.Context, /, tasks: int, as_json: bool, **flags: int | None) -> None:
    """Resident memory of a `notifyq serve` process: idle, and after draining TASKS."""
    from notifyq import bench_load

    settings = _settings(ctx, **flags)
    r = _run(lambda: bench_load.measure_rss(settings, tasks))
    rows = [(k.replace("_mb", " MiB"), f"{r[k]:.1f}") for k in ("idle_mb", "peak_mb", "after_mb")]
    _report(r, as_json, [*rows, ("growth", f"{r['growth_pct']:+.1f}%")])


@bench.command()
@click.option("--tasks", type=click.IntRange(1), default=20_000, show_default=True)
@click.option("--count", type=click.IntRange(1), default=200, show_default=True)
@click.option("--spacing", type=click.FloatRange(0, 60), default=0.02, show_default=True)
@click.pass_context
def peers(ctx: click.Context, tasks: int, count: int, spacing: float) -> None:
    """Drain and pickup latency of PgQueuer and procrastinate (pip install notifyq[bench]),
    each in its own scratch database on the same server, as JSON."""
    from notifyq import bench_peers

    settings = _settings(ctx)
    r = _run(lambda: bench_peers.measure_peers(settings, tasks, count, spacing, 5))
    click.echo(json.dumps(r, indent=2))


@bench.command(name="all")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default="bench-results",
              show_default=True, help="Directory for bench.json, bench.md and bench.png.")
@click.option("--tasks", type=click.IntRange(1), default=20_000, show_default=True,
              help="Tasks of each drain (notifyq and every peer).")
@click.option("--drain-fetch-limit", type=click.IntRange(1, 10_000), default=200,
              show_default=True, help="FETCH_LIMIT of the drain and rss runs.")
@click.option("--count", type=click.IntRange(1), default=200, show_default=True,
              help="Pickup-latency probes.")
@click.option("--insert-seconds", type=click.FloatRange(0.1, 600), default=5.0,
              show_default=True)
@click.option("--finished", type=click.IntRange(0), default=1_000_000, show_default=True)
@click.option("--pending", type=click.IntRange(1), default=100_000, show_default=True)
@click.option("--rss-tasks", type=click.IntRange(1), default=100_000, show_default=True)
@click.option("--processes", type=click.IntRange(1, 64), default=2, show_default=True,
              help="An extra drain with this many serve processes (1: skip it).")
@click.option("--no-peers", is_flag=True, help="Skip PgQueuer and procrastinate.")
@click.pass_context
def all_(
    ctx: click.Context, out: Path, tasks: int, drain_fetch_limit: int, count: int,
    insert_seconds: float, finished: int, pending: int, rss_tasks: int, processes: int,
    no_peers: bool,
) -> None:
    """Every benchmark and the peers in one run: a table, bench.json and a chart."""
    from notifyq import bench_report

    settings = _settings(ctx)
    plan = bench_report.Plan(
        drain_tasks=tasks, drain_fetch_limit=drain_fetch_limit, probes=count,
        insert_seconds=insert_seconds, finished=finished, pending=pending,
        rss_tasks=rss_tasks, processes=processes, peers=not no_peers,
    )
    r = _run(lambda: bench_report.measure_all(settings, plan))
    written = bench_report.write(r, out)
    click.echo(bench_report.table(r))
    click.echo("\nwritten: " + ", ".join(str(p) for p in written))
