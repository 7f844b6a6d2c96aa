"""`serve --processes N`: one supervisor process running N notifyq processes (its children).

The supervisor holds no task: it starts the children, forwards stop signals to them, restarts
one that dies unexpectedly and exits once they all have. Each child is an ordinary
`notifyq serve` (process 1, with the HTTP side) or `notifyq worker` (the others) started as
``python -m notifyq``, with the supervisor's settings in its environment.

Each child has a *link* to the supervisor: one end of a socket pair. The child writes
``ready`` on it once it serves; the supervisor never writes, so when the supervisor is gone
(even after ``kill -9``) the child reads end-of-file and shuts down gracefully, as on
SIGTERM. (``PR_SET_PDEATHSIG`` would not do: it fires when the *thread* that started the
child exits, and trio starts processes from its worker threads.)

Signals: the children run in sessions of their own, so a Ctrl+C in the terminal reaches the
supervisor only, which forwards each signal once to every child: the first stops them
gracefully, a second skips the grace, as with one process.

Restarts: a child that ends while nobody asked it to is restarted after 0.5 s, doubling for
each crash in a row up to 30 s; a child that ran for ``STABLE_S`` before dying starts the
count again. The supervisor gives up (stops the others and exits non-zero) on two rules
only: after ``MAX_RESTARTS`` restarts in a row, or when a child that has never been ready
exits by itself (an exit status, not a signal) before it is ready (a bad configuration does
that every time). A child that was ready once and ends before it is ready again, or one
killed by a signal before it was ready (the OOM killer, an operator), is one more crash in
a row (tests/unit/test_supervisor.py,
tests/acceptance/test_processes.py).

Stopping: a child that has not ended ``Plan.kill_after_s`` after the stop was forwarded
(stopped with SIGSTOP, wedged) is killed with SIGKILL, and the supervisor exits non-zero.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import trio

from notifyq import errors, logs
from notifyq.settings import Settings, env_name

log = logs.get("notifyq.supervisor")

READY = b"ready\n"
RESTART_DELAY_S = 0.5
RESTART_DELAY_MAX_S = 30.0
STABLE_S = 60.0  # a child that ran this long before it died starts the crash count again
MAX_RESTARTS = 5  # restarts in a row (each crash within STABLE_S of its start)
LINK_EOF_WAIT_S = 1.0


class SupervisorError(errors.NotifyqError):
    """A child failed: it ended before it was ready, crashed too often, or failed to stop."""


class ChildConfigError(SupervisorError, errors.ConfigError):
    """A child refused its configuration (exit status 2) at start: the supervisor exits 2."""


def child_environment(settings: Settings) -> dict[str, str]:
    """The settings as environment variables, so that a child builds the same Settings
    whatever flags, ``.env`` or environment the supervisor got them from (a child's
    ``PROCESSES`` is 1). Secrets stay in the environment, out of ``ps``."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            text = ""  # read back as unset
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, tuple):
            text = ",".join(value)
        elif isinstance(value, Path | str | int | float):
            text = str(value)
        else:  # pragma: no cover - a new kind of setting must be added above
            raise TypeError(f"cannot pass setting {name} of type {type(value).__name__}")
        env[env_name(name)] = text
    env["PROCESSES"] = "1"
    return env


def describe_exit(code: int) -> str:
    """``exit status 1``, ``killed by SIGKILL``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


# ---- the child's side -------------------------------------------------------------------


async def serve_link(
    fd: int,
    stop: trio.Event,
    ready: trio.Event,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """In a child: say ``ready`` once ``ready`` is set; set ``stop`` when the supervisor is
    gone (end-of-file on the link)."""
    os.set_inheritable(fd, False)  # a handler's subprocess must not keep the link open
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(socket.socket(fileno=fd)))
    task_status.started()
    async with stream, trio.open_nursery() as nursery:

        async def announce() -> None:
            await ready.wait()
            # If the supervisor is gone, the read below sees it too.
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(READY)

        nursery.start_soon(announce)
        try:
            while await stream.receive_some():
                pass  # the supervisor writes nothing; end-of-file is its exit
        except trio.BrokenResourceError:
            pass
        if not stop.is_set():
            log.warning("supervisor.gone", next="finishing running tasks, then exiting")
            stop.set()
        nursery.cancel_scope.cancel()


# ---- the supervisor's side --------------------------------------------------------------


# argv(index, link_fd, first): child ``index``'s command line (``first``: not a restart).
ChildArgv = Callable[[int, int, bool], list[str]]


@dataclass(frozen=True)
class Plan:
    """What to run: ``count`` children, their command lines and their whole environment."""

    count: int
    argv: ChildArgv
    env: Mapping[str, str]
    # After the stop, how long a child may take to end before it is killed (SIGKILL).
    kill_after_s: float = 60.0


@dataclass
class _Child:
    index: int
    process: trio.Process
    started_at: float
    ready: bool = False
    killed: bool = False  # by the supervisor, for not stopping in time
    link_closed: trio.Event = field(default_factory=trio.Event)


class Supervisor:
    """Runs a :class:`Plan` until every child has ended (see the module's docstring)."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.stop = trio.Event()  # set once: no more restarts; the children are stopping
        self.failures: list[str] = []
        self.config_failed = False  # a child exited 2 (a bad setting) before it was ready
        self._children: dict[int, _Child] = {}
        self._signals_sent: list[int] = []
        self.ready = trio.Event()  # set once every child has been ready (at least once)
        self._ever_ready: set[int] = set()

    def signal(self, signum: int) -> None:
        """A stop signal reached the supervisor: forward it to every child."""
        name = signal.Signals(signum).name
        if not self.stop.is_set():
            log.info("supervisor.stopping", signal=name, processes=len(self._children))
            self.stop.set()
        else:
            log.info("supervisor.signal_again", signal=name, next="cancelling running tasks")
        self._forward(signum)

    def fail(self, reason: str) -> None:
        """Give up: stop every child (gracefully) and exit non-zero once they have ended."""
        log.error("supervisor.giving_up", reason=reason)
        self.failures.append(reason)
        if not self.stop.is_set():
            self.stop.set()
            self._forward(signal.SIGTERM)

    def _forward(self, signum: int) -> None:
        self._signals_sent.append(signum)
        for child in self._children.values():
            if child.process.returncode is None:
                child.process.send_signal(signum)

    async def run(self) -> None:
        """Start the children, keep them running until :attr:`stop`, return once all have
        ended; raise :class:`SupervisorError` if any failed."""
        log.info("supervisor.start", processes=self.plan.count, pid=os.getpid())
        async with trio.open_nursery() as nursery:
            for index in range(1, self.plan.count + 1):
                nursery.start_soon(self._keep, index)
        if self.failures:
            error = ChildConfigError if self.config_failed else SupervisorError
            raise error("; ".join(self.failures))
        log.info("supervisor.stopped")

    async def _keep(self, index: int) -> None:
        crashes = 0
        first = True
        while not self.stop.is_set():
            child, code = await self._run_child(index, first)
            first = False
            ran_s = trio.current_time() - child.started_at
            how = describe_exit(code)
            if self.stop.is_set():
                if child.killed:
                    self.fail(
                        f"process {index} did not stop within {self.plan.kill_after_s:g}s: "
                        "killed with SIGKILL"
                    )
                elif not self._stopped_cleanly(code):
                    self.fail(f"process {index} ended ({how}) while stopping")
                return
            if not child.ready and index not in self._ever_ready and code >= 0:
                # Its first start exited by itself: the configuration is bad, and would be
                # at every restart. (A restart, or a start killed by a signal, is a crash.)
                self.config_failed |= code == 2
                self.fail(f"process {index} ended ({how}) before it was ready")
                return
            crashes = crashes + 1 if ran_s < STABLE_S else 1
            if crashes > MAX_RESTARTS:
                self.fail(
                    f"process {index} crashed {crashes} times in a row, each within "
                    f"{STABLE_S:g}s of starting (last: {how})"
                )
                return
            delay = min(RESTART_DELAY_S * 2 ** (crashes - 1), RESTART_DELAY_MAX_S)
            log.error(
                "supervisor.restarting",
                process=index,
                pid=child.process.pid,
                ended=how,
                ran_s=round(ran_s, 2),
                restart_in_s=delay,
                restart=crashes,
                of=MAX_RESTARTS,
            )
            with trio.move_on_after(delay):
                await self.stop.wait()

    def _stopped_cleanly(self, code: int) -> bool:
        # A child still importing when the signal came ends by that signal's default
        # action (or KeyboardInterrupt, 130): it held no task yet.
        sent = self._signals_sent
        return code == 0 or -code in sent or (code == 130 and signal.SIGINT in sent)

    async def _run_child(self, index: int, first: bool) -> tuple[_Child, int]:
        """Start child ``index`` and wait for it to end; returns it and its exit code."""
        mine, theirs = socket.socketpair()
        try:
            process = await trio.lowlevel.open_process(
                self.plan.argv(index, theirs.fileno(), first),
                env=dict(self.plan.env),
                pass_fds=(theirs.fileno(),),
                # Its own session: a Ctrl+C in the terminal reaches the supervisor alone,
                # which forwards it once (no child sees the same signal twice).
                start_new_session=True,
            )
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        child = _Child(index, process, trio.current_time())
        self._children[index] = child
        log.info("supervisor.child_started", process=index, pid=process.pid)
        if self._signals_sent:  # a signal came while it was being started
            process.send_signal(self._signals_sent[-1])
        link = trio.SocketStream(trio.socket.from_stdlib_socket(mine))
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_link, child, link)
                nursery.start_soon(self._kill_if_it_does_not_stop, child)
                code = await process.wait()
                # The child's end of the link closes with it: read a "ready" sent just
                # before it ended.
                with trio.move_on_after(LINK_EOF_WAIT_S):
                    await child.link_closed.wait()
                nursery.cancel_scope.cancel()
        finally:
            del self._children[index]
        return child, code

    async def _kill_if_it_does_not_stop(self, child: _Child) -> None:
        """SIGKILL ``child`` if it is still there ``kill_after_s`` after the stop: a child
        stopped with SIGSTOP never sees the forwarded signal, and would hold the whole
        shutdown forever (tests/unit/test_supervisor.py)."""
        await self.stop.wait()
        await trio.sleep(self.plan.kill_after_s)
        if child.process.returncode is None:
            log.error(
                "supervisor.killing",
                process=child.index,
                pid=child.process.pid,
                waited_s=self.plan.kill_after_s,
            )
            child.killed = True
            child.process.kill()

    async def _read_link(self, child: _Child, link: trio.SocketStream) -> None:
        received = b""
        try:
            async with link:
                while chunk := await link.receive_some():
                    received += chunk
                    if not child.ready and READY in received:
                        child.ready = True
                        self._became_ready(child)
        except trio.BrokenResourceError:
            pass
        finally:
            child.link_closed.set()

    def _became_ready(self, child: _Child) -> None:
        log.info("supervisor.child_ready", process=child.index, pid=child.process.pid)
        self._ever_ready.add(child.index)
        if len(self._ever_ready) == self.plan.count and not self.ready.is_set():
            self.ready.set()
            log.info("supervisor.ready", processes=self.plan.count)
