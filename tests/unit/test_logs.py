"""logs.redact: database URLs are safe to print."""

from __future__ import annotations

import pytest

from notifyq import logs

SECRET = "hunter2"


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("postgresql://app:hunter2@db.example:5432/app",
         "postgresql://app:***@db.example:5432/app"),
        ("postgres://app:hunter2@db.example/app", "postgres://app:***@db.example/app"),
        ("postgresql://app:hunter2@db.example/app?sslmode=require&application_name=nq",
         "postgresql://app:***@db.example/app?sslmode=require&application_name=nq"),
        # '@' inside the password: the host is after the last '@'.
        ("postgresql://app:hun@ter2@db.example/app", "postgresql://app:***@db.example/app"),
        ("postgresql://app:hunter2%40x@[::1]:5433/app", "postgresql://app:***@[::1]:5433/app"),
        # An empty password is still a password field.
        ("postgresql://postgres:@/app?host=/tmp/sock", "postgresql://postgres:***@/app?host=/tmp/sock"),
        # A password without a user name.
        ("postgresql://:hunter2@db.example/app", "postgresql://:***@db.example/app"),
        # Several hosts.
        ("postgresql://app:hunter2@h1:5432,h2:5433/app",
         "postgresql://app:***@h1:5432,h2:5433/app"),
    ],
)
def test_redact_hides_the_password(url: str, redacted: str) -> None:
    assert logs.redact(url) == redacted


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:hunter2@db.example:5432/app",
        "postgresql://app:hun@ter2@db.example/app",
        "postgresql://:hunter2@db.example/app",
    ],
)
def test_redacted_url_holds_no_secret(url: str) -> None:
    redacted = logs.redact(url)
    assert redacted is not None
    assert SECRET not in redacted
    assert "ter2" not in redacted


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app@db.example:5432/app",
        "postgresql://db.example/app",
        "postgresql:///app?host=/var/run/postgresql",
        "postgres://app@[::1]/app?sslmode=disable",
        "postgresql://",
    ],
)
def test_redact_leaves_urls_without_password_unchanged(url: str) -> None:
    assert logs.redact(url) == url


@pytest.mark.parametrize("empty", [None, ""])
def test_redact_passes_nothing_through(empty: str | None) -> None:
    assert logs.redact(empty) == empty


def test_redact_of_an_unparsable_url_hides_it() -> None:
    assert logs.redact("postgresql://app:hunter2@[db.example/app") == "<unparsable URL>"


def test_redact_hides_a_password_given_as_a_query_parameter() -> None:
    # libpq and asyncpg both take the password from ?password=...; it is just as secret.
    redacted = logs.redact("postgresql://app@db.example/app?sslmode=require&password=hunter2")
    assert redacted is not None
    assert SECRET not in redacted
    assert redacted.startswith("postgresql://app@db.example/app?")
