"""The CLI imports the benchmark code only for `notifyq bench`, and the engine and the HTTP
side only for the commands that serve (each start pays its imports)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from notifyq.cli import main
try:
    main({args!r}, prog_name="notifyq")
except SystemExit:
    pass
heavy = ("notifyq.bench", "notifyq.cli.bench", "notifyq.serving.process", "quart", "hypercorn")
loaded = sorted(m for m in sys.modules if m.startswith(heavy))
print("LOADED", ",".join(loaded))
"""


def _loaded_after(*args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=list(args))],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("LOADED"))
    return [m for m in line.removeprefix("LOADED").strip().split(",") if m]


@pytest.mark.parametrize("args", [["--help"], ["status", "--help"], ["serve", "--help"]])
def test_a_command_other_than_bench_imports_no_benchmark_code(args: list[str]) -> None:
    # Nor the engine and the HTTP side (Quart, Hypercorn), which only the serving commands
    # import when they run.
    assert _loaded_after(*args) == []


def test_bench_still_has_every_subcommand() -> None:
    loaded = _loaded_after("bench", "--help")
    assert "notifyq.cli.bench" in loaded
    assert "notifyq.bench.peers" in loaded
