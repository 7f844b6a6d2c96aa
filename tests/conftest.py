"""Fixtures: the suite's names for the pieces of notifyq.testing, the plugin users get.

The plugin (loaded through its ``pytest11`` entry point) starts one PostgreSQL per session,
migrates a template database and gives each test a database cloned from it. The suite runs
on those same fixtures, so that what users get is what the suite runs on every day; here
it only names them as its tests do and asks for a server with room for more connections.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator

import pytest
import structlog

from notifyq import db, logs
from tests import pg

_numbers = itertools.count()


@pytest.fixture(autouse=True)
def _own_logging() -> Iterator[None]:
    """Each test starts with the logging the session started with: a test that configures
    it (a CLI command, the plugin's fixtures) does not change the level another test's
    captured logs see."""
    saved, configured, lines = structlog.get_config(), structlog.is_configured(), logs._lines
    yield
    if configured:
        structlog.configure(**saved)
    else:
        structlog.reset_defaults()
    logs._lines = lines


@pytest.fixture(scope="session")
def notifyq_server_settings() -> dict[str, str]:
    """The plugin's server settings, with room for the suite's pools."""
    return dict(pg.TEST_SERVER_SETTINGS)


@pytest.fixture(scope="session")
def server_url(notifyq_server_url: str) -> str:
    """URL of the session's server (its maintenance database)."""
    return notifyq_server_url


@pytest.fixture(scope="session")
def template_name(notifyq_template_url: str) -> str:
    """The name of the database migrated by ``notifyq migrate`` that every test clones."""
    return notifyq_template_url  # the plugin's fixture yields the name


def fresh_database(server_url: str, template: str | None) -> str:
    """Create a database of the caller's own (a clone of ``template``, or empty); its name."""
    name = f"notifyq_test_{os.getpid()}_{next(_numbers)}"
    clause = f" TEMPLATE {template}" if template else ""
    pg.psql(server_url, f"CREATE DATABASE {name}{clause}")
    return name


@pytest.fixture
def database_url(notifyq_dsn: str) -> str:
    """A migrated database of this test's own."""
    return notifyq_dsn


@pytest.fixture
def empty_database_url(server_url: str) -> Iterator[str]:
    """An empty database (no notifyq schema) of this test's own."""
    name = fresh_database(server_url, None)
    yield pg.with_database(server_url, name)
    pg.psql(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[db.Database]:
    async with db.open_database(database_url, min_size=1, max_size=10) as database:
        yield database
