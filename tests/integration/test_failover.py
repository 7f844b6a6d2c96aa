"""Many hosts, one primary: a multi-host URL with ``target_session_attrs=read-write`` finds
the writable server, and a server that turns read-only under a running service (a demoted
primary) is left for the new primary without a loop of errors or an outcome reported as
written when it was not.

Two real servers: the session's (``database_url``) and one of this module's own. A server
is "the standby" while its database, or the whole server, has
``default_transaction_read_only = on``: what a demoted primary or a hot standby answers
(SQLSTATE 25006), without the cost of a replica. The real failover, with Patroni and
streaming replication, is ``make test-ha`` (notifyq bench failover).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
import trio
from structlog.testing import capture_logs

from notifyq import db, errors
from notifyq.app import App, Task
from notifyq.testing import SERVER_SETTINGS, EmbeddedServer
from tests import pg
from tests.helpers import eventually, insert, running_service, wait_ended

TEMPLATE = "failover_template"

# The module's own server (initdb, start, migrate) costs 2-3 s on a quiet machine and up to
# 15 s on a busy one: the whole module is `slow` (make test runs it; test-fast does not).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def other_server(notifyq_template_url: str) -> Iterator[EmbeddedServer]:
    """A second server with a migrated template database, for this module's tests."""
    server = EmbeddedServer(SERVER_SETTINGS)
    try:
        pg.psql(server.url, f"CREATE DATABASE {TEMPLATE}")
        from notifyq.testing import _migrate

        _migrate(pg.with_database(server.url, TEMPLATE))
        yield server
    finally:
        server.close()


@dataclass(frozen=True)
class Pair:
    """One database name on two servers, and the multi-host URL naming both."""

    name: str
    first: str  # URL of the database on the server listed first (this module's own)
    second: str  # URL of the database on the session's server, listed second
    url: str  # both, target_session_attrs=read-write

    def set_read_only(self, which: str, on: bool) -> None:
        url = self.first if which == "first" else self.second
        value = "SET default_transaction_read_only = on" if on else "RESET ALL"
        pg.psql(pg.with_database(url, "postgres"), f"ALTER DATABASE {self.name} {value}")


def _socket_dir(url: str) -> str:
    query = dict(part.split("=", 1) for part in urlsplit(url).query.split("&") if part)
    return query["host"]


@pytest.fixture
def pair(database_url: str, other_server: EmbeddedServer) -> Iterator[Pair]:
    name = urlsplit(database_url).path.lstrip("/")
    pg.psql(other_server.url, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    first = pg.with_database(other_server.url, name)
    hosts = f"{_socket_dir(first)},{_socket_dir(database_url)}"
    url = f"postgresql://postgres:@/{name}?host={hosts}&target_session_attrs=read-write"
    try:
        yield Pair(name, first, database_url, url)
    finally:
        pg.psql(other_server.url, "ALTER SYSTEM RESET default_transaction_read_only")
        pg.psql(other_server.url, "SELECT pg_reload_conf()")
        pg.psql(other_server.url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def primary_and_standby(pair: Pair) -> AsyncIterator[tuple[db.Database, db.Database]]:
    """Direct connections to each server (first, second)."""
    async with (
        db.open_database(pair.first, min_size=1, max_size=2) as first,
        db.open_database(pair.second, min_size=1, max_size=2) as second,
    ):
        yield first, second


async def test_multi_host_url_serves_from_the_writable_server(
    pair: Pair, primary_and_standby: tuple[db.Database, db.Database]
) -> None:
    """The server listed first is read-only: the pool, the LISTEN connection and the
    producers all end up on the second; a task inserted there is picked up at once (by
    its notification: the sweep is a minute away)."""
    pair.set_read_only("first", True)
    first, second = primary_and_standby
    async with db.open_database(pair.url, min_size=1, max_size=4) as database:
        assert await database.fetchval("SELECT current_setting('transaction_read_only')") == "off"
        async with running_service(database, fetch_interval_s=60) as service:
            await eventually(lambda: _true(service.listener.health.listener_connected))
            task_id = await insert(database, "reverse", "abc")
            [row] = await wait_ended(second, task_id)
    assert row["status"] == "done" and row["result"] == "cba"
    assert await first.fetchval("SELECT count(*) FROM notifyq.tasks") == 0


async def test_a_demoted_primary_is_left_for_the_new_one(
    pair: Pair, other_server: EmbeddedServer, primary_and_standby: tuple[db.Database, db.Database]
) -> None:
    """The first server is the primary, then turns read-only while a task runs (every
    session there gets SQLSTATE 25006 from its next write, as on a demoted primary); the
    second becomes writable. The running task's outcome is never reported as written on
    the read-only server (it stays in_progress there); the service leaves it without a
    loop of errors and runs the next task on the new primary, woken by its notification."""
    pair.set_read_only("second", True)
    first, second = primary_and_standby
    release = trio.Event()

    async def held(task: Task) -> str:
        await release.wait()
        return "held"

    app = App()
    app.handler("held")(held)
    with capture_logs() as logs:
        async with (
            db.open_database(pair.url, min_size=1, max_size=4) as database,
            running_service(database, app, fetch_interval_s=60) as service,
        ):
            before = await insert(database, "reverse", "ab")
            [row] = await wait_ended(first, before)
            assert row["status"] == "done"
            running = await insert(database, "held")
            await eventually(lambda: _running(first, running))

            pg.psql(other_server.url, "ALTER SYSTEM SET default_transaction_read_only = on")
            pg.psql(other_server.url, "SELECT pg_reload_conf()")
            # The postmaster has signalled every session once one sees the new value,
            # and a session applies it before its next statement.
            await eventually(lambda: _read_only(first))
            pair.set_read_only("second", False)
            release.set()

            after = await insert(second, "reverse", "xyz")
            [row] = await wait_ended(second, after)
            assert row["status"] == "done" and row["result"] == "zyx"
            await eventually(lambda: _true(not service.ledger.attempts))
            # The LISTEN connection leaves the read-only server by itself (its probe, every
            # second, sees it), whether or not a statement failed there first.
            await eventually(lambda: _true(service.listener.health.reconnects >= 1))
    stuck = await first.fetchrow("SELECT status, result FROM notifyq.tasks WHERE id = $1", running)
    assert stuck is not None and (stuck["status"], stuck["result"]) == ("in_progress", None)
    events = [e["event"] for e in logs]
    assert "outcome.unstorable" not in events
    assert events.count("outcome.write_failed") <= 3, events
    lost = [e for e in logs if e["event"] == "listener.lost"]
    assert any("read-only" in e["error"] for e in lost), lost


async def test_a_read_only_server_is_reported_as_unavailable(pair: Pair) -> None:
    """A write refused for read-only (25006) is DatabaseUnavailable, which every stage
    retries, not a QueryError about the statement; the pool drops its connections."""
    pair.set_read_only("first", True)
    async with db.open_database(pair.first, min_size=1, max_size=1) as first:
        with pytest.raises(errors.ServerReadOnly, match="read-only"):
            await insert(first, "reverse", "a")
    assert issubclass(errors.ServerReadOnly, errors.DatabaseUnavailable)
    # Mid-failover no host may be writable yet: the URL is unavailable (waited for,
    # retried), not wrong.
    pair.set_read_only("second", True)
    with pytest.raises(errors.DatabaseUnavailable, match="read-write"):
        async with db.open_database(pair.url, min_size=1, max_size=1):
            pass


async def _true(value: object) -> bool:
    return bool(value)


async def _read_only(database: db.Database) -> bool:
    return bool(await database.fetchval("SHOW default_transaction_read_only") == "on")


async def _running(database: db.Database, task_id: int) -> bool:
    status = await database.fetchval("SELECT status FROM notifyq.tasks WHERE id = $1", task_id)
    return bool(status == "in_progress")


def test_producers_follow_the_multi_host_url(pair: Pair) -> None:
    """psycopg (libpq) and SQLAlchemy take the same hosts and land on the writable one:
    the forms docs/operations.md "High availability" gives."""
    import psycopg
    import sqlalchemy

    import notifyq

    pair.set_read_only("first", True)
    with psycopg.connect(pair.url) as conn:
        via_psycopg = notifyq.enqueue(conn, "noop", {"via": "psycopg"})
    hosts = _socket_dirs(pair.url)
    engine = sqlalchemy.create_engine(
        f"postgresql+psycopg://postgres@/{pair.name}?host={hosts[0]}&host={hosts[1]}"
        "&target_session_attrs=read-write"
    )
    try:
        with engine.begin() as conn:
            via_sqlalchemy = notifyq.enqueue(conn, "noop", {"via": "sqlalchemy"})
    finally:
        engine.dispose()
    second = pg.psql(
        pair.second,
        "SELECT string_agg(id::text || payload::text, ' ' ORDER BY id) FROM notifyq.tasks",
    )
    assert second == f'{via_psycopg}{{"via": "psycopg"}} {via_sqlalchemy}{{"via": "sqlalchemy"}}'
    assert pg.psql(pair.first, "SELECT count(*) FROM notifyq.tasks") == "0"


def _socket_dirs(url: str) -> list[str]:
    return _socket_dir(url).split(",")
