"""The one task specification (notifyq.spec): every value PostgreSQL would refuse is refused
first, with InvalidTask naming the option; the same options for every entry point."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import notifyq
from notifyq import schedules, spec

LONE = "\ud800"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kind": "a\x00b"}, "invalid kind 'a\\x00b': PostgreSQL text cannot hold a NUL"),
        ({"kind": f"a{LONE}"}, "invalid kind 'a\\ud800': expected valid Unicode"),
        ({"queue": f"q{LONE}"}, "invalid queue 'q\\ud800': expected valid Unicode"),
        ({"unique_key": "k\x00"}, "invalid unique_key 'k\\x00': PostgreSQL text cannot hold"),
        ({"unique_key": ""}, "invalid unique_key '': expected a string of 1 to 512 characters"),
        ({"unique_key": "k" * 513}, "invalid unique_key 'kkk"),
        ({"concurrency_key": LONE}, "invalid concurrency_key '\\ud800': expected valid Unicode"),
        ({"concurrency_key": "c" * 257}, "invalid concurrency_key 'ccc"),
        ({"concurrency_key": 7}, "invalid concurrency_key 7: expected a string of 1 to 256"),
        ({"payload": f"x{LONE}"}, "invalid payload 'x\\ud800': expected valid Unicode"),
        ({"payload": {LONE: 1}}, "invalid payload {'\\ud800': 1}: expected valid Unicode"),
        ({"payload": {"a\x00": 1}}, "invalid payload {'a\\x00': 1}: PostgreSQL's jsonb cannot"),
        ({"payload": [1e309]}, "invalid payload [inf]: expected a JSON value"),
        ({"payload": 10**5000}, "invalid payload"),
        ({"timeout": 1e-7}, "invalid timeout 1e-07: expected a finite number of seconds, at"),
        ({"timeout": timedelta(microseconds=1)}, "invalid timeout datetime.timedelta(micro"),
        ({"timeout": 366 * 86400}, "invalid timeout 31622400: expected a finite number"),
        ({"delay": 10**400}, "invalid delay 1000000"),
        ({"priority": 2**31}, "invalid priority 2147483648: expected an integer from"),
        ({"max_attempts": 1001}, "invalid max_attempts 1001: expected an integer from 1 to"),
        ({"meta": [1]}, "invalid meta [1]: expected a JSON object"),
        ({"meta": {"a": "\x00"}}, "invalid meta {'a': '\\x00'}: PostgreSQL's jsonb cannot"),
        (
            {"run_at": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))},
            "invalid run_at datetime.datetime(1, 1, 1, 0, 0, tzinfo=datetime.timezone(",
        ),
    ],
)
def test_what_postgresql_refuses_is_refused_first(options: dict[str, Any], message: str) -> None:
    arguments = {"kind": "noop", **options}
    with pytest.raises(notifyq.InvalidTask) as caught:
        spec.new_task(**arguments)
    assert str(caught.value).startswith(message)


def test_a_literal_backslash_u0000_is_not_a_nul() -> None:
    task = spec.new_task("noop", {"path": "C:\\u0000"})
    assert task.payload_json == '{"path":"C:\\\\u0000"}'


def test_nesting_is_bounded_the_same_everywhere() -> None:
    deep: Any = 1
    for _ in range(spec.MAX_JSON_DEPTH):
        deep = [deep]
    spec.new_task("noop", deep)
    with pytest.raises(notifyq.InvalidTask, match="nested deeper than 64 levels"):
        spec.new_task("noop", [deep])
    very_deep: Any = 1
    for _ in range(5000):
        very_deep = {"a": very_deep}
    with pytest.raises(notifyq.InvalidTask, match="nested deeper than 64 levels"):
        spec.new_task("noop", very_deep)
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(notifyq.InvalidTask, match="Circular reference"):
        spec.new_task("noop", cycle)


def test_one_payload_size_limit() -> None:
    assert spec.MAX_PAYLOAD_BYTES == 1024 * 1024
    at_limit = "é" * ((spec.MAX_PAYLOAD_BYTES - 2) // 2)  # two bytes each, plus the quotes
    assert len(spec.new_task("noop", at_limit).payload_json.encode()) == spec.MAX_PAYLOAD_BYTES
    with pytest.raises(notifyq.InvalidTask) as caught:
        spec.new_task("noop", {"blob": "x" * 5_000_000})
    assert str(caught.value).endswith("expected at most 1048576 bytes of JSON, got 5000011")


def test_every_option_reaches_the_task() -> None:
    at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    task = spec.new_task(
        "resize",
        {"w": 1},
        queue="img",
        priority="high",
        run_at=at,
        max_attempts=4,
        timeout=timedelta(milliseconds=1),
        unique_key="img:1",
        concurrency_key="customer-9",
        meta={"origin": "web"},
    )
    assert task.run_at == datetime(2030, 1, 2, 1, 4, 5, tzinfo=UTC)
    assert (task.unique_key, task.concurrency_key, task.meta_json) == (
        "img:1",
        "customer-9",
        '{"origin":"web"}',
    )
    assert task.timeout_s == 0.001
    assert set(spec.TaskOptions.__annotations__) == spec.OPTION_NAMES


def test_trace_context_joins_the_callers_meta() -> None:
    task = spec.new_task("noop", meta={"origin": "web"})
    traced = task.with_meta({"trace": {"traceparent": "00-1-2-01"}})
    assert traced.meta_json == '{"trace":{"traceparent":"00-1-2-01"},"origin":"web"}'
    own = spec.new_task("noop", meta={"trace": "mine"}).with_meta({"trace": {"x": "y"}})
    assert own.meta_json == '{"trace":"mine"}'  # the caller's own key wins


def test_enqueue_many_items_take_every_option() -> None:
    item = spec.from_item({"kind": "noop", "meta": {"a": 1}, "unique_key": "u"})
    assert (item.meta_json, item.unique_key) == ('{"a":1}', "u")


def test_the_spec_imports_no_driver() -> None:
    code = (
        "import sys, notifyq.spec\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('asyncpg', 'psycopg', 'sqlalchemy', 'trio', 'pydantic', 'asyncio')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kind": "a\x00"}, "schedule 'tick': invalid kind 'a\\x00': PostgreSQL text cannot"),
        ({"queue": LONE}, "schedule 'tick': invalid queue '\\ud800': expected valid Unicode"),
        ({"payload": {"k": LONE}}, "schedule 'tick': invalid payload {'k': '\\ud800'}: expected"),
        ({"payload": "x" * 2_000_000}, "schedule 'tick': invalid payload 'xxxxx"),
    ],
)
def test_a_schedule_creates_tasks_by_the_same_check(options: dict[str, Any], message: str) -> None:
    arguments = {"kind": "noop", **options}
    with pytest.raises(schedules.ScheduleError) as caught:
        schedules.define("tick", every="1m", **arguments)
    assert str(caught.value).startswith(message)
    with pytest.raises(schedules.ScheduleError, match="invalid schedule name 't\\\\x00'"):
        schedules.define("t\x00", every="1m", kind="noop")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"after": [0]}, "invalid after [0]: expected task ids (integers from 1 to"),
        ({"after": [True]}, "invalid after [True]: expected task ids (integers from 1 to"),
        ({"after": ["7"]}, "invalid after ['7']: expected task ids (integers from 1 to"),
        ({"after": [2**63]}, "invalid after [9223372036854775808]: expected task ids"),
        ({"after": 7}, "invalid after 7: expected a list of task ids"),
        ({"after": [3, 3]}, "invalid after [3, 3]: task 3 is named twice"),
        (
            {"after": list(range(1, spec.MAX_PARENTS + 2))},
            "invalid after [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, "
            f"20, 21, 2...: expected at most {spec.MAX_PARENTS} parents, got {spec.MAX_PARENTS + 1}",
        ),
        (
            {"after": [1], "unique_key": "k"},
            "invalid unique_key 'k': a task with parents (after) has no unique_key",
        ),
        ({"on_parent_failure": "skip"}, "invalid on_parent_failure 'skip': expected cancel or run"),
    ],
)
def test_bad_parents_are_refused_before_sql(options: dict[str, Any], message: str) -> None:
    with pytest.raises(notifyq.InvalidTask) as caught:
        spec.new_task("noop", **options)
    assert str(caught.value) == message or str(caught.value).startswith(message)


def test_parents_keep_their_order_and_the_policy_defaults_to_cancel() -> None:
    task = spec.new_task("noop", after=(9, 4, 7))
    assert task.after == (9, 4, 7)
    assert task.on_parent_failure == "cancel"
    assert spec.new_task("noop", after=[], on_parent_failure="run").after == ()
    assert spec.from_item({"kind": "noop", "after": [5]}).after == (5,)


# --- start deadlines ----------------------------------------------------------------------


def test_a_start_deadline_is_absolute_or_relative_and_checked() -> None:
    at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert spec.new_task("noop", expires=at).expires_at == datetime(2030, 1, 2, 1, 4, 5, tzinfo=UTC)
    assert spec.new_task("noop", expires_in=timedelta(minutes=5)).expires_in_s == 300.0
    assert spec.new_task("noop").expiry() == (None, None)
    bad: list[tuple[dict[str, Any], str]] = [
        ({"expires_in": 0}, "invalid expires_in 0: expected a finite number of seconds, at least"),
        ({"expires_in": -5}, "invalid expires_in -5: expected a finite number"),
        ({"expires": datetime(2030, 1, 1)}, "invalid expires datetime.datetime(2030, 1, 1, 0, 0)"),
        ({"expires": at, "expires_in": 5}, "invalid expires_in 5: give expires or expires_in"),
        ({"expires_in": 5, "delay": 5}, "invalid expires_in 5: expected more than the delay (5"),
        (
            {"expires": at, "run_at": at + timedelta(seconds=1)},
            "invalid expires datetime.datetime(2030",
        ),
    ]
    for options, message in bad:
        with pytest.raises(notifyq.InvalidTask) as caught:
            spec.new_task("noop", **options)
        assert str(caught.value).startswith(message), caught.value
