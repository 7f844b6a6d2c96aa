"""`notifyq bench failover`: PostgreSQL failovers under load, with the exact ledger of
`bench harsh`.

A Patroni cluster of three PostgreSQL servers (:mod:`notifyq.bench.failover_cluster`),
with synchronous or asynchronous streaming replication, serves one database through a
multi-host URL (``target_session_attrs=read-write``). Two ``notifyq worker`` processes and
this process's steady producer use that URL; then, per scenario:

- ``switchover``: a planned ``patronictl switchover`` to a replica;
- ``kill-9``: SIGKILL of the primary's postmaster (Patroni fails over at once:
  ``primary_start_timeout`` 0);
- ``node-crash``: SIGKILL of the primary's postmaster and of its Patroni agent together, as
  when the machine dies: a replica is promoted once the leader key expires (its TTL);
- ``burst``: SIGKILL of the primary's postmaster while a burst of tasks (20 seconds of the
  offered load, inserted at once) is being finished, so outcome writes are in flight.

The report is `bench harsh`'s (tasks, lost, twice, rates, seconds back to 90 %) with the
downtime (``longest_gap_s``: from the last completion before to the first after), the old
and new primary and the seconds until the new one led.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from notifyq import db, migrations
from notifyq.bench import harsh
from notifyq.bench.common import progress, queries
from notifyq.bench.failover_cluster import Cluster, Node, open_cluster
from notifyq.bench.harsh_faults import Faulting
from notifyq.bench.worker_processes import Plan

SCENARIOS = ("switchover", "kill-9", "node-crash", "burst")
MODES = ("sync", "async")
DATABASE = "notifyq"


def _fault(
    cluster: Cluster, action: Callable[[], Awaitable[tuple[Node, Node]]], *, burst: bool = False
) -> Callable[[Faulting], Awaitable[None]]:
    async def fault(c: Faulting) -> None:
        if burst:
            rows = await c.database.fetch(
                queries["harsh_enqueue"], int(20 * c.plan.rate), "noop", {}
            )
            c.log.ids.extend(r["id"] for r in rows)
            c.log.notes["burst_tasks"] = len(rows)
            await trio.sleep(0.2)  # the workers are finishing them now
        began = trio.current_time()
        old, new = await action()
        c.log.actions += 1
        c.log.notes.update(
            old_primary=old.name,
            new_primary=new.name,
            seconds_to_new_primary=round(trio.current_time() - began, 2),
        )
        await trio.sleep(max(0.0, c.plan.fault_s - (trio.current_time() - began)))

    return fault


async def _migrated(cluster: Cluster) -> str:
    async with db.open_database(cluster.url("postgres"), min_size=1, max_size=1) as admin:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE)
        if not exists:
            await admin.execute(f"CREATE DATABASE {DATABASE}")
    url = cluster.url(DATABASE)
    async with db.open_database(url, min_size=1, max_size=1) as database:
        await migrations.migrate(database)
    return url


async def run_mode(
    mode: str, scenarios: tuple[str, ...], plan_for: Callable[[str], Plan]
) -> list[dict[str, Any]]:
    """Every scenario of ``scenarios`` on one cluster with ``mode`` replication."""
    reports = []
    async with open_cluster(sync=mode == "sync") as cluster:
        url = await _migrated(cluster)
        for name in scenarios:
            await cluster.wait_ready(replicas=len(cluster.nodes) - 1)
            actions = {
                "switchover": _fault(cluster, cluster.switchover),
                "kill-9": _fault(cluster, cluster.kill_postmaster),
                "node-crash": _fault(cluster, cluster.crash_node),
                "burst": _fault(cluster, cluster.kill_postmaster, burst=True),
            }
            plan = plan_for(name)
            progress(f"failover {name} ({mode} replication)")
            report = await harsh.run_scenario(url, plan, fault=actions[name])
            report["scenario"] = f"{name} {mode}"
            report["replication"] = mode
            reports.append(report)
    return reports
