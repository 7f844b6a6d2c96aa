"""The harsh-database scenarios, quick versions (`notifyq bench harsh` runs the long ones).

Two real `notifyq worker` processes under a steady offered load; for a few seconds the
database is made unpleasant. Every task id inserted is accounted for from the history:
none without a 'done' event, none with two, and no worker may crash. Each test prints a
FAULT REPORT line (pytest -s): tasks, faults, rates, seconds back to 90 % of the rate.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from notifyq import settings
from notifyq.bench import harsh, own_server, soak
from notifyq.bench.worker_processes import Plan
from tests import pg
from tests.acceptance.proc import Notifyq

pytestmark = pytest.mark.slow  # fault scenarios with real processes


def quick(scenario: str) -> Plan:
    """2.5 s of fault between 1 s of steady load before and after."""
    return Plan(
        scenario,
        task_s=0.05 if scenario == "kill-9" else 0.0,
        rate=100,
        before_s=1.0,
        fault_s=2.5,
        after_s=1.0,
        kill_every_s=1,
        lease_s=2,
        drain_timeout_s=40,
        down_s=1.0,
    )


def check(report: dict[str, Any]) -> None:
    shown = {k: v for k, v in report.items() if k != "unstructured_log_lines"}
    print(f"\nFAULT REPORT harsh {report['scenario']}: {json.dumps(shown)}")
    assert report["tasks"] > 100
    assert (report["lost"], report["twice"]) == (0, 0)
    assert report["worker_crashes"] == []
    assert report["unstructured_log_lines"] == []  # one structured line per event, no traces


async def test_idle_in_transaction_holding_xmin(database_url: str) -> None:
    report = await harsh.run_scenario(database_url, quick("idle-in-transaction"))
    check(report)
    assert report["faults"] == 1
    assert "dead_tuples_during_max" in report


async def test_four_repeatable_read_readers(database_url: str) -> None:
    report = await harsh.run_scenario(database_url, quick("repeatable-read"))
    check(report)
    assert report["faults"] >= 4


async def test_terminate_backends_twice_a_second(database_url: str) -> None:
    report = await harsh.run_scenario(database_url, quick("terminate"))
    check(report)
    assert report["faults"] >= 4  # at least each worker's LISTEN connection, twice


async def test_kill_9_of_one_of_two_workers(database_url: str) -> None:
    report = await harsh.run_scenario(database_url, quick("kill-9"))
    check(report)
    assert report["faults"] >= 2


async def test_postgresql_restarted_under_load() -> None:
    # A server of the harness's own (the session's is shared with the other tests).
    async with own_server.own_server() as own:
        url = await own_server.migrated(own)
        report = await harsh.run_scenario(url, quick("restart"), server=own)
    check(report)
    assert report["faults"] == 1
    assert report["seconds_down"][0] >= 1.0


@pytest.fixture
def small_server() -> Iterator[str]:
    """A server with few connection slots, migrated, of this test's own."""
    server = pg.EmbeddedServer({**pg.TEST_SERVER_SETTINGS, "max_connections": "40"})
    try:
        pg.psql(server.url, "CREATE DATABASE harsh")
        url = pg.with_database(server.url, "harsh")
        env = {k: v for k, v in os.environ.items() if k.upper() not in settings.ENV_NAMES}
        subprocess.run(
            [sys.executable, "-m", "notifyq", "migrate"],
            check=True,
            timeout=60,
            env={**env, "DATABASE_URL": url, "LOG_LEVEL": "warning"},
            capture_output=True,
        )
        yield url
    finally:
        server.close()


async def test_connections_exhausted(small_server: str) -> None:
    report = await harsh.run_scenario(small_server, quick("connections"))
    check(report)
    assert report["idle_clients"] > 10
    # The worker started while no slot was free waited for one instead of exiting.
    assert report["late_worker_waited"] is True
    assert report["log_events"]["db.waiting"] >= 1


def test_a_worker_waits_for_an_unreachable_database_and_stops_on_sigterm(
    notifyq: Callable[..., Notifyq],
) -> None:
    worker = notifyq("postgresql://nobody@127.0.0.1:1/nothing", "worker")
    first = worker.wait_for("db.waiting", timeout=30)
    assert first["level"] == "warning" and "cannot connect" in first["error"]
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    assert "shutdown.before_start" in worker.names()


async def test_soak_samples_every_interval_and_keeps_the_ledger(database_url: str) -> None:
    # `notifyq bench soak` in small: 4 s at 100 tasks/s, a sample every second.
    report = await soak.run_soak(database_url, soak.SoakPlan(minutes=4 / 60, rate=100, sample_s=1))
    print(f"\nSOAK TABLE\n{soak.table(report)}")
    assert (report["lost"], report["twice"], report["worker_crashes"]) == (0, 0, [])
    assert report["tasks"] > 200
    times = [s["t_s"] for s in report["samples"]]
    assert len(times) >= 3 and times == sorted(times)
    assert sum(s["tasks"] for s in report["samples"]) == report["tasks"]
    for s in report["samples"]:
        assert all(mb is not None and mb > 10 for mb in s["worker_rss_mb"])
        assert s["dead_rows"] >= 0 and s["pending"] >= 0
        assert s["tasks"] > 0 and s["pickup_p50_ms"] is not None
