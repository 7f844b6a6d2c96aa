"""`notifyq bench failover`: PostgreSQL failovers under load on a Patroni cluster of this
machine (:mod:`notifyq.bench.failover`), with the exact ledger of `bench harsh`."""

from __future__ import annotations

import json
from typing import Any

import click

from notifyq.bench import failover, harsh_report
from notifyq.bench.worker_processes import Plan
from notifyq.cli.bench_common import bench_settings
from notifyq.cli.common import fail, run


@click.command("failover")
@click.option(
    "--scenario",
    "scenarios",
    type=click.Choice([*failover.SCENARIOS, "all"]),
    multiple=True,
    default=["all"],
    show_default=True,
    help="Repeat for several.",
)
@click.option(
    "--replication",
    "modes",
    type=click.Choice([*failover.MODES, "both"]),
    default="both",
    show_default=True,
    help="Patroni's synchronous_mode on (sync) or off (async).",
)
@click.option(
    "--rate",
    type=click.FloatRange(1),
    default=200,
    show_default=True,
    help="Offered load, tasks per second.",
)
@click.option(
    "--seconds",
    type=click.FloatRange(1),
    default=10,
    show_default=True,
    help="How long each fault phase lasts at least (it ends once a primary leads).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def failover_(
    ctx: click.Context,
    scenarios: tuple[str, ...],
    modes: str,
    rate: float,
    seconds: float,
    as_json: bool,
) -> None:
    """PostgreSQL failovers under a steady load: a Patroni cluster of three PostgreSQL
    servers (etcd, streaming replication; installed by .ci/ha-deps) in a temporary
    directory, one database through a multi-host URL, two `notifyq worker` processes.
    Per scenario: tasks, lost, twice, the downtime (longest time without a completion),
    the seconds back to 90 % of the rate before. With sync replication a lost or twice
    completed task fails the command; with async they are measured."""
    bench_settings(ctx)  # logging: LOG_LEVEL warning unless told otherwise
    chosen = failover.SCENARIOS if "all" in scenarios else tuple(dict.fromkeys(scenarios))
    chosen_modes = failover.MODES if modes == "both" else (modes,)

    def plan_for(name: str) -> Plan:
        return Plan(
            name,
            rate=rate,
            before_s=5,
            fault_s=seconds,
            after_s=10,
            lease_s=5,
            drain_timeout_s=60,
        )

    async def go() -> list[dict[str, Any]]:
        reports = []
        for mode in chosen_modes:
            reports += await failover.run_mode(mode, chosen, plan_for)
        return reports

    reports = run(go)
    click.echo(json.dumps(reports, indent=2) if as_json else harsh_report.summary(reports))
    sync = [r for r in reports if r["replication"] == "sync"]
    if any(r["lost"] or r["twice"] or r["worker_crashes"] for r in sync):
        fail("with synchronous replication a task was lost or completed twice, or a worker crashed")
