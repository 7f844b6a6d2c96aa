"""Producers' options (checked before any statement) and named priorities, without a database."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import datetime, timedelta

import pytest

import notifyq
from notifyq import priorities, spec
from notifyq.producers import drivers


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("low", -10),
        ("normal", 0),
        ("high", 10),
        ("urgent", 20),
        ("URGENT", 20),
        (" high ", 10),
        (7, 7),
        ("-3", -3),
        (0, 0),
        (2**31 - 1, 2**31 - 1),
        (-5.0, -5),  # JSON's integer written as a float (the HTTP fuzzer sends them)
    ],
)
def test_priorities_by_name_or_number(given: object, expected: int) -> None:
    assert priorities.parse(given) == expected


@pytest.mark.parametrize("bad", ["highest", "", "1.5", 1.5, None, True, [1]])
def test_a_bad_priority_names_what_is_accepted(bad: object) -> None:
    with pytest.raises(ValueError) as caught:
        priorities.parse(bad)
    assert str(caught.value) == (
        f"invalid priority {bad!r}: expected an integer (higher runs first) or one of "
        "low (-10), normal (0), high (10), urgent (20)"
    )


def test_a_priority_out_of_range_says_the_range() -> None:
    with pytest.raises(ValueError) as caught:
        priorities.parse(2**31)
    assert str(caught.value) == (
        "invalid priority 2147483648: expected an integer from -2147483648 to 2147483647"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kind": ""}, "invalid kind '': expected a string of 1 to 128 characters"),
        ({"queue": "q" * 129}, "invalid queue 'qqqq"),
        ({"priority": "highest"}, "invalid priority 'highest': expected an integer"),
        ({"delay": -1}, "invalid delay -1: expected a finite number of seconds, 0 or more"),
        ({"delay": math.inf}, "invalid delay inf: expected a finite number of seconds"),
        ({"delay": "5s"}, "invalid delay '5s': expected seconds (a number) or a timedelta"),
        (
            {"delay": 1, "run_at": datetime(2030, 1, 1).astimezone()},
            "invalid delay 1: give delay or run_at, not both",
        ),
        (
            {"run_at": datetime(2030, 1, 1)},
            "invalid run_at datetime.datetime(2030, 1, 1, 0, 0): expected a timezone-aware",
        ),
        ({"max_attempts": 0}, "invalid max_attempts 0: expected an integer from 1 to 1000"),
        ({"max_attempts": True}, "invalid max_attempts True: expected an integer from 1 to"),
        ({"timeout": 0}, "invalid timeout 0: expected a finite number of seconds, at least 0.001"),
        ({"timeout": timedelta(0)}, "invalid timeout datetime.timedelta(0): expected"),
        ({"payload": math.nan}, "invalid payload nan: expected a JSON value (Out of range"),
        ({"payload": {"a": object()}}, "invalid payload {'a': <object object at"),
        (
            {"payload": "a\x00b"},
            "invalid payload 'a\\x00b': PostgreSQL's jsonb cannot store a NUL character",
        ),
    ],
)
def test_bad_options_are_named(options: dict[str, object], message: str) -> None:
    arguments = {"kind": "noop", **options}
    with pytest.raises(notifyq.InvalidTask) as caught:
        spec.new_task(**arguments)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)
    assert isinstance(caught.value, ValueError)


def test_good_options_become_the_statement_values() -> None:
    task = spec.new_task(
        "resize",
        {"w": 1},
        queue="img",
        priority="urgent",
        delay=timedelta(minutes=2),
        max_attempts=7,
        timeout=1.5,
    )
    assert task == spec.NewTask("img", "resize", '{"w":1}', 20, None, 120.0, 7, 1.5)
    assert spec.new_task("noop").payload_json == "{}"  # None: the column's default


def test_enqueue_many_items_are_mappings_or_new_tasks() -> None:
    assert spec.from_item({"kind": "noop", "priority": "low"}).priority == -10
    with pytest.raises(TypeError, match="unknown task option"):
        spec.from_item({"kind": "noop", "priorty": 1})
    with pytest.raises(TypeError, match="a task needs a 'kind'"):
        spec.from_item({"payload": 1})
    with pytest.raises(TypeError, match="takes NewTask objects or mappings, got str"):
        spec.from_item("noop")  # type: ignore[arg-type]


def test_statements_in_each_parameter_style() -> None:
    assert drivers.statement("produce_outcome", "numeric_dollar").endswith("WHERE id = $1::bigint")
    assert drivers.statement("produce_outcome", "pyformat").endswith("WHERE id = %(p1)s::bigint")
    assert drivers.statement("produce_outcome", "format").endswith("WHERE id = %s::bigint")
    assert drivers.parameters([1, "a"], "pyformat") == {"p1": 1, "p2": "a"}


def test_import_notifyq_imports_no_driver_nor_trio() -> None:
    code = (
        "import sys, notifyq\n"
        "notifyq.enqueue, notifyq.enqueue_many, notifyq.wait\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ("
        "'psycopg', 'sqlalchemy', 'asyncpg', 'trio', 'trio_asyncio', 'opentelemetry',"
        " 'httpx', 'asyncio'))\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


def test_the_http_model_names_the_same_priorities() -> None:
    from typing import get_args

    from notifyq.web import models

    assert list(get_args(models.PriorityName)) == list(priorities.NAMED)
