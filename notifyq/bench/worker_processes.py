"""The worker processes of `bench harsh` and `bench soak`: real ``notifyq worker``
subprocesses with their JSON logs, and the plan of a run (phases, load, worker settings).

Named for what it starts: "fleet" in notifyq means the queues' limits and the schedules
(``notifyq.store.fleet``), not a set of bench processes."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import IO

import trio

from notifyq import settings


def read_log(log: IO[str]) -> str:
    log.seek(0)
    return log.read()


@dataclass(frozen=True)
class Plan:
    """How long each phase lasts and how hard the load is."""

    scenario: str
    rate: float = 100.0  # offered tasks per second
    before_s: float = 3.0  # steady load before the fault
    fault_s: float = 5.0
    after_s: float = 3.0  # steady load after the fault
    kill_every_s: float = 2.0  # kill-9: one kill per interval
    lease_s: float = 2.0  # workers' LEASE: a killed worker's tasks come back after it
    drain_timeout_s: float = 60.0
    task_s: float = 0.0  # 0: noop tasks; else `sleep` tasks of this long (work in flight)
    down_s: float = 2.0  # restart: how long the server stays down each time
    worker_dir: str | None = None  # run the workers from the notifyq package in this directory


@dataclass
class Worker:
    """One ``notifyq worker`` subprocess with its JSON log in a temporary file."""

    proc: trio.Process
    log: IO[str]
    killed: bool = False


@dataclass
class WorkerProcesses:
    """The ``notifyq worker`` subprocesses of one run, started one by one on ``url`` with the
    plan's settings; the run's task owns them, and ``stop_all`` ends every one it started."""

    url: str
    plan: Plan
    workers: list[Worker] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        own = {k: v for k, v in os.environ.items() if k.upper() not in settings.ENV_NAMES}
        return {
            **own,
            "DATABASE_URL": self.url,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "warning",
            "LEASE": str(self.plan.lease_s),
            "WORKER_COUNT": "10",
            "FETCH_LIMIT": "50",
            "FETCH_INTERVAL": "1",
            "POOL_SIZE": "4",
        }

    async def start(self, worker_dir: str | None = None) -> Worker:
        """Start one worker, from the notifyq package in ``worker_dir`` (else
        ``plan.worker_dir``, else this one): ``python -m`` looks in its working directory
        first."""
        log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed in stop_all)
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "notifyq", "worker"],
            env=self.env(),
            stderr=log,
            cwd=worker_dir or self.plan.worker_dir,
        )
        worker = Worker(proc, log)
        self.workers.append(worker)
        return worker

    def kill(self, worker: Worker) -> None:
        worker.killed = True
        worker.proc.kill()

    def crashed(self) -> list[int]:
        """Exit codes of workers that ended without being killed here."""
        return [
            w.proc.returncode
            for w in self.workers
            if w.proc.returncode is not None and not w.killed
        ]

    def log_lines(self) -> list[str]:
        return [line for w in self.workers for line in read_log(w.log).splitlines()]

    async def stop_all(self) -> None:
        with trio.CancelScope(shield=True):
            for w in self.workers:
                if w.proc.returncode is None:
                    w.proc.send_signal(signal.SIGINT)
            with trio.move_on_after(10):
                for w in self.workers:
                    await w.proc.wait()
            for w in self.workers:
                if w.proc.returncode is None:
                    w.proc.kill()
                    await w.proc.wait()
            for w in self.workers:
                w.log.close()


@asynccontextmanager
async def open_worker_processes(url: str, plan: Plan, count: int) -> AsyncIterator[WorkerProcesses]:
    """``count`` worker processes on ``url``, all stopped (SIGINT, then kill) when the
    block ends."""
    processes = WorkerProcesses(url, plan)
    try:
        for _ in range(count):
            await processes.start()
        yield processes
    finally:
        await processes.stop_all()
