"""The supervisor's rules, with tiny Python children instead of notifyq processes."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from notifyq import budget, errors, settings
from notifyq.serving import supervisor

# A child that says "ready" on its link (argv[1]) unless told not to, then exits with argv[2].
CHILD = """
import os, sys, time
fd, code, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "ready"
if ready:
    os.write(fd, b"ready\\n")
time.sleep(float(sys.argv[4]))
sys.exit(code)
"""


def plan(count: int, code: int, *, ready: bool = True, runs_s: float = 0.0) -> supervisor.Plan:
    def argv(index: int, link_fd: int, first: bool) -> list[str]:
        flag = "ready" if ready else "silent"
        return [sys.executable, "-c", CHILD, str(link_fd), str(code), flag, str(runs_s)]

    return supervisor.Plan(count=count, argv=argv, env={})


@pytest.fixture(autouse=True)
def quick_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "RESTART_DELAY_S", 0.01)


async def test_a_child_crashing_again_and_again_is_given_up() -> None:
    boss = supervisor.Supervisor(plan(1, 3))
    with trio.fail_after(30), pytest.raises(supervisor.SupervisorError) as raised:
        await boss.run()
    assert str(raised.value) == (
        "process 1 crashed 6 times in a row, each within 60s of starting (last: exit status 3)"
    )
    assert not isinstance(raised.value, supervisor.ChildConfigError)


async def test_a_child_that_never_got_ready_is_not_restarted() -> None:
    boss = supervisor.Supervisor(plan(1, 2, ready=False))
    with trio.fail_after(30), pytest.raises(supervisor.ChildConfigError) as raised:
        await boss.run()
    assert str(raised.value) == "process 1 ended (exit status 2) before it was ready"


# Each start appends a line to a file (argv[2]); start number n does what argv[3][n] says:
# "c" gets ready then crashes (exit 3), "k" is killed (SIGKILL) before it is ready, "s" gets
# ready and stays.
STARTS = """
import os, signal, sys, time
fd, log, script = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with open(log, "a") as f:
    f.write("start\\n")
with open(log) as f:
    n = len(f.readlines()) - 1
what = script[min(n, len(script) - 1)]
# Handled, as notifyq does (a stopped process would die of an unhandled SIGTERM at once).
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
if what == "k":
    os.kill(os.getpid(), signal.SIGKILL)
os.write(fd, b"ready\\n")
if what == "c":
    sys.exit(3)
time.sleep(60)
"""


def scripted(log: Path, script: str, **plan: Any) -> supervisor.Plan:
    def argv(index: int, link_fd: int, first: bool) -> list[str]:
        return [sys.executable, "-c", STARTS, str(link_fd), str(log), script]

    return supervisor.Plan(count=1, argv=argv, env={}, **plan)


def starts(log: Path) -> int:
    return log.read_text().count("start")


class CountingReady(supervisor.Supervisor):
    """Sets ``enough`` once children became ready ``wanted`` times (restarts included)."""

    def __init__(self, plan: supervisor.Plan, wanted: int) -> None:
        super().__init__(plan)
        self.wanted = wanted
        self.readied = 0
        self.enough = trio.Event()

    def _became_ready(self, child: Any) -> None:
        super()._became_ready(child)
        self.readied += 1
        if self.readied == self.wanted:
            self.enough.set()


async def test_a_restarted_child_killed_before_it_is_ready_is_restarted_again(
    tmp_path: Path,
) -> None:
    log = tmp_path / "starts"
    # Ready and crashes, killed before ready twice, then ready and stays: ready twice.
    boss = CountingReady(scripted(log, "ckks"), wanted=2)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(boss.run)  # giving up would raise here, ending the test
        with trio.fail_after(30):
            await boss.enough.wait()
        boss.signal(signal.SIGTERM)
    assert boss.failures == []
    assert starts(log) == 4


async def test_a_child_killed_before_its_first_ready_is_restarted(tmp_path: Path) -> None:
    log = tmp_path / "starts"
    boss = supervisor.Supervisor(scripted(log, "ks"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(boss.run)
        with trio.fail_after(30):
            await boss.ready.wait()
        boss.signal(signal.SIGTERM)
    assert boss.failures == []
    assert log.read_text().count("start") == 2


async def run_expecting_failure(boss: supervisor.Supervisor) -> None:
    with pytest.raises(supervisor.SupervisorError):
        await boss.run()


async def test_a_child_that_does_not_stop_is_killed(tmp_path: Path) -> None:
    log = tmp_path / "starts"
    boss = supervisor.Supervisor(scripted(log, "s", kill_after_s=0.5))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_expecting_failure, boss)
        with trio.fail_after(30):
            await boss.ready.wait()
        child = boss._children[1].process
        child.send_signal(signal.SIGSTOP)  # it can no longer see the stop signal
        boss.signal(signal.SIGTERM)
        with trio.fail_after(30):
            await child.wait()
    assert child.returncode == -signal.SIGKILL
    assert boss.failures == ["process 1 did not stop within 0.5s: killed with SIGKILL"]


async def test_children_asked_to_stop_end_the_run_cleanly() -> None:
    boss = supervisor.Supervisor(plan(2, 0, runs_s=30))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(boss.run)
        with trio.fail_after(20):
            await boss.ready.wait()
        # The children do not handle SIGTERM: they end by it, which is a clean stop.
        boss.signal(signal.SIGTERM)
    assert boss.failures == []


def test_the_environment_gives_a_child_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    given = settings.load(
        queues=("a", "b"),
        shutdown_timeout_s=2.5,
        no_listen=True,
        data_dir=Path("/somewhere"),
        processes=3,
        http_port=0,
        api_token="0123456789abcdef!",
    )
    env = supervisor.child_environment(given)
    for name in settings.ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(Path(__file__).parent)  # no .env here
    assert settings.load() == given.model_copy(update={"processes": 1})


def test_exit_descriptions() -> None:
    assert supervisor.describe_exit(0) == "exit status 0"
    assert supervisor.describe_exit(-9) == "killed by SIGKILL"


def test_the_pools_are_sized_to_what_the_server_allows() -> None:
    embedded = budget.ServerLimits(max_connections=100, reserved=3)  # 87 for notifyq
    given = settings.load(http_port=0)  # POOL_SIZE 10, HTTP_POOL_SIZE 4, one LISTEN each
    assert budget.fit_pool_size(given, processes=2, http=True, limits=embedded) == 10
    # 8 x (10 + 1) + 4 = 92 does not fit: pools of 9 do (8 x 10 + 4 = 84).
    assert budget.fit_pool_size(given, processes=8, http=True, limits=embedded) == 9
    quiet = given.model_copy(update={"no_listen": True})
    assert budget.fit_pool_size(quiet, processes=8, http=False, limits=embedded) == 10
    with pytest.raises(errors.ConfigError) as refused:
        budget.fit_pool_size(given, processes=64, http=True, limits=embedded)
    assert str(refused.value) == (
        "--processes 64 needs at least 196 database connections (64 x (POOL_SIZE 2 + 1 LISTEN)"
        " + 4 HTTP) but the server allows 87 (max_connections 100 - 3 reserved - 10 kept for"
        " other clients); lower PROCESSES or raise max_connections"
    )
