"""A task's attempts as GET /tasks/{id}/attempts builds them from its history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from notifyq.store import EventRow
from notifyq.web.console_models import attempts_from

T0 = datetime(2026, 12, 7, 12, tzinfo=UTC)


def event(n: int, name: str, attempt: int, **kw: object) -> EventRow:
    fields: dict[str, object] = {
        "id": n,
        "task_id": 1,
        "at": T0 + timedelta(seconds=n),
        "event": name,
        "attempt": attempt,
        "worker": "w1" if name == "started" else kw.get("worker"),
        "error": kw.get("error"),
        "detail": None,
        "traceback": kw.get("traceback"),
        "actor": kw.get("actor"),
    }
    return EventRow(**fields)  # type: ignore[arg-type]


def test_attempts_pair_starts_with_their_ends_across_a_retry() -> None:
    history = [
        event(0, "queued", 0),
        event(1, "started", 1),
        event(2, "retried", 1, error="E: one"),
        event(3, "started", 2),
        event(4, "failed", 2, error="E: two", traceback="Traceback ..."),
        event(5, "requeued", 0, actor="api"),
        event(6, "started", 1),
    ]
    attempts = attempts_from(history)
    assert [(a.attempt, a.outcome, a.error) for a in attempts] == [
        (1, "retried", "E: one"),
        (2, "failed", "E: two"),
        (1, None, None),
    ]
    assert attempts[1].traceback == "Traceback ..."
    assert attempts[0].ended_at == T0 + timedelta(seconds=2)
    assert attempts[2].ended_at is None and attempts[2].worker == "w1"


def test_events_outside_an_attempt_open_nothing() -> None:
    history = [event(0, "queued", 0), event(1, "cancelled", 0, actor="cli")]
    assert attempts_from(history) == []
