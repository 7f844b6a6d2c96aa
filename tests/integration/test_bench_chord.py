"""`notifyq bench drain --chord`: plain tasks and a chord drained alternately in one run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_bench import bench_json, is_number, run_bench, scratch_databases

pytestmark = pytest.mark.slow  # benchmark runs


@pytest.mark.parametrize("processes", ["1", "2"])
def test_drain_chord_alternates_and_runs_the_callback_once(
    server_url: str, tmp_path: Path, processes: str
) -> None:
    data = bench_json(
        server_url, tmp_path, "drain", "--chord", "--tasks", "300", "--rounds", "2",
        "--processes", processes,
    )  # fmt: skip
    assert data["benchmark"] == "drain_chord"
    assert (data["tasks"], data["processes"], data["rounds"]) == (300, int(processes), 2)
    assert len(data["plain_runs_per_s"]) == len(data["chord_runs_per_s"]) == 2
    assert all(is_number(v) and v > 0 for v in data["plain_runs_per_s"] + data["chord_runs_per_s"])
    assert data["ratio"] == pytest.approx(
        data["chord_tasks_per_s"] / data["plain_tasks_per_s"], abs=0.001
    )
    # Every chord's callback ran exactly once, ended done, after the last member ended.
    assert data["callback_runs"] == data["callback_done"] == [1, 1]
    assert data["callback_status"] == ["done", "done"]
    assert all(ms >= 0 for ms in data["callback_start_after_ms"])
    assert scratch_databases(server_url) == []


def test_drain_chord_table(server_url: str, tmp_path: Path) -> None:
    result = run_bench(server_url, tmp_path, "drain", "--chord", "--tasks", "50", "--rounds", "1")
    assert result.returncode == 0, result.stderr
    assert "chord/s" in result.stdout and "callback runs: 1;" in result.stdout


def test_drain_chord_refuses_options_it_does_not_measure(tmp_path: Path) -> None:
    result = run_bench("postgresql://nowhere/x", tmp_path, "drain", "--chord", "--unique")
    assert result.returncode == 2
    assert "--chord measures noop tasks" in result.stderr
