"""The supervisor's rules, with tiny Python children instead of notifyq processes."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest
import trio

from notifyq import settings, supervisor

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
