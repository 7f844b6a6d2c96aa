"""`notifyq bench all`: every benchmark and the peers in one run, one table, JSON and a chart.

Everything runs on the same server in the same run, one benchmark after another, so the
figures that the performance targets compare are ratios measured side by side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from notifyq.bench import floor, inprocess, load
from notifyq.bench.common import progress
from notifyq.bench.peers import measure_peers
from notifyq.settings import Settings

PEER_NAMES = {
    "pgqueuer_b100": "PgQueuer (batch 100, uncapped)",
    "pgqueuer_b10": "PgQueuer (batch 10, CLI defaults)",
    "procrastinate_c10": "procrastinate (concurrency 10)",
    "graphile_c24_lq500": "graphile-worker (concurrency 24, local queue 500, batched completes)",
    "graphile_c24": "graphile-worker (concurrency 24, no local queue, batched completes)",
}
CHART_LABELS = {  # under the chart's bars: short enough for seven side by side
    "pgqueuer_b100": "PgQueuer\nbatch 100",
    "pgqueuer_b10": "PgQueuer\nbatch 10",
    "procrastinate_c10": "procrastinate\nconcurrency 10",
    "graphile_c24_lq500": "graphile-worker\nlocal queue 500",
    "graphile_c24": "graphile-worker\nno local queue",
}


@dataclass(frozen=True)
class Plan:
    drain_tasks: int = 20_000
    drain_fetch_limit: int = 200
    probes: int = 200
    spacing_s: float = 0.02
    insert_clients: int = 16
    insert_seconds: float = 5.0
    finished: int = 1_000_000
    pending: int = 100_000
    claim_rounds: int = 300
    rss_tasks: int = 100_000
    processes: int = 2  # an extra drain row with this many serve processes (1: none)
    floor_rows: int = 20_000  # rows of each `bench floor` run (0: none)
    peers: bool = True


async def measure_all(settings: Settings, plan: Plan) -> dict[str, Any]:
    # WORKER_COUNT = FETCH_LIMIT: whole batches with PREFETCH=0 too (the default, auto,
    # claims ahead for tasks this short).
    drain_settings = settings.model_copy(
        update={"fetch_limit": plan.drain_fetch_limit, "worker_count": plan.drain_fetch_limit}
    )
    results: dict[str, Any] = {}
    results["latency"] = await inprocess.measure_latency(settings, plan.probes, plan.spacing_s, 5)
    results["drain"] = await inprocess.measure_drain(drain_settings, plan.drain_tasks)
    if plan.processes > 1:
        results["drain_processes"] = await load.measure_drain_processes(
            drain_settings, plan.drain_tasks, plan.processes
        )
    results["insert"] = await load.measure_insert(
        settings, plan.insert_clients, plan.insert_seconds
    )
    # Claims of 10 rows, as every earlier run measured (FETCH_LIMIT was 10 by default).
    results["backlog"] = await load.measure_backlog(
        settings.model_copy(update={"fetch_limit": 10}),
        plan.finished,
        plan.pending,
        plan.claim_rounds,
    )
    results["rss"] = await load.measure_rss(drain_settings, plan.rss_tasks)
    if plan.floor_rows:
        results["floor"] = await floor.measure_floor(settings, plan.floor_rows)
    if plan.peers:
        results["peers"] = await measure_peers(
            settings, plan.drain_tasks, plan.probes, plan.spacing_s, 5
        )
    results["targets"] = targets(results)
    return results


def _peer_rows(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for key, entry in results.get("peers", {}).items():
        if "drain" in entry:
            version = entry["drain"]["version"]
            rows.append((f"{PEER_NAMES[key]} {version}", entry))
    return rows


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The performance targets: each with the figure, the bound, and whether it is met."""
    lat, drain, ins = results["latency"], results["drain"], results["insert"]
    backlog, rss = results["backlog"], results["rss"]
    peers = _peer_rows(results)
    out = []

    def add(name: str, value: float, bound: float, met: bool, unit: str = "") -> None:
        out.append({"target": name, "value": value, "bound": bound, "met": met, "unit": unit})

    ours = max(drain["tasks_per_s"], results.get("drain_processes", {}).get("tasks_per_s", 0))
    by_key = {key: e for key, e in results.get("peers", {}).items() if "drain" in e}
    if "pgqueuer_b100" in by_key:
        theirs = by_key["pgqueuer_b100"]["drain"]["tasks_per_s"]
        add(
            "drain (best notifyq row) >= 2x PgQueuer batch 100 (ratio)",
            round(ours / theirs, 2),
            2.0,
            ours >= 2 * theirs,
        )
    if "graphile_c24_lq500" in by_key:
        theirs = by_key["graphile_c24_lq500"]["drain"]["tasks_per_s"]
        add(
            "drain (best notifyq row) ahead of graphile-worker, local queue (ratio)",
            round(ours / theirs, 2),
            1.0,
            ours > theirs,
        )
    if peers:
        for stat in ("p50_ms", "p99_ms"):
            lowest = min(e["latency"][stat] for _, e in peers)
            add(
                f"pickup {stat} below every peer (ratio)",
                round(lat[stat] / lowest, 2),
                1.0,
                lat[stat] < lowest,
            )
    add("pickup p50 <= 1 ms", lat["p50_ms"], 1.0, lat["p50_ms"] <= 1.0, "ms")
    add("pickup p99 <= 3 ms", lat["p99_ms"], 3.0, lat["p99_ms"] <= 3.0, "ms")
    add("inserts, workers idle >= 90% of plain", ins["idle_ratio"], 0.9, ins["idle_ratio"] >= 0.9)
    add("inserts, workers busy >= 90% of plain", ins["busy_ratio"], 0.9, ins["busy_ratio"] >= 0.9)
    add(
        "claim p50 with backlog <= 1.5x empty",
        backlog["ratio_p50"],
        1.5,
        backlog["ratio_p50"] <= 1.5,
    )
    add("idle serve RSS < 80 MB", rss["idle_mb"], 80.0, rss["idle_mb"] < 80, "MiB")
    add(
        f"RSS growth over a {rss['tasks']:,}-task drain within 10%",
        rss["growth_pct"],
        10.0,
        abs(rss["growth_pct"]) <= 10,
        "%",
    )
    if "floor" in results:
        for conns, ratio in results["floor"]["ratio"].items():
            add(
                f"claim + finish, bare loop on {conns} connection(s) >= 60% of the minimal queue",
                ratio,
                0.6,
                ratio >= 0.6,
            )
    return out


def _cpu(run: dict[str, Any]) -> str:
    """The two CPU-per-task cells of a drain (the server's: '-' when not measured)."""
    cells = (run.get("cpu_us_per_task"), run.get("server_cpu_us_per_task"))
    return " | ".join("-" if c is None else f"{c:,.0f}" for c in cells)


def _floor_lines(results: dict[str, Any]) -> list[str]:
    if "floor" not in results:
        return []
    f = results["floor"]
    lines = [
        "",
        f"Database floor (`bench floor`): {f['rows']:,} rows drained by a bare asyncpg loop, "
        f"{f['batch']} rows per claim, each batch marked done in one statement:",
        "",
        "| queue | connections | rows/s | CPU µs/row | server CPU µs/row | of the minimal queue |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for queue, name in floor.NAMES.items():
        for run in f[queue]:
            n = str(run["connections"])
            share = f"{f['ratio'][n]:.0%}" if queue == "notifyq" else ""
            lines.append(f"| {name} | {n} | {run['rows_per_s']:,.0f} | {_cpu(run)} | {share} |")
    return lines


def table(results: dict[str, Any]) -> str:
    """The comparison and the targets as Markdown tables."""
    lat, drain = results["latency"], results["drain"]
    s = drain["settings"]
    lines = [
        f"PostgreSQL {lat['server_version']}, fsync={lat['fsync']}, "
        f"synchronous_commit={lat['synchronous_commit']}; drain {drain['tasks']:,} no-op tasks, "
        f"pickup over {lat['count']} probes {lat['spacing_s'] * 1000:g} ms apart",
        "",
        "| system | drain tasks/s | CPU µs/task | server CPU µs/task | pickup p50 ms | p95 ms "
        "| p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| notifyq (1 process, {s['worker_count']} workers, FETCH_LIMIT={s['fetch_limit']}) "
        f"| {drain['tasks_per_s']:,.0f} | {_cpu(drain)} | {lat['p50_ms']:.2f} "
        f"| {lat['p95_ms']:.2f} | {lat['p99_ms']:.2f} |",
    ]
    if "drain_processes" in results:
        dp = results["drain_processes"]
        lines.append(
            f"| notifyq ({dp['processes']} `serve` processes, {s['worker_count']} workers each, "
            f"woken by the INSERT) | {dp['tasks_per_s']:,.0f} | {_cpu(dp)} | | | |"
        )
    for name, e in _peer_rows(results):
        d, la = e["drain"], e["latency"]
        lines.append(
            f"| {name} ({d['loop']}) | {d['tasks_per_s']:,.0f} | {_cpu(d)} | {la['p50_ms']:.2f} "
            f"| {la['p95_ms']:.2f} | {la['p99_ms']:.2f} |"
        )
    for key, entry in results.get("peers", {}).items():
        if "skipped" in entry:
            lines.append(f"| {PEER_NAMES[key]} | skipped: {entry['skipped']} | | | | | |")
    ins, bl, rss = results["insert"], results["backlog"], results["rss"]
    lines += [
        "",
        f"Inserts, {ins['clients']} clients x {ins['seconds_per_phase']:g} s: plain table "
        f"{ins['plain_per_s']:,.0f}/s; notifyq.tasks {ins['idle_per_s']:,.0f}/s with workers "
        f"idle ({ins['idle_ratio']:.0%}), {ins['busy_per_s']:,.0f}/s busy "
        f"({ins['busy_ratio']:.0%}).",
        f"Claim of {bl['claim_rows']} rows: p50 {bl['empty']['p50_ms']:.3f} ms empty, "
        f"{bl['loaded']['p50_ms']:.3f} ms with {bl['finished_rows']:,} finished + "
        f"{bl['pending_rows']:,} pending rows ({bl['ratio_p50']:.2f}x).",
        f"serve RSS: {rss['idle_mb']:.1f} MiB idle, {rss['peak_mb']:.1f} peak, "
        f"{rss['after_mb']:.1f} after draining {rss['tasks']:,} tasks "
        f"({rss['growth_pct']:+.1f}%, {rss['drain_tasks_per_s']:,.0f} tasks/s in a serve process).",
        *_floor_lines(results),
        "",
        "| target | measured | bound | met |",
        "|---|---:|---:|---|",
    ]
    for t in results["targets"]:
        unit = f" {t['unit']}" if t["unit"] else ""
        lines.append(
            f"| {t['target']} | {t['value']}{unit} | {t['bound']}{unit} | "
            f"{'yes' if t['met'] else 'NO'} |"
        )
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    """Drain throughput and pickup latency of notifyq and the peers, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["notifyq"]
    drains = [results["drain"]["tasks_per_s"]]
    p50s, p99s = [results["latency"]["p50_ms"]], [results["latency"]["p99_ms"]]
    for _, e in _peer_rows(results):
        names.append(CHART_LABELS[e["drain"]["peer"]])
        drains.append(e["drain"]["tasks_per_s"])
        p50s.append(e["latency"]["p50_ms"])
        p99s.append(e["latency"]["p99_ms"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    xs = range(len(names))
    left.bar(xs, drains, color=["tab:green"] + ["tab:gray"] * (len(names) - 1))
    left.set_xticks(list(xs), names, fontsize=8)
    left.set_ylabel("tasks/s")
    left.set_title(f"drain {results['drain']['tasks']:,} no-op tasks (higher is better)")
    width = 0.4
    right.bar([x - width / 2 for x in xs], p50s, width, label="p50")
    right.bar([x + width / 2 for x in xs], p99s, width, label="p99")
    right.set_xticks(list(xs), names, fontsize=8)
    right.set_ylabel("ms")
    right.set_title("pickup latency, INSERT commit -> handler start (lower is better)")
    right.legend()
    fig.suptitle(f"notifyq bench all — PostgreSQL {results['latency']['server_version']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """bench.json, bench.md and (with matplotlib) bench.png in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "bench.json", out_dir / "bench.md"]
    written[0].write_text(json.dumps(results, indent=2) + "\n")
    written[1].write_text(table(results) + "\n")
    try:
        chart(results, out_dir / "bench.png")
    except ImportError:
        progress("matplotlib is not installed: no chart (pip install notifyq[bench])")
    else:
        written.append(out_dir / "bench.png")
    return written
