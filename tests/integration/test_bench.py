"""`notifyq bench` end to end: the real CLI against the session's server, on a scratch database."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from notifyq.bench import graphile
from notifyq.bench.common import percentile
from tests import pg

pytestmark = pytest.mark.slow  # benchmark runs, 2 to 40 s each

# Settings the benchmark must not inherit from the environment of the test run.
_OURS = ("DATABASE_URL", "LISTEN_DATABASE_URL", "LOG_LEVEL", "WORKER_COUNT", "FETCH_LIMIT")


def run_bench(server_url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in _OURS}
    return subprocess.run(
        [sys.executable, "-m", "notifyq", "bench", *args],
        env={**env, "DATABASE_URL": server_url},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def bench_json(server_url: str, cwd: Path, *args: str) -> dict[str, Any]:
    result = run_bench(server_url, cwd, *args, "--json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def scratch_databases(server_url: str) -> list[str]:
    return pg.psql(
        server_url, "SELECT datname FROM pg_database WHERE datname LIKE 'notifyq_bench_%'"
    ).split()


def has_schema(server_url: str) -> str:
    return pg.psql(server_url, "SELECT to_regclass('notifyq.tasks') IS NOT NULL")


def test_latency_json(server_url: str, tmp_path: Path) -> None:
    schema_before = has_schema(server_url)
    data = bench_json(server_url, tmp_path, "latency", "--count", "20", "--spacing", "0.005")
    assert data["benchmark"] == "latency"
    assert data["count"] == 20
    stats = ["p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms", "min_ms", "return_p50_ms"]
    assert all(is_number(data[k]) for k in stats), data
    assert data["min_ms"] <= data["p50_ms"] <= data["p95_ms"] <= data["p99_ms"] <= data["max_ms"]
    assert data["min_ms"] <= data["mean_ms"] <= data["max_ms"]
    # Woken by NOTIFY: the FETCH_INTERVAL sweep (5 s) would put the median in seconds.
    assert data["p50_ms"] < 1000
    assert isinstance(data["server_version"], str) and data["server_version"]
    assert data["settings"]["worker_count"] == 5
    assert data["settings"]["log_level"] == "warning"
    # The scratch database is gone, and the database named by DATABASE_URL was not migrated.
    assert scratch_databases(server_url) == []
    assert has_schema(server_url) == schema_before


def test_latency_through_the_delaying_proxy(server_url: str, tmp_path: Path) -> None:
    # --rtt 10ms: the commit's acknowledgement and the notification each arrive 5 ms after
    # the commit, and the claim then takes a 10 ms round trip: no probe starts sooner than
    # about 10 ms after its acknowledgement (8: room for the two connections' threads).
    data = bench_json(
        server_url, tmp_path, "latency", "--count", "5", "--spacing", "0.005", "--rtt", "10ms"
    )
    assert data["rtt_added_ms"] == 10
    assert data["min_ms"] >= 8, data
    assert scratch_databases(server_url) == []


def test_drain_json_with_flags(server_url: str, tmp_path: Path) -> None:
    data = bench_json(
        server_url, tmp_path, "drain", "--tasks", "500", "--workers", "3", "--fetch-limit", "7"
    )
    assert data["benchmark"] == "drain"
    assert data["tasks"] == 500
    assert data["done"] == 500  # counted in the database before it was dropped
    assert is_number(data["seconds"]) and data["seconds"] > 0
    assert is_number(data["tasks_per_s"]) and data["tasks_per_s"] > 0
    assert data["settings"]["worker_count"] == 3
    assert data["settings"]["fetch_limit"] == 7
    # CPU of this process per task; the server's when it runs on this machine (else None).
    assert is_number(data["cpu_us_per_task"]) and data["cpu_us_per_task"] > 0
    server_cpu = data["server_cpu_us_per_task"]
    assert server_cpu is None or (is_number(server_cpu) and server_cpu >= 0)
    assert scratch_databases(server_url) == []


def test_drain_table(server_url: str, tmp_path: Path) -> None:
    result = run_bench(server_url, tmp_path, "drain", "--tasks", "50")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("notifyq bench drain: PostgreSQL ")
    assert lines[-2].split() == [
        "tasks",
        "seconds",
        "tasks/s",
        "cpu",
        "µs/task",
        "db",
        "cpu",
        "µs/task",
    ]
    assert lines[-1].split()[0] == "50"
    assert "drain: 50 noop tasks enqueued" in result.stderr  # progress goes to stderr


def test_drain_with_and_without_unique_keys_in_one_run(server_url: str, tmp_path: Path) -> None:
    data = bench_json(server_url, tmp_path, "drain", "--tasks", "200", "--unique")
    assert (data["unique_keys"]["unique_keys"], data["unique_keys"]["done"]) == (True, 200)
    assert is_number(data["tasks_per_s"]) and is_number(data["unique_keys"]["tasks_per_s"])
    assert scratch_databases(server_url) == []


@pytest.mark.parametrize("handler", ["trio", "thread", "asyncio"])
def test_drain_of_transactional_handlers(server_url: str, tmp_path: Path, handler: str) -> None:
    data = bench_json(
        server_url, tmp_path, "drain", "--tasks", "200", "--transactional", "--handler", handler
    )
    assert (data["transactional"], data["handler"], data["done"]) == (True, handler, 200)
    assert is_number(data["tasks_per_s"])
    assert scratch_databases(server_url) == []


def test_bad_setting_exits_2_without_touching_the_server(tmp_path: Path) -> None:
    result = run_bench("postgresql://nobody@127.0.0.1:1/none", tmp_path, "drain", "-w", "0")
    assert result.returncode == 2
    assert "WORKER_COUNT" in result.stderr


@pytest.mark.parametrize(
    ("p", "expected"), [(50, 5.0), (95, 10.0), (99, 10.0), (100, 10.0), (0, 1.0), (10, 1.0)]
)
def test_percentile_is_nearest_rank(p: float, expected: float) -> None:
    assert percentile([float(x) for x in range(1, 11)], p) == expected


def test_insert_json(server_url: str, tmp_path: Path) -> None:
    data = bench_json(
        server_url,
        tmp_path,
        "insert",
        "--clients",
        "4",
        "--seconds",
        "0.5",
        "--workers",
        "2",
        "--unique",
    )
    assert data["benchmark"] == "insert"
    assert data["clients"] == 4
    for key in (
        "plain_per_s",
        "idle_per_s",
        "busy_per_s",
        "idle_ratio",
        "busy_ratio",
        "busy_unique_per_s",
        "busy_duplicate_per_s",
        "busy_unique_ratio",
    ):
        assert is_number(data[key]) and data[key] > 0, (key, data)
    assert len(data["plain_runs_per_s"]) == 2
    assert data["idle_ratio"] == round(data["idle_per_s"] / data["plain_per_s"], 3)
    assert scratch_databases(server_url) == []


def test_backlog_json(server_url: str, tmp_path: Path) -> None:
    data = bench_json(
        server_url,
        tmp_path,
        "backlog",
        "--finished",
        "2000",
        "--pending",
        "300",
        "--rounds",
        "10",
        "--fetch-limit",
        "5",
    )
    assert data["benchmark"] == "backlog"
    assert (data["finished_rows"], data["pending_rows"], data["claim_rows"]) == (2000, 300, 5)
    for case in ("empty", "loaded"):
        assert 0 < data[case]["p50_ms"] <= data[case]["p95_ms"], data
    assert is_number(data["ratio_p50"])
    assert scratch_databases(server_url) == []


def test_rss_json(server_url: str, tmp_path: Path) -> None:
    data = bench_json(server_url, tmp_path, "rss", "--tasks", "300", "--fetch-limit", "50")
    assert data["benchmark"] == "rss"
    assert (data["tasks"], data["done"]) == (300, 300)  # counted in the database
    assert 10 < data["idle_mb"] <= data["peak_mb"]
    assert is_number(data["after_mb"]) and is_number(data["growth_pct"])
    assert scratch_databases(server_url) == []


def test_drain_with_serve_processes(server_url: str, tmp_path: Path) -> None:
    data = bench_json(
        server_url, tmp_path, "drain", "--tasks", "400", "--processes", "2", "--fetch-limit", "20"
    )
    assert (data["processes"], data["tasks"], data["done"]) == (2, 400, 400)
    assert is_number(data["tasks_per_s"]) and data["tasks_per_s"] > 0
    assert scratch_databases(server_url) == []


def test_events_drains_with_open_streams(server_url: str, tmp_path: Path) -> None:
    data = bench_json(server_url, tmp_path, "events", "--subscribers", "0,3", "--tasks", "200")
    assert [(r["version"], r["subscribers"], r["open"]) for r in data["runs"]] == [
        ("this", 0, 0),
        ("this", 3, 3),
    ]
    assert all(is_number(r["tasks_per_s"]) and r["tasks_per_s"] > 0 for r in data["runs"])
    assert scratch_databases(server_url) == []


def test_all_writes_table_json_and_chart_without_peers(server_url: str, tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = run_bench(
        server_url,
        tmp_path,
        "all",
        "--out",
        str(out),
        "--no-peers",
        "--tasks",
        "300",
        "--count",
        "5",
        "--insert-seconds",
        "0.3",
        "--finished",
        "1000",
        "--pending",
        "100",
        "--rss-tasks",
        "200",
        "--processes",
        "1",
        "--floor-rows",
        "200",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "bench.json").read_text())
    assert {"latency", "drain", "insert", "backlog", "rss", "floor", "targets"} <= data.keys()
    assert "| notifyq claim + finish | 2 |" in result.stdout
    assert "peers" not in data and "drain_processes" not in data
    assert data["drain"]["done"] == 300 and data["latency"]["count"] == 5
    assert all(isinstance(t["met"], bool) for t in data["targets"])
    assert (out / "bench.md").read_text().strip() == result.stdout.split("\n\nwritten:")[0].strip()
    assert "| notifyq (1 process, 200 workers, FETCH_LIMIT=200) |" in result.stdout
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "bench.png").read_bytes()[:4] == b"\x89PNG"
    assert scratch_databases(server_url) == []


def test_peers_runs_by_the_module_path_bench_launches() -> None:
    # `bench peers` runs each peer as `python -m notifyq.bench.peers ...` (see run_peer).
    result = subprocess.run(
        [sys.executable, "-m", "notifyq.bench.peers", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "pgqueuer_b100" in result.stdout


def test_floor_drains_both_queues_on_one_and_two_connections(
    server_url: str, tmp_path: Path
) -> None:
    data = bench_json(server_url, tmp_path, "floor", "--rows", "500")
    assert (data["benchmark"], data["rows"], data["batch"]) == ("floor", 500, 100)
    for queue in ("floor", "notifyq"):
        assert [r["connections"] for r in data[queue]] == [1, 2]
        for run in data[queue]:
            assert run["rows"] == 500  # and counted done in the database
            assert is_number(run["rows_per_s"]) and run["rows_per_s"] > 0
            assert is_number(run["cpu_us_per_task"]) and run["cpu_us_per_task"] > 0
    for conns, ratio in data["ratio"].items():
        floor, ours = data["floor"][int(conns) - 1], data["notifyq"][int(conns) - 1]
        assert ratio == round(ours["rows_per_s"] / floor["rows_per_s"], 3)
    assert scratch_databases(server_url) == []


def peers_json(server_url: str, cwd: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    clean = {k: v for k, v in os.environ.items() if k not in (*_OURS, "NOTIFYQ_PEERS_DIR")}
    result = subprocess.run(
        [sys.executable, "-m", "notifyq", "bench", "peers", *args],
        env={**clean, "DATABASE_URL": server_url, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_graphile_is_skipped_with_the_reason(server_url: str, tmp_path: Path) -> None:
    # No node on PATH (an empty directory), whatever the peers directory holds.
    no_node = tmp_path / "bin"
    no_node.mkdir()
    data = peers_json(server_url, tmp_path, {"PATH": str(no_node)}, "--peer", "graphile_c24")
    assert data == {"graphile_c24": {"skipped": "node is not on PATH"}}
    if shutil.which("node") is not None:
        # node, but graphile-worker not installed in NOTIFYQ_PEERS_DIR.
        empty = tmp_path / "peers"
        env = {"NOTIFYQ_PEERS_DIR": str(empty)}
        data = peers_json(server_url, tmp_path, env, "--peer", "graphile_c24_lq500")
        reason = f"graphile-worker is not installed in {empty} (make bench-peers)"
        assert data == {"graphile_c24_lq500": {"skipped": reason}}


def test_graphile_drain_and_latency_when_installed(server_url: str, tmp_path: Path) -> None:
    if graphile.missing() is not None:
        pytest.skip(f"graphile-worker peer: {graphile.missing()}")
    env = {"NOTIFYQ_PEERS_DIR": str(graphile.peers_dir())}
    args = ("--peer", "graphile_c24_lq500", "--tasks", "300", "--count", "3")
    entry = peers_json(server_url, tmp_path, env, *args)["graphile_c24_lq500"]
    drain, latency = entry["drain"], entry["latency"]
    assert (drain["tasks"], drain["done"]) == (300, 300)  # graphile_worker.jobs left empty
    assert drain["version"] == "0.18.0" and drain["loop"].startswith("node v")
    assert drain["tasks_per_s"] > 0 and drain["cpu_us_per_task"] > 0
    # graphile-worker may start a job before its inserting client has read the commit's
    # acknowledgement: a sample can be below 0 (kept, as for every system).
    assert latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"] < 1000
    assert scratch_databases(server_url) == []
