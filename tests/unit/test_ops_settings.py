"""The settings that running in production adds: NO_LISTEN and DATABASE_STATEMENT_CACHE."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from notifyq import settings
from notifyq.errors import ConfigError
from notifyq.settings import load


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.upper() in settings.ENV_NAMES:
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_defaults() -> None:
    s = load()
    assert s.no_listen is False
    assert s.statement_cache_size == 100
    assert {"NO_LISTEN", "DATABASE_STATEMENT_CACHE"} <= settings.ENV_NAMES


@pytest.mark.parametrize(
    ("text", "value"),
    [("true", True), ("1", True), ("yes", True), ("false", False), ("0", False), ("off", False)],
)
def test_no_listen_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, text: str, value: bool
) -> None:
    monkeypatch.setenv("NO_LISTEN", text)
    assert load().no_listen is value


def test_statement_cache_zero_for_pgbouncer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_STATEMENT_CACHE", "0")
    assert load().statement_cache_size == 0


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "NO_LISTEN",
            "maybe",
            "notifyq: invalid NO_LISTEN='maybe': expected true or false "
            "(true: no LISTEN connection; FETCH_INTERVAL sweeps only)",
        ),
        (
            "DATABASE_STATEMENT_CACHE",
            "-1",
            "notifyq: invalid DATABASE_STATEMENT_CACHE='-1': expected "
            "an integer from 0 to 10000 (0 behind a transaction-pooling "
            "PgBouncer)",
        ),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load()
    assert f"notifyq: {caught.value}" == message
