"""Fixtures: one PostgreSQL per session, a migrated template, a fresh database per test."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import pytest

from notifyq import db, settings
from tests import pg

TEMPLATE = "notifyq_template"
_numbers = itertools.count()


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """URL of the session's server (its maintenance database)."""
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield external
        return
    server = pg.EmbeddedServer(pg.TEST_SERVER_SETTINGS)
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture(scope="session")
def template_url(server_url: str) -> str:
    """A database migrated by the real `notifyq migrate`, cloned for every test."""
    pg.psql(server_url, f"DROP DATABASE IF EXISTS {TEMPLATE}")
    pg.psql(server_url, f"CREATE DATABASE {TEMPLATE}")
    url = pg.with_database(server_url, TEMPLATE)
    # The developer's own notifyq settings must not reach the migration.
    env = {k: v for k, v in os.environ.items() if k.upper() not in settings.ENV_NAMES}
    subprocess.run(
        [sys.executable, "-m", "notifyq", "migrate"],
        check=True,
        timeout=60,
        env={**env, "DATABASE_URL": url, "LOG_LEVEL": "warning"},
        capture_output=True,
    )
    return url


def fresh_database(server_url: str, template: str | None) -> str:
    name = f"notifyq_test_{os.getpid()}_{next(_numbers)}"
    clause = f" TEMPLATE {template}" if template else ""
    pg.psql(server_url, f"CREATE DATABASE {name}{clause}")
    return name


@pytest.fixture
def database_url(server_url: str, template_url: str) -> Iterator[str]:
    """A migrated database of this test's own."""
    name = fresh_database(server_url, TEMPLATE)
    yield pg.with_database(server_url, name)
    pg.psql(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


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
