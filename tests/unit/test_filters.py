"""The console's filter language: what it accepts, what it refuses and how it says so."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from notifyq import filters
from notifyq.filters import FilterError, Instant, TaskFilter, parse, with_since


def test_every_key_parses_from_text() -> None:
    f = parse(
        {
            "status": "error,cancelled",
            "queue": "mail",
            "kind": "resize,thumb",
            "priority": "high,-3",
            "id": "3,5",
            "created_after": "2d",
            "created_before": "2026-12-01T10:00:00+01:00",
            "finished_after": "90s",
            "finished_before": "2026-12-01T10:00:00",
            "unique_key": "u",
            "concurrency_key": "c",
            "schedule": "nightly",
            "error": "Timeout",
            "fingerprint": "0123456789abcdef",
            "workflow": "7",
            "batch": "8",
        }
    )
    assert f.status == ("error", "cancelled")
    assert f.kind == ("resize", "thumb")
    assert f.priority == (10, -3)
    assert f.id == (3, 5)
    assert f.created_after == Instant(age_s=172800.0)
    assert f.finished_after == Instant(age_s=90.0)
    assert f.created_before is not None and f.created_before.at is not None
    assert f.created_before.at.utcoffset() is not None
    # No zone: UTC.
    assert f.finished_before == Instant(at=datetime(2026, 12, 1, 10, tzinfo=UTC))
    assert (f.workflow, f.batch, f.schedule) == (7, 8, "nightly")
    assert parse(f.as_query()) == f


def test_json_values_parse_as_their_text() -> None:
    assert parse({"status": ["error"], "id": [4, 2], "batch": 9}) == parse(
        {"status": "error", "id": "4,2", "batch": "9"}
    )
    assert parse({}) == TaskFilter() and TaskFilter().is_empty()
    assert parse({"limit": "5", "status": None}, ignore={"limit"}) == TaskFilter()


@pytest.mark.parametrize(
    ("values", "key", "words"),
    [
        ({"colour": "red"}, "colour", "unknown filter"),
        ({"status": "broken"}, "status", "'broken' is not a status"),
        ({"status": "error,"}, "status", "empty value"),
        ({"priority": "huge"}, "priority", "expected"),
        ({"id": "x"}, "id", "not a task id"),
        ({"id": "0"}, "id", "not a task id"),
        ({"workflow": True}, "workflow", "not a task id"),
        ({"batch": str(2**63)}, "batch", "not a task id"),
        ({"created_after": "yesterday"}, "created_after", "neither an ISO 8601 time"),
        ({"created_after": "99999d"}, "created_after", "at most"),
        ({"finished_before": "0001-01-01T00:00:00"}, "finished_before", "out of range"),
        ({"queue": "a\x00b"}, "queue", "cannot hold"),
        ({"error": ""}, "error", "non-empty"),
        ({"fingerprint": "XYZ"}, "fingerprint", "16 lowercase hex"),
        ({"kind": ",".join(["k"] * 1001)}, "kind", "at most 1000"),
    ],
)
def test_bad_filters_name_their_key(values: dict[str, object], key: str, words: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse(values)
    assert caught.value.key == key
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"{key}: ")


def test_since_means_finished_after_when_every_status_ended() -> None:
    hour = Instant(age_s=3600.0)
    ended = with_since(parse({"status": "error,cancelled"}), hour, None)
    assert ended.finished_after == hour and ended.created_after is None
    live = with_since(parse({"status": "error,pending"}), hour, hour)
    assert live.created_after == hour and live.created_before == hour
    assert with_since(TaskFilter(), hour, None).created_after == hour


def test_describe_and_keys() -> None:
    assert parse({"kind": "resize", "status": "error"}).describe() == "status=error kind=resize"
    assert TaskFilter().describe() == "every task"
    assert len(set(filters.KEYS)) == 16
