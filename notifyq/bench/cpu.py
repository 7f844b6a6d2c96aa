"""CPU time per task: of the worker process(es), and of the PostgreSQL server when it runs on
this machine.

- This process: :func:`process_s` (``getrusage``: user + system time of all its threads).
- Another process (a ``notifyq serve`` subprocess): :func:`pid_s` reads ``/proc/<pid>/stat``.
- The server: :func:`server_of` finds the postmaster from one backend's pid (the parent of
  ``pg_backend_pid()``), and :func:`server_s` sums the CPU time of the postmaster, of its
  live children (backends, WAL writer, autovacuum...) and of its children that have ended
  (``cutime`` + ``cstime``). The difference of two readings is the server's CPU time in
  between, every database of that server included: measure on a server nobody else uses.
  A server elsewhere (another host, a container) is not found and gives ``None``.

``graphile_runner.mjs`` reads the server the same way (see ``serverCpuS`` there).
"""

from __future__ import annotations

import os
import resource
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_TICK_S = 1 / os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")


def process_s() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _stat(pid: int) -> tuple[str, list[str]] | None:
    """(comm, the fields after it) of ``/proc/<pid>/stat``; None once the process is gone."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may hold spaces and parentheses: it ends at the last ')'.
    head, _, rest = text.rpartition(")")
    return head.partition("(")[2], rest.split()


def pid_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (0 once it is gone)."""
    stat = _stat(pid)
    if stat is None:
        return 0.0
    fields = stat[1]  # fields[11] utime, fields[12] stime (stat fields 14, 15)
    return (int(fields[11]) + int(fields[12])) * _TICK_S


def server_of(backend_pid: int) -> int | None:
    """The postmaster's pid, from the pid of one of its backends; None if that backend is
    not a ``postgres`` process of this machine (a server in a container or elsewhere)."""
    backend = _stat(backend_pid)
    if backend is None or not backend[0].startswith("postgres"):
        return None
    parent = int(backend[1][1])
    postmaster = _stat(parent)
    if postmaster is None or not postmaster[0].startswith("postgres"):
        return None
    return parent


def server_s(postmaster: int) -> float:
    """CPU seconds of the server so far: the postmaster, its live children and the ones
    that have ended."""
    own = _stat(postmaster)
    if own is None:
        return 0.0
    f = own[1]
    ticks = sum(int(x) for x in f[11:15])  # utime, stime, cutime, cstime
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        child = _stat(int(entry.name))
        if child is not None and int(child[1][1]) == postmaster:
            ticks += int(child[1][11]) + int(child[1][12])
    return ticks * _TICK_S


def per_task_us(seconds: float | None, tasks: int) -> float | None:
    """µs of CPU per task, rounded; None when not measured."""
    return None if seconds is None else round(seconds * 1e6 / tasks, 1)


class Meter:
    """CPU time over a measured stretch: of this process (or of the processes ``pids``),
    and of the server of the backend ``backend_pid`` when it runs on this machine."""

    def __init__(self, backend_pid: int | None = None, pids: Sequence[int] = ()) -> None:
        self.postmaster = server_of(backend_pid) if backend_pid is not None else None
        self.pids = tuple(pids)
        self._started = self._read()

    def _read(self) -> tuple[float, float | None]:
        mine = sum(pid_s(p) for p in self.pids) if self.pids else process_s()
        return mine, None if self.postmaster is None else server_s(self.postmaster)

    def start(self) -> None:
        self._started = self._read()

    def per_task(self, tasks: int) -> dict[str, Any]:
        """``cpu_us_per_task`` and ``server_cpu_us_per_task`` (None: not measurable) since
        the start."""
        (mine0, server0), (mine, server) = self._started, self._read()
        spent = None if server is None or server0 is None else server - server0
        return {
            "cpu_us_per_task": per_task_us(mine - mine0, tasks),
            "server_cpu_us_per_task": per_task_us(spent, tasks),
        }
