"""notifyq through a real PgBouncer in transaction mode (Debian's `pgbouncer` package).

Queries go through PgBouncer, whose few server connections are shared by transaction, so
a statement may run on another server connection than the one before it; the LISTEN
connection goes straight to PostgreSQL through LISTEN_DATABASE_URL. `make test` installs
pgbouncer through `.ci/system-deps`; without it these tests fail rather than skip.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests import pg
from tests.acceptance.proc import Notifyq, scalar, until

Start = Callable[..., Notifyq]
SERVER_CONNECTIONS = 3  # fewer than notifyq's pool: server connections must be shared


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")
    if found:
        return found
    pytest.fail("pgbouncer is not installed (run .ci/system-deps; make test does)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PgBouncer:
    """A pgbouncer process in transaction mode, in front of the server of ``url``."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        host = parse_qs(parts.query).get("host", [parts.hostname or "/tmp"])[0]
        port = parts.port or 5432
        self.user = parts.username or "postgres"
        self.root = Path(tempfile.mkdtemp(prefix="notifyq-pgbouncer-"))
        self.port = free_port()
        (self.root / "userlist.txt").write_text(f'"{self.user}" ""\n')
        (self.root / "pgbouncer.ini").write_text(f"""\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.root / "userlist.txt"}
pool_mode = transaction
default_pool_size = {SERVER_CONNECTIONS}
max_client_conn = 200
server_reset_query =
ignore_startup_parameters = extra_float_digits
""")
        args = [pgbouncer_binary(), str(self.root / "pgbouncer.ini")]
        if os.geteuid() == 0:
            # PgBouncer refuses to run as root; run it as the server's own user, which can
            # reach the server's socket directory.
            user = "embedded_postgres" if _user_exists("embedded_postgres") else "nobody"
            args[1:1] = ["-u", user]
            self.root.chmod(0o755)
        self.log = tempfile.NamedTemporaryFile("w+", prefix="pgbouncer-log-")  # noqa: SIM115
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        until(self._ready, timeout=15, interval=0.1)

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"pgbouncer exited {self.proc.returncode}: {self.output()}")
        try:
            return pg.psql(self.url("postgres"), "SELECT 1", timeout=5) == "1"
        except RuntimeError:
            return False

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # SIGINT: safe shutdown
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture
def bouncer(server_url: str) -> Iterator[PgBouncer]:
    proxy = PgBouncer(server_url)
    try:
        yield proxy
    finally:
        proxy.close()


def db_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def done_once(url: str, n: int) -> bool:
    return scalar(url, "SELECT count(*) FROM notifyq.task_events WHERE event = 'done'") == str(n)


def test_queries_through_pgbouncer_transaction_mode_listen_direct(
    database_url: str, bouncer: PgBouncer, notifyq: Start
) -> None:
    through = bouncer.url(db_name(database_url))
    env = {
        "DATABASE_URL": through,
        "LISTEN_DATABASE_URL": database_url,
        "DATABASE_STATEMENT_CACHE": "0",
        "FETCH_INTERVAL": "60",  # a prompt pickup can only come from NOTIFY
        "POOL_SIZE": "10",
        "WORKER_COUNT": "10",
    }
    workers = [notifyq(through, "worker", env=env) for _ in range(2)]
    for w in workers:
        w.wait_for("listener.connected", timeout=30)
    # Picked up promptly: through the direct LISTEN connection, not the 60 s sweep.
    started = time.monotonic()
    task = scalar(
        database_url,
        "INSERT INTO notifyq.tasks (kind, payload) VALUES ('reverse', '\"bouncer\"') RETURNING id",
    )
    until(
        lambda: (
            scalar(database_url, f"SELECT status FROM notifyq.tasks WHERE id = {task}") == "done"
        ),
        timeout=10,
        interval=0.01,
    )
    pickup_s = time.monotonic() - started
    assert pickup_s < 5, pickup_s
    assert (
        scalar(database_url, f"SELECT result FROM notifyq.tasks WHERE id = {task}") == '"recnuob"'
    )
    # A workload: every task done exactly once, with statements shuffled between the few
    # server connections.
    n = 1000
    scalar(
        database_url,
        "INSERT INTO notifyq.tasks (kind, payload) "
        f"SELECT 'sleep', '0.005' FROM generate_series(1, {n})",
    )
    until(lambda: done_once(database_url, n + 1), timeout=90)

    def count_backends() -> int:
        return int(
            scalar(
                database_url,
                """
            SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND backend_type = 'client backend'""",
            )
        )

    # The backend of an earlier psql call may still be on its way out (its exit is not
    # synchronous with psql's): the least of a few reads counts the connections held.
    backends = min(count_backends() for _ in range(5))
    for w in workers:
        w.signal(signal.SIGTERM)
    assert [w.wait(timeout=20) for w in workers] == [0, 0]
    per_task = scalar(
        database_url,
        """
        SELECT count(*) FILTER (WHERE n <> 1) FROM (
          SELECT t.id, count(e.id) AS n FROM notifyq.tasks t
          LEFT JOIN notifyq.task_events e ON e.task_id = t.id AND e.event = 'done'
          GROUP BY t.id) x""",
    )
    assert per_task == "0"
    # Two processes with pools of 10 used at most 3 server connections (plus the two LISTEN
    # connections and this psql).
    assert backends <= SERVER_CONNECTIONS + 2 + 1, backends
    assert f"db={db_name(database_url)}" in bouncer.output()
    for w in workers:
        errors = [e for e in w.events() if e.get("level") in ("warning", "error")]
        assert errors == [], errors
    print(f"\nPGBOUNCER pickup through NOTIFY {pickup_s * 1000:.1f} ms; {n} tasks exactly once")


def test_no_listen_behind_pgbouncer_only(
    database_url: str, bouncer: PgBouncer, notifyq: Start
) -> None:
    through = bouncer.url(db_name(database_url))
    env = {"DATABASE_STATEMENT_CACHE": "0", "FETCH_INTERVAL": "0.5"}
    worker = notifyq(through, "worker", "--no-listen", env=env)
    warning = worker.wait_for("listener.disabled", timeout=30)
    assert warning["level"] == "warning"
    worker.wait_for("service.start")
    scalar(
        database_url, "INSERT INTO notifyq.tasks (kind) SELECT 'noop' FROM generate_series(1, 200)"
    )
    until(lambda: done_once(database_url, 200), timeout=30)
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    assert "listener.connected" not in worker.names()


def test_enqueue_and_wait_through_pgbouncer(
    database_url: str, bouncer: PgBouncer, notifyq: Start
) -> None:
    through = bouncer.url(db_name(database_url))
    env = {
        "LISTEN_DATABASE_URL": database_url,
        "DATABASE_STATEMENT_CACHE": "0",
        "LOG_LEVEL": "warning",
    }
    worker = notifyq(through, "worker", env=env)
    enqueue = notifyq(through, "enqueue", "sleep", "0.3", env=env)
    assert enqueue.wait(timeout=30) == 0, enqueue.stderr()
    assert enqueue.proc.stdout is not None
    task_id = enqueue.proc.stdout.read().strip()
    # `wait` LISTENs for notifyq_done on the direct URL; its queries go through PgBouncer.
    waiter = notifyq(through, "wait", task_id, "--timeout", "20", env=env)
    assert waiter.wait(timeout=30) == 0, waiter.stderr()
    assert waiter.proc.stdout is not None
    assert '"status": "done"' in waiter.proc.stdout.read()
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
