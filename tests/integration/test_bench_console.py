"""`notifyq bench console` at a tiny size: the real CLI builds its rows on a scratch
database, times every filter of the console and drops the database."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_bench import bench_json, run_bench, scratch_databases

pytestmark = pytest.mark.slow  # a CLI start, a build and some 30 filters timed: ~10 s


def test_bench_console_times_every_filter_on_a_tiny_table(server_url: str, tmp_path: Path) -> None:
    before = scratch_databases(server_url)
    r = bench_json(
        server_url,
        tmp_path,
        "console",
        "--ended",
        "20000",
        "--pending",
        "500",
        "--rounds",
        "2",
        "--bulk",
        "2",
    )
    assert (r["benchmark"], r["ended"], r["pending"], r["built"]) == ("console", 20000, 500, True)
    by_name = {f["filter"]: f for f in r["filters"]}
    assert by_name["every task"]["matching"] == 20500
    assert by_name["status=pending"]["matching"] == 500
    # The data holds what each filter looks for: 90 / 7 / 3 % of the ended tasks.
    assert by_name["status=error"]["matching"] == 1400
    assert by_name["status=cancelled"]["matching"] == 600
    assert by_name["workflow"]["matching"] >= 1
    assert by_name["unique_key"]["matching"] == 1
    for f in r["filters"]:
        for key in ("page1", "count"):
            assert 0 < f[key]["p50_ms"] <= f[key]["p95_ms"] <= f[key]["max_ms"], f
    assert r["bulk"]["batches"] >= 1 and r["bulk"]["changed"] >= 1
    assert scratch_databases(server_url) == before  # dropped


def test_bench_console_refuses_a_bad_database_name(server_url: str, tmp_path: Path) -> None:
    result = run_bench(server_url, tmp_path, "console", "--keep", "Robert'); DROP")
    assert result.returncode == 2
    assert "lower-case letters, digits and underscores only" in result.stderr
